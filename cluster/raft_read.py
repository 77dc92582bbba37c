"""Linearizable reads without a log entry: ReadIndex on top of pysyncobj.

Theory of operation
===================
A read must see every write that completed before the read began. The log barrier this
replaces proposed a no-op entry for each round of reads: appended, fsynced on a majority
and applied on every node. ReadIndex (Ongaro's Raft thesis, section 6.4) gives the same
guarantee with one round of small messages and nothing written to disk:

1. The leader takes its commit index as the *read index*, but only once it has committed
   an entry of its own term (pysyncobj appends a no-op when elected): before that, its
   commit index may lag what earlier leaders committed.
2. It sends a *probe* carrying its term and a round number (counting up on this node) to
   every peer. A peer acknowledges a probe whose term is at least its own: it has then
   seen no newer term, so it had voted for no newer leader when the probe arrived.
3. Once a majority, the leader included, acknowledged this round or a later one, no
   newer leader existed when the round was sent: it would have needed the vote of one
   of those peers. So every write acknowledged before step 1 is at or below the read
   index.
4. The reader waits until this node has applied the read index, then reads its state.

A follower asks the leader for a read index (steps 1-3 happen there) and waits for its
own apply. A round that is not confirmed soon is probed again, since a probe can be lost
to a reconnect or reach a peer that has not yet heard of the leader's term.

A follower's request carries the follower's term, and in a cluster of three (or two)
it is itself the acknowledgement the round would fetch, so the leader answers it at once
and a follower's read costs one round trip instead of two. The request left the follower
after its reads arrived; if its term equals the leader's, the follower had voted in no
newer term when it sent it, and the leader, still leading that term when it answers,
had voted in none either. A newer leader at the moment the request left would have
needed one of those two votes, so there was none, and the leader's commit index holds
every write acknowledged before the reads began: step 3 with the request as the
acknowledgement. A larger cluster needs more acknowledgements than the one request, and a
request without a term (from a node of an earlier version) proves nothing; both wait for
a round as before.

Reads are batched by keeping one round in flight: reads that arrive while a round is
unconfirmed wait and share the next, which goes out as soon as the one before it is
confirmed; a follower likewise keeps one request at the leader. An idle node answers
its first read after one round as before; a busy one sends a round per round trip
instead of one per tick, and under a steady load of Gets most ticks had carried a
single read (measured: a follower sent an index request for every second read).

No clock is trusted: a leader lease would save the round trip, but it is safe only if
peers refuse to vote while a lease runs, and pysyncobj grants votes as soon as a higher
term asks. A leader that is paused, deposed and resumed still probes with its old term,
which no peer acknowledges, until an append from the new leader makes it step down; its
waiting reads then fail here and are retried (raft.py), now through the new leader.

Everything here runs on pysyncobj's tick thread except ``request``, which the asyncio
side calls. Outcomes go back through ``resolve``: None when the read may proceed, a
``ReadFailed`` when it should be retried.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

# Message types of this module. Never rename: they cross the network between versions.
PROBE = "kq_read_probe"
PROBE_ACK = "kq_read_probe_ack"
INDEX_REQUEST = "kq_read_index_request"
INDEX_RESPONSE = "kq_read_index_response"
MESSAGE_TYPES = frozenset({PROBE, PROBE_ACK, INDEX_REQUEST, INDEX_RESPONSE})

# An unconfirmed round is probed again after this long: a few round trips on a loaded
# machine, far below the callers' retry (raft.py's retry_seconds, 1 s).
PROBE_RETRY_SECONDS = 0.05
# A follower's request the leader never answered (lost in a reconnect) fails after this
# long, so that its reads retry instead of waiting for their deadline.
FORWARD_GIVE_UP_SECONDS = 1.0


@dataclass(frozen=True)
class ReadFailed:
    """No read index this time (no leader known, leadership changed): retry."""

    reason: str


class RaftView(Protocol):
    """What ReadIndex needs from the Raft node; called on the tick thread only."""

    def is_leader(self) -> bool: ...

    def term(self) -> int: ...

    def leader(self) -> Any: ...  # the leader's node as pysyncobj knows it, or None

    def peers(self) -> list[Any]: ...

    def commit_index(self) -> int: ...

    def applied_index(self) -> int: ...

    def committed_in_own_term(self) -> bool: ...

    def send(self, node: Any, message: dict[str, Any]) -> None: ...


@dataclass
class _Pending:
    """A read the leader serves: local waiters, or a follower's request to answer."""

    keys: list[Hashable] = field(default_factory=list)
    reply_to: tuple[Any, int] | None = None  # (follower node, its request id)
    round: int = 0
    read_index: int = 0


@dataclass(frozen=True)
class _Forwarded:
    keys: list[Hashable]
    leader: Any
    sent_at: float


class ReadIndex:
    """Read indexes for this node's readers; one instance per Raft node."""

    def __init__(
        self,
        view: RaftView,
        resolve: Callable[[Hashable, object], None],
        wake: Callable[[], None],
    ) -> None:
        self._view = view
        self._resolve = resolve
        self._wake = wake
        self._incoming: collections.deque[Hashable] = collections.deque()  # thread-safe

        # Leader side.
        self._term = -1
        self._round = 0
        self._round_sent_at = 0.0
        self._acked: dict[Any, int] = {}  # peer -> highest round it acknowledged
        self._waiting_for_round: list[_Pending] = []
        self._unconfirmed: list[_Pending] = []

        # Follower side, and every node: reads waiting for their index to be applied.
        self._next_request_id = 0
        self._forwarded: dict[int, _Forwarded] = {}  # at most one, unless leaders changed
        self._to_forward: list[Hashable] = []  # arrived while a request was at the leader
        self._to_apply: list[tuple[int, Hashable]] = []

    def request(self, key: Hashable) -> None:
        """Ask for a read index for key; any thread. The outcome goes to resolve(key)."""
        self._incoming.append(key)
        self._wake()

    def busy(self) -> bool:
        return bool(
            self._incoming or self._waiting_for_round or self._unconfirmed
            or self._forwarded or self._to_forward or self._to_apply
        )

    def on_tick(self) -> None:
        """Serve or forward new reads, confirm rounds, release applied reads."""
        view = self._view
        now = time.monotonic()
        self._notice_term()

        self._to_forward += self._drain_incoming()
        self._expire_forwards(now)
        if view.is_leader():
            if self._to_forward:
                self._waiting_for_round.append(_Pending(keys=self._to_forward))
                self._to_forward = []
            self._serve_as_leader(now)
        else:
            self._fail_leader_side("not_leader")
            if self._to_forward and not self._forwarded:
                self._forward(self._to_forward, now)
                self._to_forward = []
        self._release_applied()

    def on_message(self, node: Any, message: dict[str, Any]) -> None:
        """A message of MESSAGE_TYPES from a peer, on the tick thread."""
        view = self._view
        kind = message["type"]
        self._notice_term()

        if kind == PROBE:
            # Acknowledge unless a newer term is known here (step 2).
            if message["term"] >= view.term():
                view.send(node, {"type": PROBE_ACK, "term": message["term"],
                                 "round": message["round"]})
        elif kind == PROBE_ACK:
            if view.is_leader() and message["term"] == view.term():
                self._acked[node] = max(self._acked.get(node, 0), message["round"])
        elif kind == INDEX_REQUEST:
            if not view.is_leader():
                view.send(node, {"type": INDEX_RESPONSE, "id": message["id"],
                                 "error": "not_leader"})
            elif self._confirms_itself(message):
                view.send(node, {"type": INDEX_RESPONSE, "id": message["id"],
                                 "index": view.commit_index()})
            else:
                self._waiting_for_round.append(_Pending(reply_to=(node, message["id"])))
        elif kind == INDEX_RESPONSE:
            forwarded = self._forwarded.pop(message["id"], None)
            if forwarded is None:
                return  # already given up on
            error = message.get("error")
            for key in forwarded.keys:
                if error is not None:
                    self._resolve(key, ReadFailed(str(error)))
                else:
                    self._to_apply.append((int(message["index"]), key))

    def _notice_term(self) -> None:
        # A new term voids the rounds of the old one: their reads retry.
        term = self._view.term()
        if term != self._term:
            self._term = term
            self._acked.clear()
            self._fail_leader_side("leader_changed")

    def _drain_incoming(self) -> list[Hashable]:
        keys = []
        while self._incoming:
            keys.append(self._incoming.popleft())
        return keys

    def _serve_as_leader(self, now: float) -> None:
        view = self._view
        self._answer_confirmed()

        # Step 1: a read index only once this term has committed an entry, and a new round
        # only once the one in flight is confirmed (the batching, above).
        if self._waiting_for_round and view.committed_in_own_term() and not self._unconfirmed:
            self._round += 1
            for pending in self._waiting_for_round:
                pending.round = self._round
                pending.read_index = view.commit_index()
            self._unconfirmed = self._waiting_for_round
            self._waiting_for_round = []
            self._send_probes(now)
            self._answer_confirmed()  # a node alone confirms its own round at once
        elif self._unconfirmed and now - self._round_sent_at > PROBE_RETRY_SECONDS:
            # A later round confirms earlier ones too: it was sent after their index.
            self._round += 1
            self._send_probes(now)

    def _answer_confirmed(self) -> None:
        # Step 3: the highest round a majority acknowledged.
        view = self._view
        confirmed = self._confirmed_round()
        still_waiting = []
        for pending in self._unconfirmed:
            if pending.round > confirmed:
                still_waiting.append(pending)
            elif pending.reply_to is not None:
                node, request_id = pending.reply_to
                view.send(node, {"type": INDEX_RESPONSE, "id": request_id,
                                 "index": pending.read_index})
            else:
                self._to_apply.extend((pending.read_index, key) for key in pending.keys)
        self._unconfirmed = still_waiting

    def _send_probes(self, now: float) -> None:
        self._round_sent_at = now
        probe = {"type": PROBE, "term": self._term, "round": self._round}
        for peer in self._view.peers():
            self._view.send(peer, probe)

    def _confirmed_round(self) -> int:
        peers = self._view.peers()
        # This node counts as having acknowledged every round it sent.
        rounds = sorted((self._acked.get(peer, 0) for peer in peers), reverse=True)
        rounds.insert(0, self._round)
        return rounds[_majority(peers) - 1]

    def _confirms_itself(self, request: dict[str, Any]) -> bool:
        # The follower's request as the one acknowledgement a majority still needs.
        view = self._view
        return (
            request.get("term") == view.term()
            and view.committed_in_own_term()
            and _majority(view.peers()) <= 2
        )

    def _fail_leader_side(self, reason: str) -> None:
        for pending in self._waiting_for_round + self._unconfirmed:
            if pending.reply_to is not None:
                node, request_id = pending.reply_to
                self._view.send(node, {"type": INDEX_RESPONSE, "id": request_id,
                                       "error": reason})
            for key in pending.keys:
                self._resolve(key, ReadFailed(reason))
        self._waiting_for_round = []
        self._unconfirmed = []

    def _forward(self, keys: list[Hashable], now: float) -> None:
        leader = self._view.leader()
        if leader is None:
            for key in keys:
                self._resolve(key, ReadFailed("no_leader"))
            return
        self._next_request_id += 1
        self._forwarded[self._next_request_id] = _Forwarded(keys, leader, now)
        self._view.send(leader, {"type": INDEX_REQUEST, "id": self._next_request_id,
                                 "term": self._view.term()})

    def _expire_forwards(self, now: float) -> None:
        leader = self._view.leader()
        for request_id, forwarded in list(self._forwarded.items()):
            if forwarded.leader != leader or now - forwarded.sent_at > FORWARD_GIVE_UP_SECONDS:
                del self._forwarded[request_id]
                for key in forwarded.keys:
                    self._resolve(key, ReadFailed("leader_changed"))

    def _release_applied(self) -> None:
        if not self._to_apply:
            return
        applied = self._view.applied_index()
        waiting = []
        for index, key in self._to_apply:
            if index <= applied:
                self._resolve(key, None)
            else:
                waiting.append((index, key))
        self._to_apply = waiting


def _majority(peers: list[Any]) -> int:
    """How many nodes, this one among them, make a majority of it and its peers."""
    return (len(peers) + 1) // 2 + 1
