"""Key wrapping: a key block leaves (Get) or arrives (Register) encrypted under another key.

KMIP 1.4 sections 2.1.5 (Key Wrapping Data), 2.1.6 (Key Wrapping Specification) and
12.1-12.2 (the encodings). The wrapping key is a managed object of the caller's own
scope, named by its Unique Identifier:

- an AES key wraps with NIST key wrap (RFC 3394, Block Cipher Mode NISTKeyWrap, the
  default) or AES key wrap with padding (RFC 5649, AESKeyWrapPadding);
- an RSA public key wraps with OAEP (SHA-1 unless the parameters name another hash),
  and the matching private key unwraps.

What is wrapped follows the Encoding Option: absent or TTLV Encoding, the TTLV
encoding of the whole Key Value structure (so attributes named in the specification
travel inside it); No Encoding, the Key Material bytes alone.

A wrapped Key Value travels as a Byte String (KMIP 1.4 section 2.1.4, and what the
OASIS AX-M-2 cases expect). PyKMIP 0.11 reads it the other way, as the Key Material
of a Key Value structure: its client cannot decode a key wrapped here, and Register
accepts that form from it too.

Only the Encrypt wrapping method is implemented: MAC/sign wrapping and TR-31 are
answered Feature Not Supported (no OASIS case or client we know asks for them).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cryptography.hazmat.primitives import keywrap
from cryptography.hazmat.primitives.asymmetric import rsa

from keyquorum.cluster.state import ManagedObject

from .. import crypto
from ..attributes import Attribute
from ..errors import KmipError, invalid_field
from ..mapping import from_item, to_item
from ..objects import (
    CryptographicParameters,
    EncryptionKeyInformation,
    KeyBlock,
    KeyValue,
    KeyWrappingData,
    KeyWrappingSpecification,
)
from ..tables import (
    BlockCipherMode,
    CryptographicAlgorithm,
    CryptographicUsageMask,
    EncodingOption,
    HashingAlgorithm,
    KeyFormatType,
    ObjectType,
    PaddingMethod,
    ResultReason,
    State,
    Tag,
    WrappingMethod,
)
from ..ttlv import Item, decode_item, encode_item
from .context import Context
from .stored_keys import key_block, parameters

# States in which a key may wrap (protect) and unwrap (process), KMIP 1.4 section 3.22.
_WRAP_STATES = frozenset({State.ACTIVE})
_UNWRAP_STATES = frozenset({State.ACTIVE, State.DEACTIVATED, State.COMPROMISED})


async def wrap_block(ctx: Context, obj: ManagedObject, block: KeyBlock,
                     spec: KeyWrappingSpecification) -> KeyBlock:
    """``block`` of ``obj`` with its Key Value encrypted as ``spec`` asks."""
    information = _encryption_information(spec.wrapping_method, spec.encryption_key_information)
    if block.key_wrapping_data is not None:
        raise invalid_field("the key is stored wrapped already; get it without wrapping")
    if not isinstance(block.key_value, KeyValue):
        raise invalid_field("the object has no key value to wrap")

    # First what is wrapped: the Key Value, with the attributes asked for, or its bytes.
    encoding = spec.encoding_option
    if encoding in (None, EncodingOption.TTLV_ENCODING):
        value = replace(block.key_value, attribute_list=block.key_value.attribute_list
                        + _named_attributes(ctx, obj, spec.attribute_names))
        plaintext = encode_item(to_item(value, Tag.KEY_VALUE))
    elif isinstance(block.key_value.key_material, bytes) and not spec.attribute_names:
        plaintext = block.key_value.key_material
    else:
        raise invalid_field("No Encoding wraps raw key material without attributes; "
                            "use TTLV Encoding for this key")

    # Then the wrapping key, and the wrapped block that names it.
    wrapping = await _wrapping_key(ctx, information.unique_identifier, wrapping=True)
    params = parameters(wrapping, information.cryptographic_parameters)
    wrapped = _encrypt(wrapping, params, plaintext)
    return replace(block, key_value=wrapped, key_wrapping_data=KeyWrappingData(
        wrapping_method=spec.wrapping_method,
        encryption_key_information=information,
        encoding_option=spec.encoding_option,
    ))


async def unwrap_block(ctx: Context, block: KeyBlock) -> KeyBlock:
    """``block`` with its wrapped Key Value opened by a key of the caller's scope."""
    data = block.key_wrapping_data
    assert data is not None
    information = _encryption_information(data.wrapping_method, data.encryption_key_information)
    wrapped = block.key_value
    if isinstance(wrapped, KeyValue) and isinstance(wrapped.key_material, bytes):
        # PyKMIP's reading: the wrapped bytes as the Key Material of a Key Value.
        wrapped = wrapped.key_material
    if not isinstance(wrapped, bytes):
        raise invalid_field("a wrapped key block carries its Key Value as a Byte String")

    wrapping = await _wrapping_key(ctx, information.unique_identifier, wrapping=False)
    params = parameters(wrapping, information.cryptographic_parameters)
    plaintext = _decrypt(wrapping, params, wrapped)
    if data.encoding_option == EncodingOption.NO_ENCODING:
        value = KeyValue(key_material=plaintext)
    else:
        try:
            item = decode_item(plaintext)
            if item.tag != Tag.KEY_VALUE:
                raise invalid_field("not a Key Value")
            value = from_item(KeyValue, item)
        except (ValueError, KmipError):
            raise invalid_field("the unwrapped data is not a TTLV Key Value: was it wrapped "
                                "with No Encoding?") from None
    return replace(block, key_value=value, key_wrapping_data=None)


def _encryption_information(method: int, information: EncryptionKeyInformation | None
                            ) -> EncryptionKeyInformation:
    if method != WrappingMethod.ENCRYPT:
        raise KmipError(ResultReason.FEATURE_NOT_SUPPORTED,
                        "only the Encrypt wrapping method is supported")
    if information is None:
        raise invalid_field("the Encrypt wrapping method needs Encryption Key Information")
    return information


def _named_attributes(ctx: Context, obj: ManagedObject, names: tuple[str, ...]
                      ) -> tuple[Attribute, ...]:
    """The object's attributes the specification names, to travel inside the wrap."""
    if names and not ctx.is_v1:
        raise KmipError(ResultReason.FEATURE_NOT_SUPPORTED,
                        "attributes inside a wrapped key are supported in KMIP 1.x only")
    found = []
    for name in names:
        for index, value in enumerate(obj.values(name)):
            found.append(Attribute(name=name, index=index or None, value=value))
    return tuple(found)


async def _wrapping_key(ctx: Context, uid: str, wrapping: bool) -> ManagedObject:
    """The key that wraps or unwraps, refused unless its state and usage mask allow it.

    Reading it must not move the ID Placeholder off the object the item is about.
    """
    placeholder = ctx.placeholder
    key = await ctx.read(uid)
    ctx.placeholder = placeholder

    if key.material is None:
        raise KmipError(ResultReason.WRONG_KEY_LIFECYCLE_STATE, "the wrapping key was destroyed")
    states = _WRAP_STATES if wrapping else _UNWRAP_STATES
    if key.state not in states:
        raise KmipError(ResultReason.WRONG_KEY_LIFECYCLE_STATE,
                        f"a wrapping key in state {key.state.name} cannot be used")
    usage = CryptographicUsageMask.WRAP_KEY if wrapping else CryptographicUsageMask.UNWRAP_KEY
    mask = key.first("Cryptographic Usage Mask")
    if mask is not None and not mask.value & usage:
        raise KmipError(ResultReason.INCOMPATIBLE_CRYPTOGRAPHIC_USAGE_MASK,
                        f"the wrapping key's usage mask does not allow {usage.name}")
    return key


def _material(block: KeyBlock) -> bytes:
    if not isinstance(block.key_value, KeyValue):
        raise invalid_field("the wrapping key is itself wrapped")
    material: Any = block.key_value.key_material
    if isinstance(material, Item):
        inner = next((c.value for c in material.value if c.tag == Tag.KEY), None)
        if isinstance(inner, bytes):
            return inner
        raise KmipError(ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED,
                        "the wrapping key's format cannot wrap")
    return bytes(material)


def _aes_mode(params: CryptographicParameters) -> int:
    mode = params.block_cipher_mode or BlockCipherMode.NISTKEYWRAP
    if mode not in (BlockCipherMode.NISTKEYWRAP, BlockCipherMode.AESKEYWRAPPADDING):
        raise KmipError(ResultReason.FEATURE_NOT_SUPPORTED,
                        "AES keys wrap with NISTKeyWrap or AESKeyWrapPadding")
    return int(mode)


def _oaep(params: CryptographicParameters) -> CryptographicParameters:
    method = params.padding_method or PaddingMethod.OAEP
    if method != PaddingMethod.OAEP:
        raise KmipError(ResultReason.FEATURE_NOT_SUPPORTED, "RSA keys wrap with OAEP")
    return replace(params, padding_method=PaddingMethod.OAEP,
                   hashing_algorithm=params.hashing_algorithm or HashingAlgorithm.SHA_1)


def _encrypt(key: ManagedObject, params: CryptographicParameters, data: bytes) -> bytes:
    block = key_block(key, "the wrapping object is not a key")
    algorithm = params.cryptographic_algorithm or block.cryptographic_algorithm
    if key.object_type == ObjectType.SYMMETRIC_KEY and algorithm == CryptographicAlgorithm.AES:
        secret = _material(block)
        try:
            if _aes_mode(params) == BlockCipherMode.AESKEYWRAPPADDING:
                return keywrap.aes_key_wrap_with_padding(secret, data)
            return keywrap.aes_key_wrap(secret, data)
        except ValueError as error:
            raise crypto.crypto_failure(f"key wrap failed: {error}") from None
    if key.object_type == ObjectType.PUBLIC_KEY and algorithm == CryptographicAlgorithm.RSA:
        public = crypto.load_public_key(_der(block))
        if isinstance(public, rsa.RSAPublicKey):
            return crypto.rsa_encrypt(public, _oaep(params), data)
    raise KmipError(ResultReason.FEATURE_NOT_SUPPORTED,
                    "a key wraps under an AES key or an RSA public key")


def _decrypt(key: ManagedObject, params: CryptographicParameters, data: bytes) -> bytes:
    block = key_block(key, "the wrapping object is not a key")
    algorithm = params.cryptographic_algorithm or block.cryptographic_algorithm
    if key.object_type == ObjectType.SYMMETRIC_KEY and algorithm == CryptographicAlgorithm.AES:
        secret = _material(block)
        try:
            if _aes_mode(params) == BlockCipherMode.AESKEYWRAPPADDING:
                return keywrap.aes_key_unwrap_with_padding(secret, data)
            return keywrap.aes_key_unwrap(secret, data)
        except (keywrap.InvalidUnwrap, ValueError):
            raise crypto.crypto_failure("the wrapped key does not unwrap under that key") from None
    if key.object_type == ObjectType.PRIVATE_KEY and algorithm == CryptographicAlgorithm.RSA:
        private = crypto.load_private_key(_der(block))
        if isinstance(private, rsa.RSAPrivateKey):
            return crypto.rsa_decrypt(private, _oaep(params), data)
    raise KmipError(ResultReason.FEATURE_NOT_SUPPORTED,
                    "a key unwraps under an AES key or an RSA private key")


def _der(block: KeyBlock) -> bytes:
    if block.key_format_type not in (KeyFormatType.PKCS_1, KeyFormatType.PKCS_8,
                                     KeyFormatType.X_509):
        raise KmipError(ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED,
                        "RSA wrapping keys are used in PKCS#1, PKCS#8 or X.509 format")
    return _material(block)
