"""Benchmark (run by hand, not a test): committed writes per second on a local 3-node cluster.

    .venv/bin/python tests/cluster/raft_bench.py [--writers 32] [--count 6000]

Starts three raft_node.py processes on 127.0.0.1 in a temporary directory, then has 32
concurrent writers inside the leader, and then inside a follower (forwarding to the
leader), each submit a distinct ("set", key, n) and wait for it to be applied locally.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NODE_SCRIPT = Path(__file__).parent / "raft_node.py"


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writers", type=int, default=32)
    parser.add_argument("--count", type=int, default=6000)
    args = parser.parse_args()

    addresses = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for i, address in enumerate(addresses):
            procs.append(subprocess.Popen(
                [sys.executable, str(NODE_SCRIPT), "--self-address", address,
                 "--peers", ",".join(addresses), "--data-dir", f"{tmp}/node{i}",
                 "--password", "bench-secret"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            ))
        try:
            controls = [int(p.stdout.readline().split()[1]) for p in procs]  # type: ignore[union-attr]
            leader = None
            while leader is None:
                roles = [request(c, op="status")["status"]["role"] for c in controls]
                leader = controls[roles.index("leader")] if "leader" in roles else None
                time.sleep(0.05)
            follower = next(c for c in controls if c != leader)

            for name, control in (("leader", leader), ("follower", follower)):
                result = request(control, op="load", writers=args.writers,
                                 count=args.count, prefix=name)
                rate = args.count / result["seconds"]
                print(f"{name:9s} {args.writers} writers: {rate:7.0f} writes/s "
                      f"({args.count} in {result['seconds']:.2f} s, failures "
                      f"{result['failures'] or 'none'}, latency {result['latency']})")
        finally:
            for p in procs:
                p.kill()
                p.wait()
                p.stdout.close()  # type: ignore[union-attr]


if __name__ == "__main__":
    main()
