"""Raft membership changed online on real processes: join a fourth node, remove a peer.

A `keyquorum dev` folder of four nodes is prepared and the fourth set aside, so the
cluster starts with three whose node.toml name only each other. The fourth is started
with node.toml naming the three current members, then joined with
`keyquorum operator raft join`; it serves keys written before. A peer is removed with
`remove-peer` and killed, and the cluster then keeps committing with two of its three
members up, which it could not do if the removed node still counted (two of four is
no majority). Finally nodes are restarted from node.toml files that still hold the old
peer lists; they come back with the membership the log holds, which the two of them
prove by electing a leader and serving on their own.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Cluster, Node, wait_for
from kmip.core import enums
from kmip.pie import objects

from keyquorum.cluster.dev import DevOptions, prepare_cluster

KEYS = {name: secrets.token_bytes(32) for name in ("before-join", "after-remove")}


def raft_address(config: Path) -> str:
    found = re.search(r'\[raft\]\nlisten = "([^"]+)"', config.read_text())
    assert found is not None
    return found.group(1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("membership")
    root = base / "cluster"
    nodes = prepare_cluster(DevOptions(root=root, node_count=4, base_port=0))

    # node-4 moves out of the dev folder; the other three forget it.
    spare = base / "spare" / "node-4"
    spare.parent.mkdir()
    shutil.move(str(nodes[3].directory), spare)
    spare_config = spare / "node.toml"
    spare_config.write_text(spare_config.read_text().replace(str(nodes[3].directory),
                                                             str(spare)))
    fourth_raft = raft_address(spare_config)
    for node in nodes[:3]:
        text = node.config_file.read_text()
        node.config_file.write_text(re.sub(rf', "{fourth_raft}"|"{fourth_raft}", ', "", text))
        assert fourth_raft not in node.config_file.read_text()

    running = Cluster(root)
    running.start()
    host, port = nodes[3].kmip_address.rsplit(":", 1)
    running.nodes["node-4"] = Node("node-4", 0, host, int(port), nodes[3].api_url,
                                   spare_config)
    yield running
    running.stop()


def peers_of(cluster: Cluster, node_id: str) -> set[str]:
    status = cluster.sys_page(node_id, "raft/status")
    return set() if status is None else {peer["address"] for peer in status["peers"]}


def raft_of(cluster: Cluster, node_id: str) -> str:
    return raft_address(cluster.nodes[node_id].config)


def operator(cluster: Cluster, node_id: str, *args: str) -> subprocess.CompletedProcess[str]:
    return cluster.operator(node_id, *args, token=cluster.admin_token)


def register(cluster: Cluster, node_id: str, name: str) -> str:
    with cluster.pykmip(node_id) as client:
        uid: str = client.register(objects.SymmetricKey(
            enums.CryptographicAlgorithm.AES, 256, KEYS[name], name=name))
        return uid


def serves(cluster: Cluster, node_id: str, uid: str, name: str) -> bool:
    try:
        with cluster.pykmip(node_id) as client:
            return bool(client.get(uid).value == KEYS[name])
    except Exception:
        return False


@pytest.fixture(scope="module")
def uids() -> dict[str, str]:
    return {}


def test_a_fourth_node_joins_and_serves_keys_written_before(
    cluster: Cluster, uids: dict[str, str]
) -> None:
    leader = cluster.leader(among=["node-1", "node-2", "node-3"])
    uids["before-join"] = register(cluster, leader, "before-join")

    # Not a member yet: node.toml names the three, who refuse its connections.
    cluster.restart("node-4", timeout=120)
    assert raft_of(cluster, "node-4") not in peers_of(cluster, leader)

    # The CLI checks the joining node's view of the members first.
    follower = next(n for n in ("node-1", "node-2", "node-3") if n != leader)
    fourth_api = cluster.nodes["node-4"].api
    wrong = operator(cluster, follower, "raft", "join", raft_of(cluster, leader),
                     "--node-addr", fourth_api)
    assert wrong.returncode == 2 and "not " + raft_of(cluster, leader) in wrong.stderr
    joined = operator(cluster, follower, "raft", "join", raft_of(cluster, "node-4"),
                      "--node-addr", fourth_api)
    assert joined.returncode == 0, joined.stderr
    assert "the cluster has 4 members" in joined.stdout

    again = operator(cluster, leader, "raft", "join", raft_of(cluster, "node-4"),
                     "--node-addr", fourth_api)
    assert again.returncode == 2 and "already a member" in again.stderr
    assert wait_for(lambda: serves(cluster, "node-4", uids["before-join"], "before-join"),
                    120, "node-4 to serve the key written before it joined")
    listed = operator(cluster, "node-4", "raft", "list-peers")
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 5


def test_a_removed_peer_no_longer_counts_for_the_quorum(
    cluster: Cluster, uids: dict[str, str]
) -> None:
    leader = cluster.leader(among=["node-1", "node-2", "node-3"])
    removed = next(n for n in ("node-1", "node-2", "node-3") if n != leader)
    removed_raft = raft_of(cluster, removed)

    self_removal = operator(cluster, removed, "raft", "remove-peer", removed_raft)
    assert self_removal.returncode == 2 and "cannot remove itself" in self_removal.stderr
    done = operator(cluster, "node-4", "raft", "remove-peer", removed_raft)
    assert done.returncode == 0, done.stderr
    assert "the cluster has 3 members" in done.stdout
    assert removed_raft not in peers_of(cluster, leader)
    cluster.kill(removed)

    # Two of the three members left up: still a majority, so writes commit.
    cluster.kill("node-4")
    uids["after-remove"] = register(cluster, leader, "after-remove")
    assert serves(cluster, leader, uids["before-join"], "before-join")


def test_restarted_nodes_keep_the_membership_the_log_holds(
    cluster: Cluster, uids: dict[str, str]
) -> None:
    members = {raft_of(cluster, n) for n in cluster.nodes
               if cluster.health(n) is not None} | {raft_of(cluster, "node-4")}
    assert len(members) == 3
    other = next(n for n in ("node-1", "node-2", "node-3")
                 if cluster.health(n) is not None and raft_of(cluster, n) in members
                 and n != cluster.leader(among=["node-1", "node-2", "node-3"]))
    old_leader = cluster.leader(among=["node-1", "node-2", "node-3"])

    # node-4's node.toml names the removed node and not itself as a peer of others;
    # `other`'s names the removed node and lacks node-4. Both restart from the log.
    cluster.restart("node-4", timeout=120)
    cluster.kill(other)
    cluster.restart(other, timeout=120)
    for node_id in ("node-4", other):
        own = raft_of(cluster, node_id)
        wait_for(lambda n=node_id, o=own: peers_of(cluster, n) == members - {o}, 60,
                 f"{node_id} to come back with the current members")

    # Without the old leader, the two must elect one of themselves: they count each
    # other, and not the removed node, towards a majority of three.
    cluster.kill(old_leader)
    leader = cluster.leader(among=["node-4", other], timeout=60)
    assert wait_for(lambda: serves(cluster, leader, uids["after-remove"], "after-remove"),
                    60, "the new leader to serve")
    survivor = "node-4" if leader == other else other
    assert wait_for(lambda: serves(cluster, survivor, uids["before-join"], "before-join"),
                    60, "the other member to serve")
