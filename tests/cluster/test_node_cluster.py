"""A three-node cluster of real processes, driven by PyKMIP's client.

PyKMIP (from PyPI) is an independent KMIP implementation: it checks our encoding
and our answers against someone else's reading of the specification.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import Cluster
from kmip.core import enums
from kmip.pie import exceptions, objects


def test_health_names_one_leader_and_two_standbys(cluster: Cluster) -> None:
    answers = {node_id: cluster.health(node_id) for node_id in cluster.nodes}

    codes = sorted(answer[0] for answer in answers.values() if answer is not None)
    assert codes == [200, 429, 429]
    leader = cluster.leader()
    for answer in answers.values():
        assert answer is not None
        assert answer[1]["role"] in ("leader", "follower")
        assert answer[1]["has_quorum"] is True
    assert answers[leader] is not None and answers[leader][1]["role"] == "leader"


def test_pykmip_drives_the_key_lifecycle_through_each_node(cluster: Cluster) -> None:
    for node_id in cluster.nodes:
        with cluster.pykmip(node_id) as client:
            uid = client.create(enums.CryptographicAlgorithm.AES, 256, name=f"lifecycle-{node_id}")
            key = client.get(uid)
            assert len(key.value) == 32

            client.activate(uid)
            _, attributes = client.get_attributes(uid, ["State", "Cryptographic Length"])
            values = {a.attribute_name.value: a.attribute_value.value for a in attributes}
            assert values == {"State": enums.State.ACTIVE, "Cryptographic Length": 256}

            assert uid in client.locate(attributes=[
                client.attribute_factory.create_attribute(
                    enums.AttributeType.NAME, f"lifecycle-{node_id}")])

            client.revoke(enums.RevocationReasonCode.CESSATION_OF_OPERATION, uid)
            client.destroy(uid)
            _, attributes = client.get_attributes(uid, ["State"])
            assert attributes[0].attribute_value.value == enums.State.DESTROYED
            with pytest.raises(exceptions.KmipOperationFailure):
                client.get(uid)


def test_a_key_registered_through_one_node_reads_back_the_same_from_every_node(
    cluster: Cluster,
) -> None:
    material = bytes(range(32))
    secret = objects.SymmetricKey(enums.CryptographicAlgorithm.AES, 256, material,
                                  name="registered")
    opaque = objects.OpaqueObject(b"opaque bytes", enums.OpaqueDataType.NONE)
    node_ids = list(cluster.nodes)

    with cluster.pykmip(node_ids[0]) as client:
        key_uid = client.register(secret)
        opaque_uid = client.register(opaque)

    # Reads go to the other nodes at once: the read barrier makes them see it.
    for node_id in node_ids:
        with cluster.pykmip(node_id) as client:
            assert client.get(key_uid).value == material
            assert client.get(opaque_uid).value == b"opaque bytes"


def test_an_unknown_identifier_is_an_error_on_every_node(cluster: Cluster) -> None:
    for node_id in cluster.nodes:
        with cluster.pykmip(node_id) as client:
            with pytest.raises(exceptions.KmipOperationFailure) as failure:
                client.get("no-such-object")
            assert failure.value.reason == enums.ResultReason.ITEM_NOT_FOUND


def test_every_node_keeps_its_data_under_the_dev_directory(cluster: Cluster) -> None:
    for node_id in cluster.nodes:
        node_dir = cluster.directory / "nodes" / node_id
        assert (node_dir / "node.log").exists()
        assert any(Path(node_dir, "data").rglob("raft.journal*"))
