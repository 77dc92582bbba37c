"""Encryption at rest on real clusters: nothing on disk holds key bytes; seal, unseal,
rotation and an encrypted snapshot restored onto a fresh cluster.

The clusters are `keyquorum dev` clusters, which unseal themselves from a key file;
DIR/secrets/unseal-key is that key as an unseal share.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import secrets
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from disk_search import files_under, forms, read_if_present
from harness import Cluster, wait_for
from kmip.core import enums
from kmip.pie import exceptions, objects
from kmip.pie.client import ProxyKmipClient

from keyquorum.cluster.audit import hmac_of
from keyquorum.cluster.audit_state import AuditDevice

SECRETS = {f"key-{n}": secrets.token_bytes(32) for n in range(3)}
# A value a caller puts in a token's metadata; it may be as secret as the token's value.
METADATA_SECRET = "metadata-" + secrets.token_hex(16)


def unseal_key(cluster: Cluster) -> str:
    return (cluster.directory / "secrets" / "unseal-key").read_text().strip()


def api(cluster: Cluster, node_id: str, method: str, path: str,
        body: dict[str, Any] | None = None, token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Keyquorum-Token"] = token
    request = urllib.request.Request(
        cluster.nodes[node_id].api + path, method=method, headers=headers,
        data=None if body is None else json.dumps(body).encode())
    context = ssl.create_default_context(cafile=str(cluster.ca))
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def operator(cluster: Cluster, node_id: str, *args: str) -> subprocess.CompletedProcess[str]:
    return cluster.operator(node_id, *args, token=cluster.admin_token)


def compact_often(config: Path) -> None:
    text = config.read_text()
    config.write_text(text.replace("[raft]\n", "[raft]\ncompaction_min_entries = 100\n"
                                               "compaction_min_seconds = 1\n", 1))


def pickled_salts(content: bytes, value: bytes, hashed: str) -> list[bytes]:
    """32-byte strings pickled in ``content`` under which ``value`` HMACs to ``hashed``.

    A salt kept in the clear would sit in the journal and dumps as a pickled 32-byte
    string (opcode SHORT_BINBYTES, length 32): every such string is tried as the salt.
    """
    found = []
    start = content.find(b"C\x20")
    while start != -1:
        candidate = content[start + 2:start + 34]
        if len(candidate) == 32 and hmac_of(candidate, value) == hashed:
            found.append(candidate)
        start = content.find(b"C\x20", start + 1)
    return found


def sealed_secrets_in_state(cluster: Cluster) -> tuple[str, str]:
    """An audit device (its salt) and a token with secret metadata; the HMAC of a value."""
    token = cluster.admin_token
    node = cluster.leader()
    status, _ = api(cluster, node, "POST", "/v1/sys/audit/at-rest",
                    {"type": "file", "options": {"path": "audit/{node}.log"}}, token)
    assert status == 200
    status, hashed = api(cluster, node, "POST", "/v1/sys/audit-hash/at-rest",
                         {"input": "probe"}, token)
    assert status == 200

    assert api(cluster, node, "POST", "/v1/kmip/scope/at-rest", None, token)[0] == 200
    status, scoped = api(cluster, node, "POST", "/v1/auth/token/create",
                         {"kind": "scoped", "scope": "at-rest"}, token)
    assert status == 200
    for path, body in (("/v1/transform/transformation/at-rest-tokens",
                        {"type": "tokenization"}),
                       ("/v1/transform/role/at-rest",
                        {"transformations": ["at-rest-tokens"], "scopes": ["at-rest"]})):
        assert api(cluster, node, "POST", path, body, token)[0] == 200
    status, made = api(cluster, node, "POST", "/v1/transform/encode/at-rest",
                       {"transformation": "at-rest-tokens", "value": "4111",
                        "metadata": {"owner": METADATA_SECRET}}, scoped["token"])
    assert status == 200
    status, kept = api(cluster, node, "POST", "/v1/transform/tokens/metadata/at-rest",
                       {"transformation": "at-rest-tokens", "value": made["encoded_value"]},
                       scoped["token"])
    assert status == 200 and kept["metadata"] == {"owner": METADATA_SECRET}
    return hashed["hash"], scoped["token"]


def test_no_file_holds_the_key_bytes_after_compaction_and_a_snapshot(
    cluster: Cluster, tmp_path: Path
) -> None:
    uids = cluster.register_aes(SECRETS)
    audit_hash, _ = sealed_secrets_in_state(cluster)

    # A follower restarted to compact every second writes its whole state to a dump.
    follower = cluster.followers(cluster.leader())[0]
    cluster.kill(follower)
    compact_often(cluster.nodes[follower].config)
    # Time for a machine loaded by other test runs.
    cluster.restart(follower, timeout=120)
    dump = cluster.nodes[follower].config.parent / "data" / "raft" / "raft.dump"
    # The follower may have been killed before the last commands reached it, and its
    # first dumps then hold less than the cluster does: wait for one with all of it.
    def holds_everything() -> bool:
        content = dump.read_bytes() if dump.exists() else b""
        return uids["key-0"].encode() in content and b"at-rest-tokens" in content

    wait_for(holds_everything, 30, "a dump holding the registered objects and the transformation")
    with cluster.pykmip(follower) as client:
        assert client.get(uids["key-2"]).value == SECRETS["key-2"]
    # The dump is written by a forked child; gRPC, whose threads the fork leaves behind,
    # is told not to complain about it on every compaction (cluster/cli.py, server).
    node_log = cluster.nodes[follower].config.parent / "node.log"
    assert b"fork() handlers" not in node_log.read_bytes()

    snapshot = tmp_path / "cluster.snap"
    saved = operator(cluster, follower, "snapshot", "save", str(snapshot))
    assert saved.returncode == 0, saved.stderr
    assert "Saving snapshot" in saved.stderr

    # Every file of the cluster: journals, dumps, logs, configs, and the snapshot.
    files = files_under(cluster.directory, cluster.directory.parent, snapshot)
    assert dump in files and any(p.name == "raft.journal" for p in files)
    assert any(p.name == "node.log" for p in files)
    for path in files:
        content = read_if_present(path)
        for name, material in SECRETS.items():
            for form in forms(material):
                assert form not in content, f"{name} found in {path}"
    # The search would have seen them: the identifiers beside them are in the dump.
    assert all(uid.encode() in dump.read_bytes() for uid in uids.values())

    # The audit device's salt and the token's metadata are sealed too. The salt is
    # unknown to the test: every pickled 32-byte string is tried against the HMAC the
    # device gave for "probe" (the search finds a salt kept in the clear, see below).
    for path in files:
        content = read_if_present(path)
        assert not pickled_salts(content, b"probe", audit_hash), f"audit salt in {path}"
        for form in forms(METADATA_SECRET.encode()):
            assert form not in content, f"token metadata found in {path}"
    assert b"at-rest-tokens" in dump.read_bytes()
    plain_salt = secrets.token_bytes(32)
    legacy = pickle.dumps(AuditDevice("old", "file", (("path", "a.log"),), plain_salt))
    assert pickled_salts(legacy, b"probe", hmac_of(plain_salt, b"probe")) == [plain_salt]
    assert api(cluster, cluster.leader(), "DELETE", "/v1/sys/audit/at-rest", None,
               cluster.admin_token)[0] == 200

    # The cluster CA's private key (the dev CA, installed through the admin API) is
    # in the state too, sealed: no node's data folder and no snapshot holds it. The
    # dev launcher's own copy under ca/ is the operator's file, outside the nodes.
    ca_key = serialization.load_pem_private_key(
        (cluster.directory / "ca" / "ca.key").read_bytes(), password=None)
    der = ca_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    pem = ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    node_files = files_under(*(node.config.parent / "data" for node in cluster.nodes.values()),
                             snapshot)
    for path in node_files:
        content = read_if_present(path)
        assert der not in content and pem.splitlines()[1] not in content, f"CA key in {path}"


def test_a_sealed_node_serves_no_kmip_and_reports_503_until_unsealed(cluster: Cluster) -> None:
    uids = cluster.register_aes(SECRETS)
    node = cluster.followers(cluster.leader())[-1]

    sealed = operator(cluster, node, "seal")
    assert sealed.returncode == 0, sealed.stderr
    health = cluster.health(node)
    assert health is not None and health[0] == 503 and health[1]["sealed"] is True
    with cluster.pykmip(node) as client:
        with pytest.raises(exceptions.KmipOperationFailure, match="node is sealed"):
            client.get(uids["key-0"])
        with pytest.raises(exceptions.KmipOperationFailure, match="node is sealed"):
            client.create(enums.CryptographicAlgorithm.AES, 256)
    # The other nodes serve on; this one keeps replicating meanwhile.
    with cluster.pykmip(cluster.leader()) as client:
        written = client.create(enums.CryptographicAlgorithm.AES, 128)

    # A wrong share is refused; the right one unseals (threshold 1 in dev mode).
    wrong = base64.b64encode(b"\x01" + secrets.token_bytes(32)).decode()
    refused = operator(cluster, node, "unseal", wrong)
    assert refused.returncode == 2 and "do not open" in refused.stderr
    status, body = api(cluster, node, "GET", "/v1/sys/seal-status")
    assert (status, body["sealed"], body["progress_text"]) == (200, True, "0 of 1")
    unsealed = operator(cluster, node, "unseal", unseal_key(cluster))
    assert unsealed.returncode == 0 and "unsealed" in unsealed.stdout

    with cluster.pykmip(node) as client:
        assert client.get(uids["key-0"]).value == SECRETS["key-0"]
        assert len(client.get(written).value) == 16


def test_seal_endpoints_need_a_root_token(cluster: Cluster) -> None:
    node = cluster.leader()
    assert api(cluster, node, "POST", "/v1/sys/seal")[0] == 401
    assert api(cluster, node, "POST", "/v1/sys/rotate", token="not-a-token")[0] == 403
    status, body = api(cluster, node, "POST", "/v1/sys/init",
                       {"key_shares": 3, "key_threshold": 2})
    assert status == 409 and "already initialized" in body["errors"][0]


def test_rotation_keeps_old_objects_readable_on_every_node(cluster: Cluster) -> None:
    before = cluster.register_aes(SECRETS)
    versions = {api(cluster, n, "GET", "/v1/sys/seal-status")[1]["keyring_version"]
                for n in cluster.nodes}
    assert len(versions) == 1

    rotated = operator(cluster, cluster.followers(cluster.leader())[0], "rotate")
    assert rotated.returncode == 0, rotated.stderr
    (old,) = versions
    for node_id in cluster.nodes:
        wait_for(lambda n=node_id: api(cluster, n, "GET", "/v1/sys/seal-status")[1]
                 ["keyring_version"] == old + 1, 10, "the new term everywhere")

    with cluster.pykmip(cluster.leader()) as client:
        after = client.register(objects.SecretData(b"written after rotation",
                                                   enums.SecretDataType.PASSWORD))
    for node_id in cluster.nodes:
        with cluster.pykmip(node_id) as client:
            assert client.get(before["key-1"]).value == SECRETS["key-1"]
            assert client.get(after).value == b"written after rotation"


def read_back(node: Any, saving: Cluster, uid: str) -> bool:
    """Whether ``node`` serves ``uid`` to the saving cluster's client, as it was."""
    client = ProxyKmipClient(hostname=node.kmip_host, port=node.kmip_port,
                             cert=str(saving.client_cert), key=str(saving.client_key),
                             ca=str(saving.ca), config_file=os.devnull)
    try:
        with client:
            return bool(client.get(uid).value == SECRETS["key-1"])
    except (OSError, exceptions.KmipOperationFailure, exceptions.ClientConnectionFailure):
        return False


def test_a_snapshot_restores_onto_a_fresh_cluster_with_the_saving_clusters_keys(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    uids = cluster.register_aes(SECRETS)
    snapshot = tmp_path_factory.mktemp("snap") / "a.snap"
    assert operator(cluster, cluster.leader(), "snapshot", "save", str(snapshot)).returncode == 0

    fresh = Cluster(tmp_path_factory.mktemp("fresh") / "cluster")
    fresh.start()
    try:
        target = fresh.leader()
        # Its own keys are not the saving cluster's: refused, nothing changed.
        refused = operator(fresh, target, "snapshot", "restore", str(snapshot),
                           "--key", unseal_key(fresh))
        assert refused.returncode == 2 and "do not open this snapshot" in refused.stderr

        restored = operator(fresh, target, "snapshot", "restore", str(snapshot),
                            "--key", unseal_key(cluster))
        assert restored.returncode == 0, restored.stderr
        assert "Restoring snapshot" in restored.stderr

        # The others now hold a keyring their dev key does not open: sealed, until
        # unsealed with the saving cluster's key.
        for node_id in fresh.followers(target):
            wait_for(lambda n=node_id: api(fresh, n, "GET", "/v1/sys/seal-status")[1]
                     ["sealed"], 60, "the other nodes to seal")
            status, body = api(fresh, node_id, "POST", "/v1/sys/unseal",
                               {"key": unseal_key(cluster)})
            assert status == 200 and body["sealed"] is False

        # The restored tenancy is the saving cluster's: its CA now signs the nodes'
        # certificates and trusts its client credential. A node just unsealed serves
        # its configured certificate until its listener rebuilds (cluster/listener.py
        # polls every 0.2 s), so the first handshakes may still meet the old chain.
        for node_id in fresh.nodes:
            wait_for(lambda n=node_id: read_back(fresh.nodes[n], cluster, uids["key-1"]),
                     15, f"{node_id} to serve the restored key under the restored CA")
    finally:
        fresh.stop()
