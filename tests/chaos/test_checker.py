"""The linearizability checker on hand-made histories: it must refuse what is wrong.

A checker that accepts everything would let every chaos run pass, so most cases here
are histories a correct cluster could never produce, each of which must be refused.
"""

from __future__ import annotations

import math

from chaos.linearizability import Operation, check
from chaos.object_model import (
    ACTIVE,
    DEACTIVATED,
    DESTROYED,
    PRE_ACTIVE,
    KmipObject,
    backwards_steps,
    check_object,
)

MODEL = KmipObject()


def op(process: int, invoked: float, completed: float | None, kind: str, result: object = "ok",
       argument: object = None, deadline: float = math.inf) -> Operation:
    return Operation(process, invoked, completed, kind, argument,  # type: ignore[arg-type]
                     None if completed is None else result, deadline)  # type: ignore[arg-type]


def created() -> list[Operation]:
    return [op(0, 0, 1, "create")]


def test_a_sequential_history_the_model_allows_is_accepted() -> None:
    history = created() + [
        op(0, 2, 3, "activate"),
        op(1, 4, 5, "get_attributes", (ACTIVE, ())),
        op(0, 6, 7, "revoke"),
        op(1, 8, 9, "destroy"),
        op(2, 10, 11, "get", "destroyed"),
        op(2, 12, 13, "locate", "found"),
    ]
    assert check(history, MODEL).ok


def test_a_stale_read_after_an_acknowledged_write_is_refused() -> None:
    # Activate was answered at 3; a read invoked at 4 still sees Pre-Active.
    history = created() + [
        op(0, 2, 3, "activate"),
        op(1, 4, 5, "get_attributes", (PRE_ACTIVE, ())),
    ]
    verdict = check(history, MODEL)
    assert not verdict.linearizable and not verdict.exhausted
    assert [o.kind for o in verdict.longest_prefix] == ["create", "activate"]
    assert check_object(history).part == "life cycle"


def test_a_read_concurrent_with_the_write_may_see_either_state() -> None:
    for seen in (PRE_ACTIVE, ACTIVE):
        history = created() + [
            op(0, 2, 6, "activate"),
            op(1, 3, 5, "get_attributes", (seen, ())),
        ]
        assert check(history, MODEL).ok, seen


def test_a_lost_write_is_refused() -> None:
    # The attribute was acknowledged, then a read long after does not have it.
    history = created() + [
        op(0, 2, 3, "add_attribute", argument="a"),
        op(1, 10, 11, "get_attributes", (PRE_ACTIVE, ())),
    ]
    assert not check(history, MODEL).linearizable
    assert check_object(history).part == "value a"


def test_a_write_applied_twice_is_refused() -> None:
    history = created() + [
        op(0, 2, 3, "add_attribute", argument="a"),
        op(1, 4, 5, "get_attributes", (PRE_ACTIVE, ("a", "a"))),
    ]
    assert not check(history, MODEL).linearizable
    assert not check_object(history).ok


def test_an_acknowledged_create_that_a_later_locate_misses_is_refused() -> None:
    history = created() + [op(1, 2, 3, "locate", "absent")]
    assert not check(history, MODEL).linearizable


def test_two_reads_disagreeing_on_the_order_of_two_writes_are_refused() -> None:
    # Two concurrent adds; one reader sees only a, another then only b.
    history = created() + [
        op(0, 2, 20, "add_attribute", argument="a"),
        op(1, 2, 20, "add_attribute", argument="b"),
        op(2, 5, 6, "get_attributes", (PRE_ACTIVE, ("a",))),
        op(3, 7, 8, "get_attributes", (PRE_ACTIVE, ("b",))),
    ]
    assert not check(history, MODEL).linearizable


def test_an_unanswered_write_may_have_happened_or_not() -> None:
    for seen in ((PRE_ACTIVE, ()), (ACTIVE, ())):
        history = created() + [
            op(0, 2, None, "activate"),
            op(1, 10, 11, "get_attributes", seen),
        ]
        assert check(history, MODEL).ok, seen


def test_an_unanswered_write_may_not_appear_after_its_deadline() -> None:
    # First seen without it, then with it, after the deadline: it took effect too late.
    history = created() + [
        op(0, 2, None, "add_attribute", argument="a", deadline=5),
        op(1, 6, 7, "get_attributes", (PRE_ACTIVE, ())),
        op(1, 8, 9, "get_attributes", (PRE_ACTIVE, ("a",))),
    ]
    assert not check(history, MODEL).linearizable


def test_a_refused_transition_must_match_the_state_it_saw() -> None:
    # Destroy refused as Wrong State although nothing ever activated the object.
    history = created() + [op(0, 2, 3, "destroy", "wrong_state")]
    assert not check(history, MODEL).linearizable
    history = created() + [op(1, 2, 5, "activate"), op(0, 3, 4, "destroy", "wrong_state")]
    assert check(history, MODEL).ok


def test_a_destroyed_object_served_again_is_refused() -> None:
    history = created() + [
        op(0, 2, 3, "destroy"),
        op(1, 4, 5, "get", "live"),
    ]
    assert not check(history, MODEL).linearizable


def test_states_that_go_backwards_are_reported() -> None:
    history = created() + [
        op(1, 4, 5, "get_attributes", (DEACTIVATED, ())),
        op(2, 6, 7, "get_attributes", (ACTIVE, ())),
        op(2, 8, 9, "get_attributes", (DESTROYED, ())),
    ]
    steps = backwards_steps(history)
    assert [(a.invoked, b.invoked) for a, b in steps] == [(4, 6)]


def test_a_search_over_its_budget_is_unchecked_not_passing() -> None:
    # Twelve concurrent adds and reads that fit no order: the search must give up.
    history = created() + [op(p, 2, 50, "add_attribute", argument=str(p)) for p in range(12)]
    history.append(op(99, 60, 61, "get_attributes", (PRE_ACTIVE, ("x",))))
    verdict = check(history, MODEL, max_states=100)
    assert verdict.exhausted and not verdict.ok


def test_the_split_check_accepts_what_the_whole_model_accepts() -> None:
    history = created() + [
        op(0, 2, 9, "add_attribute", argument="a"),
        op(1, 2, None, "add_attribute", argument="b"),
        op(2, 3, 4, "activate"),
        op(3, 5, 6, "get_attributes", (ACTIVE, ("a",))),
        op(3, 10, 11, "get_attributes", (ACTIVE, ("a", "b"))),
    ]
    assert check(history, MODEL).ok
    assert check_object(history).ok


def test_many_unanswered_writes_stay_cheap_to_check() -> None:
    # Forty unanswered adds and transitions around a few reads: what a partition makes.
    history = created()
    for p in range(40):
        kind = ("add_attribute", "activate", "revoke", "destroy")[p % 4]
        history.append(op(p, 2 + p / 10, None, kind, argument=str(p)))
    history.append(op(99, 20, 21, "get_attributes", (DEACTIVATED, ("0", "4"))))
    history.append(op(99, 22, 23, "get_attributes", (DESTROYED, ("0", "4", "8"))))
    verdict = check_object(history)
    assert verdict.ok and verdict.states < 5_000
    history.append(op(99, 24, 25, "get_attributes", (DESTROYED, ("4", "8"))))
    assert check_object(history).part == "value 0"


def test_a_value_nobody_added_is_refused() -> None:
    history = created() + [op(1, 2, 3, "get_attributes", (PRE_ACTIVE, ("z",)))]
    assert not check_object(history).ok
