"""kmip/crypto.py against published known answers, one per mode the server runs.

Vectors: FIPS-197 appendix C.1 (AES-128), NIST SP 800-38A F.2.1 and F.5.1 (CBC, CTR),
the GCM specification's test case 2 (McGrew and Viega), RFC 8439 section 2.8.2
(ChaCha20-Poly1305), RFC 3394 section 4.1 (AES key wrap), RFC 4231 test case 2
(HMAC-SHA-256), SP 800-38B example 2 (CMAC), FIPS 180-2 ("abc", SHA-256).
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keyquorum.kmip import crypto
from keyquorum.kmip.errors import KmipError
from keyquorum.kmip.objects import CryptographicParameters
from keyquorum.kmip.tables import (
    BlockCipherMode,
    CryptographicAlgorithm,
    HashingAlgorithm,
    PaddingMethod,
    ResultReason,
)

AES = CryptographicAlgorithm.AES
NIST_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
NIST_BLOCK = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")

RFC8439_KEY = bytes(range(0x80, 0xA0))
RFC8439_NONCE = bytes.fromhex("070000004041424344454647")
RFC8439_AAD = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
RFC8439_TEXT = (b"Ladies and Gentlemen of the class of '99: If I could offer you only one "
                b"tip for the future, sunscreen would be it.")
RFC8439_TAG = bytes.fromhex("1ae10b594f09e26a7e902ecbd0600691")


def one_shot(encrypt: bool, key: bytes, mode: int, data: bytes, iv: bytes | None = None,
             tag: bytes | None = None, **params: object) -> crypto.SymmetricResult:
    parameters = CryptographicParameters(block_cipher_mode=mode, **params)
    cipher = crypto.start_cipher(encrypt, AES, key, parameters, iv, None)
    out = cipher.update(data)
    end = cipher.finalize(tag)
    return crypto.SymmetricResult(out + end.data, tag=end.tag)


def test_aes_ecb_fips197() -> None:
    key = bytes(range(16))
    plaintext = bytes.fromhex("00112233445566778899aabbccddeeff")
    result = one_shot(True, key, BlockCipherMode.ECB, plaintext)
    assert result.data.hex() == "69c4e0d86a7b0430d8cdb78070b4c55a"


def test_aes_cbc_and_ctr_sp800_38a() -> None:
    cbc = one_shot(True, NIST_KEY, BlockCipherMode.CBC, NIST_BLOCK, iv=bytes(range(16)))
    ctr = one_shot(True, NIST_KEY, BlockCipherMode.CTR, NIST_BLOCK,
                   iv=bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"))
    assert cbc.data.hex() == "7649abac8119b246cee98e9b12e9197d"
    assert ctr.data.hex() == "874d6191b620e3261bef6864990db6ce"


def test_cbc_with_pkcs5_padding_round_trips_and_refuses_bad_padding() -> None:
    iv = bytes(16)
    sealed = one_shot(True, NIST_KEY, BlockCipherMode.CBC, b"seventeen bytes!!", iv=iv,
                      padding_method=PaddingMethod.PKCS5)
    opened = one_shot(False, NIST_KEY, BlockCipherMode.CBC, sealed.data, iv=iv,
                      padding_method=PaddingMethod.PKCS5)
    assert len(sealed.data) == 32 and opened.data == b"seventeen bytes!!"

    # Flipping a bit of the first block flips the same bit of the second block's
    # plaintext: its last byte, the padding length.
    tampered = sealed.data[:15] + bytes([sealed.data[15] ^ 1]) + sealed.data[16:]
    with pytest.raises(KmipError) as refused:
        one_shot(False, NIST_KEY, BlockCipherMode.CBC, tampered, iv=iv,
                 padding_method=PaddingMethod.PKCS5)
    assert refused.value.reason == ResultReason.CRYPTOGRAPHIC_FAILURE


def test_gcm_test_case_2_with_full_and_truncated_tags() -> None:
    key, iv = bytes(16), bytes(12)
    sealed = one_shot(True, key, BlockCipherMode.GCM, bytes(16), iv=iv)
    assert sealed.data.hex() == "0388dace60b6a392f328c2b971b2fe78"
    assert sealed.tag is not None and sealed.tag.hex() == "ab6e47d42cec13bdf53a67b21257bddf"

    # A 12-byte tag (Tag Length 12) verifies; a wrong one does not.
    opened = one_shot(False, key, BlockCipherMode.GCM, sealed.data, iv=iv, tag=sealed.tag[:12])
    assert opened.data == bytes(16)
    with pytest.raises(KmipError) as refused:
        one_shot(False, key, BlockCipherMode.GCM, sealed.data, iv=iv,
                 tag=b"\xff" + sealed.tag[1:12])
    assert refused.value.reason == ResultReason.CRYPTOGRAPHIC_FAILURE


def test_chacha20_poly1305_rfc8439() -> None:
    sealed = crypto.aead(True, RFC8439_KEY, RFC8439_NONCE, RFC8439_TEXT, RFC8439_AAD, None)
    assert sealed.data[:16].hex() == "d31a8d34648e60db7b86afbc53ef7ec2"
    assert sealed.tag == RFC8439_TAG

    opened = crypto.aead(False, RFC8439_KEY, RFC8439_NONCE, sealed.data, RFC8439_AAD,
                         RFC8439_TAG)
    assert opened.data == RFC8439_TEXT


def test_chacha20_poly1305_truncated_tag_verifies_and_a_flipped_bit_does_not() -> None:
    ciphertext = crypto.aead(True, RFC8439_KEY, RFC8439_NONCE, RFC8439_TEXT, RFC8439_AAD,
                             None).data
    opened = crypto.aead(False, RFC8439_KEY, RFC8439_NONCE, ciphertext, RFC8439_AAD,
                         RFC8439_TAG[:12])
    assert opened.data == RFC8439_TEXT

    tampered = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    for tag in (RFC8439_TAG[:12], RFC8439_TAG[:3]):
        with pytest.raises(KmipError) as refused:
            crypto.aead(False, RFC8439_KEY, RFC8439_NONCE, tampered if len(tag) == 12
                        else ciphertext, RFC8439_AAD, tag)
        assert refused.value.reason == ResultReason.CRYPTOGRAPHIC_FAILURE


def test_aes_key_wrap_rfc3394() -> None:
    kek = bytes(range(16))
    key = bytes.fromhex("00112233445566778899aabbccddeeff")
    wrapped = crypto.key_wrap(True, kek, key)
    assert wrapped.hex() == "1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5"
    assert crypto.key_wrap(False, kek, wrapped) == key
    with pytest.raises(KmipError):
        crypto.key_wrap(False, kek, bytes(24))


def test_hmac_cmac_and_hash_vectors() -> None:
    hmac_value = crypto.mac(CryptographicAlgorithm.HMAC_SHA256, b"Jefe",
                            b"what do ya want for nothing?")
    cmac_value = crypto.mac(AES, NIST_KEY, NIST_BLOCK)
    assert hmac_value.hex() == ("5bdcc146bf60754e6a042426089575c7"
                                "5a003f089d2739839dec58b964ec3843")
    assert cmac_value.hex() == "070a16b46b4d4144f79bdd9dd04a287c"
    assert crypto.digest(HashingAlgorithm.SHA_256, b"abc").hex() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_pss_verification_accepts_any_salt_length_unless_one_is_named() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    data = b"signed with the longest salt"
    signature = key.sign(data, padding.PSS(padding.MGF1(hashes.SHA256()),
                                           padding.PSS.MAX_LENGTH), hashes.SHA256())
    params = CryptographicParameters(padding_method=PaddingMethod.PSS,
                                     hashing_algorithm=HashingAlgorithm.SHA_256)

    assert crypto.verify(key.public_key(), params, data, None, signature)
    named = CryptographicParameters(padding_method=PaddingMethod.PSS,
                                    hashing_algorithm=HashingAlgorithm.SHA_256, salt_length=32)
    assert not crypto.verify(key.public_key(), named, data, None, signature)
    # Our own signatures verify both ways.
    ours = crypto.sign(key, params, data, None)
    assert crypto.verify(key.public_key(), named, data, None, ours)
