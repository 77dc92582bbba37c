"""`keyquorum dev`: a local cluster on 127.0.0.1 for development and `make run`.

Theory of operation
===================

First the folder is prepared (`prepare_cluster`): a CA, a client credential, a
cluster secret, an admin token, and per node a certificate and a TOML config. All of
it is kept: a second run with the same folder reuses every file, including each
node's ports and Raft data, so the cluster comes back with its keys. Then every node
is started as its own process running `keyquorum server`, its output going to its
node.log. Once every node answers on its health endpoint and exactly one of them
leads, cluster.json is written (atomically, so a script polling for it never reads
half a file) and the command stays in the foreground until SIGINT or SIGTERM, when
it stops every node: SIGTERM first, SIGKILL for a node that outlives the grace time.

The folder, which outside scripts rely on by these names:

    DIR/ca.pem                 the cluster CA certificate
    DIR/ca/ca.key              the CA key (folder 0700, key 0600)
    DIR/client.pem, client.key a client credential for KMIP clients: scope default,
                               role admin, issued through the admin API once the
                               nodes serve (cluster/dev_tenancy.py)
    DIR/secrets/               raft-password, admin-token (0600); root-key, from which
                               every node unseals itself (dev mode only: in production
                               the root key comes from unseal shares or an HSM), and
                               unseal-key, the same key as an unseal share (restores)
    DIR/nodes/<id>/            node.toml, node.pem, node.key, node.log, data/
    DIR/cluster.json           {"nodes": [{id, pid, kmip, api}], "admin_token"}

cluster.json exists only while the cluster is up: it is removed before the nodes
start and when they stop.

Ports: node N's KMIP port is the base port + N - 1 when that port is free (5696,
5697, ... by default), otherwise one the OS picks; Raft and API ports are always
picked by the OS. A port picked this way could be taken by another program between
the pick and the node's bind; the node then fails to start and says so in its log.

Node certificates are RSA-2048 because vCenter 7.0.3 negotiates the static-RSA suite
AES128-SHA256, which an EC certificate cannot serve (see keyquorum.cluster.tls).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from keyquorum.cluster.config import NodeId, load_config
from keyquorum.cluster.dev_tenancy import BootstrapError, NoAdminApi, bootstrap_tenancy
from keyquorum.cluster.pki import (
    CertificateAuthority,
    KeyType,
    create_ca,
    issue_certificate,
    write_private_file,
)
from keyquorum.cluster.seal import write_dev_root_key
from keyquorum.cluster.shamir import Share

DEFAULT_BASE_PORT = 5696
NODE_KEY_TYPE = KeyType.RSA_2048
# A dev folder lives for weeks at most; a year saves re-issuing on every run.
CERTIFICATE_TTL = timedelta(days=365)
# Raft elects a leader in about a second; starting Python and binding takes a few.
DEFAULT_START_TIMEOUT_SECONDS = 60.0
DEFAULT_STOP_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 0.2
LOG_TAIL_LINES = 40

SERVER_COMMAND = (sys.executable, "-m", "keyquorum.cluster.cli", "server")


class DevError(Exception):
    """The dev cluster cannot start; the message says what to do. Exit with `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class DevOptions:
    """What `keyquorum dev` was asked for."""

    root: Path
    node_count: int = 3
    # Node 1's preferred KMIP port; 0 lets the OS pick every port.
    base_port: int = DEFAULT_BASE_PORT
    # The command that runs one node; "--config FILE" is appended.
    server_command: Sequence[str] = SERVER_COMMAND
    start_timeout_seconds: float = DEFAULT_START_TIMEOUT_SECONDS
    stop_timeout_seconds: float = DEFAULT_STOP_TIMEOUT_SECONDS


@dataclass(frozen=True)
class DevLayout:
    """Where everything lives under the dev folder."""

    root: Path

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key_file(self) -> Path:
        return self.root / "ca" / "ca.key"

    @property
    def client_cert_file(self) -> Path:
        return self.root / "client.pem"

    @property
    def client_key_file(self) -> Path:
        return self.root / "client.key"

    @property
    def password_file(self) -> Path:
        return self.root / "secrets" / "raft-password"

    @property
    def admin_token_file(self) -> Path:
        return self.root / "secrets" / "admin-token"

    @property
    def root_key_file(self) -> Path:
        return self.root / "secrets" / "root-key"

    @property
    def unseal_key_file(self) -> Path:
        return self.root / "secrets" / "unseal-key"

    @property
    def cluster_file(self) -> Path:
        return self.root / "cluster.json"

    def node_dir(self, node_id: NodeId) -> Path:
        return self.root / "nodes" / node_id


@dataclass(frozen=True)
class DevNode:
    """One node of the dev cluster: its ports and files."""

    id: NodeId
    directory: Path
    kmip_port: int
    raft_port: int
    api_port: int
    # The address every listener binds; the chaos harness gives each node its own
    # in a network namespace (tests/chaos/netns_cluster.py).
    host: str = "127.0.0.1"
    # KMIP over HTTPS (kmip/https.py); None for a folder made before it existed.
    https_port: int | None = None

    @property
    def config_file(self) -> Path:
        return self.directory / "node.toml"

    @property
    def log_file(self) -> Path:
        return self.directory / "node.log"

    @property
    def kmip_address(self) -> str:
        return f"{self.host}:{self.kmip_port}"

    @property
    def kmip_https_url(self) -> str | None:
        return None if self.https_port is None else f"https://{self.host}:{self.https_port}/kmip"

    @property
    def raft_address(self) -> str:
        return f"{self.host}:{self.raft_port}"

    @property
    def api_url(self) -> str:
        return f"https://{self.host}:{self.api_port}"


def node_ids(count: int) -> list[NodeId]:
    return [NodeId(f"node-{number}") for number in range(1, count + 1)]


def prepare_cluster(options: DevOptions) -> list[DevNode]:
    """Create or reuse every file of the dev cluster; the nodes, in order."""
    layout = DevLayout(options.root.resolve())
    layout.root.mkdir(parents=True, exist_ok=True)

    # First the shared credentials, then the nodes that use them.
    ca = _ensure_ca(layout)
    if not layout.client_key_file.exists():
        client = issue_certificate(ca, "dev-client", sans=[], ttl=CERTIFICATE_TTL)
        client.write(layout.client_cert_file, layout.client_key_file)
    for secret_file in (layout.password_file, layout.admin_token_file):
        if not secret_file.exists():
            _make_private_dir(secret_file.parent)
            write_private_file(secret_file, secrets.token_urlsafe(32).encode() + b"\n")
    _ensure_root_key(layout)

    existing = sorted(path.parent.name for path in layout.root.glob("nodes/*/node.toml"))
    if existing:
        return _reuse_nodes(layout, options.node_count, existing)
    return _create_nodes(layout, ca, options)


def node_config_text(layout: DevLayout, node: DevNode, peers: Sequence[DevNode]) -> str:
    """The TOML config of one dev node; the full list of options is docs/configuration.md."""
    peer_list = ", ".join(_toml_string(peer.raft_address) for peer in peers)
    return f"""\
# Written by `keyquorum dev`, and reused as it is on the next run with this folder.

[node]
id = {_toml_string(node.id)}
data_dir = {_toml_string(str(node.directory / "data"))}

[kmip]
listen = {_toml_string(node.kmip_address)}
{_https_line(node)}
[tls]
ca_file = {_toml_string(str(layout.ca_file))}
cert_file = {_toml_string(str(node.directory / "node.pem"))}
key_file = {_toml_string(str(node.directory / "node.key"))}

[raft]
listen = {_toml_string(node.raft_address)}
peers = [{peer_list}]
password_file = {_toml_string(str(layout.password_file))}

[api]
listen = {_toml_string(f"{node.host}:{node.api_port}")}
admin_token_file = {_toml_string(str(layout.admin_token_file))}

[replication]
# Port 0: a free port, announced to the cluster (cluster/replication_state.py).
listen = "127.0.0.1:0"
{seal_section(layout)}"""


def _https_line(node: DevNode) -> str:
    if node.https_port is None:
        return ""
    return f"https_listen = {_toml_string(f'{node.host}:{node.https_port}')}\n"


def seal_section(layout: DevLayout) -> str:
    """Dev nodes unseal themselves from a key file, and say so in their log at start."""
    return f"""
[seal]
# Dev mode only: the root key in a plain file. Production uses shares or an HSM.
type = "dev-file"
key_file = {_toml_string(str(layout.root_key_file))}
"""


def cluster_info(nodes: Sequence[DevNode], pids: Sequence[int], admin_token: str) -> dict[str, Any]:
    """The content of cluster.json; outside scripts rely on exactly these keys."""
    entries: list[dict[str, Any]] = []
    for node, pid in zip(nodes, pids, strict=True):
        entry: dict[str, Any] = {"id": node.id, "pid": pid, "kmip": node.kmip_address,
                                 "api": node.api_url}
        if node.kmip_https_url is not None:
            entry["kmip_https"] = node.kmip_https_url
        entries.append(entry)
    return {
        "nodes": entries,
        "admin_token": admin_token,
    }


def write_cluster_file(path: Path, info: dict[str, Any]) -> None:
    """Write cluster.json whole or not at all, readable by its owner only (it holds a token)."""
    partial = path.with_name(path.name + ".partial")
    write_private_file(partial, (json.dumps(info, indent=2) + "\n").encode())
    os.replace(partial, path)


def run_dev(options: DevOptions) -> int:
    """Prepare, start and watch the dev cluster until a signal; the exit code."""
    layout = DevLayout(options.root.resolve())
    nodes = prepare_cluster(options)
    _check_ports_free(nodes, layout)
    layout.cluster_file.unlink(missing_ok=True)

    stop = _StopFlag()
    previous_handlers = {sig: signal.signal(sig, stop.handle) for sig in _STOP_SIGNALS}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes = [_start_node(node, options.server_command) for node in nodes]
        leader = _wait_until_serving(nodes, processes, layout, options, stop)
        if leader is None:
            return 0 if stop.requested else 1

        admin_token = layout.admin_token_file.read_text(encoding="utf-8").strip()
        if not _first_tenant(layout, leader, admin_token, nodes):
            return 1
        pids = [process.pid for process in processes]
        write_cluster_file(layout.cluster_file, cluster_info(nodes, pids, admin_token))
        _print_how_to_connect(layout, nodes, leader)
        _watch_until_stopped(nodes, processes, stop)
        return 0
    finally:
        _stop_nodes(processes, options.stop_timeout_seconds)
        layout.cluster_file.unlink(missing_ok=True)
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class _StopFlag:
    """Set from a signal handler; the loops poll it between short sleeps."""

    requested: bool = False
    signals: list[int] = field(default_factory=list)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.signals.append(signum)


def _ensure_ca(layout: DevLayout) -> CertificateAuthority:
    if layout.ca_key_file.exists():
        return CertificateAuthority.load(layout.ca_file, layout.ca_key_file)
    _make_private_dir(layout.ca_key_file.parent)
    ca = create_ca(f"keyquorum dev CA ({layout.root.name})")
    ca.write(layout.ca_file, layout.ca_key_file)
    return ca


def _ensure_root_key(layout: DevLayout) -> None:
    if not layout.root_key_file.exists():
        write_dev_root_key(layout.root_key_file)
    if not layout.unseal_key_file.exists():
        # One share of threshold 1 is the root key itself.
        root = bytes.fromhex(layout.root_key_file.read_text(encoding="ascii"))
        write_private_file(layout.unseal_key_file, Share(1, root).encode().encode() + b"\n")


def _make_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


def _create_nodes(
    layout: DevLayout, ca: CertificateAuthority, options: DevOptions
) -> list[DevNode]:
    ports = _pick_ports(options.node_count, options.base_port)
    nodes = [
        DevNode(node_id, layout.node_dir(node_id), kmip, raft, api, https_port=https)
        for node_id, (kmip, raft, api, https) in zip(
            node_ids(options.node_count), ports, strict=True)
    ]
    for node in nodes:
        node.directory.mkdir(parents=True, exist_ok=True)
        (node.directory / "data").mkdir(exist_ok=True)
        certificate = issue_certificate(
            ca,
            node.id,
            sans=["127.0.0.1", "localhost"],
            key_type=NODE_KEY_TYPE,
            ttl=CERTIFICATE_TTL,
        )
        certificate.write(node.directory / "node.pem", node.directory / "node.key")
        peers = [peer for peer in nodes if peer is not node]
        node.config_file.write_text(node_config_text(layout, node, peers), encoding="utf-8")
    return nodes


def _reuse_nodes(layout: DevLayout, node_count: int, existing: list[str]) -> list[DevNode]:
    expected = [str(node_id) for node_id in node_ids(node_count)]
    if sorted(expected) != existing:
        raise DevError(
            f"{layout.root} holds a cluster of {len(existing)} node(s) ({', '.join(existing)}); "
            f"run with --nodes {len(existing)}, or use another --dir to start afresh",
            exit_code=2,
        )

    # The configs are the record of each node's ports; read them back as the node will.
    # A folder from before the seal existed gets its [seal] section; objects it stored
    # in the clear do not open through the barrier (start such a folder afresh).
    nodes = []
    for node_id in node_ids(node_count):
        config_file = layout.node_dir(node_id) / "node.toml"
        if "[seal]" not in config_file.read_text(encoding="utf-8"):
            with config_file.open("a", encoding="utf-8") as config_text:
                config_text.write(seal_section(layout))
        config = load_config(layout.node_dir(node_id) / "node.toml")
        raft_port = int(config.raft.listen.rpartition(":")[2])
        https = config.kmip.https_listen
        nodes.append(
            DevNode(
                node_id,
                layout.node_dir(node_id),
                config.kmip.listen.port,
                raft_port,
                config.api.listen.port,
                https_port=None if https is None else https.port,
            )
        )
    return nodes


def _pick_ports(count: int, base_port: int) -> list[tuple[int, int, int, int]]:
    taken: set[int] = set()

    def claim(preferred: int | None) -> int:
        if preferred and preferred <= 65535 and preferred not in taken:
            if _port_is_free(preferred):
                taken.add(preferred)
                return preferred
        while True:
            port = _any_free_port()
            if port not in taken:
                taken.add(port)
                return port

    # KMIP ports first, so node 1 gets the well-known port when it is free.
    kmip_ports = [claim(base_port + index if base_port else None) for index in range(count)]
    # Then Raft, the API and KMIP over HTTPS, wherever the OS has room.
    return [(kmip, claim(None), claim(None), claim(None)) for kmip in kmip_ports]


def _port_is_free(port: int) -> bool:
    try:
        socket.create_server(("127.0.0.1", port)).close()
    except OSError:
        return False
    return True


def _any_free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port: int = probe.getsockname()[1]
        return port


def _check_ports_free(nodes: Sequence[DevNode], layout: DevLayout) -> None:
    for node in nodes:
        for purpose, port in (
            ("KMIP", node.kmip_port),
            ("Raft", node.raft_port),
            ("API", node.api_port),
            *([("KMIP HTTPS", node.https_port)] if node.https_port is not None else []),
        ):
            if not _port_is_free(port):
                raise DevError(
                    f"{node.id}'s {purpose} port {port} is in use; is a dev cluster already "
                    f"running from {layout.root}? Stop it, or use another --dir"
                )


def _start_node(node: DevNode, server_command: Sequence[str]) -> subprocess.Popen[bytes]:
    with node.log_file.open("ab") as log:
        log.write(f"--- keyquorum dev: starting {node.id} at {time.ctime()}\n".encode())
        log.flush()
        # A session of its own: Ctrl-C reaches only this command, which then stops
        # the nodes in order instead of all of them dying at once.
        return subprocess.Popen(
            [*server_command, "--config", str(node.config_file)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_until_serving(
    nodes: Sequence[DevNode],
    processes: Sequence[subprocess.Popen[bytes]],
    layout: DevLayout,
    options: DevOptions,
    stop: _StopFlag,
) -> DevNode | None:
    """The leader once every node is up; None on a signal or after printing a failure."""
    context = ssl.create_default_context(cafile=str(layout.ca_file))
    deadline = time.monotonic() + options.start_timeout_seconds
    statuses: dict[str, int | None] = {}
    while not stop.requested:
        # First any node that died, then everyone's health.
        for node, process in zip(nodes, processes, strict=True):
            if process.poll() is not None:
                _report_failure(
                    f"{node.id} exited during start-up with status {process.returncode}", [node]
                )
                return None
        statuses = {node.id: _health_status(node, context) for node in nodes}
        leaders = [node for node in nodes if statuses[node.id] == 200]
        if len(leaders) == 1 and all(code in (200, 429) for code in statuses.values()):
            return leaders[0]

        if time.monotonic() > deadline:
            seen = ", ".join(
                f"{node_id}={code or 'no answer'}" for node_id, code in statuses.items()
            )
            _report_failure(
                f"the cluster did not elect a leader within {options.start_timeout_seconds:g}s "
                f"(health: {seen})",
                nodes,
            )
            return None
        time.sleep(POLL_SECONDS)
    return None


def _health_status(node: DevNode, context: ssl.SSLContext) -> int | None:
    url = f"{node.api_url}/v1/sys/health"
    try:
        with urllib.request.urlopen(url, context=context, timeout=POLL_SECONDS * 5) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        # 429 and 503 are answers too: a standby, or a node without quorum yet.
        error.close()
        return error.code
    except (OSError, ssl.SSLError):
        return None


def _first_tenant(
    layout: DevLayout, leader: DevNode, admin_token: str, nodes: Sequence[DevNode]
) -> bool:
    """Scope default, role admin, and DIR/client.pem from it (cluster/dev_tenancy.py)."""
    try:
        bootstrap_tenancy(leader.api_url, admin_token, layout.ca_file, layout.ca_key_file,
                          layout.client_cert_file, layout.client_key_file)
    except NoAdminApi:
        # A node build without tenancy: the credential prepare_cluster wrote stands.
        print("keyquorum dev: the nodes have no tenancy API; client.pem is not a tenancy "
              "credential", file=sys.stderr)
    except BootstrapError as error:
        _report_failure(f"could not create the first tenant: {error}", nodes)
        return False
    return True


def _report_failure(reason: str, nodes: Sequence[DevNode]) -> None:
    print(f"keyquorum dev: {reason}", file=sys.stderr)
    for node in nodes:
        print(f"--- last lines of {node.log_file}:", file=sys.stderr)
        print(_tail(node.log_file, LOG_TAIL_LINES), file=sys.stderr)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        return f"(cannot read: {error.strerror})"
    return "\n".join(text.splitlines()[-lines:])


def _print_how_to_connect(layout: DevLayout, nodes: Sequence[DevNode], leader: DevNode) -> None:
    first = nodes[0]
    print(
        f"""\
keyquorum dev cluster is up: {len(nodes)} node(s), {leader.id} leads.

  KMIP         {", ".join(node.kmip_address for node in nodes)}
  KMIP HTTPS   {", ".join(str(node.kmip_https_url) for node in nodes)}
  CA           {layout.ca_file}
  client cert  {layout.client_cert_file}
  client key   {layout.client_key_file}
  health       {", ".join(f"{node.api_url}/v1/sys/health" for node in nodes)}
  details      {layout.cluster_file} (node pids, addresses, admin token)

Try:
  openssl s_client -connect {first.kmip_address} -CAfile {layout.ca_file} \\
      -cert {layout.client_cert_file} -key {layout.client_key_file}
  curl --cacert {layout.ca_file} {first.api_url}/v1/sys/health

Logs are in {layout.root / "nodes"}/<id>/node.log. Press Ctrl-C to stop every node.

WARNING: dev mode: every node unsealed itself from the root key in
  {layout.root_key_file}
  Anyone who reads that file opens every key. Production clusters unseal with
  shares (keyquorum operator init) or an HSM ([seal] type = "pkcs11").""",
        flush=True,
    )


def _watch_until_stopped(
    nodes: Sequence[DevNode], processes: Sequence[subprocess.Popen[bytes]], stop: _StopFlag
) -> None:
    # A node that dies is reported once and left down: a dev cluster survives a
    # minority of failures, which is worth being able to watch.
    reported: set[str] = set()
    while not stop.requested:
        for node, process in zip(nodes, processes, strict=True):
            if process.poll() is not None and node.id not in reported:
                reported.add(node.id)
                print(
                    f"keyquorum dev: {node.id} exited with status {process.returncode}; "
                    f"see {node.log_file}",
                    file=sys.stderr,
                    flush=True,
                )
        time.sleep(POLL_SECONDS)


def _stop_nodes(processes: Sequence[subprocess.Popen[bytes]], timeout_seconds: float) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()

    # One deadline for all: the nodes shut down in parallel.
    deadline = time.monotonic() + timeout_seconds
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _toml_string(text: str) -> str:
    # A JSON string is a valid TOML basic string: same quotes and escapes.
    return json.dumps(text)
