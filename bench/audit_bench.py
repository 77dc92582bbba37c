"""What auditing costs: requests per second with and without a file audit device.

One 3-node dev cluster (tests/harness.py) on 127.0.0.1. For each operation the same
load (kmip/loadgen.py, connections spread over the three nodes) runs with no audit
device, then with the file device "bench" enabled on every node, alternating
``--repeats`` times so that drift on a shared machine falls on both sides alike. The
table gives the median rate of each side, the spread, and their ratio.

Usage: python bench/audit_bench.py [--duration S] [--repeats N] [--connections N]
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

from keyquorum.kmip.loadgen import LoadOptions, prepare, run_load

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from harness import Cluster  # noqa: E402  (the tests' cluster harness)

OPERATIONS = ("get", "create")


def call(cluster: Cluster, token: str, method: str, path: str, body: object = None) -> None:
    context = ssl.create_default_context(cafile=str(cluster.ca))
    request = urllib.request.Request(
        cluster.nodes["node-1"].api + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"X-Keyquorum-Token": token, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=context, timeout=30):
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=12)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        cluster = Cluster(Path(scratch) / "cluster")
        cluster.start()
        try:
            token = (cluster.directory / "secrets" / "admin-token").read_text().strip()
            servers = tuple((node.kmip_host, node.kmip_port) for node in cluster.nodes.values())
            rates: dict[tuple[str, bool], list[float]] = {}
            for op in OPERATIONS:
                options = LoadOptions(servers=servers, ca=cluster.ca, cert=cluster.client_cert,
                                      key=cluster.client_key, op=op,
                                      connections=args.connections,
                                      duration_seconds=args.duration)
                keys = prepare(options)
                for _ in range(args.repeats):
                    for audited in (False, True):
                        if audited:
                            call(cluster, token, "POST", "/v1/sys/audit/bench",
                                 {"type": "file", "options": {"path": "audit/bench.log"}})
                        report = run_load(options, keys=keys)
                        if audited:
                            call(cluster, token, "DELETE", "/v1/sys/audit/bench")
                        assert not report.errors, report.errors
                        rates.setdefault((op, audited), []).append(report.throughput)
                        print(f"{op:7} audited={audited!s:5} {report.throughput:8.0f} req/s",
                              flush=True)
        finally:
            cluster.stop()

    print()
    print("| operation | no device (req/s) | file device (req/s) | ratio |")
    print("| --- | --- | --- | --- |")
    for op in OPERATIONS:
        plain, logged = rates[(op, False)], rates[(op, True)]
        print(f"| {op} | {statistics.median(plain):.0f} ({min(plain):.0f}-{max(plain):.0f}) "
              f"| {statistics.median(logged):.0f} ({min(logged):.0f}-{max(logged):.0f}) "
              f"| {statistics.median(logged) / statistics.median(plain):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
