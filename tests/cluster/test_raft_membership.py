"""The members a node starts with: the bootstrap set, then the dump, then the journal."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
from pysyncobj.node import TCPNode

from keyquorum.cluster import cli_status
from keyquorum.cluster.cli_admin import AdminError
from keyquorum.cluster.raft_membership import MEMBERS_FILE, starting_members

ONE, TWO, THREE, FOUR = (f"127.0.0.1:{port}" for port in (7001, 7002, 7003, 7004))
NO_OP = (b"\x01", 1, 0)


def change(kind: str, address: str, index: int) -> tuple[bytes, int, int]:
    """A membership entry as pysyncobj writes it to the journal."""
    return bytes([2]) + pickle.dumps([kind, address, TCPNode(address)]), index, 1


def test_node_toml_counts_on_the_first_start_only(tmp_path: Path) -> None:
    dump = tmp_path / "raft.dump"
    assert starting_members(tmp_path, ONE, [TWO, THREE], dump, [NO_OP]) == [ONE, TWO, THREE]
    assert (tmp_path / MEMBERS_FILE).exists()

    # An operator edits node.toml later: the bootstrap set recorded at first start rules.
    assert starting_members(tmp_path, ONE, [TWO, FOUR], dump, [NO_OP]) == [ONE, TWO, THREE]


def test_every_change_in_the_journal_counts_committed_or_not(tmp_path: Path) -> None:
    dump = tmp_path / "raft.dump"
    starting_members(tmp_path, ONE, [TWO, THREE], dump, [NO_OP])
    journal = [NO_OP, (b"\x00command", 2, 1), change("add", FOUR, 3), change("rem", THREE, 4)]
    assert starting_members(tmp_path, ONE, [TWO, THREE], dump, journal) == [ONE, TWO, FOUR]


def test_the_dump_gives_the_members_at_its_index(tmp_path: Path) -> None:
    dump = tmp_path / "raft.dump"
    starting_members(tmp_path, ONE, [TWO, THREE], dump, [NO_OP])
    last, before = (b"\x00x", 10, 1), (b"\x00y", 9, 1)
    members = {TCPNode(ONE), TCPNode(TWO), TCPNode(FOUR)}
    dump.write_bytes(pickle.dumps({"format": 1, "raft": (last, before, members)}))

    # Entries up to the dump's index are in it already; a removal after it still counts.
    journal = [before, last, change("add", THREE, 5), change("rem", FOUR, 11)]
    assert starting_members(tmp_path, ONE, [TWO, THREE], dump, journal) == [ONE, TWO]


def test_join_refuses_a_node_that_does_not_name_every_member(monkeypatch: Any) -> None:
    views = {
        "https://member": {"address": ONE, "peers": [{"address": TWO}, {"address": THREE}]},
        "https://partial": {"address": FOUR, "peers": [{"address": ONE}]},
        "https://complete": {"address": FOUR, "peers": [{"address": a} for a in
                                                       (ONE, TWO, THREE)]},
    }
    monkeypatch.setattr(cli_status, "_view", lambda addr, cacert: views[addr])

    with pytest.raises(AdminError, match=f"must name exactly the current members: {ONE}, "
                                         f"{TWO}, {THREE}; it names {ONE}"):
        cli_status._check_joining_node(FOUR, "https://partial", "https://member", None)
    with pytest.raises(AdminError, match="not 127.0.0.1:7003"):
        cli_status._check_joining_node(THREE, "https://complete", "https://member", None)
    cli_status._check_joining_node(FOUR, "https://complete", "https://member", None)
