"""Side-by-side micro-benchmark of the replicated log's hot paths (run by hand, not a test).

    .venv/bin/python bench/raft_bench.py [--repeats 3] [--count 3000] [--variants a,b]

Each variant is a 3-node cluster of tests/cluster/raft_node.py processes on 127.0.0.1
(a key/value state machine, no KMIP) started with its own flags. Variants take turns,
one cluster at a time, for --repeats rounds, so that a machine shared with other work
loads every variant alike; the table gives the median and the min-max of the rounds.
Per cluster it measures:

- idle: CPU of the three nodes over --idle-seconds with no requests (% of one core);
- read: --readers concurrent linearizable reads inside the leader, then a follower;
- write: --writers concurrent commits inside the leader, then a follower;

with the CPU of all three nodes per operation beside each rate.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NODE_SCRIPT = Path(__file__).parent.parent / "tests" / "cluster" / "raft_node.py"

# Name -> raft_node.py flags. "old" is the log as it was before ReadIndex, the idle tick
# and AES-GCM; each other variant lifts one change, "new" is all of them.
VARIANTS: dict[str, list[str]] = {
    "old": ["--reads-through-log", "--idle-tick", "0.002", "--fernet"],
    "read-index": ["--idle-tick", "0.002", "--fernet"],
    "idle-tick": ["--reads-through-log", "--fernet"],
    "aes-gcm": ["--reads-through-log", "--idle-tick", "0.002"],
    "new": [],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def request(control_port: int, **fields: Any) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", control_port), timeout=300) as s:
        s.sendall(json.dumps(fields).encode() + b"\n")
        with s.makefile() as reader:
            reply: dict[str, Any] = json.loads(reader.readline())
    return reply


class LocalCluster:
    def __init__(self, flags: list[str], directory: str) -> None:
        addresses = [f"127.0.0.1:{free_port()}" for _ in range(3)]
        self.procs = [
            subprocess.Popen(
                [sys.executable, str(NODE_SCRIPT), "--self-address", address,
                 "--peers", ",".join(addresses), "--data-dir", f"{directory}/node{i}",
                 "--password", "bench-secret", *flags],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )
            for i, address in enumerate(addresses)
        ]
        self.controls = [int(p.stdout.readline().split()[1]) for p in self.procs]  # type: ignore[union-attr]

    def roles(self) -> tuple[int, int]:
        """The leader's control port and a follower's, once a leader is elected."""
        while True:
            roles = [request(c, op="status")["status"]["role"] for c in self.controls]
            if "leader" in roles:
                leader = self.controls[roles.index("leader")]
                return leader, next(c for c in self.controls if c != leader)
            time.sleep(0.05)

    def cpu(self) -> float:
        return sum(request(c, op="cpu")["seconds"] for c in self.controls)

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
            p.stdout.close()  # type: ignore[union-attr]


def measure(flags: list[str], args: argparse.Namespace) -> dict[str, float]:
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as directory:
        cluster = LocalCluster(flags, directory)
        try:
            leader, follower = cluster.roles()
            request(leader, op="submit", command=["set", "k", 1], request_id="warm-up")
            time.sleep(1.0)  # let the first appends and the fast tick's linger settle

            before = cluster.cpu()
            time.sleep(args.idle_seconds)
            results["idle CPU %"] = 100 * (cluster.cpu() - before) / args.idle_seconds

            for where, control in (("leader", leader), ("follower", follower)):
                for op, fields in (
                    ("read", {"op": "read_load", "readers": args.readers}),
                    ("write", {"op": "load", "writers": args.writers, "prefix": where}),
                ):
                    before = cluster.cpu()
                    reply = request(control, count=args.count, **fields)
                    cpu = cluster.cpu() - before
                    name = f"{op} via {where}"
                    results[f"{name} /s"] = args.count / reply["seconds"]
                    results[f"{name} p99 ms"] = 1000 * reply["latency"].get("p99", float("nan"))
                    results[f"{name} CPU us/op"] = 1e6 * cpu / args.count
                    if reply["failures"]:
                        print(f"  {name}: failures {reply['failures']}", file=sys.stderr)
        finally:
            cluster.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--readers", type=int, default=32)
    parser.add_argument("--writers", type=int, default=32)
    parser.add_argument("--idle-seconds", type=float, default=3.0)
    parser.add_argument("--variants", default="old,new",
                        help=f"comma-separated, of: {', '.join(VARIANTS)}")
    args = parser.parse_args()
    names = args.variants.split(",")

    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for round_number in range(args.repeats):
        for name in names:
            print(f"round {round_number + 1}: {name}", file=sys.stderr, flush=True)
            runs[name].append(measure(VARIANTS[name], args))

    metrics = list(runs[names[0]][0])
    print("| measure | " + " | ".join(names) + " |")
    print("| --- |" + " ---: |" * len(names))
    for metric in metrics:
        cells = []
        for name in names:
            values = [run[metric] for run in runs[name]]
            cells.append(f"{statistics.median(values):,.1f} ({min(values):,.1f}-"
                         f"{max(values):,.1f})")
        print(f"| {metric} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
