"""Where a node's memory goes per key, and what a restart costs (run by hand, not a test).

    .venv/bin/python bench/memory_bench.py [--keys 20000] [--top 12]

Builds a node's state machine in this process as cluster/node.py wires it (ClusterState
under ReplicationState), then creates --keys AES-256 keys through KmipService with the
same Create request `keyquorum bench` sends, committing each command at once (no Raft, no
TLS: what the state itself costs). Then it reports, per key:

- the bytes tracemalloc attributes to the state, and the source lines that hold most;
- the pickled size of a Create command, which the Raft journal keeps in memory and on
  disk until compaction, and of the snapshot;
- the time to restore the snapshot and to re-apply every command, the two halves of a
  restart (pysyncobj loads the dump, then replays the journal after it), with Python's
  cyclic collector running and paused.

`--keys` of 100,000 takes minutes on a loaded machine: the fill alone runs the full
KMIP service per key.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import pickle
import secrets
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager

from keyquorum.cluster.barrier import Keyring
from keyquorum.cluster.cluster_state import ClusterState
from keyquorum.cluster.replication_state import ReplicationState
from keyquorum.cluster.state import DEFAULT_SCOPE
from keyquorum.cluster.tenancy import CreateScope
from keyquorum.kmip.frontend import ClientIdentity
from keyquorum.kmip.loadgen import create_request
from keyquorum.kmip.messages import ResponseMessage, decode_message
from keyquorum.kmip.service import KmipService
from keyquorum.kmip.tables import ResultStatus

CLIENT = ClientIdentity(address="127.0.0.1:1", certificate_serial=1, common_name="bench",
                        certificate_der=b"")


class CommitAtOnce:
    """A one-node log that applies each command at once and keeps it, as a journal would."""

    def __init__(self, root: ReplicationState, state: ClusterState) -> None:
        self.root = root
        self.store = state.keys
        self.journal: list[bytes] = []
        self.keyring = Keyring.generate(secrets.token_bytes(32))

    async def submit(self, command: object) -> object:
        self.journal.append(pickle.dumps(command, protocol=pickle.HIGHEST_PROTOCOL))
        return self.root.apply(command)

    async def read_barrier(self) -> None:
        return None

    def seal_material(self, plaintext: bytes, associated_data: bytes) -> bytes:
        return self.keyring.encrypt(plaintext, associated_data)

    def open_material(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        return self.keyring.decrypt(ciphertext, associated_data)


@contextmanager
def timed(what: str, per: int) -> Iterator[None]:
    started = time.perf_counter()
    yield
    seconds = time.perf_counter() - started
    print(f"{what}: {seconds:.2f} s ({1e6 * seconds / per:,.0f} us per key)")


def filled_state(keys: int) -> CommitAtOnce:
    """A node's state machine with the default scope and, unless keys is 0, the keys."""
    state = ClusterState()
    root = ReplicationState(state)
    root.apply(CreateScope(DEFAULT_SCOPE, 0))  # as `keyquorum dev` does for its client
    log = CommitAtOnce(root, state)
    if keys:
        with timed(f"created {keys:,} keys through KmipService", keys):
            asyncio.run(fill(log, keys))
    return log


async def fill(log: CommitAtOnce, keys: int) -> None:
    service = KmipService(log)  # type: ignore[arg-type]
    request = create_request()
    for _ in range(keys - 1):
        await service.handle(request, CLIENT)
    response = decode_message(await service.handle(request, CLIENT))
    assert isinstance(response, ResponseMessage)
    if response.batch_items[0].result_status != ResultStatus.SUCCESS:
        raise SystemExit(f"Create failed: {response.batch_items[0].result_message}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=20_000)
    parser.add_argument("--traced-keys", type=int, default=2_000,
                        help="keys created under tracemalloc, which slows them down")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()

    # Where the memory goes, on a smaller fill: tracemalloc makes every allocation slow.
    traced = filled_state(1)
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    asyncio.run(fill(traced, args.traced_keys))
    # What grows without bound: not the journal (compaction cuts it) nor the changelog of
    # replication_state (its last CHANGELOG_SIZE commands), which a small fill is all of.
    journal_bytes = sum(len(entry) for entry in traced.journal)
    changelog = len(traced.root._changelog)
    traced.journal.clear()
    traced.root._changelog.clear()
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = after.compare_to(before, "lineno")
    grown = sum(stat.size_diff for stat in stats)
    print(f"traced growth over {args.traced_keys:,} keys, journal and changelog left out: "
          f"{grown / args.traced_keys:,.0f} bytes per key (the journal holds "
          f"{journal_bytes / args.traced_keys:,.0f} per Create until compaction, the "
          f"changelog {changelog:,} commands)")
    for stat in stats[: args.top]:
        frame = stat.traceback[0]
        print(f"  {stat.size_diff / args.traced_keys:8,.0f} B/key  {stat.count_diff:9,d} "
              f"blocks  {frame.filename.rsplit('/', 2)[-1]}:{frame.lineno}")
    del traced

    log = filled_state(args.keys)
    root = log.root

    with timed("snapshot", args.keys):
        snapshot = root.snapshot()
    journal_bytes = sum(len(entry) for entry in log.journal)
    print(f"snapshot: {len(snapshot) / args.keys:,.0f} bytes per key; "
          f"journal: {journal_bytes / args.keys:,.0f} bytes per Create command")

    # cluster/raft.py pauses the collector for both (collector.py, CollectorPause); each is timed
    # with it running and paused.
    for collector in ("running", "paused"):
        if collector == "paused":
            gc.disable()
        with timed(f"restore from the snapshot, collector {collector}", args.keys):
            ReplicationState(ClusterState()).restore(snapshot)

        replayed = ReplicationState(ClusterState())
        replayed.apply(CreateScope(DEFAULT_SCOPE, 0))
        with timed(f"replay of the journal (unpickle and apply), collector {collector}",
                   args.keys):
            for entry in log.journal:
                replayed.apply(pickle.loads(entry))
        del replayed
        gc.enable()
        gc.collect()


if __name__ == "__main__":
    main()
