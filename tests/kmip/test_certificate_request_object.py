"""KMIP 2.x Certificate Request objects: registered, read back, offered to 2.x only."""

from __future__ import annotations

import asyncio
import secrets

from keyquorum.cluster.barrier import Keyring
from keyquorum.cluster.state import Command, KeyStore, Outcome
from keyquorum.kmip.frontend import ClientIdentity
from keyquorum.kmip.messages import (
    RequestBatchItem,
    RequestHeader,
    RequestMessage,
    ResponseBatchItem,
    ResponseMessage,
    decode_message,
    encode_message,
)
from keyquorum.kmip.objects import CertificateRequest
from keyquorum.kmip.payloads import (
    GetRequestPayload,
    ProtocolVersion,
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

CLIENT = ClientIdentity(address="127.0.0.1:1", certificate_serial=1, common_name="test",
                        certificate_der=b"")
REQUEST = CertificateRequest(certificate_request_type=CertificateRequestType.PKCS_10,
                             certificate_request_value=b"\x30\x82 not parsed here")


class OneNodeLog:
    """Every command commits and applies at once, sealed as on a real node."""

    def __init__(self) -> None:
        self.store = KeyStore()
        self._keyring = Keyring.generate(secrets.token_bytes(32))

    async def submit(self, command: Command) -> Outcome:
        return self.store.apply(command)

    async def read_barrier(self) -> None:
        pass

    def seal_material(self, plaintext: bytes, associated_data: bytes) -> bytes:
        return self._keyring.encrypt(plaintext, associated_data)

    def open_material(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        return self._keyring.decrypt(ciphertext, associated_data)


def run(service: KmipService, version: tuple[int, int], operation: Operation,
        payload: object) -> ResponseBatchItem:
    header = RequestHeader(protocol_version=ProtocolVersion(major=version[0], minor=version[1]),
                           batch_count=1)
    message = RequestMessage(header=header, batch_items=(
        RequestBatchItem(operation=operation, payload=payload),))
    response = decode_message(asyncio.run(service.handle(encode_message(message), CLIENT)))
    assert isinstance(response, ResponseMessage)
    return response.batch_items[0]


def test_a_2_x_client_registers_a_certificate_request_and_gets_it_back() -> None:
    service = KmipService(OneNodeLog())
    register = RegisterRequestPayload(object_type=ObjectType.CERTIFICATE_REQUEST, object=REQUEST)

    registered = run(service, (2, 1), Operation.REGISTER, register)
    uid = registered.payload.unique_identifier
    got = run(service, (2, 1), Operation.GET, GetRequestPayload(unique_identifier=uid))

    assert got.result_status == ResultStatus.SUCCESS, got.result_message
    assert got.payload.object_type == ObjectType.CERTIFICATE_REQUEST
    assert got.payload.object == REQUEST


def test_a_1_x_client_is_neither_offered_nor_allowed_one() -> None:
    service = KmipService(OneNodeLog())
    register = RegisterRequestPayload(object_type=ObjectType.CERTIFICATE_REQUEST, object=REQUEST)

    refused = run(service, (1, 4), Operation.REGISTER, register)

    assert refused.result_status == ResultStatus.OPERATION_FAILED
    assert refused.result_reason == ResultReason.INVALID_FIELD  # Invalid Object Type in 1.x
    assert ObjectType.CERTIFICATE_REQUEST not in offered(service, (1, 4))
    assert ObjectType.CERTIFICATE_REQUEST in offered(service, (2, 1))


def offered(service: KmipService, version: tuple[int, int]) -> tuple[int, ...]:
    answer = run(service, version, Operation.QUERY,
                 QueryRequestPayload(query_functions=(QueryFunction.QUERY_OBJECTS,)))
    object_types: tuple[int, ...] = answer.payload.object_types
    return object_types
