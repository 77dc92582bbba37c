"""Replication lag under a steady Create load on the primary (`make bench-replication`).

Two 3-node dev clusters on 127.0.0.1 (tests/harness.py): a primary and a performance
secondary attached to it with an activation token, as the operator flow does. Then
Creates at a fixed rate on the primary (kmip/loadgen.py, paced, connections spread
over the primary's nodes) while the secondary's status is read a few times a second.

Two figures, both from the secondary's leader:

- **apply lag** (ms): for each change, the secondary's wall clock when its own log
  committed the run holding that change, minus the primary leader's when it applied
  it (``applied_at_ms`` in the stream). Both clusters share this machine's clock, so
  no clock skew enters; across datacenters it would.
- **sequence lag**: how many changes the secondary was behind the primary, a few
  times a second: the primary's sequence read first, then the secondary's at once (a
  change the secondary applies between the two reads is not counted, so this is a
  lower bound; reading in the other order would count the reads' own time instead).

Each rate gets a fresh pair of clusters, so one rate's backlog does not count in the
next one's figures. The machine's load average is recorded beside them: on a shared
machine the six node processes compete with everything else for the cores.

Writes the section between the markers in docs/replication.md and the raw figures to
docs/replication-bench.json.

Usage: python bench/replication_bench.py [--rates N,N] [--duration S] [--connections N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import ssl
import statistics
import sys
import tempfile
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keyquorum.kmip.loadgen import LoadOptions, run_load

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from harness import Cluster, wait_for  # noqa: E402  (the tests' cluster harness)

DOCS = ROOT / "docs"
BEGIN = "<!-- bench-replication:begin (written by make bench-replication) -->"
END = "<!-- bench-replication:end -->"


class Dc:
    """One cluster and its replication API."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        info = json.loads((cluster.directory / "cluster.json").read_text())
        self.token = info["admin_token"]
        self.context = ssl.create_default_context(cafile=str(cluster.ca))

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             node_id: str | None = None) -> Any:
        node = self.cluster.nodes[node_id or self.cluster.leader()]
        request = urllib.request.Request(
            node.api + "/v1/sys/replication/" + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"X-Keyquorum-Token": self.token, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, context=self.context, timeout=30) as response:
            return json.loads(response.read())


def start(root: Path, name: str, root_key: Path | None = None) -> Dc:
    directory = root / name
    if root_key is not None:
        (directory / "secrets").mkdir(parents=True)
        shutil.copy(root_key, directory / "secrets" / "root-key")
    cluster = Cluster(directory)
    cluster.start()
    return Dc(cluster)


def percentile(samples: list[int], fraction: float) -> int:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(args: argparse.Namespace, rate: float, root: Path) -> dict[str, Any]:
    primary = start(root, "primary")
    secondary = start(root, "secondary", root / "primary" / "secrets" / "root-key")
    try:
        # First the link, as an operator makes it.
        primary.call("POST", "primary/enable", {"cluster_id": "bench"})
        wait_for(lambda: len(primary.call("GET", "status")["addresses"]) == 3, 30,
                 "announced addresses")
        token = primary.call("POST", "primary/secondary-token",
                             {"secondary_id": "bench", "kind": "performance"})["token"]
        secondary.call("POST", "performance/secondary/enable", {"token": token})
        wait_for(lambda: secondary.call("GET", "status")["sequence"]
                 == primary.call("GET", "status")["sequence"], 60, "the first snapshot")

        # Then the steady load, reading the secondary's lag a few times a second.
        sequence_lag: list[int] = []

        # The leaders once, so that a sample is two quick reads and no leader search.
        leaders = primary.cluster.leader(), secondary.cluster.leader()

        def sample(elapsed: float, done: int) -> None:
            ahead = primary.call("GET", "status", node_id=leaders[0])["sequence"]
            behind = secondary.call("GET", "status", node_id=leaders[1])["sequence"]
            sequence_lag.append(max(0, ahead - behind))

        cluster = primary.cluster
        report = run_load(LoadOptions(
            servers=tuple((node.kmip_host, node.kmip_port) for node in cluster.nodes.values()),
            ca=cluster.ca, cert=cluster.client_cert, key=cluster.client_key, op="create",
            connections=args.connections, duration_seconds=args.duration, rate=rate),
            progress=sample)

        # The secondary catches up; its leader kept one apply-lag sample per change.
        wait_for(lambda: secondary.call("GET", "status")["lag_sequences"] == 0, 60,
                 "the secondary to catch up")
        final = secondary.call("GET", "status")
        return {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                       f"Python {platform.python_version()}",
            "load_average_1m": round(os.getloadavg()[0], 1),
            "rate_asked": rate, "duration_seconds": args.duration,
            "connections": args.connections,
            "creates_acknowledged": report.succeeded, "create_errors": report.errors,
            "create_throughput": round(report.throughput, 1),
            "create_latency_ms": report.latency_ms,
            "apply_lag_ms_p50": final["apply_lag_ms_p50"],
            "apply_lag_ms_p99": final["apply_lag_ms_p99"],
            "sequence_lag_p50": percentile(sequence_lag, 0.50) if sequence_lag else None,
            "sequence_lag_p99": percentile(sequence_lag, 0.99) if sequence_lag else None,
            "sequence_lag_max": max(sequence_lag) if sequence_lag else None,
            "sequence_lag_mean": round(statistics.fmean(sequence_lag), 2) if sequence_lag
            else None,
            "status_reads": len(sequence_lag),
        }
    finally:
        secondary.cluster.stop()
        primary.cluster.stop()


def write_docs(results: list[dict[str, Any]]) -> None:
    (DOCS / "replication-bench.json").write_text(json.dumps(results, indent=2) + "\n")
    first = results[0]
    lines = [
        BEGIN,
        f"Measured {first['when']} on {first['machine']}, shared with other work (load "
        f"average below), {first['duration_seconds']:.0f} s of Creates per rate over "
        f"{first['connections']} connections to the primary's three nodes.",
        "",
        "| Creates/s asked | acknowledged (/s) | Create p50 / p99 | apply lag p50 / p99 "
        "| sequence lag p50 / p99 / max | load average |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        latency = result["create_latency_ms"]
        lines.append(
            f"| {result['rate_asked']:.0f} | {result['creates_acknowledged']} "
            f"({result['create_throughput']}) | {latency['p50']:.0f} ms / "
            f"{latency['p99']:.0f} ms | {result['apply_lag_ms_p50']} ms / "
            f"{result['apply_lag_ms_p99']} ms | {result['sequence_lag_p50']} / "
            f"{result['sequence_lag_p99']} / {result['sequence_lag_max']} "
            f"| {result['load_average_1m']} |")
    lines.append(END)
    path = DOCS / "replication.md"
    text = path.read_text()
    section = "\n".join(lines)
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="20,50", help="Creates a second, comma-separated.")
    parser.add_argument("--duration", type=float, default=30.0, help="Seconds of load per rate.")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--no-docs", action="store_true", help="Print only.")
    args = parser.parse_args()
    results = []
    for rate in (float(each) for each in args.rates.split(",")):
        with tempfile.TemporaryDirectory(prefix="keyquorum-replication-bench-") as scratch:
            results.append(measure(args, rate, Path(scratch)))
        print(json.dumps(results[-1], indent=2), flush=True)
    if not args.no_docs:
        write_docs(results)


if __name__ == "__main__":
    main()
