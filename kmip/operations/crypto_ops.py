"""Encrypt, Decrypt, Sign, Signature Verify, MAC, MAC Verify, Hash, RNG Retrieve and Seed.

None of these changes state, so none goes through the log: the handler reads the
key after a read barrier (a revoked key is never used) and computes here, on the
node the client talks to. Randomness a computation needs (an IV, a nonce, a PSS
salt) is drawn here too.

Multi-part operations (Init Indicator, Correlation Value, Final Indicator; KMIP 1.4
section 4.29) keep their running state in this process, in ``_STREAMS``: a client
must continue a multi-part operation on the node it started it on; on another node
the correlation value is unknown and the part is refused with Invalid Field. The
state of an abandoned operation is dropped after ``STREAM_IDLE_SECONDS`` or when
``MAX_STREAMS`` are open, oldest first.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keyquorum.cluster.state import ConsumeUsage, ManagedObject
from keyquorum.cluster.state import UniqueIdentifier as ObjectId

from .. import crypto
from ..errors import KmipError, invalid_field
from ..objects import CryptographicParameters
from ..payloads import (
    DecryptRequestPayload,
    DecryptResponsePayload,
    EncryptRequestPayload,
    EncryptResponsePayload,
    HashRequestPayload,
    HashResponsePayload,
    MACRequestPayload,
    MACResponsePayload,
    MACVerifyRequestPayload,
    MACVerifyResponsePayload,
    RNGRetrieveRequestPayload,
    RNGRetrieveResponsePayload,
    RNGSeedRequestPayload,
    RNGSeedResponsePayload,
    SignatureVerifyRequestPayload,
    SignatureVerifyResponsePayload,
    SignRequestPayload,
    SignResponsePayload,
)
from ..tables import (
    BlockCipherMode,
    CryptographicAlgorithm,
    CryptographicUsageMask,
    KeyFormatType,
    ObjectType,
    ResultReason,
    State,
    Tag,
    UsageLimitsUnit,
    ValidityIndicator,
)
from ..ttlv import Item, ItemType, decode_item
from .context import Context
from .stored_keys import parameters

log = logging.getLogger("keyquorum.kmip")

# An abandoned multi-part operation holds memory until then (a client that stops
# half-way sends nothing to say so).
STREAM_IDLE_SECONDS = 600.0
MAX_STREAMS = 1024

# RNG Retrieve hands out at most this much per request: more than any key needs,
# little enough that a request cannot make the node allocate without bound.
MAX_RANDOM_BYTES = 1 << 20

# States in which a key may protect (encrypt, sign, MAC) and process (decrypt,
# verify) information (KMIP 1.4 section 3.22).
_PROTECT_STATES = frozenset({State.ACTIVE})
_PROCESS_STATES = frozenset({State.ACTIVE, State.DEACTIVATED, State.COMPROMISED})


@dataclass
class _Stream:
    """A multi-part operation between its first and last part."""

    uid: ObjectId
    operation: str
    touched: float
    cipher: crypto.StreamCipher | None = None
    buffered: bytes = b""


_STREAMS: OrderedDict[bytes, _Stream] = OrderedDict()


def _open_stream(stream: _Stream) -> bytes:
    now = time.monotonic()
    for key in [k for k, s in _STREAMS.items() if now - s.touched > STREAM_IDLE_SECONDS]:
        del _STREAMS[key]
    while len(_STREAMS) >= MAX_STREAMS:
        _STREAMS.popitem(last=False)
    correlation = os.urandom(16)
    _STREAMS[correlation] = stream
    return correlation


def _continue_stream(correlation: bytes, operation: str) -> _Stream:
    stream = _STREAMS.get(correlation)
    if stream is None or stream.operation != operation:
        raise invalid_field("unknown Correlation Value: continue a multi-part operation "
                            "on the node it started on, within "
                            f"{int(STREAM_IDLE_SECONDS)} seconds")
    stream.touched = time.monotonic()
    return stream


# Reading keys.


@dataclass(frozen=True)
class _Key:
    obj: ManagedObject
    algorithm: int | None
    format: int | None
    material: bytes | Item | None


async def _key(ctx: Context, requested: Any, protect: bool, usage: int,
               used: bytes | None = None) -> _Key:
    """The key an operation names, refused unless its state and dates allow the use.

    A protecting use of ``used`` bytes spends the key's Usage Limits, if it has any.
    """
    obj = await ctx.read(requested)
    if obj.material is None:
        raise KmipError(ResultReason.WRONG_KEY_LIFECYCLE_STATE, "the key was destroyed")
    now = ctx.now()
    if protect:
        stop = obj.first("Protect Stop Date")
        if obj.state not in _PROTECT_STATES or (stop is not None and stop.value <= now):
            raise KmipError(ResultReason.WRONG_KEY_LIFECYCLE_STATE,
                            "the key may not protect information now")
    else:
        start = obj.first("Process Start Date")
        if obj.state not in _PROCESS_STATES or (start is not None and start.value > now):
            raise KmipError(ResultReason.WRONG_KEY_LIFECYCLE_STATE,
                            "the key may not process information now")
    mask = obj.first("Cryptographic Usage Mask")
    if mask is not None and not mask.value & usage:
        raise KmipError(ResultReason.INCOMPATIBLE_CRYPTOGRAPHIC_USAGE_MASK,
                        f"the key's usage mask does not allow {CryptographicUsageMask(usage).name}")
    if protect and used is not None:
        await _consume(ctx, obj, used)

    block = _child(decode_item(obj.material), Tag.KEY_BLOCK)
    if block is None:
        raise KmipError(ResultReason.INVALID_OBJECT_TYPE, "the object is not a key")
    algorithm_item = obj.first("Cryptographic Algorithm")
    algorithm = _value(block, Tag.CRYPTOGRAPHIC_ALGORITHM)
    if algorithm_item is not None:
        algorithm = algorithm_item.value
    key_value = _child(block, Tag.KEY_VALUE)
    material = None
    if key_value is not None and key_value.type == ItemType.STRUCTURE:
        found = _child(key_value, Tag.KEY_MATERIAL)
        material = None if found is None else found.value if found.type == ItemType.BYTE_STRING \
            else found
    return _Key(obj, algorithm, _value(block, Tag.KEY_FORMAT_TYPE), material)


async def _consume(ctx: Context, obj: ManagedObject, used: bytes) -> None:
    """Spend the key's Usage Limits through the log, so every node counts the same.

    Only a key with limits pays for the write; the state refuses an overdraft.
    """
    limits = obj.first("Usage Limits")
    if limits is None:
        return
    unit = next((i.value for i in limits.value if i.tag == Tag.USAGE_LIMITS_UNIT), None)
    amount = 1 if unit == UsageLimitsUnit.OBJECT else len(used)
    await ctx.write(ConsumeUsage(ctx.scope, obj.uid, amount, ctx.now()))


def _child(item: Item, tag: int) -> Item | None:
    for child in item.value:
        if child.tag == tag:
            return child
    return None


def _value(item: Item, tag: int) -> Any:
    found = _child(item, tag)
    return None if found is None else found.value


def _secret(key: _Key) -> bytes:
    """The bytes of a symmetric key or secret, Raw or Transparent Symmetric Key."""
    if isinstance(key.material, bytes):
        return key.material
    if isinstance(key.material, Item):
        inner = _value(key.material, Tag.KEY)
        if isinstance(inner, bytes):
            return inner
    raise KmipError(ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED,
                    "the key's format cannot be used for this operation")


def _der(key: _Key) -> bytes:
    if isinstance(key.material, bytes) and key.format in (
        KeyFormatType.PKCS_1, KeyFormatType.PKCS_8, KeyFormatType.X_509, KeyFormatType.RAW
    ):
        return key.material
    raise KmipError(ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED,
                    "asymmetric keys are used in PKCS#1, PKCS#8 or X.509 format")


def _algorithm(key: _Key, params: CryptographicParameters) -> int:
    algorithm = params.cryptographic_algorithm or key.algorithm
    if algorithm is None:
        raise invalid_field("the key has no Cryptographic Algorithm")
    return int(algorithm)


# Encrypt and Decrypt.


async def encrypt(ctx: Context, payload: EncryptRequestPayload) -> EncryptResponsePayload:
    return await _cipher(ctx, payload, encrypting=True)  # type: ignore[return-value]


async def decrypt(ctx: Context, payload: DecryptRequestPayload) -> DecryptResponsePayload:
    return await _cipher(ctx, payload, encrypting=False)  # type: ignore[return-value]


async def _cipher(
    ctx: Context, payload: EncryptRequestPayload | DecryptRequestPayload, encrypting: bool
) -> EncryptResponsePayload | DecryptResponsePayload:
    name = "encrypt" if encrypting else "decrypt"
    usage = CryptographicUsageMask.ENCRYPT if encrypting else CryptographicUsageMask.DECRYPT
    key = await _key(ctx, payload.unique_identifier, encrypting, usage, payload.data or b"")
    uid = key.obj.uid
    params = parameters(key.obj, payload.cryptographic_parameters)
    algorithm = _algorithm(key, params)
    data = payload.data or b""
    tag = getattr(payload, "authenticated_encryption_tag", None)

    # A later part of a multi-part operation continues the cipher it started.
    if payload.correlation_value is not None:
        stream = _continue_stream(payload.correlation_value, name)
        assert stream.cipher is not None
        out = stream.cipher.update(data)
        if not payload.final_indicator:
            return _cipher_answer(encrypting, uid, out, correlation=payload.correlation_value)
        del _STREAMS[payload.correlation_value]
        end = stream.cipher.finalize(None if encrypting else tag)
        return _cipher_answer(encrypting, uid, out + end.data, tag=end.tag)

    # Asymmetric keys encrypt and decrypt in one part.
    if algorithm == CryptographicAlgorithm.RSA:
        if encrypting:
            public = crypto.load_public_key(_der(key))
            if not isinstance(public, crypto.rsa.RSAPublicKey):
                raise invalid_field("RSA encryption needs an RSA public key")
            return _cipher_answer(True, uid, crypto.rsa_encrypt(public, params, data))
        private = crypto.load_private_key(_der(key))
        if not isinstance(private, crypto.rsa.RSAPrivateKey):
            raise invalid_field("RSA decryption needs an RSA private key")
        return _cipher_answer(False, uid, crypto.rsa_decrypt(private, params, data))

    secret = _secret(key)
    mode = params.block_cipher_mode
    if mode in (BlockCipherMode.NISTKEYWRAP, BlockCipherMode.AESKEYWRAPPADDING):
        return _cipher_answer(encrypting, uid, crypto.key_wrap(encrypting, secret, data))

    # The IV: the client's, or one drawn here and returned (Random IV, or none given).
    iv = payload.iv_counter_nonce
    drawn = None
    if encrypting and iv is None and (params.random_iv or crypto.needs_iv(algorithm, mode)):
        iv = drawn = crypto.fresh_iv(algorithm, params)
    aad = payload.authenticated_encryption_additional_data

    aead = algorithm == CryptographicAlgorithm.CHACHA20POLY1305 or mode == BlockCipherMode.AEAD
    if (aead or mode == BlockCipherMode.GCM) and params.tag_length is not None and not (
        crypto.MIN_TAG_BYTES <= params.tag_length <= 16
    ):
        # General Failure, not Invalid Field: the reason the OASIS cases (CS-BC-M-GCM-1)
        # give for a tag length the algorithm cannot produce.
        raise KmipError(ResultReason.GENERAL_FAILURE,
                        f"Tag Length must be {crypto.MIN_TAG_BYTES} to 16 bytes")

    if aead:
        if iv is None:
            raise invalid_field("ChaCha20-Poly1305 needs a nonce")
        result = crypto.aead(encrypting, secret, iv, data, aad, tag)
        sent_tag = result.tag[:params.tag_length] if result.tag and params.tag_length else \
            result.tag
        return _cipher_answer(encrypting, uid, result.data, iv=drawn, tag=sent_tag)

    cipher = crypto.start_cipher(encrypting, algorithm, secret, params, iv, aad)
    out = cipher.update(data)
    if payload.init_indicator and not payload.final_indicator:
        correlation = _open_stream(_Stream(uid, name, time.monotonic(), cipher))
        return _cipher_answer(encrypting, uid, out, iv=drawn, correlation=correlation)
    if mode == BlockCipherMode.GCM and not encrypting and tag is None:
        raise invalid_field("GCM decryption needs the Authenticated Encryption Tag")
    end = cipher.finalize(None if encrypting else tag)
    return _cipher_answer(encrypting, uid, out + end.data, iv=drawn, tag=end.tag)


def _cipher_answer(
    encrypting: bool, uid: ObjectId, data: bytes, iv: bytes | None = None,
    tag: bytes | None = None, correlation: bytes | None = None,
) -> EncryptResponsePayload | DecryptResponsePayload:
    if encrypting:
        return EncryptResponsePayload(unique_identifier=uid, data=data, iv_counter_nonce=iv,
                                      correlation_value=correlation,
                                      authenticated_encryption_tag=tag)
    return DecryptResponsePayload(unique_identifier=uid, data=data,
                                  correlation_value=correlation)


# Sign and Signature Verify.


async def sign(ctx: Context, payload: SignRequestPayload) -> SignResponsePayload:
    key = await _key(ctx, payload.unique_identifier, True, CryptographicUsageMask.SIGN)
    if key.obj.object_type != ObjectType.PRIVATE_KEY:
        raise KmipError(ResultReason.INVALID_OBJECT_TYPE, "Sign needs a private key")
    params = parameters(key.obj, payload.cryptographic_parameters)

    data, correlation = _gather(payload, "sign", key.obj.uid)
    if data is None:
        return SignResponsePayload(unique_identifier=key.obj.uid, correlation_value=correlation)
    private = crypto.load_private_key(_der(key))
    signature = crypto.sign(private, params, data if payload.digested_data is None else None,
                            payload.digested_data)
    return SignResponsePayload(unique_identifier=key.obj.uid, signature_data=signature)


async def signature_verify(
    ctx: Context, payload: SignatureVerifyRequestPayload
) -> SignatureVerifyResponsePayload:
    key = await _key(ctx, payload.unique_identifier, False, CryptographicUsageMask.VERIFY)
    params = parameters(key.obj, payload.cryptographic_parameters)

    data, correlation = _gather(payload, "verify", key.obj.uid)
    if data is None:
        return SignatureVerifyResponsePayload(unique_identifier=key.obj.uid,
                                              correlation_value=correlation)
    if payload.signature_data is None:
        raise invalid_field("Signature Verify needs the Signature Data")
    if key.obj.object_type == ObjectType.PRIVATE_KEY:
        public: crypto.PublicKey = crypto.load_private_key(_der(key)).public_key()
    elif key.obj.object_type == ObjectType.PUBLIC_KEY:
        public = crypto.load_public_key(_der(key))
    else:
        raise KmipError(ResultReason.INVALID_OBJECT_TYPE, "Signature Verify needs a public key")
    valid = crypto.verify(public, params, data if payload.digested_data is None else None,
                          payload.digested_data, payload.signature_data)
    return SignatureVerifyResponsePayload(
        unique_identifier=key.obj.uid,
        validity_indicator=ValidityIndicator.VALID if valid else ValidityIndicator.INVALID,
    )


# MAC and MAC Verify.


async def mac(ctx: Context, payload: MACRequestPayload) -> MACResponsePayload:
    key = await _key(ctx, payload.unique_identifier, True, CryptographicUsageMask.MAC_GENERATE)
    params = parameters(key.obj, payload.cryptographic_parameters)
    data, correlation = _gather(payload, "mac", key.obj.uid)
    if data is None:
        return MACResponsePayload(unique_identifier=key.obj.uid, correlation_value=correlation)
    value = crypto.mac(_algorithm(key, params), _secret(key), data)
    return MACResponsePayload(unique_identifier=key.obj.uid, mac_data=value)


async def mac_verify(ctx: Context, payload: MACVerifyRequestPayload) -> MACVerifyResponsePayload:
    key = await _key(ctx, payload.unique_identifier, False, CryptographicUsageMask.MAC_VERIFY)
    params = parameters(key.obj, payload.cryptographic_parameters)
    data, correlation = _gather(payload, "mac-verify", key.obj.uid)
    if data is None:
        return MACVerifyResponsePayload(unique_identifier=key.obj.uid,
                                        correlation_value=correlation)
    if payload.mac_data is None:
        raise invalid_field("MAC Verify needs the MAC Data")
    value = crypto.mac(_algorithm(key, params), _secret(key), data)
    valid = hmac.compare_digest(value, payload.mac_data)
    return MACVerifyResponsePayload(
        unique_identifier=key.obj.uid,
        validity_indicator=ValidityIndicator.VALID if valid else ValidityIndicator.INVALID,
    )


# Multi-part data for operations that need all of it at the end.


def _gather(payload: Any, operation: str, uid: ObjectId) -> tuple[bytes | None, bytes | None]:
    """All the data of a one-part operation, or of a multi-part one at its last part.

    Returns the data and None, or, while parts are still to come, None and the
    correlation value to answer with.
    """
    data = payload.data or b""
    if payload.correlation_value is not None:
        stream = _continue_stream(payload.correlation_value, operation)
        stream.buffered += data
        if not payload.final_indicator:
            return None, payload.correlation_value
        del _STREAMS[payload.correlation_value]
        return stream.buffered, None
    if payload.init_indicator and not payload.final_indicator:
        return None, _open_stream(_Stream(uid, operation, time.monotonic(), buffered=data))
    if payload.data is None and getattr(payload, "digested_data", None) is None:
        raise invalid_field("the request has no Data")
    return data, None


# Hash and the RNG.


async def hash_data(ctx: Context, payload: HashRequestPayload) -> HashResponsePayload:
    algorithm = payload.cryptographic_parameters.hashing_algorithm \
        if payload.cryptographic_parameters is not None else None
    if algorithm is None:
        raise invalid_field("Hash needs Cryptographic Parameters with a Hashing Algorithm")
    if payload.data is None:
        raise invalid_field("Hash needs Data")
    return HashResponsePayload(data=crypto.digest(algorithm, payload.data))


async def rng_retrieve(ctx: Context, payload: RNGRetrieveRequestPayload
                       ) -> RNGRetrieveResponsePayload:
    length = payload.data_length
    if length <= 0 or length > MAX_RANDOM_BYTES:
        raise invalid_field(f"Data Length must be 1 to {MAX_RANDOM_BYTES} bytes")
    return RNGRetrieveResponsePayload(data=os.urandom(length))


# Where RNG Seed puts a client's seed: writing to it mixes the bytes into the
# kernel's pool without crediting any entropy (random(4)), so a seed can add
# unpredictability but never take any away or steer what other clients draw.
KERNEL_POOL = Path("/dev/urandom")

# The most seed bytes one request mixes in: the pool's state is a few hundred bits,
# so more adds nothing but time spent writing; the answer says how much was taken.
MAX_SEED_BYTES = 1024


async def rng_seed(ctx: Context, payload: RNGSeedRequestPayload) -> RNGSeedResponsePayload:
    # Keys are drawn from the kernel generator of the node that receives a request,
    # so the seed goes into this node's pool only; it is no state to replicate.
    accepted = payload.data[:MAX_SEED_BYTES]
    try:
        with KERNEL_POOL.open("wb", buffering=0) as pool:
            pool.write(accepted)
    except OSError as error:
        # Data Length 0 tells the client, truthfully, that nothing was used
        # (KMIP 1.4 section 4.36).
        log.warning("rng seed not mixed in: error=%s", error.strerror)
        return RNGSeedResponsePayload(data_length=0)
    return RNGSeedResponsePayload(data_length=len(accepted))
