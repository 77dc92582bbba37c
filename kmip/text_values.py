"""The spellings the XML and JSON encodings of KMIP share.

KMIP Profiles 1.4 sections 5.4 (JSON) and 5.5 (XML), and 2.1 sections 6.4 and 6.5,
spell a tag, an enumeration, a mask, a date and a hex number the same way in both
encodings; only the shape around them differs. This module holds those spellings so
that ``xml.py`` and ``json.py`` stay two thin walks over the item tree.

Names come from the generated tables, reversed once at import. A name that the
tables do not know is refused with Invalid Field; anything else a peer can get wrong
(bad hex, a bad date, a number out of range) is refused with Invalid Message. Error
messages quote at most a few dozen characters of what the peer sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from .errors import invalid_field, invalid_message
from .tables import ATTRIBUTE_TAGS, TAG_ENUMS, TAG_MASKS, TAG_XML_NAMES, VALUE_XML_NAMES, Tag
from .ttlv import Item, ItemType, big_integer_bytes

# Attribute Name and Attribute Value (KMIP 1.4 section 2.1.1). Numbered here so that
# the 1.x context rule works even while the tables are incomplete.
ATTRIBUTE_NAME: Final = 0x42000A
ATTRIBUTE_VALUE: Final = 0x42000B

TYPE_NAMES: Final[Mapping[ItemType, str]] = {
    ItemType.STRUCTURE: "Structure",
    ItemType.INTEGER: "Integer",
    ItemType.LONG_INTEGER: "LongInteger",
    ItemType.BIG_INTEGER: "BigInteger",
    ItemType.ENUMERATION: "Enumeration",
    ItemType.BOOLEAN: "Boolean",
    ItemType.TEXT_STRING: "TextString",
    ItemType.BYTE_STRING: "ByteString",
    ItemType.DATE_TIME: "DateTime",
    ItemType.INTERVAL: "Interval",
    ItemType.DATE_TIME_EXTENDED: "DateTimeExtended",
}
_TYPES_BY_NAME = {name: item_type for item_type, name in TYPE_NAMES.items()}

_TAGS_BY_NAME = {name: tag for tag, name in TAG_XML_NAMES.items()}

# The value tables of every enumeration and mask, and their reverse. KMIP 2.x
# Attribute Reference enumerates tags themselves (KMIP 2.1 section 11.x, "Tag"), so
# the Tag class, when a tag names it, spells its values as tag names.
_NAMES: dict[type, Mapping[int, str]] = {kind: names for kind, names in VALUE_XML_NAMES.items()}
_NAMES[Tag] = TAG_XML_NAMES
_VALUES: dict[type, Mapping[str, int]] = {
    kind: {name: value for value, name in names.items()} for kind, names in _NAMES.items()
}

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
SECOND: Final = timedelta(seconds=1)
MICROSECOND: Final = timedelta(microseconds=1)

# Python's int() also takes underscores, spaces, a plus sign and non-ASCII digits;
# the encodings allow none of them, so every number is matched first. Twenty digits
# hold any 64-bit value and keep a hostile number from costing a long conversion.
_DECIMAL = re.compile(r"-?[0-9]{1,20}")
_HEX_NUMBER = re.compile(r"0x[0-9A-Fa-f]+")
_HEX_BYTES = re.compile(r"(?:[0-9A-Fa-f]{2})*")

INT32 = range(-(2**31), 2**31)
UINT32 = range(2**32)
INT64 = range(-(2**63), 2**63)


def quoted(text: object) -> str:
    """A peer's text, shortened for an error message."""
    shown = repr(text)
    return shown if len(shown) <= 40 else shown[:37] + "..."


# Types and tags.


def type_name(item_type: ItemType) -> str:
    return TYPE_NAMES[item_type]


def parse_type(name: str) -> ItemType:
    item_type = _TYPES_BY_NAME.get(name)
    if item_type is None:
        raise invalid_message(f"unknown item type {quoted(name)}")
    return item_type


def tag_name(tag: int) -> str | None:
    """The tag's name in the encodings, or None when only its number can be sent."""
    return TAG_XML_NAMES.get(tag)


def tag_hex(tag: int) -> str:
    return f"0x{tag:06X}"


def parse_tag(text: str) -> int:
    """A tag by name, or by number as '0x42XXXX' (KMIP) or '0x54XXXX' (extension)."""
    if text.startswith("0x"):
        if not _HEX_NUMBER.fullmatch(text) or len(text) != 8 or text[2:4] not in ("42", "54"):
            raise invalid_message(f"tag {quoted(text)} is not a KMIP tag")
        return int(text, 16)

    tag = _TAGS_BY_NAME.get(text)
    if tag is None:
        raise invalid_field(f"unknown tag {quoted(text)}")
    return tag


# The 1.x context rule: an Attribute Value's enumeration and mask are those of the
# attribute its sibling Attribute Name names (KMIP Profiles 1.4 section 5.4.1.5).


def attribute_tag(item: Item) -> int | None:
    """The attribute an Attribute Name item names, when the tables know it."""
    if item.tag != ATTRIBUTE_NAME or item.type != ItemType.TEXT_STRING:
        return None
    return ATTRIBUTE_TAGS.get(item.value)


def typing_tag(tag: int, attribute: int | None) -> int:
    """The tag whose enumeration and mask spell the values of ``tag``."""
    return attribute if tag == ATTRIBUTE_VALUE and attribute is not None else tag


# Numbers.


def check_int(value: Any, allowed: range | None) -> int:
    """The value an encoder was handed, checked: an int (not a bool) in range."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid_field(f"{quoted(value)} is not an integer")

    # int() first: `in range` is a constant-time test for a plain int only, and walks
    # the whole range for an IntEnum or IntFlag member.
    number = int(value)
    if allowed is not None and number not in allowed:
        raise invalid_field(f"{number} is out of range")
    return number


def format_hex(value: int, size: int) -> str:
    """'0x' and the two's complement of ``value`` in ``size`` bytes, big-endian."""
    return f"0x{value & ((1 << size * 8) - 1):0{size * 2}X}"


def parse_hex(text: str, size: int, signed: bool) -> int:
    if not _HEX_NUMBER.fullmatch(text) or len(text) - 2 > size * 2:
        raise invalid_message(f"{quoted(text)} is not a {size}-byte hex value")
    value = int(text, 16)
    if signed and value >> (size * 8 - 1):
        value -= 1 << size * 8
    return value


def parse_decimal(text: str, allowed: range) -> int:
    if not _DECIMAL.fullmatch(text):
        raise invalid_message(f"{quoted(text)} is not a number")
    value = int(text)
    if value not in allowed:
        raise invalid_message(f"{value} is out of range")
    return value


def parse_number(text: str, size: int, allowed: range) -> int:
    """A decimal number, or a hex one ('0x...', two's complement when signed)."""
    if text.startswith("0x"):
        return parse_hex(text, size, signed=allowed.start < 0)
    return parse_decimal(text, allowed)


def signed32(bits: int) -> int:
    return bits - (1 << 32) if bits >> 31 else bits


# Byte strings and big integers: hex digits, big-endian.


def parse_hex_bytes(text: str) -> bytes:
    if not _HEX_BYTES.fullmatch(text):
        raise invalid_message(f"{quoted(text)} is not hex bytes")
    return bytes.fromhex(text)


def big_integer_hex(value: int) -> str:
    """Two's complement, sign-extended to a multiple of 8 bytes, as in TTLV."""
    return big_integer_bytes(value).hex()


def parse_big_integer_hex(text: str) -> int:
    raw = parse_hex_bytes(text)
    if not raw:
        raise invalid_message("a big integer needs at least one byte")
    return int.from_bytes(raw, "big", signed=True)


# Enumerations: the value's name, else its number as '0x' and 8 hex digits.


def format_enumeration(tag: int, value: int) -> str:
    kind = TAG_ENUMS.get(tag)
    name = _NAMES.get(kind, {}).get(value) if kind is not None else None
    return name if name is not None else format_hex(value, 4)


def parse_enumeration(tag: int, text: str) -> int:
    if text.startswith("0x"):
        return parse_hex(text, 4, signed=False)

    kind = TAG_ENUMS.get(tag)
    value = _VALUES.get(kind, {}).get(text) if kind is not None else None
    if value is None:
        raise invalid_field(f"unknown enumeration value {quoted(text)}")
    return value


# Masks: the names of the bits set, unknown bits as one hex value, joined by the
# encoding's separator (a space in XML, '|' in JSON).


def has_mask(tag: int) -> bool:
    return tag in TAG_MASKS


def format_mask(tag: int, value: int, separator: str) -> str | None:
    """The mask spelled by names, or None when ``value`` has no bit set."""
    bits = value & 0xFFFFFFFF
    words = []
    for bit, name in sorted(_NAMES.get(TAG_MASKS[tag], {}).items()):
        if bit and bits & bit == bit:
            words.append(name)
            bits &= ~bit
    if bits:
        words.append(format_hex(bits, 4))
    return separator.join(words) if words else None


def parse_mask(tag: int, text: str, separator: str) -> int:
    """Names and hex values OR-ed together, or one decimal number."""
    if _DECIMAL.fullmatch(text):
        return parse_decimal(text, INT32)

    names = _VALUES.get(TAG_MASKS[tag], {}) if tag in TAG_MASKS else {}
    # XML separates by white space, so any run of it counts as one separator.
    words = text.split() if separator == " " else [w.strip() for w in text.split(separator)]
    if not words or not all(words):
        raise invalid_message(f"mask {quoted(text)} has an empty part")

    bits = 0
    for word in words:
        if word.startswith("0x"):
            bits |= parse_hex(word, 4, signed=False)
        elif word in names:
            bits |= names[word]
        else:
            raise invalid_field(f"unknown mask value {quoted(word)}")
    return signed32(bits)


# Booleans.

_BOOLEANS: Final = {
    "true": True,
    "false": False,
    # xsd:boolean also allows 1 and 0; the hex forms are the JSON encoding's.
    "1": True,
    "0": False,
    "0x0000000000000001": True,
    "0x0000000000000000": False,
}


def parse_boolean(text: str) -> bool:
    value = _BOOLEANS.get(text)
    if value is None:
        raise invalid_message(f"{quoted(text)} is not a boolean")
    return value


# Dates: ISO 8601 in UTC. A moment ISO 8601 cannot spell (before year 1 or after
# 9999) goes as its 8-byte hex number, which both encodings accept.


def format_date(value: int, unit: timedelta) -> str:
    try:
        moment = _EPOCH + value * unit
    except OverflowError:
        return format_hex(value, 8)
    if unit == SECOND:
        return moment.isoformat()
    return moment.isoformat(timespec="microseconds")


def parse_date(text: str, unit: timedelta) -> int:
    """Seconds (or microseconds) since the epoch; a zoneless time is taken as UTC."""
    if text.startswith("0x"):
        return parse_hex(text, 8, signed=True)

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise invalid_message(f"{quoted(text)} is not an ISO 8601 date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)

    return (moment - _EPOCH) // unit
