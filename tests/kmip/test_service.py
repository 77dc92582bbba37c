"""The KMIP service over an in-memory log: batches, versions, lifecycle, attributes.

The log here applies each command at once on one KeyStore, which is what a
single-node Raft log does; the replicated path is tested in tests/cluster.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kmip_inprocess import CLIENT, exchange, new_service
from kmip_requests import aes_256
from kmip_requests import attribute as attr

from keyquorum.cluster.state import DEFAULT_SCOPE
from keyquorum.kmip.attributes import Attributes
from keyquorum.kmip.messages import (
    RequestBatchItem,
    RequestHeader,
    RequestMessage,
    decode_message,
    encode_message,
)
from keyquorum.kmip.payloads import (
    ActivateRequestPayload,
    AddAttributeRequestPayload,
    CreateRequestPayload,
    DestroyRequestPayload,
    DiscoverVersionsRequestPayload,
    GetAttributeListRequestPayload,
    GetAttributesRequestPayload,
    GetRequestPayload,
    LocateRequestPayload,
    ProtocolVersion,
    QueryRequestPayload,
    RevocationReason,
    RevokeRequestPayload,
)
from keyquorum.kmip.service import KmipService
from keyquorum.kmip.tables import (
    BatchErrorContinuationOption,
    CryptographicAlgorithm,
    ObjectType,
    Operation,
    QueryFunction,
    ResultReason,
    ResultStatus,
    RevocationReasonCode,
    State,
    Tag,
)
from keyquorum.kmip.ttlv import Item, ItemType

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


def request(*items: RequestBatchItem, version: tuple[int, int] = (1, 4),
            option: BatchErrorContinuationOption | None = None) -> RequestMessage:
    header = RequestHeader(protocol_version=ProtocolVersion(major=version[0], minor=version[1]),
                           batch_count=len(items), batch_error_continuation_option=option)
    return RequestMessage(header=header, batch_items=items)


def item(operation: Operation, payload: object, batch_id: bytes | None = None) -> RequestBatchItem:
    return RequestBatchItem(operation=operation, payload=payload, unique_batch_item_id=batch_id)


def create_aes(name: str | None = None) -> CreateRequestPayload:
    if name is None:
        return aes_256()
    return aes_256(attr("Name", ItemType.STRUCTURE, [
        Item(Tag.NAME_VALUE, ItemType.TEXT_STRING, name),
        Item(Tag.NAME_TYPE, ItemType.ENUMERATION, 1),
    ]))


@pytest.fixture
def service() -> KmipService:
    return new_service()


def test_create_get_activate_revoke_destroy(service: KmipService) -> None:
    created = exchange(service, request(item(Operation.CREATE, create_aes())))
    uid = created.batch_items[0].payload.unique_identifier

    got = exchange(service, request(item(Operation.GET, GetRequestPayload(unique_identifier=uid))))
    key_block = got.batch_items[0].payload.object.key_block
    assert len(key_block.key_value.key_material) == 32
    assert key_block.cryptographic_algorithm == CryptographicAlgorithm.AES

    for operation, payload in [
        (Operation.ACTIVATE, ActivateRequestPayload(unique_identifier=uid)),
        (Operation.REVOKE, RevokeRequestPayload(
            unique_identifier=uid,
            revocation_reason=RevocationReason(
                revocation_reason_code=RevocationReasonCode.CESSATION_OF_OPERATION))),
        (Operation.DESTROY, DestroyRequestPayload(unique_identifier=uid)),
    ]:
        answer = exchange(service, request(item(operation, payload))).batch_items[0]
        assert answer.result_status == ResultStatus.SUCCESS, (operation, answer.result_message)

    state = exchange(service, request(item(Operation.GET_ATTRIBUTES, GetAttributesRequestPayload(
        unique_identifier=uid, attribute_names=("State",)))))
    assert [a.value.value for a in state.batch_items[0].payload.attribute_list] == [
        State.DESTROYED
    ]
    gone = exchange(service, request(item(Operation.GET, GetRequestPayload(unique_identifier=uid))))
    assert gone.batch_items[0].result_status == ResultStatus.OPERATION_FAILED


def test_an_active_key_cannot_be_destroyed_and_the_reason_follows_the_version(
    service: KmipService,
) -> None:
    uid = exchange(service, request(item(Operation.CREATE, create_aes()))).batch_items[0].payload\
        .unique_identifier
    activate = ActivateRequestPayload(unique_identifier=uid)
    exchange(service, request(item(Operation.ACTIVATE, activate)))

    for version, reason in [((1, 4), ResultReason.PERMISSION_DENIED),
                            ((2, 1), ResultReason.WRONG_KEY_LIFECYCLE_STATE)]:
        answer = exchange(service, request(
            item(Operation.DESTROY, DestroyRequestPayload(unique_identifier=uid)),
            version=version)).batch_items[0]
        assert answer.result_status == ResultStatus.OPERATION_FAILED
        assert answer.result_reason == reason


def test_batch_echoes_ids_and_carries_the_id_placeholder(service: KmipService) -> None:
    response = exchange(service, request(
        item(Operation.CREATE, create_aes(), b"\x01"),
        item(Operation.ADD_ATTRIBUTE, AddAttributeRequestPayload(
            attribute=attr("x-Vendor", ItemType.TEXT_STRING, "VMware, Inc.")), b"\x02"),
        item(Operation.ACTIVATE, ActivateRequestPayload(), b"\x03"),
        item(Operation.GET_ATTRIBUTES, GetAttributesRequestPayload(
            attribute_names=("x-Vendor", "State")), b"\x04"),
    ))

    assert [i.unique_batch_item_id for i in response.batch_items] == [b"\x01", b"\x02", b"\x03",
                                                                      b"\x04"]
    assert all(i.result_status == ResultStatus.SUCCESS for i in response.batch_items)
    values = {a.name: a.value.value for a in response.batch_items[3].payload.attribute_list}
    assert values == {"x-Vendor": "VMware, Inc.", "State": State.ACTIVE}


def test_stop_ends_the_batch_at_the_first_failure_and_continue_does_not(
    service: KmipService,
) -> None:
    missing = GetRequestPayload(unique_identifier="no-such-key")
    items = (item(Operation.GET, missing, b"a"), item(Operation.CREATE, create_aes(), b"b"))

    stopped = exchange(service, request(*items))
    continued = exchange(service, request(*items, option=BatchErrorContinuationOption.CONTINUE))

    assert [i.unique_batch_item_id for i in stopped.batch_items] == [b"a"]
    assert [i.result_status for i in continued.batch_items] == [
        ResultStatus.OPERATION_FAILED, ResultStatus.SUCCESS]


def test_undo_rolls_back_the_writes_before_the_failed_item(service: KmipService) -> None:
    existing = exchange(service, request(item(Operation.CREATE, create_aes()))).batch_items[0]\
        .payload.unique_identifier
    response = exchange(service, request(
        item(Operation.CREATE, create_aes()),
        item(Operation.ACTIVATE, ActivateRequestPayload(unique_identifier=existing)),
        item(Operation.DESTROY, DestroyRequestPayload(unique_identifier=existing)),
        option=BatchErrorContinuationOption.UNDO))

    statuses = [i.result_status for i in response.batch_items]
    assert statuses == [ResultStatus.OPERATION_UNDONE, ResultStatus.OPERATION_UNDONE,
                        ResultStatus.OPERATION_FAILED]
    # The created key is gone again and the activated one is Pre-Active again.
    store = service._backend.store  # type: ignore[attr-defined]
    assert len(store) == 1
    assert store.get(DEFAULT_SCOPE, existing).state == State.PRE_ACTIVE


def test_locate_by_name_finds_the_key_in_either_version(service: KmipService) -> None:
    uid = exchange(service, request(item(Operation.CREATE, create_aes("vm-42")))).batch_items[0]\
        .payload.unique_identifier
    exchange(service, request(item(Operation.CREATE, create_aes("vm-43"))))
    name = [Item(Tag.NAME_VALUE, ItemType.TEXT_STRING, "vm-42"),
            Item(Tag.NAME_TYPE, ItemType.ENUMERATION, 1)]

    v1 = exchange(service, request(item(Operation.LOCATE, LocateRequestPayload(
        attribute_list=(attr("Name", ItemType.STRUCTURE, name),)))))
    v2 = exchange(service, request(item(Operation.LOCATE, LocateRequestPayload(
        maximum_items=10,
        attributes=Attributes(items=(Item(Tag.NAME, ItemType.STRUCTURE, name),)))),
        version=(2, 1)))

    assert v1.batch_items[0].payload.unique_identifiers == (uid,)
    assert v2.batch_items[0].payload.unique_identifiers == (uid,)
    # The total comes with a page only: an unpaged answer holds every identifier.
    assert v1.batch_items[0].payload.located_items is None
    assert v2.batch_items[0].payload.located_items == 1


def test_a_1x_client_never_receives_a_2x_attribute(service: KmipService) -> None:
    uid = exchange(service, request(item(Operation.CREATE, create_aes()))).batch_items[0].payload\
        .unique_identifier

    names_10 = exchange(service, request(item(Operation.GET_ATTRIBUTE_LIST,
                                         GetAttributeListRequestPayload(unique_identifier=uid)),
                                    version=(1, 0))).batch_items[0].payload.attribute_names
    refs_21 = exchange(service, request(item(Operation.GET_ATTRIBUTE_LIST,
                                        GetAttributeListRequestPayload(unique_identifier=uid)),
                                   version=(2, 1))).batch_items[0].payload.attribute_references

    assert "State" in names_10 and "Cryptographic Usage Mask" in names_10
    assert Tag.STATE in refs_21


def test_discover_versions_and_query(service: KmipService) -> None:
    offered = (ProtocolVersion(major=1, minor=1), ProtocolVersion(major=3, minor=0))
    response = exchange(service, request(
        item(Operation.DISCOVER_VERSIONS,
             DiscoverVersionsRequestPayload(protocol_versions=offered)),
        item(Operation.QUERY, QueryRequestPayload(query_functions=(
            QueryFunction.QUERY_OPERATIONS, QueryFunction.QUERY_OBJECTS)))))

    assert response.batch_items[0].payload.protocol_versions == (offered[0],)
    assert Operation.LOCATE in response.batch_items[1].payload.operations
    assert ObjectType.SYMMETRIC_KEY in response.batch_items[1].payload.object_types


def test_garbage_and_unknown_versions_get_errors_not_exceptions(service: KmipService) -> None:
    not_ttlv = bytes.fromhex("4200780100000008") + b"\xff" * 8
    garbage = decode_message(asyncio.run(service.handle(not_ttlv, CLIENT)))
    future = exchange(service, request(item(Operation.QUERY, QueryRequestPayload()),
                                       version=(3, 0)))

    assert garbage.batch_items[0].result_reason == ResultReason.INVALID_MESSAGE
    assert future.batch_items[0].result_reason == ResultReason.UNSUPPORTED_PROTOCOL_VERSION


def test_maximum_response_size_is_honoured(service: KmipService) -> None:
    message = request(item(Operation.QUERY, QueryRequestPayload(query_functions=(
        QueryFunction.QUERY_OPERATIONS,))))
    small = RequestMessage(header=RequestHeader(
        protocol_version=message.header.protocol_version, maximum_response_size=64,
        batch_count=1), batch_items=message.batch_items)

    answer = exchange(service, small).batch_items[0]

    assert answer.result_reason == ResultReason.RESPONSE_TOO_LARGE


def vcenter_requests() -> list[tuple[str, bytes]]:
    lines = (SHARED / "interop" / "vcenter-7.0.3-requests.txt").read_text().splitlines()
    return [(op, bytes.fromhex(h)) for op, h in (ln.split() for ln in lines if ln[:1] != "#")]


def substitute_ids(data: bytes, ids: dict[str, str]) -> bytes:
    """Replace the capture's identifiers "1" and "2" with the ones this server made."""
    message = decode_message(data)
    assert isinstance(message, RequestMessage)
    items = []
    for batch_item in message.batch_items:
        payload = batch_item.payload
        uid = getattr(payload, "unique_identifier", None)
        if isinstance(uid, str) and uid in ids:
            payload = type(payload)(**{**payload.__dict__, "unique_identifier": ids[uid]})
        items.append(RequestBatchItem(operation=batch_item.operation, payload=payload,
                                      unique_batch_item_id=batch_item.unique_batch_item_id))
    return encode_message(RequestMessage(header=message.header, batch_items=tuple(items)))


def test_the_vcenter_conversation_succeeds_in_process(service: KmipService) -> None:
    ids: dict[str, str] = {}
    for operation, data in vcenter_requests():
        answer = decode_message(asyncio.run(service.handle(substitute_ids(data, ids), CLIENT)))
        for answered in answer.batch_items:
            assert answered.result_status == ResultStatus.SUCCESS, (operation,
                                                                    answered.result_message)
        if operation == "Create":
            ids[str(len(ids) + 1)] = answer.batch_items[0].payload.unique_identifier
        assert answer.header.time_stamp <= datetime.now(UTC)

    assert len(ids) == 2
