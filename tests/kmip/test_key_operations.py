"""Key wrapping, Re-key, Derive Key, Certify and Validate through the KMIP service.

Every request goes through the bytes, as a client sends it, to a service over a
one-node in-memory log (each command applies at once on one KeyStore, sealed by a
real barrier keyring); the replicated path is tested with PyKMIP in
tests/cluster/test_key_operations_cluster.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.x509.oid import NameOID
from kmip_inprocess import CLIENT, exchange, new_service, send
from kmip_requests import attribute as attr

from keyquorum.cluster.state import (
    Applied,
    CreateFromSources,
    CreateObject,
    KeyStore,
    Rejected,
    ScopeName,
)
from keyquorum.cluster.tenancy import OPERATION_FLAGS
from keyquorum.kmip.attributes import Attribute, Attributes, TemplateAttribute
from keyquorum.kmip.conformance import RunMemory, run_case
from keyquorum.kmip.messages import (
    RequestBatchItem,
    RequestHeader,
    RequestMessage,
    ResponseBatchItem,
)
from keyquorum.kmip.objects import (
    Certificate,
    CryptographicParameters,
    EncryptionKeyInformation,
    KeyBlock,
    KeyValue,
    KeyWrappingData,
    KeyWrappingSpecification,
    PublicKey,
    SecretData,
    SymmetricKey,
    UniqueIdentifier,
)
from keyquorum.kmip.payloads import (
    ActivateRequestPayload,
    AddAttributeRequestPayload,
    CertifyRequestPayload,
    CreateKeyPairRequestPayload,
    CreateRequestPayload,
    DerivationParameters,
    DeriveKeyRequestPayload,
    DestroyRequestPayload,
    GetAttributesRequestPayload,
    GetRequestPayload,
    LocateRequestPayload,
    ProtocolVersion,
    ReCertifyRequestPayload,
    RegisterRequestPayload,
    ReKeyKeyPairRequestPayload,
    ReKeyRequestPayload,
    ValidateRequestPayload,
)
from keyquorum.kmip.service import KmipService
from keyquorum.kmip.tables import (
    BatchErrorContinuationOption,
    BlockCipherMode,
    CertificateRequestType,
    CertificateType,
    CryptographicAlgorithm,
    CryptographicUsageMask,
    DerivationMethod,
    EncodingOption,
    HashingAlgorithm,
    KeyFormatType,
    KeyWrapType,
    LinkType,
    ObjectType,
    Operation,
    RecommendedCurve,
    ResultReason,
    ResultStatus,
    SecretDataType,
    State,
    Tag,
    ValidityIndicator,
    WrappingMethod,
)
from keyquorum.kmip.ttlv import Item, ItemType, decode_item

CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"


@pytest.fixture
def service() -> KmipService:
    return new_service()


def one(service: KmipService, operation: Operation, payload: object,
        version: tuple[int, int] = (1, 4)) -> Any:
    answer = send(service, (operation, payload), version=version)[0]
    assert answer.result_status == ResultStatus.SUCCESS, answer.result_message
    return answer.payload


def refused(service: KmipService, operation: Operation, payload: object,
            version: tuple[int, int] = (1, 4)) -> ResponseBatchItem:
    answer = send(service, (operation, payload), version=version)[0]
    assert answer.result_status == ResultStatus.OPERATION_FAILED
    return answer


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

    # Asked for Not Wrapped, the server says it cannot open it rather than pretend.
    answer = send(service, (Operation.GET, GetRequestPayload(
        unique_identifier=registered.unique_identifier, key_wrap_type=KeyWrapType.NOT_WRAPPED)),
        version=(2, 1))[0]
    assert answer.result_reason == ResultReason.WRAPPING_OBJECT_NOT_FOUND


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


# Re-key and Re-key Key Pair.


def attributes_of(service: KmipService, uid: str) -> dict[str, list[Any]]:
    answer = one(service, Operation.GET_ATTRIBUTES, GetAttributesRequestPayload(
        unique_identifier=uid))
    found: dict[str, list[Any]] = {}
    for attribute in answer.attribute_list:
        found.setdefault(attribute.name, []).append(attribute.value.value)
    return found


def links(service: KmipService, uid: str) -> dict[int, str]:
    return {fields[0].value: fields[1].value for fields in attributes_of(service, uid)["Link"]}


def name(value: str) -> Attribute:
    return attr("Name", ItemType.STRUCTURE, [Item(Tag.NAME_VALUE, ItemType.TEXT_STRING, value),
                                             Item(Tag.NAME_TYPE, ItemType.ENUMERATION, 1)])


def test_rekey_replaces_the_key_and_hands_over_its_name(service: KmipService) -> None:
    old = aes_key(service, CIPHER, name("payroll"))

    new = one(service, Operation.RE_KEY, ReKeyRequestPayload(unique_identifier=old)
              ).unique_identifier

    assert new != old and raw_key(service, new) != raw_key(service, old)
    assert len(raw_key(service, new)) == 32
    before, after = attributes_of(service, old), attributes_of(service, new)
    assert after["Cryptographic Usage Mask"] == [CIPHER]
    assert after["Activation Date"] == before["Activation Date"]  # no Offset: dates kept
    assert after["State"] == [State.ACTIVE]
    assert "Name" not in before and after["Name"][0][0].value == "payroll"
    assert links(service, old) == {LinkType.REPLACEMENT_OBJECT_LINK: new}
    assert links(service, new) == {LinkType.REPLACED_OBJECT_LINK: old}
    located = one(service, Operation.LOCATE, LocateRequestPayload(attribute_list=(
        name("payroll"),))).unique_identifiers
    assert located == (new,)


def test_rekey_with_an_offset_moves_the_dates_with_the_activation(service: KmipService) -> None:
    old = aes_key(service, CIPHER)
    activated = attributes_of(service, old)["Activation Date"][0]
    stop = activated + 1000
    one(service, Operation.ADD_ATTRIBUTE, AddAttributeRequestPayload(
        unique_identifier=old, attribute=attr("Protect Stop Date", ItemType.DATE_TIME, stop)))

    new = one(service, Operation.RE_KEY, ReKeyRequestPayload(unique_identifier=old,
                                                            offset=3600)).unique_identifier

    after = attributes_of(service, new)
    initial = after["Initial Date"][0]
    assert after["Activation Date"] == [initial + 3600]
    assert after["Protect Stop Date"] == [initial + 3600 + 1000]
    assert after["State"] == [State.PRE_ACTIVE]


def test_rekey_refuses_a_destroyed_key_and_a_key_pair(service: KmipService) -> None:
    key = one(service, Operation.CREATE, CreateRequestPayload(
        object_type=ObjectType.SYMMETRIC_KEY, template_attribute=template(
            attr("Cryptographic Algorithm", ItemType.ENUMERATION, CryptographicAlgorithm.AES),
            attr("Cryptographic Length", ItemType.INTEGER, 128)))).unique_identifier
    one(service, Operation.DESTROY, DestroyRequestPayload(unique_identifier=key))
    assert refused(service, Operation.RE_KEY, ReKeyRequestPayload(unique_identifier=key),
                   (2, 1)).result_reason == ResultReason.WRONG_KEY_LIFECYCLE_STATE

    pair = rsa_pair(service)
    assert refused(service, Operation.RE_KEY, ReKeyRequestPayload(
        unique_identifier=pair.private_key_unique_identifier), (2, 1)
    ).result_reason == ResultReason.INVALID_OBJECT_TYPE


def rsa_pair(service: KmipService, *extra: Attribute) -> Any:
    return one(service, Operation.CREATE_KEY_PAIR, CreateKeyPairRequestPayload(
        common_template_attribute=template(
            attr("Cryptographic Algorithm", ItemType.ENUMERATION, CryptographicAlgorithm.RSA),
            attr("Cryptographic Length", ItemType.INTEGER, 2048), *extra),
        private_key_template_attribute=template(
            attr("Cryptographic Usage Mask", ItemType.INTEGER, CryptographicUsageMask.SIGN)),
        public_key_template_attribute=template(
            attr("Cryptographic Usage Mask", ItemType.INTEGER, CryptographicUsageMask.VERIFY))))


def test_rekey_key_pair_replaces_both_keys_and_links_all_four(service: KmipService) -> None:
    old = one(service, Operation.CREATE_KEY_PAIR, CreateKeyPairRequestPayload(
        common_template_attribute=template(
            attr("Cryptographic Algorithm", ItemType.ENUMERATION, CryptographicAlgorithm.EC),
            attr("Cryptographic Length", ItemType.INTEGER, 384)),
        private_key_template_attribute=template(name("signer"))))

    new = one(service, Operation.RE_KEY_KEY_PAIR, ReKeyKeyPairRequestPayload(
        private_key_unique_identifier=old.private_key_unique_identifier))

    private, public = new.private_key_unique_identifier, new.public_key_unique_identifier
    assert links(service, private) == {LinkType.PUBLIC_KEY_LINK: public,
                                       LinkType.REPLACED_OBJECT_LINK:
                                           old.private_key_unique_identifier}
    assert links(service, public)[LinkType.REPLACED_OBJECT_LINK] == \
        old.public_key_unique_identifier
    assert links(service, old.public_key_unique_identifier)[
        LinkType.REPLACEMENT_OBJECT_LINK] == public
    assert attributes_of(service, private)["Cryptographic Length"] == [384]
    assert attributes_of(service, private)["Name"][0][0].value == "signer"
    got = one(service, Operation.GET, GetRequestPayload(unique_identifier=public)).object
    assert got.key_block.key_value.key_material != one(
        service, Operation.GET, GetRequestPayload(
            unique_identifier=old.public_key_unique_identifier)).object.key_block.key_value \
        .key_material


# Derive Key.


def secret_data(service: KmipService, value: bytes, usage: int) -> str:
    registered = one(service, Operation.REGISTER, RegisterRequestPayload(
        object_type=ObjectType.SECRET_DATA,
        object=SecretData(secret_data_type=SecretDataType.PASSWORD, key_block=KeyBlock(
            key_format_type=KeyFormatType.OPAQUE, key_value=KeyValue(key_material=value))),
        template_attribute=template(attr("Cryptographic Usage Mask", ItemType.INTEGER, usage))))
    one(service, Operation.ACTIVATE, _activate(registered.unique_identifier))
    return str(registered.unique_identifier)


def derive_request(service: KmipService, base: str, method: int,
                   parameters: DerivationParameters, bits: int = 256,
                   object_type: int = ObjectType.SYMMETRIC_KEY,
                   version: tuple[int, int] = (1, 4)) -> ResponseBatchItem:
    """Derive Key of a ``bits``-bit object (an AES key if symmetric), whatever its outcome."""
    wanted = [attr("Cryptographic Length", ItemType.INTEGER, bits)]
    if object_type == ObjectType.SYMMETRIC_KEY:
        wanted.append(attr("Cryptographic Algorithm", ItemType.ENUMERATION,
                           CryptographicAlgorithm.AES))
    return send(service, (Operation.DERIVE_KEY, DeriveKeyRequestPayload(
        object_type=object_type, unique_identifiers=(base,), derivation_method=method,
        derivation_parameters=parameters, template_attribute=template(*wanted),
    )), version=version)[0]


def derive(service: KmipService, base: str, method: int, parameters: DerivationParameters,
           bits: int = 256, object_type: int = ObjectType.SYMMETRIC_KEY) -> str:
    answer = derive_request(service, base, method, parameters, bits, object_type)
    assert answer.result_status == ResultStatus.SUCCESS, answer.result_message
    return str(answer.payload.unique_identifier)


SHA256 = CryptographicParameters(hashing_algorithm=HashingAlgorithm.SHA_256)
DERIVE = CryptographicUsageMask.DERIVE_KEY


def test_pbkdf2_derives_a_key_from_a_password(service: KmipService) -> None:
    password = secret_data(service, b"correct horse battery staple", DERIVE)

    key = derive(service, password, DerivationMethod.PBKDF2, DerivationParameters(
        cryptographic_parameters=SHA256, salt=b"salt-1234", iteration_count=1000))

    expected = PBKDF2HMAC(hashes.SHA256(), 32, b"salt-1234", 1000).derive(
        b"correct horse battery staple")
    assert raw_key(service, key) == expected
    assert links(service, key) == {LinkType.DERIVATION_BASE_OBJECT_LINK: password}
    assert links(service, password) == {LinkType.DERIVED_KEY_LINK: key}


@pytest.mark.parametrize("method", [DerivationMethod.HMAC, DerivationMethod.HKDF])
def test_hmac_and_hkdf_derive_with_hkdf(service: KmipService, method: int) -> None:
    base = aes_key(service, DERIVE)

    key = derive(service, base, method, DerivationParameters(
        cryptographic_parameters=SHA256, salt=b"s", derivation_data=b"context"), bits=128)

    expected = HKDF(hashes.SHA256(), 16, b"s", b"context").derive(raw_key(service, base))
    assert raw_key(service, key) == expected


def test_hash_encrypt_and_nist800_108_counter_mode(service: KmipService) -> None:
    base = aes_key(service, DERIVE)
    secret = raw_key(service, base)

    hashed = derive(service, base, DerivationMethod.HASH, DerivationParameters(
        cryptographic_parameters=SHA256, derivation_data=b"label"))
    assert raw_key(service, hashed) == hashlib.sha256(secret + b"label").digest()

    ecb = CryptographicParameters(block_cipher_mode=BlockCipherMode.ECB)
    encrypted = derive(service, base, DerivationMethod.ENCRYPT, DerivationParameters(
        cryptographic_parameters=ecb, derivation_data=bytes(range(32))))
    encryptor = Cipher(algorithms.AES(secret), modes.ECB()).encryptor()
    assert raw_key(service, encrypted) == encryptor.update(bytes(range(32)))

    counter = derive(service, base, DerivationMethod.NIST800_108_C, DerivationParameters(
        cryptographic_parameters=SHA256, derivation_data=b"fixed input"), bits=512,
        object_type=ObjectType.SECRET_DATA)
    kdf = KBKDFHMAC(hashes.SHA256(), Mode.CounterMode, 64, rlen=4, llen=None,
                    location=CounterLocation.BeforeFixed, label=None, context=None,
                    fixed=b"fixed input")
    got = one(service, Operation.GET, GetRequestPayload(unique_identifier=counter)).object
    assert isinstance(got, SecretData)
    assert got.key_block.key_value.key_material == kdf.derive(secret)


def test_derive_key_refuses_what_the_base_does_not_allow(service: KmipService) -> None:
    no_derive = aes_key(service, CIPHER)
    answer = derive_request(service, no_derive, DerivationMethod.HKDF, DerivationParameters(),
                            bits=128, version=(2, 1))
    assert answer.result_reason == ResultReason.INCOMPATIBLE_CRYPTOGRAPHIC_USAGE_MASK

    base = aes_key(service, DERIVE)
    answer = derive_request(service, base, DerivationMethod.PBKDF2, DerivationParameters(
        salt=b"s", iteration_count=10**9), bits=128)
    assert answer.result_reason == ResultReason.INVALID_FIELD
    assert "Iteration Count" in (answer.result_message or "")


# Certify, Re-certify and Validate.


def certificate(service: KmipService, uid: str) -> x509.Certificate:
    got = one(service, Operation.GET, GetRequestPayload(unique_identifier=uid)).object
    return x509.load_der_x509_certificate(got.certificate_value)


def link(link_type: int, uid: str) -> Attribute:
    return attr("Link", ItemType.STRUCTURE, [Item(Tag.LINK_TYPE, ItemType.ENUMERATION, link_type),
                                             Item(Tag.LINKED_OBJECT_IDENTIFIER,
                                                  ItemType.TEXT_STRING, uid)])


def certify(service: KmipService, uid: str, *attributes: Attribute) -> str:
    return str(one(service, Operation.CERTIFY, CertifyRequestPayload(
        unique_identifier=uid, template_attribute=template(*attributes))).unique_identifier)


def validity(service: KmipService, *uids: str, when: datetime | None = None,
             given: tuple[Certificate, ...] = ()) -> int:
    return one(service, Operation.VALIDATE, ValidateRequestPayload(
        certificates=given, unique_identifiers=uids, validity_date=when)).validity_indicator


def activated_pair(service: KmipService) -> Any:
    pair = rsa_pair(service)
    one(service, Operation.ACTIVATE, _activate(pair.private_key_unique_identifier))
    return pair


def test_certify_signs_a_public_key_with_the_cluster_issuing_ca(service: KmipService) -> None:
    pair = rsa_pair(service)
    public = pair.public_key_unique_identifier

    cert = certify(service, public, attr("Certificate Subject CN", ItemType.TEXT_STRING, "db1"))

    issued = certificate(service, cert)
    assert issued.subject.rfc4514_string() == "CN=db1"
    assert issued.issuer.rfc4514_string() == "CN=keyquorum Certify issuing CA"
    key = one(service, Operation.GET, GetRequestPayload(unique_identifier=public)).object
    expected = serialization.load_der_public_key(key.key_block.key_value.key_material)
    assert issued.public_key() == expected
    assert links(service, cert) == {LinkType.PUBLIC_KEY_LINK: public}
    assert links(service, public)[LinkType.CERTIFICATE_LINK] == cert
    assert attributes_of(service, cert)["Certificate Subject CN"] == ["db1"]
    assert validity(service, cert) == ValidityIndicator.VALID

    # The issuing CA's key lives in a scope no credential holds.
    answer = refused(service, Operation.GET, GetRequestPayload(
        unique_identifier="issuing-ca-private-key"))
    assert answer.result_reason == ResultReason.ITEM_NOT_FOUND


def test_certify_signs_a_pkcs10_request_and_refuses_a_forged_one(service: KmipService) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "array-7")]))
               .sign(key, hashes.SHA256()))
    der = request.public_bytes(serialization.Encoding.DER)

    uid = one(service, Operation.CERTIFY, CertifyRequestPayload(
        certificate_request_type=CertificateRequestType.PKCS_10,
        certificate_request_value=der)).unique_identifier

    issued = certificate(service, uid)
    assert issued.public_key() == key.public_key()
    assert issued.subject.rfc4514_string() == "CN=array-7"

    forged = der[:-8] + bytes(8)  # the signature's tail zeroed
    answer = refused(service, Operation.CERTIFY, CertifyRequestPayload(
        certificate_request_type=CertificateRequestType.PKCS_10,
        certificate_request_value=forged))
    assert answer.result_reason == ResultReason.INVALID_FIELD


def test_a_client_ca_of_its_own_scope_signs_and_its_chain_validates(
    service: KmipService,
) -> None:
    # A root: the CA key pair's own public key, self-signed with its private key.
    ca = activated_pair(service)
    root = certify(service, ca.public_key_unique_identifier,
                   attr("Certificate Subject CN", ItemType.TEXT_STRING, "team root"),
                   link(LinkType.PRIVATE_KEY_LINK, ca.private_key_unique_identifier))
    assert certificate(service, root).issuer.rfc4514_string() == "CN=team root"

    # A leaf signed by it.
    leaf_pair = rsa_pair(service)
    leaf = certify(service, leaf_pair.public_key_unique_identifier,
                   attr("Certificate Subject CN", ItemType.TEXT_STRING, "service"),
                   link(LinkType.PRIVATE_KEY_LINK, ca.private_key_unique_identifier),
                   link(LinkType.CERTIFICATE_LINK, root))
    assert certificate(service, leaf).issuer.rfc4514_string() == "CN=team root"
    assert links(service, leaf)[LinkType.CERTIFICATE_LINK] == root

    assert validity(service, leaf, root) == ValidityIndicator.VALID
    assert validity(service, leaf) == ValidityIndicator.UNKNOWN  # no anchor reached
    later = datetime.now(UTC) + timedelta(days=3 * 365)
    assert validity(service, leaf, root, when=later) == ValidityIndicator.INVALID
    stranger = certify(service, activated_pair(service).public_key_unique_identifier)
    assert validity(service, leaf, stranger) == ValidityIndicator.INVALID

    # The same chain sent as certificates rather than identifiers.
    sent = tuple(Certificate(certificate_type=CertificateType.X_509,
                             certificate_value=certificate(service, uid).public_bytes(
                                 serialization.Encoding.DER)) for uid in (leaf, root))
    assert validity(service, given=sent) == ValidityIndicator.VALID


def test_an_issuer_key_of_another_pair_needs_its_certificate(service: KmipService) -> None:
    ca = activated_pair(service)
    other = rsa_pair(service)
    answer = refused(service, Operation.CERTIFY, CertifyRequestPayload(
        unique_identifier=other.public_key_unique_identifier,
        template_attribute=template(link(LinkType.PRIVATE_KEY_LINK,
                                         ca.private_key_unique_identifier))))
    assert "Certificate Link" in (answer.result_message or "")


def test_recertify_renews_for_the_same_key_and_issuer(service: KmipService) -> None:
    pair = rsa_pair(service)
    old = certify(service, pair.public_key_unique_identifier,
                  attr("Certificate Subject CN", ItemType.TEXT_STRING, "web"), name("web-cert"))

    new = str(one(service, Operation.RE_CERTIFY, ReCertifyRequestPayload(
        unique_identifier=old, offset=60)).unique_identifier)

    before, after = certificate(service, old), certificate(service, new)
    assert after.public_key() == before.public_key() and after.subject == before.subject
    assert after.issuer == before.issuer and after.serial_number != before.serial_number
    assert links(service, new)[LinkType.REPLACED_OBJECT_LINK] == old
    assert links(service, old)[LinkType.REPLACEMENT_OBJECT_LINK] == new
    renewed = attributes_of(service, new)
    assert renewed["Name"][0][0].value == "web-cert"
    assert renewed["Activation Date"] == [renewed["Initial Date"][0] + 60]


# Asymmetric keys in the format a Get asks for.


def material_in(service: KmipService, uid: str, key_format: int) -> Any:
    got = one(service, Operation.GET, GetRequestPayload(unique_identifier=uid,
                                                        key_format_type=key_format)).object
    assert got.key_block.key_format_type == key_format
    return got.key_block.key_value.key_material


def test_rsa_keys_convert_between_pkcs1_pkcs8_x509_and_transparent(service: KmipService) -> None:
    pair = rsa_pair(service)
    private_uid, public_uid = pair.private_key_unique_identifier, pair.public_key_unique_identifier
    private = serialization.load_der_private_key(
        material_in(service, private_uid, KeyFormatType.PKCS_1), None)
    assert isinstance(private, rsa.RSAPrivateKey)
    numbers = private.private_numbers()

    pkcs8 = material_in(service, private_uid, KeyFormatType.PKCS_8)
    assert serialization.load_der_private_key(pkcs8, None).private_numbers() == numbers  # type: ignore[union-attr]
    transparent = material_in(service, private_uid, KeyFormatType.TRANSPARENT_RSA_PRIVATE_KEY)
    fields = {child.tag: child.value for child in transparent.value}
    assert (fields[Tag.MODULUS], fields[Tag.PRIVATE_EXPONENT], fields[Tag.P]) == (
        numbers.public_numbers.n, numbers.d, numbers.p)

    spki = material_in(service, public_uid, KeyFormatType.X_509)
    assert serialization.load_der_public_key(spki) == private.public_key()
    public = material_in(service, public_uid, KeyFormatType.TRANSPARENT_RSA_PUBLIC_KEY)
    assert [child.value for child in public.value] == [numbers.public_numbers.n, 65537]

    answer = send(service, (Operation.GET, GetRequestPayload(
        unique_identifier=public_uid, key_format_type=KeyFormatType.PKCS_8)))[0]
    assert answer.result_reason == ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED


def test_ec_keys_convert_and_a_transparent_key_registered_comes_back_as_der(
    service: KmipService,
) -> None:
    pair = one(service, Operation.CREATE_KEY_PAIR, CreateKeyPairRequestPayload(
        common_template_attribute=template(
            attr("Cryptographic Algorithm", ItemType.ENUMERATION, CryptographicAlgorithm.EC),
            attr("Cryptographic Length", ItemType.INTEGER, 256))))
    private = serialization.load_der_private_key(
        material_in(service, pair.private_key_unique_identifier, KeyFormatType.PKCS_8), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)

    transparent = material_in(service, pair.private_key_unique_identifier,
                              KeyFormatType.TRANSPARENT_EC_PRIVATE_KEY)
    assert [child.value for child in transparent.value] == [
        RecommendedCurve.P_256, private.private_numbers().private_value]
    sec1 = material_in(service, pair.private_key_unique_identifier, KeyFormatType.ECPRIVATEKEY)
    reread = serialization.load_der_private_key(sec1, None)
    assert isinstance(reread, ec.EllipticCurvePrivateKey)
    assert reread.private_numbers() == private.private_numbers()
    point = material_in(service, pair.public_key_unique_identifier, KeyFormatType.RAW)
    assert point == private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)

    # A key registered in a transparent format is served as DER on request.
    registered = one(service, Operation.REGISTER, RegisterRequestPayload(
        object_type=ObjectType.PUBLIC_KEY, object=PublicKey(key_block=KeyBlock(
            key_format_type=KeyFormatType.TRANSPARENT_EC_PUBLIC_KEY,
            key_value=KeyValue(key_material=Item(Tag.KEY_MATERIAL, ItemType.STRUCTURE, [
                Item(Tag.RECOMMENDED_CURVE, ItemType.ENUMERATION, RecommendedCurve.P_256),
                Item(Tag.Q_STRING, ItemType.BYTE_STRING, point)])),
            cryptographic_algorithm=CryptographicAlgorithm.EC, cryptographic_length=256))))
    spki = material_in(service, registered.unique_identifier, KeyFormatType.X_509)
    assert serialization.load_der_public_key(spki) == private.public_key()


def test_undo_takes_back_a_key_pair_rekey_and_the_links_it_added(service: KmipService) -> None:
    old = rsa_pair(service, name("pair"))
    store = service._backend.store
    before = {obj.uid: obj for obj in store}

    header = RequestHeader(protocol_version=ProtocolVersion(major=1, minor=4), batch_count=2,
                           batch_error_continuation_option=BatchErrorContinuationOption.UNDO)
    message = RequestMessage(header=header, batch_items=(
        RequestBatchItem(operation=Operation.RE_KEY_KEY_PAIR, payload=ReKeyKeyPairRequestPayload(
            private_key_unique_identifier=old.private_key_unique_identifier)),
        RequestBatchItem(operation=Operation.DESTROY, payload=DestroyRequestPayload(
            unique_identifier="no-such-object")),
    ))
    answer = exchange(service, message)

    assert [i.result_status for i in answer.batch_items] == [
        ResultStatus.OPERATION_UNDONE, ResultStatus.OPERATION_FAILED]
    # Both new keys are gone; the old public key, named by no payload, lost its new link.
    assert {obj.uid: obj for obj in store} == before


def test_a_21_client_names_the_subject_with_certificate_subject_attributes(
    service: KmipService,
) -> None:
    pair = rsa_pair(service)
    subject = Attributes(items=(
        Item(Tag.CERTIFICATE_SUBJECT_CN, ItemType.TEXT_STRING, "host-21"),
        Item(Tag.CERTIFICATE_SUBJECT_O, ItemType.TEXT_STRING, "Example"),
    ))

    uid = one(service, Operation.CERTIFY, CertifyRequestPayload(
        unique_identifier=pair.public_key_unique_identifier, attributes=subject),
        version=(2, 1)).unique_identifier

    assert certificate(service, uid).subject.rfc4514_string() == "O=Example,CN=host-21"


def test_rekey_keeps_the_algorithm_and_length(service: KmipService) -> None:
    old = aes_key(service, CIPHER)
    answer = refused(service, Operation.RE_KEY, ReKeyRequestPayload(
        unique_identifier=old, template_attribute=template(
            attr("Cryptographic Length", ItemType.INTEGER, 128))))
    assert answer.result_reason == ResultReason.INVALID_FIELD
    assert "keeps the key's Cryptographic Length" in (answer.result_message or "")


def test_recertify_a_self_signed_root_and_a_leaf_that_must_name_its_issuer(
    service: KmipService,
) -> None:
    ca = activated_pair(service)
    root = certify(service, ca.public_key_unique_identifier,
                   link(LinkType.PRIVATE_KEY_LINK, ca.private_key_unique_identifier))
    leaf = certify(service, rsa_pair(service).public_key_unique_identifier,
                   link(LinkType.PRIVATE_KEY_LINK, ca.private_key_unique_identifier),
                   link(LinkType.CERTIFICATE_LINK, root))

    renewed = str(one(service, Operation.RE_CERTIFY, ReCertifyRequestPayload(
        unique_identifier=root)).unique_identifier)
    again = certificate(service, renewed)
    assert again.issuer == again.subject == certificate(service, root).subject
    again.verify_directly_issued_by(again)

    answer = refused(service, Operation.RE_CERTIFY, ReCertifyRequestPayload(
        unique_identifier=leaf))
    assert "Private Key Link" in (answer.result_message or "")


def test_each_new_operation_has_a_role_flag() -> None:
    # Roles grant operations by flag; the flags come from the handler registry.
    assert {"operation_re_key", "operation_re_key_key_pair", "operation_derive_key",
            "operation_certify", "operation_re_certify", "operation_validate"} <= set(
        OPERATION_FLAGS)


def test_create_from_sources_refuses_whole_what_it_cannot_apply() -> None:
    # apply never raises: a malformed command is refused and leaves no trace.
    store = KeyStore()
    scope = ScopeName("default")
    source = CreateObject(scope=scope, uid=UniqueIdentifier("old"),
                          object_type=ObjectType.SYMMETRIC_KEY, attributes=(), material=b"x",
                          now=1)
    assert isinstance(store.apply(source), Applied)
    before = store.get(scope, "old")
    new = replace(source, uid=UniqueIdentifier("new"))
    link_item = Item(Tag.ATTRIBUTE_VALUE, ItemType.STRUCTURE, [])

    for command in (
        CreateFromSources(scope, (new,), ((UniqueIdentifier("old"), link_item),),
                          ((UniqueIdentifier("old"), UniqueIdentifier("elsewhere")),), 2),
        CreateFromSources(scope, (replace(new, scope=ScopeName("other")),), (), (), 2),
        CreateFromSources(scope, (new,), ((UniqueIdentifier("missing"), link_item),), (), 2),
    ):
        assert isinstance(store.apply(command), Rejected)
    assert [obj.uid for obj in store] == ["old"]
    assert store.get(scope, "old") == before


def test_a_derived_aes_key_has_an_aes_length(service: KmipService) -> None:
    base = aes_key(service, DERIVE)
    answer = derive_request(service, base, DerivationMethod.HKDF, DerivationParameters(),
                            bits=136)
    assert answer.result_reason == ResultReason.INVALID_FIELD
    assert answer.result_message == "an AES key is 128, 192 or 256 bits"
