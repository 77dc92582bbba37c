"""Replication between real 3-node clusters on loopback: primary, performance, DR.

One set of clusters serves the whole module and the tests run in file order, each
leaving the clusters as the next expects: the first four use the primary and its two
secondaries (the fourth kills the primary's leader, which it starts again, and the
performance secondary's, which stays down); the DR drill stops the primary and
promotes the DR secondary; the next demotes the old primary and attaches it to the
new one as its DR secondary; the last runs `keyquorum drill dr` from the new primary
back to the old one.

The clusters share one root key (dev mode's key file), as secondaries of a real
deployment share their primary's unseal keys: the keyring arrives with the state.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from harness import Cluster, wait_for
from kmip.core import enums

from keyquorum.cluster.cli import cli
from keyquorum.kmip import RequestMessage, ResponseMessage, decode_message, encode_message
from keyquorum.kmip.tables import ResultStatus

CAPTURE = (Path(__file__).resolve().parents[2].parent / "shared" / "interop"
           / "vcenter-7.0.3-requests.txt")


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
    # Nothing to unseal: the primary's keyring came with its state, and each node's seal
    # opened it with the root key it shares with the primary (Seal._follow).


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

    # The secondary's leader, which follows the stream, tells its lag; a follower says
    # it cannot rather than claim 0.
    caught_up = perf.status()
    assert (caught_up["lag_sequences"], caught_up["lag_seconds"]) == (0, 0.0)
    assert perf.call("GET", "status", node_id=follower)["lag_sequences"] is None


def test_the_dr_secondary_refuses_kmip_until_promoted(dcs: dict[str, Dc]) -> None:
    from kmip.pie.exceptions import KmipOperationFailure

    primary, dr = dcs["primary"], dcs["dr"]
    with client_of(primary, dr, dr.cluster.leader()) as client:
        with pytest.raises(KmipOperationFailure, match="DR secondary"):
            client.create(enums.CryptographicAlgorithm.AES, 128)


def test_both_leaders_killed_mid_stream_leave_no_gap_and_no_duplicate(
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

    # First a stream in full flow from the leader, then the leader gone mid-stream; then
    # the performance secondary's leader too, the node that applies the stream there.
    thread = threading.Thread(target=write)
    thread.start()
    try:
        wait_for(lambda: len(acknowledged) >= 100, 60, "100 writes before the kill")
        streaming_from = perf.status()["connected_to"]
        primary.cluster.kill(leader)
        killed_at = len(acknowledged)
        wait_for(lambda: len(acknowledged) >= killed_at + 50, 60, "50 writes after the kill")
        perf.cluster.kill(perf.cluster.leader())
        killed_at = len(acknowledged)
        wait_for(lambda: len(acknowledged) >= killed_at + 50, 60, "50 writes after the next")
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


def keyquorum(dc: Dc, *arguments: str) -> str:
    """Run a `keyquorum` command against ``dc``'s leader; its standard output."""
    node = dc.cluster.nodes[dc.cluster.leader()]
    result = CliRunner().invoke(cli, [*arguments, "--addr", node.api, "--token", dc.token,
                                      "--cacert", str(dc.cluster.ca)])
    assert result.exit_code == 0, result.output
    return result.stdout


def vcenter_replay(credentials: Dc, target: Dc) -> list[str]:
    """vCenter 7.0.3's captured conversation against ``target``, round robin; its key ids.

    As in tests/interop/test_vcenter_replay.py: "1" and "2" in the capture name the
    keys of its first and second Create, replaced by the identifiers this cluster gave.
    """
    nodes = itertools.cycle(sorted(target.cluster.nodes))
    identifiers: dict[str, str] = {}
    for line in CAPTURE.read_text().splitlines():
        if line[:1] == "#":
            continue
        operation, data = line.split()
        message = decode_message(bytes.fromhex(data))
        assert isinstance(message, RequestMessage)
        items = []
        for item in message.batch_items:
            uid = getattr(item.payload, "unique_identifier", None)
            if isinstance(uid, str) and uid in identifiers:
                item = replace(item, payload=replace(item.payload,
                                                     unique_identifier=identifiers[uid]))
            items.append(item)
        request = encode_message(replace(message, batch_items=tuple(items)))
        response = decode_message(exchange(credentials, target, next(nodes), request))
        assert isinstance(response, ResponseMessage)
        for answered in response.batch_items:
            assert answered.result_status == ResultStatus.SUCCESS, (operation,
                                                                    answered.result_message)
        if operation == "Create":
            identifiers[str(len(identifiers) + 1)] = \
                response.batch_items[0].payload.unique_identifier
    return list(identifiers.values())


def exchange(credentials: Dc, target: Dc, node_id: str, request: bytes) -> bytes:
    """One KMIP request on a new TLS connection, as vCenter sends it."""
    node = target.cluster.nodes[node_id]
    context = credentials.cluster.tls_context()
    with socket.create_connection((node.kmip_host, node.kmip_port), timeout=15) as raw:
        with context.wrap_socket(raw, server_hostname=node.kmip_host) as tls:
            tls.sendall(request)
            data = b""
            while len(data) < 8 or len(data) < 8 + int.from_bytes(data[4:8], "big"):
                chunk = tls.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed the connection mid-response")
                data += chunk
            return data


def test_dr_drill_the_promoted_secondary_serves_vcenter_with_every_acknowledged_key(
    dcs: dict[str, Dc],
) -> None:
    primary, dr = dcs["primary"], dcs["dr"]
    acknowledged = create_keys(primary, 50)

    # A planned drill cuts once the DR secondary has everything (status: lag 0); a real
    # loss cuts when it cuts, and writes acknowledged after the last streamed change
    # are lost with the primary (asynchronous replication; docs/replication.md).
    wait_for(lambda: dr.status()["lag_sequences"] == 0
             and dr.status()["sequence"] == primary.status()["sequence"], 30, "lag 0")
    primary.cluster.stop()

    # A guessed or reused token promotes nothing.
    with pytest.raises(AssertionError, match="400"):
        dr.call("POST", "dr/secondary/promote", {"dr_operation_token": "guessed"})

    # The primary's share holders make a DR operation token; the DR cluster promotes.
    share = (primary.cluster.directory / "secrets" / "unseal-key").read_text().strip()
    dr_token = keyquorum(dr, "replication", "dr-token", "generate", "--key", share).strip()
    assert "primary" in keyquorum(dr, "replication", "dr", "promote", "--dr-token", dr_token)
    assert dr.status()["mode"] == "primary"

    # vCenter's whole conversation succeeds against it, and no acknowledged key is missing.
    replayed = vcenter_replay(primary, dr)
    assert len(replayed) == 2
    with client_of(primary, dr, dr.cluster.followers(dr.cluster.leader())[0]) as client:
        for uid in acknowledged:
            assert len(client.get(uid).value) == 32


def test_the_old_primary_demoted_and_reattached_catches_up_with_the_new_one(
    dcs: dict[str, Dc],
) -> None:
    old, new = dcs["primary"], dcs["dr"]

    # The old primary comes back as it was (a primary, with its stale state) ...
    for node_id in old.cluster.nodes:
        old.cluster.restart(node_id)
    wait_for(lambda: old.sequence_on(old.cluster.leader()) is not None, 30, "the old primary")
    assert old.status()["mode"] == "primary"

    # ... is demoted before anything writes to it, then follows the new primary.
    assert "DR secondary" in keyquorum(old, "replication", "dr", "demote")
    wait_for(lambda: len(new.status()["addresses"]) == 3, 15, "announced addresses")
    token = keyquorum(new, "replication", "secondary-token", "--id", "dc1", "--kind", "dr")
    assert "follows" in keyquorum(old, "replication", "dr", "update-primary", token.strip())

    # It catches up with everything, the vCenter keys written after the cut included.
    wait_for(lambda: old.status()["sequence"] == new.status()["sequence"], 30, "catch-up")
    caught_up, leading = old.status(digest=True), new.status(digest=True)
    assert caught_up["mode"] == "dr"
    assert caught_up["state_digest"] == leading["state_digest"]
    assert caught_up["objects"] == leading["objects"]
    status = keyquorum(old, "replication", "status")
    assert "Lag               0 change(s)" in status


def test_keyquorum_drill_dr_fails_over_and_finds_every_acknowledged_key(
    dcs: dict[str, Dc],
) -> None:
    # As the test before left them: "dr" leads, the first primary is its DR secondary.
    leading, standby = dcs["dr"], dcs["primary"]
    share = (standby.cluster.directory / "secrets" / "unseal-key").read_text().strip()

    def side(option: str, dc: Dc) -> list[str]:
        arguments = []
        for node in dc.cluster.nodes.values():
            arguments += [f"--{option}-addr", node.api,
                          f"--{option}-kmip", f"{node.kmip_host}:{node.kmip_port}"]
        return [*arguments, f"--{option}-token", dc.token,
                f"--{option}-cacert", str(dc.cluster.ca)]

    # Every KMIP listener serves the first primary's cluster CA, and trusts its clients.
    credentials = standby.cluster
    result = CliRunner().invoke(cli, [
        "drill", "dr", *side("primary", leading), *side("dr", standby),
        "--kmip-ca", str(credentials.ca), "--kmip-cert", str(credentials.client_cert),
        "--kmip-key", str(credentials.client_key), "--unseal-key", share, "--keys", "20",
        "--demote-primary", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)

    assert report["passed"] and report["missing"] == []
    assert report["keys_acknowledged"] == report["keys_present"] == 20
    assert 0 < report["promote_seconds"] <= report["unavailable_seconds"] < 60
    assert standby.status()["mode"] == "primary"
    # The cut was real: the old primary's nodes are sealed (their health says 503),
    # and demoted, waiting for update-primary.
    for node_id in leading.cluster.nodes:
        health = leading.cluster.health(node_id)
        assert health is not None and health[0] == 503 and health[1]["sealed"]
    assert leading.call("GET", "status", node_id="node-1")["mode"] == "dr"
