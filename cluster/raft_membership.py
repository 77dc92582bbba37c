"""Who the Raft members are when a node starts: the log says, not node.toml.

Theory of operation
-------------------
pysyncobj 0.3.17 changes membership one node at a time (``addNodeToCluster``,
``removeNodeFromCluster``, ``dynamicMembershipChange=True``): a change is an entry of
its own in the log (type byte 2, then a pickled ``['add' | 'rem', address, node]``).
A node takes the change into effect when the entry reaches its log, as Raft wants,
and the leader refuses a second change until the first has been applied. The
compaction dump carries the member set at its index.

What pysyncobj does not do is start from the right set. It starts from the peer list
it is given, and only applies the changes in its journal as it *replays committed*
entries, after the first ticks; until then a node restarted with node.toml's list
(written before the cluster changed) would count a removed node towards its quorum
and ignore a joined one: a removed node that is still running could vote it leader
of a configuration the rest of the cluster left behind. So ``starting_members``
works out the current set before pysyncobj starts, from what is durable:

1. the set in the dump, if there is one; otherwise the *bootstrap* set: the peers
   node.toml named the first time this node started with an empty data folder,
   recorded then in ``raft.members`` (``MEMBERS_FILE``) and read from there ever
   after, so editing node.toml later changes nothing;
2. then every membership entry in the journal after the dump's index, in order,
   committed or not (Raft's rule: the latest configuration in the log is in force).

pysyncobj's own replay of those entries then finds them already in effect (adding
a member again or removing an absent one is a no-op there).

A joining node is started with node.toml listing the current members and itself.
It must list every one: pysyncobj never sends a joining node the member list, only
the changes after its start, so one that missed a member would count a majority of
the wrong set. ``keyquorum operator raft join`` checks the joining node's view before
it asks (cluster/cli_status.py); ``/v1/sys/raft/join`` itself cannot see it and does
not. Until the leader adds it, the members drop its connections (pysyncobj accepts peers
only from its member set), so it cannot start elections that disturb them. A removed
node is dropped by the leader before it hears of its removal; it keeps its old view,
and the members refuse its connections, so it cannot disturb them either. Stop it,
and wipe its data folder before it ever joins again.

What is not covered: pysyncobj writes the dump's member set as of the moment of
compaction, which could include a change not yet committed; were that change then
overwritten by a new leader, the dump would keep it. Compaction is rare (hazard 8 in
raft.py) and a change commits within milliseconds, so the window is small, but it is
there; closing it needs pysyncobj to record the committed set in the dump instead.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("keyquorum.cluster.raft")

MEMBERS_FILE = "raft.members"
# pysyncobj's _COMMAND_TYPE.MEMBERSHIP: the first byte of a membership entry.
MEMBERSHIP_ENTRY = 2


def starting_members(data_dir: Path, self_address: str, configured: Sequence[str],
                     dump_path: Path, journal: Iterable[tuple[bytes, int, int]]) -> list[str]:
    """Every member's address (this node's included) to hand pysyncobj at start."""
    members_file = data_dir / MEMBERS_FILE
    bootstrap = _read_bootstrap(members_file)
    if bootstrap is None:
        # The first start (or a data folder from before membership changes existed, whose
        # log holds none): node.toml's list is the bootstrap set, kept from now on.
        bootstrap = sorted({self_address, *configured})
        _write_bootstrap(members_file, bootstrap)

    members = set(bootstrap)
    after = 0
    dumped = _dump_members(dump_path)
    if dumped is not None:
        members, after = dumped
    for command, index, _ in journal:
        if index > after:
            _apply_change(members, command)

    stale = set(configured) | {self_address}
    if stale != members:
        log.info("raft_members_from_log members=%s config_peers=%s", ",".join(sorted(members)),
                 ",".join(sorted(stale)))
    if self_address not in members:
        log.warning("raft_node_not_a_member self=%s note=this node was removed from the "
                    "cluster; its peers refuse it", self_address)
    return sorted(members)


def membership_change(command: bytes) -> tuple[str, str] | None:
    """('add' | 'rem', address) if this log entry changes membership, else None."""
    if not command or command[0] != MEMBERSHIP_ENTRY:
        return None
    request = pickle.loads(command[1:])
    return str(request[0]), str(request[1])


def _apply_change(members: set[str], command: bytes) -> None:
    change = membership_change(command)
    if change is None:
        return
    kind, address = change
    if kind == "add":
        members.add(address)
    elif kind == "rem":
        members.discard(address)


def _dump_members(dump_path: Path) -> tuple[set[str], int] | None:
    """The member set in the compaction dump and the index it holds, if there is one."""
    try:
        with open(dump_path, "rb") as f:
            dump: dict[str, Any] = pickle.load(f)
    except FileNotFoundError:
        return None
    # What pysyncobj hands its serializer: (last applied entry, the one before, members).
    last_entry, _, nodes = dump["raft"]
    return {str(node.address) for node in nodes}, int(last_entry[1])


def _read_bootstrap(path: Path) -> list[str] | None:
    try:
        members: list[str] = json.loads(path.read_text(encoding="utf-8"))["bootstrap"]
    except FileNotFoundError:
        return None
    return members


def _write_bootstrap(path: Path, members: list[str]) -> None:
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", encoding="utf-8") as f:
        json.dump({"bootstrap": members, "note": "the members when this node first "
                   "started; the current ones follow from the Raft log"}, f)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
