"""Notify endpoints, replicated: the KMIP listeners of clients that want changes pushed.

KMIP lets a server call its clients: Notify tells a client an object's attributes
changed, Put hands it a new or replacing object (KMIP 1.4 sections 5.1 and 5.2, 2.1
sections 7.1 and 7.2). A client that wants them runs a KMIP listener of its own; an
operator registers its address for the scope the client belongs to, through the
admin API (cluster/notify_api.py). The registration reaches every node through the
Raft log, so whichever node leads knows where to send (cluster/notify.py).

The rules of every replicated table hold (cluster/state.py): ``apply`` checks before
it changes and never raises. Class and field names are pickled into the journal:
add fields with defaults, never rename.
"""

from __future__ import annotations

import pickle
import re
import threading
from dataclasses import dataclass

from .state import ScopeName
from .tenancy import Done, Problem, Refused, TenancyOutcome

# Endpoint names travel in URL paths: the same characters as scope names.
ENDPOINT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# The KMIP versions a Notify or Put can be sent in: the client says which it reads.
NOTIFY_VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4", "2.0", "2.1")

# Endpoints per scope. Each change is sent to each of them in turn; a handful covers
# a client and its standby, and the bound keeps one change's fan-out small.
MAX_ENDPOINTS_PER_SCOPE = 8


@dataclass(frozen=True)
class NotifyEndpoint:
    scope: ScopeName
    name: str
    host: str
    port: int
    # "1.4" or "2.1": the protocol version of the messages sent to it.
    kmip_version: str = "1.4"
    created_at: int = 0

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def version(self) -> tuple[int, int]:
        major, minor = self.kmip_version.split(".")
        return int(major), int(minor)


@dataclass(frozen=True)
class SetNotifyEndpoint:
    endpoint: NotifyEndpoint


@dataclass(frozen=True)
class RemoveNotifyEndpoint:
    scope: ScopeName
    name: str


NOTIFY_COMMANDS = (SetNotifyEndpoint, RemoveNotifyEndpoint)


def check_endpoint(name: str, host: str, port: int, kmip_version: str) -> str | None:
    """What is wrong with an endpoint's settings, or None; shared by apply and the API."""
    if not ENDPOINT_NAME.fullmatch(name):
        return (f"endpoint name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' "
                "or '-', starting with a letter or digit")
    if not host or len(host) > 253 or any(c.isspace() or c in "/@" for c in host):
        return f"host {host!r} is not a host name or IP address"
    if not 0 < port < 65536:
        return f"port {port} is not between 1 and 65535"
    if kmip_version not in NOTIFY_VERSIONS:
        return f"kmip_version must be one of {', '.join(NOTIFY_VERSIONS)}"
    return None


class NotifyState:
    """Endpoints by scope; apply runs on the Raft thread, reads on any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._endpoints: dict[tuple[ScopeName, str], NotifyEndpoint] = {}

    def endpoints(self, scope: ScopeName) -> list[NotifyEndpoint]:
        with self._lock:
            found = [e for (owner, _), e in self._endpoints.items() if owner == scope]
        return sorted(found, key=lambda endpoint: endpoint.name)

    def has_endpoints(self, scope: ScopeName) -> bool:
        # Asked on every applied key command: one pass, no sorting.
        with self._lock:
            return any(owner == scope for owner, _ in self._endpoints)

    def apply(self, command: object) -> TenancyOutcome:
        with self._lock:
            if isinstance(command, SetNotifyEndpoint):
                return self._set(command.endpoint)
            if isinstance(command, RemoveNotifyEndpoint):
                return self._remove(command.scope, command.name)
            return Refused(Problem.INVALID, f"unknown command {type(command).__name__}")

    def _set(self, endpoint: NotifyEndpoint) -> TenancyOutcome:
        problem = check_endpoint(endpoint.name, endpoint.host, endpoint.port,
                                 endpoint.kmip_version)
        if problem:
            return Refused(Problem.INVALID, problem)
        key = (endpoint.scope, endpoint.name)
        held = sum(1 for owner, _ in self._endpoints if owner == endpoint.scope)
        if key not in self._endpoints and held >= MAX_ENDPOINTS_PER_SCOPE:
            return Refused(Problem.CONFLICT, f"scope {endpoint.scope} already has "
                                             f"{MAX_ENDPOINTS_PER_SCOPE} notify endpoints; "
                                             "remove one first")
        self._endpoints[key] = endpoint
        return Done()

    def _remove(self, scope: ScopeName, name: str) -> TenancyOutcome:
        if self._endpoints.pop((scope, name), None) is None:
            return Refused(Problem.NOT_FOUND, f"no notify endpoint {name} in scope {scope}")
        return Done()

    def drop_scope(self, scope: ScopeName) -> None:
        """A deleted scope's endpoints go with it (called by ClusterState)."""
        with self._lock:
            for key in [key for key in self._endpoints if key[0] == scope]:
                del self._endpoints[key]

    def snapshot(self) -> bytes:
        with self._lock:
            return pickle.dumps(dict(self._endpoints), protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, data: bytes | None) -> None:
        # None: a snapshot from before notify endpoints existed.
        endpoints = {} if data is None else pickle.loads(data)
        with self._lock:
            self._endpoints = endpoints
