"""Create Key Pair: an RSA or EC key pair, two objects linked to each other.

The receiving node generates the pair and submits one ``CreateObjects`` command
holding both objects, so that the pair is committed together or not at all. RSA
keys are stored as PKCS#1 DER, EC keys as PKCS#8 (private) and X.509
SubjectPublicKeyInfo (public), the formats the OASIS test cases read them back in.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from keyquorum.cluster.state import CreateObject, CreateObjects, StoredAttribute
from keyquorum.cluster.state import UniqueIdentifier as ObjectId

from ..attributes import Attribute, TemplateAttribute, attribute_from_v2
from ..errors import KmipError
from ..mapping import to_item
from ..objects import KeyBlock, KeyValue, PrivateKey, PublicKey
from ..payloads import CreateKeyPairRequestPayload, CreateKeyPairResponsePayload
from ..tables import (
    CryptographicAlgorithm,
    KeyFormatType,
    LinkType,
    ObjectType,
    RecommendedCurve,
    ResultReason,
    Tag,
)
from ..ttlv import Item, ItemType, encode_item
from .context import Context
from .object_ops import checked_attributes, server_attributes

RSA_LENGTHS = frozenset({1024, 2048, 3072, 4096})

_CURVES: dict[int, tuple[ec.EllipticCurve, int]] = {
    RecommendedCurve.P_256: (ec.SECP256R1(), 256),
    RecommendedCurve.P_384: (ec.SECP384R1(), 384),
    RecommendedCurve.P_521: (ec.SECP521R1(), 521),
}
_CURVE_BY_LENGTH = {length: curve for curve, (_, length) in _CURVES.items()}


def requested_attributes(template: TemplateAttribute | None, v2: object) -> list[Attribute]:
    if template is not None:
        if template.names:
            raise KmipError(ResultReason.FEATURE_NOT_SUPPORTED,
                            "templates are not supported; send the attributes themselves")
        return list(template.attributes)
    items = getattr(v2, "items", None)
    return [attribute_from_v2(item) for item in items or ()]


def _value(attributes: list[StoredAttribute], name: str) -> Any:
    for attribute in reversed(attributes):  # the specific template overrides the common one
        if attribute.name == name:
            return attribute.value.value
    return None


async def create_key_pair(
    ctx: Context, payload: CreateKeyPairRequestPayload
) -> CreateKeyPairResponsePayload:
    common = requested_attributes(payload.common_template_attribute, payload.common_attributes)
    private_only = requested_attributes(payload.private_key_template_attribute,
                               payload.private_key_attributes)
    public_only = requested_attributes(payload.public_key_template_attribute,
                              payload.public_key_attributes)
    private_attributes = checked_attributes(common + private_only)
    public_attributes = checked_attributes(common + public_only)

    # First the algorithm and size, from whichever template gave them.
    algorithm = _value(private_attributes, "Cryptographic Algorithm")
    length = _value(private_attributes, "Cryptographic Length")
    curve = _value(private_attributes, "Recommended Curve")
    if algorithm is None:
        raise KmipError(ResultReason.INVALID_FIELD if ctx.is_v1 else ResultReason.MISSING_DATA,
                        "Create Key Pair needs a Cryptographic Algorithm")

    # Then the pair, in the formats it is stored in.
    pair = generate_pair(int(algorithm), length, curve)
    private_der, public_der = pair.private_der, pair.public_der
    private_format, public_format, length = pair.private_format, pair.public_format, pair.length

    # Last both objects, linked to each other, in one command.
    now = ctx.now()
    private_uid = ObjectId(str(uuid.uuid4()))
    public_uid = ObjectId(str(uuid.uuid4()))
    objects = []
    for uid, other, link, cls, der, key_format, object_type, attributes in (
        (private_uid, public_uid, LinkType.PUBLIC_KEY_LINK, PrivateKey, private_der,
         private_format, ObjectType.PRIVATE_KEY, private_attributes),
        (public_uid, private_uid, LinkType.PRIVATE_KEY_LINK, PublicKey, public_der,
         public_format, ObjectType.PUBLIC_KEY, public_attributes),
    ):
        obj = cls(key_block=KeyBlock(
            key_format_type=key_format,
            key_value=KeyValue(key_material=der),
            cryptographic_algorithm=CryptographicAlgorithm(int(algorithm)),
            cryptographic_length=int(length),
        ))
        material = to_item(obj, cls.TAG)
        stored = with_algorithm(attributes, int(algorithm), int(length))
        stored.append(StoredAttribute("Link", Item(Tag.ATTRIBUTE_VALUE, ItemType.STRUCTURE, [
            Item(Tag.LINK_TYPE, ItemType.ENUMERATION, int(link)),
            Item(Tag.LINKED_OBJECT_IDENTIFIER, ItemType.TEXT_STRING, other),
        ])))
        stored += server_attributes(material, now, generated=True, given=stored)
        objects.append(CreateObject(scope=ctx.scope, uid=uid, object_type=object_type,
                                    attributes=tuple(stored), material=encode_item(material),
                                    now=now))
    await ctx.write(CreateObjects(tuple(objects)))
    ctx.placeholder = private_uid
    return CreateKeyPairResponsePayload(private_key_unique_identifier=private_uid,
                                        public_key_unique_identifier=public_uid)


def with_algorithm(attributes: list[StoredAttribute], algorithm: int, length: int
                   ) -> list[StoredAttribute]:
    """The attributes with the algorithm and length the pair really has, once each."""
    kept = [a for a in attributes
            if a.name not in ("Cryptographic Algorithm", "Cryptographic Length")]
    return [
        StoredAttribute("Cryptographic Algorithm",
                        Item(Tag.ATTRIBUTE_VALUE, ItemType.ENUMERATION, algorithm)),
        StoredAttribute("Cryptographic Length",
                        Item(Tag.ATTRIBUTE_VALUE, ItemType.INTEGER, length)),
        *kept,
    ]


@dataclass(frozen=True)
class GeneratedPair:
    private_der: bytes
    public_der: bytes
    private_format: KeyFormatType
    public_format: KeyFormatType
    length: int


def generate_pair(algorithm: int, length: Any, curve: Any) -> GeneratedPair:
    """A fresh RSA or EC key pair (Create Key Pair and Re-key Key Pair)."""
    if algorithm == CryptographicAlgorithm.RSA:
        if length not in RSA_LENGTHS:
            raise KmipError(ResultReason.INVALID_FIELD,
                            f"RSA keys are {sorted(RSA_LENGTHS)} bits, not {length}")
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(length))
        private_der = key.private_bytes(serialization.Encoding.DER,
                                        serialization.PrivateFormat.TraditionalOpenSSL,
                                        serialization.NoEncryption())
        public_der = key.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.PKCS1)
        return GeneratedPair(private_der, public_der, KeyFormatType.PKCS_1,
                             KeyFormatType.PKCS_1, int(length))
    if algorithm in (CryptographicAlgorithm.EC, CryptographicAlgorithm.ECDSA,
                     CryptographicAlgorithm.ECDH):
        if curve is None:
            curve = _CURVE_BY_LENGTH.get(length)
        if curve not in _CURVES:
            raise KmipError(ResultReason.INVALID_FIELD,
                            "EC keys need Recommended Curve P-256, P-384 or P-521")
        ec_curve, bits = _CURVES[curve]
        ec_key = ec.generate_private_key(ec_curve)
        private_der = ec_key.private_bytes(serialization.Encoding.DER,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())
        public_der = ec_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return GeneratedPair(private_der, public_der, KeyFormatType.PKCS_8,
                             KeyFormatType.X_509, bits)
    raise KmipError(ResultReason.INVALID_FIELD,
                    f"cannot generate a key pair for algorithm {algorithm}")
