"""The JSON encoding of KMIP (KMIP Profiles 1.4 section 5.4, 2.1 section 6.4).

Theory of operation
-------------------
An item is one object: {"tag": ..., "type": ..., "value": ...}. The tag is the tag's
name ('RequestMessage'), or its number as '0x42XXXX' when the tables do not name it.
The type is omitted for a Structure, whose value is an array of its items' objects.
Other values are spelled as ``text_values`` spells them, with JSON's own types where
the encoding allows them:

- Integer and Interval are numbers; an Integer whose tag has a mask is its bit names
  joined by '|' ("Encrypt|Decrypt"), with any unknown bits as one '0x' hex value.
- Long Integer is a number while a double holds it exactly (JavaScript clients parse
  every number as one), else '0x' and 16 hex digits. Big Integer is always '0x' hex.
- Enumeration is the value's name, else '0x' and 8 hex digits. Boolean is true/false.
- Byte String is hex digits without '0x'; Date-Time is ISO 8601.

On input every number form the encoding allows is accepted: a JSON number or a '0x'
hex string for the integer types, hex strings for Boolean and the dates.

The 1.x context rule of the XML encoding holds here too: an Attribute Value is spelled
with the enumeration or mask of the attribute its preceding Attribute Name names.
"""

from __future__ import annotations

import json
from typing import Any, Final

from .errors import invalid_field, invalid_message
from .limits import DEFAULT_LIMITS, Limits
from .text_values import (
    ATTRIBUTE_NAME,
    INT32,
    INT64,
    MICROSECOND,
    SECOND,
    UINT32,
    attribute_tag,
    big_integer_hex,
    check_int,
    format_date,
    format_enumeration,
    format_hex,
    format_mask,
    has_mask,
    parse_big_integer_hex,
    parse_boolean,
    parse_date,
    parse_enumeration,
    parse_hex,
    parse_hex_bytes,
    parse_mask,
    parse_tag,
    parse_type,
    quoted,
    tag_hex,
    tag_name,
    type_name,
    typing_tag,
)
from .ttlv import Item, ItemType

# Numbers a double holds exactly, as the encoding bounds plain Long Integers.
_EXACT_IN_DOUBLE = range(-(2**52) + 1, 2**52)

# JSON spends fewer than eight characters per TTLV byte: hex doubles byte strings,
# and a 16-byte Integer item is a 60-character object at most. Longer text could not
# fit the TTLV limit once decoded, so it is refused before it is parsed.
JSON_CHARS_PER_TTLV_BYTE = 8

_KEYS: Final = frozenset({"tag", "type", "value"})
_STRUCTURE = ItemType.STRUCTURE


# Reading.


def item_from_json(text: str | bytes, limits: Limits = DEFAULT_LIMITS) -> Item:
    """Decode one JSON document (usually a whole message) into an item tree."""
    if len(text) > limits.max_message_size * JSON_CHARS_PER_TTLV_BYTE:
        raise invalid_message(f"JSON document of {len(text)} characters is too long")

    try:
        document = json.loads(
            text,
            parse_int=_parse_json_int,
            parse_constant=_refuse_constant,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:
        raise invalid_message("JSON nests too deeply") from None
    except (ValueError, UnicodeError) as error:
        # JSONDecodeError is a ValueError, and so are our hooks' refusals.
        raise invalid_message(f"malformed JSON: {error}") from None
    return item_from_json_object(document, limits)


def _parse_json_int(text: str) -> int:
    # Python converts any number of digits, slowly; no KMIP integer needs more than 20
    # (a Big Integer that long travels as hex).
    if len(text) > 20:
        raise ValueError("number too long")
    return int(text)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise ValueError("an object repeats a key")
    return found


def item_from_json_object(document: Any, limits: Limits = DEFAULT_LIMITS) -> Item:
    """Decode an already parsed JSON value (dicts, lists, str, int, bool)."""
    return _Reader(limits).item(document, None, 0)


class _Reader:
    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._budget = limits.max_items

    def item(self, document: Any, attribute: int | None, depth: int) -> Item:
        # First the object's shape, the tag and the type.
        if not isinstance(document, dict):
            raise invalid_message(f"expected an object, found {quoted(document)}")
        unexpected = document.keys() - _KEYS
        if unexpected:
            raise invalid_message(f"object has unexpected keys {quoted(sorted(unexpected))}")
        if "tag" not in document or "value" not in document:
            raise invalid_message("object lacks a tag or a value")
        self._budget -= 1
        if self._budget < 0:
            raise invalid_message(f"document holds more than {self._limits.max_items} items")

        tag = parse_tag(_string(document["tag"]))
        item_type = parse_type(_string(document["type"])) if "type" in document else _STRUCTURE
        value = document["value"]

        # A Structure's value is the array of its items, read with the 1.x context.
        if item_type == _STRUCTURE:
            if not isinstance(value, list):
                raise invalid_message(f"structure {tag_hex(tag)} has no array value")
            if depth >= self._limits.max_depth:
                raise invalid_message(f"structures nest deeper than {self._limits.max_depth}")
            children: list[Item] = []
            context: int | None = None
            for child in value:
                item = self.item(child, context, depth + 1)
                children.append(item)
                if item.tag == ATTRIBUTE_NAME:
                    context = attribute_tag(item)
            return Item(tag, item_type, children)

        return Item(tag, item_type, _parse_value(item_type, value, typing_tag(tag, attribute)))


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise invalid_message(f"expected a string, found {quoted(value)}")
    return value


def _number(value: Any, size: int, allowed: range) -> int:
    """A JSON number, or a '0x' hex string (two's complement when signed)."""
    if isinstance(value, str):
        return parse_hex(value, size, signed=allowed.start < 0)
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid_message(f"expected a number, found {quoted(value)}")
    number = int(value)  # a plain int, for the constant-time range test
    if number not in allowed:
        raise invalid_message(f"{number} is out of range")
    return number


def _parse_value(item_type: ItemType, value: Any, typing: int) -> Any:
    if item_type == ItemType.INTEGER:
        if isinstance(value, str) and has_mask(typing):
            return parse_mask(typing, value, "|")
        return _number(value, 4, INT32)
    if item_type == ItemType.ENUMERATION:
        if isinstance(value, str):
            return parse_enumeration(typing, value)
        return _number(value, 4, UINT32)
    if item_type == ItemType.TEXT_STRING:
        return _string(value)
    if item_type == ItemType.BYTE_STRING:
        return parse_hex_bytes(_string(value))
    if item_type == ItemType.DATE_TIME:
        return parse_date(_string(value), SECOND)
    if item_type == ItemType.BOOLEAN:
        return value if isinstance(value, bool) else parse_boolean(_hex_only(value))
    if item_type == ItemType.LONG_INTEGER:
        return _number(value, 8, INT64)
    if item_type == ItemType.BIG_INTEGER:
        if isinstance(value, str):
            return parse_big_integer_hex(_hex_only(value)[2:])
        return _number(value, 8, INT64)
    if item_type == ItemType.INTERVAL:
        return _number(value, 4, UINT32)
    return parse_date(_string(value), MICROSECOND)


def _hex_only(value: Any) -> str:
    text = _string(value)
    if not text.startswith("0x"):
        raise invalid_message(f"expected a '0x' hex value, found {quoted(text)}")
    return text


# Writing.


def item_to_json(item: Item, indent: int | None = None) -> str:
    """Encode an item tree as a JSON document."""
    return json.dumps(item_to_json_object(item), indent=indent)


def item_to_json_object(item: Item) -> dict[str, Any]:
    """Encode an item tree as JSON-ready dicts and lists."""
    try:
        return _object(item, None)
    except (TypeError, ValueError, AttributeError) as error:
        raise invalid_field(f"cannot encode tag {quoted(item[0])}: {error}") from error


def _object(item: Item, attribute: int | None) -> dict[str, Any]:
    tag, item_type, value = item
    item_type = ItemType(item_type)
    name = tag_name(tag)
    document: dict[str, Any] = {"tag": tag_hex(tag) if name is None else name}

    if item_type == _STRUCTURE:
        children = []
        context: int | None = None
        for child in value:
            children.append(_object(child, context))
            if child.tag == ATTRIBUTE_NAME:
                context = attribute_tag(child)
        document["value"] = children
        return document

    document["type"] = type_name(item_type)
    document["value"] = _json_value(item_type, value, typing_tag(tag, attribute))
    return document


def _json_value(item_type: ItemType, value: Any, typing: int) -> Any:
    if item_type == ItemType.INTEGER:
        number = check_int(value, INT32)
        if has_mask(typing):
            return format_mask(typing, number, "|") or 0
        return number
    if item_type == ItemType.ENUMERATION:
        return format_enumeration(typing, check_int(value, UINT32))
    if item_type == ItemType.TEXT_STRING:
        if not isinstance(value, str):
            raise invalid_field(f"{quoted(value)} is not text")
        return value
    if item_type == ItemType.BYTE_STRING:
        if not isinstance(value, bytes | bytearray):
            raise invalid_field(f"{quoted(value)} is not bytes")
        return bytes(value).hex()
    if item_type == ItemType.DATE_TIME:
        return format_date(check_int(value, INT64), SECOND)
    if item_type == ItemType.BOOLEAN:
        if not isinstance(value, bool):
            raise invalid_field(f"{quoted(value)} is not a boolean")
        return value
    if item_type == ItemType.LONG_INTEGER:
        number = check_int(value, INT64)
        return number if number in _EXACT_IN_DOUBLE else format_hex(number, 8)
    if item_type == ItemType.BIG_INTEGER:
        return "0x" + big_integer_hex(check_int(value, None))
    if item_type == ItemType.INTERVAL:
        return check_int(value, UINT32)
    return format_date(check_int(value, INT64), MICROSECOND)


__all__ = [
    "item_from_json",
    "item_from_json_object",
    "item_to_json",
    "item_to_json_object",
]
