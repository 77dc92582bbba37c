"""`keyquorum drill dr`: a failover drill against running clusters (cluster/dr_drill.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .cli_admin import AdminFailure
from .dr_drill import DrillError, DrillOptions, KmipCredentials, Side, run_drill

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group()
def drill() -> None:
    """Rehearse a failure against running clusters and report what it cost."""


@drill.command("dr")
@click.option("--primary-addr", "primary_api", multiple=True, required=True, metavar="URL",
              help="The API URL of a primary node; repeat for every node (each is sealed).")
@click.option("--primary-token", required=True, help="A root token of the primary.")
@click.option("--primary-cacert", type=_FILE, help="The CA of the primary's API certificates.")
@click.option("--primary-kmip", multiple=True, required=True, metavar="HOST:PORT",
              help="A primary node's KMIP address; repeat.")
@click.option("--dr-addr", "dr_api", multiple=True, required=True, metavar="URL",
              help="The API URL of a DR secondary node; repeat.")
@click.option("--dr-token", required=True, help="A root token of the DR secondary.")
@click.option("--dr-cacert", type=_FILE, help="The CA of the DR secondary's API certificates.")
@click.option("--dr-kmip", multiple=True, required=True, metavar="HOST:PORT",
              help="A DR secondary node's KMIP address; repeat.")
@click.option("--kmip-ca", required=True, type=_FILE, help="The CA of the KMIP listeners.")
@click.option("--kmip-cert", required=True, type=_FILE, help="A KMIP client certificate.")
@click.option("--kmip-key", required=True, type=_FILE, help="Its private key.")
@click.option("--unseal-key", "unseal_keys", multiple=True,
              help="An unseal share, for the DR operation token; repeat to the threshold.")
@click.option("--dr-operation-token", help="A DR operation token made beforehand instead.")
@click.option("--keys", type=click.IntRange(1, 100_000), default=20, show_default=True,
              help="Keys to write on the primary before the cut.")
@click.option("--demote-primary", is_flag=True,
              help="Demote the sealed old primary afterwards, ready for update-primary.")
@click.option("--timeout", type=click.FloatRange(1.0), default=120.0, show_default=True,
              help="Seconds the promoted cluster has to take a write.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def drill_dr(primary_api: tuple[str, ...], primary_token: str, primary_cacert: Path | None,
             primary_kmip: tuple[str, ...], dr_api: tuple[str, ...], dr_token: str,
             dr_cacert: Path | None, dr_kmip: tuple[str, ...], kmip_ca: Path, kmip_cert: Path,
             kmip_key: Path, unseal_keys: tuple[str, ...], dr_operation_token: str | None,
             keys: int, demote_primary: bool, timeout: float, as_json: bool) -> None:
    """Write keys, seal the primary, promote the DR secondary, and measure the gap.

    The cut is a seal of every primary node through its API: the drill cannot kill
    processes in another datacenter. The old primary stays sealed; re-point it with
    `keyquorum replication dr update-primary` before unsealing it. Exit code 0 when
    every key acknowledged before the cut is on the promoted cluster, 1 otherwise.
    """
    options = DrillOptions(
        primary=Side(primary_api, primary_token, primary_cacert, primary_kmip),
        dr=Side(dr_api, dr_token, dr_cacert, dr_kmip),
        credentials=KmipCredentials(kmip_ca, kmip_cert, kmip_key),
        keys=keys, unseal_keys=unseal_keys, dr_operation_token=dr_operation_token,
        demote_primary=demote_primary, timeout=timeout)
    try:
        report = run_drill(options, say=lambda line: click.echo(line, err=True))
    except DrillError as error:
        raise AdminFailure(f"the drill stopped: {error}") from None

    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(f"Keys acknowledged before the cut  {report.keys_acknowledged}")
        click.echo(f"Present on the promoted cluster   {report.keys_present}")
        click.echo(f"DR lag at the cut                 {report.lag_at_cut_sequences} change(s)")
        click.echo(f"Promoted after the cut            {report.promote_seconds:.3f} s")
        click.echo(f"Unavailable for writes            {report.unavailable_seconds:.3f} s")
        for uid in report.missing:
            click.echo(f"MISSING {uid}")
    if not report.passed:
        raise AdminFailure(f"{len(report.missing)} acknowledged key(s) are missing on the "
                         "promoted cluster")


def register(cli: click.Group) -> None:
    cli.add_command(drill)
