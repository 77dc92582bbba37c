"""KMIP 2.x Certificate Request objects: registered, read back, offered to 2.x only."""

from __future__ import annotations

from kmip_inprocess import call, new_service

from keyquorum.kmip.objects import CertificateRequest
from keyquorum.kmip.payloads import (
    GetRequestPayload,
    QueryRequestPayload,
    RegisterRequestPayload,
)
from keyquorum.kmip.service import KmipService
from keyquorum.kmip.tables import (
    CertificateRequestType,
    ObjectType,
    Operation,
    QueryFunction,
    ResultReason,
    ResultStatus,
)

REQUEST = CertificateRequest(certificate_request_type=CertificateRequestType.PKCS_10,
                             certificate_request_value=b"\x30\x82 not parsed here")


def test_a_2_x_client_registers_a_certificate_request_and_gets_it_back() -> None:
    service = new_service()
    register = RegisterRequestPayload(object_type=ObjectType.CERTIFICATE_REQUEST, object=REQUEST)

    registered = call(service, Operation.REGISTER, register, (2, 1))
    uid = registered.payload.unique_identifier
    got = call(service, Operation.GET, GetRequestPayload(unique_identifier=uid), (2, 1))

    assert got.result_status == ResultStatus.SUCCESS, got.result_message
    assert got.payload.object_type == ObjectType.CERTIFICATE_REQUEST
    assert got.payload.object == REQUEST


def test_a_1_x_client_is_neither_offered_nor_allowed_one() -> None:
    service = new_service()
    register = RegisterRequestPayload(object_type=ObjectType.CERTIFICATE_REQUEST, object=REQUEST)

    refused = call(service, Operation.REGISTER, register, (1, 4))

    assert refused.result_status == ResultStatus.OPERATION_FAILED
    assert refused.result_reason == ResultReason.INVALID_FIELD  # Invalid Object Type in 1.x
    assert ObjectType.CERTIFICATE_REQUEST not in offered(service, (1, 4))
    assert ObjectType.CERTIFICATE_REQUEST in offered(service, (2, 1))


def offered(service: KmipService, version: tuple[int, int]) -> tuple[int, ...]:
    answer = call(service, Operation.QUERY,
                  QueryRequestPayload(query_functions=(QueryFunction.QUERY_OBJECTS,)), version)
    object_types: tuple[int, ...] = answer.payload.object_types
    return object_types
