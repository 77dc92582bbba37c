"""Rekeying the unseal shares step by step on a real Shamir cluster, through the CLI.

Three node processes with no [seal] section (Shamir shares, as in production) are
initialized with `keyquorum operator init` and unsealed with shares. A rekey is then
started, fed one current share at a time by "holders", refused for a wrong share, a
wrong nonce or a share given twice, cancelled, and finally completed; through all of it
every node stays unsealed. Afterwards the old shares no longer unseal a node and the
new ones do.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from harness import Cluster, Node, wait_for

from keyquorum.cluster.dev import DevOptions, prepare_cluster
from keyquorum.cluster.shamir import Share, split


@dataclass
class Shamir:
    cluster: Cluster
    shares: list[str]
    root_token: str


def seal_status(cluster: Cluster, node_id: str) -> dict[str, Any] | None:
    return cluster.sys_page(node_id, "seal-status")


def unseal(shamir: Shamir, node_id: str, shares: list[str]) -> subprocess.CompletedProcess[str]:
    for share in shares:
        given = shamir.cluster.operator(node_id, "unseal", share)
        if given.returncode != 0:
            return given
    return given


@pytest.fixture(scope="module")
def shamir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shamir]:
    root = tmp_path_factory.mktemp("rekey") / "cluster"
    dev_nodes = prepare_cluster(DevOptions(root=root, base_port=0))
    cluster = Cluster(root)
    try:
        for dev_node in dev_nodes:
            config = dev_node.config_file
            config.write_text(re.sub(r"\n\[seal\]\n.*", "\n", config.read_text(),
                                     flags=re.DOTALL))
            host, port = dev_node.kmip_address.rsplit(":", 1)
            node = Node(dev_node.id, 0, host, int(port), dev_node.api_url, config)
            cluster.nodes[node.id] = node
            cluster.restart(node.id, wait=False)
        for node_id in cluster.nodes:
            wait_for(lambda n=node_id: seal_status(cluster, n), 60, f"{node_id} to answer")

        initialized = wait_for(lambda: _init(cluster), 60, "operator init to succeed")
        shares = re.findall(r"Unseal Key \d+: (\S+)", initialized)
        root_token = re.search(r"Initial Root Token: (\S+)", initialized)
        assert len(shares) == 3 and root_token is not None
        made = Shamir(cluster, shares, root_token.group(1))
        for node_id in cluster.nodes:
            wait_for(lambda n=node_id: (seal_status(cluster, n) or {}).get("initialized"),
                     30, f"{node_id} to see the barrier")
            assert unseal(made, node_id, shares[:2]).returncode == 0
            assert seal_status(cluster, node_id)["sealed"] is False  # type: ignore[index]
        yield made
    finally:
        cluster.stop()


def _init(cluster: Cluster) -> str | None:
    done = cluster.operator("node-1", "init", "-key-shares", "3", "-key-threshold", "2")
    return done.stdout if done.returncode == 0 else None


def all_unsealed(shamir: Shamir) -> bool:
    return all(not (seal_status(shamir.cluster, n) or {"sealed": True})["sealed"]
               for n in shamir.cluster.nodes)


def test_a_wrong_share_a_wrong_nonce_or_a_repeated_share_is_refused(shamir: Shamir) -> None:
    token = shamir.root_token
    started = shamir.cluster.operator("node-1", "rekey", "init", "-key-shares", "4",
                                      "-key-threshold", "3", token=token)
    assert started.returncode == 0, started.stderr
    nonce = re.search(r"Nonce\s+(\S+)", started.stdout).group(1)  # type: ignore[union-attr]
    assert "Rekey progress  0 of 2" in started.stdout

    # A second attempt while one runs is refused.
    again = shamir.cluster.operator("node-1", "rekey", "init", "-key-shares", "2",
                                    "-key-threshold", "2", token=token)
    assert again.returncode != 0 and "already in progress" in again.stderr

    first = shamir.cluster.operator("node-1", "rekey", "update", "--nonce", nonce,
                                    shamir.shares[0])
    assert first.returncode == 0 and "Rekey progress  1 of 2" in first.stdout
    repeated = shamir.cluster.operator("node-1", "rekey", "update", "--nonce", nonce,
                                       shamir.shares[0])
    assert repeated.returncode != 0 and "already given" in repeated.stderr
    wrong_nonce = shamir.cluster.operator("node-1", "rekey", "update", "--nonce", "0" * 32,
                                          shamir.shares[1])
    assert wrong_nonce.returncode != 0 and "nonce" in wrong_nonce.stderr

    # A share of another root key completes the threshold and is refused there.
    given_x = Share.decode(shamir.shares[0]).x
    foreign = next(share for share in split(os.urandom(32), 3, 2) if share.x != given_x)
    refused = shamir.cluster.operator("node-1", "rekey", "update", "--nonce", nonce,
                                      foreign.encode())
    assert refused.returncode != 0 and "not this cluster's current" in refused.stderr
    status = shamir.cluster.operator("node-1", "rekey", "status")
    assert "Rekey progress  0 of 2" in status.stdout

    # Cancelled: nothing changed, the current shares still rule.
    cancelled = shamir.cluster.operator("node-1", "rekey", "cancel", token=token)
    assert cancelled.returncode == 0, cancelled.stderr
    late = shamir.cluster.operator("node-1", "rekey", "update", "--nonce", nonce,
                                   shamir.shares[1])
    assert late.returncode != 0 and "no rekey is in progress" in late.stderr
    assert {seal_status(shamir.cluster, n)["root_generation"]  # type: ignore[index]
            for n in shamir.cluster.nodes} == {1}
    assert all_unsealed(shamir)


def test_holders_rekey_one_share_at_a_time_and_the_old_shares_stop_working(
    shamir: Shamir,
) -> None:
    cluster, token = shamir.cluster, shamir.root_token
    started = cluster.operator("node-2", "rekey", "init", "-key-shares", "4",
                               "-key-threshold", "3", token=token)
    nonce = re.search(r"Nonce\s+(\S+)", started.stdout).group(1)  # type: ignore[union-attr]

    # Two holders, each with their own share and no token.
    first = cluster.operator("node-2", "rekey", "update", "--nonce", nonce, shamir.shares[2])
    assert "Rekey progress  1 of 2" in first.stdout
    assert all_unsealed(shamir)
    last = cluster.operator("node-2", "rekey", "update", "--nonce", nonce, shamir.shares[0])
    assert last.returncode == 0, last.stderr
    new_shares = re.findall(r"New Unseal Key \d+: (\S+)", last.stdout)
    assert len(new_shares) == 4 and not set(new_shares) & set(shamir.shares)

    # No downtime: every node followed the new record without being unsealed again.
    wait_for(lambda: all((seal_status(cluster, n) or {}).get("root_generation") == 2
                         for n in cluster.nodes), 30, "every node to follow the rekey")
    assert all_unsealed(shamir)
    for node_id in cluster.nodes:
        status = seal_status(cluster, node_id)
        assert status is not None and (status["threshold"], status["shares"]) == (3, 4)

    # A sealed node: the three old shares are refused, three new ones unseal it.
    sealed = cluster.operator("node-3", "seal", token=token)
    assert sealed.returncode == 0, sealed.stderr
    old = unseal(shamir, "node-3", shamir.shares)
    assert old.returncode != 0 and "do not open" in old.stderr
    assert seal_status(cluster, "node-3")["sealed"] is True  # type: ignore[index]
    assert unseal(shamir, "node-3", new_shares[1:]).returncode == 0
    assert seal_status(cluster, "node-3")["sealed"] is False  # type: ignore[index]
