"""The XML and JSON encodings: the OASIS test cases, the 1.x context rule, every refusal.

Every message of the 168 OASIS conformance test cases (KMIP Profiles 1.4 and 2.1)
must read from XML and come back unchanged through XML, JSON and TTLV. Golden
documents sit beside the trees they decode to.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyquorum.kmip.errors import KmipError
from keyquorum.kmip.json import item_from_json, item_to_json, item_to_json_object
from keyquorum.kmip.limits import Limits
from keyquorum.kmip.tables import (
    ATTRIBUTE_TAGS,
    CryptographicAlgorithm,
    CryptographicUsageMask,
    NameType,
    ObjectType,
    Operation,
    ResultReason,
    Tag,
)
from keyquorum.kmip.ttlv import Item, ItemType, decode_item, encode_item
from keyquorum.kmip.xml import (
    PLACEHOLDER_NOW,
    item_from_element,
    item_from_xml,
    item_to_element,
    item_to_xml,
    load_test_case,
    parse_test_case,
)

CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"
TEST_CASES = sorted(CONFORMANCE.rglob("*.xml"))

S = ItemType.STRUCTURE
I = ItemType.INTEGER  # noqa: E741 - the type letter, as in the tables of the specification
E = ItemType.ENUMERATION
TS = ItemType.TEXT_STRING
BS = ItemType.BYTE_STRING
DT = ItemType.DATE_TIME

PROTOCOL_ERRORS = (ResultReason.INVALID_MESSAGE, ResultReason.INVALID_FIELD)


def round_trips(item: Item) -> None:
    """The item comes back unchanged through XML, JSON and TTLV."""
    assert item_from_xml(item_to_xml(item)) == item
    assert item_from_xml(item_to_xml(item, indent=None)) == item
    assert item_from_json(item_to_json(item)) == item
    assert decode_item(encode_item(item)) == item


# The OASIS conformance test cases.


def test_all_test_cases_are_found() -> None:
    assert len(TEST_CASES) == 168


@pytest.mark.parametrize("path", TEST_CASES, ids=lambda path: path.name)
def test_conformance_messages_round_trip(path: Path) -> None:
    messages = parse_test_case(path)

    assert messages
    assert {message.tag for message in messages} <= {Tag.REQUEST_MESSAGE, Tag.RESPONSE_MESSAGE}
    for message in messages:
        # A tag the tables do not name would come back as <TTLV tag="0x...">.
        assert "<TTLV " not in item_to_xml(message)
        round_trips(message)


# KMIP Profiles 1.4 test case AKLC-M-1-14, the first request's batch item, trimmed.
GOLDEN_XML = """\
<BatchItem>
  <Operation type="Enumeration" value="CreateKeyPair"/>
  <RequestPayload>
    <CommonTemplateAttribute>
      <Attribute>
        <AttributeName type="TextString" value="Cryptographic Algorithm"/>
        <AttributeValue type="Enumeration" value="RSA"/>
      </Attribute>
      <Attribute>
        <AttributeName type="TextString" value="Name"/>
        <AttributeValue>
          <NameValue type="TextString" value="AKLC-M-1-14-private"/>
          <NameType type="Enumeration" value="UninterpretedTextString"/>
        </AttributeValue>
      </Attribute>
      <Attribute>
        <AttributeName type="TextString" value="Cryptographic Usage Mask"/>
        <AttributeValue type="Integer" value="Sign Verify"/>
      </Attribute>
    </CommonTemplateAttribute>
  </RequestPayload>
</BatchItem>"""

SIGN_VERIFY = int(CryptographicUsageMask.SIGN | CryptographicUsageMask.VERIFY)
GOLDEN_ITEM = Item(Tag.BATCH_ITEM, S, [
    Item(Tag.OPERATION, E, Operation.CREATE_KEY_PAIR),
    Item(Tag.REQUEST_PAYLOAD, S, [
        Item(Tag.COMMON_TEMPLATE_ATTRIBUTE, S, [
            Item(Tag.ATTRIBUTE, S, [
                Item(Tag.ATTRIBUTE_NAME, TS, "Cryptographic Algorithm"),
                Item(Tag.ATTRIBUTE_VALUE, E, CryptographicAlgorithm.RSA),
            ]),
            Item(Tag.ATTRIBUTE, S, [
                Item(Tag.ATTRIBUTE_NAME, TS, "Name"),
                Item(Tag.ATTRIBUTE_VALUE, S, [
                    Item(Tag.NAME_VALUE, TS, "AKLC-M-1-14-private"),
                    Item(Tag.NAME_TYPE, E, NameType.UNINTERPRETED_TEXT_STRING),
                ]),
            ]),
            Item(Tag.ATTRIBUTE, S, [
                Item(Tag.ATTRIBUTE_NAME, TS, "Cryptographic Usage Mask"),
                Item(Tag.ATTRIBUTE_VALUE, I, SIGN_VERIFY),
            ]),
        ]),
    ]),
])


def test_golden_xml() -> None:
    assert item_from_xml(GOLDEN_XML) == GOLDEN_ITEM
    assert item_to_xml(GOLDEN_ITEM) == GOLDEN_XML


def test_golden_json() -> None:
    document = item_to_json_object(GOLDEN_ITEM)
    attributes = document["value"][1]["value"][0]["value"]

    assert document["tag"] == "BatchItem"
    assert document["value"][0] == {"tag": "Operation", "type": "Enumeration",
                                    "value": "CreateKeyPair"}
    assert attributes[0]["value"][1] == {"tag": "AttributeValue", "type": "Enumeration",
                                         "value": "RSA"}
    assert attributes[2]["value"][1] == {"tag": "AttributeValue", "type": "Integer",
                                         "value": "Sign|Verify"}
    assert "type" not in attributes[1]["value"][1]
    assert item_from_json(json.dumps(document)) == GOLDEN_ITEM


def test_placeholders_get_fixed_values_of_their_type() -> None:
    case = load_test_case(CONFORMANCE / "kmip-1.4" / "mandatory" / "AKLC-M-1-14.xml")
    header = case.messages[1].value[0]
    payload = case.messages[1].value[1].value[2]

    assert case.placeholders["$NOW"] == PLACEHOLDER_NOW
    assert Item(Tag.TIME_STAMP, DT, PLACEHOLDER_NOW) in header.value
    assert payload.value[0] == Item(
        Tag.PRIVATE_KEY_UNIQUE_IDENTIFIER, TS, "$UNIQUE_IDENTIFIER_0"
    )


def test_placeholders_take_the_callers_values_and_offsets() -> None:
    document = """<KMIP>
      <ResponseMessage>
        <UniqueIdentifier type="TextString" value="$UNIQUE_IDENTIFIER_0"/>
        <Data type="ByteString" value="$DATA_0"/>
        <ActivationDate type="DateTime" value="$NOW-3600"/>
        <DeactivationDate type="DateTime" value="$NOW+3600"/>
      </ResponseMessage>
    </KMIP>"""

    case = load_test_case(document, {"$UNIQUE_IDENTIFIER_0": "uid-7", "$NOW": 1000})

    assert case.messages == [Item(Tag.RESPONSE_MESSAGE, S, [
        Item(Tag.UNIQUE_IDENTIFIER, TS, "uid-7"),
        Item(Tag.DATA, BS, b"$DATA_0"),
        Item(Tag.ACTIVATION_DATE, DT, 1000 - 3600),
        Item(Tag.DEACTIVATION_DATE, DT, 1000 + 3600),
    ])]
    assert case.placeholders == {"$UNIQUE_IDENTIFIER_0": "uid-7", "$DATA_0": b"$DATA_0",
                                 "$NOW": 1000}


def test_placeholders_are_plain_text_outside_test_cases() -> None:
    text = '<UniqueIdentifier type="TextString" value="$UNIQUE_IDENTIFIER_0"/>'

    assert item_from_xml(text) == Item(Tag.UNIQUE_IDENTIFIER, TS, "$UNIQUE_IDENTIFIER_0")
    with pytest.raises(KmipError):
        item_from_xml('<ActivationDate type="DateTime" value="$NOW"/>')


# The 1.x context rule: Attribute Value takes the enumeration and mask of the
# attribute its Attribute Name names.


def attribute(name: str, value: Item) -> Item:
    return Item(Tag.ATTRIBUTE, S, [Item(Tag.ATTRIBUTE_NAME, TS, name), value])


def test_attribute_value_enumeration_follows_attribute_name() -> None:
    item = attribute("Object Type", Item(Tag.ATTRIBUTE_VALUE, E, ObjectType.SYMMETRIC_KEY))

    assert 'value="SymmetricKey"' in item_to_xml(item)
    assert '"value": "SymmetricKey"' in item_to_json(item)
    round_trips(item)


def test_attribute_value_mask_follows_attribute_name() -> None:
    mask = CryptographicUsageMask.ENCRYPT | CryptographicUsageMask.DECRYPT
    item = attribute("Cryptographic Usage Mask", Item(Tag.ATTRIBUTE_VALUE, I, int(mask)))

    assert 'value="Encrypt Decrypt"' in item_to_xml(item)
    assert '"value": "Encrypt|Decrypt"' in item_to_json(item)
    round_trips(item)


def test_attribute_value_of_an_unknown_attribute_uses_numbers() -> None:
    item = attribute("x-custom", Item(Tag.ATTRIBUTE_VALUE, E, 3))
    named = '<Attribute><AttributeName type="TextString" value="x-custom"/>' \
        '<AttributeValue type="Enumeration" value="AES"/></Attribute>'

    assert 'value="0x00000003"' in item_to_xml(item)
    round_trips(item)
    with pytest.raises(KmipError) as caught:
        item_from_xml(named)
    assert caught.value.reason == ResultReason.INVALID_FIELD


def test_every_attribute_name_gives_its_attribute_context() -> None:
    for name, tag in ATTRIBUTE_TAGS.items():
        plain = Item(tag, E, 1)
        in_context = attribute(name, Item(Tag.ATTRIBUTE_VALUE, E, 1))
        spelled = item_to_json_object(plain)["value"]

        assert item_to_json_object(in_context)["value"][1]["value"] == spelled
        round_trips(in_context)


# Names the tables do not know travel as hex.


def test_unknown_tags_travel_as_ttlv_elements() -> None:
    item = Item(0x540001, S, [Item(0x540002, TS, "vendor")])

    assert item_to_xml(item) == (
        '<TTLV tag="0x540001">\n  <TTLV tag="0x540002" type="TextString" value="vendor"/>\n'
        "</TTLV>"
    )
    assert json.loads(item_to_json(item)) == {"tag": "0x540001", "value": [
        {"tag": "0x540002", "type": "TextString", "value": "vendor"},
    ]}
    assert item_from_xml('<TTLV tag="0x42000A" type="TextString" value="x"/>') == Item(
        Tag.ATTRIBUTE_NAME, TS, "x"
    )
    round_trips(item)


def test_unknown_enumeration_values_and_mask_bits_travel_as_hex() -> None:
    enumeration = Item(Tag.OPAQUE_DATA_TYPE, E, 0x80000001)
    mask = Item(Tag.CRYPTOGRAPHIC_USAGE_MASK, I, -(2**31) | int(CryptographicUsageMask.ENCRYPT))

    assert 'value="0x80000001"' in item_to_xml(enumeration)
    assert 'value="Encrypt 0x80000000"' in item_to_xml(mask)
    assert '"Encrypt|0x80000000"' in item_to_json(mask)
    round_trips(enumeration)
    round_trips(mask)


# Spellings: dates, numbers, JSON's own types.


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1970-01-01T00:00:06+00:00", 6),
        ("2000-02-01T00:00:00+10:00", 949327200),
        ("2000-01-31T14:00:00Z", 949327200),
        ("2000-01-31T14:00:00", 949327200),
        ("0x0000000000000006", 6),
    ],
)
def test_dates_are_read_in_any_zone_and_written_in_utc(text: str, seconds: int) -> None:
    item = item_from_xml(f'<ActivationDate type="DateTime" value="{text}"/>')

    assert item == Item(Tag.ACTIVATION_DATE, DT, seconds)
    assert item_from_json(
        f'{{"tag": "ActivationDate", "type": "DateTime", "value": "{text}"}}'
    ) == item


def test_dates_iso_8601_cannot_spell_go_as_hex() -> None:
    early = Item(Tag.ACTIVATION_DATE, DT, -(2**62))

    assert 'value="0xC000000000000000"' in item_to_xml(early)
    assert item_to_xml(Item(Tag.ACTIVATION_DATE, DT, 6)).endswith(
        'value="1970-01-01T00:00:06+00:00"/>'
    )
    round_trips(early)


def test_date_time_extended_keeps_microseconds() -> None:
    item = Item(Tag.ACTIVATION_DATE, ItemType.DATE_TIME_EXTENDED, 1_700_000_000_123_456)

    assert 'value="2023-11-14T22:13:20.123456+00:00"' in item_to_xml(item)
    round_trips(item)


def test_json_numbers_that_a_double_cannot_hold_go_as_hex() -> None:
    small = Item(Tag.USAGE_LIMITS_TOTAL, ItemType.LONG_INTEGER, 16)
    large = Item(Tag.USAGE_LIMITS_TOTAL, ItemType.LONG_INTEGER, -(2**60))
    big = Item(Tag.MODULUS, ItemType.BIG_INTEGER, 65537)

    assert json.loads(item_to_json(small))["value"] == 16
    assert json.loads(item_to_json(large))["value"] == "0xF000000000000000"
    assert json.loads(item_to_json(big))["value"] == "0x0000000000010001"
    assert item_from_json('{"tag": "Modulus", "type": "BigInteger", "value": 65537}') == big
    round_trips(large)


@pytest.mark.parametrize(
    ("document", "value"),
    [
        ('{"tag": "BatchCount", "type": "Integer", "value": "0x00000001"}', 1),
        ('{"tag": "BatchCount", "type": "Integer", "value": "0xFFFFFFFF"}', -1),
        ('{"tag": "CryptographicUsageMask", "type": "Integer", "value": 12}', 12),
        ('{"tag": "CryptographicUsageMask", "type": "Integer", "value": "Decrypt | 0x4"}', 12),
        ('{"tag": "Operation", "type": "Enumeration", "value": 1}', 1),
        ('{"tag": "Operation", "type": "Enumeration", "value": "0x00000001"}', 1),
        ('{"tag": "Sensitive", "type": "Boolean", "value": "0x0000000000000001"}', True),
        ('{"tag": "LeaseTime", "type": "Interval", "value": "0x00000E10"}', 3600),
    ],
)
def test_json_accepts_every_number_form(document: str, value: object) -> None:
    assert item_from_json(document).value == value


# Malformed documents raise the protocol error and nothing else.

BAD_XML = [
    "",
    "<BatchCount",
    "<BatchCount type='Integer' value='1'/><BatchCount type='Integer' value='1'/>",
    "<!DOCTYPE x [<!ENTITY a 'aaaa'>]><BatchCount type='Integer' value='&a;'/>",
    "<BatchCount type='Integer' value='&undefined;'/>",
    "<BatchCount type='Integer' value='1'>text</BatchCount>",
    "<BatchCount type='Integer'/>",
    "<BatchCount type='Integer' value='1' extra='x'/>",
    "<BatchCount type='Integer' value='1'><BatchCount type='Integer' value='1'/></BatchCount>",
    "<BatchCount type='Float' value='1'/>",
    "<BatchCount type='Integer' value='1.5'/>",
    "<BatchCount type='Integer' value='1_0'/>",
    "<BatchCount type='Integer' value='\u0661'/>",
    "<BatchCount type='Integer' value=' 1'/>",
    "<BatchCount type='Integer' value='2147483648'/>",
    "<BatchCount type='Integer' value='0x100000000'/>",
    "<BatchCount type='Integer' value='1" + "0" * 100 + "'/>",
    "<Operation type='Enumeration' value='Frobnicate'/>",
    "<Operation type='Enumeration' value='0xZZ'/>",
    "<CryptographicUsageMask type='Integer' value='Encrypt Frobnicate'/>",
    "<CryptographicUsageMask type='Integer' value=''/>",
    "<Data type='ByteString' value='abc'/>",
    "<Data type='ByteString' value='zz'/>",
    "<Data type='ByteString' value='0x00'/>",
    "<Modulus type='BigInteger' value=''/>",
    "<ActivationDate type='DateTime' value='yesterday'/>",
    "<ActivationDate type='DateTime' value='2000-13-01T00:00:00Z'/>",
    "<Sensitive type='Boolean' value='yes'/>",
    "<Frobnicate type='Integer' value='1'/>",
    "<TTLV type='Integer' value='1'/>",
    "<TTLV tag='0x990001' type='Integer' value='1'/>",
    "<TTLV tag='Frob' type='Integer' value='1'/>",
    "<RequestMessage value='1'/>",
    "<RequestMessage type='Structure'><Frob/></RequestMessage>",
    "<ActivationDate type='DateTime' value='$NOW'/>",
    b"<BatchCount type='Integer' value='\xff'/>",
]


@pytest.mark.parametrize("text", BAD_XML)
def test_malformed_xml_raises_the_protocol_error(text: str | bytes) -> None:
    with pytest.raises(KmipError) as caught:
        item_from_xml(text)

    assert caught.value.reason in PROTOCOL_ERRORS


BAD_JSON = [
    "",
    "{",
    "[]",
    '"RequestMessage"',
    '{"tag": "BatchCount", "type": "Integer"}',
    '{"type": "Integer", "value": 1}',
    '{"tag": "BatchCount", "type": "Integer", "value": 1, "extra": 1}',
    '{"tag": "BatchCount", "tag": "BatchCount", "type": "Integer", "value": 1}',
    '{"tag": 66, "type": "Integer", "value": 1}',
    '{"tag": "BatchCount", "type": "Float", "value": 1}',
    '{"tag": "BatchCount", "type": "Integer", "value": 1.5}',
    '{"tag": "BatchCount", "type": "Integer", "value": NaN}',
    '{"tag": "BatchCount", "type": "Integer", "value": true}',
    '{"tag": "BatchCount", "type": "Integer", "value": "1"}',
    '{"tag": "BatchCount", "type": "Integer", "value": 2147483648}',
    '{"tag": "BatchCount", "type": "Integer", "value": 1' + "0" * 100 + "}",
    '{"tag": "BatchCount", "type": "Integer", "value": null}',
    '{"tag": "Operation", "type": "Enumeration", "value": "Frobnicate"}',
    '{"tag": "Operation", "type": "Enumeration", "value": -1}',
    '{"tag": "CryptographicUsageMask", "type": "Integer", "value": "Encrypt||Decrypt"}',
    '{"tag": "Data", "type": "ByteString", "value": "0x00"}',
    '{"tag": "Data", "type": "ByteString", "value": "abc"}',
    '{"tag": "Data", "type": "ByteString", "value": 12}',
    '{"tag": "Modulus", "type": "BigInteger", "value": "010001"}',
    '{"tag": "Modulus", "type": "BigInteger", "value": "0x"}',
    '{"tag": "ActivationDate", "type": "DateTime", "value": "yesterday"}',
    '{"tag": "ActivationDate", "type": "DateTime", "value": 6}',
    '{"tag": "Sensitive", "type": "Boolean", "value": "true"}',
    '{"tag": "Sensitive", "type": "Boolean", "value": 1}',
    '{"tag": "UniqueIdentifier", "type": "TextString", "value": 7}',
    '{"tag": "Frobnicate", "type": "Integer", "value": 1}',
    '{"tag": "0x99000A", "type": "Integer", "value": 1}',
    '{"tag": "RequestMessage", "value": {}}',
    '{"tag": "RequestMessage", "value": [1]}',
    '{"tag": "RequestMessage", "value": [' * 5000,
    b'{"tag": "UniqueIdentifier", "type": "TextString", "value": "\xff"}',
]


@pytest.mark.parametrize("text", BAD_JSON)
def test_malformed_json_raises_the_protocol_error(text: str | bytes) -> None:
    with pytest.raises(KmipError) as caught:
        item_from_json(text)

    assert caught.value.reason in PROTOCOL_ERRORS


def test_values_xml_cannot_carry_are_refused_on_output() -> None:
    with pytest.raises(KmipError):
        item_to_xml(Item(Tag.UNIQUE_IDENTIFIER, TS, "nul\x00"))
    with pytest.raises(KmipError):
        item_to_xml(Item(Tag.BATCH_COUNT, I, "1"))
    with pytest.raises(KmipError):
        item_to_json(Item(Tag.BATCH_COUNT, I, 2**31))
    with pytest.raises(KmipError):
        item_to_json(Item(Tag.BATCH_COUNT, 0x0C, 1))


def test_hand_built_elements_are_checked_too() -> None:
    element = item_to_element(GOLDEN_ITEM)
    element.append(item_to_element(Item(Tag.BATCH_COUNT, I, 1)))
    element[-1].set("value", "one")

    with pytest.raises(KmipError):
        item_from_element(element)


# Limits: nesting depth, item count and document size are enforced while reading.

SMALL = Limits(max_message_size=1024, max_depth=3, max_items=10)


def nested(depth: int, leaf: bool = True) -> Item:
    """``depth`` structures one inside the other, the innermost holding an Integer or not."""
    items = [Item(Tag.BATCH_COUNT, I, 1)] if leaf else []
    for _ in range(depth):
        items = [Item(Tag.BATCH_ITEM, S, items)]
    return items[0]


def accepts(read: Callable[[Any, Limits], Item], data: str | bytes) -> bool:
    try:
        read(data, SMALL)
    except KmipError:
        return False
    return True


@pytest.mark.parametrize("depth", [2, 3, 4])
@pytest.mark.parametrize("leaf", [True, False], ids=["leaf", "empty"])
def test_xml_and_json_count_depth_as_ttlv_does(depth: int, leaf: bool) -> None:
    item = nested(depth, leaf)
    expected = accepts(decode_item, encode_item(item))

    assert accepts(item_from_xml, item_to_xml(item)) == expected
    assert accepts(item_from_json, item_to_json(item)) == expected


def test_limits_are_enforced_on_xml_and_json() -> None:
    deep, wide = nested(4), Item(Tag.BATCH_ITEM, S, [Item(Tag.BATCH_COUNT, I, 1)] * 10)
    long_text = Item(Tag.UNIQUE_IDENTIFIER, TS, "x" * 10_000)

    assert item_from_xml(item_to_xml(nested(3)), SMALL) == nested(3)
    assert item_from_json(item_to_json(nested(3)), SMALL) == nested(3)
    for item in (deep, wide, long_text):
        with pytest.raises(KmipError):
            item_from_xml(item_to_xml(item), SMALL)
        with pytest.raises(KmipError):
            item_from_json(item_to_json(item), SMALL)


# Property-based tests: random trees round-trip through both encodings; random and
# mutated documents either decode or raise the protocol error.

# Characters XML 1.0 can carry (and TTLV: no lone surrogates).
xml_text = st.text(
    st.characters(codec="utf-8", exclude_characters="\ufffe\uffff")
    .filter(lambda c: c >= " " or c in "\t\n\r"),
    max_size=30,
)
tags = st.one_of(
    st.sampled_from(sorted(Tag)),
    st.integers(0x540000, 0x54FFFF),
)
leaves = st.one_of(
    st.builds(Item, tags, st.just(I), st.integers(-(2**31), 2**31 - 1)),
    st.builds(Item, tags, st.just(ItemType.LONG_INTEGER), st.integers(-(2**63), 2**63 - 1)),
    st.builds(Item, tags, st.just(ItemType.BIG_INTEGER), st.integers(-(2**300), 2**300)),
    st.builds(Item, tags, st.just(E), st.integers(0, 2**32 - 1)),
    st.builds(Item, tags, st.just(ItemType.BOOLEAN), st.booleans()),
    st.builds(Item, tags, st.just(TS), xml_text),
    st.builds(Item, tags, st.just(BS), st.binary(max_size=30)),
    st.builds(Item, tags, st.just(DT), st.integers(-(2**63), 2**63 - 1)),
    st.builds(Item, tags, st.just(ItemType.INTERVAL), st.integers(0, 2**32 - 1)),
    st.builds(
        Item, tags, st.just(ItemType.DATE_TIME_EXTENDED), st.integers(-(2**63), 2**63 - 1)
    ),
    # The 1.x context: attribute names the tables know, and values typed by them.
    st.builds(Item, st.just(Tag.ATTRIBUTE_NAME), st.just(TS), st.sampled_from(
        sorted(ATTRIBUTE_TAGS)
    )),
    st.builds(Item, st.just(Tag.ATTRIBUTE_VALUE), st.just(E), st.integers(0, 2**32 - 1)),
    st.builds(Item, st.just(Tag.ATTRIBUTE_VALUE), st.just(I), st.integers(-(2**31), 2**31 - 1)),
)
trees = st.recursive(
    leaves,
    lambda children: st.builds(Item, tags, st.just(S), st.lists(children, max_size=6)),
    max_leaves=30,
)


@settings(max_examples=300)
@given(trees)
def test_random_trees_round_trip(item: Item) -> None:
    round_trips(item)


def read_or_protocol_error(text: str) -> None:
    for read in (item_from_xml, item_from_json):
        try:
            read(text)
        except KmipError as error:
            assert error.reason in PROTOCOL_ERRORS


@given(st.text(max_size=200))
def test_random_text_reads_or_raises_the_protocol_error(text: str) -> None:
    read_or_protocol_error(text)


@settings(max_examples=300)
@given(st.data())
def test_mutated_documents_read_or_raise_the_protocol_error(data: st.DataObject) -> None:
    original = data.draw(st.sampled_from([item_to_xml(GOLDEN_ITEM), item_to_json(GOLDEN_ITEM)]))
    start = data.draw(st.integers(0, len(original) - 1))
    end = data.draw(st.integers(start, min(len(original), start + 8)))
    text = original[:start] + data.draw(st.text(max_size=8)) + original[end:]

    read_or_protocol_error(text)
