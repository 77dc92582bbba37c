"""`keyquorum operator ...`: initialize, unseal, seal, rotate, rekey, snapshots.

Each command calls one node's ``/v1/sys/`` endpoints (cluster/sys_api.py), found by
``--addr``/``KEYQUORUM_ADDR``, with ``--cacert``/``KEYQUORUM_CACERT``; the commands
that change the cluster take a root token (``--token``/``KEYQUORUM_TOKEN``). Unseal
is per node: run it against every node. Shares are asked for without echo unless
given as arguments, and printed only by init and rekey, once.
"""

from __future__ import annotations

import json
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click

from .cli_admin import AdminError, AdminFailure, _answered

REQUEST_TIMEOUT_SECONDS = 120.0
CHUNK_BYTES = 64 * 1024


class _Sys:
    def __init__(self, addr: str | None, token: str | None, cacert: Path | None) -> None:
        if not addr:
            raise AdminError("no API address: pass --addr or set KEYQUORUM_ADDR to a node's "
                             "API URL, such as https://127.0.0.1:8696")
        self.addr = addr.rstrip("/")
        self.token = token
        try:
            self.context = ssl.create_default_context(cafile=str(cacert) if cacert else None)
        except (OSError, ssl.SSLError) as error:
            raise AdminError(f"cannot read the CA file {cacert}: {error}") from None

    def open(self, method: str, path: str, data: Any = None,
             headers: dict[str, str] | None = None, needs_token: bool = False) -> Any:
        if needs_token and not self.token:
            raise AdminError("this command needs a root token: pass --token or set "
                             "KEYQUORUM_TOKEN")
        sent = dict(headers or {})
        if self.token:
            sent["X-Keyquorum-Token"] = self.token
        request = urllib.request.Request(self.addr + path, method=method, data=data,
                                         headers=sent)
        try:
            return urllib.request.urlopen(request, context=self.context,
                                          timeout=REQUEST_TIMEOUT_SECONDS)
        except urllib.error.HTTPError as error:
            with error:
                raise _answered(error.code, error.read()) from None
        except (OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise AdminFailure(f"cannot reach the API at {self.addr}: {reason}; check "
                               "--addr and --cacert") from None

    def json(self, method: str, path: str, body: dict[str, Any] | None = None,
             needs_token: bool = False) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        with self.open(method, path, data, {"Content-Type": "application/json"},
                       needs_token) as response:
            answer: dict[str, Any] = json.loads(response.read() or b"{}")
            return answer


def _options(command: Any) -> Any:
    for option in reversed([
        click.option("--addr", envvar="KEYQUORUM_ADDR", metavar="URL",
                     help="A node's API URL [env KEYQUORUM_ADDR]."),
        click.option("--token", envvar="KEYQUORUM_TOKEN", metavar="TOKEN",
                     help="A root token [env KEYQUORUM_TOKEN]."),
        click.option("--cacert", envvar="KEYQUORUM_CACERT", metavar="FILE",
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="The CA of the API's certificate [env KEYQUORUM_CACERT]."),
    ]):
        command = option(command)
    return command


def _show_status(status: dict[str, Any]) -> None:
    state = "sealed" if status["sealed"] else "unsealed"
    if not status["initialized"]:
        state = "not initialized"
    click.echo(f"Seal type       {status['kind'] or '-'}")
    click.echo(f"State           {state}")
    click.echo(f"Threshold       {status['threshold']} of {status['shares']} shares")
    click.echo(f"Unseal progress {status['progress_text']}")
    click.echo(f"Keyring version {status['keyring_version'] or '-'}")


@click.group()
def operator() -> None:
    """Initialize, unseal and seal nodes; rotate the keyring; rekey; snapshots."""


@operator.command()
@click.option("-key-shares", "--key-shares", "shares", type=click.IntRange(1, 255), default=5,
              show_default=True, help="How many unseal shares to make.")
@click.option("-key-threshold", "--key-threshold", "threshold", type=click.IntRange(1, 255),
              default=3, show_default=True, help="How many shares unseal a node.")
@_options
def init(shares: int, threshold: int, addr: str | None, token: str | None,
         cacert: Path | None) -> None:
    """Initialize the cluster: print the unseal shares and a root token, once."""
    if threshold > shares:
        raise AdminError(f"-key-threshold {threshold} exceeds -key-shares {shares}")
    answer = _Sys(addr, token, cacert).json(
        "POST", "/v1/sys/init", {"key_shares": shares, "key_threshold": threshold})
    for number, share in enumerate(answer["keys"], 1):
        click.echo(f"Unseal Key {number}: {share}")
    click.echo(f"\nInitial Root Token: {answer['root_token']}\n")
    click.echo(f"The cluster is initialized with {shares} shares and a threshold of "
               f"{threshold}.\nThese shares are shown this once and stored nowhere: hand "
               "each to a different\noperator. Every node (this one included, after a "
               f"restart) needs {threshold} of them\nto unseal: keyquorum operator unseal.")


@operator.command()
@click.argument("key", required=False)
@click.option("--reset", is_flag=True, help="Forget the shares given so far.")
@_options
def unseal(key: str | None, reset: bool, addr: str | None, token: str | None,
           cacert: Path | None) -> None:
    """Give this node one unseal share (asked for without echo when not given)."""
    client = _Sys(addr, token, cacert)
    if reset:
        body: dict[str, Any] = {"reset": True}
    else:
        status = client.json("GET", "/v1/sys/seal-status")
        if status["initialized"] and status["kind"] == "pkcs11":
            body = {}
        else:
            body = {"key": key or click.prompt("Unseal key (will be hidden)", hide_input=True)}
    _show_status(client.json("POST", "/v1/sys/unseal", body))


@operator.command()
@_options
def seal(addr: str | None, token: str | None, cacert: Path | None) -> None:
    """Seal this node: it forgets the keyring and serves no KMIP until unsealed."""
    _show_status(_Sys(addr, token, cacert).json("POST", "/v1/sys/seal", needs_token=True))


@operator.command("seal-status")
@_options
def seal_status(addr: str | None, token: str | None, cacert: Path | None) -> None:
    """Whether this node is sealed, and its unseal progress."""
    _show_status(_Sys(addr, token, cacert).json("GET", "/v1/sys/seal-status"))


@operator.command()
@_options
def rotate(addr: str | None, token: str | None, cacert: Path | None) -> None:
    """Add a keyring term for new writes; older terms keep opening what they sealed."""
    answer = _Sys(addr, token, cacert).json("POST", "/v1/sys/rotate", needs_token=True)
    click.echo(f"Keyring rotated: new writes use term {answer['keyring_version']}.")


@operator.group()
def rekey() -> None:
    """Replace the unseal shares, step by step: init, each holder's update, new shares.

    Run every step against the same node: the attempt lives in its memory only.
    Unsealed nodes keep serving throughout.
    """


def _show_rekey(status: dict[str, Any]) -> None:
    if not status["started"]:
        click.echo("No rekey in progress on this node.")
        return
    click.echo(f"Nonce           {status['nonce']}")
    click.echo(f"New split       {status['key_threshold']} of {status['key_shares']} shares")
    click.echo(f"Rekey progress  {status['progress_text']}")


@rekey.command("init")
@click.option("-key-shares", "--key-shares", "shares", type=click.IntRange(1, 255),
              required=True, help="How many new unseal shares to make.")
@click.option("-key-threshold", "--key-threshold", "threshold", type=click.IntRange(1, 255),
              required=True, help="How many new shares unseal a node.")
@_options
def rekey_init(shares: int, threshold: int, addr: str | None, token: str | None,
               cacert: Path | None) -> None:
    """Start a rekey; hand the nonce to the holders of the current shares."""
    if threshold > shares:
        raise AdminError(f"-key-threshold {threshold} exceeds -key-shares {shares}")
    status = _Sys(addr, token, cacert).json(
        "POST", "/v1/sys/rekey/init", {"key_shares": shares, "key_threshold": threshold},
        needs_token=True)
    _show_rekey(status)
    click.echo(f"\nEach holder of a current share runs, against this same node:\n"
               f"  keyquorum operator rekey update --nonce {status['nonce']}")


@rekey.command("update")
@click.argument("key", required=False)
@click.option("--nonce", help="The attempt's nonce, from rekey init or rekey status.")
@_options
def rekey_update(key: str | None, nonce: str | None, addr: str | None, token: str | None,
                 cacert: Path | None) -> None:
    """Give one current share (asked for without echo when not given)."""
    client = _Sys(addr, token, cacert)
    if nonce is None:
        raise AdminError("pass --nonce: the one rekey init printed (keyquorum operator "
                         "rekey status shows it)")
    if key is None:
        key = click.prompt("Current unseal key (will be hidden)", hide_input=True)
    answer = client.json("POST", "/v1/sys/rekey/update", {"key": key, "nonce": nonce})
    if not answer["complete"]:
        _show_rekey(answer)
        return
    for number, share in enumerate(answer["keys"], 1):
        click.echo(f"New Unseal Key {number}: {share}")
    click.echo(f"\nThe old shares no longer unseal. {answer['key_threshold']} of these "
               f"{answer['key_shares']} do; they are shown this once. Unsealed nodes keep "
               "serving.")


@rekey.command("status")
@_options
def rekey_status(addr: str | None, token: str | None, cacert: Path | None) -> None:
    """The rekey attempt on this node, if any: its nonce and progress."""
    _show_rekey(_Sys(addr, token, cacert).json("GET", "/v1/sys/rekey/init"))


@rekey.command("cancel")
@_options
def rekey_cancel(addr: str | None, token: str | None, cacert: Path | None) -> None:
    """Abandon this node's rekey attempt; the current shares stay valid."""
    _Sys(addr, token, cacert).json("DELETE", "/v1/sys/rekey/init", needs_token=True)
    click.echo("Rekey cancelled; the current shares stay valid.")


@operator.group()
def snapshot() -> None:
    """Save the whole state encrypted, or restore it onto a cluster."""


@snapshot.command("save")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_options
def snapshot_save(file: Path, addr: str | None, token: str | None,
                  cacert: Path | None) -> None:
    """Write an encrypted snapshot to FILE; only the unseal keys open it."""
    client = _Sys(addr, token, cacert)
    partial = file.with_name(file.name + ".partial")
    with client.open("GET", "/v1/sys/snapshot", needs_token=True) as response:
        total = int(response.headers.get("Content-Length") or 0)
        with partial.open("wb") as out, _progress(total, "Saving snapshot") as bar:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))
    partial.replace(file)
    click.echo(f"Snapshot saved to {file} ({file.stat().st_size} bytes).")


@snapshot.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--key", "keys", multiple=True,
              help="An unseal share of the cluster that saved FILE; repeat.")
@_options
def snapshot_restore(file: Path, keys: tuple[str, ...], addr: str | None, token: str | None,
                     cacert: Path | None) -> None:
    """Replace the cluster's whole state with FILE's; needs the saving cluster's shares."""
    client = _Sys(addr, token, cacert)
    given = list(keys) or [key.strip() for key in click.prompt(
        "Unseal keys of the saving cluster, comma-separated (hidden)",
        hide_input=True).split(",")]
    data = file.read_bytes()
    with _progress(len(data), "Restoring snapshot") as bar:
        def chunks() -> Any:
            for at in range(0, len(data), CHUNK_BYTES):
                bar.update(min(CHUNK_BYTES, len(data) - at))
                yield data[at:at + CHUNK_BYTES]

        with client.open("POST", "/v1/sys/snapshot/restore", chunks(),
                         {"Content-Type": "application/octet-stream",
                          "Content-Length": str(len(data)),
                          "X-Keyquorum-Unseal-Keys": ",".join(given)},
                         needs_token=True) as response:
            answer = json.loads(response.read())
    click.echo(f"Restored {answer['objects']} object(s) from {file}. This node is unsealed "
               "with the snapshot's keys;\nunseal the other nodes with the same keys.")


def _progress(length: int, label: str) -> Any:
    """A progress bar on stderr, so that stdout keeps only the command's answer."""
    return click.progressbar(length=length, label=label, file=sys.stderr)


def register(cli: click.Group) -> None:
    cli.add_command(operator)
