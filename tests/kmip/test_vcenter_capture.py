"""vCenter 7.0.3's requests, as captured on the wire, through the message model.

Every request decodes and re-encodes to the identical bytes. Two are golden: their
bytes (16 to a row) sit beside the decoded model a handler will see.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from keyquorum.kmip import (
    Attribute,
    RequestBatchItem,
    RequestHeader,
    RequestMessage,
    TemplateAttribute,
    UniqueIdentifier,
    decode_message,
    encode_message,
    request_attributes,
)
from keyquorum.kmip.payloads import (
    AddAttributeRequestPayload,
    CreateRequestPayload,
    GetAttributesRequestPayload,
    ProtocolVersion,
)
from keyquorum.kmip.tables import CryptographicAlgorithm, ObjectType, Operation, Tag
from keyquorum.kmip.ttlv import Item, ItemType

CAPTURE = Path(__file__).resolve().parents[2].parent / "shared" / "interop"
REQUESTS = [
    (number, *line.split())
    for number, line in enumerate(
        (CAPTURE / "vcenter-7.0.3-requests.txt").read_text().splitlines(), start=1
    )
    if line and not line.startswith("#")
]


@pytest.mark.parametrize(
    ("number", "operation", "hex_bytes"), REQUESTS, ids=[f"{r[0]}-{r[1]}" for r in REQUESTS]
)
def test_request_round_trips_to_identical_bytes(
    number: int, operation: str, hex_bytes: str
) -> None:
    data = bytes.fromhex(hex_bytes)

    message = decode_message(data)

    assert isinstance(message, RequestMessage)
    expected = Operation[_operation_name(operation)]
    assert all(item.operation == expected for item in message.batch_items), number
    assert encode_message(message) == data


def _operation_name(capture_name: str) -> str:
    # The capture names operations as the XML does: "DiscoverVersions".
    return "".join("_" + c if c.isupper() else c for c in capture_name).lstrip("_").upper()


def value(item_type: ItemType, content: object) -> Item:
    """A 1.x Attribute Value item."""
    return Item(Tag.ATTRIBUTE_VALUE, item_type, content)


VCENTER_HEADER = RequestHeader(protocol_version=ProtocolVersion(major=1, minor=1), batch_count=1)
FIRST_BATCH_ITEM_ID = b"QLKC\x01\x00\x00\x00"

# The first Create: a 256-bit AES key for encryption and decryption.
CREATE = bytes.fromhex(
    "42007801000001304200770100000038"
    "420069010000002042006a0200000004"
    "000000010000000042006b0200000004"
    "000000010000000042000d0200000004"
    "000000010000000042000f01000000e8"
    "42005c05000000040000000100000000"
    "4200930800000008514c4b4301000000"
    "42007901000000c04200570500000004"
    "000000020000000042009101000000a8"
    "420008010000003042000a0700000017"
    "43727970746f6772617068696320416c"
    "676f726974686d0042000b0500000004"
    "00000003000000004200080100000030"
    "42000a070000001843727970746f6772"
    "6170686963205573616765204d61736b"
    "42000b02000000040000000c00000000"
    "420008010000003042000a0700000014"
    "43727970746f67726170686963204c65"
    "6e6774680000000042000b0200000004"
    "0000010000000000"
)
CREATE_MODEL = RequestMessage(
    header=VCENTER_HEADER,
    batch_items=(
        RequestBatchItem(
            operation=Operation.CREATE,
            unique_batch_item_id=FIRST_BATCH_ITEM_ID,
            payload=CreateRequestPayload(
                object_type=ObjectType.SYMMETRIC_KEY,
                template_attribute=TemplateAttribute(
                    attributes=(
                        Attribute(
                            name="Cryptographic Algorithm",
                            value=value(ItemType.ENUMERATION, CryptographicAlgorithm.AES),
                        ),
                        # Encrypt | Decrypt
                        Attribute(
                            name="Cryptographic Usage Mask", value=value(ItemType.INTEGER, 12)
                        ),
                        Attribute(name="Cryptographic Length", value=value(ItemType.INTEGER, 256)),
                    )
                ),
            ),
        ),
    ),
)

# A Get Attributes of vCenter's own custom attribute on the first key it created.
GET_PRODUCT_VERSION = bytes.fromhex(
    "42007801000000a04200770100000038"
    "420069010000002042006a0200000004"
    "000000010000000042006b0200000004"
    "000000010000000042000d0200000004"
    "000000010000000042000f0100000058"
    "42005c05000000040000000b00000000"
    "4200930800000008514c4b4301000000"
    "42007901000000304200940700000001"
    "310000000000000042000a0700000011"
    "782d50726f647563745f56657273696f"
    "6e00000000000000"
)
GET_PRODUCT_VERSION_MODEL = RequestMessage(
    header=VCENTER_HEADER,
    batch_items=(
        RequestBatchItem(
            operation=Operation.GET_ATTRIBUTES,
            unique_batch_item_id=FIRST_BATCH_ITEM_ID,
            payload=GetAttributesRequestPayload(
                unique_identifier=UniqueIdentifier("1"),
                attribute_names=("x-Product_Version",),
            ),
        ),
    ),
)


@pytest.mark.parametrize(
    ("data", "model"),
    [(CREATE, CREATE_MODEL), (GET_PRODUCT_VERSION, GET_PRODUCT_VERSION_MODEL)],
    ids=["create", "get-attributes"],
)
def test_golden_request(data: bytes, model: RequestMessage) -> None:
    assert decode_message(data) == model
    assert encode_message(model) == data


def test_create_fields_a_handler_reads() -> None:
    message = decode_message(CREATE)

    assert isinstance(message, RequestMessage)
    (batch_item,) = message.batch_items
    assert batch_item.operation is Operation.CREATE
    assert batch_item.unique_batch_item_id == b"QLKC\x01\x00\x00\x00"
    attributes = {a.name: a.value.value for a in request_attributes(batch_item.payload) if a.value}
    assert attributes == {
        "Cryptographic Algorithm": CryptographicAlgorithm.AES,
        "Cryptographic Usage Mask": 12,
        "Cryptographic Length": 256,
    }


def test_add_attribute_batch_keeps_custom_attributes_in_order() -> None:
    # vCenter tags each key with its product, version and vendor in one batch of three.
    data = next(bytes.fromhex(h) for _, op, h in REQUESTS if op == "AddAttribute")

    message = decode_message(data)

    assert isinstance(message, RequestMessage)
    assert message.header.batch_count == len(message.batch_items) == 3
    payloads = [item.payload for item in message.batch_items]
    assert all(isinstance(p, AddAttributeRequestPayload) for p in payloads)
    assert [p.attribute.name for p in payloads] == ["x-Product_Version", "x-Vendor", "x-Product"]
    assert [item.unique_batch_item_id for item in message.batch_items] == [
        b"QLKC\x01\x00\x00\x00",
        b"QLKC\x02\x00\x00\x00",
        b"QLKC\x03\x00\x00\x00",
    ]
