"""The `keyquorum` command.

Exit codes: 0 when all went well, 1 for a runtime failure, 2 when the command line
or the config file is wrong (the message says which option and what is allowed).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import click

from keyquorum.cluster.cli_admin import register as register_admin_commands
from keyquorum.cluster.cli_bench import register as register_bench_command
from keyquorum.cluster.cli_drill import register as register_drill_commands
from keyquorum.cluster.cli_operator import register as register_operator_commands
from keyquorum.cluster.cli_replication import register as register_replication_commands
from keyquorum.cluster.cli_status import register as register_status_commands
from keyquorum.cluster.config import ConfigError, load_config
from keyquorum.cluster.dev import DEFAULT_BASE_PORT, DevError, DevOptions, run_dev
from keyquorum.cluster.transform.cli import register as register_transform_commands

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class BadInput(click.ClickException):
    """Wrong input in a file the operator wrote: the same exit code as a usage error."""

    exit_code = EXIT_USAGE


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="keyquorum", prog_name="keyquorum")
def cli() -> None:
    """keyquorum: a clustered KMIP key server.

    Exit codes: 0 ok, 1 runtime failure, 2 wrong command line or config file.
    """


@cli.command()
@click.option(
    "--config",
    "config_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The node's TOML config; see docs/configuration.md.",
)
def server(config_file: Path) -> None:
    """Run one node of a cluster in the foreground."""
    try:
        config = load_config(config_file)
    except ConfigError as error:
        # A problem with an option says which file; a problem with the file already does.
        raise BadInput(f"{config_file}: {error}" if error.option else str(error)) from error

    # The node forks a child to write each Raft dump (cluster/raft_dump.py); the child
    # never calls into gRPC, so gRPC's fork handlers have nothing to do, and with them on
    # every fork printed a warning to stderr. Read once, when gRPC loads: set it first.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

    # Imported here so the rest of the CLI works in a build without the node runtime.
    try:
        node = importlib.import_module("keyquorum.cluster.node")
    except ModuleNotFoundError as error:
        if error.name != "keyquorum.cluster.node":
            raise
        raise click.ClickException(
            "this build has no node runtime (keyquorum.cluster.node is missing)"
        ) from error
    code: int = node.run(config)
    sys.exit(code)


@cli.command()
@click.option(
    "--nodes",
    "node_count",
    type=click.IntRange(1, 9),
    default=3,
    show_default=True,
    help="How many nodes to run.",
)
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the CA, credentials, configs, data and logs; reused when it exists.",
)
@click.option(
    "--base-port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_BASE_PORT,
    show_default=True,
    help="Node 1's KMIP port (node N gets base + N - 1) when free; 0: any free ports.",
)
@click.option(
    "--timeout",
    "start_timeout",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds to wait for every node to serve and a leader to be elected.",
)
def dev(node_count: int, directory: Path, base_port: int, start_timeout: float) -> None:
    """Run a local cluster on 127.0.0.1 until Ctrl-C.

    Writes DIR/cluster.json once every node serves. Running again with the same
    folder brings the same cluster back, keys included.
    """
    options = DevOptions(
        root=directory,
        node_count=node_count,
        base_port=base_port,
        start_timeout_seconds=start_timeout,
    )
    try:
        code = run_dev(options)
    except DevError as error:
        if error.exit_code == EXIT_USAGE:
            raise BadInput(str(error)) from error
        raise click.ClickException(str(error)) from error
    except ConfigError as error:
        raise BadInput(f"a node config under {directory}: {error}") from error
    sys.exit(code)


@cli.command()
@click.option("--server", required=True, metavar="HOST:PORT", help="The KMIP server to test.")
@click.option("--ca", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The CA that signed the server's certificate.")
@click.option("--cert", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The client certificate to present.")
@click.option("--key", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The client certificate's private key.")
@click.option("--transport", type=click.Choice(["tls", "https"]), default="tls",
              show_default=True,
              help="tls: TTLV over mutual TLS; https: POST /kmip over mutual TLS.")
@click.option("--encoding", type=click.Choice(["ttlv", "xml", "json"]), default="ttlv",
              show_default=True, help="The body encoding with --transport https.")
@click.argument("cases", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
def conformance(server: str, ca: Path, cert: Path, key: Path, transport: str, encoding: str,
                cases: tuple[Path, ...]) -> None:
    """Run OASIS KMIP test cases (XML files) against any KMIP server.

    Prints PASS or FAIL with the first difference per case, then 'N passed, N failed'.
    Exits 1 when any case failed.
    """
    from keyquorum.kmip.conformance import (
        HttpsTransport,
        TlsTransport,
        Transport,
        client_context,
        run_cases,
        summary,
    )

    host, _, port = server.rpartition(":")
    if not host or not port.isdigit():
        raise BadInput(f"--server {server!r}: give HOST:PORT, e.g. 127.0.0.1:5696")
    try:
        context = client_context(ca, cert, key)
    except (OSError, ValueError) as error:
        raise BadInput(f"cannot load the TLS files: {error}") from error

    if encoding != "ttlv" and transport != "https":
        raise BadInput(f"--encoding {encoding} needs --transport https")

    def connect() -> Transport:
        if transport == "https":
            return HttpsTransport(host.strip("[]"), int(port), context, encoding)
        return TlsTransport(host.strip("[]"), int(port), context)

    results = run_cases(cases, connect, lambda line: click.echo(line))
    click.echo(summary(results))
    sys.exit(EXIT_OK if all(result.passed for result in results) else EXIT_FAILURE)


# scope, role, credential, ca, token, listener: the admin API from a shell (cluster/cli_admin.py).
register_admin_commands(cli)
# operator init|unseal|seal|seal-status|rotate|rekey|snapshot (cluster/cli_operator.py).
register_operator_commands(cli)
# status, operator raft list-peers|join|remove-peer (cluster/cli_status.py).
register_status_commands(cli)
# transform alphabet|template|transformation|role|encode|decode|token (cluster/transform/cli.py).
register_transform_commands(cli)
# bench: a KMIP load generator for any server (cluster/cli_bench.py).
register_bench_command(cli)
# replication primary|secondary|status|disable|dr|dr-token (cluster/cli_replication.py).
register_replication_commands(cli)
# drill dr: a failover drill against running clusters (cluster/cli_drill.py).
register_drill_commands(cli)


def main() -> None:
    cli(prog_name="keyquorum")


if __name__ == "__main__":
    main()
