"""Tenancy on a real 3-node cluster: the admin API over HTTPS and KMIP over mutual TLS.

Every credential here is made through the API, and every KMIP exchange is a real
TLS connection with that credential, by PyKMIP's client or by raw messages of our
model. One cluster serves the module; each test works in scopes of its own.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import types
import typing
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import kmip_requests
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from harness import Cluster, read_message, wait_for
from kmip.core import enums
from kmip.pie import exceptions
from kmip.pie.client import ProxyKmipClient
from kmip_requests import aes_256, response

from keyquorum.cluster.pki import create_ca
from keyquorum.cluster.tenancy import OPERATION_FLAGS
from keyquorum.kmip.attributes import Attribute
from keyquorum.kmip.messages import (
    RequestMessage,
    ResponseMessage,
    decode_message,
    encode_message,
)
from keyquorum.kmip.operations import HANDLERS
from keyquorum.kmip.payloads import (
    REQUEST_PAYLOADS,
    DestroyRequestPayload,
    DiscoverVersionsRequestPayload,
    GetAttributesRequestPayload,
    GetRequestPayload,
)
from keyquorum.kmip.tables import (
    BatchErrorContinuationOption,
    Operation,
    ResultReason,
    ResultStatus,
    Tag,
)
from keyquorum.kmip.ttlv import Item, ItemType


@pytest.fixture(scope="module")
def root_token(cluster: Cluster) -> str:
    return cluster.admin_token


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("credentials")


def api(cluster: Cluster, token: str | None, node_id: str = "node-1") -> httpx.Client:
    headers = {"X-Keyquorum-Token": token} if token else {}
    verify = ssl.create_default_context(cafile=str(cluster.ca))
    return httpx.Client(base_url=cluster.nodes[node_id].api, verify=verify, headers=headers,
                        timeout=20)


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def admin(cluster: Cluster, root_token: str) -> Iterator[httpx.Client]:
    with api(cluster, root_token) as client:
        yield client


@pytest.fixture(scope="module")
def admin_client(cluster: Cluster, root_token: str) -> Iterator[httpx.Client]:
    """The root token's client, kept for the module (the flag test makes many calls)."""
    with api(cluster, root_token) as client:
        yield client


class Credential:
    """A credential's files on disk, as a KMIP client uses them."""

    def __init__(self, directory: Path, answer: dict[str, Any]) -> None:
        self.serial = answer["serial_number"]
        self.cert = directory / f"{self.serial}.pem"
        self.key = directory / f"{self.serial}.key"
        self.cert.write_text(answer["certificate"])
        self.key.write_text(answer["private_key"])


def tenant(admin: httpx.Client, files: Path, flags: dict[str, bool],
           scope: str | None = None, role: str = "r") -> tuple[str, Credential]:
    """A scope (new unless given), a role with ``flags``, and a credential of it."""
    scope = scope or unique("scope")
    if admin.get(f"/v1/kmip/scope/{scope}").status_code == 404:
        ok(admin.post(f"/v1/kmip/scope/{scope}"))
    ok(admin.post(f"/v1/kmip/scope/{scope}/role/{role}", json=flags))
    answer = ok(admin.post(f"/v1/kmip/scope/{scope}/role/{role}/credential/generate",
                           json={"format": "pem"}))
    return scope, Credential(files, answer)


def pykmip(cluster: Cluster, node_id: str, cert: Path, key: Path) -> ProxyKmipClient:
    node = cluster.nodes[node_id]
    return ProxyKmipClient(hostname=node.kmip_host, port=node.kmip_port, cert=str(cert),
                           key=str(key), ca=str(cluster.ca), config_file=os.devnull)


def client_context(cluster: Cluster, credential: Credential) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cluster.ca))
    context.load_cert_chain(str(credential.cert), str(credential.key))
    return context


def exchange(cluster: Cluster, node_id: str, credential: Credential,
             message: RequestMessage) -> ResponseMessage:
    """One request on a new TLS connection with ``credential``; ConnectionError if refused."""
    return response(cluster.exchange(node_id, encode_message(message), timeout=10,
                                     tls_context=client_context(cluster, credential)))


def refused(cluster: Cluster, node_id: str, credential: Credential) -> bool:
    """Whether the node closes the connection instead of answering Discover Versions."""
    try:
        exchange(cluster, node_id, credential, request(
            (Operation.DISCOVER_VERSIONS, DiscoverVersionsRequestPayload())))
    except (OSError, ssl.SSLError):
        return True
    return False


def request(*items: tuple[Operation, object], version: tuple[int, int] = (1, 4)
            ) -> RequestMessage:
    """A batch that goes on past a refused item, so that every item is answered."""
    return kmip_requests.request(*items, version=version,
                                 option=BatchErrorContinuationOption.CONTINUE)


def text_attribute(name: str, value: str) -> Attribute:
    return Attribute(name=name, value=Item(Tag.ATTRIBUTE_VALUE, ItemType.TEXT_STRING, value))


# The flag test sends every operation the server implements (HANDLERS, so that an
# operation added tomorrow is tested with it), each request built from its payload
# class alone: every field that names an object names a real one, every other
# required field gets a plain value of its type, the rest stay absent. Whether an
# allowed operation then succeeds does not matter here, only that its refusal is
# never Permission Denied. The requests speak KMIP 2.1, where a key in the wrong
# state answers Wrong Key Lifecycle State (1.x folds that into Permission Denied).
V2_1 = (2, 1)
IDENTIFIER_FIELDS = re.compile(r"(.*_)?unique_identifiers?")


def plain_value(annotation: Any, *, uid: str) -> Any:
    """A value of ``annotation``'s type that the codec accepts."""
    options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    kind = options[0] if typing.get_origin(annotation) in (typing.Union, types.UnionType) else (
        annotation)
    if typing.get_origin(kind) is tuple:
        return ()
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return next(iter(kind))
    if dataclasses.is_dataclass(kind):
        return built(kind, uid=uid)
    simple = {bool: False, int: 16, bytes: bytes(16), str: "flag-test",
              datetime: datetime.now(UTC).replace(microsecond=0)}
    if kind in simple:
        return simple[kind]
    raise TypeError(f"no plain value for {annotation}: teach plain_value this type")


def built(cls: Any, *, uid: str) -> Any:
    """An instance of the payload class ``cls`` with its required fields and objects set."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        if IDENTIFIER_FIELDS.fullmatch(item.name):
            values[item.name] = (uid,) if item.name.endswith("s") else uid
        elif item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING:
            values[item.name] = plain_value(hints[item.name], uid=uid)
    return cls(**values)


def every_operation(uid: str) -> RequestMessage:
    """One batch item for each operation the server implements, about object ``uid``."""
    return request(*((operation, built(REQUEST_PAYLOADS[operation], uid=uid))
                     for operation in HANDLERS), version=V2_1)


def test_every_implemented_operation_has_a_flag_and_a_request() -> None:
    # The flags follow the handlers, so a new operation gets its flag with its handler,
    # and the flag test below builds its request without being told.
    assert {f"operation_{operation.name.lower()}" for operation in HANDLERS} == set(
        OPERATION_FLAGS)
    message = decode_message(encode_message(every_operation("some-object")))
    assert [item.operation for item in message.batch_items] == list(HANDLERS)


@pytest.fixture(scope="module")
def flag_scope(admin_client: httpx.Client, files: Path) -> tuple[str, Credential]:
    """One scope for the flag test, with a credential that may do everything."""
    return tenant(admin_client, files, {"operation_all": True}, role="everything")


def new_key(cluster: Cluster, credential: Credential) -> str:
    response = exchange(cluster, "node-1", credential, request((Operation.CREATE, aes_256())))
    created = response.batch_items[0]
    assert created.result_status == ResultStatus.SUCCESS, created
    uid: str = created.payload.unique_identifier
    return uid


@pytest.mark.parametrize("flag", sorted(f"operation_{op.name.lower()}" for op in HANDLERS))
def test_each_operation_flag_allows_its_operation_and_nothing_else(
    cluster: Cluster, admin_client: httpx.Client, files: Path,
    flag_scope: tuple[str, Credential], flag: str
) -> None:
    scope, everything = flag_scope
    _, credential = tenant(admin_client, files, {flag: True}, scope=scope,
                           role=flag.removeprefix("operation_").replace("_", "-"))

    # One batch with every operation about a fresh key: the role's is not denied, and
    # every other one is, with Permission Denied, whatever it would have done.
    uid = new_key(cluster, everything)
    response = exchange(cluster, "node-2", credential, every_operation(uid))

    answers = {item.operation: item for item in response.batch_items}
    assert set(answers) == set(HANDLERS)
    for operation, answer in answers.items():
        denied = answer.result_reason == ResultReason.PERMISSION_DENIED
        if operation == OPERATION_FLAGS[flag]:
            assert not denied, answer
        else:
            assert answer.result_status == ResultStatus.OPERATION_FAILED and denied, operation
            assert "does not allow" in (answer.result_message or ""), answer


def test_operation_all_allows_every_operation_and_operation_none_nothing(
    cluster: Cluster, admin: httpx.Client, files: Path
) -> None:
    scope, everything = tenant(admin, files, {"operation_all": True})
    _, nothing = tenant(admin, files, {"operation_none": True}, scope=scope, role="none")

    allowed = exchange(cluster, "node-1", everything,
                       every_operation(new_key(cluster, everything))).batch_items
    refused_all = exchange(cluster, "node-1", nothing,
                           every_operation(new_key(cluster, everything))).batch_items
    assert len(allowed) == len(refused_all) == len(HANDLERS)
    assert not any(i.result_reason == ResultReason.PERMISSION_DENIED for i in allowed)
    assert all(i.result_reason == ResultReason.PERMISSION_DENIED for i in refused_all)


def test_scopes_do_not_see_each_others_objects(
    cluster: Cluster, admin: httpx.Client, files: Path
) -> None:
    _, red = tenant(admin, files, {"operation_all": True})
    _, blue = tenant(admin, files, {"operation_all": True})
    name = unique("shared-name")

    with pykmip(cluster, "node-1", red.cert, red.key) as client:
        uid = client.create(enums.CryptographicAlgorithm.AES, 256, name=name)

    # Blue, through another node: the object is not there, exactly as a missing one.
    with pykmip(cluster, "node-3", blue.cert, blue.key) as client:
        name_attribute = client.attribute_factory.create_attribute(enums.AttributeType.NAME,
                                                                   name)
        assert client.locate(attributes=[name_attribute]) == []
        for attempt in (lambda: client.get(uid), lambda: client.destroy(uid),
                        lambda: client.get_attributes(uid, ["State"])):
            with pytest.raises(exceptions.KmipOperationFailure) as theirs:
                attempt()
            assert theirs.value.reason == enums.ResultReason.ITEM_NOT_FOUND

    # Red still has it, untouched by blue's Destroy.
    with pykmip(cluster, "node-2", red.cert, red.key) as client:
        assert len(client.get(uid).value) == 32
        assert client.locate(attributes=[name_attribute]) == [uid]


def test_another_scopes_object_answers_exactly_like_a_missing_one(
    cluster: Cluster, admin: httpx.Client, files: Path
) -> None:
    _, red = tenant(admin, files, {"operation_all": True})
    _, blue = tenant(admin, files, {"operation_all": True})
    created = exchange(cluster, "node-1", red, request((Operation.CREATE, aes_256())))
    uid = created.batch_items[0].payload.unique_identifier

    def answers(target: str) -> list[tuple[object, object, object]]:
        items = exchange(cluster, "node-2", blue, request(
            (Operation.GET, GetRequestPayload(unique_identifier=target)),
            (Operation.DESTROY, DestroyRequestPayload(unique_identifier=target)),
            (Operation.GET_ATTRIBUTES, GetAttributesRequestPayload(unique_identifier=target)),
        )).batch_items
        return [(i.result_status, i.result_reason, i.result_message) for i in items]

    assert answers(uid) == answers(str(uuid.uuid4()))


def test_pykmip_with_a_role_without_destroy_is_refused_destroy(
    cluster: Cluster, admin: httpx.Client, files: Path
) -> None:
    flags = {flag: True for flag in OPERATION_FLAGS if flag != "operation_destroy"}
    _, credential = tenant(admin, files, flags)

    with pykmip(cluster, "node-2", credential.cert, credential.key) as client:
        uid = client.create(enums.CryptographicAlgorithm.AES, 128)
        client.revoke(enums.RevocationReasonCode.CESSATION_OF_OPERATION, uid)
        with pytest.raises(exceptions.KmipOperationFailure) as failure:
            client.destroy(uid)
        assert failure.value.reason == enums.ResultReason.PERMISSION_DENIED
        _, attributes = client.get_attributes(uid, ["State"])
        assert attributes[0].attribute_value.value == enums.State.DEACTIVATED


def test_a_revoked_credential_is_refused_by_all_three_nodes_within_a_second(
    cluster: Cluster, admin: httpx.Client, files: Path
) -> None:
    scope, credential = tenant(admin, files, {"operation_all": True})
    assert not any(refused(cluster, node_id, credential) for node_id in cluster.nodes)

    with api(cluster, admin.headers["X-Keyquorum-Token"], "node-3") as other:
        ok(other.post(f"/v1/kmip/scope/{scope}/role/r/credential/revoke",
                      json={"serial_number": credential.serial}))

    # From the revocation's answer on, each node refuses within a second.
    answered = time.monotonic()
    remaining = set(cluster.nodes)
    while remaining and time.monotonic() - answered < 1.0:
        remaining = {node_id for node_id in remaining if not refused(cluster, node_id, credential)}
    assert not remaining, f"still admitted after 1 s by {sorted(remaining)}"

    looked_up = ok(admin.get(f"/v1/kmip/scope/{scope}/role/r/credential/lookup",
                             params={"serial_number": credential.serial}))
    assert looked_up["revoked"] is True


def discover_versions_resuming(cluster: Cluster, node_id: str, context: ssl.SSLContext,
                               session: ssl.SSLSession | None
                               ) -> tuple[ssl.SSLSession | None, bool, bool]:
    """Discover Versions on a new connection offering ``session`` for resumption: the
    session to offer next, whether the node resumed it, whether it answered."""
    node = cluster.nodes[node_id]
    message = encode_message(request(
        (Operation.DISCOVER_VERSIONS, DiscoverVersionsRequestPayload())))
    with socket.create_connection((node.kmip_host, node.kmip_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=node.kmip_host,
                                 session=session) as tls:
            resumed = tls.session_reused
            try:
                tls.sendall(message)
                response(read_message(tls))
            except (OSError, ssl.SSLError, EOFError):
                return None, resumed, False
            # TLS 1.3 sends its session tickets after the handshake: read with the answer.
            return tls.session, resumed, True


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_a_revoked_credential_cannot_come_back_by_resuming_its_tls_session(
    cluster: Cluster, admin: httpx.Client, files: Path, version: ssl.TLSVersion
) -> None:
    # Java clients such as vCenter resume TLS sessions, and a resumed handshake checks no
    # certificate. Admission must still judge the certificate the session was made with.
    scope, credential = tenant(admin, files, {"operation_all": True})
    context = client_context(cluster, credential)
    context.maximum_version = version
    sessions = {}
    for node_id in cluster.nodes:
        session, _, answered = discover_versions_resuming(cluster, node_id, context, None)
        assert answered and session is not None
        session, resumed, answered = discover_versions_resuming(
            cluster, node_id, context, session)
        assert resumed and answered, f"{node_id} did not resume a good client's session"
        sessions[node_id] = session

    ok(admin.post(f"/v1/kmip/scope/{scope}/role/r/credential/revoke",
                  json={"serial_number": credential.serial}))

    def refusals() -> dict[str, bool] | None:
        """Whether each node resumed the session it then refused; None if one answered."""
        resumed_then_refused = {}
        for node_id, session in sessions.items():
            _, resumed, answered = discover_versions_resuming(
                cluster, node_id, context, session)
            if answered:
                return None
            resumed_then_refused[node_id] = resumed
        return resumed_then_refused

    last = wait_for(refusals, timeout=5,
                    what="every node to refuse the revoked client's resumed sessions")
    assert all(last.values()), f"refused without resuming, proving nothing: {last}"


def test_a_follower_behind_admits_a_credential_generated_a_moment_ago(
    cluster: Cluster, admin: httpx.Client, files: Path
) -> None:
    # vCenter, handed a new credential, may try any of its KMS addresses first. A
    # follower that has not applied the credential yet catches up with the leader
    # before it decides, instead of refusing a good client (cluster/kmip_access.py).
    leader = cluster.leader()
    behind = next(node_id for node_id in cluster.nodes if node_id != leader)
    cluster.pause(behind)
    try:
        with api(cluster, admin.headers["X-Keyquorum-Token"], leader) as through_leader:
            _, credential = tenant(through_leader, files, {"operation_all": True})
    finally:
        cluster.resume(behind)

    assert not refused(cluster, behind, credential)


def test_a_certificate_the_cluster_ca_signed_outside_the_api_is_refused(
    cluster: Cluster, files: Path
) -> None:
    # The dev CA's key is on disk: a certificate it signs directly is no credential.
    from keyquorum.cluster.pki import CertificateAuthority, issue_certificate

    ca = CertificateAuthority.load(cluster.ca, cluster.directory / "ca" / "ca.key")
    stray = issue_certificate(ca, "stray", sans=[], ttl=timedelta(hours=1))
    stray.write(files / "stray.pem", files / "stray.key")
    credential = Credential.__new__(Credential)
    credential.cert, credential.key = files / "stray.pem", files / "stray.key"
    assert refused(cluster, "node-1", credential)


def test_a_csr_is_signed_into_a_working_credential(
    cluster: Cluster, admin: httpx.Client, files: Path
) -> None:
    scope, _ = tenant(admin, files, {"operation_all": True})
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vcenter-kms")]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("vcenter.example.test")]),
                          critical=False)
           .sign(key, hashes.SHA256()))

    answer = ok(admin.post(f"/v1/kmip/scope/{scope}/role/r/credential/sign", json={
        "csr": csr.public_bytes(serialization.Encoding.PEM).decode(), "format": "pem"}))

    assert "private_key" not in answer
    certificate = x509.load_pem_x509_certificate(answer["certificate"].encode())
    assert certificate.public_key() == key.public_key()
    assert certificate.subject.rfc4514_string() == "CN=vcenter-kms"
    usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["vcenter.example.test"]

    (files / "csr.pem").write_text(answer["certificate"])
    (files / "csr.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pykmip(cluster, "node-3", files / "csr.pem", files / "csr.key") as client:
        uid = client.create(enums.CryptographicAlgorithm.AES, 256)
        assert len(client.get(uid).value) == 32
    listed = ok(admin.get(f"/v1/kmip/scope/{scope}/role/r/credential"))
    assert f"{certificate.serial_number:x}" in listed["serial_numbers"]


def test_generate_answers_in_every_format(
    cluster: Cluster, admin: httpx.Client, files: Path
) -> None:
    scope, _ = tenant(admin, files, {"operation_get": True})
    base = f"/v1/kmip/scope/{scope}/role/r/credential/generate"

    bundle = ok(admin.post(base, json={"format": "pem_bundle"}))["bundle"]
    assert bundle.count("BEGIN CERTIFICATE") == 2 and "BEGIN PRIVATE KEY" in bundle

    import base64

    from cryptography.hazmat.primitives.serialization import pkcs12

    der = ok(admin.post(base, json={"format": "der"}))
    x509.load_der_x509_certificate(base64.b64decode(der["certificate"]))
    serialization.load_der_private_key(base64.b64decode(der["private_key"]), password=None)

    p12 = ok(admin.post(base, json={"format": "pkcs12", "pkcs12_password": "s3cret"}))
    key, certificate, chain = pkcs12.load_key_and_certificates(
        base64.b64decode(p12["pkcs12"]), b"s3cret")
    assert key is not None and certificate is not None and len(chain) == 1


def test_an_imported_ca_maps_subject_fields_to_scope_and_role(
    cluster: Cluster, admin: httpx.Client, files: Path
) -> None:
    scope, insider = tenant(admin, files, {"operation_all": True}, role="ops")
    corp = create_ca("Corp Issuing CA")
    ok(admin.post("/v1/kmip/ca", json={"name": unique("corp"),
                                       "certificate": corp.cert_pem.decode(),
                                       "scope_field": "O", "role_field": "OU"}))

    def corp_certificate(name: str, organization: str, unit: str) -> Credential:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([
                x509.NameAttribute(NameOID.COMMON_NAME, name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit)]))
            .issuer_name(corp.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .sign(corp.private_key, hashes.SHA256()))
        return Credential(files, {
            "serial_number": f"corp-{name}",
            "certificate": certificate.public_bytes(serialization.Encoding.PEM).decode(),
            "private_key": key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode()})

    # The imported CA is trusted once every node rebuilt its TLS context.
    mapped = corp_certificate("array-1", scope, "ops")
    wait_for(lambda: all(not refused(cluster, n, mapped) for n in cluster.nodes), 5,
             "every node to trust the imported CA")
    created = exchange(cluster, "node-2", mapped, request((Operation.CREATE, aes_256())))
    uid = created.batch_items[0].payload.unique_identifier

    # The object landed in the mapped scope: the scope's own credential sees it.
    got = exchange(cluster, "node-3", insider,
                   request((Operation.GET, GetRequestPayload(unique_identifier=uid))))
    assert got.batch_items[0].result_status == ResultStatus.SUCCESS

    # A subject naming a scope or role that does not exist gets nothing.
    assert refused(cluster, "node-1", corp_certificate("array-2", "no-such-scope", "ops"))
    assert refused(cluster, "node-1", corp_certificate("array-3", scope, "no-such-role"))


def test_an_imported_ca_with_a_fixed_rule(
    cluster: Cluster, admin: httpx.Client, files: Path
) -> None:
    scope, _ = tenant(admin, files, {"operation_get": True}, role="fixed")
    other = create_ca("Partner CA")
    ok(admin.post("/v1/kmip/ca", json={"name": unique("partner"),
                                       "certificate": other.cert_pem.decode(),
                                       "scope": scope, "role": "fixed"}))
    from keyquorum.cluster.pki import issue_certificate

    issued = issue_certificate(other, "partner-client", sans=[], ttl=timedelta(hours=1))
    issued.write(files / "partner.pem", files / "partner.key")
    credential = Credential.__new__(Credential)
    credential.cert, credential.key = files / "partner.pem", files / "partner.key"

    def create_is_denied() -> bool:
        try:
            answer = exchange(cluster, "node-1", credential,
                              request((Operation.CREATE, aes_256())))
        except (OSError, ssl.SSLError):
            return False
        return answer.batch_items[0].result_reason == ResultReason.PERMISSION_DENIED

    wait_for(create_is_denied, 5, "the partner CA's client to run under role fixed")


def test_a_read_only_token_cannot_write(cluster: Cluster, admin: httpx.Client) -> None:
    token = ok(admin.post("/v1/auth/token/create", json={"kind": "read-only"}))
    # Created through node-1, used at once on node-2.
    with api(cluster, token["token"], "node-2") as reader:
        assert "default" in ok(reader.get("/v1/kmip/scope"))["scopes"]
        ok(reader.get("/v1/kmip/scope/default/role/admin"))
        ok(reader.get("/v1/kmip/ca"))
        for method, path, body in (
            ("POST", f"/v1/kmip/scope/{unique('ro')}", None),
            ("POST", "/v1/kmip/scope/default/role/admin", {"operation_get": True}),
            ("POST", "/v1/kmip/scope/default/role/admin/credential/generate", {}),
            ("POST", "/v1/kmip/config", {}),
            ("POST", "/v1/auth/token/create", {"kind": "read-only"}),
        ):
            answer = reader.request(method, path, json=body)
            assert answer.status_code == 403, (path, answer.text)
            assert "read-only" in answer.json()["errors"][0]

    ok(admin.post("/v1/auth/token/revoke", json={"accessor": token["accessor"]}))
    with api(cluster, token["token"], "node-3") as reader:
        assert reader.get("/v1/kmip/scope").status_code == 403


def test_a_scoped_token_cannot_touch_another_scope(
    cluster: Cluster, admin: httpx.Client, files: Path
) -> None:
    mine, _ = tenant(admin, files, {"operation_get": True})
    theirs, _ = tenant(admin, files, {"operation_get": True})
    token = ok(admin.post("/v1/auth/token/create", json={"kind": "scoped", "scope": mine}))

    with api(cluster, token["token"], "node-3") as scoped:
        assert ok(scoped.get("/v1/kmip/scope"))["scopes"] == [mine]
        ok(scoped.post(f"/v1/kmip/scope/{mine}/role/extra", json={"operation_locate": True}))
        ok(scoped.post(f"/v1/kmip/scope/{mine}/role/extra/credential/generate", json={}))
        for method, path, body in (
            ("GET", f"/v1/kmip/scope/{theirs}/role", None),
            ("POST", f"/v1/kmip/scope/{theirs}/role/r", {"operation_all": True}),
            ("POST", f"/v1/kmip/scope/{theirs}/role/r/credential/generate", {}),
            ("DELETE", f"/v1/kmip/scope/{mine}", None),
            ("POST", "/v1/kmip/config", {}),
        ):
            answer = scoped.request(method, path, json=body)
            assert answer.status_code == 403, (path, answer.text)
            assert f"limited to scope {mine}" in answer.json()["errors"][0]


def test_tokens_are_read_from_either_header(cluster: Cluster, root_token: str) -> None:
    with api(cluster, None) as anonymous:
        missing = anonymous.get("/v1/kmip/scope")
        assert missing.status_code == 401 and "X-Keyquorum-Token" in missing.json()["errors"][0]
        bearer = anonymous.get("/v1/kmip/scope",
                               headers={"Authorization": f"Bearer {root_token}"})
        assert bearer.status_code == 200
        wrong = anonymous.get("/v1/kmip/scope", headers={"X-Keyquorum-Token": "kq.nope"})
        assert wrong.status_code == 403


def test_a_token_with_a_ttl_is_refused_once_it_expired(
    cluster: Cluster, admin: httpx.Client
) -> None:
    made = ok(admin.post("/v1/auth/token/create", json={"kind": "read-only", "ttl": "2s"}))
    assert made["expires_at"] - made["created_at"] == 2 and not made["expired"]

    # Each node accepts it until it expires, then refuses it with what to do.
    for node_id in cluster.nodes:
        with api(cluster, made["token"], node_id) as client:
            ok(client.get("/v1/kmip/scope"))
    time.sleep(max(0.0, made["expires_at"] - time.time()) + 0.2)
    for node_id in cluster.nodes:
        with api(cluster, made["token"], node_id) as client:
            refusal = client.get("/v1/kmip/scope")
        assert refusal.status_code == 403
        assert "expired" in refusal.json()["errors"][0]
        assert "token create" in refusal.json()["errors"][0]
    listed = {t["accessor"]: t for t in ok(admin.get("/v1/auth/token"))["tokens"]}
    assert listed[made["accessor"]]["expired"] is True

    # Without a ttl a token lasts until it is revoked.
    lasting = ok(admin.post("/v1/auth/token/create", json={"kind": "read-only"}))
    assert lasting["expires_at"] is None


def test_deleting_a_scope_with_objects_needs_force(
    cluster: Cluster, admin: httpx.Client, files: Path
) -> None:
    scope, credential = tenant(admin, files, {"operation_all": True})
    exchange(cluster, "node-1", credential, request((Operation.CREATE, aes_256())))

    refusal = admin.delete(f"/v1/kmip/scope/{scope}")
    assert refusal.status_code == 409 and "force" in refusal.json()["errors"][0]
    assert ok(admin.get(f"/v1/kmip/scope/{scope}"))["objects"] == 1

    ok(admin.delete(f"/v1/kmip/scope/{scope}", params={"force": "true"}))
    assert admin.get(f"/v1/kmip/scope/{scope}").status_code == 404
    wait_for(lambda: all(refused(cluster, n, credential) for n in cluster.nodes), 2,
             "the deleted scope's credential to be refused")


def test_listener_settings_apply_without_a_restart(
    cluster: Cluster, admin: httpx.Client, files: Path
) -> None:
    _, credential = tenant(admin, files, {"operation_discover_versions": True})

    def server_names(node_id: str, maximum: ssl.TLSVersion | None = None) -> list[str] | None:
        node = cluster.nodes[node_id]
        context = ssl.create_default_context(cafile=str(cluster.ca))
        context.load_cert_chain(str(credential.cert), str(credential.key))
        if maximum is not None:
            context.maximum_version = maximum
        try:
            with socket.create_connection((node.kmip_host, node.kmip_port), timeout=5) as raw:
                with context.wrap_socket(raw, server_hostname=node.kmip_host) as tls:
                    der = tls.getpeercert(binary_form=True)
        except (OSError, ssl.SSLError):
            return None
        assert der is not None
        san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
        return san.get_values_for_type(x509.DNSName)

    try:
        ok(admin.post("/v1/kmip/config", json={"server_hostnames": ["kms.example.test"],
                                               "server_ips": ["10.0.0.7"],
                                               "tls_min_version": "1.3"}))
        for node_id in cluster.nodes:
            wait_for(lambda node_id=node_id: "kms.example.test" in (
                server_names(node_id) or []), 5, f"{node_id}'s new server certificate")
            assert server_names(node_id, ssl.TLSVersion.TLSv1_2) is None
    finally:
        ok(admin.post("/v1/kmip/config", json={}))
    for node_id in cluster.nodes:
        wait_for(lambda node_id=node_id: server_names(node_id, ssl.TLSVersion.TLSv1_2), 5,
                 f"{node_id} to offer TLS 1.2 again")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def tls_to(cluster: Cluster, port: int, credential: Credential) -> ssl.SSLSocket:
    """A TLS connection with ``credential`` to 127.0.0.1:``port``; OSError if refused."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return client_context(cluster, credential).wrap_socket(raw, server_hostname="127.0.0.1")


def discovers(tls: ssl.SSLSocket) -> bool:
    """Whether Discover Versions on ``tls`` is answered successfully."""
    tls.sendall(encode_message(request(
        (Operation.DISCOVER_VERSIONS, DiscoverVersionsRequestPayload()))))
    try:
        data = read_message(tls)
    except ConnectionError:
        return False
    return response(data).batch_items[0].result_status == ResultStatus.SUCCESS


def serves_on(cluster: Cluster, port: int, credential: Credential) -> bool:
    try:
        with tls_to(cluster, port, credential) as tls:
            return discovers(tls)
    except (OSError, ssl.SSLError):
        return False


def test_the_listener_moves_to_new_addresses_on_every_node_without_a_restart(
    cluster: Cluster, admin: httpx.Client, files: Path
) -> None:
    _, credential = tenant(admin, files, {"operation_discover_versions": True})
    old = {node_id: node.kmip_port for node_id, node in cluster.nodes.items()}
    new = {node_id: free_port() for node_id in cluster.nodes}
    # A connection made before the move, which must be allowed to finish after it.
    before = tls_to(cluster, old["node-3"], credential)

    try:
        view = ok(admin.post("/v1/kmip/config", json={"node_listen_addrs": {
            node_id: [f"127.0.0.1:{port}"] for node_id, port in new.items()}}))
        assert view["node_listens_on"] == [f"127.0.0.1:{new['node-1']}"]

        # Every node serves on its new port and refuses on its old one.
        for node_id in cluster.nodes:
            wait_for(lambda node_id=node_id: serves_on(cluster, new[node_id], credential), 5,
                     f"{node_id} to serve KMIP on its new port")
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", old[node_id]), timeout=5).close()
        assert discovers(before)
        before.close()
    finally:
        # Without a listen setting, each node goes back to its node.toml address.
        ok(admin.post("/v1/kmip/config", json={}))
    for node_id in cluster.nodes:
        wait_for(lambda node_id=node_id: serves_on(cluster, old[node_id], credential), 5,
                 f"{node_id} to serve on its configured port again")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", new[node_id]), timeout=5).close()


# Bad input: every endpoint answers 4xx with a message that says what to fix.


def test_the_openapi_description_is_served(cluster: Cluster) -> None:
    with api(cluster, None) as anonymous:
        description = ok(anonymous.get("/v1/openapi.json"))
    assert "/v1/kmip/scope/{scope}/role/{role}/credential/generate" in description["paths"]
    assert "operation_destroy" in description["components"]["schemas"]["RoleBody"]["properties"]


BAD_INPUT: list[tuple[str, str, Any, int, str]] = [
    # (method, path, body, status, words the message must hold)
    ("GET", "/v1/kmip/scope/bad%20name", None, 400, "letters, digits"),
    ("POST", "/v1/kmip/scope/bad!name", None, 400, "not allowed"),
    ("POST", "/v1/kmip/scope/default", None, 409, "already exists"),
    ("DELETE", "/v1/kmip/scope/no-such-scope", None, 404, "no scope"),
    ("GET", "/v1/kmip/scope/no-such-scope/role", None, 404, "no scope"),
    ("POST", "/v1/kmip/scope/default/role/r2", {"operation_destory": True}, 422,
     "operation_destory: unknown field"),
    ("POST", "/v1/kmip/scope/default/role/r2", {}, 400, "allows no operation"),
    ("POST", "/v1/kmip/scope/default/role/r2",
     {"operation_get": True, "tls_client_key_type": "dsa"}, 422, "tls_client_key_type"),
    ("POST", "/v1/kmip/scope/default/role/r2",
     {"operation_get": True, "tls_client_key_bits": 1024}, 400, "must be one of 256"),
    ("POST", "/v1/kmip/scope/default/role/r2",
     {"operation_get": True, "tls_client_ttl": "forever"}, 400, "not a duration"),
    ("POST", "/v1/kmip/scope/default/role/r2",
     {"operation_none": True, "operation_get": True}, 400, "cannot be combined"),
    ("POST", "/v1/kmip/scope/no-such-scope/role/r", {"operation_get": True}, 404,
     "create it first"),
    ("GET", "/v1/kmip/scope/default/role/no-such-role", None, 404, "write it first"),
    ("DELETE", "/v1/kmip/scope/default/role/no-such-role", None, 404, "no role"),
    ("POST", "/v1/kmip/scope/default/role/admin/credential/generate", {"format": "jks"}, 422,
     "format:"),
    ("POST", "/v1/kmip/scope/default/role/admin/credential/generate",
     {"sans": ["not a name"]}, 400, "neither a DNS name nor an IP"),
    ("POST", "/v1/kmip/scope/default/role/no-such-role/credential/generate", {}, 404,
     "write it first"),
    ("POST", "/v1/kmip/scope/default/role/admin/credential/sign", {"csr": "hello"}, 400,
     "BEGIN CERTIFICATE REQUEST"),
    ("POST", "/v1/kmip/scope/default/role/admin/credential/sign", {}, 422, "csr: required"),
    ("GET", "/v1/kmip/scope/default/role/admin/credential/lookup", None, 422,
     "serial_number: required"),
    ("GET", "/v1/kmip/scope/default/role/admin/credential/lookup?serial_number=xyz", None, 400,
     "hex"),
    ("GET", "/v1/kmip/scope/default/role/admin/credential/lookup?serial_number=abc", None, 404,
     "no credential"),
    ("POST", "/v1/kmip/scope/default/role/admin/credential/revoke", {"serial_number": "abc"},
     404, "no credential"),
    ("GET", "/v1/kmip/scope/default/role/no-such-role/credential", None, 404, "no role"),
    ("POST", "/v1/kmip/ca", {"name": "x", "certificate": "nope", "scope": "default",
                             "role": "admin"}, 400, "not a PEM certificate"),
    ("POST", "/v1/kmip/ca", {"name": "x", "certificate": "nope"}, 400, "not a PEM"),
    ("POST", "/v1/kmip/ca", {"certificate": "x"}, 422, "name: required"),
    ("POST", "/v1/kmip/ca", {"name": "x", "certificate": "x", "scope_field": "L"}, 422,
     "scope_field"),
    ("DELETE", "/v1/kmip/ca/no-such-ca", None, 404, "no imported CA"),
    ("POST", "/v1/kmip/ca/cluster", {"key_bits": 1000}, 400, "key_bits"),
    ("POST", "/v1/kmip/ca/cluster", {}, 409, "already set"),
    ("POST", "/v1/kmip/config", {"tls_min_version": "1.0"}, 422, "tls_min_version"),
    ("POST", "/v1/kmip/config", {"tls_cipher_suites": "NOPE"}, 400, "OpenSSL cipher list"),
    ("POST", "/v1/kmip/config", {"server_ips": ["10.0.0.300"]}, 400, "not an IP address"),
    ("POST", "/v1/kmip/config", {"server_hostnames": ["bad host"]}, 400, "not a DNS name"),
    ("POST", "/v1/auth/token/create", {"kind": "god"}, 422, "kind"),
    ("POST", "/v1/auth/token/create", {"kind": "scoped"}, 400, "give scope"),
    ("POST", "/v1/auth/token/create", {"kind": "scoped", "scope": "no-such-scope"}, 404,
     "no scope"),
    ("POST", "/v1/auth/token/revoke", {"accessor": "nope"}, 404, "no token"),
    ("POST", "/v1/auth/token/revoke", {}, 422, "accessor: required"),
    ("POST", "/v1/auth/token/create", {"kind": "read-only", "ttl": "soon"}, 400,
     "not a duration"),
    ("POST", "/v1/auth/token/create", {"kind": "read-only", "ttl": 0}, 400,
     "leave it out"),
    ("POST", "/v1/auth/token/create", {"kind": "read-only", "ttl": "4000d"}, 400,
     "315360000 seconds"),
    ("POST", "/v1/kmip/config", {"listen_addrs": ["5696"]}, 400, "host:port"),
    ("POST", "/v1/kmip/config", {"listen_addrs": ["127.0.0.1:70000"]}, 400, "1 to 65535"),
    ("POST", "/v1/kmip/config", {"listen_addrs": ["::1:5696"]}, 400, "in brackets"),
    ("POST", "/v1/kmip/config", {"node_listen_addrs": {"node-1": []}}, 400,
     "at least one host:port"),
    ("POST", "/v1/kmip/config", {"node_listen_addrs": {"bad node": ["h:1"]}}, 400,
     "node name"),
    ("POST", "/v1/kmip/config", {"node_listen_addrs": ["h:1"]}, 422, "node_listen_addrs"),
    ("POST", "/v1/kmip/scope/default/role/admin/credential/revoke", {"serial_number": "xyz"},
     400, "hex"),
    ("POST", "/v1/kmip/scope/default/role/r2", "not json", 422, "JSON"),
    ("GET", "/v1/no/such/path", None, 404, "openapi.json"),
    ("PUT", "/v1/kmip/scope", None, 405, "not allowed"),
]


# The tenancy routes, as the node's OpenAPI description lists them.
TENANCY_TAGS = {"scopes", "roles", "credentials", "ca", "config", "tokens"}


def tenancy_routes(cluster: Cluster) -> list[tuple[str, str, bool]]:
    """(method, path template, whether it takes input besides the token) of each route."""
    with api(cluster, None) as anonymous:
        paths = ok(anonymous.get("/v1/openapi.json"))["paths"]
    return [(method.upper(), path, bool(spec.get("parameters") or spec.get("requestBody")))
            for path, methods in paths.items() for method, spec in methods.items()
            if TENANCY_TAGS & set(spec.get("tags", ()))]


def test_every_route_that_takes_input_has_a_bad_input_case(cluster: Cluster) -> None:
    # New routes are held to it too: this fails until BAD_INPUT has a case for them.
    routes = tenancy_routes(cluster)
    assert len(routes) >= 20
    for method, template, takes_input in routes:
        pattern = re.compile(re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + r"(\?.*)?")
        covered = any(m == method and pattern.fullmatch(path) for m, path, *_ in BAD_INPUT)
        assert covered or not takes_input, f"no bad-input case for {method} {template}"


def test_every_route_refuses_a_missing_or_unknown_token(cluster: Cluster) -> None:
    for method, template, _ in tenancy_routes(cluster):
        path = re.sub(r"\{[^}]+\}", "default", template)
        for token, status, words in ((None, 401, "no token"), ("kq.wrong", 403, "not valid")):
            with api(cluster, token) as client:
                answer = client.request(method, path, json={} if method == "POST" else None)
            assert answer.status_code == status, (method, path, answer.text)
            assert words in answer.json()["errors"][0], (method, path, answer.text)


@pytest.mark.parametrize(("method", "path", "body", "status", "words"), BAD_INPUT,
                         ids=[f"{m} {p} {s}" for m, p, _, s, _ in BAD_INPUT])
def test_bad_input_gets_a_4xx_that_says_what_to_fix(
    admin: httpx.Client, method: str, path: str, body: Any, status: int, words: str
) -> None:
    if isinstance(body, str):
        answer = admin.request(method, path, content=body,
                               headers={"Content-Type": "application/json"})
    else:
        answer = admin.request(method, path, json=body)
    assert answer.status_code == status, answer.text
    message = " ".join(answer.json()["errors"])
    assert words in message, message


# The CLI over the same API.


def keyquorum(cluster: Cluster, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KEYQUORUM_ADDR=cluster.nodes["node-2"].api,
               KEYQUORUM_TOKEN=token, KEYQUORUM_CACERT=str(cluster.ca))
    return subprocess.run([sys.executable, "-m", "keyquorum.cluster.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_the_cli_sets_up_a_tenant_and_writes_a_vcenter_bundle(
    cluster: Cluster, root_token: str, files: Path
) -> None:
    scope = unique("cli")
    assert keyquorum(cluster, root_token, "scope", "create", scope).returncode == 0
    listed = keyquorum(cluster, root_token, "scope", "list")
    assert listed.returncode == 0 and scope in listed.stdout.split()

    written = keyquorum(cluster, root_token, "role", "write", scope, "vcenter",
                        "--operation", "create", "--operation", "get",
                        "--operation", "discover_versions", "--operation", "query",
                        "--operation", "locate", "--operation", "get_attributes",
                        "--operation", "activate")
    assert written.returncode == 0, written.stderr
    read = keyquorum(cluster, root_token, "role", "read", scope, "vcenter", "--json")
    assert "operation_create" in json.loads(read.stdout)["operations"]

    bundle = files / "vcenter.pem"
    generated = keyquorum(cluster, root_token, "credential", "generate", "--scope", scope,
                          "--role", "vcenter", "--format", "pem_bundle", "-o", str(bundle))
    assert generated.returncode == 0, generated.stderr
    with pykmip(cluster, "node-1", bundle, bundle) as client:
        uid = client.create(enums.CryptographicAlgorithm.AES, 256)
        with pytest.raises(exceptions.KmipOperationFailure) as failure:
            client.destroy(uid)
        assert failure.value.reason == enums.ResultReason.PERMISSION_DENIED

    table = keyquorum(cluster, root_token, "credential", "list", "--scope", scope,
                      "--role", "vcenter")
    serial = f"{x509.load_pem_x509_certificate(bundle.read_bytes()).serial_number:x}"
    assert table.returncode == 0 and serial in table.stdout
    revoked = keyquorum(cluster, root_token, "credential", "revoke", "--scope", scope,
                        "--role", "vcenter", "--serial", serial)
    assert revoked.returncode == 0, revoked.stderr


def test_the_cli_makes_lists_and_revokes_tokens(cluster: Cluster, root_token: str) -> None:
    scope = unique("tok")
    assert keyquorum(cluster, root_token, "scope", "create", scope).returncode == 0

    # A scoped token with a lifetime: the table shows its value, policy and expiry.
    created = keyquorum(cluster, root_token, "token", "create", "--policy", f"scope:{scope}",
                        "--ttl", "1h", "--display-name", "ci")
    assert created.returncode == 0, created.stderr
    assert f"scope:{scope}" in created.stdout and "shown only now" in created.stderr
    rows = dict(line.split(None, 1) for line in created.stdout.splitlines()[2:])
    scoped, accessor = rows["token"].strip(), rows["accessor"].strip()
    assert rows["expires"].strip() != "never"

    # It works in its scope and nowhere else.
    assert keyquorum(cluster, scoped, "role", "list", scope).returncode == 0
    outside = keyquorum(cluster, scoped, "role", "list", "default")
    assert outside.returncode == 2 and f"limited to scope {scope}" in outside.stderr

    # The list shows it by accessor, never by value; --json gives the API's answer.
    table = keyquorum(cluster, root_token, "token", "list")
    line = next(row for row in table.stdout.splitlines() if row.startswith(accessor))
    assert f"scope:{scope}" in line and "ci" in line and scoped not in table.stdout
    listed = json.loads(keyquorum(cluster, root_token, "token", "list", "--json").stdout)
    assert accessor in [t["accessor"] for t in listed["tokens"]]

    # A read-only one from --json; then revocation refuses the scoped one.
    read_only = json.loads(keyquorum(cluster, root_token, "token", "create", "--policy",
                                     "read-only", "--json").stdout)
    assert read_only["kind"] == "read-only" and read_only["expires_at"] is None
    assert keyquorum(cluster, root_token, "token", "revoke", accessor).returncode == 0
    revoked = keyquorum(cluster, scoped, "role", "list", scope)
    assert revoked.returncode == 2 and "KEYQUORUM_TOKEN" in revoked.stderr

    # Wrong input says what to write instead.
    bad_policy = keyquorum(cluster, root_token, "token", "create", "--policy", "admin")
    assert bad_policy.returncode == 2 and "scope:NAME" in bad_policy.stderr
    bad_ttl = keyquorum(cluster, root_token, "token", "create", "--policy", "read-only",
                        "--ttl", "soon")
    assert bad_ttl.returncode == 2 and "not a duration" in bad_ttl.stderr
    unknown = keyquorum(cluster, root_token, "token", "revoke", "no-such-accessor")
    assert unknown.returncode == 2 and "no token" in unknown.stderr


def test_the_cli_reads_and_writes_the_listener(
    cluster: Cluster, root_token: str, admin: httpx.Client, files: Path
) -> None:
    _, credential = tenant(admin, files, {"operation_discover_versions": True})
    old, new = cluster.nodes["node-2"].kmip_port, free_port()

    try:
        # One setting at a time: what is not given is kept.
        named = keyquorum(cluster, root_token, "listener", "write", "--server-hostname",
                          "cli.example.test")
        assert named.returncode == 0, named.stderr
        moved = keyquorum(cluster, root_token, "listener", "write", "--node-addr",
                          f"node-2=127.0.0.1:{new}")
        assert moved.returncode == 0, moved.stderr
        row = next(line for line in moved.stdout.splitlines()
                   if line.startswith("node_listen_addrs.node-2 "))
        assert row.split()[1:] == [f"127.0.0.1:{new}"]
        view = json.loads(keyquorum(cluster, root_token, "listener", "read", "--json").stdout)
        assert view["server_hostnames"] == ["cli.example.test"]
        assert view["node_listen_addrs"] == {"node-2": [f"127.0.0.1:{new}"]}
        wait_for(lambda: serves_on(cluster, new, credential), 5, "node-2 on its new port")
        assert not serves_on(cluster, old, credential)

        table = keyquorum(cluster, root_token, "listener", "read")
        assert "this node (node-2) listens on" in table.stdout and str(new) in table.stdout

        bad = keyquorum(cluster, root_token, "listener", "write", "--node-addr", "node-2")
        assert bad.returncode == 2 and "NODE=HOST:PORT" in bad.stderr
        refused_port = keyquorum(cluster, root_token, "listener", "write", "--listen-addr",
                                 "127.0.0.1:99999")
        assert refused_port.returncode == 2 and "1 to 65535" in refused_port.stderr
    finally:
        reset = keyquorum(cluster, root_token, "listener", "write", "--reset")
        assert reset.returncode == 0, reset.stderr
    wait_for(lambda: serves_on(cluster, old, credential), 5, "node-2 back on its port")


def test_the_cli_says_what_to_do_and_exits_with_the_right_code(
    cluster: Cluster, root_token: str
) -> None:
    missing = keyquorum(cluster, root_token, "role", "read", "no-such-scope", "r")
    assert missing.returncode == 2 and "create it first" in missing.stderr
    assert "Traceback" not in missing.stderr

    bad_token = keyquorum(cluster, "kq.wrong", "scope", "list")
    assert bad_token.returncode == 2 and "KEYQUORUM_TOKEN" in bad_token.stderr

    env = dict(os.environ, KEYQUORUM_ADDR="https://127.0.0.1:1", KEYQUORUM_TOKEN=root_token,
               KEYQUORUM_CACERT=str(cluster.ca))
    unreachable = subprocess.run([sys.executable, "-m", "keyquorum.cluster.cli", "scope",
                                  "list"], env=env, capture_output=True, text=True, timeout=60)
    assert unreachable.returncode == 1 and "KEYQUORUM_ADDR" in unreachable.stderr

    csr = keyquorum(cluster, root_token, "credential", "sign", "--scope", "default", "--role",
                    "admin", "--csr", "/no/such/file.csr")
    assert csr.returncode == 2
