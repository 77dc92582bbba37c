"""Get Attributes, Get Attribute List, Add, Modify, Delete, Set and Adjust Attribute.

Stored attributes are 1.x-shaped (a name and an Attribute Value item). A 1.x client
gets them back as Attribute structures with indexes; a 2.x client as items under
their own tags. A 1.x client never receives an attribute its version does not
define (Original Creation Date, say): the table's "since" column decides.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from keyquorum.cluster.state import (
    AddAttribute,
    AdjustAttribute,
    DeleteAttribute,
    ManagedObject,
    ModifyAttribute,
    SetAttribute,
    StoredAttribute,
)
from keyquorum.cluster.state import UniqueIdentifier as ObjectId

from ..attributes import (
    ATTRIBUTE_NAMES,
    Attribute,
    AttributeReference,
    Attributes,
    attribute_from_v2,
    attribute_to_v2,
)
from ..errors import KmipError, invalid_field
from ..payloads import (
    AddAttributeRequestPayload,
    AddAttributeResponsePayload,
    AdjustAttributeRequestPayload,
    AdjustAttributeResponsePayload,
    DeleteAttributeRequestPayload,
    DeleteAttributeResponsePayload,
    GetAttributeListRequestPayload,
    GetAttributeListResponsePayload,
    GetAttributesRequestPayload,
    GetAttributesResponsePayload,
    ModifyAttributeRequestPayload,
    ModifyAttributeResponsePayload,
    SetAttributeRequestPayload,
    SetAttributeResponsePayload,
)
from ..tables import ATTRIBUTE_TAGS, TAG_SINCE, AdjustmentType, ResultReason, Tag
from ..ttlv import Item, ItemType
from .context import Context

_CUSTOM_PREFIXES = ("x-", "y-")

# Tags older than the attribute of the same name: Key Format Type is a field of every
# Key Block since 1.0 but an attribute only since 2.0.
_ATTRIBUTE_SINCE = {"Key Format Type": (2, 0)}

# The attributes a whole listing (Get Attributes without names, Get Attribute List)
# starts with, in this order; the rest follow by name. It is the order the OASIS
# test cases show, and clients that diff listings are spared a reshuffle.
_LEADING = (
    "Unique Identifier",
    "Short Unique Identifier",
    "Object Type",
    "Cryptographic Algorithm",
    "Cryptographic Length",
)


def defined_in(name: str, version: tuple[int, int]) -> bool:
    """Whether protocol ``version`` defines the attribute called ``name``."""
    tag = ATTRIBUTE_TAGS.get(name)
    if tag is None:
        return name[:2] in _CUSTOM_PREFIXES
    since = _ATTRIBUTE_SINCE.get(name, TAG_SINCE.get(tag, (1, 0)))
    return since <= version


def visible(obj: ManagedObject, version: tuple[int, int]) -> list[StoredAttribute]:
    """The object's attributes a client of ``version`` sees, in listing order."""
    found = [a for a in obj.attributes if defined_in(a.name, version)]
    if version >= (2, 0):
        found.append(short_unique_identifier(obj))
    return sorted(found, key=_listing_order)


def short_unique_identifier(obj: ManagedObject) -> StoredAttribute:
    """KMIP 2.0's Short Unique Identifier: SHA-256 of the identifier (2.1 section 4.52).

    Derived, not stored: it is a function of the identifier, so it never disagrees.
    """
    digest = hashlib.sha256(obj.uid.encode()).digest()
    return StoredAttribute("Short Unique Identifier",
                           Item(Tag.ATTRIBUTE_VALUE, ItemType.BYTE_STRING, digest))


def _listing_order(attribute: StoredAttribute) -> tuple[int, str, int]:
    # Custom attributes lead in the order the client gave them (the sort is stable);
    # Get Attribute List sorts their names (the OASIS TL-M-3 case shows both).
    name = attribute.name
    if name[:2] in _CUSTOM_PREFIXES:
        return (0, "", 0)
    if name in _LEADING:
        return (1, "", _LEADING.index(name))
    # Key Format Type goes beside the Digest, which is taken in that format.
    if name == "Key Format Type":
        return (2, "Digest", 1)
    return (2, name, 0)


def indexed(attributes: Iterable[StoredAttribute]) -> list[Attribute]:
    """1.x Attribute structures, each instance numbered within its name."""
    seen: dict[str, int] = {}
    result = []
    for stored in attributes:
        index = seen.get(stored.name, 0)
        seen[stored.name] = index + 1
        result.append(Attribute(name=stored.name, index=index or None, value=stored.value))
    return result


def as_v2(attributes: Iterable[StoredAttribute]) -> Attributes:
    return Attributes(items=tuple(
        attribute_to_v2(Attribute(name=a.name, value=a.value)) for a in attributes
    ))


def stored(attribute: Attribute) -> StoredAttribute:
    """The stored form of a client's attribute, checked for a known name and a value."""
    if attribute.value is None:
        raise invalid_field(f"attribute {attribute.name!r} has no value")
    if attribute.name not in ATTRIBUTE_TAGS and attribute.name[:2] not in _CUSTOM_PREFIXES:
        raise KmipError(ResultReason.INVALID_FIELD, f"unknown attribute {attribute.name!r}")
    value = attribute.value
    return StoredAttribute(attribute.name, Item(Tag.ATTRIBUTE_VALUE, value.type, value.value))


def stored_v2(item: Item) -> StoredAttribute:
    return stored(attribute_from_v2(item))


def _reference_name(reference: object) -> str:
    """The 1.x name of a 2.x Attribute Reference (a tag, or a vendor reference)."""
    if isinstance(reference, int):
        name = ATTRIBUTE_NAMES.get(reference)
        if name is None:
            raise invalid_field(f"tag 0x{reference:06X} is not an attribute")
        return name
    vendor = getattr(reference, "vendor_identification", "")
    return f"{vendor}-{getattr(reference, 'attribute_name', '')}"


async def get_attributes(
    ctx: Context, payload: GetAttributesRequestPayload
) -> GetAttributesResponsePayload:
    obj = await ctx.read(payload.unique_identifier, material=False)

    # No names asked for means every attribute (KMIP 1.4 section 4.11).
    wanted = list(payload.attribute_names)
    wanted += [_reference_name(r) for r in payload.attribute_references]
    attributes = visible(obj, ctx.version)
    if wanted:
        # In the order asked for, as clients (and the OASIS test cases) read them.
        attributes = sorted((a for a in attributes if a.name in wanted),
                            key=lambda a: wanted.index(a.name))

    if ctx.is_v1:
        return GetAttributesResponsePayload(unique_identifier=obj.uid,
                                            attribute_list=tuple(indexed(attributes)))
    return GetAttributesResponsePayload(unique_identifier=obj.uid, attributes=as_v2(attributes))


async def get_attribute_list(
    ctx: Context, payload: GetAttributeListRequestPayload
) -> GetAttributeListResponsePayload:
    obj = await ctx.read(payload.unique_identifier, material=False)

    names = list(dict.fromkeys(a.name for a in visible(obj, ctx.version)))
    custom = sorted(name for name in names if name[:2] in _CUSTOM_PREFIXES)
    names = custom + names[len(custom):]
    if ctx.is_v1:
        return GetAttributeListResponsePayload(unique_identifier=obj.uid,
                                               attribute_names=tuple(names))
    references: list[object] = []
    for name in names:
        tag = ATTRIBUTE_TAGS.get(name)
        if tag is not None:
            references.append(tag)
        elif name[:2] in _CUSTOM_PREFIXES:
            references.append(AttributeReference(vendor_identification=name[0],
                                                  attribute_name=name[2:]))
    return GetAttributeListResponsePayload(
        unique_identifier=obj.uid, attribute_references=tuple(references)  # type: ignore[arg-type]
    )


async def add_attribute(
    ctx: Context, payload: AddAttributeRequestPayload
) -> AddAttributeResponsePayload:
    uid = ctx.uid_of(payload.unique_identifier)
    if payload.attribute is not None:
        attribute = stored(payload.attribute)
    elif payload.new_attribute is not None and len(payload.new_attribute.items) == 1:
        attribute = stored_v2(payload.new_attribute.items[0])
    else:
        raise invalid_field("Add Attribute needs exactly one attribute")

    await ctx.write(AddAttribute(ctx.scope, ObjectId(uid), attribute, ctx.now()))

    if not ctx.is_v1:
        return AddAttributeResponsePayload(unique_identifier=ObjectId(uid))
    obj = await ctx.read(uid, material=False)
    index = len(obj.values(attribute.name)) - 1
    echoed = Attribute(name=attribute.name, index=index or None, value=attribute.value)
    return AddAttributeResponsePayload(unique_identifier=ObjectId(uid), attribute=echoed)


async def modify_attribute(
    ctx: Context, payload: ModifyAttributeRequestPayload
) -> ModifyAttributeResponsePayload:
    uid = ctx.uid_of(payload.unique_identifier)
    obj = await ctx.read(uid, material=False)

    # 1.x names the instance by index (0 when absent); 2.x by its current value,
    # or not at all when the attribute has a single instance.
    if payload.attribute is not None:
        new = stored(payload.attribute)
        index = payload.attribute.index or 0
    elif payload.new_attribute is not None and len(payload.new_attribute.items) == 1:
        new = stored_v2(payload.new_attribute.items[0])
        index = _index_of_current(obj, new.name, payload.current_attribute)
    else:
        raise invalid_field("Modify Attribute needs exactly one new attribute")

    await ctx.write(ModifyAttribute(ctx.scope, obj.uid, new.name, index, new.value, ctx.now()))

    if not ctx.is_v1:
        return ModifyAttributeResponsePayload(unique_identifier=obj.uid)
    echoed = Attribute(name=new.name, index=index or None, value=new.value)
    return ModifyAttributeResponsePayload(unique_identifier=obj.uid, attribute=echoed)


async def delete_attribute(
    ctx: Context, payload: DeleteAttributeRequestPayload
) -> DeleteAttributeResponsePayload:
    uid = ctx.uid_of(payload.unique_identifier)
    obj = await ctx.read(uid, material=False)

    if payload.attribute_name is not None:
        name = payload.attribute_name
        index = payload.attribute_index or 0
    elif payload.current_attribute is not None and len(payload.current_attribute.items) == 1:
        name = stored_v2(payload.current_attribute.items[0]).name
        index = _index_of_current(obj, name, payload.current_attribute)
    elif payload.attribute_reference is not None:
        name = _reference_name(payload.attribute_reference)
        index = 0
    else:
        raise invalid_field("Delete Attribute needs an attribute name or reference")
    deleted = _instance(obj, name, index)

    await ctx.write(DeleteAttribute(ctx.scope, obj.uid, name, index, ctx.now()))

    if not ctx.is_v1:
        return DeleteAttributeResponsePayload(unique_identifier=obj.uid)
    echoed = Attribute(name=name, index=index or None, value=deleted)
    return DeleteAttributeResponsePayload(unique_identifier=obj.uid, attribute=echoed)


def _index_of_current(obj: ManagedObject, name: str, current: object) -> int:
    items = getattr(current, "items", ())
    if not items:
        if len(obj.values(name)) > 1:
            raise KmipError(ResultReason.ATTRIBUTE_NOT_FOUND,
                            f"{name} has several instances: name the current one")
        return 0
    value = stored_v2(items[0]).value
    for index, existing in enumerate(obj.values(name)):
        if existing == value:
            return index
    raise KmipError(ResultReason.ATTRIBUTE_NOT_FOUND, f"no {name} with that current value")


def _instance(obj: ManagedObject, name: str, index: int) -> Item:
    values = obj.values(name)
    if index >= len(values):
        raise KmipError(ResultReason.ATTRIBUTE_NOT_FOUND, f"no {name} attribute at index {index}")
    return values[index]


async def set_attribute(
    ctx: Context, payload: SetAttributeRequestPayload
) -> SetAttributeResponsePayload:
    """KMIP 2.x: give a single-valued attribute its value, whether it had one or not."""
    uid = ObjectId(ctx.uid_of(payload.unique_identifier))
    if len(payload.new_attribute.items) != 1:
        raise invalid_field("Set Attribute needs exactly one attribute")
    attribute = stored_v2(payload.new_attribute.items[0])

    await ctx.write(SetAttribute(ctx.scope, uid, attribute, ctx.now()))
    return SetAttributeResponsePayload(unique_identifier=uid)


async def adjust_attribute(
    ctx: Context, payload: AdjustAttributeRequestPayload
) -> AdjustAttributeResponsePayload:
    """KMIP 2.x: increment, decrement or negate a numeric attribute, in the state."""
    uid = ObjectId(ctx.uid_of(payload.unique_identifier))
    name = _reference_name(payload.attribute_reference)
    if payload.adjustment_type not in AdjustmentType._value2member_map_:
        raise invalid_field("unknown Adjustment Type")
    amount = None if payload.adjustment_value is None else payload.adjustment_value.value
    if amount is not None and not isinstance(amount, int):
        raise KmipError(ResultReason.INVALID_DATA_TYPE, "the Adjustment Value is not a number")

    await ctx.write(AdjustAttribute(ctx.scope, uid, name, int(payload.adjustment_type), amount,
                                    ctx.now()))
    return AdjustAttributeResponsePayload(unique_identifier=uid)
