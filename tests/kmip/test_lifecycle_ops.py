"""RNG Seed, Quantum Safe, Templates, Archive and Recover, leases and usage allocations,
Set and Adjust Attribute, Import and Export, PKCS#11 and Set Endpoint Role, through
KmipService.

The log here applies each command at once on one KeyStore, as a single-node Raft log
does; tests/kmip/test_conformance_cluster.py runs the OASIS cases through a cluster.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from kmip_inprocess import call, new_service
from kmip_requests import attribute as attr

from keyquorum.kmip.attributes import Attribute, Attributes, Name, NewAttribute, TemplateAttribute
from keyquorum.kmip.objects import CryptographicParameters, Template
from keyquorum.kmip.operations import crypto_ops, pkcs11_ops
from keyquorum.kmip.operations.object_ops import LEASE_SECONDS
from keyquorum.kmip.payloads import (
    ActivateRequestPayload,
    AddAttributeRequestPayload,
    AdjustAttributeRequestPayload,
    ArchiveRequestPayload,
    CheckRequestPayload,
    CreateRequestPayload,
    DestroyRequestPayload,
    EncryptRequestPayload,
    ExportRequestPayload,
    GetAttributesRequestPayload,
    GetRequestPayload,
    GetUsageAllocationRequestPayload,
    ImportRequestPayload,
    LocateRequestPayload,
    ObtainLeaseRequestPayload,
    PKCS11RequestPayload,
    QueryRequestPayload,
    RecoverRequestPayload,
    RegisterRequestPayload,
    RNGSeedRequestPayload,
    SetAttributeRequestPayload,
    SetEndpointRoleRequestPayload,
)
from keyquorum.kmip.service import KmipService
from keyquorum.kmip.tables import (
    AdjustmentType,
    BlockCipherMode,
    CryptographicAlgorithm,
    EndpointRole,
    ObjectType,
    Operation,
    PKCS11Function,
    PKCS11ReturnCode,
    QueryFunction,
    ResultReason,
    ResultStatus,
    StorageStatusMask,
    Tag,
)
from keyquorum.kmip.ttlv import Item, ItemType

ECB = CryptographicParameters(block_cipher_mode=BlockCipherMode.ECB)


@pytest.fixture
def service() -> KmipService:
    return new_service()


def ok(service: KmipService, operation: Operation, payload: object,
       version: tuple[int, int] = (1, 4)) -> Any:
    answer = call(service, operation, payload, version)
    assert answer.result_status == ResultStatus.SUCCESS, answer.result_message
    return answer.payload


def refused(service: KmipService, operation: Operation, payload: object,
            version: tuple[int, int] = (1, 4)) -> ResultReason:
    answer = call(service, operation, payload, version)
    assert answer.result_status == ResultStatus.OPERATION_FAILED
    return ResultReason(answer.result_reason)


def aes(length: int, *extra: Attribute) -> CreateRequestPayload:
    attributes = (
        attr("Cryptographic Algorithm", ItemType.ENUMERATION, CryptographicAlgorithm.AES),
        attr("Cryptographic Length", ItemType.INTEGER, length),
        attr("Cryptographic Usage Mask", ItemType.INTEGER, 12),
        *extra,
    )
    return CreateRequestPayload(object_type=ObjectType.SYMMETRIC_KEY,
                                template_attribute=TemplateAttribute(attributes=attributes))


def aes_v2(length: int, *extra: Item) -> CreateRequestPayload:
    items = (
        Item(Tag.CRYPTOGRAPHIC_ALGORITHM, ItemType.ENUMERATION, int(CryptographicAlgorithm.AES)),
        Item(Tag.CRYPTOGRAPHIC_LENGTH, ItemType.INTEGER, length),
        Item(Tag.CRYPTOGRAPHIC_USAGE_MASK, ItemType.INTEGER, 12),
        *extra,
    )
    return CreateRequestPayload(object_type=ObjectType.SYMMETRIC_KEY,
                                attributes=Attributes(items=items))


# RNG Seed.


def test_rng_seed_mixes_the_seed_into_the_kernel_pool(service: KmipService) -> None:
    answer = ok(service, Operation.RNG_SEED, RNGSeedRequestPayload(data=bytes(range(32))))

    assert answer.data_length == 32


def test_rng_seed_writes_what_it_accepts_and_no_more(
    service: KmipService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = tmp_path / "pool"
    monkeypatch.setattr(crypto_ops, "KERNEL_POOL", pool)
    seed = secrets.token_bytes(crypto_ops.MAX_SEED_BYTES + 10)

    answer = ok(service, Operation.RNG_SEED, RNGSeedRequestPayload(data=seed))

    assert answer.data_length == crypto_ops.MAX_SEED_BYTES
    assert pool.read_bytes() == seed[:crypto_ops.MAX_SEED_BYTES]


def test_rng_seed_says_nothing_was_used_when_the_pool_cannot_be_written(
    service: KmipService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(crypto_ops, "KERNEL_POOL", tmp_path / "missing" / "pool")

    answer = ok(service, Operation.RNG_SEED, RNGSeedRequestPayload(data=b"seed"))

    assert answer.data_length == 0


# Quantum Safe.


def test_a_key_asked_to_be_quantum_safe_is_refused_when_it_is_not(service: KmipService) -> None:
    quantum_safe = Item(Tag.QUANTUM_SAFE, ItemType.BOOLEAN, True)

    assert refused(service, Operation.CREATE, aes_v2(128, quantum_safe),
                   (2, 1)) == ResultReason.GENERAL_FAILURE
    created = ok(service, Operation.CREATE, aes_v2(256, quantum_safe), (2, 1))
    assert created.unique_identifier
    # Without the request, a 128-bit key is made as always.
    assert ok(service, Operation.CREATE, aes_v2(128), (2, 1)).unique_identifier


# Templates (KMIP 1.x).


def name(value: str) -> Attribute:
    return attr("Name", ItemType.STRUCTURE, [
        Item(Tag.NAME_VALUE, ItemType.TEXT_STRING, value),
        Item(Tag.NAME_TYPE, ItemType.ENUMERATION, 1),
    ])


def register_template(service: KmipService, template_name: str, *content: Attribute) -> str:
    payload = RegisterRequestPayload(
        object_type=ObjectType.TEMPLATE,
        template_attribute=TemplateAttribute(attributes=(name(template_name),)),
        object=Template(attributes=content),
    )
    return str(ok(service, Operation.REGISTER, payload).unique_identifier)


def create_from(template_name: str, *own: Attribute) -> CreateRequestPayload:
    return CreateRequestPayload(object_type=ObjectType.SYMMETRIC_KEY,
                                template_attribute=TemplateAttribute(
                                    names=(Name(name_value=template_name, name_type=1),),
                                    attributes=own))


def attribute_of(service: KmipService, uid: str, attribute: str) -> object:
    answer = ok(service, Operation.GET_ATTRIBUTES, GetAttributesRequestPayload(
        unique_identifier=uid, attribute_names=(attribute,)))
    return answer.attribute_list[0].value.value if answer.attribute_list else None


def test_a_template_is_registered_found_read_and_destroyed(service: KmipService) -> None:
    content = (attr("Cryptographic Algorithm", ItemType.ENUMERATION, CryptographicAlgorithm.AES),
               attr("Cryptographic Length", ItemType.INTEGER, 128))
    uid = register_template(service, "aes-128", *content)

    found = ok(service, Operation.LOCATE, LocateRequestPayload(attribute_list=(
        attr("Object Type", ItemType.ENUMERATION, ObjectType.TEMPLATE),)))
    assert found.unique_identifiers == (uid,)
    got = ok(service, Operation.GET, GetRequestPayload(unique_identifier=uid))
    assert got.object_type == ObjectType.TEMPLATE
    assert got.object.attributes == content

    ok(service, Operation.DESTROY, DestroyRequestPayload(unique_identifier=uid))
    assert refused(service, Operation.CREATE, create_from("aes-128")) == \
        ResultReason.ITEM_NOT_FOUND


def test_create_takes_a_templates_attributes_and_its_own_win(service: KmipService) -> None:
    register_template(service, "aes", attr(
        "Cryptographic Algorithm", ItemType.ENUMERATION, CryptographicAlgorithm.AES),
        attr("Cryptographic Length", ItemType.INTEGER, 128),
        attr("Cryptographic Usage Mask", ItemType.INTEGER, 12))

    uid = ok(service, Operation.CREATE, create_from(
        "aes", attr("Cryptographic Length", ItemType.INTEGER, 256))).unique_identifier

    assert attribute_of(service, uid, "Cryptographic Length") == 256
    assert attribute_of(service, uid, "Cryptographic Usage Mask") == 12
    key = ok(service, Operation.GET, GetRequestPayload(unique_identifier=uid)).object
    assert len(key.key_block.key_value.key_material) == 32


def test_templates_are_refused_to_kmip_2_clients(service: KmipService) -> None:
    payload = RegisterRequestPayload(
        object_type=ObjectType.TEMPLATE,
        attributes=Attributes(items=()),
        object=Template(attributes=()),
    )

    assert refused(service, Operation.REGISTER, payload, (2, 1)) == \
        ResultReason.INVALID_OBJECT_TYPE


def test_query_offers_templates_to_1x_clients_only(service: KmipService) -> None:
    ask = QueryRequestPayload(query_functions=(QueryFunction.QUERY_OBJECTS,))

    assert ObjectType.TEMPLATE in ok(service, Operation.QUERY, ask).object_types
    assert ObjectType.TEMPLATE not in ok(service, Operation.QUERY, ask, (2, 1)).object_types


# Archive and Recover.


def active_key(service: KmipService, *extra: Attribute) -> str:
    uid = str(ok(service, Operation.CREATE, aes(256, *extra)).unique_identifier)
    ok(service, Operation.ACTIVATE, ActivateRequestPayload(unique_identifier=uid))
    return uid


def test_an_archived_key_is_not_served_or_used_until_recovered(service: KmipService) -> None:
    uid = active_key(service)
    before = ok(service, Operation.GET, GetRequestPayload(unique_identifier=uid)).object

    ok(service, Operation.ARCHIVE, ArchiveRequestPayload(unique_identifier=uid))

    assert refused(service, Operation.GET, GetRequestPayload(unique_identifier=uid)) == \
        ResultReason.OBJECT_ARCHIVED
    assert refused(service, Operation.ENCRYPT, EncryptRequestPayload(
        unique_identifier=uid, data=bytes(16), cryptographic_parameters=ECB)) == \
        ResultReason.OBJECT_ARCHIVED
    assert refused(service, Operation.ARCHIVE, ArchiveRequestPayload(unique_identifier=uid)) == \
        ResultReason.OBJECT_ARCHIVED
    # Its attributes stay readable; it carries its Archive Date.
    assert isinstance(attribute_of(service, uid, "Archive Date"), int)

    ok(service, Operation.RECOVER, RecoverRequestPayload(unique_identifier=uid))

    after = ok(service, Operation.GET, GetRequestPayload(unique_identifier=uid)).object
    assert after.key_block.key_value.key_material == before.key_block.key_value.key_material
    assert attribute_of(service, uid, "Archive Date") is None


def test_locate_finds_archived_objects_only_when_asked(service: KmipService) -> None:
    online = active_key(service)
    archived = active_key(service)
    ok(service, Operation.ARCHIVE, ArchiveRequestPayload(unique_identifier=archived))

    default = ok(service, Operation.LOCATE, LocateRequestPayload())
    only_archived = ok(service, Operation.LOCATE, LocateRequestPayload(
        storage_status_mask=StorageStatusMask.ARCHIVAL_STORAGE))
    both = ok(service, Operation.LOCATE, LocateRequestPayload(
        storage_status_mask=StorageStatusMask.ARCHIVAL_STORAGE
        | StorageStatusMask.ON_LINE_STORAGE))

    assert default.unique_identifiers == (online,)
    assert only_archived.unique_identifiers == (archived,)
    assert set(both.unique_identifiers) == {online, archived}

    # KMIP 2.x adds destroyed objects, found only by that bit.
    destroyed = str(ok(service, Operation.CREATE, aes(256)).unique_identifier)
    ok(service, Operation.DESTROY, DestroyRequestPayload(unique_identifier=destroyed))
    only_destroyed = ok(service, Operation.LOCATE, LocateRequestPayload(
        storage_status_mask=StorageStatusMask.DESTROYED_STORAGE), (2, 1))
    assert only_destroyed.unique_identifiers == (destroyed,)
    assert destroyed not in ok(service, Operation.LOCATE, LocateRequestPayload()).unique_identifiers


def test_archive_date_is_the_servers_to_set(service: KmipService) -> None:
    uid = active_key(service)

    # KMIP 1.x has no Attribute Read Only reason: it says Permission Denied.
    assert refused(service, Operation.ADD_ATTRIBUTE, AddAttributeRequestPayload(
        unique_identifier=uid, attribute=attr("Archive Date", ItemType.DATE_TIME, 1))) == \
        ResultReason.PERMISSION_DENIED


# Obtain Lease and Get Usage Allocation.


def usage_limits(total: int) -> Attribute:
    return attr("Usage Limits", ItemType.STRUCTURE, [
        Item(Tag.USAGE_LIMITS_TOTAL, ItemType.LONG_INTEGER, total),
        Item(Tag.USAGE_LIMITS_COUNT, ItemType.LONG_INTEGER, total),
        Item(Tag.USAGE_LIMITS_UNIT, ItemType.ENUMERATION, 2),
    ])


def test_obtain_lease_answers_the_objects_lease_time(service: KmipService) -> None:
    default = active_key(service)
    short = active_key(service, attr("Lease Time", ItemType.INTERVAL, 60))
    pre_active = str(ok(service, Operation.CREATE, aes(128)).unique_identifier)

    lease = ok(service, Operation.OBTAIN_LEASE,
               ObtainLeaseRequestPayload(unique_identifier=default))
    assert lease.lease_time == LEASE_SECONDS
    assert lease.last_change_date is not None
    assert ok(service, Operation.OBTAIN_LEASE, ObtainLeaseRequestPayload(
        unique_identifier=short)).lease_time == 60
    assert refused(service, Operation.OBTAIN_LEASE, ObtainLeaseRequestPayload(
        unique_identifier=pre_active), (2, 1)) == ResultReason.WRONG_KEY_LIFECYCLE_STATE


def test_a_usage_allocation_is_spent_from_the_usage_limits(service: KmipService) -> None:
    uid = active_key(service, usage_limits(10))
    unlimited = active_key(service)

    ok(service, Operation.GET_USAGE_ALLOCATION, GetUsageAllocationRequestPayload(
        unique_identifier=uid, usage_limits_count=7))

    limits = attribute_of(service, uid, "Usage Limits")
    assert isinstance(limits, list)
    assert [item.value for item in limits if item.tag == Tag.USAGE_LIMITS_COUNT] == [3]
    assert refused(service, Operation.GET_USAGE_ALLOCATION, GetUsageAllocationRequestPayload(
        unique_identifier=uid, usage_limits_count=4)) == ResultReason.PERMISSION_DENIED
    assert refused(service, Operation.GET_USAGE_ALLOCATION, GetUsageAllocationRequestPayload(
        unique_identifier=unlimited, usage_limits_count=1)) == ResultReason.ITEM_NOT_FOUND


# Set Attribute and Adjust Attribute (KMIP 2.x).


def v2_attribute(tag: int, item_type: ItemType, value: object) -> NewAttribute:
    return NewAttribute(items=(Item(tag, item_type, value),))


def v2_value(service: KmipService, uid: str, tag: int) -> object:
    answer = ok(service, Operation.GET_ATTRIBUTES, GetAttributesRequestPayload(
        unique_identifier=uid, attribute_references=(tag,)), (2, 1))
    items = answer.attributes.items if answer.attributes else ()
    return items[0].value if items else None


def test_set_attribute_adds_then_replaces_a_single_value(service: KmipService) -> None:
    uid = str(ok(service, Operation.CREATE, aes_v2(256), (2, 1)).unique_identifier)

    for text in ("first", "second"):
        ok(service, Operation.SET_ATTRIBUTE, SetAttributeRequestPayload(
            unique_identifier=uid,
            new_attribute=v2_attribute(Tag.DESCRIPTION, ItemType.TEXT_STRING, text)), (2, 1))
        assert v2_value(service, uid, Tag.DESCRIPTION) == text

    assert refused(service, Operation.SET_ATTRIBUTE, SetAttributeRequestPayload(
        unique_identifier=uid,
        new_attribute=v2_attribute(Tag.STATE, ItemType.ENUMERATION, 2)), (2, 1)) == \
        ResultReason.ATTRIBUTE_READ_ONLY


def test_adjust_attribute_increments_decrements_and_keeps_the_range(
    service: KmipService
) -> None:
    uid = str(ok(service, Operation.CREATE, aes_v2(
        256, Item(Tag.LEASE_TIME, ItemType.INTERVAL, 100)), (2, 1)).unique_identifier)

    def adjust(kind: AdjustmentType, amount: int | None) -> AdjustAttributeRequestPayload:
        value = None if amount is None else Item(Tag.ADJUSTMENT_VALUE, ItemType.INTERVAL, amount)
        return AdjustAttributeRequestPayload(unique_identifier=uid,
                                             attribute_reference=Tag.LEASE_TIME,
                                             adjustment_type=kind, adjustment_value=value)

    ok(service, Operation.ADJUST_ATTRIBUTE, adjust(AdjustmentType.INCREMENT, 20), (2, 1))
    assert v2_value(service, uid, Tag.LEASE_TIME) == 120
    ok(service, Operation.ADJUST_ATTRIBUTE, adjust(AdjustmentType.DECREMENT, 100), (2, 1))
    assert v2_value(service, uid, Tag.LEASE_TIME) == 20

    # An Interval cannot go below zero; Negate would make it negative.
    assert refused(service, Operation.ADJUST_ATTRIBUTE,
                   adjust(AdjustmentType.DECREMENT, 21), (2, 1)) == ResultReason.NUMERIC_RANGE
    assert refused(service, Operation.ADJUST_ATTRIBUTE,
                   adjust(AdjustmentType.NEGATE, None), (2, 1)) == ResultReason.NUMERIC_RANGE
    assert v2_value(service, uid, Tag.LEASE_TIME) == 20
    # A text attribute is no number.
    assert refused(service, Operation.ADJUST_ATTRIBUTE, AdjustAttributeRequestPayload(
        unique_identifier=uid, attribute_reference=Tag.OBJECT_TYPE,
        adjustment_type=AdjustmentType.NEGATE), (2, 1)) == ResultReason.ATTRIBUTE_READ_ONLY


# Import and Export (KMIP 2.x).


def test_export_answers_the_object_with_its_attributes(service: KmipService) -> None:
    uid = str(ok(service, Operation.CREATE, aes_v2(256), (2, 1)).unique_identifier)

    exported = ok(service, Operation.EXPORT, ExportRequestPayload(unique_identifier=uid), (2, 1))

    got = ok(service, Operation.GET, GetRequestPayload(unique_identifier=uid), (2, 1))
    assert exported.object == got.object
    tags = [item.tag for item in exported.attributes.items]
    assert Tag.UNIQUE_IDENTIFIER in tags and Tag.INITIAL_DATE in tags
    assert Tag.STATE in tags


def test_a_destroyed_key_is_exported_without_its_key(service: KmipService) -> None:
    uid = str(ok(service, Operation.CREATE, aes_v2(256), (2, 1)).unique_identifier)
    ok(service, Operation.DESTROY, DestroyRequestPayload(unique_identifier=uid), (2, 1))

    exported = ok(service, Operation.EXPORT, ExportRequestPayload(unique_identifier=uid), (2, 1))

    block = exported.object.key_block
    assert block.key_value is None
    assert block.cryptographic_length == 256


def test_import_keeps_the_clients_identifier_and_attributes(service: KmipService) -> None:
    source = active_key(service)
    exported = ok(service, Operation.EXPORT, ExportRequestPayload(unique_identifier=source),
                  (2, 1))

    def imported(replace_existing: bool | None) -> ImportRequestPayload:
        return ImportRequestPayload(unique_identifier="moved-key",
                                    object_type=ObjectType.SYMMETRIC_KEY,
                                    replace_existing=replace_existing,
                                    attributes=exported.attributes, object=exported.object)

    answer = ok(service, Operation.IMPORT, imported(None), (2, 1))

    assert answer.unique_identifier == "moved-key"
    moved = ok(service, Operation.GET, GetRequestPayload(unique_identifier="moved-key"), (2, 1))
    assert moved.object == exported.object
    for tag in (Tag.STATE, Tag.INITIAL_DATE, Tag.ACTIVATION_DATE):
        assert v2_value(service, "moved-key", tag) == v2_value(service, source, tag)

    # Once there, the identifier is replaced only when the client says so.
    assert refused(service, Operation.IMPORT, imported(False), (2, 1)) == \
        ResultReason.OBJECT_ALREADY_EXISTS
    ok(service, Operation.IMPORT, imported(True), (2, 1))


# PKCS#11 over KMIP.


def pkcs11_call(service: KmipService, function: PKCS11Function,
                correlation: bytes | None = None) -> Any:
    return ok(service, Operation.PKCS_11, PKCS11RequestPayload(
        pkcs11_function=function, correlation_value=correlation), (2, 1))


def test_pkcs11_library_is_initialized_described_and_finalized(service: KmipService) -> None:
    assert pkcs11_call(service, PKCS11Function.C_GETINFO).pkcs11_return_code == \
        PKCS11ReturnCode.CRYPTOKI_NOT_INITIALIZED
    opened = pkcs11_call(service, PKCS11Function.C_INITIALIZE)
    assert opened.pkcs11_return_code == PKCS11ReturnCode.OK
    context = opened.correlation_value

    info = pkcs11_call(service, PKCS11Function.C_GETINFO, context)
    assert info.pkcs11_return_code == PKCS11ReturnCode.OK
    assert info.pkcs11_output_parameters == pkcs11_ops.library_info()
    assert info.pkcs11_output_parameters[2:34].rstrip() == b"keyquorum"
    assert pkcs11_call(service, PKCS11Function.C_GETSLOTLIST, context).pkcs11_return_code == \
        PKCS11ReturnCode.FUNCTION_NOT_SUPPORTED

    assert pkcs11_call(service, PKCS11Function.C_FINALIZE, context).pkcs11_return_code == \
        PKCS11ReturnCode.OK
    assert pkcs11_call(service, PKCS11Function.C_GETINFO, context).pkcs11_return_code == \
        PKCS11ReturnCode.CRYPTOKI_NOT_INITIALIZED


# Set Endpoint Role (KMIP 2.x).


def test_the_server_stays_the_server_and_refuses_to_become_a_client(
    service: KmipService
) -> None:
    kept = ok(service, Operation.SET_ENDPOINT_ROLE,
              SetEndpointRoleRequestPayload(endpoint_role=EndpointRole.SERVER), (2, 1))

    assert kept.endpoint_role == EndpointRole.SERVER
    assert refused(service, Operation.SET_ENDPOINT_ROLE,
                   SetEndpointRoleRequestPayload(endpoint_role=EndpointRole.CLIENT),
                   (2, 1)) == ResultReason.FEATURE_NOT_SUPPORTED


def test_check_weighs_usage_left_and_the_lease_without_spending(service: KmipService) -> None:
    uid = active_key(service, usage_limits(5), attr("Lease Time", ItemType.INTERVAL, 60))

    def check(count: int | None = None, lease: int | None = None) -> CheckRequestPayload:
        return CheckRequestPayload(unique_identifier=uid, usage_limits_count=count,
                                   lease_time=lease)

    ok(service, Operation.CHECK, check(count=5))
    ok(service, Operation.CHECK, check(count=5))
    ok(service, Operation.CHECK, check(lease=60))
    assert refused(service, Operation.CHECK, check(count=6)) == ResultReason.PERMISSION_DENIED
    assert refused(service, Operation.CHECK, check(lease=61)) == ResultReason.PERMISSION_DENIED

    ok(service, Operation.GET_USAGE_ALLOCATION, GetUsageAllocationRequestPayload(
        unique_identifier=uid, usage_limits_count=2))
    assert refused(service, Operation.CHECK, check(count=4)) == ResultReason.PERMISSION_DENIED
