"""Replication between real 3-node clusters on loopback: primary, performance, DR.

One set of clusters serves the whole module and the tests run in file order, each
leaving the clusters as the next expects: the first three use the primary and the
performance secondary; the DR drill stops the primary and promotes the DR secondary;
the last demotes the old primary and attaches it to the new one.

The clusters share one root key (dev mode's key file), as secondaries of a real
deployment share their primary's unseal keys: the keyring arrives with the state.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import Cluster, wait_for
from kmip.core import enums


@dataclass
class Dc:
    """One cluster and how to call its replication API."""

    cluster: Cluster
    token: str

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             node_id: str | None = None) -> dict[str, Any]:
        node = self.cluster.nodes[node_id or self.cluster.leader()]
        request = urllib.request.Request(
            node.api + "/v1/sys/replication/" + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"X-Keyquorum-Token": self.token, "Content-Type": "application/json"})
        context = ssl.create_default_context(cafile=str(self.cluster.ca))
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{method} {path}: {error.code} {error.read()!r}") from None

    def sys(self, node_id: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        node = self.cluster.nodes[node_id]
        request = urllib.request.Request(
            node.api + "/v1/sys/" + path, method="POST", data=json.dumps(body).encode(),
            headers={"X-Keyquorum-Token": self.token, "Content-Type": "application/json"})
        context = ssl.create_default_context(cafile=str(self.cluster.ca))
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read() or b"{}")
            return answer

    def sequence_on(self, node_id: str) -> int | None:
        """The sequence one node reports, or None while it cannot answer yet."""
        try:
            return int(self.call("GET", "status", node_id=node_id)["sequence"])
        except (AssertionError, OSError):
            return None

    def status(self, digest: bool = False) -> dict[str, Any]:
        return self.call("GET", "status" + ("?digest=true" if digest else ""))


def start(root: Path, name: str, root_key: Path | None = None) -> Dc:
    directory = root / name
    if root_key is not None:
        (directory / "secrets").mkdir(parents=True)
        shutil.copy(root_key, directory / "secrets" / "root-key")
    cluster = Cluster(directory)
    cluster.start()
    token = json.loads((directory / "cluster.json").read_text())["admin_token"]
    return Dc(cluster, token)


def attach(primary: Dc, secondary: Dc, kind: str) -> None:
    wait_for(lambda: len(primary.status()["addresses"]) == 3, 15, "announced addresses")
    token = primary.call("POST", "primary/secondary-token",
                         {"secondary_id": kind, "kind": kind})["token"]
    secondary.call("POST", f"{kind}/secondary/enable", {"token": token})
    wait_for(lambda: secondary.status()["sequence"] == primary.status()["sequence"], 30,
             f"the {kind} secondary to catch up")

    # The primary's keyring came with its state: each node opens it with the unseal
    # key it shares with the primary (as a Vault secondary takes its primary's keys).
    # The seal does not yet follow a keyring replaced wholesale by itself; see report.
    share = (primary.cluster.directory / "secrets" / "unseal-key").read_text().strip()
    for node_id in secondary.cluster.nodes:
        secondary.sys(node_id, "seal", {})
        secondary.sys(node_id, "unseal", {"key": share})


@pytest.fixture(scope="module")
def dcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Dc]]:
    root = tmp_path_factory.mktemp("replication")
    started: dict[str, Dc] = {}
    try:
        started["primary"] = start(root, "primary")
        key = root / "primary" / "secrets" / "root-key"
        started["perf"] = start(root, "perf", key)
        started["dr"] = start(root, "dr", key)
        started["primary"].call("POST", "primary/enable", {"cluster_id": "dc1"})
        attach(started["primary"], started["perf"], "performance")
        attach(started["primary"], started["dr"], "dr")
        yield started
    finally:
        for dc in started.values():
            dc.cluster.stop()


@contextmanager
def client_of(credentials: Dc, target: Dc, node_id: str) -> Iterator[Any]:
    """PyKMIP with ``credentials``' client files, connected to a node of ``target``.

    A secondary serves with certificates from the primary's cluster CA, which came
    with the replicated state: the primary's clients trust it and it trusts them.
    """
    from kmip.pie.client import ProxyKmipClient

    node, own = target.cluster.nodes[node_id], credentials.cluster
    client = ProxyKmipClient(hostname=node.kmip_host, port=node.kmip_port,
                             cert=str(own.client_cert), key=str(own.client_key),
                             ca=str(own.ca), config_file=os.devnull)
    with client:
        yield client


KEYS = 1000


def create_keys(dc: Dc, count: int) -> list[str]:
    uids = []
    with dc.cluster.pykmip(dc.cluster.leader()) as client:
        for _ in range(count):
            uids.append(client.create(enums.CryptographicAlgorithm.AES, 256))
    return uids


def test_keys_created_on_the_primary_are_readable_on_the_performance_secondary(
    dcs: dict[str, Dc],
) -> None:
    primary, perf = dcs["primary"], dcs["perf"]
    uids = create_keys(primary, KEYS)
    done = time.monotonic()
    target = primary.status()["sequence"]

    wait_for(lambda: perf.status()["sequence"] >= target, 2.0, "1,000 keys on the secondary")
    within = time.monotonic() - done
    # Read through a follower of the secondary, with the primary's own client files.
    reader = perf.cluster.followers(perf.cluster.leader())[0]
    with client_of(primary, perf, reader) as client:
        for uid in (uids[0], uids[len(uids) // 2], uids[-1]):
            assert len(client.get(uid).value) == 32
    assert within < 2.0


def test_a_create_through_the_performance_secondary_reads_back_through_it_at_once(
    dcs: dict[str, Dc],
) -> None:
    primary, perf = dcs["primary"], dcs["perf"]
    follower = perf.cluster.followers(perf.cluster.leader())[0]

    before = primary.status()["sequence"]

    with client_of(primary, perf, follower) as client:
        uid = client.create(enums.CryptographicAlgorithm.AES, 128)
        assert primary.status()["sequence"] == before + 1
        # No wait: the write was answered only once this cluster had applied it.
        assert len(client.get(uid).value) == 16
        # That first Get was a write too: a Fresh key's first Get clears Fresh (KMIP 2.1
        # 4.13, MarkServed in kmip/operations/object_ops.py), forwarded like any write.
        # It is the second sequence number a Create-then-Get takes; a second Get none.
        assert primary.status()["sequence"] == before + 2
        assert len(client.get(uid).value) == 16
        assert primary.status()["sequence"] == before + 2

    # It was committed on the primary, through the forward, not only here.
    with primary.cluster.pykmip(primary.cluster.leader()) as client:
        assert len(client.get(uid).value) == 16


def test_the_dr_secondary_refuses_kmip_until_promoted(dcs: dict[str, Dc]) -> None:
    from kmip.pie.exceptions import KmipOperationFailure

    primary, dr = dcs["primary"], dcs["dr"]
    with client_of(primary, dr, dr.cluster.leader()) as client:
        with pytest.raises(KmipOperationFailure, match="DR secondary"):
            client.create(enums.CryptographicAlgorithm.AES, 128)


def test_the_primary_leader_killed_mid_stream_leaves_no_gap_and_no_duplicate(
    dcs: dict[str, Dc],
) -> None:
    from kmip.pie.exceptions import KmipOperationFailure

    primary, perf, dr = dcs["primary"], dcs["perf"], dcs["dr"]
    leader = primary.cluster.leader()
    writer = primary.cluster.followers(leader)[0]
    acknowledged: list[str] = []
    stop = threading.Event()

    def write() -> None:
        # Through a follower, so the writer outlives the leader; a write the election
        # interrupts is refused with an error and tried again.
        with primary.cluster.pykmip(writer) as client:
            while not stop.is_set():
                try:
                    acknowledged.append(client.create(enums.CryptographicAlgorithm.AES, 128))
                except KmipOperationFailure:
                    time.sleep(0.05)

    # First a stream in full flow from the leader, then the leader gone mid-stream.
    thread = threading.Thread(target=write)
    thread.start()
    try:
        wait_for(lambda: len(acknowledged) >= 100, 60, "100 writes before the kill")
        streaming_from = perf.status()["connected_to"]
        primary.cluster.kill(leader)
        killed_at = len(acknowledged)
        wait_for(lambda: len(acknowledged) >= killed_at + 100, 60, "100 writes after the kill")
    finally:
        stop.set()
        thread.join()

    # Both secondaries follow the new leader and reach the primary's sequence.
    survivors = primary.cluster.followers(leader)
    new_leader = primary.cluster.leader(survivors)

    def primary_sequence() -> int:
        return int(primary.call("GET", "status", node_id=new_leader)["sequence"])

    for secondary in (perf, dr):
        wait_for(lambda s=secondary: s.status()["sequence"] == primary_sequence(),
                 30, "the secondary to reach the primary's sequence")
        final = primary.call("GET", "status?digest=true", node_id=new_leader)
        caught_up = secondary.status(digest=True)
        assert caught_up["connected_to"] not in (None, streaming_from)
        # The same objects, byte for byte: nothing skipped, nothing applied twice.
        assert caught_up["sequence"] == final["sequence"]
        assert caught_up["state_digest"] == final["state_digest"]
        assert caught_up["objects"] == final["objects"]
    assert final["objects"] >= KEYS + 1 + len(acknowledged)

    # The old leader comes back for the tests after this one.
    primary.cluster.restart(leader)
    seen: list[tuple[int | None, int]] = []

    def rejoined() -> bool:
        seen.append((primary.sequence_on(leader), primary_sequence()))
        return seen[-1][0] == seen[-1][1]

    try:
        wait_for(rejoined, 60, "the old leader to rejoin")
    except TimeoutError:
        raise AssertionError(f"(old leader, leader) sequences: {seen[-3:]}") from None
