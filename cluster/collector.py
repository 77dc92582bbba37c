"""Python's cyclic collector against a state of many long-lived objects.

A node's state holds several collector-tracked objects per key, all alive until the key
is replaced. Python's full collection walks every tracked object, and it runs whenever
the objects that survived younger collections reach a quarter of those that survived
the last full one, so a node that keeps creating keys keeps paying it: measured on a
3-node cluster during and after 13,000 Creates, 21 to 25 full collections in 20 s per
node, each stopping every thread for 300-760 ms and freeing nothing.

``FreezeSlowSurvivors`` watches the full collections, and when one took longer than
``SLOW_SECONDS`` it moves what survived it into the permanent generation
(``gc.freeze``), which later collections skip. Those survivors were all reachable a
moment ago: the state, and whatever requests were in flight. The state's objects are
acyclic and freed by reference counting when replaced; the price is that a cycle among
the in-flight objects of that moment is never collected. A freeze happens only after
enough new long-lived objects piled up to make a full collection slow again (roughly
every several thousand keys created), so that price stays small and bounded by how
much the state grows. The node's restore does the same once its state is rebuilt
(``CollectorPause``, below).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import threading
import time
from typing import Any

log = logging.getLogger("keyquorum.collector")

# A full collection this slow is worth freezing its survivors: it is already a pause
# clients notice at p99, and it only grows with the state.
SLOW_SECONDS = 0.02


class FreezeSlowSurvivors:
    """A gc callback; see the module docstring. Install once per node process."""

    def __init__(self, slow_seconds: float = SLOW_SECONDS) -> None:
        self._slow_seconds = slow_seconds
        self._started = 0.0
        self.freezes = 0

    def install(self) -> None:
        if self._on_collection not in gc.callbacks:
            gc.callbacks.append(self._on_collection)

    def uninstall(self) -> None:
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
            return
        seconds = time.perf_counter() - self._started
        if seconds < self._slow_seconds:
            return

        # Right after a full collection the younger generations are empty and the
        # oldest holds only what survived it, so nothing unreachable is frozen.
        gc.freeze()
        self.freezes += 1
        log.info("collector_frozen pause_ms=%.0f frozen=%d", seconds * 1000,
                 gc.get_freeze_count())


class CollectorPause:
    """Pauses Python's cyclic garbage collector while the state is rebuilt.

    Restoring a dump or replaying a journal creates object after object that all stay
    alive, and the collector, run every 700 allocations, walks them again and again:
    restores measured three to six times slower with it (bench/memory_bench.py). What was
    rebuilt is then frozen out of later collections, so that a full collection does not
    walk 100,000 keys either; the state's objects are immutable and acyclic and are freed
    by reference counting when replaced. Process-wide, as the collector is.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0

    def begin(self) -> None:
        with self._lock:
            self._holders += 1
            gc.disable()

    def end(self) -> None:
        with self._lock:
            if self._holders == 0:
                return  # already ended (a node stopped during its first tick)
            self._holders -= 1
            if self._holders == 0:
                gc.freeze()
                gc.enable()


def return_freed_memory() -> bool:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim); if it did.

    A restart reads the whole journal back to replay it: tens of megabytes of commands
    of 1.3 KB each, freed right after, whose pages glibc keeps for later allocations
    unless told otherwise. Measured at 100,000 keys: a restarted node's resident memory
    fell from 409 to 330 MB. Elsewhere than glibc: nothing to do.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return False
    return bool(trim(0))


# One for the process, as the collector is: raft.py pauses it around dump restores and
# journal replays.
COLLECTOR = CollectorPause()
