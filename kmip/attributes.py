"""Attributes in their two wire forms, and the conversions between them.

KMIP 1.x carries an attribute as an Attribute structure: its name as text, an
optional index, and its value under the Attribute Value tag (1.4 section 2.1.1).
Creation requests group them in a Template-Attribute with Name structures beside.

KMIP 2.x carries an attribute as an item tagged by the attribute's own tag (a State
is an Enumeration tagged State), grouped in an Attributes structure (2.1 section
2.1.2). An attribute the specification does not define (1.x names beginning "x-"
or "y-") becomes an Attribute structure with a Vendor Identification ("x" or "y"),
the rest of the name as Attribute Name, and the Attribute Value, which is how the
2.1 conformance tests write them. 2.x has no attribute index: Current Attribute and
Attribute Reference name which instance is meant.

Payloads keep exactly the form that was on the wire; ``attribute_to_v2``,
``attribute_from_v2`` and ``request_attributes`` give handlers one view of both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import invalid_field
from .mapping import at, from_item, many, required, rest
from .tables import ATTRIBUTE_TAGS, NameType, Tag
from .ttlv import Item, ItemType


@dataclass(frozen=True, kw_only=True)
class Attribute:
    """A 1.x attribute, or a 2.x vendor attribute (then with a vendor identification)."""

    vendor_identification: str | None = at(Tag.VENDOR_IDENTIFICATION)
    name: str = required(Tag.ATTRIBUTE_NAME)
    index: int | None = at(Tag.ATTRIBUTE_INDEX)
    # The raw Attribute Value item. Absent only in a 1.x Notify, and in a 2.x
    # Attribute Reference sense where no value is meant.
    value: Item | None = at(Tag.ATTRIBUTE_VALUE)


@dataclass(frozen=True, kw_only=True)
class Name:
    name_value: str = required(Tag.NAME_VALUE)
    name_type: NameType | int = required(Tag.NAME_TYPE)


@dataclass(frozen=True, kw_only=True)
class TemplateAttribute:
    """KMIP 1.x: names (of templates, deprecated since 1.3) and attributes."""

    names: tuple[Name, ...] = many(Tag.NAME)
    attributes: tuple[Attribute, ...] = many(Tag.ATTRIBUTE)


@dataclass(frozen=True, kw_only=True)
class Attributes:
    """KMIP 2.x: attribute items, each under its own tag, in the order they came."""

    items: tuple[Item, ...] = rest()


@dataclass(frozen=True, kw_only=True)
class AttributeReference:
    """KMIP 2.x: a vendor attribute named by reference (a standard one is its tag)."""

    vendor_identification: str = required(Tag.VENDOR_IDENTIFICATION)
    attribute_name: str = required(Tag.ATTRIBUTE_NAME)


@dataclass(frozen=True, kw_only=True)
class CurrentAttribute:
    """KMIP 2.x: the attribute instance as it is now (one item under its own tag)."""

    items: tuple[Item, ...] = rest()


@dataclass(frozen=True, kw_only=True)
class NewAttribute:
    """KMIP 2.x: the attribute instance to add or set (one item under its own tag)."""

    items: tuple[Item, ...] = rest()


ATTRIBUTE_NAMES: dict[int, str] = {tag: name for name, tag in ATTRIBUTE_TAGS.items()}
"""Attribute tag -> its 1.x Attribute Name text."""

# 1.x names with these prefixes are client ("x-") and server ("y-") custom
# attributes (KMIP 1.4 section 3.41); 2.x says the same with a vendor identification.
_CUSTOM_PREFIXES = ("x-", "y-")


def attribute_to_v2(attribute: Attribute) -> Item:
    """The 2.x item of a 1.x attribute. The index, which 2.x lacks, is dropped."""
    value = attribute.value
    if value is None:
        raise invalid_field(f"attribute {attribute.name!r} has no value")
    if attribute.vendor_identification is not None:
        return _vendor_attribute(attribute.vendor_identification, attribute.name, value)

    # A standard attribute is its value under its own tag.
    tag = ATTRIBUTE_TAGS.get(attribute.name)
    if tag is not None:
        return Item(tag, value.type, value.value)

    # A custom one is a vendor attribute: "x-Barcode" is vendor "x", name "Barcode".
    if attribute.name[:2] in _CUSTOM_PREFIXES:
        return _vendor_attribute(attribute.name[0], attribute.name[2:], value)
    raise invalid_field(f"unknown attribute {attribute.name!r}")


def _vendor_attribute(vendor: str, name: str, value: Item) -> Item:
    children = [
        Item(Tag.VENDOR_IDENTIFICATION, ItemType.TEXT_STRING, vendor),
        Item(Tag.ATTRIBUTE_NAME, ItemType.TEXT_STRING, name),
        value,
    ]
    return Item(Tag.ATTRIBUTE, ItemType.STRUCTURE, children)


def attribute_from_v2(item: Item) -> Attribute:
    """The 1.x attribute of a 2.x attribute item."""
    # A vendor attribute under vendor "x" or "y" is the 1.x custom attribute.
    if item.tag == Tag.ATTRIBUTE:
        vendor: Attribute = from_item(Attribute, item)
        prefix = vendor.vendor_identification
        if prefix is not None and prefix + "-" in _CUSTOM_PREFIXES:
            return Attribute(name=f"{prefix}-{vendor.name}", value=vendor.value)
        return vendor

    name = ATTRIBUTE_NAMES.get(item.tag)
    if name is None:
        raise invalid_field(f"tag 0x{item.tag:06X} is not an attribute")
    return Attribute(name=name, value=Item(Tag.ATTRIBUTE_VALUE, item.type, item.value))


def template_attributes(
    template: TemplateAttribute | None, attributes: Attributes | None
) -> list[Attribute]:
    """The attributes of a 1.x Template-Attribute or a 2.x Attributes, as 1.x ones.

    A Template-Attribute's Name structures name Templates to take attributes from
    (KMIP 1.4 section 2.1.8), not Name attributes of the new object; they are not
    attributes and are left to the caller (templates are deprecated since 1.3).
    """
    found: list[Attribute] = []
    if template is not None:
        found.extend(template.attributes)
    if attributes is not None:
        found.extend(attribute_from_v2(item) for item in attributes.items)
    return found


def request_attributes(payload: Any) -> list[Attribute]:
    """The attributes a Create, Register, Re-key, Derive Key, ... request asks for.

    Reads the payload's ``template_attribute`` (1.x) or ``attributes`` (2.x),
    whichever came, and answers 1.x attributes either way.
    """
    template = getattr(payload, "template_attribute", None)
    attributes = getattr(payload, "attributes", None)
    return template_attributes(template, attributes)
