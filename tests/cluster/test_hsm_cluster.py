"""HSM auto-unseal on a real cluster: three node processes sealed by a SoftHSM2 key.

The token is initialized by this module in a folder of its own (SOFTHSM2_CONF, which the
node processes inherit). The cluster is a `keyquorum dev` folder whose [seal] sections are
rewritten to PKCS#11 before the first start, so the nodes initialize the barrier through
the HSM themselves. Then nodes are killed with SIGKILL and started again as new processes:
each must unseal itself, with no operator, and serve keys registered before.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
from disk_search import files_under, forms, read_if_present
from harness import Cluster, wait_for
from softhsm import LIBRARY, make_token

from keyquorum.cluster.dev import DevOptions, prepare_cluster

SECRETS = {f"hsm-key-{n}": secrets.token_bytes(32) for n in range(3)}


PKCS11_SEAL = f"""
[seal]
type = "pkcs11"
library = "{LIBRARY}"
token_label = "kq-cluster"
pin = "4321"
key_label = "root-seal"
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("hsm-cluster")
    (base / "softhsm").mkdir()
    make_token(base / "softhsm", "kq-cluster", pin="4321", so_pin="8765",
               aes_keys=["root-seal"])

    # The dev folder first, then its seal sections pointed at the HSM; `keyquorum dev`
    # reuses the folder as it is.
    root = base / "cluster"
    prepare_cluster(DevOptions(root=root, base_port=0))
    for config in root.glob("nodes/*/node.toml"):
        text = re.sub(r"\n\[seal\]\n.*", "", config.read_text(), flags=re.DOTALL)
        # Compaction every second: every node keeps a full dump of its state on disk.
        text = text.replace("[raft]\n", "[raft]\ncompaction_min_entries = 100\n"
                                         "compaction_min_seconds = 1\n", 1)
        config.write_text(text + PKCS11_SEAL)

    running = Cluster(root)
    running.start()
    yield running
    running.stop()


def reads_back(cluster: Cluster, node_id: str, uids: dict[str, str]) -> bool:
    with cluster.pykmip(node_id) as client:
        return all(client.get(uids[name]).value == material
                   for name, material in SECRETS.items())


@pytest.fixture(scope="module")
def registered(cluster: Cluster) -> dict[str, str]:
    return cluster.register_aes(SECRETS)


def test_the_nodes_initialized_the_barrier_through_the_hsm(cluster: Cluster) -> None:
    for node_id in cluster.nodes:
        status = wait_for(
            lambda n=node_id: cluster.unsealed(n) and cluster.sys_page(n, "seal-status"),
            60, f"{node_id} to unseal")
        assert status["kind"] == "pkcs11"
        assert (status["threshold"], status["shares"]) == (1, 1)


def test_a_killed_node_unseals_itself_in_its_new_process(
    cluster: Cluster, registered: dict[str, str]
) -> None:
    follower = cluster.followers(cluster.leader())[0]
    cluster.kill(follower)
    cluster.restart(follower, wait=False)

    # Nobody unseals it: the new process asks the HSM for the root key by itself.
    wait_for(lambda: cluster.unsealed(follower), 120, f"{follower} to unseal itself")
    assert wait_for(lambda: reads_back(cluster, follower, registered), 60,
                    "the keys registered before the restart")


def test_no_file_holds_the_key_bytes_under_the_hsm_seal(
    cluster: Cluster, registered: dict[str, str]
) -> None:
    dumps = [node.config.parent / "data" / "raft" / "raft.dump"
             for node in cluster.nodes.values()]
    wait_for(lambda: any(dump.exists() and registered["hsm-key-0"].encode() in
                         dump.read_bytes() for dump in dumps),
             60, "a dump holding the registered objects")

    files = files_under(cluster.directory.parent)
    assert any(path.name == "raft.journal" for path in files)
    for path in files:
        # A dump being written (compaction runs every second) is renamed to raft.dump.
        content = read_if_present(path)
        for name, material in SECRETS.items():
            for form in forms(material):
                assert form not in content, f"{name} found in {path}"


def test_the_whole_cluster_killed_and_started_again_unseals_itself(
    cluster: Cluster, registered: dict[str, str]
) -> None:
    for node_id in cluster.nodes:
        cluster.kill(node_id)
    for node_id in cluster.nodes:
        cluster.restart(node_id, wait=False)

    for node_id in cluster.nodes:
        wait_for(lambda n=node_id: cluster.unsealed(n), 120, f"{node_id} to unseal itself")
    for node_id in cluster.nodes:
        assert wait_for(lambda n=node_id: reads_back(cluster, n, registered), 60,
                        f"the keys through {node_id}")
