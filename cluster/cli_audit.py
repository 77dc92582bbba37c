"""`keyquorum audit ...`: enable and disable audit devices, search and verify the trail.

``enable``, ``disable``, ``list`` and ``hash`` call the admin API
(cluster/audit_api.py) with the usual ``--addr``, ``--token`` and ``--cacert``.
``verify`` reads files on this machine and needs no server: give the files of one
node's device oldest first (``audit.log.2 audit.log.1 audit.log``) to check the
links between them as well.

Exit codes: 0 ok (for verify: the chain is intact), 1 the chain is broken or the
cluster could not be reached, 2 wrong input.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .audit_chain import verify
from .cli_admin import AdminError, _client, _show, _table, api_options

EXIT_BROKEN = 1


@click.group()
def audit() -> None:
    """Audit devices: where every node records every KMIP and admin request."""


@audit.command("enable")
@click.argument("name")
@click.option("--type", "kind", required=True, type=click.Choice(["file", "syslog", "socket"]),
              help="file: JSON lines; syslog: one message per record; socket: TCP or Unix.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="path=... (file; relative to each node's data folder, {node} is the "
                   "node id), address=... (socket: tcp:HOST:PORT or unix:PATH; syslog: a "
                   "Unix socket or udp:HOST:PORT), facility=..., tag=... (syslog). Repeat it.")
@click.option("--description", default="", help="A note for whoever lists the devices.")
@api_options
def audit_enable(name: str, kind: str, options: tuple[str, ...], description: str,
                 as_json: bool, **api: Any) -> None:
    """Enable audit device NAME on every node."""
    settings: dict[str, str] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise AdminError(f"--option {option!r}: give KEY=VALUE, such as path=audit.log")
        settings[key] = value
    body = {"type": kind, "options": settings, "description": description}
    _show(_client(api).call("POST", f"/v1/sys/audit/{name}", body), as_json)


@audit.command("disable")
@click.argument("name")
@api_options
def audit_disable(name: str, as_json: bool, **api: Any) -> None:
    """Disable audit device NAME on every node."""
    _show(_client(api).call("DELETE", f"/v1/sys/audit/{name}"), as_json)


@audit.command("list")
@api_options
def audit_list(as_json: bool, **api: Any) -> None:
    """The enabled audit devices, and where each writes on the node asked."""
    answer = _client(api).call("GET", "/v1/sys/audit")
    rows = [(d["name"], d["type"], ", ".join(f"{k}={v}" for k, v in d["options"].items()),
             (d.get("local") or {}).get("path", "-")) for d in answer["devices"]]
    _show(answer, as_json, rows, ("device", "type", "options", "path on this node"))


@audit.command("hash")
@click.argument("device")
@click.argument("value")
@click.option("--encoding", type=click.Choice(["utf-8", "hex", "base64"]), default="utf-8",
              show_default=True, help="How VALUE is written; hex or base64 for key bytes.")
@api_options
def audit_hash(device: str, value: str, encoding: str, as_json: bool, **api: Any) -> None:
    """The HMAC DEVICE writes for VALUE: search its records for it."""
    answer = _client(api).call("POST", f"/v1/sys/audit-hash/{device}",
                               {"input": value, "encoding": encoding})
    if as_json:
        _show(answer, True)
        return
    click.echo(answer["hash"])


@audit.command("verify")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
def audit_verify(files: tuple[Path, ...]) -> None:
    """Check the hash chain of audit FILES (oldest first); exit 1 at the first break."""
    try:
        contents = [(str(path), path.read_bytes()) for path in files]
    except OSError as error:
        raise AdminError(f"cannot read {error.filename}: {error.strerror}") from None
    result = verify(contents)
    if result.finding is not None:
        finding = result.finding
        click.echo(f"{finding.file}:{finding.line}: {finding.problem}: {finding.detail}")
        click.echo(f"chain broken: {result.records} record(s) checked before it", err=True)
        sys.exit(EXIT_BROKEN)
    click.echo(_table(("files", "records", "first seq", "last seq"),
                      [(", ".join(result.files), result.records, result.first_seq,
                        result.last_seq)]))
    if result.first_seq > 1:
        click.echo(f"intact; the chain continues from record {result.first_seq - 1} in an "
                   "earlier file: give that file first to check the link")
    else:
        click.echo("intact")
