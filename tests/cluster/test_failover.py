"""Acknowledged keys survive the loss of the leader, and of every node at once.

An acknowledgement means the Create's command reached a majority's journal,
synced, before the client heard back (see cluster/raft.py), so a key the client
was told about must be on the survivors, and on every node after a full restart.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Cluster, wait_for
from kmip.core import enums


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path / "cluster")
    running.start()
    yield running
    running.stop()


class CreateLoad:
    """Creates keys through one node until stopped; remembers what was acknowledged."""

    def __init__(self, cluster: Cluster, node_id: str) -> None:
        self.cluster = cluster
        self.node_id = node_id
        self.acknowledged: list[tuple[float, str]] = []
        self.failures: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CreateLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.is_set():
            # A connection per request, as vCenter does; a failed one is retried.
            try:
                with self.cluster.pykmip(self.node_id) as client:
                    uid = client.create(enums.CryptographicAlgorithm.AES, 256)
                self.acknowledged.append((time.monotonic(), uid))
            except Exception:
                self.failures.append(time.monotonic())
                time.sleep(0.02)


def missing_keys(cluster: Cluster, node_id: str, uids: list[str]) -> list[str]:
    missing = []
    with cluster.pykmip(node_id) as client:
        for uid in uids:
            try:
                if len(client.get(uid).value) != 32:
                    missing.append(uid)
            except Exception:
                missing.append(uid)
    return missing


def test_leader_kill_during_a_create_load_loses_no_acknowledged_key(cluster: Cluster) -> None:
    leader = cluster.leader()
    follower = cluster.followers(leader)[0]

    with CreateLoad(cluster, follower) as load:
        wait_for(lambda: len(load.acknowledged) >= 20, 30, "creates before the kill")
        killed_at = time.monotonic()
        cluster.kill(leader)
        wait_for(lambda: any(t > killed_at for t, _ in load.acknowledged), 30,
                 "a create after the kill")
        recovered_at = min(t for t, _ in load.acknowledged if t > killed_at)
        wait_for(lambda: len([t for t, _ in load.acknowledged if t > recovered_at]) >= 20, 30,
                 "creates after recovery")

    # Creates succeed again soon after the leader's death: a new election (0.4-1.4 s
    # timeouts), then the follower proposes the waiting Create again (every 1 s). On
    # a quiet machine that is under 2 s (docs/reliability.md, leader_kill: median
    # 1.0 s, longest 1.4 s); the bound here is looser because this suite shares two
    # cores with the nodes it kills, and it fails only when the cluster does not
    # recover promptly at all.
    assert recovered_at - killed_at < 5.0
    uids = [uid for _, uid in load.acknowledged]
    assert len(uids) == len(set(uids))
    for survivor in cluster.followers(leader):
        assert missing_keys(cluster, survivor, uids) == []


def enable_early_compaction(cluster: Cluster) -> None:
    """Compact after 100 entries (the least the config allows), to cross it quickly."""
    for node in cluster.nodes.values():
        text = node.config.read_text()
        text = re.sub(r"\[raft\]\n",
                      "[raft]\ncompaction_min_entries = 100\ncompaction_min_seconds = 1\n", text)
        node.config.write_text(text)


def create_keys(cluster: Cluster, count: int) -> list[str]:
    uids = []
    node_ids = list(cluster.nodes)
    for index in range(count):
        with cluster.pykmip(node_ids[index % len(node_ids)]) as client:
            uids.append(client.create(enums.CryptographicAlgorithm.AES, 256))
    return uids


def kill_all_and_restart(cluster: Cluster) -> None:
    for node_id in cluster.nodes:
        cluster.kill(node_id)
    for node_id in cluster.nodes:
        cluster.restart(node_id)
    cluster.leader(timeout=30)
    # A restarted dev node answers "sealed" until it has read its key file again.
    for node_id in cluster.nodes:
        wait_for(lambda n=node_id: cluster.unsealed(n), 30, f"{node_id} to unseal itself")


def test_killing_every_node_loses_no_key_before_and_after_compaction(cluster: Cluster) -> None:
    # First, before any compaction: everything is replayed from the journal.
    before = create_keys(cluster, 20)
    kill_all_and_restart(cluster)
    for node_id in cluster.nodes:
        assert missing_keys(cluster, node_id, before) == []

    # Then with compaction every 100 entries: the state comes back from the dump
    # plus the journal written after it.
    enable_early_compaction(cluster)
    kill_all_and_restart(cluster)
    after = create_keys(cluster, 150)
    dumps = [list((node.config.parent / "data").rglob("raft.dump")) for node in
             cluster.nodes.values()]
    assert all(dumps), "every node compacted its log into a dump"
    kill_all_and_restart(cluster)
    for node_id in cluster.nodes:
        assert missing_keys(cluster, node_id, before + after) == []
