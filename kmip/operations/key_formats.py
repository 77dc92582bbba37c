"""Asymmetric keys in the Key Format Type a Get asks for.

KMIP 1.4 sections 2.1.7 (Transparent key structures) and 9.1.3.2.3 (Key Format
Type). A stored RSA or EC key, whatever format it was made or registered in, is
served as:

- RSA private key: PKCS#1, PKCS#8, Transparent RSA Private Key;
- RSA public key: PKCS#1, X.509 (SubjectPublicKeyInfo), Transparent RSA Public Key;
- EC private key: PKCS#8, EC Private Key (RFC 5915), Transparent EC Private Key
  (and the 1.x Transparent ECDSA / ECDH names of it);
- EC public key: X.509, Raw (the SEC 1 uncompressed point), Transparent EC Public
  Key (and the 1.x ECDSA / ECDH names).

Any other pair of key and format is answered Key Format Type Not Supported; a
wrapped key is served only in the format it is stored in.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..errors import KmipError
from ..mapping import from_item, to_item
from ..objects import KeyBlock, KeyValue, PrivateKey, PublicKey
from ..tables import KeyFormatType, ObjectType, RecommendedCurve, ResultReason, Tag
from ..ttlv import Item, ItemType

_DER = serialization.Encoding.DER

# Curves by the Recommended Curve they are named by, both ways.
_CURVES: dict[int, type[ec.EllipticCurve]] = {
    RecommendedCurve.P_256: ec.SECP256R1,
    RecommendedCurve.P_384: ec.SECP384R1,
    RecommendedCurve.P_521: ec.SECP521R1,
}
_CURVE_NAMES: dict[str, int] = {"secp256r1": RecommendedCurve.P_256,
                                 "secp384r1": RecommendedCurve.P_384,
                                 "secp521r1": RecommendedCurve.P_521}

_TRANSPARENT_EC_PRIVATE = frozenset({
    KeyFormatType.TRANSPARENT_EC_PRIVATE_KEY, KeyFormatType.TRANSPARENT_ECDSA_PRIVATE_KEY,
    KeyFormatType.TRANSPARENT_ECDH_PRIVATE_KEY,
})
_TRANSPARENT_EC_PUBLIC = frozenset({
    KeyFormatType.TRANSPARENT_EC_PUBLIC_KEY, KeyFormatType.TRANSPARENT_ECDSA_PUBLIC_KEY,
    KeyFormatType.TRANSPARENT_ECDH_PUBLIC_KEY,
})

AnyKey = rsa.RSAPrivateKey | rsa.RSAPublicKey | ec.EllipticCurvePrivateKey | \
    ec.EllipticCurvePublicKey


def asymmetric_in_format(object_type: int, item: Item, wanted: int) -> Item:
    """The stored private or public key ``item`` with its key material in ``wanted``."""
    cls: Any = PrivateKey if object_type == ObjectType.PRIVATE_KEY else PublicKey
    block: KeyBlock = from_item(cls, item).key_block
    if block.key_format_type == wanted:
        return item
    if block.key_wrapping_data is not None or not isinstance(block.key_value, KeyValue):
        raise _unsupported("a wrapped key is served in the format it is stored in")

    key = _load(object_type, int(block.key_format_type), block.key_value.key_material)
    material = _encode(key, wanted)
    value = KeyValue(key_material=material, attribute_list=block.key_value.attribute_list,
                     attributes=block.key_value.attributes)
    changed = KeyBlock(key_format_type=KeyFormatType(wanted),
                       key_compression_type=block.key_compression_type, key_value=value,
                       cryptographic_algorithm=block.cryptographic_algorithm,
                       cryptographic_length=block.cryptographic_length)
    return to_item(cls(key_block=changed), item.tag)


def _unsupported(message: str) -> KmipError:
    return KmipError(ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED, message)


# Reading a stored key, in any format this module writes.


def _load(object_type: int, key_format: int, material: bytes | Item) -> AnyKey:
    private = object_type == ObjectType.PRIVATE_KEY
    if isinstance(material, bytes):
        return _load_bytes(private, key_format, material)
    fields = {child.tag: child.value for child in material.value}
    try:
        if key_format == KeyFormatType.TRANSPARENT_RSA_PRIVATE_KEY:
            return _rsa_private(fields)
        if key_format == KeyFormatType.TRANSPARENT_RSA_PUBLIC_KEY:
            return rsa.RSAPublicNumbers(fields[Tag.PUBLIC_EXPONENT],
                                        fields[Tag.MODULUS]).public_key()
        if key_format in _TRANSPARENT_EC_PRIVATE:
            curve = _CURVES[fields[Tag.RECOMMENDED_CURVE]]()
            return ec.derive_private_key(fields[Tag.D], curve)
        if key_format in _TRANSPARENT_EC_PUBLIC:
            curve = _CURVES[fields[Tag.RECOMMENDED_CURVE]]()
            return ec.EllipticCurvePublicKey.from_encoded_point(curve, fields[Tag.Q_STRING])
    except (KeyError, ValueError, TypeError):
        raise _unsupported("the stored transparent key cannot be read") from None
    raise _unsupported("the stored key's format cannot be converted")


def _rsa_private(fields: dict[int, Any]) -> rsa.RSAPrivateKey:
    public = rsa.RSAPublicNumbers(fields[Tag.PUBLIC_EXPONENT], fields[Tag.MODULUS])
    p, q, d = fields[Tag.P], fields[Tag.Q], fields[Tag.PRIVATE_EXPONENT]
    numbers = rsa.RSAPrivateNumbers(
        p=p, q=q, d=d,
        dmp1=fields.get(Tag.PRIME_EXPONENT_P) or rsa.rsa_crt_dmp1(d, p),
        dmq1=fields.get(Tag.PRIME_EXPONENT_Q) or rsa.rsa_crt_dmq1(d, q),
        iqmp=fields.get(Tag.CRT_COEFFICIENT) or rsa.rsa_crt_iqmp(p, q),
        public_numbers=public)
    return numbers.private_key()


def _load_bytes(private: bool, key_format: int, der: bytes) -> AnyKey:
    try:
        if private:
            key: Any = serialization.load_der_private_key(der, password=None)
        elif key_format == KeyFormatType.RAW:
            raise _unsupported("a Raw public key names no curve to read it with")
        else:
            key = serialization.load_der_public_key(der)
    except (ValueError, TypeError):
        raise _unsupported("the stored key cannot be read for conversion") from None
    if not isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey | ec.EllipticCurvePrivateKey
                      | ec.EllipticCurvePublicKey):
        raise _unsupported("only RSA and EC keys are converted")
    return key


# Writing it in the wanted format.


def _encode(key: AnyKey, wanted: int) -> bytes | Item:
    if isinstance(key, rsa.RSAPrivateKey):
        return _rsa_private_in(key, wanted)
    if isinstance(key, rsa.RSAPublicKey):
        return _rsa_public_in(key, wanted)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return _ec_private_in(key, wanted)
    return _ec_public_in(key, wanted)


def _rsa_private_in(key: rsa.RSAPrivateKey, wanted: int) -> bytes | Item:
    none = serialization.NoEncryption()
    if wanted == KeyFormatType.PKCS_1:
        return key.private_bytes(_DER, serialization.PrivateFormat.TraditionalOpenSSL, none)
    if wanted == KeyFormatType.PKCS_8:
        return key.private_bytes(_DER, serialization.PrivateFormat.PKCS8, none)
    if wanted == KeyFormatType.TRANSPARENT_RSA_PRIVATE_KEY:
        numbers = key.private_numbers()
        return _structure([
            (Tag.MODULUS, numbers.public_numbers.n),
            (Tag.PRIVATE_EXPONENT, numbers.d),
            (Tag.PUBLIC_EXPONENT, numbers.public_numbers.e),
            (Tag.P, numbers.p), (Tag.Q, numbers.q),
            (Tag.PRIME_EXPONENT_P, numbers.dmp1), (Tag.PRIME_EXPONENT_Q, numbers.dmq1),
            (Tag.CRT_COEFFICIENT, numbers.iqmp),
        ])
    raise _unsupported("RSA private keys are served as PKCS#1, PKCS#8 or Transparent")


def _rsa_public_in(key: rsa.RSAPublicKey, wanted: int) -> bytes | Item:
    if wanted == KeyFormatType.PKCS_1:
        return key.public_bytes(_DER, serialization.PublicFormat.PKCS1)
    if wanted == KeyFormatType.X_509:
        return key.public_bytes(_DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if wanted == KeyFormatType.TRANSPARENT_RSA_PUBLIC_KEY:
        numbers = key.public_numbers()
        return _structure([(Tag.MODULUS, numbers.n), (Tag.PUBLIC_EXPONENT, numbers.e)])
    raise _unsupported("RSA public keys are served as PKCS#1, X.509 or Transparent")


def _ec_private_in(key: ec.EllipticCurvePrivateKey, wanted: int) -> bytes | Item:
    none = serialization.NoEncryption()
    if wanted == KeyFormatType.PKCS_8:
        return key.private_bytes(_DER, serialization.PrivateFormat.PKCS8, none)
    if wanted == KeyFormatType.ECPRIVATEKEY:
        return key.private_bytes(_DER, serialization.PrivateFormat.TraditionalOpenSSL, none)
    if wanted in _TRANSPARENT_EC_PRIVATE:
        return Item(Tag.KEY_MATERIAL, ItemType.STRUCTURE, [
            Item(Tag.RECOMMENDED_CURVE, ItemType.ENUMERATION, _curve(key.curve)),
            Item(Tag.D, ItemType.BIG_INTEGER, key.private_numbers().private_value),
        ])
    raise _unsupported("EC private keys are served as PKCS#8, EC Private Key or Transparent")


def _ec_public_in(key: ec.EllipticCurvePublicKey, wanted: int) -> bytes | Item:
    point = key.public_bytes(serialization.Encoding.X962,
                             serialization.PublicFormat.UncompressedPoint)
    if wanted == KeyFormatType.X_509:
        return key.public_bytes(_DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if wanted == KeyFormatType.RAW:
        return point
    if wanted in _TRANSPARENT_EC_PUBLIC:
        return Item(Tag.KEY_MATERIAL, ItemType.STRUCTURE, [
            Item(Tag.RECOMMENDED_CURVE, ItemType.ENUMERATION, _curve(key.curve)),
            Item(Tag.Q_STRING, ItemType.BYTE_STRING, point),
        ])
    raise _unsupported("EC public keys are served as X.509, Raw or Transparent")


def _curve(curve: ec.EllipticCurve) -> int:
    found = _CURVE_NAMES.get(curve.name)
    if found is None:
        raise _unsupported(f"curve {curve.name} has no Recommended Curve here")
    return int(found)


def _structure(fields: list[tuple[int, int]]) -> Item:
    return Item(Tag.KEY_MATERIAL, ItemType.STRUCTURE,
                [Item(tag, ItemType.BIG_INTEGER, value) for tag, value in fields])
