"""ReadIndex (keyquorum.cluster.raft_read), the tick's pace and the Raft cipher, in-process.

ReadIndex is driven here through a fake view of the Raft node, one tick and one message at
a time, so that each rule of its theory of operation is checked in isolation; the real
3-node behaviour (a paused, deposed leader) is in test_raft.py.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag

from keyquorum.cluster.raft_cipher import TransportCipher
from keyquorum.cluster.raft_read import (
    INDEX_REQUEST,
    INDEX_RESPONSE,
    PROBE,
    PROBE_ACK,
    PROBE_RETRY_SECONDS,
    ReadFailed,
    ReadIndex,
)
from keyquorum.cluster.raft_tick import TickPacer


class FakeView:
    def __init__(self, leader: bool = True) -> None:
        self.leading = leader
        self.current_term = 3
        self.leader_node: Any = "a" if leader else "b"
        self.peer_nodes = ["b", "c"]
        self.commit = 10
        self.applied = 10
        self.own_term_committed = True
        self.sent: list[tuple[Any, dict[str, Any]]] = []

    def is_leader(self) -> bool:
        return self.leading

    def term(self) -> int:
        return self.current_term

    def leader(self) -> Any:
        return self.leader_node

    def peers(self) -> list[Any]:
        return self.peer_nodes

    def commit_index(self) -> int:
        return self.commit

    def applied_index(self) -> int:
        return self.applied

    def committed_in_own_term(self) -> bool:
        return self.own_term_committed

    def send(self, node: Any, message: dict[str, Any]) -> None:
        self.sent.append((node, message))

    def take(self, kind: str) -> list[tuple[Any, dict[str, Any]]]:
        taken = [(node, m) for node, m in self.sent if m["type"] == kind]
        self.sent = [(node, m) for node, m in self.sent if m["type"] != kind]
        return taken


def make(view: FakeView) -> tuple[ReadIndex, dict[Hashable, object]]:
    outcomes: dict[Hashable, object] = {}
    reads = ReadIndex(view, outcomes.__setitem__, lambda: None)
    return reads, outcomes


def ack(reads: ReadIndex, node: str, probe: dict[str, Any], term: int | None = None) -> None:
    reads.on_message(node, {"type": PROBE_ACK, "term": probe["term"] if term is None else term,
                            "round": probe["round"]})


def test_leader_answers_only_after_a_majority_acknowledged_a_round_sent_after_the_read() -> None:
    view = FakeView()
    reads, outcomes = make(view)
    reads.on_tick()  # an earlier round's acks must not count for a later read
    reads.request("r1")
    reads.on_tick()

    probes = view.take(PROBE)
    assert [node for node, _ in probes] == ["b", "c"]
    assert probes[0][1]["term"] == 3
    reads.on_tick()
    assert outcomes == {}  # no acknowledgement yet

    ack(reads, "b", {"term": 3, "round": probes[0][1]["round"] - 1})
    reads.on_tick()
    assert outcomes == {}  # an older round says nothing about this read

    ack(reads, "b", probes[0][1], term=2)
    reads.on_tick()
    assert outcomes == {}  # an acknowledgement of another term does not count

    ack(reads, "b", probes[0][1])  # b and the leader itself: a majority of three
    reads.on_tick()
    assert outcomes == {"r1": None}
    assert not reads.busy()


def test_concurrent_reads_share_one_round() -> None:
    view = FakeView()
    reads, outcomes = make(view)
    for key in ("r1", "r2", "r3"):
        reads.request(key)
    reads.on_tick()
    probes = view.take(PROBE)
    assert len(probes) == 2  # one probe per peer for all three reads

    ack(reads, "c", probes[1][1])
    reads.on_tick()
    assert outcomes == {"r1": None, "r2": None, "r3": None}


def test_reads_during_a_round_share_the_next_one_sent_once_it_is_confirmed() -> None:
    view = FakeView()
    reads, outcomes = make(view)
    reads.request("r1")
    reads.on_tick()
    first = view.take(PROBE)[0][1]

    # Two more ticks with reads while the first round is in flight: no probes yet.
    view.commit = 11
    reads.request("r2")
    reads.on_tick()
    reads.request("r3")
    reads.on_tick()
    assert view.take(PROBE) == []
    assert outcomes == {}

    # Its acknowledgement answers r1 and sends one round for both of the others, whose
    # index is taken then: after they arrived, never before.
    ack(reads, "b", first)
    view.commit = 12
    reads.on_tick()
    assert outcomes == {"r1": None}
    second = view.take(PROBE)
    assert len(second) == 2 and second[0][1]["round"] == first["round"] + 1

    view.applied = 11
    ack(reads, "c", second[1][1])
    reads.on_tick()
    assert outcomes == {"r1": None}  # their index is 12, not the 11 of their arrival
    view.applied = 12
    reads.on_tick()
    assert outcomes == {"r1": None, "r2": None, "r3": None}
    assert not reads.busy()


def test_follower_keeps_one_request_at_the_leader() -> None:
    follower = FakeView(leader=False)
    reads, outcomes = make(follower)
    reads.request("r1")
    reads.on_tick()
    [(_, first)] = follower.take(INDEX_REQUEST)

    reads.request("r2")
    reads.on_tick()
    reads.request("r3")
    reads.on_tick()
    assert follower.take(INDEX_REQUEST) == []  # they wait for the answer in flight

    reads.on_message("b", {"type": INDEX_RESPONSE, "id": first["id"], "index": 10})
    reads.on_tick()
    assert outcomes == {"r1": None}
    [(to, second)] = follower.take(INDEX_REQUEST)
    assert to == "b" and second["id"] != first["id"]

    reads.on_message("b", {"type": INDEX_RESPONSE, "id": second["id"], "index": 10})
    reads.on_tick()
    assert outcomes == {"r1": None, "r2": None, "r3": None}


def test_reads_waiting_behind_a_request_go_to_the_new_leader() -> None:
    follower = FakeView(leader=False)
    reads, outcomes = make(follower)
    reads.request("r1")
    reads.on_tick()
    follower.take(INDEX_REQUEST)
    reads.request("r2")
    reads.on_tick()

    # The leader changed: the request in flight fails (its reads retry), the waiting read
    # goes to the new leader at once.
    follower.leader_node = "c"
    reads.on_tick()
    assert outcomes == {"r1": ReadFailed("leader_changed")}
    [(to, _)] = follower.take(INDEX_REQUEST)
    assert to == "c"


def test_read_waits_for_an_entry_of_the_leaders_term_and_for_its_index_to_apply() -> None:
    view = FakeView()
    view.own_term_committed = False
    reads, outcomes = make(view)
    reads.request("r1")
    reads.on_tick()
    assert view.take(PROBE) == []  # the commit index may still lag earlier leaders

    view.own_term_committed = True
    view.commit, view.applied = 14, 12
    reads.on_tick()
    probe = view.take(PROBE)[0][1]
    view.commit = 20  # commits after the read began do not raise its index
    ack(reads, "b", probe)
    reads.on_tick()
    assert outcomes == {}  # index 14 is not applied here yet

    view.applied = 14
    reads.on_tick()
    assert outcomes == {"r1": None}


def test_deposed_leader_fails_its_waiting_reads_instead_of_answering() -> None:
    view = FakeView()
    reads, outcomes = make(view)
    reads.request("r1")
    reads.on_tick()
    probe = view.take(PROBE)[0][1]

    # An append of a newer term arrived: pysyncobj stepped down and took the new term.
    view.leading, view.current_term, view.leader_node = False, 4, "b"
    ack(reads, "b", probe)
    ack(reads, "c", probe)
    reads.on_tick()
    assert outcomes == {"r1": ReadFailed("leader_changed")}


def test_peer_acknowledges_only_probes_of_a_term_at_least_its_own() -> None:
    view = FakeView(leader=False)
    reads, _ = make(view)
    reads.on_message("a", {"type": PROBE, "term": 2, "round": 7})
    assert view.take(PROBE_ACK) == []
    reads.on_message("a", {"type": PROBE, "term": 3, "round": 8})
    assert view.take(PROBE_ACK) == [("a", {"type": PROBE_ACK, "term": 3, "round": 8})]


def test_unconfirmed_round_is_probed_again() -> None:
    view = FakeView()
    reads, outcomes = make(view)
    reads.request("r1")
    reads.on_tick()
    first = view.take(PROBE)[0][1]
    time.sleep(PROBE_RETRY_SECONDS * 1.5)
    reads.on_tick()
    second = view.take(PROBE)[0][1]
    assert second["round"] > first["round"]

    ack(reads, "c", second)  # a later round confirms the earlier read too
    reads.on_tick()
    assert outcomes == {"r1": None}


def test_follower_asks_the_leader_and_waits_for_its_own_apply() -> None:
    follower = FakeView(leader=False)
    reads, outcomes = make(follower)
    reads.request("r1")
    reads.request("r2")
    reads.on_tick()
    [(to, asked)] = follower.take(INDEX_REQUEST)
    assert to == "b" and asked["term"] == 3

    # The leader side of the same exchange: in a cluster of three the request is the
    # acknowledgement a majority needs, so it is answered at once, with no round.
    leader = FakeView()
    leader_reads, _ = make(leader)
    leader_reads.on_message("f", asked)
    assert leader.take(PROBE) == []
    [(to, answer)] = leader.take(INDEX_RESPONSE)
    assert to == "f" and answer == {"type": INDEX_RESPONSE, "id": asked["id"], "index": 10}

    follower.applied = 9
    reads.on_message("b", answer)
    reads.on_tick()
    assert outcomes == {}
    follower.applied = 10
    reads.on_tick()
    assert outcomes == {"r1": None, "r2": None}


def answer_after_a_round(leader: FakeView, reads: ReadIndex, request: dict[str, Any],
                         acks_needed: int) -> dict[str, Any]:
    """Deliver a follower's request; check it waits for acks_needed acknowledgements."""
    reads.on_message("f", request)
    reads.on_tick()
    probes = leader.take(PROBE)
    assert probes, "the request should have started a round"
    for node, probe in probes[:acks_needed - 1]:
        ack(reads, node, probe)
    reads.on_tick()
    assert leader.take(INDEX_RESPONSE) == []
    node, probe = probes[acks_needed - 1]
    ack(reads, node, probe)
    reads.on_tick()
    [(_, answer)] = leader.take(INDEX_RESPONSE)
    return answer


def test_a_request_proves_nothing_without_the_leaders_term_or_in_a_larger_cluster() -> None:
    leader = FakeView()
    reads, _ = make(leader)

    for term in (2, 4, None):  # another term, or a node of an earlier version
        request = {"type": INDEX_REQUEST, "id": 1, "term": term}
        if term is None:
            del request["term"]
        assert answer_after_a_round(leader, reads, request, 1)["index"] == 10

    # Five nodes: the leader and the follower are two of the three a majority needs.
    leader.peer_nodes = ["b", "c", "d", "e"]
    request = {"type": INDEX_REQUEST, "id": 2, "term": 3}
    assert answer_after_a_round(leader, reads, request, 2)["index"] == 10


def test_a_request_waits_for_an_entry_of_the_leaders_term() -> None:
    leader = FakeView()
    leader.own_term_committed = False
    reads, _ = make(leader)
    reads.on_message("f", {"type": INDEX_REQUEST, "id": 1, "term": 3})
    reads.on_tick()
    assert leader.take(INDEX_RESPONSE) == []  # the commit index may lag earlier leaders

    leader.own_term_committed = True
    leader.commit = 12
    reads.on_tick()
    ack(reads, "b", leader.take(PROBE)[0][1])
    reads.on_tick()
    assert leader.take(INDEX_RESPONSE) == [
        ("f", {"type": INDEX_RESPONSE, "id": 1, "index": 12})
    ]


def test_follower_read_fails_when_the_leader_changes_or_refuses() -> None:
    follower = FakeView(leader=False)
    reads, outcomes = make(follower)
    reads.request("r1")
    reads.on_tick()
    follower.leader_node = "c"
    reads.on_tick()
    assert outcomes == {"r1": ReadFailed("leader_changed")}

    reads.request("r2")
    reads.on_tick()
    [(_, asked)] = [m for m in follower.sent if m[1]["type"] == INDEX_REQUEST][-1:]
    reads.on_message("c", {"type": INDEX_RESPONSE, "id": asked["id"], "error": "not_leader"})
    assert outcomes["r2"] == ReadFailed("not_leader")

    follower.leader_node = None
    reads.request("r3")
    reads.on_tick()
    assert outcomes["r3"] == ReadFailed("no_leader")


def test_single_node_confirms_its_own_rounds() -> None:
    view = FakeView()
    view.peer_nodes = []
    reads, outcomes = make(view)
    reads.request("r1")
    reads.on_tick()
    assert outcomes == {"r1": None}


# -- the tick's pace ---------------------------------------------------------------------------


class Conf:
    autoTickPeriod = 0.0
    appendEntriesPeriod = 0.0


def test_tick_is_fast_while_there_is_work_and_slows_after_the_linger() -> None:
    conf = Conf()
    work = [False]
    woken: list[bool] = []
    pacer = TickPacer(conf, 0.002, 0.05, 0.05, lambda: work[0], lambda: woken.append(True))
    assert conf.autoTickPeriod == conf.appendEntriesPeriod == 0.002

    pacer.on_tick()
    assert conf.autoTickPeriod == conf.appendEntriesPeriod == 0.05  # idle from the start

    work[0] = True
    pacer.on_tick()
    assert conf.autoTickPeriod == conf.appendEntriesPeriod == 0.002
    assert woken == [True]  # the first append goes out at once

    work[0] = False
    pacer.on_tick()
    assert conf.autoTickPeriod == 0.002  # lingers
    time.sleep(0.06)
    pacer.on_tick()
    assert conf.autoTickPeriod == 0.05


# -- the cipher --------------------------------------------------------------------------------


def test_cipher_round_trips_and_authenticates_secret_and_timestamp() -> None:
    sender, receiver = TransportCipher("secret-1"), TransportCipher("secret-1")
    token = sender.encrypt_at_time(b"append entries", 1234)
    assert receiver.extract_timestamp(token) == 1234
    assert receiver.decrypt(token) == b"append entries"
    assert b"append entries" not in token

    with pytest.raises(InvalidTag):
        TransportCipher("secret-2").decrypt(token)
    moved_in_time = token[:1] + (1235).to_bytes(8, "big") + token[9:]
    with pytest.raises(InvalidTag):
        receiver.decrypt(moved_in_time)
    with pytest.raises(ValueError):
        receiver.decrypt(b"\x02" + token[1:])  # another token version


def test_cipher_never_repeats_a_nonce() -> None:
    cipher = TransportCipher("secret-1")
    nonces = {cipher.encrypt_at_time(b"x", 0)[9:21] for _ in range(1000)}
    other = {TransportCipher("secret-1").encrypt_at_time(b"x", 0)[9:21] for _ in range(10)}
    assert len(nonces) == 1000 and not nonces & other
