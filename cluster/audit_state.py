"""Audit devices, replicated: which devices every node writes its audit records to.

An operator enables a device once, through any node's API; the ``EnableAuditDevice``
command reaches every node through the Raft log, and each node then writes the
records *it* handles to its own local copy of that device (a file path relative to
the node's data folder, a syslog socket, a TCP or Unix socket). Nodes never ship
records to each other: the audit trail of a cluster is the union of its nodes'.

Each device carries a salt drawn by the node that enabled it: sensitive values in
records are HMAC-SHA256 under that salt, so that a value can be searched for
(``/v1/sys/audit-hash/{device}``) without being readable. The salt is sealed by the
barrier keyring (cluster/barrier.py) before it enters the command, like every other
replicated secret, so the journal and snapshots hold only its ciphertext: whoever
reads a node's data folder cannot test guesses against the HMACs. A node opens the
salt when it writes a record; while it is sealed it cannot, and writes sensitive
values as ``SEALED_VALUE`` instead (cluster/audit.py). Devices enabled before the
salt was sealed keep their plain ``salt`` and work as before.

The rules of every replicated table hold (cluster/state.py): the command carries
what was drawn at random or from the clock, ``apply`` checks before it changes and
never raises. Class and field names are pickled into the journal: add fields with
defaults, never rename.
"""

from __future__ import annotations

import pickle
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .tenancy import Done, Problem, Refused, TenancyOutcome

# Device names travel in URL paths: the same characters as scope names.
DEVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# The options each kind of device takes, and which must be given.
DEVICE_OPTIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # path: absolute, or relative to the node's data folder; "{node}" becomes the node id.
    "file": (frozenset({"path"}), frozenset({"path"})),
    # address: a Unix datagram socket (default /dev/log) or udp:HOST:PORT.
    "syslog": (frozenset({"address", "facility", "tag"}), frozenset()),
    # address: tcp:HOST:PORT or unix:PATH; a stream of JSON lines.
    "socket": (frozenset({"address"}), frozenset({"address"})),
}
SYSLOG_FACILITIES = ("auth", "authpriv", "daemon", "user", "local0", "local1", "local2",
                     "local3", "local4", "local5", "local6", "local7")

SALT_BYTES = 32


@dataclass(frozen=True)
class AuditDevice:
    name: str
    kind: str
    # Sorted (option, value) pairs, so that equal settings compare equal.
    options: tuple[tuple[str, str], ...]
    # Empty for a new device: its salt is in salt_sealed. Plain only in devices enabled
    # before the salt was sealed (kept readable: their records were made with it).
    salt: bytes = field(repr=False)
    description: str = ""
    enabled_at: int = 0
    # The salt sealed by the barrier keyring (salt_associated_data).
    salt_sealed: bytes = field(default=b"", repr=False)

    def option(self, name: str, default: str = "") -> str:
        return dict(self.options).get(name, default)


def salt_associated_data(device_name: str) -> bytes:
    """What a sealed salt is bound to: moved to another device, it does not open."""
    return b"audit-salt/" + device_name.encode()


def open_salt(device: AuditDevice, decrypt: Callable[[bytes, bytes], bytes]) -> bytes:
    """The device's salt; ``decrypt`` is the seal's and raises while the node is sealed."""
    if device.salt:
        return device.salt
    return decrypt(device.salt_sealed, salt_associated_data(device.name))


@dataclass(frozen=True)
class EnableAuditDevice:
    device: AuditDevice


@dataclass(frozen=True)
class DisableAuditDevice:
    name: str


AUDIT_COMMANDS = (EnableAuditDevice, DisableAuditDevice)


def check_device(kind: str, name: str, options: dict[str, str]) -> str | None:
    """What is wrong with a device's settings, or None; shared by apply and the API."""
    if not DEVICE_NAME.fullmatch(name):
        return (f"device name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' "
                "or '-', starting with a letter or digit")
    if kind not in DEVICE_OPTIONS:
        return f"unknown device type {kind!r}; use one of {', '.join(DEVICE_OPTIONS)}"
    allowed, required = DEVICE_OPTIONS[kind]
    unknown = sorted(set(options) - allowed)
    if unknown:
        return (f"a {kind} device does not take option(s) {', '.join(unknown)}; "
                f"it takes {', '.join(sorted(allowed))}")
    missing = sorted(required - set(options))
    if missing:
        return f"a {kind} device needs option(s) {', '.join(missing)}"
    if kind == "socket" and not _is_socket_address(options["address"]):
        return "address must be tcp:HOST:PORT or unix:/path/to/socket"
    if kind == "syslog":
        address = options.get("address", "/dev/log")
        if not (address.startswith("/") or _is_udp_address(address)):
            return "address must be a Unix socket path such as /dev/log, or udp:HOST:PORT"
        if options.get("facility", "auth") not in SYSLOG_FACILITIES:
            return f"facility must be one of {', '.join(SYSLOG_FACILITIES)}"
    return None


def _is_socket_address(address: str) -> bool:
    scheme, _, rest = address.partition(":")
    if scheme == "unix":
        return rest.startswith("/")
    host, _, port = rest.rpartition(":")
    return scheme == "tcp" and bool(host) and port.isdigit() and 0 < int(port) < 65536


def _is_udp_address(address: str) -> bool:
    return address.startswith("udp:") and _is_socket_address("tcp:" + address[4:])


class AuditState:
    """The enabled devices; apply runs on the Raft thread, reads on any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._devices: dict[str, AuditDevice] = {}
        # Not replicated: counts changes, so each node's broker knows to reopen.
        self.generation = 0

    def devices(self) -> list[AuditDevice]:
        with self._lock:
            return sorted(self._devices.values(), key=lambda device: device.name)

    def device(self, name: str) -> AuditDevice | None:
        with self._lock:
            return self._devices.get(name)

    def apply(self, command: object) -> TenancyOutcome:
        with self._lock:
            if isinstance(command, EnableAuditDevice):
                return self._enable(command.device)
            if isinstance(command, DisableAuditDevice):
                return self._disable(command.name)
            return Refused(Problem.INVALID, f"unknown command {type(command).__name__}")

    def _enable(self, device: AuditDevice) -> TenancyOutcome:
        problem = check_device(device.kind, device.name, dict(device.options))
        if problem:
            return Refused(Problem.INVALID, problem)
        if device.salt_sealed:
            if device.salt:
                return Refused(Problem.INVALID, "a device carries its salt sealed or plain, "
                                                "not both")
        elif len(device.salt) != SALT_BYTES:
            return Refused(Problem.INVALID, f"the salt must be {SALT_BYTES} bytes")
        if device.name in self._devices:
            # Changing a device in place would change its salt under existing records.
            return Refused(Problem.CONFLICT, f"an audit device named {device.name} is "
                                             "enabled; disable it first to replace it")
        self._devices[device.name] = device
        self.generation += 1
        return Done()

    def _disable(self, name: str) -> TenancyOutcome:
        if name not in self._devices:
            return Refused(Problem.NOT_FOUND, f"no audit device named {name}")
        del self._devices[name]
        self.generation += 1
        return Done()

    def snapshot(self) -> bytes:
        with self._lock:
            return pickle.dumps(self._devices, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, data: bytes | None) -> None:
        # None: a snapshot from before audit existed.
        devices = {} if data is None else pickle.loads(data)
        with self._lock:
            self._devices = devices
            self.generation += 1
