"""Metrics and the status CLI against a real 3-node cluster.

The scrape is parsed with prometheus-client's own text parser, so the test also
proves that the exposition is valid; counts are compared before and after real
KMIP traffic from PyKMIP's client.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import urllib.request

import pytest
from harness import KEYQUORUM, Cluster
from kmip.core import enums
from kmip.pie import exceptions
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(cluster: Cluster, node_id: str) -> tuple[str, Samples]:
    context = ssl.create_default_context(cafile=str(cluster.ca))
    url = cluster.nodes[node_id].api + "/v1/sys/metrics"
    with urllib.request.urlopen(url, context=context, timeout=10) as response:
        content_type = response.headers["Content-Type"]
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return content_type, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_every_family_is_exposed_with_live_raft_and_seal_values(cluster: Cluster) -> None:
    leader = cluster.leader()
    content_type, samples = scrape(cluster, leader)

    assert content_type.startswith("text/plain")
    names = {name for name, _ in samples}
    for family in ("keyquorum_kmip_connections_accepted_total",
                   "keyquorum_kmip_connections_refused_total",
                   "keyquorum_kmip_connections_handshake_failures_total",
                   "keyquorum_kmip_messages_total", "keyquorum_kmip_active_connections",
                   "keyquorum_raft_term", "keyquorum_raft_commit_index",
                   "keyquorum_raft_applied_index", "keyquorum_raft_has_quorum",
                   "keyquorum_raft_peer_connected", "keyquorum_raft_peer_match_index",
                   "keyquorum_seal_sealed", "keyquorum_audit_failures_total",
                   "keyquorum_audit_devices", "keyquorum_replication_lag_sequences"):
        assert family in names, family
    assert value(samples, "keyquorum_raft_role", role="leader") == 1
    assert value(samples, "keyquorum_raft_has_quorum") == 1
    assert value(samples, "keyquorum_seal_sealed") == 0
    assert value(samples, "keyquorum_raft_term") >= 1
    # The leader knows both followers' match index; each follower knows none.
    assert len([n for n, _ in samples if n == "keyquorum_raft_peer_match_index"]) == 2
    follower = cluster.followers(leader)[0]
    _, theirs = scrape(cluster, follower)
    assert value(theirs, "keyquorum_raft_role", role="follower") == 1
    assert not [n for n, _ in theirs if n == "keyquorum_raft_peer_match_index"]


def test_counts_move_with_kmip_requests(cluster: Cluster) -> None:
    node = next(iter(cluster.nodes))
    _, before = scrape(cluster, node)

    with cluster.pykmip(node) as client:
        uid = client.create(enums.CryptographicAlgorithm.AES, 128, name="metrics-key")
        client.get(uid)
        with pytest.raises(exceptions.KmipOperationFailure):
            client.get("no-such-object")
    _, after = scrape(cluster, node)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("keyquorum_kmip_requests_total", operation="create", result="success") == 1
    assert moved("keyquorum_kmip_requests_total", operation="get", result="success") == 1
    assert moved("keyquorum_kmip_requests_total", operation="get",
                 result="item_not_found") == 1
    assert moved("keyquorum_kmip_request_duration_seconds_count", operation="get") == 2
    assert moved("keyquorum_kmip_request_duration_seconds_sum", operation="create") > 0
    assert moved("keyquorum_kmip_connections_accepted_total") >= 1
    assert moved("keyquorum_kmip_messages_total") >= 3
    # The create was committed through the log, so the indexes advanced with it.
    assert moved("keyquorum_raft_commit_index") >= 1
    assert value(after, "keyquorum_raft_applied_index") >= value(before,
                                                                 "keyquorum_raft_commit_index")


# The CLI over the same cluster: `keyquorum status` and `operator raft ...`.


def keyquorum(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KEYQUORUM, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_status_asks_every_node_for_a_row_each(cluster: Cluster) -> None:
    leader = cluster.leader()
    addrs = [arg for node in cluster.nodes.values() for arg in ("--addr", node.api)]

    done = keyquorum("status", "--cacert", str(cluster.ca), *addrs)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Leader: 127.0.0.1:")
    assert lines[1].split() == ["NODE", "RAFT", "ADDRESS", "ROLE", "TERM", "COMMIT",
                                "APPLIED", "SEAL", "HEALTH"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == set(cluster.nodes)
    assert rows[leader][2] == "leader"
    assert sorted(row[2] for row in rows.values()) == ["follower", "follower", "leader"]
    assert {row[3] for row in rows.values()} == {rows[leader][3]}  # one term
    assert all(row[6:] == ["unsealed", "ok"] for row in rows.values())


def test_status_from_one_node_names_its_peers_and_fails_on_an_unreachable_one(
        cluster: Cluster) -> None:
    leader = cluster.leader()

    done = keyquorum("status", "--addr", cluster.nodes[leader].api, "--addr",
                     "https://127.0.0.1:9", env={"KEYQUORUM_CACERT": str(cluster.ca)})

    assert done.returncode == 1
    assert "cannot reach the API at https://127.0.0.1:9" in done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[2:]]
    assert len(rows) == 3
    # The leader knows how far each follower has replicated.
    assert all(row[4].isdigit() for row in rows)


def test_list_peers_and_membership_commands(cluster: Cluster) -> None:
    node = next(iter(cluster.nodes.values()))

    done = keyquorum("operator", "raft", "list-peers", "--addr", node.api,
                     "--cacert", str(cluster.ca))
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    assert len(rows) == 3
    assert sorted(row[2] for row in rows) == ["follower", "follower", "leader"]

    # Membership changes take a root token (tests/cluster/test_membership.py makes them).
    refused = keyquorum("operator", "raft", "remove-peer", "127.0.0.1:7000", "--addr",
                        node.api, "--cacert", str(cluster.ca), env={"KEYQUORUM_TOKEN": ""})
    assert refused.returncode == 2 and "root token" in refused.stderr
    # A join first checks that the joining node is the one named.
    mistaken = keyquorum("operator", "raft", "join", "127.0.0.1:7000", "--addr", node.api,
                         "--node-addr", node.api, "--cacert", str(cluster.ca))
    assert mistaken.returncode == 2 and "not 127.0.0.1:7000" in mistaken.stderr
    assert keyquorum("operator", "raft", "remove-peer").returncode == 2  # no address


def test_shell_completion_offers_subcommands() -> None:
    done = keyquorum(env={"_KEYQUORUM_COMPLETE": "bash_complete", "COMP_WORDS": "keyquorum st",
                          "COMP_CWORD": "1"})
    assert "plain,status" in done.stdout.splitlines()
    script = keyquorum(env={"_KEYQUORUM_COMPLETE": "bash_source"})
    assert "_keyquorum_completion" in script.stdout
