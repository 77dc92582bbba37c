"""Notify and Put: the leader pushes a scope's changes to the client endpoints registered.

The unit tests check which change becomes which message; the cluster tests run a
real 3-node cluster and, in this process, a real mutual-TLS KMIP listener standing
for the client's endpoint, which decodes what arrives with keyquorum's own codec.
"""

from __future__ import annotations

import os
import pickle
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from harness import Cluster, wait_for
from kmip.core import enums
from kmip.pie.client import ProxyKmipClient

from keyquorum.cluster.cluster_state import ClusterState
from keyquorum.cluster.notify import ChangeKind, ObjectChange, object_changes, watched
from keyquorum.cluster.notify_state import NotifyEndpoint, SetNotifyEndpoint
from keyquorum.cluster.pki import CertificateAuthority, issue_certificate
from keyquorum.cluster.state import (
    AddAttribute,
    CreateFromSources,
    CreateObject,
    ScopeName,
    StoredAttribute,
    UniqueIdentifier,
)
from keyquorum.cluster.tenancy import CreateScope, Refused
from keyquorum.kmip.messages import (
    RequestMessage,
    ResponseBatchItem,
    ResponseHeader,
    ResponseMessage,
    decode_message,
    encode_message,
)
from keyquorum.kmip.operations.server_ops import offered_operations
from keyquorum.kmip.payloads import ProtocolVersion
from keyquorum.kmip.tables import ObjectType, Operation, PutFunction, ResultStatus, Tag
from keyquorum.kmip.ttlv import NEED_DATA, FrameReader, Item, ItemType

SCOPE = ScopeName("s")


# Which change becomes which message.


def create(uid: str) -> CreateObject:
    return CreateObject(SCOPE, UniqueIdentifier(uid), ObjectType.SECRET_DATA, (), b"", 1)


def test_query_offers_notify_and_put_in_every_version_that_has_them() -> None:
    assert {Operation.NOTIFY, Operation.PUT} <= set(offered_operations((1, 0)))
    assert {Operation.NOTIFY, Operation.PUT} <= set(offered_operations((2, 1)))


def test_a_created_object_is_put_new_and_a_replacement_put_replace() -> None:
    assert object_changes(create("a"), {}, lambda uid: None) == [
        ObjectChange(SCOPE, UniqueIdentifier("a"), ChangeKind.NEW)]

    state = ClusterState()
    state.apply(CreateScope(SCOPE, 1))
    state.apply(create("old"))
    before = state.keys.get(SCOPE, "old")
    link = Item(Tag.ATTRIBUTE_VALUE, ItemType.STRUCTURE, [
        Item(Tag.LINK_TYPE, ItemType.ENUMERATION, 0x0103),
        Item(Tag.LINKED_OBJECT_IDENTIFIER, ItemType.TEXT_STRING, "new")])
    rekey = CreateFromSources(SCOPE, (create("new"),), ((UniqueIdentifier("old"), link),),
                              ((UniqueIdentifier("old"), UniqueIdentifier("new")),), 2)
    assert watched(rekey) == (SCOPE, (UniqueIdentifier("old"),))
    state.apply(rekey)

    changes = object_changes(rekey, {UniqueIdentifier("old"): before},
                             lambda uid: state.keys.get(SCOPE, uid))

    assert changes[0] == ObjectChange(SCOPE, UniqueIdentifier("new"), ChangeKind.REPLACE,
                                      replaced=UniqueIdentifier("old"))
    assert changes[1].kind is ChangeKind.ATTRIBUTES and "Link" in changes[1].changed


def test_cluster_state_reports_changes_only_for_scopes_with_endpoints() -> None:
    state = ClusterState()
    seen: list[ObjectChange] = []
    state.on_object_change = seen.extend
    state.apply(CreateScope(SCOPE, 1))
    state.apply(CreateScope(ScopeName("quiet"), 1))
    state.apply(SetNotifyEndpoint(NotifyEndpoint(SCOPE, "e", "127.0.0.1", 5696)))

    state.apply(create("a"))
    state.apply(CreateObject(ScopeName("quiet"), UniqueIdentifier("b"),
                             ObjectType.SECRET_DATA, (), b"", 1))
    state.apply(AddAttribute(SCOPE, UniqueIdentifier("a"), StoredAttribute(
        "x-note", Item(Tag.ATTRIBUTE_VALUE, ItemType.TEXT_STRING, "hi")), 2))

    assert [(c.uid, c.kind) for c in seen] == [("a", ChangeKind.NEW),
                                               ("a", ChangeKind.ATTRIBUTES)]
    assert set(seen[1].changed) >= {"x-note", "Last Change Date"}


def test_endpoints_are_refused_for_missing_scopes_and_survive_a_snapshot() -> None:
    state = ClusterState()
    endpoint = NotifyEndpoint(SCOPE, "e", "127.0.0.1", 5696)

    assert isinstance(state.apply(SetNotifyEndpoint(endpoint)), Refused)
    state.apply(CreateScope(SCOPE, 1))
    state.apply(SetNotifyEndpoint(endpoint))
    restored = ClusterState()
    restored.restore(state.snapshot())

    assert restored.notify.endpoints(SCOPE) == [endpoint]
    assert pickle.loads(state.snapshot())["notify"]


# On a real cluster, with a real endpoint.


class Endpoint:
    """A client's KMIP listener: mutual TLS, answers Success, keeps what it got."""

    def __init__(self, ca: CertificateAuthority, ca_file: Path, folder: Path) -> None:
        issued = issue_certificate(ca, "endpoint", sans=["127.0.0.1"], ttl=timedelta(days=1))
        issued.write(folder / "endpoint.pem", folder / "endpoint.key")
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(folder / "endpoint.pem", folder / "endpoint.key")
        self._context.load_verify_locations(cafile=str(ca_file))
        self._context.verify_mode = ssl.CERT_REQUIRED
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.received: list[tuple[str, RequestMessage]] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self._server.accept()
            except OSError:
                return
            try:
                with self._context.wrap_socket(raw, server_side=True) as tls:
                    self._answer(tls)
            except (OSError, ssl.SSLError):
                continue

    def _answer(self, tls: ssl.SSLSocket) -> None:
        peer = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")
        sender = str(peer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
        frames = FrameReader()
        while (frame := frames.next_frame()) is NEED_DATA:
            frames.feed(tls.recv(65536))
        assert isinstance(frame, bytes)
        message = decode_message(frame)
        assert isinstance(message, RequestMessage)
        self.received.append((sender, message))
        item = message.batch_items[0]
        tls.sendall(encode_message(ResponseMessage(
            header=ResponseHeader(protocol_version=message.header.protocol_version,
                                  time_stamp=datetime.now(UTC).replace(microsecond=0),
                                  batch_count=1),
            batch_items=(ResponseBatchItem(operation=item.operation,
                                           result_status=ResultStatus.SUCCESS),))))

    def messages(self, operation: Operation, uid: str) -> list[tuple[str, Any]]:
        return [(sender, m.batch_items[0].payload) for sender, m in list(self.received)
                if m.batch_items[0].operation == operation
                and m.batch_items[0].payload.unique_identifier == uid]

    def close(self) -> None:
        self._server.close()


@pytest.fixture(scope="module")
def endpoint(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    ca = CertificateAuthority.load(cluster.ca, cluster.directory / "ca" / "ca.key")
    listening = Endpoint(ca, cluster.ca, tmp_path_factory.mktemp("endpoint"))
    yield listening
    listening.close()


@pytest.fixture(scope="module")
def admin(cluster: Cluster) -> Iterator[httpx.Client]:
    token = cluster.admin_token
    verify = ssl.create_default_context(cafile=str(cluster.ca))
    with httpx.Client(base_url=cluster.nodes["node-1"].api, verify=verify, timeout=20,
                      headers={"X-Keyquorum-Token": token}) as client:
        yield client


def tenant(admin: httpx.Client, folder: Path) -> tuple[str, Path, Path]:
    scope = f"n-{uuid.uuid4().hex[:8]}"
    for path, body in ((f"/v1/kmip/scope/{scope}", None),
                       (f"/v1/kmip/scope/{scope}/role/r", {"operation_all": True})):
        assert admin.post(path, json=body).status_code == 200
    answer = admin.post(f"/v1/kmip/scope/{scope}/role/r/credential/generate",
                        json={"format": "pem"}).json()
    cert, key = folder / f"{scope}.pem", folder / f"{scope}.key"
    cert.write_text(answer["certificate"])
    key.write_text(answer["private_key"])
    return scope, cert, key


def client(cluster: Cluster, node_id: str, cert: Path, key: Path) -> ProxyKmipClient:
    node = cluster.nodes[node_id]
    return ProxyKmipClient(hostname=node.kmip_host, port=node.kmip_port, cert=str(cert),
                           key=str(key), ca=str(cluster.ca), config_file=os.devnull)


def test_the_leader_puts_new_keys_and_notifies_changes_of_its_scope_only(
    cluster: Cluster, endpoint: Endpoint, admin: httpx.Client, tmp_path: Path
) -> None:
    scope, cert, key = tenant(admin, tmp_path)
    other, other_cert, other_key = tenant(admin, tmp_path)
    registered = admin.post(f"/v1/kmip/scope/{scope}/notify-endpoint/app",
                            json={"address": f"127.0.0.1:{endpoint.port}"})
    assert registered.status_code == 200, registered.text
    leader = cluster.leader()
    follower = cluster.followers(leader)[0]

    # A key of another scope first, then one of ours, created through a follower.
    with client(cluster, follower, other_cert, other_key) as theirs:
        elsewhere = theirs.create(enums.CryptographicAlgorithm.AES, 128)
    with client(cluster, follower, cert, key) as ours:
        uid = ours.create(enums.CryptographicAlgorithm.AES, 256)
        puts = wait_for(lambda: endpoint.messages(Operation.PUT, uid), 15, "the Put")
        ours.activate(uid)
        notices = wait_for(lambda: endpoint.messages(Operation.NOTIFY, uid), 15, "the Notify")
        replacement = ours.rekey(uid=uid)
        replaced = wait_for(lambda: endpoint.messages(Operation.PUT, replacement), 15,
                            "the Put of the replacement")

    # Put New with the key itself, sent by the leader alone.
    (sender, put), = puts
    assert sender == leader
    assert put.put_function == PutFunction.NEW
    assert len(put.object.key_block.key_value.key_material) == 32

    # Notify with the state as it is now.
    sender, notice = notices[0]
    assert sender == leader
    changed = {a.name: a.value for a in notice.attribute_list}
    assert changed["State"].value == enums.State.ACTIVE.value
    assert "Activation Date" in changed

    # Re-key: Put Replace naming the old key, and a Notify of the old key's new Link.
    (sender, put), = replaced
    assert sender == leader
    assert (put.put_function, put.replaced_unique_identifier) == (PutFunction.REPLACE, uid)
    wait_for(lambda: any("Link" in {a.name for a in n.attribute_list}
                         for _, n in endpoint.messages(Operation.NOTIFY, uid)),
             15, "the Notify of the old key's Link")

    # Nothing of the scope without an endpoint.
    assert not endpoint.messages(Operation.PUT, elsewhere)
    del other


def test_a_failing_endpoint_is_retried_and_each_failure_logged(
    cluster: Cluster, endpoint: Endpoint, admin: httpx.Client, tmp_path: Path
) -> None:
    scope, cert, key = tenant(admin, tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as probe:
        closed_port = probe.getsockname()[1]
    for name, port in (("down", closed_port), ("up", endpoint.port)):
        assert admin.post(f"/v1/kmip/scope/{scope}/notify-endpoint/{name}",
                          json={"address": f"127.0.0.1:{port}"}).status_code == 200

    with client(cluster, "node-1", cert, key) as ours:
        uid = ours.create(enums.CryptographicAlgorithm.AES, 128)
    wait_for(lambda: endpoint.messages(Operation.PUT, uid), 20, "the Put to the live one")

    log = cluster.directory / "nodes" / cluster.leader() / "node.log"
    def failures() -> list[str] | None:
        lines = [line for line in log.read_text().splitlines()
                 if "notify_delivery_failed endpoint=down" in line and uid in line]
        return lines if len(lines) >= 3 else None

    lines = wait_for(failures, 15, "three failure lines")
    assert [f"attempt={n}" in line for n, line in enumerate(lines, 1)] == [True] * 3

    # The leader's metrics count them, and what the live endpoint took.
    verify = ssl.create_default_context(cafile=str(cluster.ca))
    text = httpx.get(f"{cluster.nodes[cluster.leader()].api}/v1/sys/metrics", verify=verify,
                     timeout=15).text
    samples = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
               if line.startswith("keyquorum_notify_")}
    assert samples["keyquorum_notify_failures_total"] >= 3
    assert samples["keyquorum_notify_sent_total"] >= 1


def test_endpoint_registration_says_what_is_wrong(admin: httpx.Client, tmp_path: Path) -> None:
    scope, _, _ = tenant(admin, tmp_path)
    base = f"/v1/kmip/scope/{scope}/notify-endpoint"

    bad_address = admin.post(f"{base}/e", json={"address": "no-port"})
    bad_version = admin.post(f"{base}/e", json={"address": "h:1", "kmip_version": "9.9"})
    no_scope = admin.post("/v1/kmip/scope/missing-scope/notify-endpoint/e",
                          json={"address": "h:1"})
    admin.post(f"{base}/e", json={"address": "h:1"})
    listed = admin.get(base).json()["endpoints"]
    removed = admin.delete(f"{base}/e")

    assert bad_address.status_code == 400 and "host:port" in bad_address.text
    assert bad_version.status_code == 400 and "kmip_version" in bad_version.text
    assert no_scope.status_code == 404
    assert [(e["name"], e["address"]) for e in listed] == [("e", "h:1")]
    assert removed.status_code == 200 and admin.get(base).json()["endpoints"] == []


def test_protocol_version_of_the_endpoint_is_used(endpoint: Endpoint) -> None:
    # Every message so far went to 1.4 endpoints: the default a registration takes.
    assert endpoint.received
    assert all(m.header.protocol_version == ProtocolVersion(major=1, minor=4)
               for _, m in endpoint.received)
