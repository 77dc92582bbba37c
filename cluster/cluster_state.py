"""The node's whole replicated state: the key store and the tenancy tables, as one.

The Raft log drives one state machine. ``ClusterState`` is that machine: it routes
each command to the part that owns it (tenancy commands to ``TenancyState``, the
barrier's to ``BarrierState``, Transform's to ``TransformState``, everything else to
the ``KeyStore``) and dumps them all into one snapshot, so a node restored from a
snapshot has keys, credentials, Transform's tables and the keyring that opens them
from the same log index. ``RestoreState`` (an
operator's snapshot restore) replaces all three at once.

Two commands need both parts, and are checked here before either changes:

- deleting a scope that still holds objects needs ``force``, and then takes the
  objects with it;
- a managed object is only created in a scope that exists (a single Create or a
  key pair's CreateObjects alike), so a Create racing a scope's deletion cannot
  leave an object nobody can reach.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Sequence

from keyquorum.kmip.tables import ResultReason

from .audit_state import AUDIT_COMMANDS, AuditState
from .barrier import BARRIER_COMMANDS, BarrierState, RestoreState
from .notify import ObjectChange, object_changes, watched
from .notify_state import NOTIFY_COMMANDS, NotifyState, SetNotifyEndpoint
from .raft_dump import Lockable
from .state import (
    ISSUING_SCOPE,
    Applied,
    CreateFromSources,
    CreateObject,
    CreateObjects,
    KeyStore,
    Outcome,
    Rejected,
    ScopeName,
)
from .tenancy import (
    TENANCY_COMMANDS,
    DeleteScope,
    Done,
    Problem,
    Refused,
    TenancyOutcome,
    TenancyState,
)
from .transform.state import TRANSFORM_COMMANDS, TransformState

log = logging.getLogger("keyquorum.state")

# The snapshot's layout. Never renumber: it is read back from disk. A snapshot
# without it predates tenancy and holds the key store alone.
SNAPSHOT_FORMAT = 1


class ClusterState:
    """The state machine the Raft log applies to; see the module docstring."""

    def __init__(self, keys: KeyStore | None = None, tenancy: TenancyState | None = None) -> None:
        self.keys = keys if keys is not None else KeyStore()
        self.tenancy = tenancy if tenancy is not None else TenancyState()
        self.barrier = BarrierState()
        self.transform = TransformState()
        self.audit = AuditState()
        self.notify = NotifyState()
        # Told, on the Raft thread, what each applied command changed in a scope with
        # notify endpoints (cluster/notify.py); must be quick and must not block.
        self.on_object_change: Callable[[Sequence[ObjectChange]], None] | None = None

    def apply(self, command: object) -> Outcome | TenancyOutcome:
        if isinstance(command, DeleteScope):
            return self._delete_scope(command)
        if isinstance(command, TENANCY_COMMANDS):
            return self.tenancy.apply(command)
        if isinstance(command, BARRIER_COMMANDS):
            return self.barrier.apply(command)
        if isinstance(command, TRANSFORM_COMMANDS):
            return self.transform.apply(command)
        if isinstance(command, AUDIT_COMMANDS):
            return self.audit.apply(command)
        if isinstance(command, NOTIFY_COMMANDS):
            return self._apply_notify(command)
        if isinstance(command, RestoreState):
            return self._restore_state(command)
        missing = self._missing_scope(command)
        if missing is not None:
            return Rejected(ResultReason.PERMISSION_DENIED,
                            f"scope {missing} does not exist (deleted?)")
        return self._apply_keys(command)

    def _apply_keys(self, command: object) -> Outcome:
        # Objects are compared before and after only where someone listens.
        observer = self.on_object_change
        touched = watched(command) if observer is not None else None
        if observer is None or touched is None or not self.notify.has_endpoints(touched[0]):
            return self.keys.apply(command)
        scope, uids = touched
        before = {uid: self.keys.get(scope, uid) for uid in uids}
        outcome = self.keys.apply(command)
        if isinstance(outcome, Applied):
            try:
                observer(object_changes(command, before, lambda uid: self.keys.get(scope, uid)))
            except Exception as error:  # apply never raises: a lost notice is only logged
                log.error("object_change_unobserved error=%s", type(error).__name__)
        return outcome

    def _apply_notify(self, command: object) -> TenancyOutcome:
        if isinstance(command, SetNotifyEndpoint) and (
                self.tenancy.scope(command.endpoint.scope) is None):
            return Refused(Problem.NOT_FOUND, f"no scope named {command.endpoint.scope}")
        return self.notify.apply(command)

    def _missing_scope(self, command: object) -> ScopeName | None:
        """The scope a create names that does not exist, or None.

        Every command that brings an object into being is checked, a key pair's
        CreateObjects as much as a single CreateObject: each object it holds names
        its own scope, and one missing scope refuses all of them.
        """
        if isinstance(command, CreateObject):
            creates: tuple[CreateObject, ...] = (command,)
        elif isinstance(command, CreateObjects | CreateFromSources):
            creates = command.objects
        else:
            return None
        for create in creates:
            if create.scope != ISSUING_SCOPE and self.tenancy.scope(create.scope) is None:
                return create.scope
        return None

    def _delete_scope(self, command: DeleteScope) -> TenancyOutcome:
        if self.tenancy.scope(command.scope) is None:
            return Refused(Problem.NOT_FOUND, f"no scope named {command.scope}")
        held = len(self.keys.objects(command.scope))
        if held and not command.force:
            return Refused(Problem.CONFLICT, f"scope {command.scope} still holds {held} "
                                             "object(s); delete with force to destroy them too")
        self.keys.drop_scope(command.scope)
        self.notify.drop_scope(command.scope)
        return self.tenancy.apply(command)

    def _restore_state(self, command: RestoreState) -> TenancyOutcome:
        # Checked before anything changes: a snapshot of this layout, with a keyring.
        try:
            parts = pickle.loads(command.snapshot)
            usable = parts["format"] == SNAPSHOT_FORMAT and (
                pickle.loads(parts["barrier"]) is not None)
        except Exception:
            usable = False
        if not usable:
            return Refused(Problem.INVALID, "not a keyquorum snapshot with a keyring")
        self.restore(command.snapshot)
        return Done(len(self.keys))

    def locks(self) -> list[Lockable]:
        """Every lock ``snapshot`` takes, for the forked dump writer (raft_dump.py)."""
        parts = (self.keys, self.tenancy, self.barrier, self.transform, self.audit, self.notify)
        return [part._lock for part in parts]

    def snapshot(self) -> bytes:
        parts = {
            "format": SNAPSHOT_FORMAT,
            "keys": self.keys.snapshot(),
            "tenancy": self.tenancy.snapshot(),
            "barrier": self.barrier.snapshot(),
            "transform": self.transform.snapshot(),
            "audit": self.audit.snapshot(),
            "notify": self.notify.snapshot(),
        }
        return pickle.dumps(parts, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, data: bytes) -> None:
        parts = pickle.loads(data)
        if not (isinstance(parts, dict) and parts.get("format") == SNAPSHOT_FORMAT):
            # A dump written before tenancy existed: the key store's own bytes.
            self.keys.restore(data)
            return
        self.keys.restore(parts["keys"])
        self.tenancy.restore(parts["tenancy"])
        # Absent from snapshots taken before the barrier existed.
        self.barrier.restore(parts.get("barrier"))
        # Absent from snapshots taken before Transform existed.
        self.transform.restore(parts.get("transform"))
        # Absent from snapshots taken before audit devices existed.
        self.audit.restore(parts.get("audit"))
        # Absent from snapshots taken before notify endpoints existed.
        self.notify.restore(parts.get("notify"))
