"""Create, Register, Get, Activate, Revoke, Destroy and Locate.

A write draws everything non-deterministic here, on the node that received it (the
identifier, the key bytes, the time), and hands the state a command that holds it
all; the state only checks and records.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from keyquorum.cluster.state import (
    Activate,
    CreateObject,
    Destroy,
    ManagedObject,
    MarkServed,
    Revoke,
    StoredAttribute,
)
from keyquorum.cluster.state import UniqueIdentifier as ObjectId

from ..attributes import Attribute, attribute_from_v2
from ..errors import KmipError, invalid_field
from ..mapping import from_item, to_item
from ..objects import (
    MANAGED_OBJECT_CLASSES,
    CertificateRequest,
    KeyBlock,
    KeyValue,
    KeyWrappingSpecification,
    SymmetricKey,
    Template,
)
from ..payloads import (
    ActivateRequestPayload,
    ActivateResponsePayload,
    CreateRequestPayload,
    CreateResponsePayload,
    DestroyRequestPayload,
    DestroyResponsePayload,
    GetRequestPayload,
    GetResponsePayload,
    LocateRequestPayload,
    LocateResponsePayload,
    RegisterRequestPayload,
    RegisterResponsePayload,
    RevokeRequestPayload,
    RevokeResponsePayload,
)
from ..tables import (
    CryptographicAlgorithm,
    HashingAlgorithm,
    KeyFormatType,
    KeyWrapType,
    ObjectType,
    ProtectionStorageMask,
    ResultReason,
    RevocationReasonCode,
    RNGAlgorithm,
    State,
    StorageStatusMask,
    Tag,
)
from ..ttlv import Item, ItemType, decode_item, encode_item
from .attribute_ops import stored
from .certificate_attributes import certificate_attributes
from .context import Context
from .key_formats import asymmetric_in_format
from .templates import with_templates
from .wrapping import unwrap_block, wrap_block

# Key lengths in bits each algorithm allows for a generated symmetric key.
_SYMMETRIC_LENGTHS: dict[int, frozenset[int]] = {
    CryptographicAlgorithm.AES: frozenset({128, 192, 256}),
    CryptographicAlgorithm.DES3: frozenset({112, 168, 192}),
    CryptographicAlgorithm.CHACHA20: frozenset({256}),
    CryptographicAlgorithm.HMAC_SHA1: frozenset(range(8, 4097, 8)),
    CryptographicAlgorithm.HMAC_SHA256: frozenset(range(8, 4097, 8)),
    CryptographicAlgorithm.HMAC_SHA384: frozenset(range(8, 4097, 8)),
    CryptographicAlgorithm.HMAC_SHA512: frozenset(range(8, 4097, 8)),
}

# The object classes by the tag they travel under.
_OBJECT_CLASSES: dict[int, type] = {cls.TAG: cls for cls in MANAGED_OBJECT_CLASSES}  # type: ignore[attr-defined]

# Object types Register stores as they come; Templates only in 1.x (templates.py).
_REGISTERABLE = {
    ObjectType.TEMPLATE,
    ObjectType.SYMMETRIC_KEY,
    ObjectType.SECRET_DATA,
    ObjectType.OPAQUE_OBJECT,
    ObjectType.CERTIFICATE,
    ObjectType.PUBLIC_KEY,
    ObjectType.PRIVATE_KEY,
    ObjectType.SPLIT_KEY,
    ObjectType.PGP_KEY,
    ObjectType.CERTIFICATE_REQUEST,
}


def client_attributes(payload: CreateRequestPayload | RegisterRequestPayload) -> list[Attribute]:
    """The attributes a creation request gives itself, 1.x or 2.x, as 1.x ones."""
    if payload.template_attribute is not None:
        return list(payload.template_attribute.attributes)
    if payload.attributes is not None:
        return [attribute_from_v2(item) for item in payload.attributes.items]
    return []


# The lease a client gets on key material, in seconds (KMIP 1.4 section 3.15): the
# value the OASIS test cases expect; the server does not yet end a lease.
LEASE_SECONDS = 3600


def server_attributes(
    material: Item, now: int, generated: bool, given: Iterable[StoredAttribute] = ()
) -> list[StoredAttribute]:
    """What the server records about an object it stores: its digest and format, its
    original creation date, for what it generated the generator it used, and the
    defaults of the protection attributes the client did not set."""
    found = [StoredAttribute("Original Creation Date",
                             Item(Tag.ATTRIBUTE_VALUE, ItemType.DATE_TIME, now))]
    digest = _digest(material)
    if digest is not None:
        found.append(StoredAttribute("Digest", digest))
    key_format = _key_format(material)
    if key_format is not None:
        found.append(StoredAttribute("Key Format Type", _enum(key_format)))
    if generated:
        # Keys come from the operating system's CSPRNG (os.urandom / getrandom), a
        # DRBG; KMIP has no closer name for its algorithm.
        found.append(StoredAttribute("Random Number Generator", Item(
            Tag.ATTRIBUTE_VALUE, ItemType.STRUCTURE,
            [Item(Tag.RNG_ALGORITHM, ItemType.ENUMERATION, int(RNGAlgorithm.DRBG))])))
    return found + _protection_defaults({a.name: a.value for a in given})


def _protection_defaults(given: dict[str, Item]) -> list[StoredAttribute]:
    """Fresh, Sensitive, Extractable and their history, and the lease, unless given.

    A new object is fresh (never served); Always Sensitive and Never Extractable
    start as Sensitive and not Extractable are (KMIP 1.4 sections 3.34-3.42).
    """
    sensitive = given.get("Sensitive", _bool(False))
    extractable = given.get("Extractable", _bool(True))
    defaults = {
        "Fresh": _bool(True),
        "Sensitive": sensitive,
        "Always Sensitive": _bool(bool(sensitive.value)),
        "Extractable": extractable,
        "Never Extractable": _bool(not extractable.value),
        "Lease Time": Item(Tag.ATTRIBUTE_VALUE, ItemType.INTERVAL, LEASE_SECONDS),
        "Protection Storage Mask": Item(Tag.ATTRIBUTE_VALUE, ItemType.INTEGER,
                                        int(ProtectionStorageMask.SOFTWARE)),
    }
    return [StoredAttribute(name, value) for name, value in defaults.items()
            if name not in given]


def _bool(value: bool) -> Item:
    return Item(Tag.ATTRIBUTE_VALUE, ItemType.BOOLEAN, value)


def _enum(value: int) -> Item:
    return Item(Tag.ATTRIBUTE_VALUE, ItemType.ENUMERATION, int(value))


def _digest(material: Item) -> Item | None:
    """The Digest attribute (KMIP 1.4 section 3.17): SHA-256 of the key material, or of
    the value of an object without a key block, with the format it was taken in."""
    block = next((c for c in material.value if c.tag == Tag.KEY_BLOCK), None)
    key_format: int | None = None
    value: bytes | None = None
    if block is not None:
        for child in block.value:
            if child.tag == Tag.KEY_FORMAT_TYPE:
                key_format = int(child.value)
            if child.tag == Tag.KEY_VALUE and child.type == ItemType.STRUCTURE:
                inner = next((c for c in child.value if c.tag == Tag.KEY_MATERIAL), None)
                if inner is not None and inner.type == ItemType.BYTE_STRING:
                    value = inner.value
    else:
        value = next((c.value for c in material.value if c.type == ItemType.BYTE_STRING), None)
    if value is None:
        return None
    fields = [Item(Tag.HASHING_ALGORITHM, ItemType.ENUMERATION, int(HashingAlgorithm.SHA_256)),
              Item(Tag.DIGEST_VALUE, ItemType.BYTE_STRING, hashlib.sha256(value).digest())]
    if key_format is not None:
        fields.append(Item(Tag.KEY_FORMAT_TYPE, ItemType.ENUMERATION, key_format))
    return Item(Tag.ATTRIBUTE_VALUE, ItemType.STRUCTURE, fields)


# Grover's search halves a symmetric key's strength against a quantum computer, so
# only 256-bit keys keep 128 bits (CNSA 2.0 asks AES-256 for the same reason).
# Public-key algorithms this server makes (RSA, EC) fall to Shor's algorithm.
_QUANTUM_SAFE_ALGORITHMS: dict[int, int] = {
    CryptographicAlgorithm.AES: 256,
    CryptographicAlgorithm.CHACHA20: 256,
    CryptographicAlgorithm.HMAC_SHA256: 256,
    CryptographicAlgorithm.HMAC_SHA384: 256,
    CryptographicAlgorithm.HMAC_SHA512: 256,
}


def require_quantum_safe(attributes: list[StoredAttribute], algorithm: int, length: int) -> None:
    """Refuse a key the client asked to be Quantum Safe (KMIP 2.1 section 4.47) when
    its algorithm and length are not; the OASIS QS-M-2 case expects General Failure."""
    wanted = _single(attributes, "Quantum Safe")
    if wanted is None or not wanted.value:
        return
    least = _QUANTUM_SAFE_ALGORITHMS.get(algorithm)
    if least is None or length < least:
        raise KmipError(ResultReason.GENERAL_FAILURE,
                        f"a {length}-bit key of that algorithm is not quantum safe; "
                        "ask for 256 bits")


def _single(attributes: list[StoredAttribute], name: str) -> Item | None:
    values = [a.value for a in attributes if a.name == name]
    if len(values) > 1:
        raise KmipError(ResultReason.ATTRIBUTE_SINGLE_VALUED, f"{name} given more than once")
    return values[0] if values else None


def checked_attributes(requested: list[Attribute]) -> list[StoredAttribute]:
    attributes = [stored(a) for a in requested]
    names = [a.value for a in attributes if a.name == "Name"]
    if any(name in names[:position] for position, name in enumerate(names)):
        raise KmipError(ResultReason.NON_UNIQUE_NAME_ATTRIBUTE, "a name is given twice")
    for attribute in attributes:
        if attribute.name in ("Unique Identifier", "State", "Initial Date", "Last Change Date"):
            raise KmipError(ResultReason.ATTRIBUTE_READ_ONLY,
                            f"{attribute.name} is set by the server")
    return attributes


async def requested_attributes(
    ctx: Context, payload: CreateRequestPayload | RegisterRequestPayload
) -> list[StoredAttribute]:
    """What a creation request asks for: its named templates' attributes, then its own."""
    names = payload.template_attribute.names if payload.template_attribute else ()
    return checked_attributes(await with_templates(ctx, names, client_attributes(payload)))


async def create(ctx: Context, payload: CreateRequestPayload) -> CreateResponsePayload:
    if payload.object_type != ObjectType.SYMMETRIC_KEY:
        raise KmipError(ResultReason.INVALID_OBJECT_TYPE,
                        "Create makes symmetric keys; use Create Key Pair for key pairs")
    attributes = await requested_attributes(ctx, payload)

    # First check the algorithm and length the client asked for.
    algorithm_item = _single(attributes, "Cryptographic Algorithm")
    length_item = _single(attributes, "Cryptographic Length")
    if algorithm_item is None or length_item is None:
        raise KmipError(ResultReason.INVALID_FIELD if ctx.is_v1 else ResultReason.MISSING_DATA,
                        "Create needs Cryptographic Algorithm and Cryptographic Length")
    algorithm, length = algorithm_item.value, length_item.value
    allowed = _SYMMETRIC_LENGTHS.get(algorithm)
    if allowed is None:
        raise KmipError(ResultReason.INVALID_FIELD,
                        f"cannot generate a symmetric key for algorithm {algorithm}")
    if length not in allowed:
        raise KmipError(ResultReason.INVALID_FIELD,
                        f"{length} bits is not a valid length for that algorithm")
    require_quantum_safe(attributes, algorithm, length)

    # Then draw the key and commit it. The key bytes travel in the command and so
    # sit in the Raft journal and snapshots in the clear until the barrier keyring
    # (the encryption-at-rest issue) wraps them before they enter a command.
    key = SymmetricKey(key_block=KeyBlock(
        key_format_type=KeyFormatType.RAW,
        key_value=KeyValue(key_material=secrets.token_bytes(length // 8)),
        cryptographic_algorithm=CryptographicAlgorithm(algorithm),
        cryptographic_length=length,
    ))
    material = to_item(key, Tag.SYMMETRIC_KEY)
    now = ctx.now()
    attributes += server_attributes(material, now, generated=True, given=attributes)
    uid = await ctx.write(CreateObject(
        scope=ctx.scope,
        uid=ObjectId(str(uuid.uuid4())),
        object_type=ObjectType.SYMMETRIC_KEY,
        attributes=tuple(attributes),
        material=encode_item(material),
        now=now,
    ))
    return CreateResponsePayload(object_type=ObjectType.SYMMETRIC_KEY, unique_identifier=uid)


async def register(ctx: Context, payload: RegisterRequestPayload) -> RegisterResponsePayload:
    if payload.object_type not in _REGISTERABLE:
        raise KmipError(ResultReason.INVALID_OBJECT_TYPE, "that object type cannot be registered")
    if payload.object is None:
        raise KmipError(ResultReason.INVALID_FIELD if ctx.is_v1 else ResultReason.MISSING_DATA,
                        "Register needs the object to register")
    if payload.object.TAG != object_tag(payload.object_type):
        raise invalid_field("the object does not match the Object Type")
    if isinstance(payload.object, Template):
        if not ctx.is_v1:
            raise KmipError(ResultReason.INVALID_OBJECT_TYPE, "templates ended with KMIP 2.0")
        # A template's content is checked as the attributes it will give.
        checked_attributes(list(payload.object.attributes))
    if isinstance(payload.object, CertificateRequest) and ctx.is_v1:
        raise KmipError(ResultReason.INVALID_OBJECT_TYPE,
                        "Certificate Request objects began with KMIP 2.0")
    attributes = await requested_attributes(ctx, payload)

    # Algorithm and length describe a key; take them from its key block when the
    # client did not repeat them as attributes.
    # A key wrapped under a key of the caller's scope is stored unwrapped, so that it
    # can be used; one wrapped under a key this server does not hold is stored as sent.
    key_block = getattr(payload.object, "key_block", None)
    if isinstance(key_block, KeyBlock):
        attributes += _key_block_attributes(key_block, attributes)
        algorithm_item = _single(attributes, "Cryptographic Algorithm")
        length_item = _single(attributes, "Cryptographic Length")
        if algorithm_item is not None and length_item is not None:
            require_quantum_safe(attributes, algorithm_item.value, length_item.value)
        if key_block.key_wrapping_data is not None and await _holds_wrapping_key(
                ctx, key_block):
            keyed: Any = payload.object
            opened = replace(keyed, key_block=await unwrap_block(ctx, key_block))
            payload = replace(payload, object=opened)

    certificate_value = getattr(payload.object, "certificate_value", None)
    if isinstance(certificate_value, bytes):
        attributes += certificate_attributes(certificate_value)

    assert payload.object is not None
    material = to_item(payload.object, payload.object.TAG)
    now = ctx.now()
    if not isinstance(payload.object, Template):
        attributes += server_attributes(material, now, generated=False, given=attributes)
    uid = await ctx.write(CreateObject(
        scope=ctx.scope,
        uid=ObjectId(str(uuid.uuid4())),
        object_type=ObjectType(payload.object_type),
        attributes=tuple(attributes),
        material=encode_item(material),
        now=now,
    ))
    return RegisterResponsePayload(unique_identifier=uid)


async def _holds_wrapping_key(ctx: Context, block: KeyBlock) -> bool:
    information = block.key_wrapping_data.encryption_key_information \
        if block.key_wrapping_data is not None else None
    if information is None:
        return False
    await ctx.barrier()
    return ctx.backend.store.get(ctx.scope, information.unique_identifier) is not None


def object_tag(object_type: int) -> int:
    return {
        ObjectType.SYMMETRIC_KEY: Tag.SYMMETRIC_KEY,
        ObjectType.SECRET_DATA: Tag.SECRET_DATA,
        ObjectType.OPAQUE_OBJECT: Tag.OPAQUE_OBJECT,
        ObjectType.CERTIFICATE: Tag.CERTIFICATE,
        ObjectType.PUBLIC_KEY: Tag.PUBLIC_KEY,
        ObjectType.PRIVATE_KEY: Tag.PRIVATE_KEY,
        ObjectType.SPLIT_KEY: Tag.SPLIT_KEY,
        ObjectType.PGP_KEY: Tag.PGP_KEY,
        ObjectType.TEMPLATE: Tag.TEMPLATE,
        ObjectType.CERTIFICATE_REQUEST: Tag.CERTIFICATE_REQUEST,
    }[ObjectType(object_type)]


def _key_block_attributes(
    block: KeyBlock, given: list[StoredAttribute]
) -> list[StoredAttribute]:
    names = {a.name for a in given}
    found = []
    if block.cryptographic_algorithm is not None and "Cryptographic Algorithm" not in names:
        found.append(StoredAttribute("Cryptographic Algorithm", Item(
            Tag.ATTRIBUTE_VALUE, ItemType.ENUMERATION, int(block.cryptographic_algorithm))))
    if block.cryptographic_length is not None and "Cryptographic Length" not in names:
        found.append(StoredAttribute("Cryptographic Length", Item(
            Tag.ATTRIBUTE_VALUE, ItemType.INTEGER, block.cryptographic_length)))
    return found


async def get(ctx: Context, payload: GetRequestPayload) -> GetResponsePayload:
    obj = await ctx.read(payload.unique_identifier)
    if obj.material is None:
        raise KmipError(ResultReason.OBJECT_DESTROYED, "the object was destroyed")
    # Sensitive material leaves only wrapped, non-extractable material not at all
    # (KMIP 2.1 sections 4.49 and 4.21).
    wrapping = payload.key_wrapping_specification
    if _flag(obj, "Sensitive", False) and wrapping is None:
        raise KmipError(ResultReason.SENSITIVE, "the object is Sensitive: get it wrapped")
    if not _flag(obj, "Extractable", True):
        raise KmipError(ResultReason.NOT_EXTRACTABLE, "the object is not Extractable")

    item = decode_item(obj.material)
    if payload.key_wrap_type == KeyWrapType.NOT_WRAPPED:
        item = await _unwrapped(ctx, item)
    if payload.key_format_type is not None:
        item = _in_format(obj, item, payload.key_format_type)
    if wrapping is not None:
        item = await _wrapped(ctx, obj, item, wrapping)
    if _flag(obj, "Fresh", False):
        await ctx.write(MarkServed(ctx.scope, obj.uid))
    return GetResponsePayload(
        object_type=obj.object_type,
        unique_identifier=obj.uid,
        object=from_item(_OBJECT_CLASSES[item.tag], item),
    )


async def _unwrapped(ctx: Context, item: Item) -> Item:
    """A key stored wrapped (registered under a key this server did not hold then),
    opened for a client that asks for it Not Wrapped; as it is if it is not wrapped."""
    value = from_item(_OBJECT_CLASSES[item.tag], item)
    block = getattr(value, "key_block", None)
    if not isinstance(block, KeyBlock) or block.key_wrapping_data is None:
        return item
    if not await _holds_wrapping_key(ctx, block):
        raise KmipError(ResultReason.WRAPPING_OBJECT_NOT_FOUND,
                        "the key is stored wrapped under a key this server does not hold")
    return to_item(replace(value, key_block=await unwrap_block(ctx, block)), item.tag)


async def _wrapped(ctx: Context, obj: ManagedObject, item: Item,
                   spec: KeyWrappingSpecification) -> Item:
    """The object ``item`` with its key block wrapped as ``spec`` asks."""
    value = from_item(_OBJECT_CLASSES[item.tag], item)
    block = getattr(value, "key_block", None)
    if not isinstance(block, KeyBlock):
        raise KmipError(ResultReason.INVALID_OBJECT_TYPE, "only objects with a key block wrap")
    wrapped = replace(value, key_block=await wrap_block(ctx, obj, block, spec))
    return to_item(wrapped, item.tag)


def _flag(obj: ManagedObject, name: str, default: bool) -> bool:
    value = obj.first(name)
    return default if value is None else bool(value.value)


def _in_format(obj: ManagedObject, item: Item, wanted: int) -> Item:
    """The stored key in the Key Format Type the client asked for."""
    if obj.object_type in (ObjectType.PRIVATE_KEY, ObjectType.PUBLIC_KEY):
        return asymmetric_in_format(obj.object_type, item, wanted)
    if obj.object_type != ObjectType.SYMMETRIC_KEY:
        stored_format = _key_format(item)
        if stored_format is not None and wanted != stored_format:
            raise KmipError(ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED,
                            "this object is only available in its registered format")
        return item
    key: SymmetricKey = from_item(SymmetricKey, item)
    block = key.key_block
    if not isinstance(block.key_value, KeyValue) or block.key_format_type not in (
        KeyFormatType.RAW, KeyFormatType.TRANSPARENT_SYMMETRIC_KEY
    ):
        return item
    material = block.key_value.key_material
    raw = material if isinstance(material, bytes) else material.value[0].value
    if wanted == KeyFormatType.RAW:
        new_material: bytes | Item = raw
    elif wanted == KeyFormatType.TRANSPARENT_SYMMETRIC_KEY:
        new_material = Item(Tag.KEY_MATERIAL, ItemType.STRUCTURE,
                            [Item(Tag.KEY, ItemType.BYTE_STRING, raw)])
    else:
        raise KmipError(ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED,
                        "symmetric keys are served as Raw or Transparent Symmetric Key")
    value = KeyValue(key_material=new_material, attribute_list=block.key_value.attribute_list,
                     attributes=block.key_value.attributes)
    changed = SymmetricKey(key_block=KeyBlock(
        key_format_type=KeyFormatType(wanted),
        key_compression_type=block.key_compression_type,
        key_value=value,
        cryptographic_algorithm=block.cryptographic_algorithm,
        cryptographic_length=block.cryptographic_length,
    ))
    return to_item(changed, Tag.SYMMETRIC_KEY)


def _key_format(item: Item) -> int | None:
    for child in item.value:
        if child.tag == Tag.KEY_BLOCK:
            for field in child.value:
                if field.tag == Tag.KEY_FORMAT_TYPE:
                    return int(field.value)
    return None


async def activate(ctx: Context, payload: ActivateRequestPayload) -> ActivateResponsePayload:
    uid = ObjectId(ctx.uid_of(payload.unique_identifier))
    await ctx.write(Activate(ctx.scope, uid, ctx.now()))
    return ActivateResponsePayload(unique_identifier=uid)


async def revoke(ctx: Context, payload: RevokeRequestPayload) -> RevokeResponsePayload:
    uid = ObjectId(ctx.uid_of(payload.unique_identifier))
    reason = payload.revocation_reason
    occurred = payload.compromise_occurrence_date
    await ctx.write(Revoke(
        scope=ctx.scope,
        uid=uid,
        reason=RevocationReasonCode(reason.revocation_reason_code)
        if reason.revocation_reason_code in RevocationReasonCode._value2member_map_
        else RevocationReasonCode.UNSPECIFIED,
        message=reason.revocation_message,
        compromise_occurrence_date=None if occurred is None else int(occurred.timestamp()),
        now=ctx.now(),
    ))
    return RevokeResponsePayload(unique_identifier=uid)


async def destroy(ctx: Context, payload: DestroyRequestPayload) -> DestroyResponsePayload:
    uid = ObjectId(ctx.uid_of(payload.unique_identifier))
    await ctx.write(Destroy(ctx.scope, uid, ctx.now()))
    return DestroyResponsePayload(unique_identifier=uid)


async def locate(ctx: Context, payload: LocateRequestPayload) -> LocateResponsePayload:
    wanted = [stored(a) for a in payload.attribute_list]
    if payload.attributes is not None:
        wanted += [stored(attribute_from_v2(item)) for item in payload.attributes.items]
    await ctx.barrier()

    # Every requested attribute must match one of the object's instances; a date
    # given twice is a range, both ends included (KMIP 1.4 section 4.9). A destroyed
    # object is only found by asking for its state: its key is gone. The newest
    # object comes first (KMIP 2.1 section 6.1.27 leaves order to servers; clients
    # looking a key up by name want the latest).
    ranges = _date_ranges(wanted)
    exact = [a for a in wanted if a.name not in ranges]
    # The Storage Status Mask picks on-line, archived and (2.x) destroyed objects;
    # without one, on-line objects only (KMIP 1.4 section 4.9), and destroyed ones
    # too when the client asks for a State.
    mask = payload.storage_status_mask
    if mask is None:
        mask = StorageStatusMask.ON_LINE_STORAGE
        if any(a.name == "State" for a in wanted):
            mask |= StorageStatusMask.DESTROYED_STORAGE
    found = [
        obj for obj in ctx.backend.store.objects(ctx.scope)
        if mask & _storage_status(obj)
        and all(_matches(obj, attribute) for attribute in exact)
        and all(_in_range(obj, name, bounds) for name, bounds in ranges.items())
    ]
    found.sort(key=lambda obj: (_initial_date(obj), obj.uid), reverse=True)
    total = len(found)
    offset = payload.offset_items or 0
    found = found[offset:]
    if payload.maximum_items is not None:
        found = found[:payload.maximum_items]
    if found:
        ctx.placeholder = found[0].uid

    # Located Items appeared in 1.3 and is optional: it is sent when the client asks
    # for a page, where the total tells what the page does not (the OASIS test cases
    # expect it nowhere else).
    paged = payload.maximum_items is not None or payload.offset_items is not None
    located = total if ctx.version >= (1, 3) and paged else None
    return LocateResponsePayload(located_items=located,
                                 unique_identifiers=tuple(obj.uid for obj in found))


def _storage_status(obj: ManagedObject) -> StorageStatusMask:
    if obj.state in (State.DESTROYED, State.DESTROYED_COMPROMISED):
        return StorageStatusMask.DESTROYED_STORAGE
    if obj.first("Archive Date") is not None:
        return StorageStatusMask.ARCHIVAL_STORAGE
    return StorageStatusMask.ON_LINE_STORAGE


def _date_ranges(wanted: list[StoredAttribute]) -> dict[str, tuple[int, int]]:
    """The date attributes asked for twice, as (earliest, latest)."""
    dates: dict[str, list[int]] = {}
    for attribute in wanted:
        if attribute.value.type == ItemType.DATE_TIME:
            dates.setdefault(attribute.name, []).append(int(attribute.value.value))
    return {name: (min(values), max(values)) for name, values in dates.items()
            if len(values) == 2}


def _in_range(obj: ManagedObject, name: str, bounds: tuple[int, int]) -> bool:
    return any(bounds[0] <= int(value.value) <= bounds[1] for value in obj.values(name))


def _matches(obj: ManagedObject, wanted: StoredAttribute) -> bool:
    if wanted.name == "State":
        return int(obj.state) == wanted.value.value
    return wanted.value in obj.values(wanted.name)


def _initial_date(obj: ManagedObject) -> int:
    item = obj.first("Initial Date")
    return 0 if item is None else int(item.value)
