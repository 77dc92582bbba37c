"""Request and response messages: headers and batch items.

KMIP 1.4 section 7 and KMIP 2.1 section 8. Every field of the specification's
message structures is here, None (or an empty tuple) when absent; the payload of a
batch item is the class its Operation selects in ``REQUEST_PAYLOADS`` or
``RESPONSE_PAYLOADS``, or ``UnknownPayload`` for an operation with no class.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import invalid_message
from .json import item_from_json, item_to_json
from .limits import DEFAULT_LIMITS, Limits
from .mapping import at, from_item, many, required, selected_by, to_item
from .payloads import REQUEST_PAYLOADS, RESPONSE_PAYLOADS, ProtocolVersion, UnknownPayload
from .tables import (
    AttestationType,
    BatchErrorContinuationOption,
    CredentialType,
    Operation,
    ResultReason,
    ResultStatus,
    Tag,
)
from .ttlv import Item, decode_item, encode_item
from .xml import item_from_xml, item_to_xml


@dataclass(frozen=True, kw_only=True)
class Credential:
    """One credential; its value's shape depends on the type, so it stays raw."""

    credential_type: CredentialType | int = required(Tag.CREDENTIAL_TYPE)
    credential_value: Item = required(Tag.CREDENTIAL_VALUE)


@dataclass(frozen=True, kw_only=True)
class Authentication:
    # One credential in KMIP 1.0 and 1.1, one or more since 1.2.
    credentials: tuple[Credential, ...] = many(Tag.CREDENTIAL)


@dataclass(frozen=True, kw_only=True)
class Nonce:
    nonce_id: bytes = required(Tag.NONCE_ID)
    nonce_value: bytes = required(Tag.NONCE_VALUE)


@dataclass(frozen=True, kw_only=True)
class MessageExtension:
    vendor_identification: str = required(Tag.VENDOR_IDENTIFICATION)
    criticality_indicator: bool = required(Tag.CRITICALITY_INDICATOR)
    vendor_extension: Item = required(Tag.VENDOR_EXTENSION)


@dataclass(frozen=True, kw_only=True)
class RequestHeader:
    protocol_version: ProtocolVersion = required(Tag.PROTOCOL_VERSION)
    maximum_response_size: int | None = at(Tag.MAXIMUM_RESPONSE_SIZE)
    client_correlation_value: str | None = at(Tag.CLIENT_CORRELATION_VALUE)
    server_correlation_value: str | None = at(Tag.SERVER_CORRELATION_VALUE)
    asynchronous_indicator: bool | None = at(Tag.ASYNCHRONOUS_INDICATOR)
    attestation_capable_indicator: bool | None = at(Tag.ATTESTATION_CAPABLE_INDICATOR)
    attestation_types: tuple[AttestationType | int, ...] = many(Tag.ATTESTATION_TYPE)
    authentication: Authentication | None = at(Tag.AUTHENTICATION)
    batch_error_continuation_option: BatchErrorContinuationOption | int | None = at(
        Tag.BATCH_ERROR_CONTINUATION_OPTION
    )
    batch_order_option: bool | None = at(Tag.BATCH_ORDER_OPTION)
    time_stamp: datetime | None = at(Tag.TIME_STAMP)
    batch_count: int = required(Tag.BATCH_COUNT)


@dataclass(frozen=True, kw_only=True)
class RequestBatchItem:
    operation: Operation | int = required(Tag.OPERATION)
    # KMIP 2.0 and later: the server keeps no object the operation creates.
    ephemeral: bool | None = at(Tag.EPHEMERAL)
    unique_batch_item_id: bytes | None = at(Tag.UNIQUE_BATCH_ITEM_ID)
    payload: Any = selected_by(Tag.REQUEST_PAYLOAD, "operation", REQUEST_PAYLOADS, UnknownPayload)
    message_extension: MessageExtension | None = at(Tag.MESSAGE_EXTENSION)


@dataclass(frozen=True, kw_only=True)
class RequestMessage:
    TAG = Tag.REQUEST_MESSAGE

    header: RequestHeader = required(Tag.REQUEST_HEADER)
    batch_items: tuple[RequestBatchItem, ...] = many(Tag.BATCH_ITEM)


@dataclass(frozen=True, kw_only=True)
class ResponseHeader:
    protocol_version: ProtocolVersion = required(Tag.PROTOCOL_VERSION)
    time_stamp: datetime = required(Tag.TIME_STAMP)
    nonce: Nonce | None = at(Tag.NONCE)
    attestation_types: tuple[AttestationType | int, ...] = many(Tag.ATTESTATION_TYPE)
    client_correlation_value: str | None = at(Tag.CLIENT_CORRELATION_VALUE)
    server_correlation_value: str | None = at(Tag.SERVER_CORRELATION_VALUE)
    batch_count: int = required(Tag.BATCH_COUNT)


@dataclass(frozen=True, kw_only=True)
class ResponseBatchItem:
    # Absent only when the server could not tell which operation was asked for.
    operation: Operation | int | None = at(Tag.OPERATION)
    unique_batch_item_id: bytes | None = at(Tag.UNIQUE_BATCH_ITEM_ID)
    result_status: ResultStatus | int = required(Tag.RESULT_STATUS)
    result_reason: ResultReason | int | None = at(Tag.RESULT_REASON)
    result_message: str | None = at(Tag.RESULT_MESSAGE)
    asynchronous_correlation_value: bytes | None = at(Tag.ASYNCHRONOUS_CORRELATION_VALUE)
    payload: Any = selected_by(Tag.RESPONSE_PAYLOAD, "operation", RESPONSE_PAYLOADS, UnknownPayload)
    message_extension: MessageExtension | None = at(Tag.MESSAGE_EXTENSION)


@dataclass(frozen=True, kw_only=True)
class ResponseMessage:
    TAG = Tag.RESPONSE_MESSAGE

    header: ResponseHeader = required(Tag.RESPONSE_HEADER)
    batch_items: tuple[ResponseBatchItem, ...] = many(Tag.BATCH_ITEM)


Message = RequestMessage | ResponseMessage


def message_from_item(item: Item) -> Message:
    """The message a decoded item tree holds, by its top tag."""
    if item.tag == Tag.REQUEST_MESSAGE:
        message: Message = from_item(RequestMessage, item)
    elif item.tag == Tag.RESPONSE_MESSAGE:
        message = from_item(ResponseMessage, item)
    else:
        raise invalid_message(f"tag 0x{item.tag:06X} is not a request or response message")

    # The batch count is how a reader knows it has every item (KMIP 1.4 7.2).
    if message.header.batch_count != len(message.batch_items):
        raise invalid_message(
            f"batch count {message.header.batch_count} but {len(message.batch_items)} items"
        )
    return message


def message_to_item(message: Message) -> Item:
    """The item tree of ``message``."""
    return to_item(message, message.TAG)


def decode_message(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Decode the TTLV bytes of one whole request or response message."""
    return message_from_item(decode_item(data, limits))


def encode_message(message: Message) -> bytes:
    """The TTLV bytes of ``message``."""
    return encode_item(message_to_item(message))


def decode_message_xml(text: str | bytes, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Decode one message in the XML encoding (KMIP Profiles 2.1 section 6.5)."""
    return message_from_item(item_from_xml(text, limits))


def encode_message_xml(message: Message) -> str:
    """The XML encoding of ``message``, printed as the OASIS test cases print it."""
    return item_to_xml(message_to_item(message))


def decode_message_json(text: str | bytes, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Decode one message in the JSON encoding (KMIP Profiles 2.1 section 6.4)."""
    return message_from_item(item_from_json(text, limits))


def encode_message_json(message: Message) -> str:
    """The JSON encoding of ``message``."""
    return item_to_json(message_to_item(message))
