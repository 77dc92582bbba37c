"""The replicated log: every write goes through Raft (pysyncobj 0.3.17) before it is answered.

Theory of operation
===================

``ReplicatedLog`` wraps a pysyncobj ``SyncObj`` (``_RaftCore``) that runs its own tick
thread. The asyncio side calls ``submit`` and ``read_barrier``; they put a command on
pysyncobj's queue and wait on an asyncio future. Every node applies every committed entry
on the tick thread through ``_Applier``, which calls the user's ``StateMachine.apply``,
records the result in a replicated table keyed by request id, and resolves any future on
this node waiting for that request id (``loop.call_soon_threadsafe``). Results are thus
delivered by *applying*, not by pysyncobj's per-call callbacks, which serve only to notice
early that an attempt failed.

pysyncobj carries nine hazards. Each is contained here or in the two modules beside this
one, and each has a test in tests/cluster/test_raft.py.

1. The tick sets the latency
----------------------------
pysyncobj's defaults tick every 50 ms and send appends every 100 ms, so a write waited
50-150 ms. ``RaftConfig.tick_seconds`` (2 ms) sets both ``autoTickPeriod`` and
``appendEntriesPeriod``. Even so pysyncobj sends a command's entries with the next
periodic append and a new commit index with the one after; ``_RaftCore`` sends both at
the end of the tick instead, whenever no follower has an append unacknowledged
(``_append_is_due``), so a commit takes a round trip and an fsync, not periods. Batching
stays on: one append carries every command queued meanwhile, and one fsync covers it
(hazard 2).

2. It never fsyncs
------------------
pysyncobj's journal writes through an mmap and never syncs. ``raft_journal.DurableJournal``
appends without syncing and ``raft_transport.DurableTransport`` syncs it once before any
acknowledgement or vote leaves the node; term and vote are fsynced when they change. The
leader sends its appends first and syncs right after (``_RaftCore._checkCommandsToApply``),
so that it writes while its followers do, and it syncs again before it counts itself
toward a commit (``_RaftCore._onTick``); a node alone in its cluster syncs there too, as
it sends nothing. What an acknowledgement guarantees: when ``submit`` returns a result,
the command is in the journal of a majority of nodes and was fdatasynced on each of them
before that node vouched for it, so it survives the loss (or power failure) of any
minority; and this node has applied it. ``read_barrier`` gives the same for everything
committed before the read.

3. Followers truncate entries they already acknowledged
-------------------------------------------------------
pysyncobj truncates a follower's log whenever an append overlaps it, not only at a
conflicting term; a leader crash in that window can lose committed writes.
``DurableJournal`` keeps identical (index, term) entries and truncates only at a real
conflict, and the transport caps the commit index a follower accepts to what the append
verified. Details in raft_journal's docstring.

4. Without a full dump file, compaction loses the state
-------------------------------------------------------
A journal whose prefix was compacted away cannot be replayed from the start, so the dump
must exist on disk: ``fullDumpFile`` is always set, next to the journal. The dump holds the
user state machine's ``snapshot()`` bytes plus the request table (``_Applier.write_dump``).
A child forked on the tick thread at the moment of compaction writes it, so it matches
the applied index exactly while the node goes on (raft_dump.py: pickling 100,000 keys on
the tick thread stopped the node long enough to lose its leadership); the log is trimmed
only once the new dump is on disk.

5. One exception inside a replicated method wedged the cluster
--------------------------------------------------------------
An exception escaping apply aborts pysyncobj's apply loop on every node, forever. Apply
therefore never raises: ``_Applier`` turns an exception from the user's apply into an
``ApplyFailure`` result (logged with its type only: messages may quote key data), which
``submit`` raises as ``CommandRejectedError``. The state machine must validate a command
completely before it mutates anything, so a rejected command leaves the state unchanged;
this layer cannot undo a half-applied change.

6. Callbacks can be lost although the command committed
-------------------------------------------------------
pysyncobj drops or fails callbacks on timeouts, leader changes and snapshot catch-up even
when the command did commit. Every command carries a request id; ``_RequestTable`` is a
replicated, bounded map from request id to first result (oldest evicted beyond
``request_table_size``, in apply order, so every node evicts the same ids). A retry with
the same id returns the recorded result instead of applying again, so ``submit`` itself
re-proposes until it sees the outcome or its deadline passes, and callers may retry too.
A retry is only deduplicated while its id is still in the table.

7. Pickled commands cross the network
-------------------------------------
pysyncobj unpickles whatever arrives on its port. The cluster secret (``password``) is
mandatory, so every message is authenticated and encrypted (AES-256-GCM under a key derived
from the secret, raft_cipher.py, in place of pysyncobj's costlier Fernet) and a peer
without the secret is disconnected at its first message. pysyncobj binds 0.0.0.0 unless told
otherwise; here it binds exactly ``self_address``, and a wildcard address is refused.

8. Full snapshot transfers are slow and disruptive
--------------------------------------------------
A follower behind the leader's compacted prefix needs the whole dump. Compaction is kept
rare (``log_compaction_min_entries`` high, ``log_compaction_min_seconds`` long) and
``submit`` bounds the commands in flight with a semaphore (``max_in_flight``), so the log
grows at the rate the cluster commits and a briefly lagging follower catches up from the
journal.

9. A restarted node would start from node.toml's members
--------------------------------------------------------
Membership changes online (``change_membership``; ``keyquorum operator raft join`` and
``remove-peer``) are pysyncobj's own: one member at a time, each an entry in the log, the
next refused until the last is applied; the joining node is started with the current
members in its node.toml. pysyncobj applies the changes in its journal only as it replays
committed entries, so a restarted node would first count node.toml's stale list towards
its quorum, where a removed node still running could vote it leader. ``ReplicatedLog``
therefore hands pysyncobj the membership worked out from the dump and the journal before
it starts (raft_membership.py); node.toml's peers count only on a node's very first start.
Membership messages between nodes need the cluster secret like every other (hazard 7).
Two limits remain. pysyncobj has no non-voting learners: a joined node counts for the
quorum at once, so until it has caught up the cluster tolerates one failure fewer (join
only while every member is healthy). And a leader refuses a change until its own no-op
entry of the term has been applied, which is the known fix for single-server changes
across leader changes; nothing here relies on more than that.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import pickle
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated

from keyquorum.cluster.collector import COLLECTOR, return_freed_memory
from keyquorum.cluster.raft_cipher import TransportCipher
from keyquorum.cluster.raft_dump import DumpWriter, Lockable
from keyquorum.cluster.raft_journal import (
    MEMORY_ENTRIES,
    DurableJournal,
    JournalCounters,
    install_journal_hook,
    quiet_false_truncation_alarm,
)
from keyquorum.cluster.raft_membership import starting_members
from keyquorum.cluster.raft_read import ReadFailed, ReadIndex
from keyquorum.cluster.raft_tick import TickPacer, Wakeup
from keyquorum.cluster.raft_transport import DurableTransport

log = logging.getLogger("keyquorum.cluster.raft")

JOURNAL_FILE = "raft.journal"
DUMP_FILE = "raft.dump"
# Format of the dump written at compaction. Never renumber: it is read back from disk.
DUMP_FORMAT = 1

# After a failed attempt (no leader yet, leader changed) wait this long before proposing
# again: about one election round trip on a local cluster, short next to any timeout.
RETRY_BACKOFF_SECONDS = 0.02
# How long one barrier keeps trying on behalf of the reads batched into it.
BARRIER_GIVE_UP_SECONDS = 30.0
# The tick stays fast this long after the last work: long enough for the append that
# tells followers the new commit index, short next to a human's pause between requests.
FAST_TICK_LINGER_SECONDS = 0.2


class ReplicationError(Exception):
    """A command or barrier could not be completed through the replicated log."""


class NoQuorumError(ReplicationError):
    """No leader with a majority was reachable before the deadline."""


class CommitTimeoutError(ReplicationError):
    """A leader existed, but the command was not seen applied before the deadline.

    The command may still commit later; retrying with the same request id is safe.
    """


class MembershipChangeError(ReplicationError):
    """pysyncobj refused a membership change; the message says why and what to do."""


# What a refused membership change means (pysyncobj's FAIL_REASON), for the operator.
_MEMBERSHIP_REFUSALS = {
    FAIL_REASON.QUEUE_FULL: "the leader's queue is full; retry in a moment",
    FAIL_REASON.MISSING_LEADER: "there is no leader right now; retry once the cluster "
                                "has one (keyquorum status)",
    FAIL_REASON.REQUEST_DENIED: "refused: another membership change has not committed "
                                "yet, the address is already a member (join) or not one "
                                "(remove-peer), or the leader was asked to remove itself",
}


class CommandRejectedError(ReplicationError):
    """The state machine's apply raised; the command committed but changed nothing."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


class StateMachine(Protocol):
    """What the replicated log drives. Called on pysyncobj's thread, one call at a time.

    apply must be deterministic (no I/O, clock or randomness) and must validate a command
    fully before mutating, raising instead of half-applying. Commands and results must be
    picklable: commands cross the network, results are kept in the request table.
    """

    def apply(self, command: object) -> object: ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


@dataclass(frozen=True)
class ApplyFailure:
    """The replicated result of a command whose apply raised."""

    error_type: str
    message: str


@dataclass(frozen=True)
class RaftConfig:
    self_address: str  # "127.0.0.1:7001": the Raft port binds exactly here
    peer_addresses: tuple[str, ...]
    data_dir: Path  # journal, its meta file and the full dump live here
    password: str  # cluster secret; required, it authenticates every Raft message
    # 2 ms tick: pysyncobj's 50 ms default made every write wait 50-150 ms (hazard 1).
    tick_seconds: float = 0.002
    # While idle the tick and the heartbeat slow down to this (raft_tick.py): pysyncobj's
    # own heartbeat was 100 ms against the same election timeouts. Capped by idle_period.
    idle_tick_seconds: float = 0.05
    # pysyncobj's defaults; long enough that a compaction or GC pause is not an election.
    election_timeout_min_seconds: float = 0.4
    election_timeout_max_seconds: float = 1.4
    connection_timeout_seconds: float = 3.5
    # pysyncobj waits 5 s between reconnects; a restarted peer should rejoin quicker.
    reconnect_seconds: float = 1.0
    # pysyncobj keeps leading for 30 s without a majority; step down soon enough that a
    # cut-off leader stops taking commands, long enough to ride out a slow peer.
    leader_step_down_seconds: float = 2.0
    # Compaction forces full-dump transfers on laggards (hazard 8): keep it rare.
    log_compaction_min_entries: int = 50_000
    log_compaction_min_seconds: float = 3600.0
    # Journal entries whose commands stay in memory; older ones are read from the file
    # (raft_journal.py). Between compactions the file holds up to 50,000 of 1.3 KB each.
    journal_memory_entries: int = MEMORY_ENTRIES
    # Bounds pysyncobj's queue and the log's growth during a burst (hazard 8).
    max_in_flight: int = 256
    # Retries are deduplicated while their id is among this many recent ids (hazard 6).
    request_table_size: int = 10_000
    # An attempt that heard no outcome for this long is proposed again (same request id).
    retry_seconds: float = 1.0
    # Reads confirm leadership with a ReadIndex round (raft_read.py); True goes back to a
    # replicated no-op entry per round of reads, kept to measure one against the other.
    reads_through_log: bool = False
    # Raft messages are sealed with AES-256-GCM (raft_cipher.py); "fernet" is pysyncobj's
    # own, several times costlier, kept to measure one against the other. Every node of a
    # cluster must use the same.
    transport_cipher: Literal["aes-gcm", "fernet"] = "aes-gcm"

    def __post_init__(self) -> None:
        if not self.password:
            raise ValueError("raft password (cluster secret) is required")
        host, _, port = self.self_address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"self_address must be host:port, got {self.self_address!r}")
        if host in ("0.0.0.0", "::", "[::]"):
            raise ValueError("self_address must be a concrete address, not a wildcard")
        if self.tick_seconds <= 0 or self.idle_tick_seconds < self.tick_seconds:
            raise ValueError("tick_seconds must be positive and idle_tick_seconds no less")
        if self.election_timeout_min_seconds <= 3 * self.tick_seconds:
            raise ValueError("election timeout must exceed three ticks")
        if self.max_in_flight < 1 or self.request_table_size < 1:
            raise ValueError("max_in_flight and request_table_size must be positive")

    @property
    def idle_period(self) -> float:
        """The idle tick, kept to an eighth of the shortest election timeout or less."""
        return max(self.tick_seconds,
                   min(self.idle_tick_seconds, self.election_timeout_min_seconds / 8))


Role = Literal["leader", "follower", "candidate"]
_ROLES: dict[int, Role] = {0: "follower", 1: "candidate", 2: "leader"}


@dataclass(frozen=True)
class PeerStatus:
    address: str
    connected: bool
    match_index: int | None  # known only on the leader


@dataclass(frozen=True)
class RaftStatus:
    node_address: str
    role: Role
    leader_address: str | None
    term: int
    commit_index: int
    applied_index: int
    has_quorum: bool
    peers: tuple[PeerStatus, ...]
    journal: JournalCounters


class _RequestTable:
    """Recent request ids and their first result; replicated by being applied in order."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._results: OrderedDict[str, object] = OrderedDict()

    def get(self, request_id: str) -> tuple[bool, object]:
        if request_id in self._results:
            return True, self._results[request_id]
        return False, None

    def remember(self, request_id: str, result: object) -> None:
        self._results[request_id] = result
        while len(self._results) > self._capacity:
            self._results.popitem(last=False)

    def items(self) -> list[tuple[str, object]]:
        return list(self._results.items())

    def replace(self, items: list[tuple[str, object]]) -> None:
        self._results = OrderedDict(items)


class _Waiters:
    """Futures on this node waiting for a key to be applied; safe across threads.

    The tick thread resolves them in bursts (a batch of applied commands, a round of
    reads). Each wake of an event loop from another thread is a write to its self-pipe,
    so the outcomes of a burst wait in one outbox per loop and a single wake settles
    them all: on a leader under Creates, a wake per future was 5% of its CPU.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[Hashable, list[tuple[asyncio.AbstractEventLoop, asyncio.Future]]] = {}
        self._outboxes: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, object]]] = {}

    def add(self, key: Hashable, loop: asyncio.AbstractEventLoop) -> asyncio.Future[object]:
        future: asyncio.Future[object] = loop.create_future()
        with self._lock:
            self._waiting.setdefault(key, []).append((loop, future))
        return future

    def discard(self, key: Hashable, future: asyncio.Future[object]) -> None:
        with self._lock:
            remaining = [w for w in self._waiting.get(key, []) if w[1] is not future]
            if remaining:
                self._waiting[key] = remaining
            else:
                self._waiting.pop(key, None)

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._waiting)

    def resolve(self, key: Hashable, result: object) -> None:
        to_wake = []
        with self._lock:
            for loop, future in self._waiting.pop(key, []):
                outbox = self._outboxes.setdefault(loop, [])
                outbox.append((future, result))
                if len(outbox) == 1:
                    to_wake.append(loop)  # an outbox with more in it is already due
        for loop in to_wake:
            loop.call_soon_threadsafe(self._settle_outbox, loop)

    def _settle_outbox(self, loop: asyncio.AbstractEventLoop) -> None:
        # On the loop's thread. What arrives after the pop opens a new outbox, and wakes.
        with self._lock:
            outbox = self._outboxes.pop(loop, [])
        for future, result in outbox:
            if not future.done():
                future.set_result(result)


class _Applier:
    """Applies committed entries on the tick thread and owns what the dump contains."""

    def __init__(self, state_machine: StateMachine, table_size: int, waiters: _Waiters) -> None:
        self._state_machine = state_machine
        self._table = _RequestTable(table_size)
        self._waiters = waiters
        self._dump = DumpWriter()

    def apply_entry(self, request_id: str, command: object) -> object:
        # A retry of a request already applied returns its first result (hazard 6).
        known, result = self._table.get(request_id)
        if not known:
            result = self._apply_safely(request_id, command)
            self._table.remember(request_id, result)
        self._waiters.resolve(("request", request_id), result)
        return result

    def _apply_safely(self, request_id: str, command: object) -> object:
        # Never let an exception into pysyncobj's apply loop (hazard 5).
        try:
            return self._state_machine.apply(command)
        except Exception as exc:
            log.warning("apply_rejected request_id=%s error=%s", request_id, type(exc).__name__)
            return ApplyFailure(type(exc).__name__, str(exc))

    def reached_barrier(self, token: str) -> None:
        self._waiters.resolve(("barrier", token), None)

    def write_dump(self, file_name: str, raft_data: Any) -> None:
        """pysyncobj's serializer hook: the dump matches the applied index exactly.

        A forked child writes it (raft_dump.py) and renames it over the dump itself, so
        ``file_name``, the temporary name pysyncobj would rename into place, is never
        created: pysyncobj's rename fails and it leaves the outcome to ``dump_status``.
        """
        requests = self._table.items()

        def write(f: BinaryIO) -> None:
            dump = {
                "format": DUMP_FORMAT,
                "raft": raft_data,
                "state": self._state_machine.snapshot(),
                "requests": requests,
            }
            pickle.dump(dump, f, protocol=pickle.HIGHEST_PROTOCOL)

        # A state machine read from other threads names the locks its snapshot takes.
        locks: list[Lockable] = getattr(self._state_machine, "locks", list)()
        # The journal's next rewrite, after the log is trimmed, fsyncs the directory.
        self._dump.start(file_name.removesuffix(".tmp"), write, locks)

    def dump_status(self) -> int:
        """pysyncobj's serializeChecker."""
        return self._dump.status()

    def close(self) -> None:
        self._dump.close()

    def read_dump(self, file_name: str) -> Any:
        """pysyncobj's deserializer hook: restore, then answer waiters the dump covers."""
        with open(file_name, "rb") as f:
            dump = pickle.load(f)
        if dump.get("format") != DUMP_FORMAT:
            raise ValueError(f"unknown raft dump format {dump.get('format')!r}")
        COLLECTOR.begin()
        try:
            self._state_machine.restore(dump["state"])
            self._table.replace(dump["requests"])
        finally:
            COLLECTOR.end()
        last_entry = dump["raft"][0]  # (command, index, term) of the last applied entry
        log.info("raft_dump_restored index=%d", last_entry[1])

        for key in self._waiters.keys():
            if isinstance(key, tuple) and key[0] == "request":
                known, result = self._table.get(key[1])
                if known:
                    self._waiters.resolve(key, result)
        return dump["raft"]


class _RaftCore(SyncObj):
    """The SyncObj: its replicated methods are the only entry types in the log."""

    def __init__(
        self,
        applier: _Applier,
        config: RaftConfig,
        conf: SyncObjConf,
        transport_class: type[DurableTransport],
        waiters: _Waiters,
        replaying: bool,
    ) -> None:
        # Set before SyncObj.__init__: its tick thread may start applying at once, and the
        # transport it creates hands ReadIndex's messages to read_index.
        self._applier = applier
        self._journal: DurableJournal = conf.journalFile
        self._replaying = replaying
        self._cipher = TransportCipher(config.password) if conf.password is None else None
        self.wakeup = Wakeup()
        self.read_index = ReadIndex(_CoreView(self), waiters.resolve, self.wakeup.wake)
        self._pacer = TickPacer(
            conf, config.tick_seconds, config.idle_period, FAST_TICK_LINGER_SECONDS,
            has_work=self._has_work, on_fast=self._on_fast,
        )
        peers = [p for p in config.peer_addresses if p != config.self_address]
        super().__init__(config.self_address, peers, conf, transportClass=transport_class)
        self.addOnTickCallback(self._on_tick)

    @property
    def encryptor(self) -> Any:
        """What pysyncobj's connections seal and open every message with."""
        return self._cipher if self._cipher is not None else super().encryptor

    @property
    def tick_is_fast(self) -> bool:
        return self._pacer.fast

    def _onTick(self, timeToWait: float = 0.0) -> None:  # noqa: N802, N803 (pysyncobj's)
        # The tick starts by counting the leader toward commits for every entry it holds,
        # so those must be durable here: the appends that left before their sync
        # (raft_transport.py) and, for a node alone in its cluster, which sends nothing
        # that would sync, whatever it appended.
        self._journal.sync_if_deferred()
        if not self.otherNodes:
            self._journal.sync()
        super()._onTick(timeToWait)

    def _checkCommandsToApply(self) -> None:  # noqa: N802 (pysyncobj's name)
        # pysyncobj calls this right after sending the tick's appends: sync now, while
        # the followers write the same entries, and before this tick's new commands.
        self._journal.sync_if_deferred()
        super()._checkCommandsToApply()

        if self._append_is_due():
            self._SyncObj__sendAppendEntries()
            self._journal.sync_if_deferred()

    def _append_is_due(self) -> bool:
        # pysyncobj appends the commands a tick takes after that tick's appends have left,
        # and tells followers of a new commit index only with the next append: each waits
        # for the append period, twice for a command forwarded by a follower (measured:
        # 3.9 ms a write through the leader, 7.3 through a follower, with fdatasync at
        # 0.2 ms). So the appends go now when no follower has one unacknowledged; while
        # one has, they wait for the period or its answer, so that under load batches
        # still form behind the append in flight instead of one append per command.
        # (pysyncobj appends to every follower at once: sending to a free follower would
        # also send a second, smaller batch to a busy one.)
        # Shortcoming: commands forwarded by followers reach the leader one message each,
        # so under many writers through a follower the appends carry smaller batches than
        # the period gathered (measured with 32: 8-18% more CPU a write, 1,983-2,604
        # against 2,248-2,889 writes/s). Holding an append until the forwarded commands
        # of the same poll are all queued would take a hook into pysyncobj's poll.
        if not self._isLeader():
            return False
        last_index = self._SyncObj__getCurrentLogIndex()
        news = self.raftCommitIndex > self._SyncObj__transport.announced_commit_index
        next_index = self._SyncObj__raftNextIndex
        match_index = self._SyncObj__raftMatchIndex
        anyone = False  # connected: alone, or cut off, there is no one to append to
        for node in self.otherNodes:
            if not self.isNodeConnected(node):
                continue
            if match_index.get(node, 0) < next_index.get(node, 0) - 1:
                return False  # an append in flight
            anyone = True
            news = news or next_index.get(node, 0) <= last_index
        return anyone and news

    def _on_tick(self) -> None:
        if self._replaying:
            # The first tick loaded the dump and applied the journal up to the commit
            # index it had saved: the rebuild is over.
            self._replaying = False
            COLLECTOR.end()
            return_freed_memory()
        self.wakeup.subscribe(self._poller)
        self.read_index.on_tick()
        self._pacer.on_tick()

    def end_replay(self) -> None:
        """Resume the collector if no tick did (the node stopped before its first)."""
        if self._replaying:
            self._replaying = False
            COLLECTOR.end()

    def _has_work(self) -> bool:
        # Only the log needs the fast pace: appends carry its entries and its commit index.
        # Reads go at the pace of events, since a read wakes the poll and the messages of
        # its round end the poll when they arrive; under Gets alone, heartbeats every 2 ms
        # and their acknowledgements had taken a sixth of the tick threads' time.
        # A command from this node is in the log, or waiting for the leader's reply, by
        # the time the pacer asks (pysyncobj queues it before the tick's callbacks).
        # pysyncobj keeps these private; only read here, on the tick thread that owns them.
        last_index = self._SyncObj__getCurrentLogIndex()
        commit_index = self.raftCommitIndex
        if self._SyncObj__commandsWaitingReply:
            return True
        if self.raftLastApplied < commit_index or commit_index < last_index:
            return True
        if self._isLeader():
            # A connected follower still catching up wants appends at the fast pace.
            match = self._SyncObj__raftMatchIndex
            return any(
                match.get(node, 0) < last_index
                for node in self.otherNodes if self.isNodeConnected(node)
            )
        return False

    def _on_fast(self) -> None:
        # Send the first append now, not when the idle period would have.
        self._SyncObj__newAppendEntriesTime = 0.0
        self.wakeup.wake()

    @replicated
    def apply_entry(self, request_id: str, command: object) -> object:
        return self._applier.apply_entry(request_id, command)

    @replicated
    def barrier(self, token: str) -> None:
        self._applier.reached_barrier(token)


class _CoreView:
    """What ReadIndex reads of pysyncobj's state; called on the tick thread only."""

    def __init__(self, core: _RaftCore) -> None:
        self._core = core

    def is_leader(self) -> bool:
        return bool(self._core._isLeader())

    def term(self) -> int:
        return int(self._core.raftCurrentTerm)

    def leader(self) -> Any:
        return self._core._getLeader()

    def peers(self) -> list[Any]:
        return list(self._core.otherNodes)

    def commit_index(self) -> int:
        return int(self._core.raftCommitIndex)

    def applied_index(self) -> int:
        return int(self._core.raftLastApplied)

    def committed_in_own_term(self) -> bool:
        # pysyncobj appends a no-op on election and remembers its index (private).
        noop_index = self._core._SyncObj__noopIDx
        return noop_index is not None and self._core.raftCommitIndex >= noop_index

    def send(self, node: Any, message: dict[str, Any]) -> None:
        self._core._SyncObj__transport.send(node, message)


class ReplicatedLog:
    """Commits commands through Raft and applies them to a StateMachine on every node."""

    def __init__(
        self,
        config: RaftConfig,
        state_machine: StateMachine,
        *,
        transport_class: type[DurableTransport] = DurableTransport,
    ) -> None:
        install_journal_hook()
        quiet_false_truncation_alarm()
        config.data_dir.mkdir(parents=True, exist_ok=True)

        self._config = config
        self._waiters = _Waiters()
        self._applier = _Applier(state_machine, config.request_table_size, self._waiters)
        dump_path = config.data_dir / DUMP_FILE
        self._journal = DurableJournal(config.data_dir / JOURNAL_FILE, dump_path,
                                       config.journal_memory_entries)
        # The members to start with follow from the log, not node.toml: membership
        # changes online (raft_membership.py).
        members = starting_members(
            config.data_dir, config.self_address, config.peer_addresses, dump_path,
            self._journal.entries(),
        )
        config = self._config = replace(config, peer_addresses=tuple(members))
        self._in_flight = asyncio.Semaphore(config.max_in_flight)
        self._next_barrier: asyncio.Future[None] | None = None
        self._barrier_runner: asyncio.Task[None] | None = None

        # The collector waits while the first tick rebuilds the state from disk.
        replaying = len(self._journal) > 0 or dump_path.exists()
        if replaying:
            COLLECTOR.begin()
        self._core = _RaftCore(
            self._applier, config, self._sync_obj_conf(dump_path), transport_class,
            self._waiters, replaying,
        )
        try:
            self._core.waitBinded()
        except Exception:
            self._core.destroy()
            self._core.end_replay()
            raise
        log.info(
            "raft_started self=%s peers=%d tick_ms=%.1f",
            config.self_address, len(config.peer_addresses), config.tick_seconds * 1000,
        )

    def _sync_obj_conf(self, dump_path: Path) -> SyncObjConf:
        c = self._config
        return SyncObjConf(
            # pysyncobj derives its Fernet key from this; AES-GCM replaces it (hazard 7).
            password=c.password if c.transport_cipher == "fernet" else None,
            bindAddress=c.self_address,  # pysyncobj would bind 0.0.0.0 (hazard 7)
            autoTick=True,
            autoTickPeriod=c.tick_seconds,
            appendEntriesPeriod=c.tick_seconds,
            appendEntriesUseBatch=True,
            raftMinTimeout=c.election_timeout_min_seconds,
            raftMaxTimeout=c.election_timeout_max_seconds,
            connectionTimeout=c.connection_timeout_seconds,
            connectionRetryTime=c.reconnect_seconds,
            leaderFallbackTimeout=c.leader_step_down_seconds,
            journalFile=self._journal,  # handed through by install_journal_hook
            fullDumpFile=str(dump_path),
            serializer=self._applier.write_dump,
            serializeChecker=self._applier.dump_status,
            deserializer=self._applier.read_dump,
            logCompactionMinEntries=c.log_compaction_min_entries,
            logCompactionMinTime=c.log_compaction_min_seconds,
            # One member added or removed at a time, through the log; a restart starts
            # from the membership the log holds (raft_membership.py, hazard 9).
            dynamicMembershipChange=True,
            commandsWaitLeader=True,
            bindRetryTime=0.2,
            maxBindRetries=5,
        )

    async def submit(self, command: object, request_id: str, timeout: float = 5.0) -> object:
        """Commit command and return what apply returned on this node.

        Raises CommandRejectedError if apply raised, NoQuorumError or CommitTimeoutError
        if the outcome was not seen before timeout. Safe to retry with the same request_id.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            await asyncio.wait_for(self._in_flight.acquire(), timeout)
        except TimeoutError:
            raise self._deadline_error() from None

        try:
            result = await self._propose_until_applied(
                ("request", request_id),
                lambda callback: self._core.apply_entry(request_id, command, callback=callback),
                deadline,
            )
        finally:
            self._in_flight.release()

        if isinstance(result, ApplyFailure):
            raise CommandRejectedError(result.error_type, result.message)
        return result

    async def read_barrier(self, timeout: float = 5.0) -> None:
        """Return once this node applied all the leader had committed when this was called.

        Reads that arrive while a barrier is in flight share the next one.
        """
        loop = asyncio.get_running_loop()
        if self._next_barrier is None:
            self._next_barrier = loop.create_future()
            self._next_barrier.add_done_callback(_mark_retrieved)
        batch = self._next_barrier
        if self._barrier_runner is None or self._barrier_runner.done():
            self._barrier_runner = loop.create_task(self._run_barriers())

        try:
            await asyncio.wait_for(asyncio.shield(batch), timeout)
        except TimeoutError:
            raise self._deadline_error() from None

    async def _run_barriers(self) -> None:
        loop = asyncio.get_running_loop()
        while self._next_barrier is not None:
            # Take the batch before proposing: only reads already waiting are served by it.
            batch, self._next_barrier = self._next_barrier, None
            token = uuid.uuid4().hex
            deadline = loop.time() + BARRIER_GIVE_UP_SECONDS
            try:
                if self._config.reads_through_log:
                    await self._propose_until_applied(
                        ("barrier", token),
                        functools.partial(self._propose_barrier, token),
                        deadline,
                    )
                else:
                    await self._read_index_until_applied(("read", token), deadline)
            except ReplicationError as exc:
                batch.set_exception(exc)
            else:
                batch.set_result(None)

    def _propose_barrier(self, token: str, callback: Callable[[object, int], None]) -> None:
        self._core.barrier(token, callback=callback)

    async def _read_index_until_applied(self, key: tuple[str, str], deadline: float) -> None:
        """Wait until this node applied a read index (raft_read.py), asking again on failure."""
        loop = asyncio.get_running_loop()
        while True:
            ready = self._waiters.add(key, loop)
            try:
                self._core.read_index.request(key)
                retry_at = min(deadline, loop.time() + self._config.retry_seconds)
                await asyncio.wait((ready,), timeout=max(0.0, retry_at - loop.time()))
            finally:
                self._waiters.discard(key, ready)

            if ready.done() and not isinstance(ready.result(), ReadFailed):
                return
            if loop.time() >= deadline:
                raise self._deadline_error()
            # No leader yet, or leadership changed under the round: ask again shortly.
            if ready.done():
                await asyncio.sleep(min(RETRY_BACKOFF_SECONDS, max(0.0, deadline - loop.time())))

    async def _propose_until_applied(
        self,
        key: tuple[str, str],
        propose: Callable[[Callable[[object, int], None]], None],
        deadline: float,
    ) -> object:
        loop = asyncio.get_running_loop()
        applied = self._waiters.add(key, loop)
        try:
            while True:
                failed: asyncio.Future[object] = loop.create_future()
                propose(_failure_reporter(loop, failed))
                self._core.wakeup.wake()  # an idle tick would take its time to notice
                retry_at = min(deadline, loop.time() + self._config.retry_seconds)
                await asyncio.wait(
                    (applied, failed),
                    timeout=max(0.0, retry_at - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if applied.done():
                    return applied.result()
                if loop.time() >= deadline:
                    raise self._deadline_error()

                # The attempt failed (no leader yet, leader changed, discarded) or went
                # unanswered; the same key is proposed again and applies at most once.
                if failed.done():
                    pause = min(RETRY_BACKOFF_SECONDS, max(0.0, deadline - loop.time()))
                    await asyncio.wait((applied,), timeout=pause)
                    if applied.done():
                        return applied.result()
        finally:
            self._waiters.discard(key, applied)

    def _deadline_error(self) -> ReplicationError:
        status = self.status()
        if status.leader_address is None or not status.has_quorum:
            return NoQuorumError(f"no leader with a quorum (node {status.node_address})")
        return CommitTimeoutError(
            f"not applied before the deadline (leader {status.leader_address})"
        )

    def status(self) -> RaftStatus:
        raw = self._read_raw_status()
        self_address = self._config.self_address
        peers = []
        is_leader = raw["state"] == 2
        for address in (member for member in self.members() if member != self_address):
            peers.append(
                PeerStatus(
                    address=address,
                    connected=raw.get("partner_node_status_server_" + address) == 2,
                    match_index=raw.get("match_idx_server_" + address) if is_leader else None,
                )
            )
        leader = raw["leader"]
        return RaftStatus(
            node_address=self_address,
            role=_ROLES[raw["state"]],
            leader_address=None if leader is None else str(leader.address),
            term=int(raw["raft_term"]),
            commit_index=int(raw["commit_idx"]),
            applied_index=int(raw["last_applied"]),
            has_quorum=bool(raw["has_quorum"]),
            peers=tuple(peers),
            journal=JournalCounters(**vars(self._journal.counters)),
        )

    def _read_raw_status(self) -> dict[str, Any]:
        # getStatus walks dicts the tick thread may be resizing; a retry settles it.
        for _ in range(10):
            try:
                return dict(self._core.getStatus())
            except RuntimeError:
                continue
        return dict(self._core.getStatus())

    def members(self) -> list[str]:
        """Every member's address as this node sees it now, its own included."""
        for _ in range(10):
            try:
                # A copy of a set the tick thread may be changing; a retry settles it.
                others = self._core.otherNodes
                break
            except RuntimeError:
                continue
        else:
            others = self._core.otherNodes
        return sorted({self._config.self_address, *(str(node.address) for node in others)})

    async def change_membership(self, change: Literal["add", "remove"], address: str,
                                timeout: float = 10.0) -> None:
        """Add or remove one member through the log; return once the change committed.

        Raises MembershipChangeError when pysyncobj refuses it (another change still in
        progress, the address already a member or not one, the leader asked to remove
        itself), NoQuorumError or CommitTimeoutError when it did not commit in time.
        """
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[object] = loop.create_future()

        def report(result: object, error: int) -> None:
            loop.call_soon_threadsafe(_settle, outcome, error)

        if change == "add":
            self._core.addNodeToCluster(address, callback=report)
        else:
            self._core.removeNodeFromCluster(address, callback=report)
        try:
            error = await asyncio.wait_for(outcome, timeout)
        except TimeoutError:
            raise self._deadline_error() from None
        if error != FAIL_REASON.SUCCESS:
            reason = _MEMBERSHIP_REFUSALS.get(error)
            raise MembershipChangeError(reason or "the leader changed before the change "
                                        "committed; check list-peers and retry if it is "
                                        "not in effect")
        log.info("raft_membership_changed change=%s address=%s members=%d", change, address,
                 len(self.members()))

    def close(self) -> None:
        """Stop the tick thread, close sockets, sync and close the journal."""
        self._core.destroy_synchronous()
        self._applier.close()
        self._core.end_replay()
        self._core.wakeup.close()
        log.info("raft_closed self=%s", self._config.self_address)


def _settle(future: asyncio.Future[object], result: object) -> None:
    if not future.done():
        future.set_result(result)


def _failure_reporter(
    loop: asyncio.AbstractEventLoop, failed: asyncio.Future[object]
) -> Callable[[object, int], None]:
    """A pysyncobj callback that reports only failures; results arrive by being applied."""

    def report(result: object, error: int) -> None:
        if error != FAIL_REASON.SUCCESS:
            loop.call_soon_threadsafe(_settle, failed, error)

    return report


def _mark_retrieved(future: asyncio.Future[None]) -> None:
    # A barrier may fail after every read batched into it gave up; that is not news.
    if not future.cancelled():
        future.exception()
