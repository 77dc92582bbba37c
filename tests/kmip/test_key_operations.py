"""Key wrapping, Re-key, Derive Key, Certify and Validate through the KMIP service.

Every request goes through the bytes, as a client sends it, to a service over a
one-node in-memory log (each command applies at once on one KeyStore, sealed by a
real barrier keyring); the replicated path is tested with PyKMIP in
tests/cluster/test_key_operations_cluster.py.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from keyquorum.cluster.barrier import Keyring
from keyquorum.cluster.state import Command, KeyStore, Outcome
from keyquorum.kmip.attributes import Attribute, TemplateAttribute
from keyquorum.kmip.conformance import RunMemory, run_case
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
from keyquorum.kmip.objects import (
    CryptographicParameters,
    EncryptionKeyInformation,
    KeyBlock,
    KeyValue,
    KeyWrappingData,
    KeyWrappingSpecification,
    SymmetricKey,
)
from keyquorum.kmip.payloads import (
    ActivateRequestPayload,
    CreateKeyPairRequestPayload,
    CreateRequestPayload,
    GetRequestPayload,
    ProtocolVersion,
    RegisterRequestPayload,
)
from keyquorum.kmip.service import KmipService
from keyquorum.kmip.tables import (
    BlockCipherMode,
    CryptographicAlgorithm,
    CryptographicUsageMask,
    EncodingOption,
    KeyFormatType,
    ObjectType,
    Operation,
    ResultReason,
    ResultStatus,
    Tag,
    WrappingMethod,
)
from keyquorum.kmip.ttlv import Item, ItemType, decode_item

CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"
CLIENT = ClientIdentity(address="127.0.0.1:1", certificate_serial=1, common_name="test",
                        certificate_der=b"")


class InMemoryLog:
    """A one-node log: every command commits and applies at once."""

    def __init__(self) -> None:
        self.store = KeyStore()
        self.keyring = Keyring.generate(secrets.token_bytes(32))

    async def submit(self, command: Command) -> Outcome:
        return self.store.apply(command)

    async def read_barrier(self) -> None:
        pass

    def seal_material(self, plaintext: bytes, associated_data: bytes) -> bytes:
        return self.keyring.encrypt(plaintext, associated_data)

    def open_material(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        return self.keyring.decrypt(ciphertext, associated_data)


@pytest.fixture
def service() -> KmipService:
    return KmipService(InMemoryLog())


def send(service: KmipService, *payloads: tuple[Operation, object],
         version: tuple[int, int] = (1, 4)) -> list[ResponseBatchItem]:
    header = RequestHeader(protocol_version=ProtocolVersion(major=version[0], minor=version[1]),
                           batch_count=len(payloads))
    message = RequestMessage(header=header, batch_items=tuple(
        RequestBatchItem(operation=operation, payload=payload)
        for operation, payload in payloads))
    answer = decode_message(asyncio.run(service.handle(encode_message(message), CLIENT)))
    assert isinstance(answer, ResponseMessage)
    return list(answer.batch_items)


def one(service: KmipService, operation: Operation, payload: object,
        version: tuple[int, int] = (1, 4)) -> Any:
    answer = send(service, (operation, payload), version=version)[0]
    assert answer.result_status == ResultStatus.SUCCESS, answer.result_message
    return answer.payload


def refused(service: KmipService, operation: Operation, payload: object) -> ResponseBatchItem:
    answer = send(service, (operation, payload))[0]
    assert answer.result_status == ResultStatus.OPERATION_FAILED
    return answer


def attr(name: str, item_type: ItemType, value: object) -> Attribute:
    return Attribute(name=name, value=Item(Tag.ATTRIBUTE_VALUE, item_type, value))


def template(*attributes: Attribute) -> TemplateAttribute:
    return TemplateAttribute(attributes=attributes)


def aes_key(service: KmipService, usage: int, *extra: Attribute) -> str:
    payload = CreateRequestPayload(object_type=ObjectType.SYMMETRIC_KEY,
                                   template_attribute=template(
        attr("Cryptographic Algorithm", ItemType.ENUMERATION, CryptographicAlgorithm.AES),
        attr("Cryptographic Length", ItemType.INTEGER, 256),
        attr("Cryptographic Usage Mask", ItemType.INTEGER, usage),
        *extra,
    ))
    uid = one(service, Operation.CREATE, payload).unique_identifier
    one(service, Operation.ACTIVATE, _activate(uid))
    return str(uid)


def _activate(uid: str) -> ActivateRequestPayload:
    return ActivateRequestPayload(unique_identifier=uid)


def raw_key(service: KmipService, uid: str) -> bytes:
    key = one(service, Operation.GET, GetRequestPayload(unique_identifier=uid)).object
    assert isinstance(key.key_block.key_value, KeyValue)
    material = key.key_block.key_value.key_material
    assert isinstance(material, bytes)
    return material


def wrapping(uid: str, mode: int | None = BlockCipherMode.NISTKEYWRAP,
             encoding: int | None = None) -> KeyWrappingSpecification:
    params = None if mode is None else CryptographicParameters(block_cipher_mode=mode)
    return KeyWrappingSpecification(
        wrapping_method=WrappingMethod.ENCRYPT,
        encryption_key_information=EncryptionKeyInformation(unique_identifier=uid,
                                                            cryptographic_parameters=params),
        encoding_option=encoding,
    )


WRAP = CryptographicUsageMask.WRAP_KEY | CryptographicUsageMask.UNWRAP_KEY
CIPHER = CryptographicUsageMask.ENCRYPT | CryptographicUsageMask.DECRYPT


# Key wrapping on Get and Register.


def test_get_wraps_the_key_value_with_rfc3394_under_the_named_key(service: KmipService) -> None:
    kek = aes_key(service, WRAP)
    key = aes_key(service, CIPHER)

    got = one(service, Operation.GET, GetRequestPayload(unique_identifier=key,
                                                        key_wrapping_specification=wrapping(kek)))

    # The wrapped bytes are the TTLV Key Value (the default encoding), under the KEK.
    block = got.object.key_block
    assert block.key_wrapping_data.encryption_key_information.unique_identifier == kek
    assert isinstance(block.key_value, bytes)
    opened = decode_item(keywrap.aes_key_unwrap(raw_key(service, kek), block.key_value))
    assert opened.tag == Tag.KEY_VALUE
    assert opened.value[0].value == raw_key(service, key)


def test_no_encoding_wraps_the_bare_key_and_rfc5649_pads(service: KmipService) -> None:
    kek = aes_key(service, WRAP)
    key = aes_key(service, CIPHER)

    spec = wrapping(kek, BlockCipherMode.AESKEYWRAPPADDING, EncodingOption.NO_ENCODING)
    got = one(service, Operation.GET, GetRequestPayload(unique_identifier=key,
                                                        key_wrapping_specification=spec))

    wrapped = got.object.key_block.key_value
    assert keywrap.aes_key_unwrap_with_padding(raw_key(service, kek), wrapped) == \
        raw_key(service, key)


def test_a_key_without_wrap_usage_or_an_unknown_one_cannot_wrap(service: KmipService) -> None:
    not_a_kek = aes_key(service, CIPHER)
    key = aes_key(service, CIPHER)

    answer = refused(service, Operation.GET, GetRequestPayload(
        unique_identifier=key, key_wrapping_specification=wrapping(not_a_kek)))
    assert "usage mask" in (answer.result_message or "")  # a 1.4 client sees General Failure
    answer = refused(service, Operation.GET, GetRequestPayload(
        unique_identifier=key, key_wrapping_specification=wrapping("no-such-key")))
    assert answer.result_reason == ResultReason.ITEM_NOT_FOUND  # 1.4 names it so


def test_a_sensitive_key_leaves_only_wrapped(service: KmipService) -> None:
    kek = aes_key(service, WRAP)
    key = aes_key(service, CIPHER, attr("Sensitive", ItemType.BOOLEAN, True))

    answer = refused(service, Operation.GET, GetRequestPayload(unique_identifier=key))
    assert answer.result_reason == ResultReason.SENSITIVE
    one(service, Operation.GET, GetRequestPayload(unique_identifier=key,
                                                  key_wrapping_specification=wrapping(kek)))


def test_rsa_oaep_wraps_under_a_public_key(service: KmipService) -> None:
    pair = one(service, Operation.CREATE_KEY_PAIR, CreateKeyPairRequestPayload(
        common_template_attribute=template(
            attr("Cryptographic Algorithm", ItemType.ENUMERATION, CryptographicAlgorithm.RSA),
            attr("Cryptographic Length", ItemType.INTEGER, 2048)),
        private_key_template_attribute=template(
            attr("Cryptographic Usage Mask", ItemType.INTEGER, WRAP)),
        public_key_template_attribute=template(
            attr("Cryptographic Usage Mask", ItemType.INTEGER, WRAP))))
    for uid in (pair.private_key_unique_identifier, pair.public_key_unique_identifier):
        one(service, Operation.ACTIVATE, _activate(uid))
    key = aes_key(service, CIPHER)

    spec = wrapping(pair.public_key_unique_identifier, None, EncodingOption.NO_ENCODING)
    got = one(service, Operation.GET, GetRequestPayload(unique_identifier=key,
                                                        key_wrapping_specification=spec))

    private = one(service, Operation.GET, GetRequestPayload(
        unique_identifier=pair.private_key_unique_identifier)).object
    loaded = serialization.load_der_private_key(private.key_block.key_value.key_material, None)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    assert loaded.decrypt(got.object.key_block.key_value, oaep) == raw_key(service, key)  # type: ignore[union-attr]


def test_register_unwraps_a_key_wrapped_under_a_key_it_holds(service: KmipService) -> None:
    kek = aes_key(service, WRAP)
    key = aes_key(service, CIPHER)
    wrapped = one(service, Operation.GET, GetRequestPayload(
        unique_identifier=key, key_wrapping_specification=wrapping(kek))).object

    registered = one(service, Operation.REGISTER, RegisterRequestPayload(
        object_type=ObjectType.SYMMETRIC_KEY, object=wrapped,
        template_attribute=template(attr("Cryptographic Usage Mask", ItemType.INTEGER, CIPHER))))

    # Stored in the clear under the barrier: a plain Get returns the original bytes.
    assert raw_key(service, registered.unique_identifier) == raw_key(service, key)


def test_register_keeps_a_key_wrapped_under_a_key_it_does_not_hold(
    service: KmipService,
) -> None:
    blob = keywrap.aes_key_wrap(secrets.token_bytes(32), secrets.token_bytes(32))
    wrapped = SymmetricKey(key_block=KeyBlock(
        key_format_type=KeyFormatType.RAW, key_value=blob,
        cryptographic_algorithm=CryptographicAlgorithm.AES, cryptographic_length=256,
        key_wrapping_data=KeyWrappingData(
            wrapping_method=WrappingMethod.ENCRYPT,
            encryption_key_information=EncryptionKeyInformation(unique_identifier="elsewhere"))))

    registered = one(service, Operation.REGISTER, RegisterRequestPayload(
        object_type=ObjectType.SYMMETRIC_KEY, object=wrapped))

    got = one(service, Operation.GET, GetRequestPayload(
        unique_identifier=registered.unique_identifier)).object
    assert got.key_block.key_value == blob


@pytest.mark.parametrize("case", ["kmip-1.4/mandatory/AX-M-2-14.xml",
                                  "kmip-2.1/mandatory/AX-M-2-21.xml"])
def test_the_oasis_wrapping_cases_pass(service: KmipService, case: str) -> None:
    class InProcess:
        def exchange(self, request: bytes) -> bytes:
            return asyncio.run(service.handle(request, CLIENT))

        def close(self) -> None:
            pass

    result = run_case(CONFORMANCE / case, InProcess, RunMemory())
    assert result.passed, result.difference
