"""`keyquorum status` and `keyquorum operator raft ...`: the cluster at a glance.

Both read ``GET /v1/sys/raft/status`` (cluster/status_api.py). ``status`` takes one
or more ``--addr``: every node asked gives its own row (role, term, indexes, health,
seal); the peers it names but that were not asked show what it knows of them (the
leader knows how far each has replicated, a follower only whether it is connected).

Exit codes, as everywhere in the CLI: 0 when every node asked answered and is
healthy (serving, with a quorum, unsealed), 1 when one could not be reached or is
not healthy, 2 for a wrong command line.

``operator raft join`` and ``remove-peer`` change the membership online, one member at
a time, through any node's ``/v1/sys/raft/`` (root token; cluster/raft.py, hazard 9).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .cli_admin import AdminError, AdminFailure
from .cli_operator import _Sys

EXIT_OK = 0
EXIT_FAILURE = 1

def _addr_options(command: Any) -> Any:
    command = click.option(
        "--cacert", envvar="KEYQUORUM_CACERT", metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        help="The CA of the API's certificate [env KEYQUORUM_CACERT].")(command)
    return click.option(
        "--addr", "addrs", envvar="KEYQUORUM_ADDR", metavar="URL", multiple=True,
        help="A node's API URL; repeat it to ask several nodes [env KEYQUORUM_ADDR, "
             "space-separated].")(command)


def _view(addr: str, cacert: Path | None) -> dict[str, Any]:
    return _Sys(addr, None, cacert).json("GET", "/v1/sys/raft/status")


def _healthy(view: dict[str, Any]) -> bool:
    return bool(view["has_quorum"]) and not view["sealed"]


def _index(value: object) -> str:
    return "-" if value is None else str(value)


def status_rows(views: list[dict[str, Any]]) -> list[list[str]]:
    """One row per node: first the nodes asked, then the peers they named."""
    asked = {view["address"]: view for view in views}
    leader = next((v["leader"] for v in views if v["leader"]), None)
    # A peer's replication progress as the leader sees it, when the leader was asked.
    matched: dict[str, Any] = {}
    connected: dict[str, bool] = {}
    for view in views:
        for peer in view["peers"]:
            connected[peer["address"]] = connected.get(peer["address"], False) or peer[
                "connected"]
            if peer["match_index"] is not None:
                matched[peer["address"]] = peer["match_index"]

    rows = []
    for address, view in sorted(asked.items()):
        health = "ok" if _healthy(view) else "no quorum" if not view["has_quorum"] else "sealed"
        rows.append([view["node_id"], address, view["role"], str(view["term"]),
                     str(view["commit_index"]), str(view["applied_index"]),
                     "sealed" if view["sealed"] else "unsealed", health])
    for address in sorted(set(connected) - set(asked)):
        role = "leader" if address == leader else "follower?"
        reach = "connected" if connected[address] else "unreachable"
        rows.append(["-", address, role, "-", _index(matched.get(address)), "-", "-", reach])
    return rows


HEADER = ["NODE", "RAFT ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED", "SEAL", "HEALTH"]


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [HEADER, *rows]) for i in range(len(HEADER))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths,
                                                                         strict=True)).rstrip()
                     for row in [HEADER, *rows])


def _addresses(addrs: tuple[str, ...]) -> list[str]:
    # KEYQUORUM_ADDR may hold several URLs separated by spaces.
    found = [part for addr in addrs for part in addr.split()]
    if not found:
        raise AdminError("no API address: pass --addr or set KEYQUORUM_ADDR to a node's "
                         "API URL, such as https://127.0.0.1:8696")
    return found


@click.command()
@_addr_options
def status(addrs: tuple[str, ...], cacert: Path | None) -> None:
    """A table of the cluster: nodes, roles, leader, term, indexes, seal and health.

    Ask every node (repeat --addr) for a full row each; one node shows its peers
    as far as it knows them. Exits 1 when a node asked is unreachable or unhealthy.
    """
    views: list[dict[str, Any]] = []
    failures: list[str] = []
    for addr in _addresses(addrs):
        try:
            views.append(_view(addr, cacert))
        except AdminFailure as error:
            failures.append(error.message)
    if views:
        leader = next((v["leader"] for v in views if v["leader"]), None)
        click.echo(f"Leader: {leader or 'none known'}")
        click.echo(_table(status_rows(views)))
    for failure in failures:
        click.echo(f"Error: {failure}", err=True)
    sys.exit(EXIT_OK if not failures and all(_healthy(v) for v in views) else EXIT_FAILURE)


@click.group()
def raft() -> None:
    """The Raft cluster's members."""


@raft.command("list-peers")
@_addr_options
def list_peers(addrs: tuple[str, ...], cacert: Path | None) -> None:
    """Every member as the node at --addr knows it: address, state, voter."""
    view = _view(_addresses(addrs)[0], cacert)
    rows = [["NODE", "ADDRESS", "STATE", "VOTER"],
            [view["node_id"], view["address"], view["role"], "true"]]
    for peer in view["peers"]:
        state = "leader" if peer["address"] == view["leader"] else "follower"
        if not peer["connected"]:
            state = "unreachable"
        rows.append(["-", peer["address"], state, "true"])
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _member_options(command: Any) -> Any:
    command = click.option("--token", envvar="KEYQUORUM_TOKEN", metavar="TOKEN",
                           help="A root token [env KEYQUORUM_TOKEN].")(command)
    command = click.option("--cacert", envvar="KEYQUORUM_CACERT", metavar="FILE",
                           type=click.Path(dir_okay=False, path_type=Path),
                           help="The CA of the API's certificate [env KEYQUORUM_CACERT]."
                           )(command)
    command = click.option("--addr", envvar="KEYQUORUM_ADDR", metavar="URL",
                           help="Any member's API URL [env KEYQUORUM_ADDR].")(command)
    return click.argument("address", metavar="HOST:PORT")(command)


def _change(path: str, address: str, addr: str | None, token: str | None,
            cacert: Path | None) -> list[str]:
    answer = _Sys(addr, token, cacert).json("POST", path, {"address": address},
                                            needs_token=True)
    members: list[str] = answer["members"]
    return members


@raft.command()
@_member_options
@click.option("--node-addr", metavar="URL", required=True,
              help="The joining node's API URL: its view of the members is checked first.")
def join(address: str, node_addr: str, addr: str | None, token: str | None,
         cacert: Path | None) -> None:
    """Add the node whose Raft address is HOST:PORT ([raft] listen of its node.toml).

    Start that node first, with an empty data folder, the cluster's secret, CA and
    seal, and [raft] peers naming every current member. One change at a time.
    """
    _check_joining_node(address, node_addr, addr, cacert)
    members = _change("/v1/sys/raft/join", address, addr, token, cacert)
    click.echo(f"{address} joined; the cluster has {len(members)} members: "
               f"{', '.join(members)}")


def _check_joining_node(address: str, node_addr: str, addr: str | None,
                        cacert: Path | None) -> None:
    """Refuse unless the joining node is at ``address`` and names every current member.

    pysyncobj hands a joining node no member list: it keeps the one it started with
    and learns only of later changes. One that missed a member would count a majority
    of the wrong set, and could lead a part of the cluster on its own.
    """
    if not addr:
        raise AdminError("no API address: pass --addr or set KEYQUORUM_ADDR to a "
                         "member's API URL")
    member = _view(addr, cacert)
    joining = _view(node_addr, cacert)
    if joining["address"] != address:
        raise AdminError(f"the node at {node_addr} has the Raft address "
                         f"{joining['address']}, not {address}")
    # Both sides with the joining node counted, so that a join repeated after it
    # succeeded reaches the API, which says it is already a member.
    current = {address, member["address"], *(peer["address"] for peer in member["peers"])}
    named = {address, *(peer["address"] for peer in joining["peers"])}
    if named != current:
        raise AdminError(f"the joining node's [raft] peers must name exactly the current "
                         f"members: {', '.join(sorted(current - {address}))}; it names "
                         f"{', '.join(sorted(named - {address})) or 'none'}. Stop it, fix its "
                         "node.toml, wipe its data folder and start it again")


@raft.command("remove-peer")
@_member_options
def remove_peer(address: str, addr: str | None, token: str | None,
                cacert: Path | None) -> None:
    """Remove the member whose Raft address is HOST:PORT; it no longer counts for quorum.

    Ask any other member; to remove the leader, stop it first. Stop the removed node
    for good, and wipe its data folder before it ever joins again.
    """
    members = _change("/v1/sys/raft/remove-peer", address, addr, token, cacert)
    click.echo(f"{address} removed; the cluster has {len(members)} members: "
               f"{', '.join(members)}")


def register(cli: click.Group) -> None:
    cli.add_command(status)
    operator = cli.commands["operator"]
    assert isinstance(operator, click.Group)
    operator.add_command(raft)
