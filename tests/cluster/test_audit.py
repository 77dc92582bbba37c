"""Audit on a real 3-node cluster: devices enabled through the API and the CLI, one
record per KMIP batch item and admin call on the node that handled it, no secret in
any record, rotation by SIGHUP, tamper detection by `keyquorum audit verify`, and
requests refused when the only device cannot write.

One cluster serves the module; the tests run in file order, each leaving the
cluster with the file device "main" enabled and writable.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import Cluster, wait_for
from kmip.core import enums
from kmip.pie import exceptions, objects
from kmip_requests import request

from keyquorum.kmip.messages import (
    RequestMessage,
    ResponseMessage,
    decode_message,
    encode_message,
)
from keyquorum.kmip.operations import HANDLERS
from keyquorum.kmip.tables import BatchErrorContinuationOption

KEYQUORUM = [sys.executable, "-m", "keyquorum.cluster.cli"]
KEY = bytes(range(0x40, 0x60))  # 32 bytes we can search for
SECRET = b"correct horse battery staple, 2024"
PLAINTEXT = b"the plaintext nobody may read in the audit trail!"
IV = bytes(range(16))


@pytest.fixture(scope="module")
def root_token(cluster: Cluster) -> str:
    return cluster.admin_token


def api(cluster: Cluster, token: str, node_id: str = "node-1") -> httpx.Client:
    verify = ssl.create_default_context(cafile=str(cluster.ca))
    return httpx.Client(base_url=cluster.nodes[node_id].api, verify=verify, timeout=20,
                        headers={"X-Keyquorum-Token": token})


def cli(cluster: Cluster, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KEYQUORUM_ADDR": cluster.nodes["node-1"].api,
           "KEYQUORUM_TOKEN": token, "KEYQUORUM_CACERT": str(cluster.ca)}
    return subprocess.run([*KEYQUORUM, *args], env=env, capture_output=True, text=True,
                          timeout=60)


def audit_path(cluster: Cluster, token: str, node_id: str, device: str = "main") -> Path:
    with api(cluster, token, node_id) as client:
        devices = client.get("/v1/sys/audit").json()["devices"]
    return Path(next(d["local"]["path"] for d in devices if d["name"] == device))


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture(scope="module")
def enabled(cluster: Cluster, root_token: str) -> dict[str, Path]:
    """The device "main" enabled with the CLI: each node's path."""
    done = cli(cluster, root_token, "audit", "enable", "main", "--type", "file",
               "--option", "path=audit/{node}.log", "--description", "the trail")
    assert done.returncode == 0, done.stderr
    paths = {node_id: audit_path(cluster, root_token, node_id) for node_id in cluster.nodes}
    assert len(set(paths.values())) == 3
    return paths


def test_a_device_enabled_on_one_node_is_listed_and_written_on_every_node(
    cluster: Cluster, root_token: str, enabled: dict[str, Path]
) -> None:
    listed = cli(cluster, root_token, "audit", "list")
    assert listed.returncode == 0 and "main" in listed.stdout and "file" in listed.stdout

    # Each node records the calls it handles, in its own file.
    for node_id in cluster.nodes:
        with api(cluster, root_token, node_id) as client:
            assert client.get("/v1/kmip/scope").status_code == 200
        path = enabled[node_id]
        assert path.parent.parent.name == node_id or node_id in path.name
        calls = [r for r in records(path) if r["type"] == "api_response"]
        assert calls and calls[-1]["operation"] == "GET /v1/kmip/scope"
        assert calls[-1]["node"] == node_id and calls[-1]["status"] == 200
        assert calls[-1]["auth"]["accessor"] == "root"

    # Bad settings are refused with what to fix, and nothing is enabled.
    with api(cluster, root_token) as client:
        wrong = client.post("/v1/sys/audit/x", json={"type": "socket", "options": {}})
        assert wrong.status_code == 400 and "address" in wrong.json()["errors"][0]
        taken = client.post("/v1/sys/audit/main", json={"type": "file",
                                                        "options": {"path": "a.log"}})
        assert taken.status_code == 409
        blocked = client.post("/v1/sys/audit/x", json={"type": "file",
                                                       "options": {"path": "/proc/nope/a"}})
        assert blocked.status_code == 400 and "cannot write" in blocked.json()["errors"][0]


def every_operation_batch() -> RequestMessage:
    # An item per implemented operation, without its payload: each is refused as an
    # Invalid Field, after its request was recorded.
    return request(*((operation, None) for operation in sorted(HANDLERS)),
                   option=BatchErrorContinuationOption.CONTINUE)


def test_every_operation_is_recorded_with_who_what_and_outcome_and_no_secret(
    cluster: Cluster, root_token: str, enabled: dict[str, Path]
) -> None:
    # Real work through node-2 with PyKMIP: keys and secrets whose bytes we know.
    with cluster.pykmip("node-2") as client:
        key_id = client.register(objects.SymmetricKey(
            enums.CryptographicAlgorithm.AES, 256, KEY,
            masks=[enums.CryptographicUsageMask.ENCRYPT, enums.CryptographicUsageMask.DECRYPT]))
        client.activate(key_id)
        fetched = client.get(key_id)
        assert fetched.value == KEY
        parameters = {"block_cipher_mode": enums.BlockCipherMode.CBC,
                      "padding_method": enums.PaddingMethod.PKCS5,
                      "cryptographic_algorithm": enums.CryptographicAlgorithm.AES}
        ciphertext, _ = client.encrypt(PLAINTEXT, uid=key_id,
                                       cryptographic_parameters=parameters,
                                       iv_counter_nonce=IV)
        assert client.decrypt(ciphertext, uid=key_id, cryptographic_parameters=parameters,
                              iv_counter_nonce=IV) == PLAINTEXT
        secret_id = client.register(objects.SecretData(SECRET, enums.SecretDataType.PASSWORD))
        assert client.get(secret_id).value == SECRET
        created = client.create(enums.CryptographicAlgorithm.AES, 256)
        created_key = client.get(created).value
        public_id, private_id = client.create_key_pair(enums.CryptographicAlgorithm.RSA, 2048)
        private_der = client.get(private_id).value
        client.get_attributes(key_id, ["State"])
        client.get_attribute_list(key_id)
        assert key_id in client.locate()
        client.revoke(enums.RevocationReasonCode.CESSATION_OF_OPERATION, created)
        client.destroy(created)
    batch = decode_message(cluster.exchange("node-2", encode_message(every_operation_batch())))
    assert isinstance(batch, ResponseMessage)

    # Admin calls through node-1 whose answers carry secrets: a credential, a token.
    with api(cluster, root_token) as admin:
        assert admin.post("/v1/kmip/scope/audited").status_code == 200
        assert admin.post("/v1/kmip/scope/audited/role/r",
                          json={"operation_all": True}).status_code == 200
        issued = admin.post("/v1/kmip/scope/audited/role/r/credential/generate",
                            json={"format": "pem"}).json()
        token = admin.post("/v1/auth/token/create", json={"kind": "read-only"}).json()["token"]
        key_hash = admin.post("/v1/sys/audit-hash/main",
                              json={"input": KEY.hex(), "encoding": "hex"}).json()["hash"]

    # Every operation kind has its request and its response on the node that ran it.
    kmip = [r for r in records(enabled["node-2"]) if r["type"].startswith("kmip_")]
    for operation in HANDLERS:
        kinds = {r["type"] for r in kmip if r["operation"] == operation.name}
        assert kinds == {"kmip_request", "kmip_response"}, operation
    register = next(r for r in kmip if r["type"] == "kmip_response"
                    and r["operation"] == "REGISTER" and key_id in r["unique_identifiers"])
    assert register["client"]["address"].startswith("127.0.0.1:")
    assert register["client"]["certificate_serial"]
    assert (register["auth"]["scope"], register["auth"]["role"]) == ("default", "admin")
    assert register["result"] == {"status": "SUCCESS", "reason": None, "message": None}
    assert register["duration_ms"] > 0 and register["node"] == "node-2"
    destroy = next(r for r in kmip if r["type"] == "kmip_response"
                   and r["operation"] == "DESTROY" and r["unique_identifiers"] == [created])
    assert destroy["result"]["status"] == "SUCCESS"
    refused = next(r for r in kmip if r["type"] == "kmip_response" and r["operation"] == "GET"
                   and r["result"]["status"] == "OPERATION_FAILED")
    assert refused["result"]["reason"] == "INVALID_FIELD" and refused["result"]["message"]

    # The key registered is findable by its HMAC, from the hash endpoint, in the request.
    request = next(r for r in kmip if r["type"] == "kmip_request" and r["operation"] ==
                   "REGISTER" and key_hash in json.dumps(r))
    assert request["id"] == register["id"]

    # No secret in any node's file, raw, hex or base64.
    secrets_known = [KEY, SECRET, PLAINTEXT, ciphertext, created_key, private_der,
                     root_token.encode(), token.encode(),
                     issued["private_key"].split("-----")[2].strip().encode()]
    for path in enabled.values():
        content = path.read_bytes()
        for secret in secrets_known:
            for form in (secret, secret.hex().encode(), base64.b64encode(secret)):
                assert form[:24] not in content, (path, secret[:8])
        assert cli(cluster, root_token, "audit", "verify", str(path)).returncode == 0


def traffic(cluster: Cluster, node_id: str, stop: threading.Event, done: list[str]) -> None:
    with cluster.pykmip(node_id) as client:
        while not stop.is_set():
            done.append(client.create(enums.CryptographicAlgorithm.AES, 128))


def test_sighup_rotation_loses_no_record(
    cluster: Cluster, root_token: str, enabled: dict[str, Path]
) -> None:
    path = enabled["node-3"]
    rotated = path.with_name(path.name + ".1")
    stop = threading.Event()
    created: list[str] = []
    worker = threading.Thread(target=traffic, args=(cluster, "node-3", stop, created))
    worker.start()
    try:
        wait_for(lambda: len(created) > 5, 30, "traffic")
        # logrotate's way: rename, then SIGHUP; records keep flowing meanwhile.
        path.rename(rotated)
        time.sleep(0.2)
        os.kill(cluster.nodes["node-3"].pid, signal.SIGHUP)
        wait_for(lambda: path.exists() and len(created) > 20, 30, "the reopened file")
    finally:
        stop.set()
        worker.join(30)

    # Every Create answered has its response record, in one file or the other, and the
    # chain runs from the old file into the new one.
    answered = {r["unique_identifiers"][0] for f in (rotated, path) for r in records(f)
                if r["type"] == "kmip_response" and r["operation"] == "CREATE"}
    assert set(created) <= answered
    assert records(path)[0]["type"] == "audit_opened"
    joined = cli(cluster, root_token, "audit", "verify", str(rotated), str(path))
    assert joined.returncode == 0, joined.stdout
    alone = cli(cluster, root_token, "audit", "verify", str(path))
    assert alone.returncode == 0 and "continues from record" in alone.stdout


@pytest.mark.parametrize("tamper, line, problem", [
    ("edit", 3, "altered"), ("delete", 3, "removed"), ("swap", 3, "reordered")])
def test_verify_names_the_first_tampered_line(
    cluster: Cluster, root_token: str, enabled: dict[str, Path], tmp_path: Path,
    tamper: str, line: int, problem: str
) -> None:
    lines = enabled["node-1"].read_bytes().splitlines()
    assert len(lines) > 6
    if tamper == "edit":
        lines[2] = lines[2].replace(b'"status":200', b'"status":201').replace(
            b'"api_', b'"API_', 1)
    elif tamper == "delete":
        del lines[2]
    else:
        lines[2], lines[3] = lines[3], lines[2]
    copy = tmp_path / "tampered.log"
    copy.write_bytes(b"\n".join(lines) + b"\n")

    result = cli(cluster, root_token, "audit", "verify", str(copy))
    assert result.returncode == 1
    assert result.stdout.startswith(f"{copy}:{line}: {problem}:"), result.stdout


def kmip_refusal(cluster: Cluster, node_id: str) -> exceptions.KmipOperationFailure:
    with cluster.pykmip(node_id) as client, pytest.raises(
            exceptions.KmipOperationFailure) as failure:
        client.create(enums.CryptographicAlgorithm.AES, 256)
    return failure.value


def served(cluster: Cluster, node_id: str) -> bool:
    with cluster.pykmip(node_id) as client:
        return bool(client.create(enums.CryptographicAlgorithm.AES, 256))


@pytest.mark.parametrize("fault", ["directory", "full"])
def test_a_node_whose_only_device_cannot_write_refuses_requests(
    cluster: Cluster, root_token: str, enabled: dict[str, Path], fault: str
) -> None:
    path = enabled["node-3"]
    kept = path.with_name(path.name + ".kept")
    path.rename(kept)
    if fault == "directory":
        path.mkdir()  # the file cannot be opened any more
    else:
        path.symlink_to("/dev/full")  # opens, but every write fails: disk full
    os.kill(cluster.nodes["node-3"].pid, signal.SIGHUP)
    try:
        failure = kmip_refusal(cluster, "node-3")
        assert failure.reason == enums.ResultReason.GENERAL_FAILURE
        assert "audit" in failure.message
        with api(cluster, root_token, "node-3") as client:
            answer = client.get("/v1/kmip/scope")
            assert answer.status_code == 503 and "audit" in answer.json()["errors"][0]
            # The health check still answers: load balancers must see the node.
            assert client.get("/v1/sys/health").status_code in (200, 429)
        # The other nodes write their own files and serve.
        assert served(cluster, "node-1")
    finally:
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink()
        kept.rename(path)
        os.kill(cluster.nodes["node-3"].pid, signal.SIGHUP)
    assert wait_for(lambda: served(cluster, "node-3"), 10, "node-3 to serve again")


class Reader:
    """A TCP audit reader that keeps what each connection sends, until it is killed."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.streams: list[bytearray] = []
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)
            self.streams.append(bytearray())
            threading.Thread(target=self._read, args=(connection, self.streams[-1]),
                             daemon=True).start()

    def _read(self, connection: socket.socket, stream: bytearray) -> None:
        with connection:
            try:
                while chunk := connection.recv(65536):
                    stream += chunk
            except OSError:
                pass

    def stream_of(self, node_id: str) -> bytes:
        return next((bytes(s) for s in self.streams if f'"node":"{node_id}"'.encode() in s),
                    b"")

    def kill(self) -> None:
        # shutdown, not just close: a close leaves a socket that another thread is
        # accepting on listening until that accept returns.
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for connection in self.connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:  # the enable probe's connection, closed already
                pass


def test_a_socket_device_whose_reader_is_gone_fails_closed_and_can_be_replaced(
    cluster: Cluster, root_token: str, enabled: dict[str, Path]
) -> None:
    reader = Reader()
    with api(cluster, root_token) as admin:
        assert admin.post("/v1/sys/audit/stream", json={
            "type": "socket", "options": {"address": f"tcp:127.0.0.1:{reader.port}"}},
        ).status_code == 200
        assert admin.delete("/v1/sys/audit/main").status_code == 200
    try:
        assert served(cluster, "node-2")
        wait_for(lambda: b'"operation":"CREATE"' in reader.stream_of("node-2"), 10,
                 "records on the socket")
        reader.kill()

        failure = kmip_refusal(cluster, "node-2")
        assert failure.reason == enums.ResultReason.GENERAL_FAILURE
        assert "audit" in failure.message
    finally:
        # The audit endpoints still answer, so the trail can be repaired.
        with api(cluster, root_token, "node-2") as admin:
            assert admin.delete("/v1/sys/audit/stream").status_code == 200
            # With no device at all requests are served, unaudited (as in Vault).
            assert served(cluster, "node-2")
            assert admin.post("/v1/sys/audit/main", json={
                "type": "file", "options": {"path": "audit/{node}.log"}}).status_code == 200
    assert served(cluster, "node-2")

    # Each node wrote its own chain on its own connection, from an audit_opened record.
    kept = reader.stream_of("node-2").splitlines()
    assert json.loads(kept[0])["type"] == "audit_opened"
    copy = enabled["node-2"].with_name("stream.log")
    copy.write_bytes(b"\n".join(kept) + b"\n")
    assert cli(cluster, root_token, "audit", "verify", str(copy)).returncode == 0
    shutil.move(copy, copy.with_suffix(".done"))
