"""`keyquorum bench`: drive any KMIP server with load and print what it sustained."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from keyquorum.kmip.loadgen import (
    OPERATIONS,
    LoadError,
    LoadOptions,
    LoadReport,
    parse_servers,
    run_load,
)

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def register(cli: click.Group) -> None:
    cli.add_command(bench)


@click.command()
@click.option("--server", "servers", required=True, metavar="HOST:PORT[,HOST:PORT...]",
              help="The KMIP servers; connections are spread over them in turn.")
@click.option("--ca", required=True, type=_FILE,
              help="The CA that signed the servers' certificates.")
@click.option("--cert", required=True, type=_FILE, help="The client certificate to present.")
@click.option("--key", required=True, type=_FILE, help="The client certificate's private key.")
@click.option("--op", type=click.Choice(OPERATIONS), default="get", show_default=True,
              help="What each request does; get, locate and encrypt first create their keys; "
                   "mix is 70% get, 10% each create, locate and encrypt.")
@click.option("--connections", type=click.IntRange(1, 4096), default=16, show_default=True,
              help="Concurrent connections, each with one request in flight.")
@click.option("--duration", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds to run.")
@click.option("--new-connection", is_flag=True,
              help="Open a new TLS connection for every request (as vCenter does).")
@click.option("--resume-sessions", is_flag=True,
              help="With --new-connection: offer each server the TLS session of the last "
                   "connection to it, as Java clients such as vCenter do.")
@click.option("--rate", type=click.FloatRange(min=0.1), default=None,
              help="Requests a second over all connections; default: as fast as answered.")
@click.option("--requests", type=click.IntRange(min=1), default=None,
              help="Stop after this many requests, if the duration has not run out first.")
@click.option("--processes", type=click.IntRange(min=0), default=0, show_default=True,
              help="Client processes; 0: one per core, at most one per connection.")
@click.option("--keys", type=click.IntRange(min=1), default=32, show_default=True,
              help="How many keys get, locate and encrypt cycle over.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def bench(servers: str, ca: Path, cert: Path, key: Path, op: str, connections: int,
          duration: float, new_connection: bool, resume_sessions: bool, rate: float | None,
          requests: int | None, processes: int, keys: int, as_json: bool) -> None:
    """Drive KMIP servers with load; print throughput, latencies and errors by reason.

    Works against any KMIP server that speaks KMIP 1.2 over mutual TLS. Exits 1 when
    the run could not start, or when every request failed.
    """
    try:
        options = LoadOptions(
            servers=parse_servers(servers), ca=ca, cert=cert, key=key, op=op,
            connections=connections, duration_seconds=duration, new_connection=new_connection,
            resume_sessions=resume_sessions, processes=processes, rate=rate, requests=requests,
            keys=keys,
        )
    except ValueError as error:
        raise click.BadParameter(str(error)) from error

    # The bar goes to stderr so that --json output stays one clean object.
    with click.progressbar(length=int(duration * 10), label=f"{op} x{connections}",
                           file=sys.stderr, show_eta=False) as bar:
        shown = [0]

        def progress(elapsed: float, done: int) -> None:
            step = int(elapsed * 10)
            bar.label = f"{op} x{connections}: {done:,} requests"
            bar.update(step - shown[0])
            shown[0] = step

        try:
            report = run_load(options, progress=progress)
        except LoadError as error:
            raise click.ClickException(str(error)) from error

    click.echo(json.dumps(report.to_json(), indent=2) if as_json else format_report(report))
    if report.requests and not report.succeeded:
        sys.exit(1)


def format_report(report: LoadReport) -> str:
    latency = report.latency_ms
    lines = [
        f"op {report.op}, {report.connections} connections"
        f"{' (new connection per request)' if report.new_connection else ''}, "
        f"{report.duration_seconds:g} s, {report.processes} client processes",
        f"throughput  {report.throughput:,.0f} requests/s "
        f"({report.succeeded:,} succeeded of {report.requests:,} answered)",
        f"latency ms  p50 {latency['p50']:.2f}  p90 {latency['p90']:.2f}  "
        f"p99 {latency['p99']:.2f}  max {latency['max']:.2f}",
        f"client CPU  {report.client_cpu_us_per_request:.0f} us/request "
        f"({report.client_cpu_seconds / report.duration_seconds:.0%} of a core)",
    ]
    if report.new_connection:
        lines.append(f"TLS         {report.resumed_sessions:,} of {report.requests:,} "
                     "connections resumed a session")
    if report.errors:
        lines.append("errors      " + ", ".join(f"{name} {count:,}"
                                                 for name, count in report.errors.items()))
    else:
        lines.append("errors      none")
    return "\n".join(lines)
