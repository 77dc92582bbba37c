"""The Raft journal: pysyncobj's log entries on disk, durable before anyone hears of them.

Theory of operation
===================

pysyncobj keeps its log in a journal object it builds through the module-level
``pysyncobj.syncobj.createJournal``. Its own file journal writes through an mmap and never
calls fsync, and it truncates whenever a follower's append overlaps entries it already has.
This module replaces that journal; ``install_journal_hook`` swaps the factory so that a
``DurableJournal`` handed in as ``SyncObjConf.journalFile`` is used as the journal itself
(any other value still goes to pysyncobj's own factory).

Appending without syncing, syncing before speaking
--------------------------------------------------
``add`` writes a record to the end of the file and marks the journal dirty; it does not
fsync. Flushing on every append was measured to halve throughput and to make followers
miss their heartbeat deadlines. Instead ``sync`` is called by the transport
(``raft_transport.DurableTransport``) before any message leaves the node, so one fdatasync
covers every entry appended since the last message. A peer can therefore never hear an
acknowledgement or a vote from this node that covers entries still only in the page
cache. The leader's appends are the one exception (``defer_sync``): they leave first and
the leader syncs right after, while its followers write the same entries, so a commit
waits for one fdatasync instead of two in a row. The leader never counts itself toward a
commit before its own sync, so the guarantee below holds unchanged. Term and vote are
different: they are rewritten atomically and fsynced at once
(file, then directory), because Raft needs them durable before the vote goes out and they
change rarely. Creating, truncating and compacting the file also fsync the file and its
directory, so file growth and renames survive power loss. The commit index is persisted
lazily (once a second, after a sync): losing it only means re-learning it from the leader.

What an acknowledgement guarantees: when ``ReplicatedLog.submit`` returns, the command was
committed, i.e. a majority of nodes (the leader included) had fdatasynced the entry to its
journal before telling anyone about it, and this node has applied it. A single node may
still lose its unsynced tail in a crash; that tail was never acknowledged to anyone, and a
torn or half-written last record is detected by its checksum and dropped when reopening.

Truncating only at a real conflict
----------------------------------
When an append from the leader overlaps entries a follower already has, pysyncobj calls
``deleteEntriesFrom`` for everything after the append's previous index and then re-adds the
leader's entries, whether or not they differ. Entries the follower had acknowledged vanish
for a moment, and vanish for good when the re-sent batch is shorter than what was deleted;
if the leader then crashes, a committed write can be lost. Raft only truncates at the
first entry whose term conflicts. So here ``deleteEntriesFrom`` does nothing and
returns (it is never used for anything but that overlap), and ``add`` decides: an entry at
an index we hold with the same term is the same entry (Raft's log matching property) and is
kept; a different term is a real conflict and truncates from there; an index one past the
end is appended. Entries after the leader's batch are kept, as Raft allows; the transport
caps the commit index a follower accepts to the last entry the append actually verified,
so such an unverified tail is never applied before the leader confirms it.

Only the newest entries in memory
----------------------------------
The file holds every entry since the last compaction (up to ``log_compaction_min_entries``,
50,000 by default, about 1.3 KB each for a Create); memory holds only the commands of the
newest ``memory_entries`` and of the first two, which pysyncobj reads at every tick. The
index, term and file offset of every entry stay in memory in compact arrays. An older
command is read back from the file when asked for, which only a follower far behind, a
restart's replay or a compaction does. pysyncobj asks for "every entry from here to the
end" and then sends one batch of it (``appendEntriesBatchSizeBytes``, 64 KB); a slice
like that reaching into the file stops after ``FILE_SLICE_BYTES`` of commands, so a
leader catching a follower up reads a little more than it sends rather than the whole
file for every batch. pysyncobj's other open-ended slice, a follower's own entries from
an append's previous index on, is cut the same way. It reads the first entry's term and
rolls back the membership changes among the rest; a change more than a megabyte of
entries past that index would not be rolled back. Known and left: it takes an append
that far behind the follower's own tail with a membership change in between. Rolling
back is itself wrong here for the changes past the leader's batch, since this journal
keeps those entries (above) while pysyncobj re-applies only the batch's changes: that
is what would need fixing first, in raft_membership.py.

pysyncobj still logs "truncating already-applied log entries" at CRITICAL on that path
even though nothing is truncated any more; ``quiet_false_truncation_alarm`` drops that one
record. The truth is logged here instead: ``journal_conflict_truncated`` for a real
conflict, at CRITICAL as ``journal_committed_entry_truncated`` when the conflict reaches
below the commit index (which would mean a durability promise was broken elsewhere).
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import struct
import zlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pysyncobj.syncobj
from pysyncobj.journal import Journal

log = logging.getLogger("keyquorum.cluster.raft.journal")

# On-disk format. Never renumber: existing journals are read with these.
JOURNAL_MAGIC = b"KQJRNL\x00\x01"
# A record: payload length, crc32 of (index, term, command), index, term, then the command.
RECORD_HEADER = struct.Struct("<IIQQ")

Entry = tuple[bytes, int, int]  # (command, index, term), the shape pysyncobj uses

# Commands kept in memory besides the file: the newest, which the leader sends and every
# node applies (see "Only the newest entries in memory" above).
MEMORY_ENTRIES = 4096
# Where an open-ended slice reaching into the file stops: well above the 64 KB batch
# pysyncobj cuts from it.
FILE_SLICE_BYTES = 1 << 20
# The first entries, which pysyncobj reads at every tick, are always in memory.
_PINNED_HEAD = 2


@dataclass
class JournalCounters:
    """What the journal did that an operator or a test wants to see."""

    syncs: int = 0
    overlapping_entries_kept: int = 0
    conflict_truncations: int = 0
    committed_entries_truncated: int = 0


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encode_record(command: bytes, index: int, term: int) -> bytes:
    body = struct.pack("<QQ", index, term) + command
    header = RECORD_HEADER.pack(len(command), zlib.crc32(body), index, term)
    return header + command


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace path with data so that after a crash it holds either the old or the new bytes."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_directory(path.parent)


class DurableJournal(Journal):
    """pysyncobj's Journal interface over an append-only, checksummed file of our own.

    Every method runs on pysyncobj's tick thread, except ``counters`` and the
    read-only properties, which other threads may read (plain attribute reads).
    """

    def __init__(self, path: Path, dump_path: Path,
                 memory_entries: int = MEMORY_ENTRIES) -> None:
        self._path = path
        self._meta_path = path.with_name(path.name + ".meta")
        # The full dump replaces the journal after a snapshot install: see clear().
        self._dump_path = dump_path
        self._memory_entries = max(1, memory_entries)
        # Entry n of the journal, at position n of each: its index and term, where its
        # record starts in the file, and its command while it is in memory (else None).
        self._indexes = array("q")
        self._terms = array("q")
        self._offsets = array("q")
        self._commands: list[bytes | None] = []
        self._dirty = False
        self._dump_needs_sync = False
        # The leader's appends may leave before their entries are synced: see defer_sync.
        self._sync_deferred = False
        # Entries up to this index are on disk as they are now (0: none known).
        self.durable_index = 0
        self._commit_index = 1
        self._stored_commit_index = 1
        self.counters = JournalCounters()

        self._meta = self._read_meta()
        self._fd = self._open_file()
        self._load_entries()

    # -- opening -------------------------------------------------------------------------

    def _read_meta(self) -> dict[str, Any]:
        try:
            meta: dict[str, Any] = json.loads(self._meta_path.read_bytes())
        except FileNotFoundError:
            return {"term": 0, "voted_for": None, "commit_index": 1}
        self._stored_commit_index = int(meta.get("commit_index", 1))
        self._commit_index = self._stored_commit_index
        return meta

    def _open_file(self) -> int:
        if not self._path.exists():
            # Create with the magic, then make both the bytes and the name durable.
            with open(self._path, "wb") as f:
                f.write(JOURNAL_MAGIC)
                f.flush()
                os.fsync(f.fileno())
            _fsync_directory(self._path.parent)
        return os.open(self._path, os.O_RDWR | os.O_APPEND)

    def _load_entries(self) -> None:
        data = os.pread(self._fd, os.fstat(self._fd).st_size, 0)
        if data[: len(JOURNAL_MAGIC)] != JOURNAL_MAGIC:
            raise RuntimeError(f"{self._path} is not a keyquorum journal (bad magic)")

        # Read records until the end or the first one that is short or fails its checksum:
        # that is the tail a crash interrupted, never acknowledged (see the module doc).
        offset = len(JOURNAL_MAGIC)
        while offset + RECORD_HEADER.size <= len(data):
            length, crc, index, term = RECORD_HEADER.unpack_from(data, offset)
            start = offset + RECORD_HEADER.size
            command = data[start : start + length]
            body = struct.pack("<QQ", index, term) + command
            if len(command) < length or zlib.crc32(body) != crc:
                break
            self._append_entry(command, index, term, offset)
            offset = start + length

        if offset < len(data):
            log.warning(
                "journal_torn_tail_dropped path=%s offset=%d bytes=%d",
                self._path, offset, len(data) - offset,
            )
            os.ftruncate(self._fd, offset)
            os.fsync(self._fd)
        self.durable_index = self._indexes[-1] if self._indexes else 0

    # -- durability ----------------------------------------------------------------------

    def sync(self) -> None:
        """Make every appended or truncated entry durable; cheap when nothing changed."""
        if self._dump_needs_sync:
            # After a snapshot install the dump file is the only copy of the state.
            with open(self._dump_path, "rb") as f:
                os.fsync(f.fileno())
            _fsync_directory(self._dump_path.parent)
            self._dump_needs_sync = False
        if self._dirty:
            os.fdatasync(self._fd)
            self._dirty = False
            self.counters.syncs += 1
        self._sync_deferred = False
        self.durable_index = self._indexes[-1] if self._indexes else self.durable_index

    def defer_sync(self) -> None:
        """An append is leaving before its entries are synced; sync_if_deferred follows.

        Only the leader does this (raft_transport.py): Raft lets it write its own log
        while its followers write theirs, provided it counts itself toward a commit only
        once its copy is durable. _RaftCore calls sync_if_deferred right after the
        appends went out and before every commit count.
        """
        if self._dirty or self._dump_needs_sync:
            self._sync_deferred = True

    def sync_if_deferred(self) -> None:
        if self._sync_deferred:
            self.sync()

    @property
    def has_unsynced_changes(self) -> bool:
        return self._dirty or self._dump_needs_sync

    def _store_meta(self) -> None:
        _write_atomically(self._meta_path, json.dumps(self._meta).encode())

    # -- pysyncobj's Journal interface -----------------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        if self._indexes:
            first, last = self._indexes[0], self._indexes[-1]
            if idx < first:
                # Already compacted into the dump, hence committed: nothing to reconcile.
                return
            if idx <= last:
                position = idx - first
                if self._terms[position] == term:
                    self.counters.overlapping_entries_kept += 1
                    return
                self._truncate_conflict(position, idx, term)
            elif idx != last + 1:
                raise RuntimeError(f"journal gap: appending index {idx} after {last}")

        offset = os.lseek(self._fd, 0, os.SEEK_END)
        os.write(self._fd, _encode_record(bytes(command), idx, term))
        self._append_entry(bytes(command), idx, term, offset)
        self._dirty = True

    def _append_entry(self, command: bytes, idx: int, term: int, offset: int) -> None:
        self._indexes.append(idx)
        self._terms.append(term)
        self._offsets.append(offset)
        self._commands.append(command)

        # The entry that just left the window of recent ones is read from the file now.
        leaving = len(self._commands) - 1 - self._memory_entries
        if leaving >= _PINNED_HEAD:
            self._commands[leaving] = None

    def _truncate_conflict(self, position: int, idx: int, term: int) -> None:
        old_term = self._terms[position]
        removed = len(self._indexes) - position
        if idx <= self._commit_index:
            self.counters.committed_entries_truncated += removed
            log.critical(
                "journal_committed_entry_truncated idx=%d term=%d old_term=%d commit=%d",
                idx, term, old_term, self._commit_index,
            )
        else:
            log.warning(
                "journal_conflict_truncated idx=%d term=%d old_term=%d removed=%d",
                idx, term, old_term, removed,
            )
        self.counters.conflict_truncations += 1
        self._cut_at(position)

    def _cut_at(self, position: int) -> None:
        offset = self._offsets[position] if position < len(self._offsets) else None
        for column in (self._indexes, self._terms, self._offsets, self._commands):
            del column[position:]
        if offset is not None:
            os.ftruncate(self._fd, offset)
            self._dirty = True
        # What comes back at the removed indexes is new, not yet synced.
        last_kept = self._indexes[-1] if self._indexes else 0
        self.durable_index = min(self.durable_index, last_kept)
        self._load_window()

    def clear(self) -> None:
        # Only called when a full dump replaces the log (snapshot install or restart).
        self._cut_at(0)
        self._dump_needs_sync = True

    def deleteEntriesFrom(self, entryFrom: int) -> None:  # noqa: N802 (pysyncobj's name)
        # Deliberately nothing: add() truncates at the first real conflict (module doc).
        pass

    def deleteEntriesTo(self, entryTo: int) -> None:  # noqa: N802
        # Log compaction: the dump now covers these entries. Rewrite the file with the
        # rest, whose records are the old file's tail as it stands: they say their own
        # index and term, so they move unchanged and every offset shifts by one amount.
        entry_to = min(entryTo, len(self._offsets))
        start = self._offsets[entry_to] if entry_to < len(self._offsets) else None
        end = os.fstat(self._fd).st_size
        kept = b"" if start is None else os.pread(self._fd, end - start, start)
        shift = 0 if start is None else start - len(JOURNAL_MAGIC)

        # The directory fsync inside also makes the dump's rename durable (same directory).
        os.close(self._fd)
        _write_atomically(self._path, JOURNAL_MAGIC + kept)
        self._fd = os.open(self._path, os.O_RDWR | os.O_APPEND)
        for column in (self._indexes, self._terms, self._offsets, self._commands):
            del column[:entry_to]
        self._offsets = array("q", (offset - shift for offset in self._offsets))
        self._dirty = False  # the rewrite was fsynced, tail included
        self.durable_index = self._indexes[-1] if self._indexes else self.durable_index
        self._load_window()

    def _load_window(self) -> None:
        """Bring the first entries and the newest ``memory_entries`` back into memory."""
        count = len(self._commands)
        recent = max(0, count - self._memory_entries)
        for start, stop in ((0, min(_PINNED_HEAD, count)), (recent, count)):
            missing = [n for n in range(start, stop) if self._commands[n] is None]
            if missing:
                first, last = missing[0], missing[-1] + 1
                self._commands[first:last] = self._read_commands(first, last)

    def _read_commands(self, start: int, stop: int) -> list[bytes]:
        """The commands of entries start to stop (exclusive), in one read of the file."""
        begin = self._offsets[start]
        end = self._offsets[stop] if stop < len(self._offsets) else os.fstat(self._fd).st_size
        data = os.pread(self._fd, end - begin, begin)
        commands, offset = [], 0
        for _ in range(start, stop):
            length = RECORD_HEADER.unpack_from(data, offset)[0]
            offset += RECORD_HEADER.size
            commands.append(data[offset : offset + length])
            offset += length
        return commands

    def _entries_between(self, start: int, stop: int) -> list[Entry]:
        commands: list[bytes] = []
        position = start
        while position < stop:
            command = self._commands[position]
            if command is not None:
                commands.append(command)
                position += 1
                continue
            # A run of entries no longer in memory: one read for all of it.
            run_end = position + 1
            while run_end < stop and self._commands[run_end] is None:
                run_end += 1
            commands += self._read_commands(position, run_end)
            position = run_end
        return list(zip(commands, self._indexes[start:stop], self._terms[start:stop],
                        strict=True))

    def entries(self) -> list[Entry]:
        """Every entry, oldest first, without the cap open-ended slices have."""
        return self._entries_between(0, len(self._indexes))

    def __getitem__(self, item: Any) -> Any:
        count = len(self._indexes)
        if isinstance(item, slice):
            start, stop, step = item.indices(count)
            if step != 1:
                raise ValueError("the journal is read in runs of consecutive entries")
            if item.stop is None:
                stop = self._open_slice_end(start, stop)
            return self._entries_between(start, max(start, stop))

        position = item + count if item < 0 else item
        if not 0 <= position < count:
            raise IndexError("journal position out of range")
        command = self._commands[position]
        if command is None:
            command = self._read_commands(position, position + 1)[0]
        return (command, self._indexes[position], self._terms[position])

    def _open_slice_end(self, start: int, stop: int) -> int:
        """Where "from start to the end" stops: FILE_SLICE_BYTES into the file at most."""
        in_memory_from = max(_PINNED_HEAD, stop - self._memory_entries)
        if start >= in_memory_from or start < _PINNED_HEAD and stop <= _PINNED_HEAD:
            return stop
        limit = self._offsets[start] + FILE_SLICE_BYTES
        capped = bisect.bisect_right(self._offsets, limit, lo=start, hi=stop)
        return stop if capped >= in_memory_from else max(capped, start + 1)

    def __len__(self) -> int:
        return len(self._indexes)

    def _destroy(self) -> None:
        self.sync()
        self._persist_commit_index()
        os.close(self._fd)

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:  # noqa: N802, N803
        self._commit_index = raftCommitIndex

    def getRaftCommitIndex(self) -> int:  # noqa: N802
        last = self._indexes[-1] if self._indexes else 1
        return min(self._stored_commit_index, last)

    def setCurrentTerm(self, term: int, votedForNodeId: str | None) -> None:  # noqa: N802, N803
        # Raft: term and vote must be durable before any message reflecting them is sent.
        self._meta["term"] = term
        self._meta["voted_for"] = votedForNodeId
        self._store_meta()

    def getCurrentTerm(self) -> int:  # noqa: N802
        return int(self._meta.get("term", 0))

    def getVotedForNodeId(self) -> str | None:  # noqa: N802
        voted = self._meta.get("voted_for")
        return None if voted is None else str(voted)

    def onOneSecondTimer(self) -> None:  # noqa: N802
        self._persist_commit_index()

    def _persist_commit_index(self) -> None:
        # Sync first so the stored commit index never points past durable entries.
        if self._commit_index == self._stored_commit_index:
            return
        self.sync()
        self._meta["commit_index"] = self._commit_index
        self._store_meta()
        self._stored_commit_index = self._commit_index


_original_create_journal: Callable[..., Any] | None = None


def install_journal_hook() -> None:
    """Make pysyncobj use a DurableJournal passed as SyncObjConf.journalFile. Idempotent."""
    global _original_create_journal
    if _original_create_journal is not None:
        return
    original = pysyncobj.syncobj.createJournal

    def create_journal(journal_file: Any = None) -> Any:
        if isinstance(journal_file, DurableJournal):
            return journal_file
        return original(journal_file)

    _original_create_journal = original
    pysyncobj.syncobj.createJournal = create_journal


class _FalseTruncationAlarmFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("truncating already-applied log entries")


_alarm_filter = _FalseTruncationAlarmFilter()


def quiet_false_truncation_alarm() -> None:
    """Drop pysyncobj's CRITICAL about truncation: with DurableJournal it no longer happens."""
    logger = logging.getLogger("pysyncobj.syncobj")
    if _alarm_filter not in logger.filters:
        logger.addFilter(_alarm_filter)
