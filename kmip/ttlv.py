"""TTLV, the binary encoding of KMIP (KMIP 1.4 section 9.1, KMIP 2.1 section 9.1).

Theory of operation
-------------------
Every KMIP value is an item: a 3-byte tag, a 1-byte type, a 4-byte length, then the
value padded with zeros to a multiple of 8 bytes. A Structure's value is a run of
items, so a message is a tree, and each item is 8-byte aligned.

This module is sans-IO. ``decode_item`` turns the bytes of one whole message into
an ``Item`` tree and ``encode_item`` does the reverse; ``FrameReader`` cuts a byte
stream into whole messages, answering ``NEED_DATA`` until one is complete. Sockets,
TLS and logging live in the front end that drives them.

The decoder trusts nothing. Every length is checked against the bytes that hold it
and against the enclosing Structure, every fixed-size type against its size, every
padding byte against zero, every Text String against UTF-8. The limits in
``limits.py`` cap the message size (refused from the 8-byte header, before the body
is read), the nesting depth and the number of items. Any malformed input raises
``KmipError`` with Result Reason Invalid Message; nothing else escapes.

Decoding is the hot path of every request, so ``_ttlv_accel.c`` implements the same
decoder in C, built when a compiler is at hand. ``_decode`` below stays the
reference: the C decoder follows it rule by rule and message by message, and a
differential test holds the two to that. ``decode_item`` uses the C decoder when it
imported, unless the environment sets ``KEYQUORUM_PURE_PYTHON=1``.

Values are kept primitive so that decoding stays cheap and lossless: Date-Time as
POSIX seconds, Date-Time Extended as POSIX microseconds, Interval as seconds,
Enumeration as its number. The message model gives them meaning.
"""

from __future__ import annotations

import os
import struct
from enum import IntEnum
from types import ModuleType
from typing import Any, Final, NamedTuple

from .errors import invalid_field, invalid_message
from .limits import DEFAULT_LIMITS, Limits


class ItemType(IntEnum):
    """The type byte of an item. On the wire: never renumber."""

    STRUCTURE = 0x01
    INTEGER = 0x02
    LONG_INTEGER = 0x03
    BIG_INTEGER = 0x04
    ENUMERATION = 0x05
    BOOLEAN = 0x06
    TEXT_STRING = 0x07
    BYTE_STRING = 0x08
    DATE_TIME = 0x09
    INTERVAL = 0x0A
    DATE_TIME_EXTENDED = 0x0B


class Item(NamedTuple):
    """One TTLV item. A Structure's value is the list of its items (read-only)."""

    tag: int
    type: ItemType
    value: Any


class NeedData:
    """The sentinel type of ``NEED_DATA``: the reader needs more bytes."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()

_HEADER = struct.Struct(">II")
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_INT64 = struct.Struct(">q")
_UINT64 = struct.Struct(">Q")
_ZEROS = bytes(8)

_TYPES = {member.value: member for member in ItemType}
_STRUCTURE = ItemType.STRUCTURE

# Tags 0x42xxxx are KMIP's own, 0x54xxxx are reserved for extensions (KMIP 1.4
# section 9.1.3.1); any other first byte means the stream is not KMIP.
_KMIP_TAG_SPACE = 0x42
_EXTENSION_TAG_SPACE = 0x54

# The fixed value sizes, and the padded size each occupies.
_FIXED_LENGTHS: dict[int, int] = {
    ItemType.INTEGER.value: 4,
    ItemType.LONG_INTEGER.value: 8,
    ItemType.ENUMERATION.value: 4,
    ItemType.BOOLEAN.value: 8,
    ItemType.DATE_TIME.value: 8,
    ItemType.INTERVAL.value: 4,
    ItemType.DATE_TIME_EXTENDED.value: 8,
}

# Setting this environment variable to 1 makes the decoder the Python reference, for
# tests and debugging.
PURE_PYTHON_VARIABLE: Final = "KEYQUORUM_PURE_PYTHON"

_INT32_RANGE = range(-(2**31), 2**31)
_UINT32_RANGE = range(0, 2**32)
_INT64_RANGE = range(-(2**63), 2**63)


def _load_accelerator() -> ModuleType | None:
    """The C decoder, set up with ``Item`` and ``ItemType``, or None to use ``_decode``."""
    if os.environ.get(PURE_PYTHON_VARIABLE) == "1":
        return None
    try:
        from . import _ttlv_accel
    except ImportError:
        return None
    _ttlv_accel.setup(Item, tuple(ItemType))
    return _ttlv_accel


_accelerator = _load_accelerator()
ACCELERATED: Final = _accelerator is not None


def decode_item(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Item:
    """Decode exactly one item (usually a whole message) from ``data``."""
    if len(data) > limits.max_message_size:
        raise invalid_message(
            f"message of {len(data)} bytes exceeds the limit of {limits.max_message_size}"
        )

    # The C decoder reads bytes only: a bytearray's Byte Strings would be bytearrays.
    if _accelerator is not None and type(data) is bytes:
        try:
            return _accelerator.decode(
                data, limits.max_message_size, limits.max_depth, limits.max_items
            )
        except _accelerator.DecodeError as error:
            raise invalid_message(str(error)) from None
    try:
        return _decode(data, limits)
    except (struct.error, IndexError, ValueError) as error:
        # Bounds are checked before every read, so this is a decoder bug; the
        # client still gets the protocol error, never a traceback.
        raise invalid_message(f"malformed TTLV: {error}") from error


def _decode(data: bytes, limits: Limits) -> Item:
    # One flat loop and an explicit stack instead of recursion and per-type
    # helpers: a request holds dozens of items and every call costs. Each open
    # Structure remembers its tag, the end offset of its parent and its parent's
    # items. The type codes are compared as plain ints for the same reason.
    unpack_header = _HEADER.unpack_from
    new_item = tuple.__new__
    pos = 0
    end = len(data)
    items: list[Item] = []
    stack: list[tuple[int, int, list[Item]]] = []
    budget = limits.max_items
    max_depth = limits.max_depth

    while True:
        # First, close every Structure whose value ends here.
        if pos == end:
            if not stack:
                break
            tag, end, parent_items = stack.pop()
            parent_items.append(new_item(Item, (tag, _STRUCTURE, items)))
            items = parent_items
            continue

        # Then read the next item's header.
        if end - pos < 8:
            raise invalid_message(f"truncated item header at offset {pos}")
        tag_and_type, length = unpack_header(data, pos)
        tag = tag_and_type >> 8
        type_code = tag_and_type & 0xFF
        if tag >> 16 != _KMIP_TAG_SPACE and tag >> 16 != _EXTENSION_TAG_SPACE:
            raise invalid_message(f"tag 0x{tag:06X} at offset {pos} is not a KMIP tag")
        budget -= 1
        if budget < 0:
            raise invalid_message(f"message holds more than {limits.max_items} items")
        start = pos + 8

        # A Structure opens a new level; its items are read by the loop.
        if type_code == 1:
            if length & 7:
                raise invalid_message(f"structure length {length} at offset {pos} is not aligned")
            if start + length > end:
                raise invalid_message(f"structure at offset {pos} overruns its parent")
            if len(stack) >= max_depth:
                raise invalid_message(f"structures nest deeper than {max_depth}")
            stack.append((tag, end, items))
            items = []
            end = start + length
            pos = start
            continue

        # Any other type is one value, padded with zeros to a multiple of 8.
        pos = start + ((length + 7) & ~7)
        if pos > end:
            raise invalid_message(f"item at offset {start - 8} overruns its parent")
        expected = _FIXED_LENGTHS.get(type_code)
        if expected is not None and length != expected:
            raise invalid_message(
                f"item type 0x{type_code:02X} at offset {start - 8} has length {length}"
            )
        if data[start + length:pos].count(0) != pos - start - length:
            raise invalid_message(f"non-zero padding at offset {start + length}")
        if type_code == 7:
            value: Any = _text(data, start, length)
        elif type_code == 2:
            value = _INT32.unpack_from(data, start)[0]
        elif type_code == 5 or type_code == 10:
            value = _UINT32.unpack_from(data, start)[0]
        elif type_code == 8:
            value = data[start:start + length]
        elif type_code == 3 or type_code == 9 or type_code == 11:
            value = _INT64.unpack_from(data, start)[0]
        elif type_code == 6:
            flag = _UINT64.unpack_from(data, start)[0]
            if flag > 1:
                raise invalid_message(f"boolean at offset {start - 8} is neither 0 nor 1")
            value = flag == 1
        elif type_code == 4:
            # Two's complement, sign-extended to a multiple of 8 bytes: no padding.
            if length == 0 or length & 7:
                raise invalid_message(f"big integer at offset {start - 8} has length {length}")
            value = int.from_bytes(data[start:pos], "big", signed=True)
        else:
            raise invalid_message(f"unknown item type 0x{type_code:02X} at offset {start - 8}")
        items.append(new_item(Item, (tag, _TYPES[type_code], value)))

    if len(items) != 1:
        raise invalid_message("trailing bytes after the message")
    return items[0]


def _text(data: bytes, start: int, length: int) -> str:
    try:
        return data[start:start + length].decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_message(f"text string at offset {start - 8} is not UTF-8") from None


def encode_item(item: Item) -> bytes:
    """Encode one item and everything inside it."""
    try:
        return _encode(item)
    except (struct.error, TypeError, AttributeError, OverflowError, UnicodeEncodeError) as error:
        raise invalid_field(f"cannot encode tag 0x{item.tag:06X}: {error}") from error


def _encode(item: Item) -> bytes:
    tag, item_type, value = item
    header = tag << 8 | item_type

    if item_type == ItemType.STRUCTURE:
        body = b"".join([_encode(child) for child in value])
        return _HEADER.pack(header, len(body)) + body
    if item_type == ItemType.INTEGER:
        _check_range(tag, value, _INT32_RANGE)
        return _HEADER.pack(header, 4) + _INT32.pack(value) + _ZEROS[:4]
    if item_type == ItemType.ENUMERATION or item_type == ItemType.INTERVAL:
        _check_range(tag, value, _UINT32_RANGE)
        return _HEADER.pack(header, 4) + _UINT32.pack(value) + _ZEROS[:4]
    if item_type == ItemType.TEXT_STRING:
        return _pad(header, value.encode("utf-8"))
    if item_type == ItemType.BYTE_STRING:
        return _pad(header, bytes(value))
    if item_type in (ItemType.LONG_INTEGER, ItemType.DATE_TIME, ItemType.DATE_TIME_EXTENDED):
        _check_range(tag, value, _INT64_RANGE)
        return _HEADER.pack(header, 8) + _INT64.pack(value)
    if item_type == ItemType.BOOLEAN:
        return _HEADER.pack(header, 8) + _UINT64.pack(1 if value else 0)
    if item_type == ItemType.BIG_INTEGER:
        return _pad(header, big_integer_bytes(value))
    raise invalid_field(f"unknown item type {item_type!r} for tag 0x{tag:06X}")


def _pad(header: int, raw: bytes) -> bytes:
    return _HEADER.pack(header, len(raw)) + raw + _ZEROS[: -len(raw) % 8]


def _check_range(tag: int, value: int, allowed: range) -> None:
    # Compared as a plain int: `in range` walks the whole range for an int
    # subclass such as an IntEnum or IntFlag member, which takes minutes.
    number = int(value)
    if not allowed.start <= number < allowed.stop:
        raise invalid_field(f"value {number} of tag 0x{tag:06X} is out of range")


def big_integer_bytes(value: int) -> bytes:
    """The shortest two's complement form of ``value``, sign-extended to 8n bytes."""
    size = (value + (value < 0)).bit_length() // 8 + 1
    size = (size + 7) & ~7
    return value.to_bytes(size, "big", signed=True)


class FrameReader:
    """Cuts a byte stream into whole TTLV messages.

    ``feed`` the bytes as they arrive, then call ``next_frame`` until it answers
    ``NEED_DATA``. An oversized or non-Structure header raises ``KmipError`` at once,
    before any of the body is buffered; the stream cannot be resynchronized after
    that, so the caller answers once and closes the connection.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """How many bytes wait for the rest of their message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_frame(self) -> bytes | NeedData:
        buffer = self._buffer
        if len(buffer) < 8:
            return NEED_DATA

        tag_and_type, length = _HEADER.unpack_from(buffer, 0)
        if tag_and_type & 0xFF != ItemType.STRUCTURE or tag_and_type >> 24 not in (
            _KMIP_TAG_SPACE,
            _EXTENSION_TAG_SPACE,
        ):
            raise invalid_message("stream does not start with a KMIP structure")
        size = 8 + length
        if size > self._limits.max_message_size:
            raise invalid_message(
                f"message of {size} bytes exceeds the limit of {self._limits.max_message_size}"
            )

        if len(buffer) < size:
            return NEED_DATA
        frame = bytes(buffer[:size])
        del buffer[:size]
        return frame
