"""keyquorum beside PyKMIP's server and a TLS echo ceiling, under the same loads (`make bench`).

One run on one machine, everything on 127.0.0.1, each target alone while it is measured:

1. echo:      a bare asyncio TLS server that answers every KMIP frame with a canned Get
              response: what TLS and Python's event loop cost with no KMIP work at all;
2. pykmip:    PyKMIP's own KmipServer (TLS 1.2, client certificates, its SQLite store);
3. keyquorum: a 3-node dev cluster (tests/harness.py), connections spread over the nodes.

Each target takes Create and Get at several connection counts, Get with a new TLS
connection per request, and Create and Get paced at half of its own peak, over as many
connections as reached it (for p99 at half load). Every configuration is run
``--repeats`` times, interleaved; the tables give the median and the spread (min-max).
The server's own CPU per request is measured from /proc beside the rate: on a shared
machine it moves much less than the rate.

Then a node holding 100,000 keys: its resident memory, and how long it takes to serve
again after a restart. Writes docs/performance.md (between the bench markers, keeping
the hand-written sections) and docs/performance.png, and the raw figures to
docs/performance.json.

Usage: python bench/kmip_bench.py [--duration S] [--repeats N] [--keys N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import platform
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from keyquorum.cluster.pki import create_ca, issue_certificate
from keyquorum.cluster.tls import server_context
from keyquorum.kmip.loadgen import (
    LoadError,
    LoadOptions,
    LoadReport,
    PreparedKey,
    prepare,
    run_load,
)
from keyquorum.kmip.messages import (
    ResponseBatchItem,
    ResponseHeader,
    ResponseMessage,
    encode_message,
)
from keyquorum.kmip.objects import KeyBlock, KeyValue, SymmetricKey, UniqueIdentifier
from keyquorum.kmip.payloads import GetResponsePayload, ProtocolVersion
from keyquorum.kmip.tables import (
    CryptographicAlgorithm,
    KeyFormatType,
    ObjectType,
    Operation,
    ResultStatus,
)
from keyquorum.kmip.ttlv import NEED_DATA, FrameReader

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from harness import Cluster  # noqa: E402  (the tests' cluster harness)

DOCS = ROOT / "docs"
BEGIN = "<!-- bench:begin (written by make bench; edit outside the markers) -->"
END = "<!-- bench:end -->"
CONNECTIONS = (1, 4, 16, 32)
NEW_CONNECTIONS = (4, 16)
RESUMED_CONNECTIONS = 16
TARGETS = ("echo", "pykmip", "keyquorum")


@dataclass(frozen=True)
class Load:
    op: str
    connections: int
    new_connection: bool = False
    paced: bool = False  # at half of this target's peak for the op
    # New connections offer the last one's TLS session, as Java clients such as vCenter do.
    resumed: bool = False

    @property
    def label(self) -> str:
        kind = ("new conn, resumed" if self.resumed else "new conn" if self.new_connection
                else "half load" if self.paced else "")
        return f"{self.op} x{self.connections}" + (f" ({kind})" if kind else "")

    @classmethod
    def of_row(cls, r: dict[str, Any]) -> Load:
        return cls(r["op"], r["connections"], r["new_connection"], r["paced"],
                   r.get("resumed", False))


@dataclass
class Result:
    target: str
    load: Load
    reports: list[LoadReport]
    server_cpu_us: list[float]  # server CPU per answered request, one per repeat


# Certificates.


def write_pki(directory: Path) -> dict[str, Path]:
    ca = create_ca("bench CA")
    ca.write(directory / "ca.pem", directory / "ca.key")
    ttl = timedelta(hours=2)
    issue_certificate(ca, "server", sans=["127.0.0.1"], ttl=ttl).write(
        directory / "server.pem", directory / "server.key")
    issue_certificate(ca, "bench-client", sans=[], ttl=ttl).write(
        directory / "client.pem", directory / "client.key")
    return {name: directory / name for name in
            ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# CPU of a process tree, from /proc: the server's own cost per request.


def tree_cpu_seconds(root: int) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks

    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0.0)
        stack.extend(child for child, parent in parents.items() if parent == pid)
    return total


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# The echo ceiling.


def canned_get_response() -> bytes:
    """A successful Get response for a 256-bit AES key, as a KMIP server would send."""
    key = SymmetricKey(key_block=KeyBlock(
        key_format_type=KeyFormatType.RAW, key_value=KeyValue(key_material=bytes(32)),
        cryptographic_algorithm=CryptographicAlgorithm.AES, cryptographic_length=256))
    item = ResponseBatchItem(
        operation=Operation.GET, result_status=ResultStatus.SUCCESS,
        payload=GetResponsePayload(object_type=ObjectType.SYMMETRIC_KEY,
                                   unique_identifier=UniqueIdentifier("1"), object=key))
    header = ResponseHeader(protocol_version=ProtocolVersion(major=1, minor=2),
                            time_stamp=datetime.now(UTC).replace(microsecond=0), batch_count=1)
    return encode_message(ResponseMessage(header=header, batch_items=(item,)))


class _Answer(asyncio.Protocol):
    def __init__(self, response: bytes) -> None:
        self._response = response
        self._frames = FrameReader()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport: Any = transport

    def data_received(self, data: bytes) -> None:
        self._frames.feed(data)
        while self._frames.next_frame() is not NEED_DATA:
            self._transport.write(self._response)


def serve_echo(files: dict[str, Path], port: int) -> None:
    async def main() -> None:
        context = server_context(files["server.pem"], files["server.key"], files["ca.pem"])
        response = canned_get_response()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Answer(response), "127.0.0.1", port,
                                          ssl=context)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def serve_pykmip(files: dict[str, Path], port: int, directory: Path) -> None:
    from kmip.services.server import KmipServer

    # PyKMIP logs every request at INFO; WARNING spares it that cost here.
    server = KmipServer(
        hostname="127.0.0.1", port=port, certificate_path=str(files["server.pem"]),
        key_path=str(files["server.key"]), ca_path=str(files["ca.pem"]), auth_suite="TLS1.2",
        config_path=None, log_path=str(directory / "pykmip.log"), enable_tls_client_auth=True,
        logging_level=logging.WARNING, database_path=str(directory / "pykmip.db"),
    )
    with server:
        server.serve()


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class Target:
    name: str
    servers: tuple[tuple[str, int], ...]
    ca: Path
    cert: Path
    key: Path
    server_pid: int  # the root of the server's process tree, for its CPU


@contextmanager
def started(name: str, files: dict[str, Path], directory: Path) -> Iterator[Target]:
    """One target running for as long as the block lasts; every process gone after."""
    if name == "keyquorum":
        cluster = Cluster(directory / "cluster")
        try:
            cluster.start()
            cluster.leader()
            servers = tuple((node.kmip_host, node.kmip_port) for node in cluster.nodes.values())
            assert cluster._dev is not None
            yield Target(name, servers, cluster.ca, cluster.client_cert, cluster.client_key,
                         cluster._dev.pid)
        finally:
            cluster.stop()
        return

    port = free_port()
    context = multiprocessing.get_context("spawn")
    if name == "echo":
        process = context.Process(target=serve_echo, args=(files, port), daemon=True)
    else:
        process = context.Process(target=serve_pykmip, args=(files, port, directory))
    process.start()
    try:
        wait_for_port(port)
        yield Target(name, (("127.0.0.1", port),), files["ca.pem"], files["client.pem"],
                     files["client.key"], process.pid or 0)
    finally:
        _stop_tree(process.pid or 0)
        process.join()


def descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        found += children
        stack += children
    return found


def _stop_tree(pid: int) -> None:
    # PyKMIP's server has a policy monitor process and a multiprocessing manager, and
    # takes up to its 10 s accept timeout to notice SIGTERM: give it a moment, then kill
    # the whole tree, which holds nothing worth keeping.
    tree = [pid, *descendants(pid)]
    for member in tree:
        try:
            os.kill(member, signal.SIGTERM)
        except ProcessLookupError:
            pass
    time.sleep(1.0)
    for member in tree:
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


# Measuring.


def measure(target: Target, load: Load, duration: float, keys: list[PreparedKey],
            rate: float | None = None) -> tuple[LoadReport, float]:
    options = LoadOptions(
        servers=target.servers, ca=target.ca, cert=target.cert, key=target.key, op=load.op,
        connections=load.connections, duration_seconds=duration,
        new_connection=load.new_connection, resume_sessions=load.resumed, rate=rate,
    )
    cpu_before = tree_cpu_seconds(target.server_pid)
    report = run_load(options, keys=keys)
    cpu = tree_cpu_seconds(target.server_pid) - cpu_before
    return report, cpu / max(report.requests, 1) * 1e6


def run_target(target: Target, duration: float, repeats: int,
               say: Callable[[str], None]) -> list[Result]:
    # The keys Get reads are created once, before the clock starts.
    base = LoadOptions(servers=target.servers, ca=target.ca, cert=target.cert, key=target.key,
                       op="get", connections=1, duration_seconds=duration)
    keys = [PreparedKey("1", "echo")] if target.name == "echo" else prepare(base)

    ops = ("get",) if target.name == "echo" else ("create", "get")
    loads = [Load(op, count) for op in ops for count in CONNECTIONS]
    if target.name != "echo":
        loads += [Load("get", count, new_connection=True) for count in NEW_CONNECTIONS]
        loads.append(Load("get", RESUMED_CONNECTIONS, new_connection=True, resumed=True))
    results = {load: Result(target.name, load, [], []) for load in loads}

    # Interleaved repeats: drift on a shared machine spreads over every configuration.
    for repeat in range(repeats):
        for load in loads:
            report, cpu = measure(target, load, duration, keys)
            results[load].reports.append(report)
            results[load].server_cpu_us.append(cpu)
            say(f"{target.name:9} {load.label:24} run {repeat + 1}: "
                f"{report.throughput:8,.0f}/s p99 {report.latency_ms['p99']:7.2f} ms "
                f"errors {sum(report.errors.values())}")

    # p99 at half of the peak this target reached for the op, over as many connections
    # as reached it. Fewer would each have to carry more than half of what they can, and
    # the run would measure requests queued in the client behind a busy connection.
    for op in ops:
        rates = {count: statistics.median(r.throughput for r in results[Load(op, count)].reports)
                 for count in CONNECTIONS}
        peak_connections = max(rates, key=rates.__getitem__)
        peak = rates[peak_connections]
        paced = Load(op, peak_connections, paced=True)
        results[paced] = Result(target.name, paced, [], [])
        for repeat in range(repeats):
            report, cpu = measure(target, paced, duration, keys, rate=max(peak / 2, 1.0))
            results[paced].reports.append(report)
            results[paced].server_cpu_us.append(cpu)
            say(f"{target.name:9} {paced.label:24} run {repeat + 1}: "
                f"{report.throughput:8,.0f}/s p99 {report.latency_ms['p99']:7.2f} ms")
    return list(results.values())


def memory_and_restart(directory: Path, key_count: int, fill_seconds: float,
                       say: Callable[[str], None]) -> dict[str, Any]:
    """Fill a 3-node cluster with ``key_count`` keys; a node's RSS and its restart time.

    The fill stops at ``fill_seconds`` even if it has not reached ``key_count``: the
    bench stays bounded in time on a slow or busy machine, and says how many it held.
    """
    cluster = Cluster(directory / "full")
    try:
        cluster.start()
        leader = cluster.leader()
        servers = tuple((node.kmip_host, node.kmip_port) for node in cluster.nodes.values())
        options = LoadOptions(servers=servers, ca=cluster.ca, cert=cluster.client_cert,
                              key=cluster.client_key, op="create", connections=32,
                              duration_seconds=fill_seconds, requests=key_count)
        rss_before = {node_id: rss_mb(node.pid) for node_id, node in cluster.nodes.items()}
        started_at = time.monotonic()
        report = run_load(options)
        fill_seconds = time.monotonic() - started_at
        say(f"filled {report.succeeded:,} keys in {fill_seconds:.0f} s "
            f"({report.throughput:,.0f}/s), errors {report.errors}")
        rss = {node_id: rss_mb(node.pid) for node_id, node in cluster.nodes.items()}

        # Restart a follower: stop it cleanly, start it from its config and data, and
        # time until it answers a Get for a key written last.
        follower = cluster.followers(leader)[0]
        probe_options = LoadOptions(servers=servers[:1], ca=cluster.ca, cert=cluster.client_cert,
                                    key=cluster.client_key, op="get", connections=1,
                                    duration_seconds=1, keys=1)
        probe = prepare(probe_options)[0]
        node = cluster.nodes[follower]
        os.kill(node.pid, signal.SIGTERM)
        _wait_gone(node.pid)
        restart_began = time.monotonic()
        cluster.restart(follower)
        node_server = ((node.kmip_host, node.kmip_port),)
        _wait_for_get(cluster, node_server, probe)
        restart_seconds = time.monotonic() - restart_began
        say(f"restarted {follower} holding {report.succeeded:,} keys in {restart_seconds:.1f} s, "
            f"RSS {rss_mb(node.pid):.0f} MB after restart")
        return {
            "keys": report.succeeded + 1,
            "keys_asked": key_count,
            "fill_seconds": fill_seconds,
            "fill_rate": report.throughput,
            "fill_errors": report.errors,
            "rss_mb_empty": rss_before,
            "rss_mb_full": rss,
            "rss_mb_after_restart": rss_mb(node.pid),
            "restarted_node": follower,
            "restart_seconds": restart_seconds,
        }
    finally:
        cluster.stop()


def _wait_gone(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if Path(f"/proc/{pid}/stat").exists():
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return
        time.sleep(0.05)


def _wait_for_get(cluster: Cluster, servers: tuple[tuple[str, int], ...],
                  key: PreparedKey, timeout: float = 120.0) -> None:
    from keyquorum.kmip.conformance import TlsTransport, client_context
    from keyquorum.kmip.loadgen import failure_reason, get_request

    context = client_context(cluster.ca, cluster.client_cert, cluster.client_key)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            transport = TlsTransport(servers[0][0], servers[0][1], context)
            try:
                if failure_reason(transport.exchange(get_request(key.uid))) is None:
                    return
            finally:
                transport.close()
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError("the restarted node did not serve the key in time")


# Writing it down.


def summarize(results: list[Result]) -> dict[str, Any]:
    rows = []
    for result in results:
        rates = [report.throughput for report in result.reports]
        p99s = [report.latency_ms["p99"] for report in result.reports]
        rows.append({
            "target": result.target,
            "op": result.load.op,
            "connections": result.load.connections,
            "new_connection": result.load.new_connection,
            "paced": result.load.paced,
            "resumed": result.load.resumed,
            "throughput": statistics.median(rates),
            "throughput_min": min(rates),
            "throughput_max": max(rates),
            "p50": statistics.median(r.latency_ms["p50"] for r in result.reports),
            "p90": statistics.median(r.latency_ms["p90"] for r in result.reports),
            "p99": statistics.median(p99s),
            "p99_min": min(p99s),
            "p99_max": max(p99s),
            "max": max(r.latency_ms["max"] for r in result.reports),
            "errors": sum(sum(r.errors.values()) for r in result.reports),
            "server_cpu_us": statistics.median(result.server_cpu_us),
            "client_cpu_us": statistics.median(r.client_cpu_us_per_request
                                               for r in result.reports),
            "runs": [r.to_json() for r in result.reports],
        })
    return {"rows": rows}


def row(rows: list[dict[str, Any]], target: str, op: str, connections: int | None = None,
        new_connection: bool = False, paced: bool = False,
        resumed: bool = False) -> dict[str, Any] | None:
    found = [r for r in rows if r["target"] == target and r["op"] == op
             and r["new_connection"] == new_connection and r["paced"] == paced
             and r.get("resumed", False) == resumed
             and (connections is None or r["connections"] == connections)]
    if not found:
        return None
    return max(found, key=lambda r: r["throughput"])


def goals(rows: list[dict[str, Any]], memory: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """(goal, measured, met) for each goal of the performance issue."""
    out: list[tuple[str, str, str]] = []

    def ratio(goal: str, ours: dict[str, Any] | None, theirs: dict[str, Any] | None,
              needed: float) -> None:
        if ours is None or theirs is None or not theirs["throughput"]:
            out.append((goal, "not measured", "?"))
            return
        value = ours["throughput"] / theirs["throughput"]
        low = ours["throughput_min"] / theirs["throughput_max"]
        high = ours["throughput_max"] / max(theirs["throughput_min"], 1e-9)
        shown = (f"{value:.0%} (spread {low:.0%}-{high:.0%}" if needed < 1 else
                 f"{value:.1f}x (spread {low:.1f}-{high:.1f}x")
        # Server CPU per request moves much less than the rate on a shared machine.
        out.append((goal, f"{shown}; {ours['throughput']:,.0f} vs "
                          f"{theirs['throughput']:,.0f}/s; server CPU per request "
                          f"{ours['server_cpu_us']:,.0f} vs {theirs['server_cpu_us']:,.0f} us)",
                    "yes" if value >= needed else "no"))

    ratio("Create, 3-node cluster >= 5x PyKMIP", row(rows, "keyquorum", "create"),
          row(rows, "pykmip", "create"), 5)
    ratio("Get >= 10x PyKMIP", row(rows, "keyquorum", "get"), row(rows, "pykmip", "get"), 10)
    ratio("Get >= 40% of the TLS echo ceiling", row(rows, "keyquorum", "get"),
          row(rows, "echo", "get"), 0.4)
    ratio("Get, new connection per request >= 5x PyKMIP",
          row(rows, "keyquorum", "get", new_connection=True),
          row(rows, "pykmip", "get", new_connection=True), 5)
    for op, limit in (("get", 5.0), ("create", 25.0)):
        paced = row(rows, "keyquorum", op, paced=True)
        if paced is None:
            out.append((f"{op} p99 at half load < {limit:g} ms", "not measured", "?"))
            continue
        out.append((f"{op.capitalize()} p99 at half of peak load < {limit:g} ms",
                    f"{paced['p99']:.1f} ms (spread {paced['p99_min']:.1f}-"
                    f"{paced['p99_max']:.1f}) at {paced['throughput']:,.0f}/s",
                    "yes" if paced["p99"] < limit else "no"))
    if memory is not None:
        largest = max(memory["rss_mb_full"].values())
        out.append((f"{memory['keys']:,} keys: RSS < 300 MB", f"{largest:.0f} MB (largest node)",
                    "yes" if largest < 300 else "no"))
        out.append((f"{memory['keys']:,} keys: restart < 10 s",
                    f"{memory['restart_seconds']:.1f} s", "yes" if memory["restart_seconds"] < 10
                    else "no"))
    return out


def resumed_sessions_note(rows: list[dict[str, Any]]) -> list[str]:
    """Beside the goals: new connections that resume their TLS session, as vCenter's do."""
    ours = row(rows, "keyquorum", "get", new_connection=True, resumed=True)
    theirs = row(rows, "pykmip", "get", new_connection=True, resumed=True)
    if ours is None or theirs is None or not theirs["throughput"]:
        return []

    def resumed_share(r: dict[str, Any]) -> str:
        resumed = sum(run.get("resumed_sessions", 0) for run in r["runs"])
        return f"{resumed / max(sum(run['requests'] for run in r['runs']), 1):.0%}"

    return ["", f"Beside the goals, new connections that offer the last one's TLS session, as "
            f"Java clients such as vCenter do: Get {ours['throughput']:,.0f} vs "
            f"{theirs['throughput']:,.0f}/s = {ours['throughput'] / theirs['throughput']:.1f}x "
            f"PyKMIP (server CPU per request {ours['server_cpu_us']:,.0f} vs "
            f"{theirs['server_cpu_us']:,.0f} us; sessions resumed on {resumed_share(ours)} "
            f"and {resumed_share(theirs)} of the connections)."]


def markdown(summary: dict[str, Any], memory: dict[str, Any] | None, settings: str) -> str:
    rows = summary["rows"]
    lines = [BEGIN, "", settings, "", "### Goals", "", "| goal | measured | met |",
             "| --- | --- | --- |"]
    lines += [f"| {goal} | {measured} | {met} |" for goal, measured, met in goals(rows, memory)]
    lines += resumed_sessions_note(rows)
    lines += ["", "### Every load", "",
              "Throughput is the median of the repeats, with min-max; latencies in ms are "
              "medians of the repeats' percentiles (max: the largest seen). Server and client "
              "CPU are microseconds of CPU per request.", "",
              "| target | load | requests/s | spread | p50 | p90 | p99 | max | errors "
              "| server CPU | client CPU |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        label = Load.of_row(r).label
        lines.append(
            f"| {r['target']} | {label} | {r['throughput']:,.0f} | {r['throughput_min']:,.0f}-"
            f"{r['throughput_max']:,.0f} | {r['p50']:.2f} | {r['p90']:.2f} | {r['p99']:.2f} "
            f"| {r['max']:.1f} | {r['errors']} | {r['server_cpu_us']:,.0f} "
            f"| {r['client_cpu_us']:,.0f} |")
    if memory is not None:
        lines += ["", "### A node holding many keys", "",
                  f"- filled {memory['keys']:,} keys through all three nodes in "
                  f"{memory['fill_seconds']:.0f} s ({memory['fill_rate']:,.0f} Creates/s, "
                  f"errors: {memory['fill_errors'] or 'none'})"
                  + (f", short of the {memory['keys_asked']:,} asked: the fill stops at "
                     "--fill-seconds" if memory["keys"] < memory["keys_asked"] else "") + ";",
                  "- resident memory per node, empty then full: " + ", ".join(
                      f"{node} {memory['rss_mb_empty'][node]:.0f} -> "
                      f"{memory['rss_mb_full'][node]:.0f} MB" for node in memory["rss_mb_full"])
                  + ";",
                  f"- {memory['restarted_node']} (a follower), stopped and started again, served "
                  f"a Get of the newest key {memory['restart_seconds']:.1f} s after its start "
                  f"(RSS then {memory['rss_mb_after_restart']:.0f} MB)."]
    lines += ["", "![throughput and latency](performance.png)", "", END]
    return "\n".join(lines)


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for target in TARGETS:
        for op, style in (("get", "-o"), ("create", "--s")):
            points = sorted((r["connections"], r["throughput"], r["throughput_min"],
                             r["throughput_max"]) for r in rows
                            if r["target"] == target and r["op"] == op
                            and not r["new_connection"] and not r["paced"])
            if not points:
                continue
            xs = [p[0] for p in points]
            ys = [p[1] for p in points]
            errors = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
            left.errorbar(xs, ys, yerr=errors, fmt=style, capsize=3, label=f"{target} {op}")
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xlabel("connections")
    left.set_ylabel("requests per second (median, min-max)")
    left.set_title("Throughput against connections")
    left.legend(fontsize=8)

    chosen = [r for r in rows if r["connections"] == 16 or r["paced"]]
    labels = [f"{r['target']}\n"
              f"{Load.of_row(r).label}"
              for r in chosen]
    width = 0.27
    for offset, percentile in enumerate(("p50", "p90", "p99")):
        right.bar([i + (offset - 1) * width for i in range(len(chosen))],
                  [r[percentile] for r in chosen], width, label=percentile)
    right.set_xticks(range(len(chosen)), labels, rotation=60, ha="right", fontsize=7)
    right.set_yscale("log")
    right.set_ylabel("latency, ms")
    right.set_title("Latency percentiles at 16 connections and at half load")
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def write_docs(text: str) -> None:
    page = DOCS / "performance.md"
    current = page.read_text() if page.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in current or END not in current:
        current = current.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = current.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    page.write_text(head + text + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration")
    parser.add_argument("--keys", type=int, default=100_000,
                        help="keys for the memory and restart test; 0 skips it")
    parser.add_argument("--fill-seconds", type=float, default=300.0,
                        help="stop filling at this many seconds even if short of --keys")
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help="comma-separated subset of " + ", ".join(TARGETS))
    parser.add_argument("--no-docs", action="store_true", help="print, write no docs")
    arguments = parser.parse_args()

    def say(line: str) -> None:
        print(line, flush=True)

    began = time.monotonic()
    results: list[Result] = []
    memory = None
    with tempfile.TemporaryDirectory(prefix="keyquorum-bench-") as temporary:
        directory = Path(temporary)
        files = write_pki(directory)
        for name in arguments.targets.split(","):
            with started(name, files, directory) as target:
                results += run_target(target, arguments.duration, arguments.repeats, say)
        if arguments.keys:
            # A failure here must not lose the comparison measured before it.
            try:
                memory = memory_and_restart(directory, arguments.keys, arguments.fill_seconds,
                                            say)
            except (LoadError, TimeoutError, OSError) as error:
                say(f"the memory and restart measurement failed: {error}")

    summary = summarize(results)
    settings = (
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
        f"({platform.machine()}, Python {platform.python_version()}), load average at the end "
        f"{os.getloadavg()[0]:.1f}; {arguments.duration:g} s per run, {arguments.repeats} "
        f"repeats each, whole bench {time.monotonic() - began:.0f} s. The client is "
        f"`keyquorum bench` (kmip/loadgen.py) in two processes; keyquorum's connections "
        f"go round-robin over its three nodes."
    )
    for goal, measured, met in goals(summary["rows"], memory):
        say(f"{met:3} {goal}: {measured}")
    if arguments.no_docs:
        return
    (DOCS / "performance.json").write_text(json.dumps(
        {"settings": settings, "memory": memory, **summary}, indent=1) + "\n")
    plot(summary, DOCS / "performance.png")
    write_docs(markdown(summary, memory, settings))
    say(f"wrote {DOCS / 'performance.md'}, performance.png and performance.json")


if __name__ == "__main__":
    main()
