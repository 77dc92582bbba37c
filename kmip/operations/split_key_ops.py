"""Create Split Key and Join Split Key (KMIP 1.4 sections 4.38 and 4.39, 2.1 6.1.11, 6.1.29).

Create Split Key cuts a key, an existing one the request names or one drawn here
from the request's algorithm and length, into N Split Key objects, any M of which
give it back; all N are committed in one ``CreateObjects`` command, so they exist
together or not at all, and the ID Placeholder names part 1. Join Split Key reads
at least M parts of one split and registers what they combine into as a new
Symmetric Key or Secret Data.

The Split Key Methods (KMIP 1.4 section 2.2.5):

- XOR: N - 1 random parts and the key XORed with all of them; every part is needed,
  so the threshold must equal N.
- Polynomial Sharing GF(2^8): Shamir's scheme on each byte in the field of AES
  (x^8 + x^4 + x^3 + x + 1), as the unseal shares use it (cluster/shamir.py); the
  Key Part Identifier is the x-coordinate of the part.
- Polynomial Sharing Prime Field: Shamir's scheme on the key as one integer, modulo
  the request's Prime Field Size, which must be a prime larger than the key; each
  part's material is its value as a big-endian integer the size of the prime.

Polynomial Sharing GF(2^16) is refused with Invalid Field: no client has been seen
to ask for it, and its field polynomial would have to be fixed for interoperation.
The original key, when one is named, is left as it is: splitting copies it out.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence

from keyquorum.cluster.shamir import Share, ShareError, combine, split
from keyquorum.cluster.state import CreateObject, CreateObjects, ManagedObject, StoredAttribute
from keyquorum.cluster.state import UniqueIdentifier as ObjectId

from ..attributes import Attribute, attribute_from_v2
from ..errors import KmipError, invalid_field
from ..mapping import from_item, to_item
from ..objects import KeyBlock, KeyValue, SecretData, SplitKey, SymmetricKey
from ..payloads import (
    CreateSplitKeyRequestPayload,
    CreateSplitKeyResponsePayload,
    JoinSplitKeyRequestPayload,
    JoinSplitKeyResponsePayload,
)
from ..tables import (
    CryptographicAlgorithm,
    KeyFormatType,
    ObjectType,
    ResultReason,
    SecretDataType,
    SplitKeyMethod,
    Tag,
)
from ..ttlv import Item, ItemType, decode_item, encode_item
from .context import Context
from .object_ops import (
    _SYMMETRIC_LENGTHS,  # the lengths Create generates; a new split key keeps to them
    checked_attributes,
    server_attributes,
)

# At most this many parts: GF(2^8) has 255 nonzero x-coordinates, and a split into
# more parts than people to hold them helps no one.
MAX_PARTS = 255

_METHODS = frozenset({SplitKeyMethod.XOR, SplitKeyMethod.POLYNOMIAL_SHARING_GF_2_8,
                      SplitKeyMethod.POLYNOMIAL_SHARING_PRIME_FIELD})


async def create_split_key(ctx: Context, payload: CreateSplitKeyRequestPayload
                           ) -> CreateSplitKeyResponsePayload:
    if payload.object_type != ObjectType.SPLIT_KEY:
        raise KmipError(ResultReason.INVALID_OBJECT_TYPE, "Create Split Key makes Split Keys")
    parts, threshold = payload.split_key_parts, payload.split_key_threshold
    method = _method(payload.split_key_method)
    if not 1 <= threshold <= parts <= MAX_PARTS:
        raise invalid_field(f"need 1 <= Split Key Threshold ({threshold}) <= Split Key Parts "
                            f"({parts}) <= {MAX_PARTS}")
    if method == SplitKeyMethod.XOR and threshold != parts:
        raise invalid_field("an XOR split needs every part: the threshold must equal the parts")
    attributes = checked_attributes(_given(payload))

    # First the key to split: the one named, or a new one.
    if payload.unique_identifier is not None:
        secret, algorithm, length = _key_of(await ctx.read(payload.unique_identifier))
    else:
        algorithm, length = _algorithm_and_length(attributes)
        secret = secrets.token_bytes(length // 8)
    prime = payload.prime_field_size
    if method == SplitKeyMethod.POLYNOMIAL_SHARING_PRIME_FIELD:
        prime = _checked_prime(prime, secret)

    # Then the parts, one object each, committed together.
    shares = _split(secret, parts, threshold, method, prime)
    attributes = [a for a in attributes
                  if a.name not in ("Cryptographic Algorithm", "Cryptographic Length")]
    now = ctx.now()
    objects = []
    for share in shares:
        material = to_item(SplitKey(
            split_key_parts=parts, key_part_identifier=share.x,
            split_key_threshold=threshold, split_key_method=method, prime_field_size=prime,
            key_block=_raw_block(share.y, algorithm, length)), Tag.SPLIT_KEY)
        own = attributes + _algorithm_attributes(algorithm, length)
        own += server_attributes(material, now, generated=True, given=own)
        objects.append(CreateObject(scope=ctx.scope, uid=ObjectId(str(uuid.uuid4())),
                                    object_type=ObjectType.SPLIT_KEY,
                                    attributes=tuple(own), material=encode_item(material),
                                    now=now))
    await ctx.write(CreateObjects(tuple(objects)))
    ctx.placeholder = objects[0].uid
    return CreateSplitKeyResponsePayload(unique_identifiers=tuple(o.uid for o in objects))


async def join_split_key(ctx: Context, payload: JoinSplitKeyRequestPayload
                         ) -> JoinSplitKeyResponsePayload:
    if payload.object_type not in (ObjectType.SYMMETRIC_KEY, ObjectType.SECRET_DATA):
        raise KmipError(ResultReason.INVALID_OBJECT_TYPE,
                        "Join Split Key makes a Symmetric Key or Secret Data")
    if not payload.unique_identifiers:
        raise invalid_field("Join Split Key needs the Unique Identifiers of the parts")

    # First the parts: Split Keys of one split, at least its threshold of them.
    pieces = [await _split_key(ctx, uid) for uid in payload.unique_identifiers]
    first = pieces[0]
    shape = (first.split_key_parts, first.split_key_threshold, first.split_key_method,
             first.prime_field_size)
    if any((p.split_key_parts, p.split_key_threshold, p.split_key_method,
            p.prime_field_size) != shape for p in pieces):
        raise invalid_field("the parts come from different splits")
    if len(pieces) < first.split_key_threshold:
        raise invalid_field(f"{len(pieces)} part(s) given; this split needs "
                            f"{first.split_key_threshold}")
    try:
        secret = _combine(pieces, _method(first.split_key_method), first.prime_field_size)
    except ShareError as error:
        raise invalid_field(str(error)) from None

    # Then the joined object, registered as a new one.
    block = first.key_block
    algorithm = block.cryptographic_algorithm
    length = block.cryptographic_length or len(secret) * 8
    raw = _raw_block(secret, algorithm, length)
    if payload.object_type == ObjectType.SYMMETRIC_KEY:
        material = to_item(SymmetricKey(key_block=raw), Tag.SYMMETRIC_KEY)
    else:
        kind = payload.secret_data_type or SecretDataType.SEED
        material = to_item(SecretData(secret_data_type=kind, key_block=raw), Tag.SECRET_DATA)
    attributes = checked_attributes(_given(payload))
    if algorithm is not None:
        attributes = [a for a in attributes if a.name not in (
            "Cryptographic Algorithm", "Cryptographic Length")]
        attributes += _algorithm_attributes(int(algorithm), length)
    now = ctx.now()
    attributes += server_attributes(material, now, generated=False, given=attributes)
    uid = await ctx.write(CreateObject(
        scope=ctx.scope, uid=ObjectId(str(uuid.uuid4())),
        object_type=ObjectType(payload.object_type), attributes=tuple(attributes),
        material=encode_item(material), now=now))
    return JoinSplitKeyResponsePayload(unique_identifier=uid)


def _method(value: int) -> SplitKeyMethod:
    if value not in _METHODS:
        raise invalid_field(f"Split Key Method {value} is not supported: use XOR, Polynomial "
                            "Sharing GF(2^8) or Polynomial Sharing Prime Field")
    return SplitKeyMethod(value)


def _split(secret: bytes, parts: int, threshold: int, method: SplitKeyMethod,
           prime: int | None) -> list[Share]:
    if method == SplitKeyMethod.XOR:
        randoms = [secrets.token_bytes(len(secret)) for _ in range(parts - 1)]
        last = secret
        for other in randoms:
            last = bytes(a ^ b for a, b in zip(last, other, strict=True))
        return [Share(x, y) for x, y in enumerate([*randoms, last], 1)]
    if method == SplitKeyMethod.POLYNOMIAL_SHARING_GF_2_8:
        return split(secret, parts, threshold)
    assert prime is not None
    return _prime_split(int.from_bytes(secret, "big"), parts, threshold, prime)


def _combine(pieces: Sequence[SplitKey], method: SplitKeyMethod, prime: int | None) -> bytes:
    shares = [Share(p.key_part_identifier, _material(p.key_block)) for p in pieces]
    if len({share.x for share in shares}) != len(shares):
        raise ShareError("the same part was given twice")
    if method == SplitKeyMethod.XOR:
        joined = bytes(len(shares[0].y))
        for share in shares:
            joined = bytes(a ^ b for a, b in zip(joined, share.y, strict=True))
        return joined
    if method == SplitKeyMethod.POLYNOMIAL_SHARING_GF_2_8:
        return combine(shares)
    assert prime is not None
    length = (pieces[0].key_block.cryptographic_length or 0) // 8
    value = _prime_combine([(s.x, int.from_bytes(s.y, "big")) for s in shares], prime)
    return value.to_bytes(length or (value.bit_length() + 7) // 8, "big")


def _prime_split(secret: int, parts: int, threshold: int, prime: int) -> list[Share]:
    coefficients = [secret] + [secrets.randbelow(prime) for _ in range(threshold - 1)]
    size = (prime.bit_length() + 7) // 8
    shares = []
    for x in range(1, parts + 1):
        y = 0
        for coefficient in reversed(coefficients):
            y = (y * x + coefficient) % prime
        shares.append(Share(x, y.to_bytes(size, "big")))
    return shares


def _prime_combine(points: list[tuple[int, int]], prime: int) -> int:
    # Lagrange interpolation at 0, modulo the prime.
    secret = 0
    for x_i, y_i in points:
        weight = 1
        for x_j, _ in points:
            if x_j != x_i:
                weight = weight * x_j * pow(x_j - x_i, -1, prime) % prime
        secret = (secret + y_i * weight) % prime
    return secret


def _checked_prime(prime: int | None, secret: bytes) -> int:
    if prime is None:
        raise invalid_field("Polynomial Sharing Prime Field needs a Prime Field Size")
    if prime <= int.from_bytes(secret, "big") or not _probably_prime(prime):
        raise invalid_field("Prime Field Size must be a prime larger than the key")
    return prime


def _probably_prime(n: int) -> bool:
    """Miller-Rabin with 40 random bases: a composite passes with odds below 2^-80."""
    if n < 4:
        return n in (2, 3)
    if n % 2 == 0:
        return False
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(40):
        x = pow(2 + secrets.randbelow(n - 3), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _key_of(obj: ManagedObject) -> tuple[bytes, int | None, int]:
    """The raw bytes, algorithm and length of the key a request asks to split."""
    if obj.object_type not in (ObjectType.SYMMETRIC_KEY, ObjectType.SECRET_DATA):
        raise KmipError(ResultReason.INVALID_OBJECT_TYPE,
                        "only a Symmetric Key or Secret Data can be split")
    if obj.material is None:
        raise KmipError(ResultReason.OBJECT_DESTROYED, "the object was destroyed")
    item = decode_item(obj.material)
    block = from_item(KeyBlock, next(c for c in item.value if c.tag == Tag.KEY_BLOCK))
    secret = _material(block)
    algorithm = block.cryptographic_algorithm
    return secret, None if algorithm is None else int(algorithm), (
        block.cryptographic_length or len(secret) * 8)


def _material(block: KeyBlock) -> bytes:
    value = block.key_value
    if block.key_format_type != KeyFormatType.RAW or not isinstance(value, KeyValue) or (
            not isinstance(value.key_material, bytes)):
        raise KmipError(ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED,
                        "only a key in Raw format can be split or joined")
    return value.key_material


async def _split_key(ctx: Context, uid: object) -> SplitKey:
    obj = await ctx.read(uid)
    if obj.object_type != ObjectType.SPLIT_KEY:
        raise KmipError(ResultReason.INVALID_OBJECT_TYPE, f"{obj.uid} is not a Split Key")
    if obj.material is None:
        raise KmipError(ResultReason.OBJECT_DESTROYED, f"{obj.uid} was destroyed")
    piece: SplitKey = from_item(SplitKey, decode_item(obj.material))
    return piece


def _given(payload: CreateSplitKeyRequestPayload | JoinSplitKeyRequestPayload
           ) -> list[Attribute]:
    """The attributes the request gives the new objects, 1.x or 2.x, as 1.x ones."""
    if payload.template_attribute is not None:
        return list(payload.template_attribute.attributes)
    if payload.attributes is not None:
        return [attribute_from_v2(item) for item in payload.attributes.items]
    return []


def _algorithm_and_length(attributes: list[StoredAttribute]) -> tuple[int, int]:
    values = {a.name: a.value.value for a in attributes
              if a.name in ("Cryptographic Algorithm", "Cryptographic Length")}
    algorithm, length = values.get("Cryptographic Algorithm"), values.get("Cryptographic Length")
    if algorithm is None or length is None:
        raise invalid_field("a new split key needs Cryptographic Algorithm and Length")
    if length not in _SYMMETRIC_LENGTHS.get(algorithm, frozenset()):
        raise invalid_field(f"cannot generate a {length}-bit key of algorithm {algorithm}")
    return int(algorithm), int(length)


def _raw_block(material: bytes, algorithm: int | None, length: int) -> KeyBlock:
    return KeyBlock(
        key_format_type=KeyFormatType.RAW, key_value=KeyValue(key_material=material),
        cryptographic_algorithm=None if algorithm is None else CryptographicAlgorithm(algorithm),
        cryptographic_length=length)


def _algorithm_attributes(algorithm: int | None, length: int) -> list[StoredAttribute]:
    if algorithm is None:
        return []
    return [StoredAttribute("Cryptographic Algorithm",
                            Item(Tag.ATTRIBUTE_VALUE, ItemType.ENUMERATION, algorithm)),
            StoredAttribute("Cryptographic Length",
                            Item(Tag.ATTRIBUTE_VALUE, ItemType.INTEGER, length))]
