"""The tick's pace: every 2 ms while there is work, every 50 ms while the node is idle.

pysyncobj's tick thread polls its sockets for at most ``autoTickPeriod`` and its leader
sends an append (a heartbeat when there is nothing new) every ``appendEntriesPeriod``.
Commit latency needs both at 2 ms (raft.py, hazard 1), but at 2 ms three idle nodes spent
11-15% of a core each on heartbeats, acknowledgements and their encryption
(docs/performance.md). ``TickPacer`` sets both periods to the fast value while the node
has work, and back to the idle value once it had none for ``linger_seconds``; the
election timeouts (0.4-1.4 s) stay many idle heartbeats long.

Work arrives in two ways. Messages from peers wake the poll by themselves. Commands and
reads from this node's asyncio side are put on queues, so ``Wakeup`` gives that side a
pipe to cut the poll short. A command is in the log by the end of the tick after the
wake, which switches to fast and sends the first append at once instead of when the idle
period would have. Reads need no fast pace (raft.py, ``_has_work``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from pysyncobj.poller import POLL_EVENT_TYPE


class Wakeup:
    """A pipe that ends the tick thread's poll early; ``wake`` is safe from any thread."""

    def __init__(self) -> None:
        self._read_end, self._write_end = os.pipe()
        os.set_blocking(self._read_end, False)
        os.set_blocking(self._write_end, False)
        self._pending = False  # a byte is in the pipe, not yet drained
        self._subscribed = False

    def subscribe(self, poller: Any) -> None:
        """On the tick thread: let the pipe end pysyncobj's poll."""
        if not self._subscribed:
            poller.subscribe(self._read_end, self._drain, POLL_EVENT_TYPE.READ)
            self._subscribed = True

    def wake(self) -> None:
        # One byte per tick is enough: work queued after the drain writes the next one.
        if self._pending:
            return
        self._pending = True
        try:
            os.write(self._write_end, b"w")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups the tick thread has yet to read

    def _drain(self, descriptor: int, event: int) -> None:
        # Empty the pipe before clearing the flag. The other order loses wake-ups: a wake
        # between the two writes a byte that this read swallows, and the flag then stays
        # set over an empty pipe, so no later wake writes again and every command and
        # read on the node waits out the poll (measured: 2 ms on each read).
        # In this order, a wake that sees the flag still set queued its work before the
        # flag cleared, and the tick that follows this drain takes that work.
        try:
            while os.read(self._read_end, 4096):
                pass
        except BlockingIOError:
            pass
        self._pending = False

    def close(self) -> None:
        os.close(self._read_end)
        os.close(self._write_end)


class TickPacer:
    """Switches pysyncobj's tick and append periods between fast and idle."""

    def __init__(
        self,
        conf: Any,  # the SyncObjConf; pysyncobj reads both periods afresh every tick
        fast_seconds: float,
        idle_seconds: float,
        linger_seconds: float,
        has_work: Callable[[], bool],
        on_fast: Callable[[], None],
    ) -> None:
        self._conf = conf
        self._fast_seconds = fast_seconds
        self._idle_seconds = idle_seconds
        self._linger_seconds = linger_seconds
        self._has_work = has_work
        self._on_fast = on_fast
        self._fast_until = 0.0
        self.fast = True
        self._set_period(fast_seconds)

    def on_tick(self) -> None:
        now = time.monotonic()
        if self._has_work():
            self._fast_until = now + self._linger_seconds

        fast = now < self._fast_until
        if fast == self.fast:
            return
        self.fast = fast
        self._set_period(self._fast_seconds if fast else self._idle_seconds)
        if fast:
            self._on_fast()

    def _set_period(self, seconds: float) -> None:
        self._conf.autoTickPeriod = seconds
        self._conf.appendEntriesPeriod = seconds
