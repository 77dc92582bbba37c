"""The TTLV codec: golden encodings, every rule of the decoder, every limit.

Golden bytes come from KMIP 1.4 section 9.1.2 (the encoding examples) and from
the captured vCenter conversation; each sits beside the tree it decodes to.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyquorum.kmip.errors import KmipError
from keyquorum.kmip.limits import DEFAULT_LIMITS, Limits
from keyquorum.kmip.tables import CryptographicUsageMask, ResultReason
from keyquorum.kmip.ttlv import (
    NEED_DATA,
    FrameReader,
    Item,
    ItemType,
    big_integer_bytes,
    decode_item,
    encode_item,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
T = 0x420020  # an arbitrary KMIP tag, as in the specification's examples


def vcenter_requests() -> list[tuple[str, bytes]]:
    lines = (SHARED / "interop" / "vcenter-7.0.3-requests.txt").read_text().splitlines()
    return [
        (operation, bytes.fromhex(hex_bytes))
        for operation, hex_bytes in (line.split() for line in lines if line and line[0] != "#")
    ]


# KMIP 1.4 section 9.1.2: each example item and its exact bytes.
GOLDEN = [
    (Item(T, ItemType.INTEGER, 8), "42002002000000040000000800000000"),
    (Item(T, ItemType.LONG_INTEGER, 123456789000000000), "420020030000000801B69B4BA5749200"),
    (
        Item(T, ItemType.BIG_INTEGER, 1234567890000000000000000000),
        "42002004000000100000000003FD35EB6BC2DF4618080000",
    ),
    (Item(T, ItemType.ENUMERATION, 255), "4200200500000004000000FF00000000"),
    (Item(T, ItemType.BOOLEAN, True), "42002006000000080000000000000001"),
    (
        Item(T, ItemType.TEXT_STRING, "Hello World"),
        "420020070000000B48656C6C6F20576F726C640000000000",
    ),
    (Item(T, ItemType.BYTE_STRING, b"\x01\x02\x03"), "42002008000000030102030000000000"),
    (
        Item(T, ItemType.DATE_TIME, int(datetime(2008, 3, 14, 11, 56, 40, tzinfo=UTC).timestamp())),
        "42002009000000080000000047DA67F8",
    ),
    (Item(T, ItemType.INTERVAL, 864000), "4200200A00000004000D2F0000000000"),
    (
        Item(T, ItemType.STRUCTURE, [
            Item(0x420004, ItemType.ENUMERATION, 254),
            Item(0x420005, ItemType.INTEGER, 255),
        ]),
        "42002001000000204200040500000004000000FE000000004200050200000004000000FF00000000",
    ),
    (
        Item(T, ItemType.DATE_TIME_EXTENDED, 1_700_000_000_123_456),
        "4200200B0000000800060A2418202240",
    ),
]


@pytest.mark.parametrize(("item", "hex_bytes"), GOLDEN)
def test_golden_encodings(item: Item, hex_bytes: str) -> None:
    data = bytes.fromhex(hex_bytes)

    assert encode_item(item) == data
    assert decode_item(data) == item


def test_vcenter_create_decodes_to_its_tree() -> None:
    create = dict(vcenter_requests())["Create"]

    message = decode_item(create)

    header, batch_item = message.value
    assert message.tag == 0x420078  # Request Message
    assert [i.value for i in header.value[0].value] == [1, 1]  # Protocol Version 1.1
    operation, batch_id, payload = batch_item.value
    assert operation == Item(0x42005C, ItemType.ENUMERATION, 1)  # Create
    assert batch_id == Item(0x420093, ItemType.BYTE_STRING, b"QLKC\x01\x00\x00\x00")
    object_type, template = payload.value
    assert object_type.value == 2  # Symmetric Key
    names = [attribute.value[0].value for attribute in template.value]
    assert names == [
        "Cryptographic Algorithm",
        "Cryptographic Usage Mask",
        "Cryptographic Length",
    ]


def test_every_vcenter_request_reencodes_to_identical_bytes() -> None:
    for operation, data in vcenter_requests():
        assert encode_item(decode_item(data)) == data, operation


@pytest.mark.parametrize(
    ("value", "hex_bytes"),
    [
        (0, "0000000000000000"),
        (-1, "FFFFFFFFFFFFFFFF"),
        (127, "000000000000007F"),
        (128, "0000000000000080"),
        (-128, "FFFFFFFFFFFFFF80"),
        (2**63 - 1, "7FFFFFFFFFFFFFFF"),
        (2**63, "00000000000000008000000000000000"),
        (-(2**63), "8000000000000000"),
    ],
)
def test_big_integers_are_sign_extended_to_eight_byte_multiples(value: int, hex_bytes: str) -> None:
    assert big_integer_bytes(value) == bytes.fromhex(hex_bytes)


def reason_of(data: bytes, limits: Limits = DEFAULT_LIMITS) -> ResultReason:
    with pytest.raises(KmipError) as caught:
        decode_item(data, limits)
    return caught.value.reason


@pytest.mark.parametrize(
    ("why", "hex_bytes"),
    [
        ("truncated header", "4200200200"),
        ("value overruns", "420020020000000400000008"),
        ("integer of length 8", "42002002000000080000000800000000"),
        ("enumeration of length 2", "42002005000000020008000000000000"),
        ("boolean of 2", "42002006000000080000000000000002"),
        ("non-zero padding", "42002002000000040000000800000001"),
        ("text padding not zero", "4200200700000001410000000000FF00"),
        ("invalid UTF-8", "4200200700000001FF00000000000000"),
        ("unknown type 0x0C", "4200200C000000040000000800000000"),
        ("type 0x00", "42002000000000040000000800000000"),
        ("tag outside 0x42/0x54", "43002002000000040000000800000000"),
        ("big integer of 4 bytes", "420020040000000400000001"),
        ("structure length unaligned", "42002001000000044200200200000004"),
        ("structure overruns", "420020010000001842002002000000040000000800000000"),
        (
            "child overruns its structure",
            "42002001000000084200200200000004000000080000000000000000",
        ),
        ("trailing bytes", "4200200200000004000000080000000042002002000000040000000800000000"),
        ("empty input", ""),
    ],
)
def test_malformed_input_is_an_invalid_message(why: str, hex_bytes: str) -> None:
    assert reason_of(bytes.fromhex(hex_bytes)) == ResultReason.INVALID_MESSAGE, why


def nested(depth: int) -> bytes:
    item = Item(T, ItemType.INTEGER, 1)
    for _ in range(depth):
        item = Item(T, ItemType.STRUCTURE, [item])
    return encode_item(item)


def test_nesting_depth_limit_is_enforced() -> None:
    limits = Limits(max_depth=5)

    assert decode_item(nested(5), limits).type == ItemType.STRUCTURE
    assert reason_of(nested(6), limits) == ResultReason.INVALID_MESSAGE


def test_item_count_limit_is_enforced() -> None:
    limits = Limits(max_items=10)
    ten = Item(T, ItemType.STRUCTURE, [Item(T, ItemType.BOOLEAN, True)] * 9)
    eleven = Item(T, ItemType.STRUCTURE, [Item(T, ItemType.BOOLEAN, True)] * 10)

    assert len(decode_item(encode_item(ten), limits).value) == 9
    assert reason_of(encode_item(eleven), limits) == ResultReason.INVALID_MESSAGE


def test_message_size_limit_is_enforced_by_the_decoder() -> None:
    data = encode_item(Item(T, ItemType.BYTE_STRING, bytes(100)))

    assert decode_item(data, Limits(max_message_size=len(data))).value == bytes(100)
    assert reason_of(data, Limits(max_message_size=len(data) - 1)) == ResultReason.INVALID_MESSAGE


def test_frame_reader_refuses_an_oversized_message_from_its_header() -> None:
    reader = FrameReader(Limits(max_message_size=1024))

    # Only the 8-byte header has arrived: the body is never waited for.
    reader.feed(bytes.fromhex("4200780100100000"))

    with pytest.raises(KmipError) as caught:
        reader.next_frame()
    assert caught.value.reason == ResultReason.INVALID_MESSAGE
    assert "exceeds the limit of 1024" in caught.value.message


def test_frame_reader_refuses_a_stream_that_is_not_kmip() -> None:
    reader = FrameReader()
    reader.feed(b"GET / HTTP/1.1\r\n")

    with pytest.raises(KmipError):
        reader.next_frame()


def test_frame_reader_cuts_a_stream_fed_byte_by_byte() -> None:
    stream = b"".join(data for _, data in vcenter_requests()[:5])
    reader = FrameReader()
    frames: list[bytes] = []

    for position in range(len(stream)):
        reader.feed(stream[position:position + 1])
        while (frame := reader.next_frame()) is not NEED_DATA:
            assert isinstance(frame, bytes)
            frames.append(frame)

    assert frames == [data for _, data in vcenter_requests()[:5]]
    assert reader.buffered == 0


def test_out_of_range_values_are_refused_when_encoding() -> None:
    with pytest.raises(KmipError) as caught:
        encode_item(Item(T, ItemType.INTEGER, 2**31))
    assert caught.value.reason == ResultReason.INVALID_FIELD

    with pytest.raises(KmipError):
        encode_item(Item(T, ItemType.ENUMERATION, -1))


# Property-based tests: random trees round-trip; random and mutated bytes either
# decode or raise the protocol error, fed whole and one byte at a time.

tags = st.one_of(
    st.integers(0x420001, 0x4201FF),
    st.integers(0x540000, 0x54FFFF),
)
leaves = st.one_of(
    st.builds(Item, tags, st.just(ItemType.INTEGER), st.integers(-(2**31), 2**31 - 1)),
    st.builds(Item, tags, st.just(ItemType.LONG_INTEGER), st.integers(-(2**63), 2**63 - 1)),
    st.builds(Item, tags, st.just(ItemType.BIG_INTEGER), st.integers(-(2**300), 2**300)),
    st.builds(Item, tags, st.just(ItemType.ENUMERATION), st.integers(0, 2**32 - 1)),
    st.builds(Item, tags, st.just(ItemType.BOOLEAN), st.booleans()),
    st.builds(Item, tags, st.just(ItemType.TEXT_STRING), st.text(max_size=40)),
    st.builds(Item, tags, st.just(ItemType.BYTE_STRING), st.binary(max_size=40)),
    st.builds(Item, tags, st.just(ItemType.DATE_TIME), st.integers(-(2**63), 2**63 - 1)),
    st.builds(Item, tags, st.just(ItemType.INTERVAL), st.integers(0, 2**32 - 1)),
    st.builds(Item, tags, st.just(ItemType.DATE_TIME_EXTENDED), st.integers(0, 2**62)),
)
trees = st.recursive(
    leaves,
    lambda children: st.builds(
        Item, tags, st.just(ItemType.STRUCTURE), st.lists(children, max_size=6)
    ),
    max_leaves=30,
)


@given(trees)
def test_random_trees_round_trip(item: Item) -> None:
    data = encode_item(item)

    assert len(data) % 8 == 0
    assert decode_item(data) == item


def decode_or_protocol_error(data: bytes) -> None:
    try:
        item = decode_item(data)
    except KmipError as error:
        assert error.reason == ResultReason.INVALID_MESSAGE
    else:
        assert encode_item(item) == data


def frame_byte_by_byte(data: bytes) -> None:
    reader = FrameReader()
    try:
        for position in range(len(data)):
            reader.feed(data[position:position + 1])
            while (frame := reader.next_frame()) is not NEED_DATA:
                assert isinstance(frame, bytes)
                decode_or_protocol_error(frame)
    except KmipError as error:
        assert error.reason == ResultReason.INVALID_MESSAGE


@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_the_protocol_error(data: bytes) -> None:
    decode_or_protocol_error(data)
    frame_byte_by_byte(data)


@settings(max_examples=300)
@given(st.data())
def test_mutated_messages_decode_or_raise_the_protocol_error(data: st.DataObject) -> None:
    original = bytearray(data.draw(st.sampled_from([m for _, m in vcenter_requests()])))
    mutation = data.draw(st.sampled_from(["flip", "truncate", "insert", "overwrite"]))
    position = data.draw(st.integers(0, len(original) - 1))
    if mutation == "flip":
        original[position] ^= 1 << data.draw(st.integers(0, 7))
    elif mutation == "truncate":
        del original[position:]
    elif mutation == "insert":
        original[position:position] = data.draw(st.binary(min_size=1, max_size=16))
    else:
        original[position] = data.draw(st.integers(0, 255))

    decode_or_protocol_error(bytes(original))
    frame_byte_by_byte(bytes(original))


def test_enum_and_flag_members_encode_as_their_numbers() -> None:
    # An IntFlag member used to make the range check walk 2**32 numbers.
    usage = CryptographicUsageMask.ENCRYPT | CryptographicUsageMask.DECRYPT

    data = encode_item(Item(T, ItemType.INTEGER, usage))

    assert decode_item(data) == Item(T, ItemType.INTEGER, 12)


def test_text_that_is_not_encodable_is_a_protocol_error() -> None:
    with pytest.raises(KmipError) as caught:
        encode_item(Item(T, ItemType.TEXT_STRING, "\ud800"))
    assert caught.value.reason == ResultReason.INVALID_FIELD
