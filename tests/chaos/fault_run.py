"""A seeded fault run: concurrent KMIP clients through every node while faults hit.

Theory of operation
===================

Clients (threads in the hub namespace, chaos/netns_cluster.py) loop over a seeded
mix of Create, Register, Activate, Revoke, Destroy, Add Attribute, Get, Get
Attributes and Locate, each on a new TLS connection to a node the seed picks, and
record every operation in the history of the object it touched: invocation time,
answer time and answer, or no answer (chaos/kmip_client.py says which answers leave
the outcome unknown). Objects are named by the client that creates them; the other
clients work on the last few acknowledged ones, so several clients hit one object
at once, and an object is retired after ``OPERATIONS_PER_OBJECT`` operations so that
every history stays small enough to check.

Meanwhile the nemesis injects the faults of the seed's schedule one after another,
each held for a few seconds and then healed: leader kill, follower kill, pause
(SIGSTOP, then SIGCONT), partition of the leader from the others, a 2+1 partition
around a random node, full restart (every node killed, then started again).

At the end the cluster is healed and left to settle for longer than a node's commit
timeout, so that no write is still in flight; an unanswered write either happened
before then or never. Then every object is read on every node (Locate by name and
Get Attributes), and those reads join the histories. The checks:

- each object's history is linearizable for the model of chaos/object_model.py, so
  no acknowledged write was lost or applied twice, and no read saw a stale state;
- each acknowledged Create or Register is found exactly once, under its identifier,
  on every node; an unanswered one at most once;
- life-cycle states seen by reads never go backwards in real time;
- every Get of an object returned the same key bytes, the registered ones for a
  Register.

What the seed fixes: the fault schedule, the targets where the seed chooses, each
client's choice of operations, nodes and objects. What it cannot fix: thread timing
and which node wins an election, so a seed replays the same experiment, not the same
history.
"""

from __future__ import annotations

import os
import random
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from chaos.kmip_client import UNKNOWN, Answer, KmipSession
from chaos.linearizability import Operation
from chaos.netns_cluster import NetnsCluster
from chaos.object_model import WRITES, backwards_steps, check_object

FAULT_KINDS = ("leader_kill", "follower_kill", "pause", "partition_leader", "partition_2_1",
               "full_restart")
CLIENTS = 6
# A client's request gives up after this long: past a node's own commit timeout
# (10 s) would only make clients wait on a paused node.
REQUEST_TIMEOUT_SECONDS = 5.0
# The objects clients pick from: the newest few, so that clients collide on them.
WORKING_SET = 6
# Keeps each history checkable in milliseconds (the search grows with overlap).
OPERATIONS_PER_OBJECT = 24
# After healing, longer than a node's commit timeout plus a retry, so that every
# write still in flight has committed or been dropped.
SETTLE_SECONDS = 12.0
# How long after healing a fault's unavailability is still counted against it.
RECOVERY_WINDOW_SECONDS = 15.0
# A client's pause after a request without an answer.
UNKNOWN_BACKOFF_SECONDS = 0.2
# Objects read back per request message at the end.
FINAL_BATCH = 50

_MIX = (("create", 4), ("register", 3), ("activate", 10), ("revoke", 8), ("destroy", 6),
        ("add_attribute", 16), ("get", 14), ("get_attributes", 20), ("locate", 10))


@dataclass(frozen=True)
class RunConfig:
    seed: int
    duration_seconds: float
    faults: tuple[str, ...] = FAULT_KINDS
    hold_seconds: tuple[float, float] = (3.0, 6.0)
    calm_seconds: tuple[float, float] = (1.5, 3.0)


@dataclass
class FaultRecord:
    kind: str
    target: str
    injected: float
    healed: float = 0.0
    # The longest time without an acknowledged write, from injection to the end of
    # the recovery window.
    unavailable_seconds: float = 0.0


@dataclass
class ObjectRecord:
    name: str
    creator: int
    kind: str  # create or register
    uid: str | None = None
    material: bytes | None = None
    acknowledged: bool = False
    history: list[Operation] = field(default_factory=list)
    # Every key value a Get returned, and the uids the final Locates returned per node.
    served: set[bytes] = field(default_factory=set)
    located: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class RunResult:
    seed: int
    duration_seconds: float
    operations: Counter[str]
    outcomes: Counter[str]
    faults: list[FaultRecord]
    objects: int
    histories_checked: int
    search_states: int
    violations: list[str]

    @property
    def ok(self) -> bool:
        return not self.violations


class _World:
    """What the clients share: objects by name, the working set, acknowledged writes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[str, ObjectRecord] = {}
        self.working: list[str] = []
        self.write_times: list[float] = []
        self.counts: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.client_errors: list[str] = []

    def record(self, obj: ObjectRecord, op: Operation) -> None:
        with self.lock:
            obj.history.append(op)
            self.counts[op.kind] += 1
            self.outcomes["unknown" if op.completed is None else str(op.result)[:20]] += 1
            if op.kind in WRITES and op.result == "ok":
                self.write_times.append(op.completed or 0.0)
            if obj.name in self.working and len(obj.history) >= OPERATIONS_PER_OBJECT:
                self.working.remove(obj.name)


def run_faults(cluster: NetnsCluster, config: RunConfig) -> RunResult:
    """Run the workload and the nemesis for the configured time; check what happened."""
    world = _World()
    stop = threading.Event()
    faults: list[FaultRecord] = []
    started = time.monotonic()

    # First the clients and the nemesis, for the configured time.
    clients = [threading.Thread(target=_client, args=(cluster, world, config.seed, number, stop),
                                name=f"chaos-client-{number}", daemon=True)
               for number in range(CLIENTS)]
    for thread in clients:
        thread.start()
    try:
        _nemesis(cluster, config, faults, started)
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=REQUEST_TIMEOUT_SECONDS * 3)

    # Then heal everything and let writes in flight finish; unanswered writes after
    # this point never happened.
    _heal_all(cluster)
    cluster.leader(timeout=30)
    time.sleep(SETTLE_SECONDS)
    settled = time.monotonic()
    for obj in world.objects.values():
        obj.history = [op if op.completed is not None else
                       Operation(op.process, op.invoked, None, op.kind, op.argument, None,
                                 deadline=settled) for op in obj.history]

    # Then read everything back on every node, and check.
    _final_reads(cluster, world)
    # Each fault owns the time until the next one begins, at most the recovery window.
    ends = [fault.injected for fault in faults[1:]] + [settled]
    for fault, next_begins in zip(faults, ends, strict=True):
        end = min(fault.healed + RECOVERY_WINDOW_SECONDS, next_begins)
        fault.unavailable_seconds = _longest_gap(world.write_times, fault.injected, end)
    violations, states = _check(world)
    violations += [f"the test's client failed: {error}" for error in world.client_errors[:5]]
    return RunResult(seed=config.seed, duration_seconds=time.monotonic() - started,
                     operations=world.counts, outcomes=world.outcomes, faults=faults,
                     objects=len(world.objects), histories_checked=len(world.objects),
                     search_states=states, violations=violations)


# The clients.


def _client(cluster: NetnsCluster, world: _World, seed: int, number: int,
            stop: threading.Event) -> None:
    rng = random.Random(f"{seed}-client-{number}")
    kinds = [kind for kind, _ in _MIX]
    weights = [weight for _, weight in _MIX]
    created = 0
    with cluster.client_side():
        context = cluster.tls_context()
        while not stop.is_set():
            node = cluster.nodes[rng.choice(sorted(cluster.nodes))]
            kind = rng.choices(kinds, weights)[0]
            with world.lock:
                working = list(world.working)
                everything = list(world.objects)
            if kind not in ("create", "register") and not working:
                kind = "create"
            session = KmipSession(node.address, context, REQUEST_TIMEOUT_SECONDS)
            with session:
                if kind in ("create", "register"):
                    created += 1
                    _create(world, session, number, f"chaos-{seed}-{number}-{created}", kind,
                            rng)
                elif kind == "locate":
                    target = world.objects[rng.choice(everything)]
                    name = target.name
                    _operate(world, target, number, kind, None,
                             lambda _, s=session, n=name: s.locate(n))
                else:
                    _on_object(world, session, number, kind, world.objects[rng.choice(working)],
                               rng)
            if kind not in ("create", "register") and not working:
                time.sleep(0.01)


def _create(world: _World, session: KmipSession, number: int, name: str, kind: str,
            rng: random.Random) -> None:
    material = rng.randbytes(32) if kind == "register" else None
    obj = ObjectRecord(name, number, kind, material=material)
    with world.lock:
        world.objects[name] = obj

    def call(argument: object) -> Answer:
        if material is None:
            return session.create(name)
        return session.register(name, material)

    answer = _operate(world, obj, number, "create", None, call)
    if answer.result == "ok":
        with world.lock:
            obj.uid, obj.acknowledged = answer.uid, True
            world.working.append(name)
            del world.working[:-WORKING_SET]


def _on_object(world: _World, session: KmipSession, number: int, kind: str, obj: ObjectRecord,
               rng: random.Random) -> None:
    assert obj.uid is not None
    uid = obj.uid
    if kind == "add_attribute":
        value = f"{number}-{rng.randrange(1 << 30):x}"
        _operate(world, obj, number, kind, value, lambda v: session.add_attribute(uid, str(v)))
        return
    calls: dict[str, Callable[[object], Answer]] = {
        "activate": lambda _: session.activate(uid),
        "revoke": lambda _: session.revoke(uid),
        "destroy": lambda _: session.destroy(uid),
        "get": lambda _: session.get(uid),
        "get_attributes": lambda _: session.get_attributes(uid),
    }
    answer = _operate(world, obj, number, kind, None, calls[kind])
    if answer.material is not None:
        with world.lock:
            obj.served.add(answer.material)


def _operate(world: _World, obj: ObjectRecord, process: int, kind: str, argument: object,
             call: Callable[[object], Answer]) -> Answer:
    invoked = time.monotonic()
    try:
        answer = call(argument)
    except Exception as error:  # a bug of the test's client: reported as a violation
        with world.lock:
            world.client_errors.append(f"{kind}: {traceback.format_exc(limit=-3)}")
        answer = Answer(f"client-error:{type(error).__name__}")
    completed = time.monotonic()
    if answer is UNKNOWN or answer.result is None:
        # A client that heard nothing waits a moment before its next request, as
        # real clients back off; it would otherwise spin on a node that is down.
        time.sleep(UNKNOWN_BACKOFF_SECONDS)
        if kind in WRITES:  # a read without an answer changed nothing: leave it out
            world.record(obj, Operation(process, invoked, None, kind, argument, None))
        else:
            with world.lock:
                world.outcomes["unknown"] += 1
        return UNKNOWN
    world.record(obj, Operation(process, invoked, completed, kind, argument, answer.result))
    return answer


# The nemesis.


def _nemesis(cluster: NetnsCluster, config: RunConfig, faults: list[FaultRecord],
             started: float) -> None:
    rng = random.Random(f"{config.seed}-nemesis")
    schedule = list(config.faults)
    rng.shuffle(schedule)
    while time.monotonic() - started < config.duration_seconds:
        time.sleep(rng.uniform(*config.calm_seconds))
        if not schedule:
            schedule = list(config.faults)
            rng.shuffle(schedule)
        kind = schedule.pop()
        record = _inject(cluster, kind, rng)
        faults.append(record)
        time.sleep(rng.uniform(*config.hold_seconds))
        _heal(cluster, record)
        record.healed = time.monotonic()
        # The next fault waits for a leader, so faults do not pile up on a cluster
        # that has not recovered from the last one.
        try:
            cluster.leader(timeout=30)
        except TimeoutError:
            pass


def _inject(cluster: NetnsCluster, kind: str, rng: random.Random) -> FaultRecord:
    node_ids = sorted(cluster.nodes)
    try:
        leader = cluster.leader(timeout=5)
    except TimeoutError:
        leader = rng.choice(node_ids)
    followers = [node_id for node_id in node_ids if node_id != leader]
    target = {"leader_kill": leader, "partition_leader": leader,
              "follower_kill": rng.choice(followers), "pause": rng.choice(node_ids),
              "partition_2_1": rng.choice(node_ids), "full_restart": "all"}[kind]
    injected = time.monotonic()
    if kind in ("leader_kill", "follower_kill"):
        cluster.kill(target)
    elif kind == "pause":
        cluster.pause(target)
    elif kind in ("partition_leader", "partition_2_1"):
        cluster.isolate(target)
    else:
        for node_id in node_ids:
            cluster.kill(node_id)
    return FaultRecord(kind, target, injected)


def _heal(cluster: NetnsCluster, record: FaultRecord) -> None:
    if record.kind in ("leader_kill", "follower_kill"):
        cluster.restart(record.target, wait=False)
    elif record.kind == "pause":
        cluster.resume(record.target)
    elif record.kind in ("partition_leader", "partition_2_1"):
        cluster.heal()
    else:
        for node_id in sorted(cluster.nodes):
            cluster.restart(node_id, wait=False)


def _heal_all(cluster: NetnsCluster) -> None:
    cluster.heal()
    for node_id, node in cluster.nodes.items():
        if node.process is None or node.process.poll() is not None:
            cluster.restart(node_id, wait=False)
        else:
            cluster.resume(node_id)


# The end: read everything back, then check.


def _final_reads(cluster: NetnsCluster, world: _World) -> None:
    # Batches of Locates, then of Get Attributes: one read barrier per batch keeps
    # reading thousands of objects on three nodes to seconds.
    objects = list(world.objects.values())
    with cluster.client_side():
        context = cluster.tls_context()
        for index, node_id in enumerate(sorted(cluster.nodes)):
            process = 1000 + index
            with KmipSession(cluster.nodes[node_id].address, context, 30.0) as session:
                for start in range(0, len(objects), FINAL_BATCH):
                    chunk = objects[start:start + FINAL_BATCH]
                    invoked = time.monotonic()
                    located = session.locate_many([obj.name for obj in chunk])
                    for obj, answer in zip(chunk, located, strict=True):
                        _final(obj, process, invoked, "locate", answer)
                        obj.located[node_id] = answer.uids
                    known = [(obj, obj.uid or (obj.located[node_id] or (None,))[0])
                             for obj in chunk]
                    known = [(obj, uid) for obj, uid in known if uid is not None]
                    invoked = time.monotonic()
                    answers = session.get_attributes_many([str(uid) for _, uid in known])
                    for (obj, _), answer in zip(known, answers, strict=True):
                        _final(obj, process, invoked, "get_attributes", answer)


def _final(obj: ObjectRecord, process: int, invoked: float, kind: str, answer: Answer) -> None:
    # A final read without an answer is itself a finding: the cluster was healed.
    result = "no answer" if answer.result is None else answer.result
    obj.history.append(Operation(process, invoked, time.monotonic(), kind, None, result))


def _check(world: _World) -> tuple[list[str], int]:
    violations = []
    states = 0
    for obj in world.objects.values():
        verdict = check_object(obj.history)
        states += verdict.states
        if not verdict.ok:
            what = "unchecked (search budget)" if verdict.exhausted else "not linearizable"
            violations.append(f"{obj.name}: {what} ({verdict.part})\n"
                              + _excerpt(obj.history))
        for first, second in backwards_steps(obj.history):
            violations.append(f"{obj.name}: state went back from {first.result} to "
                              f"{second.result}")
        violations += _presence(obj)
        if len(obj.served) > 1 or (obj.material is not None and obj.served - {obj.material}):
            violations.append(f"{obj.name}: Get served {len(obj.served)} different key values")
    return violations, states


def _presence(obj: ObjectRecord) -> list[str]:
    """An acknowledged object is on every node once; an unanswered one at most once.

    Presence is read by identifier (the final Get Attributes, which must find it)
    and by name (the final Locate): more than one identifier under one name is a
    duplicated Create. A destroyed object may be missing from a Locate by name
    (chaos/object_model.py says why), never from a Get Attributes.
    """
    found = []
    final_states = {op.process: op.result for op in obj.history
                    if op.process >= 1000 and op.kind == "get_attributes"}
    for index, (node_id, uids) in enumerate(sorted(obj.located.items())):
        state = final_states.get(1000 + index)
        destroyed = isinstance(state, tuple) and state[0] == "destroyed"
        if len(uids) > 1:
            found.append(f"{obj.name}: {node_id} has it {len(uids)} times: {uids}")
        elif obj.acknowledged and not isinstance(state, tuple):
            found.append(f"{obj.name}: acknowledged as {obj.uid}, {node_id} answers {state}")
        elif obj.acknowledged and uids != (obj.uid,) and not (destroyed and uids == ()):
            found.append(f"{obj.name}: acknowledged as {obj.uid}, {node_id} locates {uids}")
    return found


def _excerpt(history: list[Operation]) -> str:
    start = min(op.invoked for op in history)
    lines = []
    for op in sorted(history, key=lambda op: op.invoked):
        done = "..." if op.completed is None else f"{op.completed - start:8.3f}"
        lines.append(f"  p{op.process:<4} {op.invoked - start:8.3f} {done:>8} {op.kind:<15}"
                     f" {op.argument!s:<14} -> {op.result}")
    return "\n".join(lines)


def _longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest stretch of [start, end] that began a wait for the next write."""
    inside = sorted(t for t in times if start <= t <= end)
    if not inside:
        return end - start
    points = [start, *inside]
    return max(later - earlier for earlier, later in zip(points, points[1:], strict=False))


def seeds_from_environment(default: tuple[int, ...]) -> tuple[int, ...]:
    """KEYQUORUM_CHAOS_SEEDS="7,8" replays chosen seeds."""
    text = os.environ.get("KEYQUORUM_CHAOS_SEEDS", "")
    return tuple(int(part) for part in text.split(",") if part.strip()) or default
