"""The chaos clients' KMIP: one operation, one TLS connection, one short answer.

Requests are messages of keyquorum's model sent over a real mutual-TLS socket with a
timeout (PyKMIP's client has no Add Attribute and waits 30 s on a paused node). Each
answer is reduced to the words of the object model (chaos/object_model.py), or to
``None`` when the outcome is unknown: no answer, a dropped connection, or the node
saying it cannot commit right now, after which the write may still commit.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Hashable
from dataclasses import dataclass

from kmip_requests import request

from keyquorum.kmip.attributes import Attribute, TemplateAttribute
from keyquorum.kmip.messages import (
    ResponseBatchItem,
    ResponseMessage,
    decode_message,
    encode_message,
)
from keyquorum.kmip.objects import KeyBlock, KeyValue, SymmetricKey
from keyquorum.kmip.payloads import (
    ActivateRequestPayload,
    AddAttributeRequestPayload,
    CreateRequestPayload,
    DestroyRequestPayload,
    GetAttributesRequestPayload,
    GetRequestPayload,
    LocateRequestPayload,
    RegisterRequestPayload,
    RevocationReason,
    RevokeRequestPayload,
)
from keyquorum.kmip.tables import (
    CryptographicAlgorithm,
    KeyFormatType,
    NameType,
    ObjectType,
    Operation,
    ResultReason,
    ResultStatus,
    RevocationReasonCode,
    State,
    Tag,
)
from keyquorum.kmip.ttlv import Item, ItemType

CHAOS_ATTRIBUTE = "x-chaos"
_STATE_WORDS = {State.PRE_ACTIVE: "pre_active", State.ACTIVE: "active",
                State.DEACTIVATED: "deactivated", State.DESTROYED: "destroyed"}


@dataclass(frozen=True)
class Answer:
    """The model's word for the answer (None: unknown), and what else came back."""

    result: Hashable
    uid: str | None = None
    material: bytes | None = None
    uids: tuple[str, ...] = ()


UNKNOWN = Answer(None)


class KmipSession:
    """One TLS connection to one node; ``fresh`` makes a new one per request."""

    def __init__(self, address: str, context: ssl.SSLContext, timeout: float) -> None:
        self.address = address
        self.context = context
        self.timeout = timeout
        self._tls: ssl.SSLSocket | None = None

    def __enter__(self) -> KmipSession:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._tls is not None:
            self._tls.close()
            self._tls = None

    def _connected(self) -> ssl.SSLSocket:
        """The session's connection, opened now if it has none."""
        if self._tls is None:
            raw = socket.create_connection((self.address, 5696), timeout=self.timeout)
            try:
                self._tls = self.context.wrap_socket(raw, server_hostname=self.address)
            except BaseException:
                raw.close()
                raise
        return self._tls

    def call(self, operation: Operation, payload: object) -> ResponseBatchItem:
        """One request; OSError (timeouts included) when no whole answer came."""
        tls = self._connected()
        try:
            tls.sendall(encode_message(request((operation, payload))))
            response = decode_message(_read_message(tls))
        except BaseException:
            self.close()
            raise
        assert isinstance(response, ResponseMessage)
        return response.batch_items[0]

    def call_batch(self, items: list[tuple[Operation, object]]) -> list[ResponseBatchItem]:
        """Several operations in one request message: one read barrier serves them all."""
        if not items:
            return []
        tls = self._connected()
        tls.sendall(encode_message(request(*items)))
        response = decode_message(_read_message(tls))
        assert isinstance(response, ResponseMessage)
        return list(response.batch_items)

    def locate_many(self, names: list[str]) -> list[Answer]:
        items = self.call_batch([(Operation.LOCATE, LocateRequestPayload(
            attribute_list=(_name(name),))) for name in names])
        return [_located(item) for item in items]

    def get_attributes_many(self, uids: list[str]) -> list[Answer]:
        items = self.call_batch([(Operation.GET_ATTRIBUTES, GetAttributesRequestPayload(
            unique_identifier=uid, attribute_names=("State", CHAOS_ATTRIBUTE)))
            for uid in uids])
        return [_attributes(item, uid) for item, uid in zip(items, uids, strict=True)]

    # The operations of the workload, each answering in the model's words.

    def create(self, name: str) -> Answer:
        attributes = (_enum("Cryptographic Algorithm", CryptographicAlgorithm.AES),
                      Attribute(name="Cryptographic Length",
                                value=Item(Tag.ATTRIBUTE_VALUE, ItemType.INTEGER, 256)),
                      Attribute(name="Cryptographic Usage Mask",
                                value=Item(Tag.ATTRIBUTE_VALUE, ItemType.INTEGER, 12)),
                      _name(name))
        return self._write(Operation.CREATE, CreateRequestPayload(
            object_type=ObjectType.SYMMETRIC_KEY,
            template_attribute=TemplateAttribute(attributes=attributes)))

    def register(self, name: str, material: bytes) -> Answer:
        key = SymmetricKey(key_block=KeyBlock(
            key_format_type=KeyFormatType.RAW, key_value=KeyValue(key_material=material),
            cryptographic_algorithm=CryptographicAlgorithm.AES,
            cryptographic_length=len(material) * 8))
        attributes = (Attribute(name="Cryptographic Usage Mask",
                                value=Item(Tag.ATTRIBUTE_VALUE, ItemType.INTEGER, 12)),
                      _name(name))
        return self._write(Operation.REGISTER, RegisterRequestPayload(
            object_type=ObjectType.SYMMETRIC_KEY,
            template_attribute=TemplateAttribute(attributes=attributes), object=key))

    def activate(self, uid: str) -> Answer:
        return self._write(Operation.ACTIVATE, ActivateRequestPayload(unique_identifier=uid))

    def revoke(self, uid: str) -> Answer:
        reason = RevocationReason(
            revocation_reason_code=RevocationReasonCode.CESSATION_OF_OPERATION)
        return self._write(Operation.REVOKE, RevokeRequestPayload(
            unique_identifier=uid, revocation_reason=reason))

    def destroy(self, uid: str) -> Answer:
        return self._write(Operation.DESTROY, DestroyRequestPayload(unique_identifier=uid))

    def add_attribute(self, uid: str, value: str) -> Answer:
        attribute = Attribute(name=CHAOS_ATTRIBUTE,
                              value=Item(Tag.ATTRIBUTE_VALUE, ItemType.TEXT_STRING, value))
        return self._write(Operation.ADD_ATTRIBUTE, AddAttributeRequestPayload(
            unique_identifier=uid, attribute=attribute))

    def get(self, uid: str) -> Answer:
        item = self._read(Operation.GET, GetRequestPayload(unique_identifier=uid))
        if item is None:
            return UNKNOWN
        if item.result_status != ResultStatus.SUCCESS:
            # KMIP 1.4 has no Object Destroyed: a 1.x client hears Item Not Found. The
            # workload gets only acknowledged objects, so that means destroyed (or lost,
            # which the model tells apart by what it expects).
            word = _failure_word(item)
            return Answer("destroyed" if word == "not_found" else word)
        block = item.payload.object.key_block
        return Answer("live", material=block.key_value.key_material)

    def get_attributes(self, uid: str) -> Answer:
        item = self._read(Operation.GET_ATTRIBUTES, GetAttributesRequestPayload(
            unique_identifier=uid, attribute_names=("State", CHAOS_ATTRIBUTE)))
        return UNKNOWN if item is None else _attributes(item, uid)

    def locate(self, name: str) -> Answer:
        item = self._read(Operation.LOCATE, LocateRequestPayload(attribute_list=(_name(name),)))
        return UNKNOWN if item is None else _located(item)

    def _write(self, operation: Operation, payload: object) -> Answer:
        item = self._read(operation, payload)
        if item is None:
            return UNKNOWN
        if item.result_status == ResultStatus.SUCCESS:
            return Answer("ok", uid=getattr(item.payload, "unique_identifier", None))
        word = _failure_word(item)
        return UNKNOWN if word == "unavailable" else Answer(word)

    def _read(self, operation: Operation, payload: object) -> ResponseBatchItem | None:
        try:
            item = self.call(operation, payload)
        except (OSError, EOFError):
            return None
        if item.result_reason == ResultReason.GENERAL_FAILURE:
            # "the cluster cannot commit right now": a write may still commit.
            return None
        return item


def _attributes(item: ResponseBatchItem, uid: str) -> Answer:
    if item.result_reason == ResultReason.GENERAL_FAILURE:
        return UNKNOWN
    if item.result_status != ResultStatus.SUCCESS:
        return Answer(_failure_word(item))
    states = [a.value.value for a in item.payload.attribute_list if a.name == "State"]
    values = tuple(sorted(str(a.value.value) for a in item.payload.attribute_list
                          if a.name == CHAOS_ATTRIBUTE))
    if len(states) != 1:
        return Answer(("states", tuple(states)), uid=uid)
    return Answer((_STATE_WORDS.get(State(states[0]), str(states[0])), values), uid=uid)


def _located(item: ResponseBatchItem) -> Answer:
    if item.result_reason == ResultReason.GENERAL_FAILURE:
        return UNKNOWN
    if item.result_status != ResultStatus.SUCCESS:
        return Answer(_failure_word(item))
    uids = tuple(item.payload.unique_identifiers)
    return Answer("found" if uids else "absent", uids=uids)


def _failure_word(item: ResponseBatchItem) -> str:
    # The workload speaks KMIP 1.4, where Wrong Key Lifecycle State arrives as
    # Permission Denied (kmip/service.py); its credential may do everything else.
    words = {ResultReason.WRONG_KEY_LIFECYCLE_STATE: "wrong_state",
             ResultReason.PERMISSION_DENIED: "wrong_state",
             ResultReason.ITEM_NOT_FOUND: "not_found",
             ResultReason.OBJECT_DESTROYED: "destroyed",
             ResultReason.GENERAL_FAILURE: "unavailable"}
    reason = item.result_reason
    return words.get(reason, f"error:{reason}")  # type: ignore[call-overload]


def _name(name: str) -> Attribute:
    return Attribute(name="Name", value=Item(Tag.ATTRIBUTE_VALUE, ItemType.STRUCTURE, [
        Item(Tag.NAME_VALUE, ItemType.TEXT_STRING, name),
        Item(Tag.NAME_TYPE, ItemType.ENUMERATION, int(NameType.UNINTERPRETED_TEXT_STRING))]))


def _enum(name: str, value: int) -> Attribute:
    return Attribute(name=name, value=Item(Tag.ATTRIBUTE_VALUE, ItemType.ENUMERATION, int(value)))


def _read_message(tls: ssl.SSLSocket) -> bytes:
    data = b""
    while len(data) < 8 or len(data) < 8 + int.from_bytes(data[4:8], "big"):
        chunk = tls.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection mid-response")
        data += chunk
    return data
