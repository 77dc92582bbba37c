"""KMIP request messages as the tests build them, and the answers as they read them.

Transport-free: tests/kmip_inprocess.py hands the bytes to a service in the test's own
process, tests/harness.py to a node over mutual TLS, the HTTPS tests to POST /kmip.
"""

from __future__ import annotations

from keyquorum.kmip.attributes import Attribute, TemplateAttribute
from keyquorum.kmip.messages import (
    RequestBatchItem,
    RequestHeader,
    RequestMessage,
    ResponseMessage,
    decode_message,
)
from keyquorum.kmip.payloads import CreateRequestPayload, ProtocolVersion
from keyquorum.kmip.tables import (
    BatchErrorContinuationOption,
    CryptographicAlgorithm,
    ObjectType,
    Operation,
    Tag,
)
from keyquorum.kmip.ttlv import Item, ItemType


def request(*items: tuple[Operation, object], version: tuple[int, int] = (1, 4),
            option: BatchErrorContinuationOption | None = None) -> RequestMessage:
    """A request message with a batch item per (operation, payload), in that order."""
    header = RequestHeader(protocol_version=ProtocolVersion(major=version[0], minor=version[1]),
                           batch_count=len(items), batch_error_continuation_option=option)
    return RequestMessage(header=header, batch_items=tuple(
        RequestBatchItem(operation=operation, payload=payload) for operation, payload in items))


def response(data: bytes) -> ResponseMessage:
    """The bytes a server answered, which must decode as a response message."""
    answer = decode_message(data)
    assert isinstance(answer, ResponseMessage)
    return answer


def attribute(name: str, item_type: ItemType, value: object) -> Attribute:
    """A 1.x Attribute: its name, and its value as an Attribute Value item."""
    return Attribute(name=name, value=Item(Tag.ATTRIBUTE_VALUE, item_type, value))


def aes_256(*extra: Attribute) -> CreateRequestPayload:
    """A 1.x Create of an AES-256 key for Encrypt and Decrypt (usage mask 12)."""
    return CreateRequestPayload(object_type=ObjectType.SYMMETRIC_KEY, template_attribute=(
        TemplateAttribute(attributes=(
            attribute("Cryptographic Algorithm", ItemType.ENUMERATION, CryptographicAlgorithm.AES),
            attribute("Cryptographic Length", ItemType.INTEGER, 256),
            attribute("Cryptographic Usage Mask", ItemType.INTEGER, 12),
            *extra))))
