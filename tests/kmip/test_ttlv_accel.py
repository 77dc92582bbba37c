"""The C decoder against the Python one, which is the reference.

``_ttlv_accel.c`` must accept exactly what ``ttlv._decode`` accepts, decode it to the
same tree, and refuse the rest with the same message. Every test here runs both on
the same bytes and compares: the golden and captured messages, each malformed case
of test_ttlv.py, each limit, and random trees, random bytes, random items and
mutated vCenter requests.

The module is skipped when ``KEYQUORUM_PURE_PYTHON=1`` or when there is no C
compiler; otherwise a missing accelerator is a failed test, so that a broken build
is noticed rather than quietly slow.
"""

from __future__ import annotations

import gc
import os
import shlex
import shutil
import struct
import sysconfig
from pathlib import Path
from typing import Any, TypeAlias

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyquorum.kmip import ttlv
from keyquorum.kmip.errors import KmipError
from keyquorum.kmip.limits import DEFAULT_LIMITS, Limits
from keyquorum.kmip.tables import ResultReason
from keyquorum.kmip.ttlv import Item, ItemType, decode_item, encode_item

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
T = 0x420020  # an arbitrary KMIP tag, as in the specification's examples

PURE_PYTHON = os.environ.get(ttlv.PURE_PYTHON_VARIABLE) == "1"


def have_compiler() -> bool:
    compiler = sysconfig.get_config_var("CC") or "cc"
    return shutil.which(shlex.split(compiler)[0]) is not None


def test_the_accelerator_is_built_where_it_can_be() -> None:
    if PURE_PYTHON or not have_compiler():
        pytest.skip("pure Python by choice, or no C compiler to build the accelerator")
    assert ttlv.ACCELERATED, "kmip/_ttlv_accel.c is not built: run pip install -e '.[dev]'"


needs_accelerator = pytest.mark.skipif(not ttlv.ACCELERATED, reason="the C decoder is not in use")


# Each input goes through decode_item (the C decoder, when it is in use) and through
# ttlv._decode (the reference); the outcomes must be identical, down to the types.

Outcome: TypeAlias = Item | tuple[ResultReason, str]


def accelerated(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Outcome:
    try:
        return decode_item(data, limits)
    except KmipError as error:
        return error.reason, error.message


def reference(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Outcome:
    try:
        return ttlv._decode(data, limits)
    except KmipError as error:
        return error.reason, error.message


def assert_identical(ours: Any, theirs: Any) -> None:
    # Equality alone would let 1 stand for True and an int for an ItemType.
    assert type(ours) is type(theirs), (ours, theirs)
    if isinstance(ours, tuple | list):
        assert len(ours) == len(theirs), (ours, theirs)
        for mine, yours in zip(ours, theirs, strict=True):
            assert_identical(mine, yours)
    else:
        assert ours == theirs


def assert_decoders_agree(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Outcome:
    outcome = accelerated(data, limits)
    assert_identical(outcome, reference(data, limits))
    if not isinstance(outcome, Item):
        assert outcome[0] == ResultReason.INVALID_MESSAGE
    return outcome


def vcenter_requests() -> list[bytes]:
    lines = (SHARED / "interop" / "vcenter-7.0.3-requests.txt").read_text().splitlines()
    return [bytes.fromhex(line.split()[1]) for line in lines if line and not line.startswith("#")]


def nested(depth: int) -> bytes:
    item = Item(T, ItemType.TEXT_STRING, "innermost")
    for _ in range(depth):
        item = Item(T, ItemType.STRUCTURE, [item])
    return encode_item(item)


# KMIP 1.4 section 9.1.2's examples, one per type, and the captured requests.
EXAMPLES = [
    "42002002000000040000000800000000",
    "420020030000000801B69B4BA5749200",
    "42002004000000100000000003FD35EB6BC2DF4618080000",
    "4200200500000004000000FF00000000",
    "42002006000000080000000000000001",
    "420020070000000B48656C6C6F20576F726C640000000000",
    "42002008000000030102030000000000",
    "42002009000000080000000047DA67F8",
    "4200200A00000004000D2F0000000000",
    "42002001000000204200040500000004000000FE000000004200050200000004000000FF00000000",
    "4200200B0000000800060A2418202240",
]


@needs_accelerator
@pytest.mark.parametrize("hex_bytes", EXAMPLES)
def test_specification_examples_decode_alike(hex_bytes: str) -> None:
    assert isinstance(assert_decoders_agree(bytes.fromhex(hex_bytes)), Item)


@needs_accelerator
def test_every_vcenter_request_decodes_alike() -> None:
    for data in vcenter_requests():
        assert isinstance(assert_decoders_agree(data), Item)


@needs_accelerator
@pytest.mark.parametrize(
    ("value", "hex_bytes"),
    [
        (-(2**31), "42002002000000048000000000000000"),
        (2**32 - 1, "4200200500000004FFFFFFFF00000000"),
        (-(2**63), "42002003000000088000000000000000"),
        (-1, "4200200400000008FFFFFFFFFFFFFFFF"),
        (2**63, "420020040000001000000000000000008000000000000000"),
        (-(2**64), "4200200400000010FFFFFFFFFFFFFFFF0000000000000000"),
        (False, "42002006000000080000000000000000"),
        ("", "4200200700000000"),
        (b"", "4200200800000000"),
        ("é€😀", "4200200700000009C3A9E282ACF09F988000000000000000"),
    ],
)
def test_edge_values_decode_alike(value: object, hex_bytes: str) -> None:
    item = assert_decoders_agree(bytes.fromhex(hex_bytes))

    assert isinstance(item, Item)
    assert_identical(item.value, value)


@needs_accelerator
@pytest.mark.parametrize(
    ("why", "hex_bytes"),
    [
        ("truncated header", "4200200200"),
        ("value overruns", "420020020000000400000008"),
        ("integer of length 8", "42002002000000080000000800000000"),
        ("enumeration of length 2", "42002005000000020008000000000000"),
        ("interval of length 8", "4200200A000000080000000000000000"),
        ("long integer of length 4", "42002003000000040000000100000000"),
        ("date-time extended of length 0", "4200200B00000000"),
        ("boolean of 2", "42002006000000080000000000000002"),
        ("boolean with a high bit", "42002006000000088000000000000001"),
        ("non-zero padding", "42002002000000040000000800000001"),
        ("text padding not zero", "4200200700000001410000000000FF00"),
        ("byte string padding not zero", "42002008000000070102030405060701"),
        ("invalid UTF-8", "4200200700000001FF00000000000000"),
        ("UTF-8 surrogate", "4200200700000003EDA0800000000000"),
        ("overlong UTF-8", "4200200700000002C0AF000000000000"),
        ("unknown type 0x0C", "4200200C000000040000000800000000"),
        ("unknown type 0xFF", "420020FF00000000"),
        ("type 0x00", "42002000000000040000000800000000"),
        ("tag outside 0x42/0x54", "43002002000000040000000800000000"),
        ("big integer of 4 bytes", "420020040000000400000001"),
        ("big integer of 4 bytes, padded", "42002004000000040000000100000000"),
        ("big integer of 0 bytes", "4200200400000000"),
        ("structure length unaligned", "42002001000000044200200200000004"),
        ("structure overruns", "420020010000001842002002000000040000000800000000"),
        ("structure of 4 GiB", "42002001FFFFFFF8"),
        ("byte string of 4 GiB", "42002008FFFFFFFF"),
        (
            "child overruns its structure",
            "42002001000000084200200200000004000000080000000000000000",
        ),
        ("trailing bytes", "4200200200000004000000080000000042002002000000040000000800000000"),
        ("trailing garbage", "42002002000000040000000800000000FF"),
        ("empty input", ""),
    ],
)
def test_malformed_input_is_refused_alike(why: str, hex_bytes: str) -> None:
    outcome = assert_decoders_agree(bytes.fromhex(hex_bytes))

    assert not isinstance(outcome, Item), why


@needs_accelerator
def test_nesting_depth_limit_is_enforced_alike() -> None:
    limits = Limits(max_depth=5)

    assert isinstance(assert_decoders_agree(nested(5), limits), Item)
    assert not isinstance(assert_decoders_agree(nested(6), limits), Item)
    assert not isinstance(assert_decoders_agree(nested(1), Limits(max_depth=0)), Item)
    # Deeper than the C decoder's stack holds without the heap.
    assert isinstance(assert_decoders_agree(nested(200), Limits(max_depth=200)), Item)
    assert not isinstance(assert_decoders_agree(nested(201), Limits(max_depth=200)), Item)


@needs_accelerator
def test_item_count_limit_is_enforced_alike() -> None:
    limits = Limits(max_items=10)
    ten = Item(T, ItemType.STRUCTURE, [Item(T, ItemType.BOOLEAN, True)] * 9)
    eleven = Item(T, ItemType.STRUCTURE, [Item(T, ItemType.BOOLEAN, True)] * 10)

    assert isinstance(assert_decoders_agree(encode_item(ten), limits), Item)
    assert not isinstance(assert_decoders_agree(encode_item(eleven), limits), Item)
    assert not isinstance(assert_decoders_agree(encode_item(ten), Limits(max_items=0)), Item)
    assert not isinstance(assert_decoders_agree(encode_item(ten), Limits(max_items=-1)), Item)


@needs_accelerator
def test_wide_structures_decode_alike() -> None:
    # More items than the C decoder's scratch array holds without the heap.
    wide = Item(T, ItemType.STRUCTURE, [Item(T, ItemType.INTEGER, n) for n in range(5000)])

    assert isinstance(assert_decoders_agree(encode_item(wide)), Item)


@needs_accelerator
def test_message_size_limit_is_enforced_by_the_c_decoder_too() -> None:
    from keyquorum.kmip import _ttlv_accel

    data = encode_item(Item(T, ItemType.BYTE_STRING, bytes(100)))

    assert _ttlv_accel.decode(data, len(data), 32, 100) == Item(T, ItemType.BYTE_STRING, bytes(100))
    with pytest.raises(_ttlv_accel.DecodeError, match="exceeds the limit"):
        _ttlv_accel.decode(data, len(data) - 1, 32, 100)
    with pytest.raises(KmipError):
        decode_item(data, Limits(max_message_size=len(data) - 1))


@needs_accelerator
def test_huge_limits_are_as_good_as_none() -> None:
    limits = Limits(max_message_size=2**100, max_depth=2**70, max_items=2**80)

    assert isinstance(assert_decoders_agree(nested(3), limits), Item)


@needs_accelerator
def test_a_bytearray_is_decoded_by_the_reference() -> None:
    # Slicing a bytearray makes bytearrays: only the Python decoder keeps that.
    data = encode_item(Item(T, ItemType.BYTE_STRING, b"\x01\x02"))

    assert type(decode_item(bytearray(data)).value) is bytearray
    assert type(decode_item(data).value) is bytes


@needs_accelerator
def test_refused_messages_leak_nothing() -> None:
    # A message that is whole but for a bad last item: the C decoder must drop every
    # item it built before refusing it.
    good = vcenter_requests()[0]
    bad = good[:-8] + bytes.fromhex("4200790100000001")
    gc.collect()
    before = len(gc.get_objects())

    for _ in range(2000):
        accelerated(good)
        accelerated(bad)
        accelerated(good + good)
    gc.collect()

    assert len(gc.get_objects()) - before < 100


@needs_accelerator
def test_decoded_items_hash_like_the_reference() -> None:
    data = bytes.fromhex(EXAMPLES[0])

    assert hash(decode_item(data)) == hash(ttlv._decode(data, DEFAULT_LIMITS))


# Property-based tests. The strategies are written afresh here: with
# --import-mode=importlib a test module cannot import another.

tags = st.one_of(st.integers(0x420000, 0x42FFFF), st.integers(0x540000, 0x54FFFF))
leaf_values: dict[ItemType, st.SearchStrategy[Any]] = {
    ItemType.INTEGER: st.integers(-(2**31), 2**31 - 1),
    ItemType.LONG_INTEGER: st.integers(-(2**63), 2**63 - 1),
    ItemType.BIG_INTEGER: st.integers(-(2**520), 2**520),
    ItemType.ENUMERATION: st.integers(0, 2**32 - 1),
    ItemType.BOOLEAN: st.booleans(),
    ItemType.TEXT_STRING: st.text(max_size=30),
    ItemType.BYTE_STRING: st.binary(max_size=30),
    ItemType.DATE_TIME: st.integers(-(2**63), 2**63 - 1),
    ItemType.INTERVAL: st.integers(0, 2**32 - 1),
    ItemType.DATE_TIME_EXTENDED: st.integers(-(2**63), 2**63 - 1),
}
leaves = st.one_of(
    [st.builds(Item, tags, st.just(kind), values) for kind, values in leaf_values.items()]
)
trees = st.recursive(
    leaves,
    lambda children: st.builds(Item, tags, st.just(ItemType.STRUCTURE), st.lists(children)),
    max_leaves=60,
)


@needs_accelerator
@given(trees)
def test_random_trees_decode_alike(item: Item) -> None:
    outcome = assert_decoders_agree(encode_item(item))

    assert_identical(outcome, item)


@needs_accelerator
@given(st.binary(max_size=300))
def test_random_bytes_are_judged_alike(data: bytes) -> None:
    assert_decoders_agree(data)


# Random items that are nearly right: a tag mostly in KMIP's space, a type code
# mostly known, a length mostly true, padding mostly zero. Random bytes rarely get
# past the first header; these reach every rule.
values = st.one_of(
    st.sampled_from([bytes(4), bytes(8), bytes(7) + b"\x01", b"\xff" * 8, b"A", b"\xc3\xa9"]),
    st.integers(1, 3).flatmap(lambda words: st.binary(min_size=4 * words, max_size=4 * words)),
    st.binary(max_size=24),
)


@st.composite
def raw_items(draw: st.DrawFn) -> bytes:
    tag = draw(st.one_of(tags, tags, st.integers(0, 0xFFFFFF)))
    code = draw(st.integers(2, 11)) if draw(st.integers(0, 4)) else draw(st.integers(0, 0xFF))
    value = draw(values)
    length = len(value) if draw(st.integers(0, 9)) else draw(st.integers(0, 2**32 - 1))
    padding = bytes(-len(value) % 8) if draw(st.integers(0, 19)) else draw(st.binary(max_size=8))
    return struct.pack(">II", tag << 8 | code, length) + value + padding


@needs_accelerator
@given(st.lists(raw_items(), max_size=6), st.integers(0, 5), st.data())
def test_random_items_are_judged_alike(items: list[bytes], depth: int, data: Any) -> None:
    # Wrap the items in a few Structures whose lengths are right or nearly so.
    body = b"".join(items)
    for _ in range(depth):
        wrong = data.draw(st.integers(0, 9)) == 0
        length = len(body) + (data.draw(st.sampled_from([8, -8, 1])) if wrong else 0)
        body = struct.pack(">II", T << 8 | ItemType.STRUCTURE, max(length, 0)) + body

    assert_decoders_agree(body, Limits(max_depth=data.draw(st.integers(0, 6)), max_items=40))


@needs_accelerator
@settings(max_examples=300)
@given(st.data())
def test_mutated_requests_are_judged_alike(data: Any) -> None:
    message = bytearray(data.draw(st.sampled_from(vcenter_requests())))
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(message) - 1))
        mutation = data.draw(st.sampled_from(["flip", "truncate", "insert", "overwrite"]))
        if mutation == "flip":
            message[position] ^= 1 << data.draw(st.integers(0, 7))
        elif mutation == "truncate":
            del message[position:]
        elif mutation == "insert":
            message[position:position] = data.draw(st.binary(min_size=1, max_size=16))
        else:
            message[position] = data.draw(st.integers(0, 255))
        if not message:
            break

    assert_decoders_agree(bytes(message))
