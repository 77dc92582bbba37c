"""The XML encoding of KMIP (KMIP Profiles 1.4 section 5.5, 2.1 section 6.5).

Theory of operation
-------------------
An item is one element. The element's name is the tag's name ('RequestMessage'), or
'TTLV' with a tag="0x540001" attribute when the tables do not name the tag. A
Structure's items are its child elements and it has no type attribute; any other item
is an empty element with a type attribute ('Integer', 'TextString', ...) and a value
attribute spelled as ``text_values`` spells it: enumerations and mask bits by name,
byte strings and big integers as hex digits, dates in ISO 8601.

One rule needs context. In KMIP 1.x an attribute travels as an Attribute Name text and
an Attribute Value, and the value's enumeration or mask is that of the attribute the
name names: <AttributeValue type="Enumeration" value="AES"/> after the name
'Cryptographic Algorithm'. Both directions therefore walk a Structure's items in order
and remember the last Attribute Name seen.

Reading takes two steps. Expat builds an ElementTree element, refusing any document
type declaration (so no entity can expand) and counting depth and elements against
the limits as it goes; then the element is walked into items. Writing builds elements
and prints them the way the OASIS test cases print them.

The OASIS conformance test cases (KMIP Profiles 1.4 and 2.1) are XML documents holding
the requests and responses of one conversation, with placeholders such as ``$NOW`` and
``$UNIQUE_IDENTIFIER_0`` where the server chooses the value. ``parse_test_case`` reads
them.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from xml.parsers import expat
from xml.sax.saxutils import escape

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
    format_mask,
    has_mask,
    parse_big_integer_hex,
    parse_boolean,
    parse_date,
    parse_enumeration,
    parse_hex_bytes,
    parse_mask,
    parse_number,
    parse_tag,
    parse_type,
    quoted,
    tag_hex,
    tag_name,
    type_name,
    typing_tag,
)
from .ttlv import Item, ItemType

# XML spends up to about eight characters per TTLV byte: hex doubles every byte
# string, and a 16-byte Integer item becomes a 50-character element. A document
# longer than that multiple of the TTLV limit could not fit the limit once decoded,
# so it is refused before expat sees it.
XML_CHARS_PER_TTLV_BYTE = 8

# The element whose tag attribute carries a tag the tables do not name.
_UNNAMED = "TTLV"

# Characters XML 1.0 cannot carry, even escaped (XML 1.0 section 2.2).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

_ESCAPES: Final = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}

_STRUCTURE = ItemType.STRUCTURE


# Reading.


def item_from_xml(text: str | bytes, limits: Limits = DEFAULT_LIMITS) -> Item:
    """Decode one XML document (usually a whole message) into an item tree."""
    return item_from_element(parse_element(text, limits), limits)


def item_from_element(element: ET.Element, limits: Limits = DEFAULT_LIMITS) -> Item:
    """Decode one element and everything inside it."""
    try:
        return _Reader(limits, None).item(element, None, 0)
    except (TypeError, AttributeError) as error:
        # Only an element built by hand gets here, e.g. with a comment inside.
        raise invalid_message(f"not a KMIP element: {error}") from None


def parse_element(text: str | bytes, limits: Limits = DEFAULT_LIMITS) -> ET.Element:
    """Parse an XML document into its root element, refusing DTDs and oversized trees."""
    if len(text) > limits.max_message_size * XML_CHARS_PER_TTLV_BYTE:
        raise invalid_message(f"XML document of {len(text)} characters is too long")

    builder = _TreeBuilder(limits)
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = builder.refuse_doctype
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(text, True)
    except expat.ExpatError as error:
        raise invalid_message(f"malformed XML: {error}") from None
    except (ValueError, UnicodeError) as error:
        raise invalid_message(f"unreadable XML: {error}") from None
    return builder.close()


class _TreeBuilder:
    """Expat handlers building ElementTree elements, within the limits."""

    def __init__(self, limits: Limits) -> None:
        self._builder = ET.TreeBuilder()
        self._limits = limits
        self._depth = 0
        self._elements = 0

    def refuse_doctype(self, *_: Any) -> None:
        # A DTD is the only way to declare entities; refusing it closes the door on
        # entity expansion attacks, and KMIP never needs one.
        raise invalid_message("XML document type declarations are not allowed")

    def start(self, name: str, attributes: dict[str, str]) -> None:
        self._depth += 1
        self._elements += 1
        # A coarse guard while parsing: structures plus one level of leaves. The
        # exact rule, structures only as in TTLV, is applied when items are built.
        if self._depth > self._limits.max_depth + 1:
            raise invalid_message(f"elements nest deeper than {self._limits.max_depth}")
        if self._elements > self._limits.max_items:
            raise invalid_message(f"document holds more than {self._limits.max_items} items")
        self._builder.start(name, attributes)

    def end(self, name: str) -> None:
        self._depth -= 1
        self._builder.end(name)

    def data(self, text: str) -> None:
        if not text.isspace():
            raise invalid_message(f"text {quoted(text)} outside any value attribute")

    def close(self) -> ET.Element:
        return self._builder.close()


# A placeholder stands for a value the server chooses: $NOW, $UNIQUE_IDENTIFIER_0.
# A date may be offset from one by seconds: $NOW-3600.
_PLACEHOLDER = re.compile(r"(\$[A-Z][A-Z0-9_]*)([-+][0-9]{1,10})?")

Substitute = Callable[[str, ItemType], Any]


class _Reader:
    def __init__(self, limits: Limits, substitute: Substitute | None) -> None:
        self._limits = limits
        self._substitute = substitute

    def item(self, element: ET.Element, attribute: int | None, depth: int) -> Item:
        # First the tag and the type, from the element's name and attributes.
        attributes = element.attrib
        name = quoted(element.tag)
        if element.tag == _UNNAMED:
            tag = parse_tag(_required(attributes, "tag", element.tag))
            allowed = {"tag", "type", "value"}
        else:
            tag = parse_tag(element.tag)
            allowed = {"type", "value"}
        unexpected = attributes.keys() - allowed
        if unexpected:
            raise invalid_message(f"{name} has unexpected attributes {quoted(sorted(unexpected))}")
        item_type = parse_type(attributes["type"]) if "type" in attributes else _STRUCTURE

        # A Structure's value is its children, read in order with the 1.x context.
        if item_type == _STRUCTURE:
            if "value" in attributes:
                raise invalid_message(f"structure {name} has a value attribute")
            # Structures count as TTLV counts them: a leaf is no level of its own.
            if depth >= self._limits.max_depth:
                raise invalid_message(f"structures nest deeper than {self._limits.max_depth}")
            children: list[Item] = []
            context: int | None = None
            for child in element:
                item = self.item(child, context, depth + 1)
                children.append(item)
                if item.tag == ATTRIBUTE_NAME:
                    context = attribute_tag(item)
            return Item(tag, item_type, children)

        # Any other type is one value attribute.
        if len(element):
            raise invalid_message(f"{type_name(item_type)} {name} has child elements")
        text = _required(attributes, "value", element.tag)
        placeholder = _PLACEHOLDER.fullmatch(text) if self._substitute is not None else None
        if placeholder is not None and self._substitute is not None:
            name, offset = placeholder.groups()
            value = self._substitute(name, item_type)
            return Item(tag, item_type, _offset(value, offset, item_type))
        return Item(tag, item_type, _parse_value(item_type, text, typing_tag(tag, attribute)))


def _offset(value: Any, offset: str | None, item_type: ItemType) -> Any:
    if offset is None:
        return value
    if item_type == ItemType.DATE_TIME:
        return value + int(offset)
    if item_type == ItemType.DATE_TIME_EXTENDED:
        return value + int(offset) * 1_000_000
    raise invalid_message(f"an offset placeholder needs a date, not {type_name(item_type)}")


def _required(attributes: Mapping[str, str], name: str, element: str) -> str:
    value = attributes.get(name)
    if value is None:
        raise invalid_message(f"{quoted(element)} has no {name} attribute")
    return value


def _parse_value(item_type: ItemType, text: str, typing: int) -> Any:
    if item_type == ItemType.INTEGER:
        if has_mask(typing):
            return parse_mask(typing, text, " ")
        return parse_number(text, 4, INT32)
    if item_type == ItemType.ENUMERATION:
        return parse_enumeration(typing, text)
    if item_type == ItemType.TEXT_STRING:
        return text
    if item_type == ItemType.BYTE_STRING:
        return parse_hex_bytes(text)
    if item_type == ItemType.DATE_TIME:
        return parse_date(text, SECOND)
    if item_type == ItemType.BOOLEAN:
        return parse_boolean(text)
    if item_type == ItemType.LONG_INTEGER:
        return parse_number(text, 8, INT64)
    if item_type == ItemType.BIG_INTEGER:
        return parse_big_integer_hex(text)
    if item_type == ItemType.INTERVAL:
        return parse_number(text, 4, UINT32)
    return parse_date(text, MICROSECOND)


# Writing.


def item_to_xml(item: Item, indent: str | None = "  ") -> str:
    """Encode an item tree as an XML document, one element per line unless indent is None."""
    lines: list[str] = []
    _print(item_to_element(item), indent, 0, lines)
    return ("" if indent is None else "\n").join(lines)


def item_to_element(item: Item) -> ET.Element:
    """Encode an item tree as an element. Raises KmipError for a value XML cannot carry."""
    try:
        return _element(item, None)
    except (TypeError, ValueError, AttributeError) as error:
        raise invalid_field(f"cannot encode tag {quoted(item[0])}: {error}") from error


def _element(item: Item, attribute: int | None) -> ET.Element:
    tag, item_type, value = item
    item_type = ItemType(item_type)
    name = tag_name(tag)
    element = ET.Element(_UNNAMED if name is None else name)
    if name is None:
        element.set("tag", tag_hex(tag))

    if item_type == _STRUCTURE:
        context: int | None = None
        for child in value:
            element.append(_element(child, context))
            if child.tag == ATTRIBUTE_NAME:
                context = attribute_tag(child)
        return element

    element.set("type", type_name(item_type))
    element.set("value", _value_text(item_type, value, typing_tag(tag, attribute)))
    return element


def _value_text(item_type: ItemType, value: Any, typing: int) -> str:
    if item_type == ItemType.INTEGER:
        number = check_int(value, INT32)
        if has_mask(typing):
            return format_mask(typing, number, " ") or "0"
        return str(number)
    if item_type == ItemType.ENUMERATION:
        return format_enumeration(typing, check_int(value, UINT32))
    if item_type == ItemType.TEXT_STRING:
        if not isinstance(value, str):
            raise invalid_field(f"{quoted(value)} is not text")
        if _NOT_XML.search(value):
            raise invalid_field("text holds a character XML cannot carry")
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
        return "true" if value else "false"
    if item_type == ItemType.LONG_INTEGER:
        return str(check_int(value, INT64))
    if item_type == ItemType.BIG_INTEGER:
        return big_integer_hex(check_int(value, None))
    if item_type == ItemType.INTERVAL:
        return str(check_int(value, UINT32))
    return format_date(check_int(value, INT64), MICROSECOND)


def _print(element: ET.Element, indent: str | None, depth: int, lines: list[str]) -> None:
    # Printed by hand rather than by ElementTree so that the output looks like the
    # OASIS test cases: attributes in order, '/>' with no space, two-space indent.
    margin = indent * depth if indent else ""
    attributes = "".join(
        f' {key}="{escape(value, _ESCAPES)}"' for key, value in element.attrib.items()
    )
    if not len(element):
        lines.append(f"{margin}<{element.tag}{attributes}/>")
        return
    lines.append(f"{margin}<{element.tag}{attributes}>")
    for child in element:
        _print(child, indent, depth + 1, lines)
    lines.append(f"{margin}</{element.tag}>")


# The OASIS conformance test cases.

# What $NOW reads as unless the caller says otherwise: 2020-01-01T00:00:00+00:00.
PLACEHOLDER_NOW: Final = 1_577_836_800

# The test case files hold whole conversations; they are our own files, so they get
# room beyond what one message from a peer may use.
TEST_CASE_LIMITS: Final = Limits(max_message_size=4 * 1024 * 1024, max_items=200_000)


@dataclass(frozen=True)
class ConformanceCase:
    """The messages of one test case, in order, and what each placeholder became."""

    messages: list[Item]
    placeholders: dict[str, Any] = field(default_factory=dict)


def parse_test_case(
    source: str | Path, substitutions: Mapping[str, Any] | None = None
) -> list[Item]:
    """The request and response messages of an OASIS test case, in order.

    ``source`` is a path or the document's text. Each placeholder becomes
    ``substitutions[name]`` when given, else a fixed value of the item's type:
    ``PLACEHOLDER_NOW`` for a date, the name itself for text, its ASCII bytes for a
    byte string. ``load_test_case`` also says which placeholders were seen.
    """
    return load_test_case(source, substitutions).messages


def load_test_case(
    source: str | Path, substitutions: Mapping[str, Any] | None = None
) -> ConformanceCase:
    """Like ``parse_test_case``, with the placeholders seen and the values they became."""
    elements = test_case_elements(source)
    seen: dict[str, Any] = {}
    given = substitutions or {}

    def substitute(name: str, item_type: ItemType) -> Any:
        value = given[name] if name in given else _placeholder_value(name, item_type)
        seen[name] = value
        return value

    reader = _Reader(TEST_CASE_LIMITS, substitute)
    messages = [reader.item(element, None, 0) for element in elements]
    return ConformanceCase(messages, seen)


def test_case_elements(source: str | Path) -> list[ET.Element]:
    """The message elements of a test case (a path or the text), not yet read into items."""
    if isinstance(source, Path) or not source.lstrip().startswith("<"):
        try:
            source = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeError) as error:
            raise invalid_message(f"cannot read test case: {error}") from None

    # The test cases wrap their messages in a <KMIP> element; a bare message is one too.
    root = parse_element(source, TEST_CASE_LIMITS)
    return list(root) if root.tag == "KMIP" else [root]


def item_from_test_element(element: ET.Element, substitute: Substitute) -> Item:
    """Read one message of a test case, each placeholder becoming ``substitute(name, type)``.

    A placeholder with an offset ($NOW-3600) adds the offset to what ``substitute``
    returned, so that value must support ``+ int``.
    """
    return _Reader(TEST_CASE_LIMITS, substitute).item(element, None, 0)


def _placeholder_value(name: str, item_type: ItemType) -> Any:
    if item_type == ItemType.DATE_TIME:
        return PLACEHOLDER_NOW
    if item_type == ItemType.DATE_TIME_EXTENDED:
        return PLACEHOLDER_NOW * 1_000_000
    if item_type == ItemType.TEXT_STRING:
        return name
    if item_type == ItemType.BYTE_STRING:
        return name.encode("ascii")
    raise invalid_field(f"no default for placeholder {name} of type {type_name(item_type)}")


__all__ = [
    "ConformanceCase",
    "PLACEHOLDER_NOW",
    "item_from_element",
    "item_from_test_element",
    "item_from_xml",
    "item_to_element",
    "item_to_xml",
    "load_test_case",
    "parse_element",
    "parse_test_case",
    "test_case_elements",
]
