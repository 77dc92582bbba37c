"""Derive Key: a new symmetric key or secret derived from a key or secret the client holds.

KMIP 1.4 section 4.6 and 2.1 section 6.1.11. The base object is one Active
symmetric key or Secret Data of the caller's scope whose usage mask (if it has one)
allows Derive Key. The derived object is committed with one ``CreateFromSources``
command that also links it to its base both ways (Derivation Base Object on the
new object, Derived Key on the base).

What each Derivation Method computes, with the base object's bytes as the secret
and the Hashing Algorithm of the Derivation Parameters' Cryptographic Parameters
(SHA-256 when none is named):

- PBKDF2 (RFC 8018): the base is the password; Salt and Iteration Count required.
- HMAC and HKDF: HKDF (RFC 5869) with Salt as its salt and Derivation Data as its
  info, the HMAC-based derivation PyKMIP's server also computes, so that both
  servers derive the same key from the same inputs.
- HASH: the digest of the base bytes followed by the Derivation Data, cut to length.
- ENCRYPT: the Derivation Data encrypted under the base key with the Cryptographic
  Parameters and Initialization Vector given, cut to length.
- NIST800-108-C: SP 800-108 KDF in counter mode with HMAC (a 32-bit counter before
  the fixed input, which is the Derivation Data).

The feedback and double-pipeline modes of SP 800-108, Asymmetric Key and AWS
Signature Version 4 are answered Feature Not Supported: `cryptography` has no
feedback or pipeline KBKDF, and no case or client we know asks for the others.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from keyquorum.cluster.state import (
    CreateFromSources,
    CreateObject,
    ManagedObject,
    StoredAttribute,
)
from keyquorum.cluster.state import UniqueIdentifier as ObjectId

from .. import crypto
from ..errors import KmipError, invalid_field
from ..mapping import to_item
from ..objects import CryptographicParameters, KeyBlock, KeyValue, SecretData, SymmetricKey
from ..payloads import DerivationParameters, DeriveKeyRequestPayload, DeriveKeyResponsePayload
from ..tables import (
    CryptographicAlgorithm,
    CryptographicUsageMask,
    DerivationMethod,
    HashingAlgorithm,
    KeyFormatType,
    LinkType,
    ObjectType,
    ResultReason,
    SecretDataType,
    State,
    Tag,
)
from ..ttlv import Item, encode_item
from .context import Context
from .keypair_ops import requested_attributes
from .object_ops import checked_attributes, server_attributes
from .rekey_ops import link_value
from .stored_keys import key_block

# PBKDF2 costs the node CPU in proportion to the count: a million SHA-256 rounds is
# about a second here, above what password guidance asks (600,000 for SHA-256 in
# OWASP's 2023 table), and bounds what one request can take.
MAX_ITERATIONS = 1_000_000

# The longest key a derivation makes: the longest HMAC key Create makes (4096 bits).
MAX_DERIVED_BITS = 4096

_BASE_TYPES = (ObjectType.SYMMETRIC_KEY, ObjectType.SECRET_DATA)


async def derive_key(ctx: Context, payload: DeriveKeyRequestPayload
                     ) -> DeriveKeyResponsePayload:
    if payload.object_type not in _BASE_TYPES:
        raise KmipError(ResultReason.INVALID_OBJECT_TYPE,
                        "Derive Key makes a Symmetric Key or Secret Data")
    if len(payload.unique_identifiers) > 1:
        raise invalid_field("these derivation methods take one base object")
    base = await ctx.read(payload.unique_identifiers[0] if payload.unique_identifiers
                          else None)
    secret = _base_secret(base)

    # First the length and algorithm the client asks for.
    attributes = checked_attributes(requested_attributes(payload.template_attribute,
                                                         payload.attributes))
    length = _value(attributes, "Cryptographic Length")
    algorithm = _value(attributes, "Cryptographic Algorithm")
    if length is None or length <= 0 or length % 8 or length > MAX_DERIVED_BITS:
        raise invalid_field(f"give a Cryptographic Length in bits, a multiple of 8 up to "
                            f"{MAX_DERIVED_BITS}")
    if payload.object_type == ObjectType.SYMMETRIC_KEY:
        if algorithm not in CryptographicAlgorithm._value2member_map_:
            raise invalid_field("a derived Symmetric Key needs a Cryptographic Algorithm")
        if algorithm == CryptographicAlgorithm.AES and length not in (128, 192, 256):
            raise invalid_field("an AES key is 128, 192 or 256 bits")

    # Then the bytes, off the event loop: PBKDF2 is slow on purpose.
    derived = await asyncio.to_thread(_derive, int(payload.derivation_method), secret,
                                      payload.derivation_parameters, length // 8)

    # Last the object, linked to its base both ways, in one command.
    material = _object(payload.object_type, derived, algorithm, length)
    now = ctx.now()
    uid = ObjectId(str(uuid.uuid4()))
    attributes.append(StoredAttribute("Link", link_value(LinkType.DERIVATION_BASE_OBJECT_LINK,
                                                       base.uid)))
    attributes += server_attributes(material, now, generated=False, given=attributes)
    create = CreateObject(scope=ctx.scope, uid=uid, object_type=ObjectType(payload.object_type),
                          attributes=tuple(attributes), material=encode_item(material), now=now)
    await ctx.write(CreateFromSources(
        scope=ctx.scope, objects=(create,),
        links=((base.uid, link_value(LinkType.DERIVED_KEY_LINK, uid)),), names_moved=(), now=now))
    return DeriveKeyResponsePayload(unique_identifier=uid)


def _base_secret(base: ManagedObject) -> bytes:
    """The base object's bytes, if it may be derived from now."""
    if base.object_type not in _BASE_TYPES:
        raise KmipError(ResultReason.INVALID_OBJECT_TYPE,
                        "keys are derived from a Symmetric Key or Secret Data")
    if base.material is None or base.state != State.ACTIVE:
        raise KmipError(ResultReason.WRONG_KEY_LIFECYCLE_STATE,
                        "the base object must be Active to derive from")
    mask = base.first("Cryptographic Usage Mask")
    if mask is not None and not mask.value & CryptographicUsageMask.DERIVE_KEY:
        raise KmipError(ResultReason.INCOMPATIBLE_CRYPTOGRAPHIC_USAGE_MASK,
                        "the base object's usage mask does not allow Derive Key")
    block = key_block(base, "the base object has no key block")
    if not isinstance(block.key_value, KeyValue):
        raise invalid_field("the base object is stored wrapped")
    material: Any = block.key_value.key_material
    if isinstance(material, Item):
        material = next((c.value for c in material.value if c.tag == Tag.KEY), None)
    if not isinstance(material, bytes):
        raise KmipError(ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED,
                        "the base object's format cannot be derived from")
    return material


def _derive(method: int, secret: bytes, params: DerivationParameters, size: int) -> bytes:
    """``size`` bytes derived from ``secret`` by ``method``."""
    crypto_params = params.cryptographic_parameters or CryptographicParameters()
    digest = crypto.hash_algorithm(crypto_params.hashing_algorithm, HashingAlgorithm.SHA_256)
    data = params.derivation_data or b""
    if method == DerivationMethod.PBKDF2:
        if params.salt is None or params.iteration_count is None:
            raise invalid_field("PBKDF2 needs a Salt and an Iteration Count")
        if not 1 <= params.iteration_count <= MAX_ITERATIONS:
            raise invalid_field(f"Iteration Count must be 1 to {MAX_ITERATIONS}")
        return PBKDF2HMAC(digest, size, params.salt, params.iteration_count).derive(secret)
    if method in (DerivationMethod.HMAC, DerivationMethod.HKDF):
        try:
            return HKDF(digest, size, params.salt, data).derive(secret)
        except ValueError as error:
            raise invalid_field(f"cannot derive that much: {error}") from None
    if method == DerivationMethod.HASH:
        hashed = crypto.digest(crypto_params.hashing_algorithm or HashingAlgorithm.SHA_256,
                               secret + data)
        return _cut(hashed, size)
    if method == DerivationMethod.ENCRYPT:
        return _cut(_encrypted(secret, crypto_params, params.initialization_vector, data), size)
    if method == DerivationMethod.NIST800_108_C:
        kdf = KBKDFHMAC(digest, Mode.CounterMode, size, rlen=4, llen=None,
                        location=CounterLocation.BeforeFixed, label=None, context=None,
                        fixed=data)
        return kdf.derive(secret)
    raise KmipError(ResultReason.FEATURE_NOT_SUPPORTED,
                    f"derivation method {method} is not supported")


def _encrypted(key: bytes, params: CryptographicParameters, iv: bytes | None,
               data: bytes) -> bytes:
    if not data:
        raise invalid_field("the Encrypt derivation method needs Derivation Data")
    algorithm = params.cryptographic_algorithm or CryptographicAlgorithm.AES
    cipher = crypto.start_cipher(True, int(algorithm), key, params, iv, None)
    out = cipher.update(data)
    return out + cipher.finalize().data


def _cut(data: bytes, size: int) -> bytes:
    if len(data) < size:
        raise invalid_field(f"this method makes {len(data) * 8} bits, fewer than asked for")
    return data[:size]


def _object(object_type: int, derived: bytes, algorithm: Any, length: int) -> Item:
    if object_type == ObjectType.SYMMETRIC_KEY:
        key = SymmetricKey(key_block=KeyBlock(
            key_format_type=KeyFormatType.RAW,
            key_value=KeyValue(key_material=derived),
            cryptographic_algorithm=CryptographicAlgorithm(int(algorithm)),
            cryptographic_length=length,
        ))
        return to_item(key, Tag.SYMMETRIC_KEY)
    secret = SecretData(secret_data_type=SecretDataType.SEED, key_block=KeyBlock(
        key_format_type=KeyFormatType.OPAQUE, key_value=KeyValue(key_material=derived)))
    return to_item(secret, Tag.SECRET_DATA)


def _value(attributes: list[StoredAttribute], name: str) -> Any:
    for attribute in attributes:
        if attribute.name == name:
            return attribute.value.value
    return None

