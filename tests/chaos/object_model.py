"""The sequential model of one KMIP managed object, and the checks beside it.

The model is written from KMIP 1.4 (sections 3.22 and 4.19-4.21), not from the
server's code, so that a shared misunderstanding does not check itself. A state is
the object's life-cycle state plus the values of the custom attribute the chaos
clients add (a sorted tuple, so that a value applied twice shows as a duplicate).

``check_object`` checks an object's history in independent parts, as Porcupine
partitions a history: the life cycle (every operation but Add Attribute, with Get
Attributes reduced to the state it saw) with ``LifeCycle``, and each added attribute
value (its Add Attribute and how many times each Get Attributes saw it) with
``AttributeValue``. Values are unique per Add Attribute, so the parts do not interact,
and each stays small whatever the number of unanswered adds. What the split gives
up: a Get Attributes whose state and values came from different moments (a torn
read) passes, where the whole-object ``KmipObject`` would refuse it.

Answers are short words, the same ones the chaos client maps KMIP results to:
``ok``, ``wrong_state`` (Wrong Key Lifecycle State), ``not_found``; a Get answers
``live`` or ``destroyed``; Get Attributes answers ``(state, values)``; a Locate by the
object's name answers ``found`` or ``absent``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace

from chaos.linearizability import DEFAULT_MAX_STATES, Operation, Verdict, check

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
            if life == DESTROYED:
                # KMIP 2.x finds a destroyed object only when the Locate asks for its
                # State; 1.x servers differ. Either answer is the object's, not a loss.
                return state, frozenset({"found", "absent"})
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


class LifeCycle(KmipObject):
    """The object without its added attributes."""

    def step(self, state: ObjectState, kind: str, argument: Hashable) -> tuple[ObjectState,
                                                                                  Hashable]:
        after, answer = super().step(state, kind, argument)
        if kind == "get_attributes" and isinstance(answer, tuple):
            return after, answer[0]
        return after, answer


class AttributeValue:
    """How many instances of one added value the object holds: 0, then 1."""

    def initial(self) -> int:
        return 0

    def step(self, state: int, kind: str, argument: Hashable) -> tuple[int, Hashable]:
        if kind == "add_attribute":
            return state + 1, "ok"
        return state, state  # get_attributes: the count it saw


@dataclass(frozen=True)
class ObjectVerdict:
    ok: bool
    exhausted: bool
    states: int
    # The part that failed: "life cycle" or "value <v>".
    part: str = ""
    verdict: Verdict | None = None


def check_object(history: Sequence[Operation],
                 max_states: int = DEFAULT_MAX_STATES) -> ObjectVerdict:
    """Check one object's history part by part (see the module's docstring)."""
    life = [_state_only(op) for op in history if op.kind != "add_attribute"]
    parts: list[tuple[str, Sequence[Operation], LifeCycle | AttributeValue]] = [
        ("life cycle", life, LifeCycle())]
    values = sorted({str(op.argument) for op in history if op.kind == "add_attribute"})
    for value in values:
        ops = [op for op in history
               if op.kind == "add_attribute" and str(op.argument) == value]
        ops += [_count_of(op, value) for op in history
                if op.kind == "get_attributes" and op.required and isinstance(op.result, tuple)]
        parts.append((f"value {value}", ops, AttributeValue()))

    # A value no client added, seen by a read, fails no part above: look for it here.
    added = set(values)
    for op in history:
        if op.kind == "get_attributes" and isinstance(op.result, tuple):
            if set(op.result[1]) - added:
                return ObjectVerdict(False, False, 0, "a value nobody added")

    states = 0
    for name, ops, model in parts:
        verdict = check(ops, model, max_states)  # type: ignore[arg-type]
        states += verdict.states
        if not verdict.ok:
            return ObjectVerdict(False, verdict.exhausted, states, name, verdict)
    return ObjectVerdict(True, False, states)


def _state_only(op: Operation) -> Operation:
    if op.kind == "get_attributes" and isinstance(op.result, tuple):
        return replace(op, result=op.result[0])
    return op


def _count_of(op: Operation, value: str) -> Operation:
    assert isinstance(op.result, tuple)
    return replace(op, result=list(op.result[1]).count(value))
