"""The replication sequence: the root state machine, wrapped around ``ClusterState``.

Theory of operation
-------------------
Every change another cluster must see gets a number, the *sequence*, assigned in
``apply``: each command ``ClusterState`` applied successfully (``Applied``, ``Done``)
takes the next number, on every node alike, because every node applies the same
log. Refused commands, read barriers and this module's own commands take none. The
last ``changelog_size`` changes are kept, in memory and in the Raft dump (this
state's snapshot), as ``Change(sequence, command)``: the command exactly as it was
in the log, so key material stays wrapped as it is there.

The primary's active node streams changes after the number a secondary asks for
(cluster/replication_server.py). A number older than the changelog is answered
with a snapshot of the whole state and the sequence it was taken at
(``snapshot_at``), which this lock makes one consistent cut.

A secondary applies what it receives as commands of its own log:
``ApplySnapshot`` replaces its state, ``ApplyChanges`` applies a run of changes. The
numbers make both idempotent and gap-free whichever node submits them and however
often: a change at or below the secondary's sequence is skipped (a duplicate after a
leader change on either side), and a run that does not start right after it is
refused whole before anything changes (a gap), so the stream restarts from the
secondary's own sequence. A secondary refuses local writes: it changes only by what
the primary sends, so it stays a faithful copy.

The mode (primary, performance or DR secondary), the primary's link and credentials,
the activation tokens and the nodes' replication addresses are replicated here too,
so whichever node leads can take the stream over.

Commands and records are pickled into the journal and dumps: add fields with
defaults, never rename.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import pickle
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from keyquorum.kmip.tables import ResultReason

from .cluster_state import ClusterState
from .raft_dump import Lockable
from .state import Applied, KeyStore, NoOp, Rejected
from .tenancy import Done, Problem, Refused, TenancyState

# Changes kept for secondaries that fall behind; one further behind gets a snapshot.
# 10,000 Creates are a few MiB of dump and minutes of a busy primary's writes.
CHANGELOG_SIZE = 10_000
# The layout of this state's snapshot. Never renumber: it is read back from disk.
SNAPSHOT_FORMAT = 1


class Mode(enum.Enum):
    NONE = "none"
    PRIMARY = "primary"
    PERFORMANCE = "performance"
    DR = "dr"


SECONDARY_MODES = (Mode.PERFORMANCE, Mode.DR)


@dataclass(frozen=True)
class CertificateAuthority:
    """The replication CA: it signs the nodes' gRPC certificates and secondaries' clients."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)


@dataclass(frozen=True)
class PrimaryLink:
    """How a secondary reaches its primary: from the activation token."""

    primary_cluster_id: str
    addresses: tuple[str, ...]
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes = field(repr=False)


@dataclass(frozen=True)
class Activation:
    """A secondary activation token, as the primary remembers it: only its hash."""

    token_id: str
    secret_hash: str
    secondary_id: str
    kind: Mode
    expires_at: int
    redeemed_at: int | None = None


@dataclass(frozen=True)
class Change:
    sequence: int
    command: object


# Commands.


@dataclass(frozen=True)
class EnablePrimary:
    cluster_id: str
    ca: CertificateAuthority


@dataclass(frozen=True)
class IssueActivation:
    activation: Activation


@dataclass(frozen=True)
class RedeemActivation:
    token_id: str
    secret_hash: str
    kind: Mode
    now: int


@dataclass(frozen=True)
class EnableSecondary:
    """Become (or re-point) a secondary; the state is replaced by the primary's."""

    kind: Mode
    cluster_id: str
    link: PrimaryLink


@dataclass(frozen=True)
class ApplySnapshot:
    sequence: int
    state: bytes


@dataclass(frozen=True)
class ApplyChanges:
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class IssueDrOperationToken:
    token_hash: str
    expires_at: int


@dataclass(frozen=True)
class Promote:
    """A secondary becomes the primary; it keeps its sequence and changelog."""

    dr_token_hash: str
    ca: CertificateAuthority
    now: int


@dataclass(frozen=True)
class Demote:
    """A primary becomes a DR secondary with no primary until update-primary."""


@dataclass(frozen=True)
class DisableReplication:
    pass


@dataclass(frozen=True)
class AnnounceAddress:
    """A node's replication address, as the peers of other clusters dial it."""

    raft_address: str
    replication_address: str


@dataclass(frozen=True)
class Forwarded:
    """A performance secondary's write: answered with the sequence it got."""

    command: object


@dataclass(frozen=True)
class ForwardedOutcome:
    outcome: object
    sequence: int


REPLICATION_COMMANDS = (
    EnablePrimary, IssueActivation, RedeemActivation, EnableSecondary, ApplySnapshot,
    ApplyChanges, IssueDrOperationToken, Promote, Demote, DisableReplication,
    AnnounceAddress, Forwarded,
)


def secret_hash(secret: bytes | str) -> str:
    data = secret.encode() if isinstance(secret, str) else secret
    return hashlib.sha256(data).hexdigest()


class ReplicationState:
    """The state machine the Raft log applies to; see the module docstring."""

    def __init__(self, inner: ClusterState | None = None,
                 changelog_size: int = CHANGELOG_SIZE) -> None:
        self.inner = inner if inner is not None else ClusterState()
        self._lock = threading.RLock()
        self._changelog_size = changelog_size
        self._changelog: deque[Change] = deque(maxlen=changelog_size)
        self.sequence = 0
        self.mode = Mode.NONE
        self.cluster_id = ""
        self.link: PrimaryLink | None = None
        self.ca: CertificateAuthority | None = None
        # A fresh secondary holds nothing of its primary until the first snapshot.
        self.awaiting_snapshot = False
        self._activations: dict[str, Activation] = {}
        self._dr_tokens: dict[str, int] = {}
        self._addresses: dict[str, str] = {}
        # Not replicated: told each new sequence on this node (streams, lag clocks).
        self.on_change: Callable[[int], None] | None = None

    # Reads, from any thread.

    @property
    def keys(self) -> KeyStore:
        return self.inner.keys

    @property
    def tenancy(self) -> TenancyState:
        return self.inner.tenancy

    def changes_after(self, sequence: int, limit: int = 512) -> list[Change] | None:
        """Up to ``limit`` changes after ``sequence``; None when the changelog lost some."""
        with self._lock:
            if sequence >= self.sequence:
                return []
            oldest = self._changelog[0].sequence if self._changelog else self.sequence + 1
            if sequence < oldest - 1:
                return None
            start = sequence - oldest + 1
            return [self._changelog[i]
                    for i in range(start, min(len(self._changelog), start + limit))]

    def snapshot_at(self) -> tuple[int, bytes]:
        """The whole replicated state and the sequence it includes: one cut."""
        with self._lock:
            return self.sequence, self.inner.snapshot()

    def addresses(self) -> dict[str, str]:
        with self._lock:
            return dict(self._addresses)

    def activation(self, token_id: str) -> Activation | None:
        with self._lock:
            return self._activations.get(token_id)

    def digest(self) -> str:
        """SHA-256 over every managed object, in key order: equal states, equal digests."""
        # repr, not pickle: a pickle differs with how objects share references, which
        # a restore changes; the dataclasses' repr depends on the values alone.
        hasher = hashlib.sha256()
        for obj in sorted(self.inner.keys, key=lambda o: (o.scope, o.uid)):
            hasher.update(repr(obj).encode())
        return hasher.hexdigest()

    # The state machine contract (cluster/raft.py calls these on its thread).

    def apply(self, command: object) -> object:
        with self._lock:
            if isinstance(command, REPLICATION_COMMANDS):
                return self._apply_own(command)
            if isinstance(command, NoOp):
                return Applied()
            if self.mode in SECONDARY_MODES:
                return _secondary_refusal(command)
            return self._apply_change(command)

    def locks(self) -> list[Lockable]:
        """Every lock ``snapshot`` takes, its own first, as apply takes them."""
        return [self._lock, *self.inner.locks()]

    def snapshot(self) -> bytes:
        with self._lock:
            parts = {
                "format": SNAPSHOT_FORMAT,
                "inner": self.inner.snapshot(),
                "sequence": self.sequence,
                "changelog": list(self._changelog),
                "mode": self.mode,
                "cluster_id": self.cluster_id,
                "link": self.link,
                "ca": self.ca,
                "awaiting_snapshot": self.awaiting_snapshot,
                "activations": self._activations,
                "dr_tokens": self._dr_tokens,
                "addresses": self._addresses,
            }
            return pickle.dumps(parts, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, data: bytes) -> None:
        parts = pickle.loads(data)
        with self._lock:
            if not (isinstance(parts, dict) and parts.get("format") == SNAPSHOT_FORMAT
                    and "inner" in parts):
                # A dump written before replication existed: the cluster state's own.
                self.inner.restore(data)
                return
            self.inner.restore(parts["inner"])
            self.sequence = parts["sequence"]
            self._changelog = deque(parts["changelog"], maxlen=self._changelog_size)
            self.mode = parts["mode"]
            self.cluster_id = parts["cluster_id"]
            self.link = parts["link"]
            self.ca = parts["ca"]
            self.awaiting_snapshot = parts["awaiting_snapshot"]
            self._activations = parts["activations"]
            self._dr_tokens = parts["dr_tokens"]
            self._addresses = parts["addresses"]

    # Changes.

    def _apply_change(self, command: object) -> object:
        outcome = self.inner.apply(command)
        if isinstance(outcome, Applied | Done):
            self._record(command)
        return outcome

    def _record(self, command: object) -> None:
        self.sequence += 1
        self._changelog.append(Change(self.sequence, self.inner.keys.shared_form(command)))
        if self.on_change is not None:
            self.on_change(self.sequence)

    def _apply_own(self, command: object) -> object:
        if isinstance(command, ApplyChanges):
            return self._apply_changes(command)
        if isinstance(command, ApplySnapshot):
            return self._apply_snapshot(command)
        if isinstance(command, Forwarded):
            return self._forwarded(command)
        if isinstance(command, AnnounceAddress):
            self._addresses[command.raft_address] = command.replication_address
            return Done()
        if isinstance(command, EnablePrimary):
            return self._enable_primary(command)
        if isinstance(command, IssueActivation):
            return self._issue_activation(command)
        if isinstance(command, RedeemActivation):
            return self._redeem(command)
        if isinstance(command, EnableSecondary):
            return self._enable_secondary(command)
        if isinstance(command, IssueDrOperationToken):
            self._dr_tokens[command.token_hash] = command.expires_at
            return Done()
        if isinstance(command, Promote):
            return self._promote(command)
        if isinstance(command, Demote):
            return self._demote()
        if isinstance(command, DisableReplication):
            self.mode, self.link, self.awaiting_snapshot = Mode.NONE, None, False
            return Done()
        return Refused(Problem.INVALID, f"unknown command {type(command).__name__}")

    def _apply_changes(self, command: ApplyChanges) -> object:
        if self.mode not in SECONDARY_MODES:
            return Refused(Problem.CONFLICT, "not a secondary")
        if self.awaiting_snapshot:
            return Refused(Problem.CONFLICT, "waiting for the primary's snapshot")

        # Duplicates are skipped; what is left must follow on without a gap.
        fresh = [change for change in command.changes if change.sequence > self.sequence]
        expected = list(range(self.sequence + 1, self.sequence + 1 + len(fresh)))
        if [change.sequence for change in fresh] != expected:
            return Refused(Problem.CONFLICT, f"gap: have {self.sequence}, got "
                                             f"{fresh[0].sequence if fresh else None}")
        for change in fresh:
            self.inner.apply(change.command)
            self._record(change.command)
        return Done(self.sequence)

    def _apply_snapshot(self, command: ApplySnapshot) -> object:
        if self.mode not in SECONDARY_MODES:
            return Refused(Problem.CONFLICT, "not a secondary")
        if not self.awaiting_snapshot and command.sequence <= self.sequence:
            return Done(self.sequence)  # a retry of one already installed
        self.inner.restore(command.state)
        self.sequence = command.sequence
        self._changelog.clear()
        self.awaiting_snapshot = False
        if self.on_change is not None:
            self.on_change(self.sequence)
        return Done(self.sequence)

    def _forwarded(self, command: Forwarded) -> object:
        if self.mode != Mode.PRIMARY:
            return ForwardedOutcome(
                Rejected(ResultReason.GENERAL_FAILURE,
                         "the replication primary moved; retry through the secondary"), 0)
        before = self.sequence
        outcome = self._apply_change(command.command)
        return ForwardedOutcome(outcome, self.sequence if self.sequence != before else 0)

    def _enable_primary(self, command: EnablePrimary) -> object:
        if self.mode == Mode.PRIMARY:
            return Done(self.cluster_id)
        if self.mode in SECONDARY_MODES:
            return Refused(Problem.CONFLICT, "this cluster is a secondary: promote it, or "
                                             "disable replication first")
        self.mode, self.cluster_id, self.ca = Mode.PRIMARY, command.cluster_id, command.ca
        return Done(self.cluster_id)

    def _issue_activation(self, command: IssueActivation) -> object:
        if self.mode != Mode.PRIMARY:
            return Refused(Problem.CONFLICT, "enable this cluster as a primary first")
        self._activations[command.activation.token_id] = command.activation
        return Done()

    def _redeem(self, command: RedeemActivation) -> object:
        found = self._activations.get(command.token_id)
        if self.mode != Mode.PRIMARY:
            return Refused(Problem.CONFLICT, "this cluster is not a replication primary")
        if found is None or not hmac.compare_digest(found.secret_hash, command.secret_hash):
            return Refused(Problem.NOT_FOUND, "unknown activation token")
        if found.redeemed_at is not None:
            return Refused(Problem.CONFLICT, "the activation token was used already; "
                                             "generate a new one")
        if command.now >= found.expires_at:
            return Refused(Problem.CONFLICT, "the activation token expired; generate a new one")
        if found.kind != command.kind:
            return Refused(Problem.INVALID, f"the token is for a {found.kind.value} secondary")
        self._activations[command.token_id] = Activation(
            found.token_id, found.secret_hash, found.secondary_id, found.kind,
            found.expires_at, command.now)
        return Done(found.secondary_id)

    def _enable_secondary(self, command: EnableSecondary) -> object:
        if command.kind not in SECONDARY_MODES:
            return Refused(Problem.INVALID, "a secondary is performance or dr")
        self.mode, self.cluster_id, self.link = command.kind, command.cluster_id, command.link
        self.sequence = 0
        self._changelog.clear()
        self.awaiting_snapshot = True
        return Done()

    def _promote(self, command: Promote) -> object:
        if self.mode not in SECONDARY_MODES:
            return Refused(Problem.CONFLICT, "only a secondary can be promoted")
        expires_at = self._dr_tokens.pop(command.dr_token_hash, None)
        if expires_at is None or command.now >= expires_at:
            return Refused(Problem.INVALID, "the DR operation token is unknown, used or "
                                            "expired; generate a new one")
        if self.awaiting_snapshot:
            return Refused(Problem.CONFLICT, "this secondary never received its primary's "
                                             "state; there is nothing to promote")
        self.mode, self.link = Mode.PRIMARY, None
        if self.ca is None:
            self.ca = command.ca
        return Done(self.sequence)

    def _demote(self) -> object:
        if self.mode != Mode.PRIMARY:
            return Refused(Problem.CONFLICT, "only a primary can be demoted")
        # Without a link it streams from nobody until update-primary gives it one.
        self.mode, self.link = Mode.DR, None
        return Done(self.sequence)


def _secondary_refusal(command: object) -> object:
    message = ("this cluster is a replication secondary; it changes only through its "
               "primary (a performance secondary forwards KMIP writes there)")
    if type(command).__module__.endswith(".state"):
        return Rejected(ResultReason.PERMISSION_DENIED, message)
    return Refused(Problem.CONFLICT, message)
