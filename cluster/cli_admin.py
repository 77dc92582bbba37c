"""`keyquorum scope|role|credential|ca|token|listener ...`: the admin API from a shell.

Each command is one or two calls to the admin API (cluster/admin_api.py). Where to
reach it comes from flags or the environment: ``--addr``/``KEYQUORUM_ADDR`` (any
node's API URL), ``--token``/``KEYQUORUM_TOKEN``, ``--cacert``/``KEYQUORUM_CACERT``
(the CA that signed the API's certificate). Output is a readable table, or the
API's JSON with ``--json``.

Exit codes as for every keyquorum command: 0 ok; 2 when the input is wrong (the API
answered 4xx: the message says what to fix); 1 when the cluster could not be
reached or could not commit (retry, or try another node).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from .pki import write_private_file

EXIT_FAILURE = 1
EXIT_USAGE = 2
REQUEST_TIMEOUT_SECONDS = 30.0

F = TypeVar("F", bound=Callable[..., Any])


class AdminError(click.ClickException):
    """Wrong input, or a 4xx from the API: the message says what to fix."""

    exit_code = EXIT_USAGE


class AdminFailure(AdminError):
    """The API could not be reached or could not commit: retry, or try another node."""

    exit_code = EXIT_FAILURE


class AdminClient:
    def __init__(self, addr: str | None, token: str | None, cacert: Path | None) -> None:
        if not addr:
            raise AdminError("no API address: pass --addr or set KEYQUORUM_ADDR to a node's "
                             "API URL, such as https://127.0.0.1:8696")
        if not token:
            raise AdminError("no token: pass --token or set KEYQUORUM_TOKEN")
        self._addr = addr.rstrip("/")
        self._token = token
        try:
            self._context = ssl.create_default_context(
                cafile=str(cacert) if cacert else None)
        except (OSError, ssl.SSLError) as error:
            raise AdminError(f"cannot read the CA file {cacert}: {error}; check --cacert or "
                             "KEYQUORUM_CACERT") from None

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             query: dict[str, str] | None = None) -> dict[str, Any]:
        url = self._addr + urllib.parse.quote(path)
        if query:
            url += "?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(
            url, method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"X-Keyquorum-Token": self._token, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, context=self._context,
                                        timeout=REQUEST_TIMEOUT_SECONDS) as response:
                answer: dict[str, Any] = json.loads(response.read() or b"{}")
                return answer
        except urllib.error.HTTPError as error:
            with error:
                raise _answered(error.code, error.read()) from None
        except (OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise AdminFailure(f"cannot reach the API at {self._addr}: {reason}; check "
                             "--addr or KEYQUORUM_ADDR, and --cacert or KEYQUORUM_CACERT") from None


def _answered(status: int, content: bytes) -> AdminError:
    try:
        errors = json.loads(content).get("errors") or [content.decode(errors="replace")]
    except ValueError:
        errors = [content.decode(errors="replace")]
    message = "; ".join(str(error) for error in errors)
    if status in (401, 403):
        message += " (check --token or KEYQUORUM_TOKEN)"
    if status >= 500:
        return AdminFailure(f"{message} [HTTP {status}]")
    return AdminError(f"{message} [HTTP {status}]")


def api_options(command: F) -> F:
    """--addr, --token, --cacert and --json, on every command of these groups."""
    options = [
        click.option("--addr", envvar="KEYQUORUM_ADDR", metavar="URL",
                     help="A node's API URL [env KEYQUORUM_ADDR]."),
        click.option("--token", envvar="KEYQUORUM_TOKEN", metavar="TOKEN",
                     help="An admin token [env KEYQUORUM_TOKEN]."),
        click.option("--cacert", envvar="KEYQUORUM_CACERT", metavar="FILE",
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="The CA of the API's certificate [env KEYQUORUM_CACERT]."),
        click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answer."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _client(options: dict[str, Any]) -> AdminClient:
    return AdminClient(options.pop("addr"), options.pop("token"), options.pop("cacert"))


def _show(answer: dict[str, Any], as_json: bool, rows: Sequence[Sequence[Any]] | None = None,
          header: Sequence[str] = ()) -> None:
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    if rows is None:
        rows = [(key, _cell(value)) for key, value in answer.items()]
        header = ("field", "value")
    click.echo(_table(header, rows))


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "-"
    return "-" if value is None else str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(header)] + [[_cell(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             for row in cells]
    if header:
        lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


# Scopes.


@click.group()
def scope() -> None:
    """Scopes: the partitions of managed objects, one per tenant."""


@scope.command("create")
@click.argument("name")
@api_options
def scope_create(name: str, as_json: bool, **options: Any) -> None:
    """Create scope NAME."""
    _show(_client(options).call("POST", f"/v1/kmip/scope/{name}"), as_json)


@scope.command("list")
@api_options
def scope_list(as_json: bool, **options: Any) -> None:
    """List the scopes the token may see."""
    answer = _client(options).call("GET", "/v1/kmip/scope")
    _show(answer, as_json, [(name,) for name in answer["scopes"]], ("scope",))


@scope.command("delete")
@click.argument("name")
@click.option("--force", is_flag=True, help="Also destroy the objects the scope holds.")
@api_options
def scope_delete(name: str, force: bool, as_json: bool, **options: Any) -> None:
    """Delete scope NAME with its roles and credentials."""
    query = {"force": "true"} if force else None
    _show(_client(options).call("DELETE", f"/v1/kmip/scope/{name}", query=query), as_json)


# Roles.


@click.group()
def role() -> None:
    """Roles: the KMIP operations a scope's clients may run."""


@role.command("write")
@click.argument("scope_name", metavar="SCOPE")
@click.argument("name", metavar="ROLE")
@click.option("--operation", "operations", multiple=True, metavar="NAME",
              help="An operation to allow (get, create, ... or all, none); repeat it.")
@click.option("--key-type", type=click.Choice(["ec", "rsa"]), default="ec", show_default=True,
              help="Key type of the client certificates the role issues.")
@click.option("--key-bits", type=int, help="256/384/521 for ec, 2048/3072/4096 for rsa.")
@click.option("--ttl", default="8760h", show_default=True,
              help="Lifetime of issued certificates: seconds, or 30d, 8760h, ...")
@api_options
def role_write(scope_name: str, name: str, operations: tuple[str, ...], key_type: str,
               key_bits: int | None, ttl: str, as_json: bool, **options: Any) -> None:
    """Create or replace ROLE in SCOPE."""
    if not operations:
        raise AdminError("give at least one --operation (such as get, create, or all)")
    body: dict[str, Any] = {
        (op if op.startswith("operation_") else f"operation_{op}"): True for op in operations}
    body.update(tls_client_key_type=key_type, tls_client_ttl=ttl)
    if key_bits is not None:
        body["tls_client_key_bits"] = key_bits
    answer = _client(options).call("POST", f"/v1/kmip/scope/{scope_name}/role/{name}", body)
    _show(answer, as_json)


@role.command("read")
@click.argument("scope_name", metavar="SCOPE")
@click.argument("name", metavar="ROLE")
@api_options
def role_read(scope_name: str, name: str, as_json: bool, **options: Any) -> None:
    """Show ROLE of SCOPE."""
    _show(_client(options).call("GET", f"/v1/kmip/scope/{scope_name}/role/{name}"), as_json)


@role.command("list")
@click.argument("scope_name", metavar="SCOPE")
@api_options
def role_list(scope_name: str, as_json: bool, **options: Any) -> None:
    """List the roles of SCOPE."""
    answer = _client(options).call("GET", f"/v1/kmip/scope/{scope_name}/role")
    _show(answer, as_json, [(name,) for name in answer["roles"]], ("role",))


@role.command("delete")
@click.argument("scope_name", metavar="SCOPE")
@click.argument("name", metavar="ROLE")
@api_options
def role_delete(scope_name: str, name: str, as_json: bool, **options: Any) -> None:
    """Delete ROLE of SCOPE; its credentials stop working."""
    _show(_client(options).call("DELETE", f"/v1/kmip/scope/{scope_name}/role/{name}"),
          as_json)


# Credentials.


@click.group()
def credential() -> None:
    """Client certificates of a role."""


def _role_options(command: F) -> F:
    command = click.option("--role", "role_name", required=True, help="The role.")(command)
    return click.option("--scope", "scope_name", required=True, help="The scope.")(command)


def _base(scope_name: str, role_name: str) -> str:
    return f"/v1/kmip/scope/{scope_name}/role/{role_name}/credential"


_FORMATS = click.Choice(["pem", "pem_bundle", "der", "pkcs12"])


@credential.command("generate")
@_role_options
@click.option("--format", "format_", type=_FORMATS, default="pem", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the credential here (the key beside it as FILE.key for pem/der).")
@click.option("--common-name", help="Subject CN; random by default.")
@click.option("--san", "sans", multiple=True, help="A DNS name or IP for the SAN; repeat it.")
@click.option("--pkcs12-password", help="Encrypt the pkcs12 file with this password.")
@api_options
def credential_generate(scope_name: str, role_name: str, format_: str, output: Path | None,
                        common_name: str | None, sans: tuple[str, ...],
                        pkcs12_password: str | None, as_json: bool, **options: Any) -> None:
    """A new key and certificate for a role (vCenter: --format pem_bundle -o vcenter.pem)."""
    body: dict[str, Any] = {"format": format_, "sans": list(sans)}
    if common_name:
        body["common_name"] = common_name
    if pkcs12_password:
        body["pkcs12_password"] = pkcs12_password
    answer = _client(options).call("POST", f"{_base(scope_name, role_name)}/generate", body)
    _deliver(answer, format_, output, as_json)


@credential.command("sign")
@_role_options
@click.option("--csr", "csr_file", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="The PEM CSR to sign.")
@click.option("--format", "format_", type=click.Choice(["pem", "pem_bundle", "der"]),
              default="pem", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the certificate here.")
@api_options
def credential_sign(scope_name: str, role_name: str, csr_file: Path, format_: str,
                    output: Path | None, as_json: bool, **options: Any) -> None:
    """Sign a CSR (vCenter can generate one) as a credential of the role."""
    try:
        csr = csr_file.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise AdminError(f"cannot read the CSR {csr_file}: {error}; "
                         "give a PEM file to --csr") from None
    answer = _client(options).call("POST", f"{_base(scope_name, role_name)}/sign",
                                   {"csr": csr, "format": format_})
    _deliver(answer, format_, output, as_json)


@credential.command("lookup")
@_role_options
@click.option("--serial", required=True, help="The serial number, in hex.")
@api_options
def credential_lookup(scope_name: str, role_name: str, serial: str, as_json: bool,
                      **options: Any) -> None:
    """Show one credential."""
    answer = _client(options).call("GET", f"{_base(scope_name, role_name)}/lookup",
                                   query={"serial_number": serial})
    _show(answer, as_json)


@credential.command("list")
@_role_options
@api_options
def credential_list(scope_name: str, role_name: str, as_json: bool, **options: Any) -> None:
    """List a role's credentials."""
    answer = _client(options).call("GET", _base(scope_name, role_name))
    rows = [(c["serial_number"], c["common_name"], c["origin"],
             "revoked" if c["revoked"] else "valid") for c in answer["credentials"]]
    _show(answer, as_json, rows, ("serial", "common name", "origin", "status"))


@credential.command("revoke")
@_role_options
@click.option("--serial", required=True, help="The serial number, in hex.")
@api_options
def credential_revoke(scope_name: str, role_name: str, serial: str, as_json: bool,
                      **options: Any) -> None:
    """Revoke a credential: every node refuses it from its next connection."""
    answer = _client(options).call("POST", f"{_base(scope_name, role_name)}/revoke",
                                   {"serial_number": serial})
    _show(answer, as_json)


def _deliver(answer: dict[str, Any], format_: str, output: Path | None, as_json: bool) -> None:
    shown = ("serial_number", "scope", "role", "common_name", "not_after")
    summary: dict[str, Any] = {key: answer[key] for key in shown if key in answer}
    if output is None:
        if as_json:
            _show(answer, True)
            return
        _show(summary, False)
        for key in ("bundle", "certificate", "private_key", "pkcs12"):
            if key in answer and not (key != "bundle" and "bundle" in answer):
                click.echo(answer[key])
        return

    import base64

    # Files with a private key are written owner-only.
    if format_ == "pem_bundle":
        write_private_file(output, answer["bundle"].encode())
    elif format_ == "pkcs12":
        write_private_file(output, base64.b64decode(answer["pkcs12"]))
    else:
        binary = format_ == "der"
        certificate = answer["certificate"]
        output.write_bytes(base64.b64decode(certificate) if binary else certificate.encode())
        if "private_key" in answer:
            key = answer["private_key"]
            write_private_file(output.with_name(output.name + ".key"),
                               base64.b64decode(key) if binary else key.encode())
    summary["written"] = str(output)
    _show(summary, as_json)


# CAs.


@click.group()
def ca() -> None:
    """The cluster CA, and external CAs whose certificates map to a scope and role."""


@ca.command("read")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the cluster CA certificate here.")
@api_options
def ca_read(output: Path | None, as_json: bool, **options: Any) -> None:
    """Show the cluster CA certificate and the imported CAs."""
    answer = _client(options).call("GET", "/v1/kmip/ca")
    if output is not None and answer.get("certificate"):
        output.write_text(answer["certificate"])
    if as_json:
        _show(answer, True)
        return
    click.echo(answer.get("certificate") or "(no cluster CA yet: create a scope)")
    rows = [(i["name"], i["scope"] or f"from {i['scope_field']}",
             i["role"] or f"from {i['role_field']}") for i in answer["imported"]]
    if rows:
        click.echo(_table(("imported CA", "scope", "role"), rows))


@ca.command("import")
@click.option("--name", required=True, help="A name for the imported CA.")
@click.option("--cert", "cert_file", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Its PEM certificate.")
@click.option("--scope", "scope_name", help="Map every certificate to this scope...")
@click.option("--scope-field", type=click.Choice(["CN", "O", "OU", "UID"]),
              help="...or take the scope from this subject field.")
@click.option("--role", "role_name", help="Map every certificate to this role...")
@click.option("--role-field", type=click.Choice(["CN", "O", "OU", "UID"]),
              help="...or take the role from this subject field.")
@api_options
def ca_import(name: str, cert_file: Path, scope_name: str | None, scope_field: str | None,
              role_name: str | None, role_field: str | None, as_json: bool,
              **options: Any) -> None:
    """Trust an external CA; its clients get the scope and role of the mapping."""
    try:
        certificate = cert_file.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise AdminError(f"cannot read {cert_file}: {error}; "
                         "give a PEM file to --cert") from None
    body = {"name": name, "certificate": certificate, "scope": scope_name,
            "scope_field": scope_field, "role": role_name, "role_field": role_field}
    _show(_client(options).call("POST", "/v1/kmip/ca", body), as_json)


# Admin tokens.


@click.group()
def token() -> None:
    """Admin API tokens: read-only, or limited to one scope; with a lifetime or without."""


def _policy(text: str) -> dict[str, Any]:
    """The API's kind and scope for --policy read-only or scope:NAME."""
    if text == "read-only":
        return {"kind": "read-only"}
    kind, colon, name = text.partition(":")
    if kind == "scope" and colon and name:
        return {"kind": "scoped", "scope": name}
    raise AdminError(f"--policy {text!r} is not a policy: give read-only, or scope:NAME for "
                     "a token limited to scope NAME")


def _policy_text(entry: dict[str, Any]) -> str:
    return f"scope:{entry['scope']}" if entry["kind"] == "scoped" else str(entry["kind"])


def _when(seconds: int | None) -> str:
    if seconds is None:
        return "never"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@token.command("create")
@click.option("--policy", required=True, metavar="read-only|scope:NAME",
              help="What the token may do: read everything, or everything in scope NAME.")
@click.option("--ttl", metavar="DURATION",
              help="How long it works: seconds, or 30m, 1h, 7d; without it, until revoked.")
@click.option("--display-name", default="", help="A note on who holds it, shown by list.")
@api_options
def token_create(policy: str, ttl: str | None, display_name: str, as_json: bool,
                 **options: Any) -> None:
    """Create a token; its value is shown only this once."""
    body = _policy(policy)
    body["display_name"] = display_name
    if ttl is not None:
        body["ttl"] = int(ttl) if ttl.isdigit() else ttl
    answer = _client(options).call("POST", "/v1/auth/token/create", body)
    if as_json:
        _show(answer, True)
        return
    _show(answer, False, [("token", answer["token"]), ("accessor", answer["accessor"]),
                          ("policy", _policy_text(answer)),
                          ("expires", _when(answer["expires_at"]))], ("field", "value"))
    click.echo("The token is shown only now: keep it. Revoke it by its accessor.", err=True)


@token.command("list")
@api_options
def token_list(as_json: bool, **options: Any) -> None:
    """List the tokens made through the API (needs a root token), by accessor."""
    answer = _client(options).call("GET", "/v1/auth/token")
    rows = [(t["accessor"], _policy_text(t), t["display_name"] or "-", _when(t["created_at"]),
             "expired" if t["expired"] else _when(t["expires_at"]))
            for t in answer["tokens"]]
    _show(answer, as_json, rows, ("accessor", "policy", "display name", "created", "expires"))


@token.command("revoke")
@click.argument("accessor")
@api_options
def token_revoke(accessor: str, as_json: bool, **options: Any) -> None:
    """Revoke the token with ACCESSOR (token list shows them); it is refused at once."""
    _show(_client(options).call("POST", "/v1/auth/token/revoke", {"accessor": accessor}),
          as_json)


# The KMIP listener.


@click.group()
def listener() -> None:
    """The KMIP listener of every node: addresses, server names, TLS; applied live."""


def _listener_rows(answer: dict[str, Any]) -> list[tuple[str, Any]]:
    nodes = answer["node_listen_addrs"]
    return [
        ("listen_addrs", answer["listen_addrs"] or "(each node's node.toml)"),
        *((f"node_listen_addrs.{node}", texts) for node, texts in sorted(nodes.items())),
        (f"this node ({answer['node_id']}) listens on", answer["node_listens_on"]),
        ("server_hostnames", answer["server_hostnames"]),
        ("server_ips", answer["server_ips"]),
        ("tls_min_version", answer["tls_min_version"]),
        ("tls_cipher_suites", answer["tls_cipher_suites"]
         + (" (each node's own)" if answer["tls_cipher_suites_default"] else "")),
    ]


@listener.command("read")
@api_options
def listener_read(as_json: bool, **options: Any) -> None:
    """Show the listener settings, and where the node asked listens."""
    answer = _client(options).call("GET", "/v1/kmip/config")
    _show(answer, as_json, _listener_rows(answer), ("setting", "value"))


@listener.command("write")
@click.option("--listen-addr", "listen_addrs", multiple=True, metavar="HOST:PORT",
              help="Where every node listens; repeat for several.")
@click.option("--node-addr", "node_addrs", multiple=True, metavar="NODE=HOST:PORT",
              help="Where one node listens instead; repeat (replaces every node's entry).")
@click.option("--server-hostname", "hostnames", multiple=True, metavar="NAME",
              help="A DNS name for the server certificates' SAN; repeat.")
@click.option("--server-ip", "ips", multiple=True, metavar="IP",
              help="An IP address for the server certificates' SAN; repeat.")
@click.option("--tls-min-version", type=click.Choice(["1.2", "1.3"]))
@click.option("--ciphers", metavar="LIST", help="An OpenSSL cipher list for TLS 1.2.")
@click.option("--reset", is_flag=True,
              help="Start from the defaults (node.toml addresses and ciphers, TLS 1.2, no "
                   "extra names) instead of the current settings.")
@api_options
def listener_write(listen_addrs: tuple[str, ...], node_addrs: tuple[str, ...],
                   hostnames: tuple[str, ...], ips: tuple[str, ...],
                   tls_min_version: str | None, ciphers: str | None, reset: bool,
                   as_json: bool, **options: Any) -> None:
    """Change the listener on every node, without a restart.

    Settings not given keep their current values (with --reset, their defaults).
    """
    client = _client(options)
    body: dict[str, Any] = {}
    if not reset:
        current = client.call("GET", "/v1/kmip/config")
        body = {key: current[key] for key in ("listen_addrs", "node_listen_addrs",
                                              "server_hostnames", "server_ips",
                                              "tls_min_version")}
        if not current["tls_cipher_suites_default"]:
            body["tls_cipher_suites"] = current["tls_cipher_suites"]
    if listen_addrs:
        body["listen_addrs"] = list(listen_addrs)
    if node_addrs:
        body["node_listen_addrs"] = _node_addresses(node_addrs)
    if hostnames:
        body["server_hostnames"] = list(hostnames)
    if ips:
        body["server_ips"] = list(ips)
    if tls_min_version is not None:
        body["tls_min_version"] = tls_min_version
    if ciphers is not None:
        body["tls_cipher_suites"] = ciphers
    answer = client.call("POST", "/v1/kmip/config", body)
    _show(answer, as_json, _listener_rows(answer), ("setting", "value"))


def _node_addresses(entries: tuple[str, ...]) -> dict[str, list[str]]:
    nodes: dict[str, list[str]] = {}
    for entry in entries:
        node, equals, address = entry.partition("=")
        if not equals or not node or not address:
            raise AdminError(f"--node-addr {entry!r}: write NODE=HOST:PORT, such as "
                             "node-1=10.0.0.1:5696")
        nodes.setdefault(node, []).append(address)
    return nodes


ADMIN_GROUPS = (scope, role, credential, ca, token, listener)


def register(cli: click.Group) -> None:
    """Add the admin command groups to the `keyquorum` command."""
    for group in ADMIN_GROUPS:
        cli.add_command(group)

    # audit: devices, hashes and verify (cluster/cli_audit.py), over the same client.
    from .cli_audit import audit

    cli.add_command(audit)
