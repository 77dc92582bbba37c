"""The audit broker: every node writes its own audit records to its enabled devices.

Theory of operation
-------------------
Which devices are enabled is replicated (cluster/audit_state.py); what each node
writes is its own: the KMIP service (kmip/audit.py) and the admin API
(cluster/audit_api.py) hand the broker a record for every request they handle
and every answer they give, and the broker writes it to this node's copy of every
enabled device: a file (relative paths live in the node's data folder), syslog,
or a TCP or Unix socket.

Each device has a thread of its own, so that a slow disk or a socket whose reader
stalls never holds up the node's event loop. ``record`` queues the record on every
device and waits until the devices say it is written, at most ``WRITE_TIMEOUT``.
The device thread serializes records in queue order, puts each into the device's
hash chain (cluster/audit_chain.py), writes what has queued up in one write, and
answers every waiting request at once, so that under load one write and one wakeup
serve many records.

Fail closed: with devices enabled, a record that no device wrote (every one failed
or timed out) raises ``AuditUnavailable`` and the caller refuses the request rather
than serve it unaudited. One device that works is enough, as in Vault: enable two
to survive the loss of one. With no device enabled at all, nothing is recorded and
every request is served: auditing starts when an operator enables a device.

A record a device took too long to write may still reach it after its request was
refused; the record then shows an outcome the client never saw. A failed file
write is undone (the file is cut back to where the batch began), so no partial
line is left; a socket may have passed part of a batch to its reader before it
broke, and the reader sees a line cut short.

Sensitive values reach devices as ``Sensitive`` (kmip/audit.py) and each device
writes them as ``hmac-sha256:<hex>`` under its own salt; ``hash`` gives an auditor
the same value for a value they hold, to search with. The salt is replicated sealed
by the barrier (cluster/audit_state.py); a sealed node cannot open it, so what it
records meanwhile (an unseal call, say) carries ``SEALED_VALUE`` in place of each
sensitive value: no HMAC, and nothing of the value.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import os
import queue
import select
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keyquorum.kmip.audit import AuditUnavailable, Sensitive

from .audit_chain import FILE_OPENED, ChainHead, chain_line, head_of
from .audit_state import AuditDevice, AuditState, open_salt

log = logging.getLogger("keyquorum.audit")

# How long a request waits for its record. A local file answers in microseconds and
# a socket on the LAN in a millisecond; two seconds only runs out on a device that
# is stuck (a hung NFS mount, a reader that stopped reading), and stays well inside
# the 30 s after which vCenter gives up on a KMS.
WRITE_TIMEOUT = 2.0

# Records queued on one device beyond which it counts as stuck and new records fail
# at once rather than wait for the timeout: a few seconds of a busy node's traffic.
MAX_PENDING = 10_000

# The tail read to find where a file's chain stands; one record is a few KiB at most.
TAIL_BYTES = 1 << 16

HMAC_PREFIX = "hmac-sha256:"

_SYSLOG_FACILITIES = {"user": 1, "daemon": 3, "auth": 4, "authpriv": 10,
                      **{f"local{n}": 16 + n for n in range(8)}}
_SYSLOG_INFO = 6


# Written for a sensitive value while this node is sealed and cannot open the salt.
SEALED_VALUE = "redacted:node-sealed"


class SaltSealedError(Exception):
    """The device's salt is sealed by the barrier and this node is sealed."""


def hmac_of(salt: bytes, value: bytes) -> str:
    return HMAC_PREFIX + hmac.new(salt, value, hashlib.sha256).hexdigest()


class AuditBroker:
    """The node's side of auditing; used from the event loop thread only."""

    def __init__(self, node_id: str, state: AuditState, data_dir: Path,
                 write_timeout: float = WRITE_TIMEOUT,
                 decrypt: Callable[[bytes, bytes], bytes] | None = None) -> None:
        self._node_id = node_id
        # The seal's decrypt, which opens the devices' salts (raises while sealed).
        self._decrypt = decrypt
        self._state = state
        self._data_dir = data_dir
        self._write_timeout = write_timeout
        self._devices: dict[str, Device] = {}
        self._generation = -1
        # Records refused because no device wrote them (/v1/sys/metrics).
        self.failures = 0

    @property
    def enabled(self) -> bool:
        self._reconcile()
        return bool(self._devices)

    def device_names(self) -> list[str]:
        self._reconcile()
        return sorted(self._devices)

    async def record(self, kind: str, fields: dict[str, Any]) -> None:
        """Write one record on every device; AuditUnavailable if none wrote it."""
        self._reconcile()
        devices = list(self._devices.values())
        if not devices:
            return
        entry = {"type": kind, "time": _now(), "node": self._node_id, **fields}
        loop = asyncio.get_running_loop()
        waiting = [device.submit(entry, loop) for device in devices]

        # Every device gets its chance, within the timeout; one success is enough.
        await asyncio.wait(waiting, timeout=self._write_timeout)
        outcomes = [(w.exception() if w.done() else TimeoutError()) for w in waiting]
        if any(outcome is None for outcome in outcomes):
            return
        causes = sorted({_cause(outcome) for outcome in outcomes})
        self.failures += 1
        raise AuditUnavailable(f"no audit device could write: {'; '.join(causes)}")

    def hash(self, name: str, value: bytes) -> str | None:
        """The HMAC device ``name`` writes for ``value``; None if no such device."""
        device = self._state.device(name)
        if device is None:
            return None
        salt = self.salt_of(device)
        if salt is None:
            raise SaltSealedError("this node is sealed and cannot open the device's salt; "
                                  "unseal it, or ask another node")
        return hmac_of(salt, value)

    def salt_of(self, device: AuditDevice) -> bytes | None:
        """The device's salt, or None while this node cannot open it (sealed)."""
        if device.salt:
            return device.salt
        if self._decrypt is None:
            return None
        try:
            return open_salt(device, self._decrypt)
        except Exception:
            # Sealed, or a keyring that does not open it: never a reason to crash a write.
            return None

    def reopen(self) -> None:
        """SIGHUP: every file device closes its file and opens the path again."""
        for device in self._devices.values():
            device.reopen()
        log.info("audit_reopen devices=%d", len(self._devices))

    def close(self) -> None:
        for device in self._devices.values():
            device.close()
        self._devices.clear()

    def _reconcile(self) -> None:
        # Enable and disable commands applied since the last look open or close devices.
        generation = self._state.generation
        if generation == self._generation:
            return
        self._generation = generation
        wanted = {device.name: device for device in self._state.devices()}
        for name, running in list(self._devices.items()):
            if wanted.get(name) != running.config:
                running.close()
                del self._devices[name]
                log.info("audit_device_closed device=%s", name)
        for name, config in wanted.items():
            if name not in self._devices:
                self._devices[name] = _open_device(config, self._node_id, self._data_dir)
                self._devices[name].salt = functools.partial(self.salt_of, config)
                log.info("audit_device_opened device=%s type=%s", name, config.kind)


def _cause(outcome: object) -> str:
    if isinstance(outcome, TimeoutError):
        return "timed out"
    if isinstance(outcome, OSError):
        return outcome.strerror or type(outcome).__name__
    return str(outcome) or type(outcome).__name__


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


# Devices.

_Waiting = tuple[dict[str, Any], asyncio.AbstractEventLoop, "asyncio.Future[None]"]
_REOPEN = "reopen"
_STOP = "stop"


class Device:
    """One enabled device on this node: a queue, a thread, a chain, a sink to write to."""

    def __init__(self, config: AuditDevice, node_id: str) -> None:
        self.config = config
        # Opens the salt at each write, so none stays in memory once the node seals.
        self.salt: Callable[[], bytes | None] = lambda: config.salt or None
        self._node_id = node_id
        self._queue: queue.SimpleQueue[_Waiting | str] = queue.SimpleQueue()
        self._head = ChainHead()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name=f"audit-{config.name}",
                                        daemon=True)
        self._thread.start()

    def submit(self, entry: dict[str, Any],
               loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        waiting: asyncio.Future[None] = loop.create_future()
        if self._queue.qsize() > MAX_PENDING:
            waiting.set_exception(OSError(0, "device stuck: too many records waiting"))
        else:
            self._queue.put((entry, loop, waiting))
        return waiting

    def reopen(self) -> None:
        self._queue.put(_REOPEN)

    def close(self) -> None:
        self._queue.put(_STOP)

    # The subclass's part, all on the device thread.

    def _open(self) -> None:
        """Connect or open; may set the chain head from what the sink already holds."""

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def _disconnect(self) -> None:
        """Close the sink; the next write opens it again."""

    @property
    def _connected(self) -> bool:
        raise NotImplementedError

    # The thread.

    def _run(self) -> None:
        while True:
            batch: list[_Waiting] = []
            command = self._take(batch, block=True)
            while command is None and not self._queue.empty():
                command = self._take(batch, block=False)
            if batch:
                self._write_batch(batch)
            if command == _REOPEN:
                self._disconnect()
            elif command == _STOP:
                self._disconnect()
                return

    def _take(self, batch: list[_Waiting], block: bool) -> str | None:
        try:
            item = self._queue.get(block=block)
        except queue.Empty:
            return None
        if isinstance(item, str):
            return item
        batch.append(item)
        return None

    def _write_batch(self, batch: list[_Waiting]) -> None:
        error: Exception | None = None
        head = self._head
        try:
            lines: list[bytes] = []
            if not self._connected:
                self._open()
                head = self._head
                lines.append(self._line_of(head, self._opened_record()))
                head = head.next(lines[-1])
            for entry, _, _ in batch:
                lines.append(self._line_of(head, entry))
                head = head.next(lines[-1])
            self._write(b"".join(line + b"\n" for line in lines))
            self._head = head
        except Exception as failure:  # OSError mostly; anything else must not kill us
            error = failure
            self._disconnect()
        self._report(error)

        # Answer every request of the batch in one hop to each loop.
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for _, loop, waiting in batch:
            by_loop.setdefault(loop, []).append(waiting)
        for loop, futures in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, futures, error)
            except RuntimeError:  # the loop has closed: nobody waits any more
                pass

    def _line_of(self, head: ChainHead, entry: dict[str, Any]) -> bytes:
        body = json.dumps(entry, default=self._sensitive, separators=(",", ":"),
                          ensure_ascii=False)
        return chain_line(head, body[1:])

    def _sensitive(self, value: object) -> str:
        if isinstance(value, Sensitive):
            salt = self.salt()
            return SEALED_VALUE if salt is None else hmac_of(salt, value.value)
        raise TypeError(f"not JSON serializable: {type(value).__name__}")

    def _opened_record(self) -> dict[str, Any]:
        return {"type": FILE_OPENED, "time": _now(), "node": self._node_id,
                "device": self.config.name, "device_type": self.config.kind}

    def _report(self, error: Exception | None) -> None:
        # Once per episode, not once per record.
        if error is not None and not self._failing:
            self._failing = True
            log.warning("audit_device_failed device=%s error=%s detail=%s", self.config.name,
                        type(error).__name__, _cause(error))
        elif error is None and self._failing:
            self._failing = False
            log.info("audit_device_recovered device=%s", self.config.name)


def _settle(futures: list[asyncio.Future[None]], error: Exception | None) -> None:
    for waiting in futures:
        if waiting.done():  # the caller timed out and went on
            continue
        if error is None:
            waiting.set_result(None)
        else:
            waiting.set_exception(error)


class FileDevice(Device):
    """JSON lines appended to a file; SIGHUP reopens the path, for logrotate."""

    def __init__(self, config: AuditDevice, node_id: str, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        super().__init__(config, node_id)

    @property
    def _connected(self) -> bool:
        return self._fd is not None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            tail = _last_line(fd)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        # A file that already holds records (a node restart): continue its chain.
        # An empty one (rotated away) continues the chain this device holds.
        found = head_of(tail) if tail else None
        if found is not None:
            self._head = found

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        start = os.fstat(self._fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError:
            # No partial line may stay behind to break the chain for good.
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                pass
            raise

    def _disconnect(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass


def _last_line(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    if size == 0:
        return b""
    start = max(0, size - TAIL_BYTES)
    tail = os.pread(fd, size - start, start)
    return tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]


class SocketDevice(Device):
    """JSON lines over a TCP or Unix stream socket; reconnects on the next record."""

    def __init__(self, config: AuditDevice, node_id: str, timeout: float) -> None:
        self._timeout = timeout
        self._socket: socket.socket | None = None
        super().__init__(config, node_id)

    @property
    def _connected(self) -> bool:
        return self._socket is not None and not _peer_closed(self._socket)

    def _open(self) -> None:
        self._disconnect()
        scheme, _, rest = self.config.option("address").partition(":")
        if scheme == "unix":
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            connection.settimeout(self._timeout)
            try:
                connection.connect(rest)
            except OSError:
                connection.close()
                raise
        else:
            host, _, port = rest.rpartition(":")
            connection = socket.create_connection((host.strip("[]"), int(port)),
                                                  timeout=self._timeout)
        # Sends that block longer than this fail, and with them the device.
        connection.settimeout(self._timeout)
        self._socket = connection

    def _write(self, data: bytes) -> None:
        assert self._socket is not None
        self._socket.sendall(data)

    def _disconnect(self) -> None:
        if self._socket is not None:
            connection, self._socket = self._socket, None
            connection.close()


def _peer_closed(connection: socket.socket) -> bool:
    # The reader never sends; anything readable is its close (or junk to drop). Without
    # this check the first record after the reader vanished would go into a send
    # buffer that is never read, and count as written.
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        if not readable:
            return False
        return connection.recv(4096, socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


class SyslogDevice(Device):
    """One syslog message per record, over a Unix datagram socket or UDP.

    Over UDP a lost datagram goes unnoticed (UDP has no acknowledgement), and a
    record longer than the socket's datagram limit fails to send: prefer a file or
    a socket device where every record must arrive.
    """

    def __init__(self, config: AuditDevice, node_id: str, timeout: float) -> None:
        self._timeout = timeout
        self._socket: socket.socket | None = None
        facility = _SYSLOG_FACILITIES[config.option("facility", "auth")]
        tag = config.option("tag", "keyquorum")
        self._prefix = f"<{facility * 8 + _SYSLOG_INFO}>{tag}[{os.getpid()}]: ".encode()
        super().__init__(config, node_id)

    @property
    def _connected(self) -> bool:
        return self._socket is not None

    def _open(self) -> None:
        address = self.config.option("address", "/dev/log")
        if address.startswith("udp:"):
            host, _, port = address[4:].rpartition(":")
            connection = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                       socket.SOCK_DGRAM)
            target: Any = (host.strip("[]"), int(port))
        else:
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            target = address
        connection.settimeout(self._timeout)
        try:
            connection.connect(target)
        except OSError:
            connection.close()
            raise
        self._socket = connection

    def _write(self, data: bytes) -> None:
        assert self._socket is not None
        for line in data.splitlines():
            self._socket.send(self._prefix + line)

    def _disconnect(self) -> None:
        if self._socket is not None:
            connection, self._socket = self._socket, None
            connection.close()


def device_path(config: AuditDevice, node_id: str, data_dir: Path) -> Path:
    """Where a file device writes on this node: "{node}" expanded, relative to data_dir."""
    path = Path(config.option("path").replace("{node}", node_id))
    return path if path.is_absolute() else data_dir / path


def _open_device(config: AuditDevice, node_id: str, data_dir: Path) -> Device:
    makers: dict[str, Callable[[], Device]] = {
        "file": lambda: FileDevice(config, node_id, device_path(config, node_id, data_dir)),
        "socket": lambda: SocketDevice(config, node_id, WRITE_TIMEOUT),
        "syslog": lambda: SyslogDevice(config, node_id, WRITE_TIMEOUT),
    }
    return makers[config.kind]()
