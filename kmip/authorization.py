"""What a KMIP client may do: its scope and the operations its role allows.

The node maps each client certificate to a ``Grant`` (cluster/tenancy.py holds the
credentials, roles and imported CAs); the service asks the grant before it runs a
batch item. A role names its operations by flags shaped like Vault's KMIP engine:
``operation_create``, ``operation_get``, ... one per operation this server
implements, plus ``operation_all`` and ``operation_none``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from keyquorum.cluster.state import ScopeName

from .tables import Operation

# Every operation, including ones added later: what the admin role of the dev
# cluster holds, so that a new operation does not need a role rewritten.
ALL_OPERATIONS = "operation_all"
# Nothing at all; cannot be combined with another flag.
NO_OPERATIONS = "operation_none"


def operation_flag(operation: Operation) -> str:
    """The role flag that allows ``operation``: GET_ATTRIBUTES needs operation_get_attributes."""
    return "operation_" + operation.name.lower()


def operation_flags(operations: Iterable[Operation]) -> dict[str, Operation]:
    """The flag of each of ``operations``, by flag name."""
    return {operation_flag(operation): operation for operation in operations}


@dataclass(frozen=True)
class Grant:
    """What one client certificate may do right now."""

    scope: ScopeName
    # The role's flags as stored: operation_* names.
    flags: frozenset[str]
    # For log lines: which credential or imported CA the grant came from.
    source: str = ""
    # The role's name, for audit records.
    role: str = ""

    def permits(self, operation: Operation | int) -> bool:
        if ALL_OPERATIONS in self.flags:
            return True
        if not isinstance(operation, Operation):
            return False
        return operation_flag(operation) in self.flags
