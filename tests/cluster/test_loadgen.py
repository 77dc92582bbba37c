"""The load generator against a real 3-node cluster: counts, latencies, errors by reason.

Each run is short and bounded by a request budget, so the numbers it reports can be
checked exactly: every request sent is answered and counted once, failures land under
their Result Reason, and a server that is not there is a clear error, not a hang.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from harness import Cluster

from keyquorum.cluster.cli import cli
from keyquorum.kmip.loadgen import (
    LoadError,
    LoadOptions,
    PreparedKey,
    failure_reason,
    get_request,
    latency_summary,
    parse_servers,
    run_load,
)


def options(cluster: Cluster, **changes: object) -> LoadOptions:
    servers = tuple((node.kmip_host, node.kmip_port) for node in cluster.nodes.values())
    settings: dict[str, object] = {
        "servers": servers, "ca": cluster.ca, "cert": cluster.client_cert,
        "key": cluster.client_key, "op": "create", "connections": 3, "duration_seconds": 30.0,
        "processes": 1,
    }
    return LoadOptions(**(settings | changes))  # type: ignore[arg-type]


def test_every_request_is_answered_and_counted_once(cluster: Cluster) -> None:
    report = run_load(options(cluster, op="create", connections=4, processes=2, requests=40))

    assert (report.requests, report.succeeded, report.errors) == (40, 40, {})
    latency = report.latency_ms
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    # The budget ended the run early: the rate is over the time it took, not the 30 s.
    assert report.duration_seconds < 30
    assert report.throughput == pytest.approx(40 / report.duration_seconds)
    assert report.client_cpu_seconds > 0


def test_get_prepares_its_keys_and_reads_them_through_every_node(cluster: Cluster) -> None:
    report = run_load(options(cluster, op="get", connections=3, requests=30, keys=3))

    assert (report.requests, report.succeeded, report.errors) == (30, 30, {})


def test_a_failing_operation_is_counted_by_its_result_reason(cluster: Cluster) -> None:
    missing = [PreparedKey("no-such-key", "no-such-name")]

    report = run_load(options(cluster, op="get", requests=12), keys=missing)

    assert (report.requests, report.succeeded) == (12, 0)
    assert report.errors == {"item_not_found": 12}
    assert report.throughput == 0


def test_the_mix_runs_every_operation(cluster: Cluster) -> None:
    report = run_load(options(cluster, op="mix", requests=60, keys=4))

    assert (report.requests, report.succeeded, report.errors) == (60, 60, {})


def test_new_connections_resume_the_session_of_the_last_one_when_asked(
    cluster: Cluster,
) -> None:
    # Three connections, one to each node: only each one's first handshake is full.
    resuming = run_load(options(cluster, op="get", new_connection=True, resume_sessions=True,
                                requests=30, keys=3))
    full = run_load(options(cluster, op="get", new_connection=True, requests=9, keys=3))

    assert (resuming.requests, resuming.succeeded, resuming.errors) == (30, 30, {})
    assert resuming.resumed_sessions == 30 - 3
    assert (full.succeeded, full.resumed_sessions) == (9, 0)
    with pytest.raises(ValueError, match="new connection"):
        options(cluster, resume_sessions=True)


def test_a_paced_run_keeps_to_its_rate(cluster: Cluster) -> None:
    report = run_load(options(cluster, op="create", rate=20, duration_seconds=1.5))

    # 20 a second for 1.5 s is 30 requests: never more, whatever the server's speed; a
    # busy test machine may answer fewer in time.
    assert 5 <= report.requests <= 30
    assert report.errors == {}


def test_failure_reason_reads_the_result_reason(cluster: Cluster) -> None:
    frame = cluster.exchange(next(iter(cluster.nodes)), get_request("no-such-key"))

    assert failure_reason(frame) == "item_not_found"
    assert failure_reason(get_request("1")) == "not_a_response"
    assert failure_reason(b"garbage!") == "undecodable_response"


def test_the_command_prints_json(cluster: Cluster) -> None:
    node = next(iter(cluster.nodes.values()))
    result = CliRunner().invoke(cli, [
        "bench", "--server", f"{node.kmip_host}:{node.kmip_port}", "--ca", str(cluster.ca),
        "--cert", str(cluster.client_cert), "--key", str(cluster.client_key), "--op", "get",
        "--connections", "2", "--requests", "10", "--keys", "2", "--json",
    ])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["requests"], report["succeeded"], report["errors"]) == (10, 10, {})
    assert set(report["latency_ms"]) == {"p50", "p90", "p99", "max", "mean"}


def test_a_server_that_is_not_there_is_a_clear_error(cluster: Cluster, tmp_path: Path) -> None:
    unused = ("127.0.0.1", 9)  # discard: nothing listens there on a test machine

    with pytest.raises(LoadError, match="cannot connect to 127.0.0.1:9"):
        run_load(options(cluster, servers=(unused,), requests=1), keys=[])

    result = CliRunner().invoke(cli, [
        "bench", "--server", "127.0.0.1:9", "--ca", str(cluster.ca), "--cert",
        str(cluster.client_cert), "--key", str(cluster.client_key), "--op", "create",
        "--duration", "1",
    ])
    assert result.exit_code == 1
    assert "cannot connect to 127.0.0.1:9" in result.output


def test_latency_percentiles_are_nearest_rank() -> None:
    seconds = [index / 1000 for index in range(1, 101)]  # 1 ms .. 100 ms

    summary = latency_summary(seconds)

    assert summary == pytest.approx(
        {"p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0, "mean": 50.5})
    assert latency_summary([0.002])["p99"] == pytest.approx(2.0)


def test_servers_parse_and_bad_ones_say_what_to_write() -> None:
    assert parse_servers("127.0.0.1:5696,[::1]:5697") == (("127.0.0.1", 5696), ("::1", 5697))
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        parse_servers("127.0.0.1")
