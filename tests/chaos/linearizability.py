"""A linearizability checker for small per-object histories, in the manner of Knossos
and Porcupine (Wing and Gong's search, with Lowe's memoization of visited states).

Theory of operation
===================

A history is what clients saw: each operation with the time it was invoked, the time
its answer arrived, and the answer. It is linearizable when there is one order of the
operations that (a) a sequential model of the object accepts, every operation giving
the answer that was observed, and (b) respects real time: an operation that was
answered before another was invoked comes first. Equivalently, every operation takes
effect at one point between its invocation and its answer.

An operation whose answer never came (a timeout, a dropped connection, a "cannot
commit right now") may or may not have taken effect. It is *optional*: it may take
effect at any point after its invocation and before its ``deadline`` (infinity when
nothing bounds it; the chaos run bounds it once the cluster has healed and settled),
or not at all. Its answer is unknown, so the model's answer is not compared.

The search builds the order one operation at a time. An operation may come next
when it is invoked before every still unplaced required operation was answered
(otherwise that one would have to come first); a point can then be found for it
after every operation already placed. A state of the search is the set of placed
operations plus the model's state; one reached before is not explored again, which
is what keeps the search polynomial for histories with little concurrency. The
history is accepted when every required operation is placed; optional ones left over
never happened.

The search is exponential in the number of operations that overlap one another, so
histories are kept per object and short (the chaos workload retires an object after
a few dozen operations). ``max_states`` bounds the work; a history that exceeds it is
reported as unchecked, never as passing.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

State = TypeVar("State", bound=Hashable)

# Far above what a per-object history of the chaos run explores (hundreds of states).
DEFAULT_MAX_STATES = 200_000


@dataclass(frozen=True)
class Operation:
    """One client operation on one object, as the client saw it."""

    process: int  # the client that issued it; one client has one operation in flight
    invoked: float
    # When the answer arrived; None when none did (then ``result`` is None too).
    completed: float | None
    kind: str
    argument: Hashable
    result: Hashable
    # For an unanswered operation: the time by which it took effect if it ever did.
    deadline: float = math.inf

    @property
    def required(self) -> bool:
        return self.completed is not None

    @property
    def latest(self) -> float:
        """The last moment this operation may take effect."""
        return self.deadline if self.completed is None else self.completed


class Model(Protocol, Generic[State]):
    """A sequential specification: deterministic, states hashable."""

    def initial(self) -> State: ...

    def step(self, state: State, kind: str, argument: Hashable) -> tuple[State, Hashable]:
        """The state after the operation and the answer it gives (see ``allows``)."""
        ...


@dataclass(frozen=True)
class Verdict:
    linearizable: bool
    # Explored search states; with ``exhausted``, the search gave up (no verdict).
    states: int
    exhausted: bool = False
    # On a refusal: the longest prefix of an order the model accepted, for the report.
    longest_prefix: tuple[Operation, ...] = ()

    @property
    def ok(self) -> bool:
        return self.linearizable and not self.exhausted


def check(history: Sequence[Operation], model: Model[State],
          max_states: int = DEFAULT_MAX_STATES) -> Verdict:
    """Whether ``history`` is linearizable with respect to ``model``."""
    operations = sorted(history, key=lambda op: op.invoked)
    count = len(operations)
    required = frozenset(i for i, op in enumerate(operations) if op.required)
    seen: set[tuple[frozenset[int], Hashable]] = set()
    best: list[int] = []
    states = 0

    def search(placed: frozenset[int], order: list[int], state: State,
               last_invoked: float) -> bool:
        nonlocal states, best
        if required <= placed:
            return True
        if (placed, state) in seen:
            return False
        seen.add((placed, state))
        states += 1
        if states > max_states:
            raise _Exhausted
        if len(order) > len(best):
            best = list(order)

        # Every unplaced required operation must still fit after the next one.
        horizon = min(operations[i].latest for i in required - placed)
        for index in range(count):
            if index in placed:
                continue
            op = operations[index]
            if op.invoked >= horizon:
                break  # sorted by invocation: no later one can come next either
            point = max(last_invoked, op.invoked)
            if point >= op.latest:
                continue  # an optional operation whose window closed: never happened
            following = [operations[i].latest for i in required - placed if i != index]
            if following and point >= min(following):
                continue
            after, answer = model.step(state, op.kind, op.argument)
            if op.required and not allows(answer, op.result):
                continue
            if not op.required and after == state:
                # An unanswered operation that changes nothing here is the same as one
                # that never happened; placing it would only multiply the search.
                continue
            order.append(index)
            if search(placed | {index}, order, after, point):
                return True
            order.pop()
        return False

    try:
        found = search(frozenset(), [], model.initial(), -math.inf)
    except _Exhausted:
        return Verdict(False, states, exhausted=True)
    if found:
        return Verdict(True, states)
    return Verdict(False, states, longest_prefix=tuple(operations[i] for i in best))


def allows(answer: Hashable, observed: Hashable) -> bool:
    """Whether the model's answer allows the observed one.

    A model answers with a frozenset where the specification leaves servers a
    choice; any member is then allowed.
    """
    if isinstance(answer, frozenset):
        return observed in answer
    return answer == observed


class _Exhausted(Exception):
    pass
