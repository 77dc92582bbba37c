"""The node's whole replicated state: the key store and the tenancy tables, as one.

The Raft log drives one state machine. ``ClusterState`` is that machine: it routes
each command to the part that owns it (tenancy commands to ``TenancyState``,
everything else to the ``KeyStore``) and dumps both into one snapshot, so a node
restored from a snapshot has keys and credentials from the same log index.

Two commands need both parts, and are checked here before either changes:

- deleting a scope that still holds objects needs ``force``, and then takes the
  objects with it;
- a managed object is only created in a scope that exists, so a Create racing a
  scope's deletion cannot leave an object nobody can reach.
"""

from __future__ import annotations

import pickle

from keyquorum.kmip.tables import ResultReason

from .state import CreateObject, KeyStore, Outcome, Rejected
from .tenancy import (
    TENANCY_COMMANDS,
    DeleteScope,
    Problem,
    Refused,
    TenancyOutcome,
    TenancyState,
)

# The snapshot's layout. Never renumber: it is read back from disk. A snapshot
# without it predates tenancy and holds the key store alone.
SNAPSHOT_FORMAT = 1


class ClusterState:
    """The state machine the Raft log applies to; see the module docstring."""

    def __init__(self, keys: KeyStore | None = None, tenancy: TenancyState | None = None) -> None:
        self.keys = keys if keys is not None else KeyStore()
        self.tenancy = tenancy if tenancy is not None else TenancyState()

    def apply(self, command: object) -> Outcome | TenancyOutcome:
        if isinstance(command, DeleteScope):
            return self._delete_scope(command)
        if isinstance(command, TENANCY_COMMANDS):
            return self.tenancy.apply(command)
        if isinstance(command, CreateObject) and self.tenancy.scope(command.scope) is None:
            return Rejected(ResultReason.PERMISSION_DENIED,
                            f"scope {command.scope} does not exist (deleted?)")
        return self.keys.apply(command)

    def _delete_scope(self, command: DeleteScope) -> TenancyOutcome:
        if self.tenancy.scope(command.scope) is None:
            return Refused(Problem.NOT_FOUND, f"no scope named {command.scope}")
        held = len(self.keys.objects(command.scope))
        if held and not command.force:
            return Refused(Problem.CONFLICT, f"scope {command.scope} still holds {held} "
                                             "object(s); delete with force to destroy them too")
        self.keys.drop_scope(command.scope)
        return self.tenancy.apply(command)

    def snapshot(self) -> bytes:
        parts = {
            "format": SNAPSHOT_FORMAT,
            "keys": self.keys.snapshot(),
            "tenancy": self.tenancy.snapshot(),
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
