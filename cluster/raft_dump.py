"""The full dump, written by a forked child while the tick thread goes on.

pysyncobj compacts its log by asking the serializer for a dump of the state at the
applied index. Pickling the state on the tick thread stopped the node for as long as
that took: 2.3 s at 10,000 keys on a loaded machine, by that rate about 20 s at
100,000, during which it sent no heartbeats and answered no peer, so its followers
elected another leader and requests failed (docs/performance.md). pysyncobj's own
answer, a fork, it only takes when no custom serializer is set, and ours must be
(raft.py, hazard 4).

``DumpWriter`` forks on the tick thread, between two applies, so the child's memory is
a copy of the state at exactly the applied index. The child pickles it to a file of
its own, fsyncs it, renames it over the dump and exits; the parent returns at once and
pysyncobj polls ``status`` (its ``serializeChecker``) every tick, trimming the log only
once the new dump is in place. Until then the old dump and the whole journal stay.

A fork copies one thread. A lock another thread held at that moment would stay held in
the child forever, so the locks the snapshot takes (``locks``) are acquired before the
fork and released after it on both sides. Only the tick thread mutates the state and it
is the one forking, so no reader on another thread can leave it half-changed. The child
touches no socket, no journal and no log handler, and leaves through ``os._exit``.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO, NoReturn, Protocol

from pysyncobj.config import SERIALIZER_STATE

log = logging.getLogger("keyquorum.cluster.raft")

# A child still writing after this long is stuck (a full disk that blocks, a lock it
# should not have met): it is killed, and pysyncobj tries again at its next compaction.
DUMP_TIMEOUT_SECONDS = 600.0

# The child's CPU priority, below the node's. Under a full load a niceness of 10 leaves
# it about a tenth of a core, so a 20 s dump stays well inside DUMP_TIMEOUT_SECONDS;
# 19 could starve it past that.
CHILD_NICENESS = 10


class Lockable(Protocol):
    def acquire(self) -> bool: ...

    def release(self) -> None: ...


@dataclass(frozen=True)
class _Child:
    pid: int
    started: float


class DumpWriter:
    """Writes the dump in a child process; see the module docstring."""

    def __init__(self) -> None:
        self._child: _Child | None = None
        # A fork that failed (no memory for the page tables) is reported once as a
        # failed dump: pysyncobj starts no other until its checker says so.
        self._fork_failed = False

    def start(self, path: str, write: Callable[[BinaryIO], None],
              locks: Sequence[Lockable]) -> None:
        """Fork a child that writes ``path`` through ``write``; on the tick thread."""
        for lock in locks:
            lock.acquire()
        try:
            # Python 3.12 warns on any fork of a threaded process; this one is planned.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except OSError as error:
            log.error("raft_dump_fork_failed error=%s", type(error).__name__)
            self._fork_failed = True
            return
        finally:
            for lock in reversed(locks):
                lock.release()
        if pid == 0:
            _write_and_exit(path, write)
        self._child = _Child(pid, time.monotonic())

    def status(self) -> int:
        """pysyncobj's serializeChecker: a SERIALIZER_STATE for the dump in progress."""
        if self._fork_failed:
            self._fork_failed = False
            return SERIALIZER_STATE.FAILED
        child = self._child
        if child is None:
            return SERIALIZER_STATE.NOT_SERIALIZING
        pid, exit_status = os.waitpid(child.pid, os.WNOHANG)
        if pid == 0:
            if time.monotonic() - child.started < DUMP_TIMEOUT_SECONDS:
                return SERIALIZER_STATE.SERIALIZING
            os.kill(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)
            self._child = None
            log.error("raft_dump_abandoned pid=%d seconds=%.0f", child.pid,
                      DUMP_TIMEOUT_SECONDS)
            return SERIALIZER_STATE.FAILED

        self._child = None
        if exit_status != 0:
            log.error("raft_dump_failed pid=%d status=%d", child.pid, exit_status)
            return SERIALIZER_STATE.FAILED
        log.info("raft_dump_written seconds=%.2f", time.monotonic() - child.started)
        return SERIALIZER_STATE.SUCCESS

    def close(self) -> None:
        """Stop a child still writing; its partial file is never renamed into place."""
        child, self._child = self._child, None
        if child is not None:
            os.kill(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)


def _write_and_exit(path: str, write: Callable[[BinaryIO], None]) -> NoReturn:
    # In the child. The collector would only touch pages the parent then has to copy,
    # and the node's own threads come first: on a busy machine the dump may take longer.
    gc.disable()
    os.nice(CHILD_NICENESS)
    status = 1
    try:
        partial = path + ".writing"
        with open(partial, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
        status = 0
    finally:
        os._exit(status)
