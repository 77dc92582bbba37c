"""The cryptography KMIP operations compute, on top of the `cryptography` library.

Pure functions of keys, parameters and data: no state, no I/O, no randomness except
where the caller asks for a fresh key, IV or signature. Everything a client can get
wrong (an unknown mode, a bad padding, a tag that does not verify) raises
``KmipError`` with the Result Reason the client receives.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import (
    cmac,
    constant_time,
    hashes,
    hmac,
    keywrap,
    serialization,
)
from cryptography.hazmat.primitives import padding as block_padding
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import KmipError
from .objects import CryptographicParameters
from .tables import (
    BlockCipherMode,
    CryptographicAlgorithm,
    DigitalSignatureAlgorithm,
    HashingAlgorithm,
    PaddingMethod,
    ResultReason,
)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

_HASHES: dict[int, Callable[[], hashes.HashAlgorithm]] = {
    HashingAlgorithm.SHA_1: hashes.SHA1,
    HashingAlgorithm.SHA_224: hashes.SHA224,
    HashingAlgorithm.SHA_256: hashes.SHA256,
    HashingAlgorithm.SHA_384: hashes.SHA384,
    HashingAlgorithm.SHA_512: hashes.SHA512,
    HashingAlgorithm.SHA3_224: hashes.SHA3_224,
    HashingAlgorithm.SHA3_256: hashes.SHA3_256,
    HashingAlgorithm.SHA3_384: hashes.SHA3_384,
    HashingAlgorithm.SHA3_512: hashes.SHA3_512,
    HashingAlgorithm.MD5: hashes.MD5,
}

# HMAC algorithms and the hash each uses.
HMAC_HASHES: dict[int, int] = {
    CryptographicAlgorithm.HMAC_SHA1: HashingAlgorithm.SHA_1,
    CryptographicAlgorithm.HMAC_SHA224: HashingAlgorithm.SHA_224,
    CryptographicAlgorithm.HMAC_SHA256: HashingAlgorithm.SHA_256,
    CryptographicAlgorithm.HMAC_SHA384: HashingAlgorithm.SHA_384,
    CryptographicAlgorithm.HMAC_SHA512: HashingAlgorithm.SHA_512,
    CryptographicAlgorithm.HMAC_SHA3_224: HashingAlgorithm.SHA3_224,
    CryptographicAlgorithm.HMAC_SHA3_256: HashingAlgorithm.SHA3_256,
    CryptographicAlgorithm.HMAC_SHA3_384: HashingAlgorithm.SHA3_384,
    CryptographicAlgorithm.HMAC_SHA3_512: HashingAlgorithm.SHA3_512,
}

# Signature algorithms that name their hash and padding in one value.
_SIGNATURE_ALGORITHMS: dict[int, tuple[int, int | None]] = {
    DigitalSignatureAlgorithm.SHA_1_WITH_RSA_ENCRYPTION: (HashingAlgorithm.SHA_1,
                                                          PaddingMethod.PKCS1_V1_5),
    DigitalSignatureAlgorithm.SHA_256_WITH_RSA_ENCRYPTION: (HashingAlgorithm.SHA_256,
                                                            PaddingMethod.PKCS1_V1_5),
    DigitalSignatureAlgorithm.SHA_384_WITH_RSA_ENCRYPTION: (HashingAlgorithm.SHA_384,
                                                            PaddingMethod.PKCS1_V1_5),
    DigitalSignatureAlgorithm.SHA_512_WITH_RSA_ENCRYPTION: (HashingAlgorithm.SHA_512,
                                                            PaddingMethod.PKCS1_V1_5),
    DigitalSignatureAlgorithm.RSASSA_PSS: (HashingAlgorithm.SHA_256, PaddingMethod.PSS),
    DigitalSignatureAlgorithm.ECDSA_WITH_SHA_1: (HashingAlgorithm.SHA_1, None),
    DigitalSignatureAlgorithm.ECDSA_WITH_SHA224: (HashingAlgorithm.SHA_224, None),
    DigitalSignatureAlgorithm.ECDSA_WITH_SHA256: (HashingAlgorithm.SHA_256, None),
    DigitalSignatureAlgorithm.ECDSA_WITH_SHA384: (HashingAlgorithm.SHA_384, None),
    DigitalSignatureAlgorithm.ECDSA_WITH_SHA512: (HashingAlgorithm.SHA_512, None),
}

# Modes that take an IV, nonce or counter, and its length in bytes when the server
# draws one (NIST SP 800-38A/D: a block for CBC/CFB/OFB/CTR, 96 bits for GCM).
_IV_LENGTH: dict[int, int] = {
    BlockCipherMode.CBC: 16, BlockCipherMode.CFB: 16, BlockCipherMode.OFB: 16,
    BlockCipherMode.CTR: 16, BlockCipherMode.GCM: 12, BlockCipherMode.XTS: 16,
    BlockCipherMode.AEAD: 12,
}


# The shortest authentication tag a decryption accepts (GCM and ChaCha20-Poly1305).
MIN_TAG_BYTES = 4


def crypto_failure(message: str) -> KmipError:
    return KmipError(ResultReason.CRYPTOGRAPHIC_FAILURE, message)


def not_supported(message: str) -> KmipError:
    return KmipError(ResultReason.CRYPTOGRAPHIC_FAILURE, message)


def hash_algorithm(value: int | None, default: int = HashingAlgorithm.SHA_256
                   ) -> hashes.HashAlgorithm:
    factory = _HASHES.get(default if value is None else value)
    if factory is None:
        raise not_supported(f"hashing algorithm {value} is not supported")
    return factory()


def digest(algorithm: int, data: bytes) -> bytes:
    hasher = hashes.Hash(hash_algorithm(algorithm))
    hasher.update(data)
    return hasher.finalize()


# Symmetric ciphers.


@dataclass(frozen=True)
class SymmetricResult:
    data: bytes
    iv: bytes | None = None
    tag: bytes | None = None


def iv_length(mode: int | None) -> int | None:
    return _IV_LENGTH.get(mode) if mode is not None else None


def needs_iv(algorithm: int, mode: int | None) -> bool:
    if algorithm in (CryptographicAlgorithm.CHACHA20, CryptographicAlgorithm.CHACHA20POLY1305):
        return True
    return mode is not None and mode in _IV_LENGTH


def fresh_iv(algorithm: int, params: CryptographicParameters) -> bytes:
    """An IV, counter block or nonce for a mode that needs one, drawn here."""
    if algorithm == CryptographicAlgorithm.CHACHA20:
        return os.urandom(16)
    length = params.iv_length // 8 if params.iv_length else iv_length(params.block_cipher_mode)
    if algorithm == CryptographicAlgorithm.DES3 and length == 16:
        length = 8
    return os.urandom(length or 16)


def _block_algorithm(algorithm: int, key: bytes) -> Any:
    try:
        if algorithm == CryptographicAlgorithm.AES:
            return algorithms.AES(key)
        if algorithm == CryptographicAlgorithm.DES3:
            return TripleDES(key)
    except ValueError as error:
        raise crypto_failure(f"unusable key: {error}") from None
    raise not_supported(f"algorithm {algorithm} is not a block cipher this server runs")


def _mode(mode: int, iv: bytes | None) -> Any:
    try:
        if mode == BlockCipherMode.ECB:
            return modes.ECB()
        if iv is None:
            # The request lacks a field the operation needs: the OASIS cases (CS-BC-M-12)
            # answer Invalid Message, not a cryptographic failure.
            raise KmipError(ResultReason.INVALID_MESSAGE,
                            "this mode needs an IV, counter or nonce: send IV/Counter/Nonce")
        if mode == BlockCipherMode.CBC:
            return modes.CBC(iv)
        if mode == BlockCipherMode.CFB:
            return modes.CFB(iv)
        if mode == BlockCipherMode.OFB:
            return modes.OFB(iv)
        if mode == BlockCipherMode.CTR:
            return modes.CTR(iv)
        if mode == BlockCipherMode.XTS:
            return modes.XTS(iv)
        if mode == BlockCipherMode.GCM:
            # A client may send a truncated tag (Tag Length, NIST SP 800-38D section
            # 5.2.1.2 allows 4 to 16 bytes); only decryption reads this bound.
            return modes.GCM(iv, min_tag_length=MIN_TAG_BYTES)
    except ValueError as error:
        raise crypto_failure(f"bad IV or tag: {error}") from None
    raise not_supported(f"block cipher mode {mode} is not supported")


def _padded(params: CryptographicParameters, mode: int) -> bool:
    method = params.padding_method
    if method in (None, PaddingMethod.NONE):
        return False
    if method not in (PaddingMethod.PKCS5, PaddingMethod.PKCS1_V1_5) or mode not in (
        BlockCipherMode.ECB, BlockCipherMode.CBC
    ):
        raise not_supported(f"padding method {method} is not supported for mode {mode}")
    return True


class StreamCipher:
    """One encryption or decryption, fed in parts (KMIP multi-part operations)."""

    def __init__(self, context: CipherContext, padder: Any, tag_length: int | None) -> None:
        self._context = context
        self._padder = padder
        self._tag_length = tag_length

    def update(self, data: bytes) -> bytes:
        if self._padder is not None:
            data = self._padder.update(data)
        try:
            return self._context.update(data)
        except ValueError as error:
            raise crypto_failure(f"the data does not fit the mode: {error}") from None

    def finalize(self, tag: bytes | None = None) -> SymmetricResult:
        """The last output; for GCM the tag to send (encrypting) or to check (decrypting)."""
        tail = b""
        try:
            if self._padder is not None:
                tail = self._context.update(self._padder.finalize())
            if tag is not None and hasattr(self._context, "finalize_with_tag"):
                tail += self._context.finalize_with_tag(tag)
                return SymmetricResult(tail)
            tail += self._context.finalize()
        except InvalidTag:
            raise crypto_failure("the authentication tag does not verify") from None
        except ValueError as error:
            raise crypto_failure(f"the data does not fit the mode or padding: {error}") from None
        tag = getattr(self._context, "tag", None)
        if tag is not None and self._tag_length:
            tag = tag[:self._tag_length]
        return SymmetricResult(tail, tag=tag)


def start_cipher(
    encrypt: bool, algorithm: int, key: bytes, params: CryptographicParameters,
    iv: bytes | None, aad: bytes | None,
) -> StreamCipher:
    """A cipher ready for data: AES or 3DES in a block mode, or ChaCha20."""
    if algorithm == CryptographicAlgorithm.CHACHA20:
        if iv is None:
            raise crypto_failure("ChaCha20 needs a nonce")
        nonce = iv if len(iv) == 16 else (b"\0" * (16 - len(iv)) + iv)
        try:
            cipher = Cipher(algorithms.ChaCha20(key, nonce), mode=None)
        except ValueError as error:
            raise crypto_failure(f"unusable ChaCha20 key or nonce: {error}") from None
        stream = cipher.encryptor() if encrypt else cipher.decryptor()
        return StreamCipher(stream, None, None)

    mode = params.block_cipher_mode or BlockCipherMode.ECB
    block_cipher = Cipher(_block_algorithm(algorithm, key), _mode(mode, iv))
    try:
        context: Any = block_cipher.encryptor() if encrypt else block_cipher.decryptor()
    except ValueError as error:
        raise crypto_failure(f"unusable key for this mode: {error}") from None
    if aad and mode == BlockCipherMode.GCM:
        context.authenticate_additional_data(aad)
    padder = None
    if _padded(params, mode):
        block = block_padding.PKCS7(block_cipher.algorithm.block_size)  # type: ignore[attr-defined]
        padder = block.padder() if encrypt else block.unpadder()
        if not encrypt:
            return _UnpaddingCipher(context, padder)
    return StreamCipher(context, padder, params.tag_length)


class _UnpaddingCipher(StreamCipher):
    """Decryption with padding: unpad after deciphering, not before."""

    def __init__(self, context: CipherContext, unpadder: Any) -> None:
        super().__init__(context, None, None)
        self._unpadder = unpadder

    def update(self, data: bytes) -> bytes:
        return self._unpadder.update(super().update(data))

    def finalize(self, tag: bytes | None = None) -> SymmetricResult:
        last = super().finalize(tag).data
        try:
            return SymmetricResult(self._unpadder.update(last) + self._unpadder.finalize())
        except ValueError:
            raise crypto_failure("the padding is not valid") from None


def aead(encrypt: bool, key: bytes, nonce: bytes, data: bytes, aad: bytes | None,
         tag: bytes | None) -> SymmetricResult:
    """ChaCha20-Poly1305 (RFC 8439), tag apart from the ciphertext as KMIP carries it."""
    try:
        cipher = ChaCha20Poly1305(key)
        if encrypt:
            sealed = cipher.encrypt(nonce, data, aad)
            return SymmetricResult(sealed[:-16], tag=sealed[-16:])
        tag = tag or b""
        if len(tag) == 16:
            return SymmetricResult(cipher.decrypt(nonce, data + tag, aad))
        return SymmetricResult(_aead_truncated(cipher, key, nonce, data, aad, tag))
    except InvalidTag:
        raise crypto_failure("the authentication tag does not verify") from None
    except ValueError as error:
        raise crypto_failure(f"unusable key or nonce: {error}") from None


def _aead_truncated(cipher: ChaCha20Poly1305, key: bytes, nonce: bytes, data: bytes,
                    aad: bytes | None, tag: bytes) -> bytes:
    """Decrypt under a tag cut to ``len(tag)`` bytes, which the AEAD API cannot check.

    The RFC 8439 ciphertext is the ChaCha20 stream from block counter 1 XOR the
    plaintext, so decrypting is that stream again; the tag is then recomputed over
    the same inputs and its prefix compared in constant time.
    """
    if not MIN_TAG_BYTES <= len(tag) < 16 or len(nonce) != 12:
        raise InvalidTag
    stream = Cipher(algorithms.ChaCha20(key, (1).to_bytes(4, "little") + nonce), mode=None)
    plaintext = stream.decryptor().update(data)
    expected = cipher.encrypt(nonce, plaintext, aad)[-16:][:len(tag)]
    if not constant_time.bytes_eq(expected, tag):
        raise InvalidTag
    return plaintext


def key_wrap(encrypt: bool, key: bytes, data: bytes) -> bytes:
    """AES key wrap (RFC 3394), KMIP's NIST Key Wrap mode."""
    try:
        if encrypt:
            return keywrap.aes_key_wrap(key, data)
        return keywrap.aes_key_unwrap(key, data)
    except (keywrap.InvalidUnwrap, ValueError) as error:
        raise crypto_failure(f"key wrap failed: {error}") from None


# Asymmetric keys.


def load_private_key(der: bytes) -> PrivateKey:
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError) as error:
        raise KmipError(ResultReason.INVALID_FIELD, f"unreadable private key: {error}") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise not_supported("only RSA and EC private keys are supported")
    return key


def load_public_key(der: bytes) -> PublicKey:
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError) as error:
        raise KmipError(ResultReason.INVALID_FIELD, f"unreadable public key: {error}") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise not_supported("only RSA and EC public keys are supported")
    return key


def _rsa_encryption_padding(params: CryptographicParameters) -> padding.AsymmetricPadding:
    method = params.padding_method or PaddingMethod.PKCS1_V1_5
    if method == PaddingMethod.PKCS1_V1_5:
        return padding.PKCS1v15()
    if method == PaddingMethod.OAEP:
        digest_algorithm = hash_algorithm(params.hashing_algorithm, HashingAlgorithm.SHA_1)
        mgf_hash = hash_algorithm(params.mask_generator_hashing_algorithm,
                                  HashingAlgorithm.SHA_1)
        return padding.OAEP(mgf=padding.MGF1(mgf_hash), algorithm=digest_algorithm,
                            label=params.p_source or None)
    raise not_supported(f"padding method {method} is not supported for RSA encryption")


def rsa_encrypt(key: rsa.RSAPublicKey, params: CryptographicParameters, data: bytes) -> bytes:
    try:
        return key.encrypt(data, _rsa_encryption_padding(params))
    except ValueError as error:
        raise crypto_failure(f"RSA encryption failed: {error}") from None


def rsa_decrypt(key: rsa.RSAPrivateKey, params: CryptographicParameters, data: bytes) -> bytes:
    try:
        return key.decrypt(data, _rsa_encryption_padding(params))
    except ValueError:
        raise crypto_failure("RSA decryption failed") from None


def _signature_scheme(params: CryptographicParameters) -> tuple[hashes.HashAlgorithm, int | None]:
    hashing, method = params.hashing_algorithm, params.padding_method
    if params.digital_signature_algorithm is not None:
        known = _SIGNATURE_ALGORITHMS.get(params.digital_signature_algorithm)
        if known is None:
            raise not_supported(f"signature algorithm {params.digital_signature_algorithm} "
                                "is not supported")
        hashing = hashing if hashing is not None else known[0]
        method = method if method is not None else known[1]
    return hash_algorithm(hashing), method


def _rsa_signature_padding(method: int | None, chosen: hashes.HashAlgorithm,
                           params: CryptographicParameters, verifying: bool = False
                           ) -> padding.AsymmetricPadding:
    if method in (None, PaddingMethod.PKCS1_V1_5):
        return padding.PKCS1v15()
    if method == PaddingMethod.PSS:
        mgf_hash = hash_algorithm(params.mask_generator_hashing_algorithm
                                  or params.hashing_algorithm, HashingAlgorithm.SHA_256)
        # Without a Salt Length, a signature of any salt verifies (signers commonly use
        # the digest size or the maximum); ours use the digest size.
        salt: Any = params.salt_length
        if salt is None:
            salt = padding.PSS.AUTO if verifying else chosen.digest_size
        return padding.PSS(mgf=padding.MGF1(mgf_hash), salt_length=salt)
    raise not_supported(f"padding method {method} is not supported for signatures")


def sign(key: PrivateKey, params: CryptographicParameters, data: bytes | None,
         digested: bytes | None) -> bytes:
    chosen, method = _signature_scheme(params)
    message, algorithm = _message(chosen, data, digested)
    try:
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(message, _rsa_signature_padding(method, chosen, params), algorithm)
        return key.sign(message, ec.ECDSA(algorithm))
    except ValueError as error:
        raise crypto_failure(f"signing failed: {error}") from None


def verify(key: PublicKey, params: CryptographicParameters, data: bytes | None,
           digested: bytes | None, signature: bytes) -> bool:
    chosen, method = _signature_scheme(params)
    message, algorithm = _message(chosen, data, digested)
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message,
                       _rsa_signature_padding(method, chosen, params, verifying=True), algorithm)
        else:
            key.verify(signature, message, ec.ECDSA(algorithm))
    except InvalidSignature:
        return False
    except ValueError as error:
        raise crypto_failure(f"verification failed: {error}") from None
    return True


def _message(chosen: hashes.HashAlgorithm, data: bytes | None, digested: bytes | None
             ) -> tuple[bytes, Any]:
    if digested is not None:
        return digested, utils.Prehashed(chosen)
    if data is None:
        raise KmipError(ResultReason.INVALID_FIELD, "give Data or Digested Data")
    return data, chosen


# MACs.


def mac(algorithm: int, key: bytes, data: bytes) -> bytes:
    if algorithm in HMAC_HASHES:
        signer = hmac.HMAC(key, hash_algorithm(HMAC_HASHES[algorithm]))
        signer.update(data)
        return signer.finalize()
    if algorithm == CryptographicAlgorithm.AES:  # CMAC (NIST SP 800-38B)
        try:
            signer_cmac = cmac.CMAC(algorithms.AES(key))
        except ValueError as error:
            raise crypto_failure(f"unusable CMAC key: {error}") from None
        signer_cmac.update(data)
        return signer_cmac.finalize()
    raise not_supported(f"algorithm {algorithm} is not a MAC this server computes")
