"""The Raft transport: pysyncobj's TCP transport, made to keep two promises.

1. No acknowledgement or vote leaves this node before the journal is durable. ``send``
   syncs the journal (one fdatasync covering every entry appended since the last message,
   nothing when none was) and only then hands the message to TCPTransport, so no peer
   hears this node vouch for an entry it could still lose in a crash. See raft_journal
   for why appends to the journal do not sync. Two message types are exempt because they
   claim nothing about anyone's log: a follower forwarding a command to the leader, and
   the leader's reply saying at which index it queued that command. Syncing for that
   reply cost one fdatasync per forwarded command, which made writes through a follower
   several times slower than through the leader.
   The leader's appends leave before its sync (``DurableJournal.defer_sync``), so that
   its followers write a batch while it does: a Create then waits for one fdatasync
   instead of the leader's and then a follower's. The sync follows in the same tick
   (``_RaftCore``), before the leader next counts itself toward a commit.

2. A follower commits only what the leader's append verified. Raft lets a follower
   advance its commit index to min(leaderCommit, index of the last new entry); pysyncobj
   uses the end of the follower's whole log instead. Since DurableJournal keeps entries
   past an overlapping append rather than deleting them, those unverified entries could
   otherwise be applied. ``_onMessageReceived`` caps the leader's commit index in each
   append to the last index that append covers, before pysyncobj reads it.

ReadIndex's messages (raft_read.py) travel the same connections, sealed the same way, and
are handed to the node's ReadIndex instead of pysyncobj, which has no such message types.
"""

from __future__ import annotations

from typing import Any

from pysyncobj.transport import TCPTransport

from keyquorum.cluster.raft_journal import DurableJournal
from keyquorum.cluster.raft_read import MESSAGE_TYPES as READ_INDEX_MESSAGES

# Messages that may leave before a sync: they neither carry nor acknowledge log entries.
# ReadIndex's messages speak of terms (fsynced when they change) and of commit indexes
# (durable on a majority before they count as committed).
CLAIMS_NOTHING_DURABLE = frozenset(
    {"apply_command", "apply_command_response"} | READ_INDEX_MESSAGES
)


APPEND_ENTRIES = "append_entries"


class DurableTransport(TCPTransport):
    """TCPTransport that syncs the journal before sending and caps followers' commits."""

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:  # noqa: N803
        journal = syncObj.conf.journalFile
        if not isinstance(journal, DurableJournal):
            raise TypeError("DurableTransport needs a DurableJournal as conf.journalFile")
        self._journal = journal
        self._read_index = syncObj.read_index  # ReadIndex's messages go there, not to pysyncobj
        # The commit index the last append carried: _RaftCore sends the next one early
        # when the leader's has moved past it.
        self.announced_commit_index = 0
        super().__init__(syncObj, selfNode, otherNodes)

    def send(self, node: Any, message: Any) -> bool:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == APPEND_ENTRIES:
            self._journal.defer_sync()  # only a leader sends these
            self.announced_commit_index = message["commit_index"]
        elif kind not in CLAIMS_NOTHING_DURABLE:
            self._journal.sync()
        return self._deliver(node, message)

    def _deliver(self, node: Any, message: Any) -> bool:
        """Hand a message to the socket; the journal is already durable here."""
        return bool(super().send(node, message))

    def _onMessageReceived(self, node: Any, message: Any) -> None:  # noqa: N802
        if isinstance(message, dict):
            kind = message.get("type")
            if kind == APPEND_ENTRIES:
                _cap_commit_index(message)
            elif kind in READ_INDEX_MESSAGES:
                self._read_index.on_message(node, message)
                return
        super()._onMessageReceived(node, message)


def _cap_commit_index(message: dict[str, Any]) -> None:
    if "prevLogIdx" not in message:
        return  # a snapshot chunk, not an append

    # Chunks of one large entry: only the last chunk appends (that one entry).
    transmission = message.get("transmission")
    if transmission is None:
        covered = len(message.get("entries", ()))
    elif transmission == "finish":
        covered = 1
    else:
        covered = 0

    verified_end = message["prevLogIdx"] + covered
    if message["commit_index"] > verified_end:
        message["commit_index"] = verified_end
