"""The sequential model of one KMIP managed object, and the checks beside it.

The model is written from KMIP 1.4 (sections 3.22 and 4.19-4.21), not from the
server's code, so that a shared misunderstanding does not check itself. A state is
the object's life-cycle state plus the values of the custom attribute the chaos
clients add (a sorted tuple, so that a value applied twice shows as a duplicate).

Answers are short words, the same ones the chaos client maps KMIP results to:
``ok``, ``wrong_state`` (Wrong Key Lifecycle State), ``not_found``; a Get answers
``live`` or ``destroyed``; Get Attributes answers ``(state, values)``; a Locate by the
object's name answers ``found`` or ``absent``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from chaos.linearizability import Operation

ABSENT = "absent"
PRE_ACTIVE = "pre_active"
ACTIVE = "active"
DEACTIVATED = "deactivated"
DESTROYED = "destroyed"

# The order the states of the chaos workload's objects move in; never backwards.
PROGRESS = {ABSENT: 0, PRE_ACTIVE: 1, ACTIVE: 2, DEACTIVATED: 3, DESTROYED: 4}

WRITES = frozenset({"create", "activate", "revoke", "destroy", "add_attribute"})
READS = frozenset({"get", "get_attributes", "locate"})

ObjectState = tuple[str, tuple[str, ...]]


class KmipObject:
    """One object: created once, then moved along Activate, Revoke, Destroy."""

    def initial(self) -> ObjectState:
        return (ABSENT, ())

    def step(self, state: ObjectState, kind: str, argument: Hashable) -> tuple[ObjectState,
                                                                                  Hashable]:
        life, values = state
        if kind == "create":  # Create and Register alike
            return ((PRE_ACTIVE, ()), "ok") if life == ABSENT else (state, "exists")
        if kind == "locate":
            return state, "absent" if life == ABSENT else "found"
        if life == ABSENT:
            return state, "not_found"
        if kind == "activate":
            return ((ACTIVE, values), "ok") if life == PRE_ACTIVE else (state, "wrong_state")
        if kind == "revoke":  # with a reason other than a compromise
            if life in (PRE_ACTIVE, ACTIVE):
                return (DEACTIVATED, values), "ok"
            return state, "wrong_state"
        if kind == "destroy":  # an Active object must be revoked first
            if life in (PRE_ACTIVE, DEACTIVATED):
                return (DESTROYED, values), "ok"
            return state, "wrong_state"
        if kind == "add_attribute":  # attributes outlive the object's value
            return (life, tuple(sorted(values + (str(argument),)))), "ok"
        if kind == "get":
            return state, "destroyed" if life == DESTROYED else "live"
        if kind == "get_attributes":
            return state, state
        raise ValueError(f"unknown operation {kind}")


def backwards_steps(history: Sequence[Operation]) -> list[tuple[Operation, Operation]]:
    """Pairs of reads where the later one saw an earlier life-cycle state.

    "Later" is real time: the second read was invoked after the first was answered.
    Linearizability implies this; it is checked on its own for a plain message.
    """
    reads = sorted((op for op in history if op.kind == "get_attributes" and op.required
                    and isinstance(op.result, tuple)), key=lambda op: op.invoked)
    found = []
    for first in reads:
        for second in reads:
            assert first.completed is not None and isinstance(first.result, tuple)
            assert isinstance(second.result, tuple)
            if second.invoked > first.completed and \
                    PROGRESS[second.result[0]] < PROGRESS[first.result[0]]:
                found.append((first, second))
    return found
