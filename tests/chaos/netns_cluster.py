"""A keyquorum cluster with every node in a network namespace of its own, so that
tests can cut nodes off each other as well as kill and pause them.

Theory of operation
===================

The topology, all of it made by this module and none of it in the root namespace::

    <tag>-hub:  br0 (10.213.0.100/24), the test's clients live here
                 |-- v1 ==veth== eth0 in <tag>-n1 (10.213.0.1/24)
                 |-- v2 ==veth== eth0 in <tag>-n2 (10.213.0.2/24)
                 `-- v3 ==veth== eth0 in <tag>-n3 (10.213.0.3/24)

Nothing is routed out of these namespaces: the 10.213.0.0/24 addresses exist only on
interfaces inside them, and each cluster has its own hub, so two clusters (two test
sessions) may use the same addresses without meeting.

The test process stays in the root namespace. A thread that talks to the nodes
enters the hub first (``client_side``, which calls setns(2) for the calling thread
only and restores it on exit); a socket keeps the namespace it was made in, and
threads started from inside inherit it.

A partition adds blackhole routes inside the node namespaces: node A drops whatever
it sends to node B and B what it sends to A, so established Raft connections go
silent (the nastier case: nobody is told) and new ones fail. Clients in the hub still
reach every node, so a cut-off leader keeps receiving requests and must refuse to
answer them from its stale state.

The nodes are real ``keyquorum server`` processes started with ``ip netns exec``,
which execs in place, so the pid the harness holds is the node's own. Their configs
come from cluster/dev.py (``prepare_cluster`` and ``node_config_text``), with the
namespace address as every listener's host and node certificates naming it.

Cleanup: ``stop`` kills every process and deletes every namespace this cluster made
(deleting a namespace deletes the veth ends in it); ``remove_stale_namespaces``
deletes namespaces whose name carries the prefix of a test process that is gone, and
those of this process at session end, for a test that died before its ``stop``.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, TypeVar

from keyquorum.cluster.dev import (
    CERTIFICATE_TTL,
    NODE_KEY_TYPE,
    DevLayout,
    DevNode,
    DevOptions,
    node_config_text,
    prepare_cluster,
)
from keyquorum.cluster.dev_tenancy import bootstrap_tenancy
from keyquorum.cluster.pki import CertificateAuthority, issue_certificate

# Every namespace this harness makes is named "kqchaos<pid>-...", so a later session
# can tell which ones belong to a test process that no longer runs.
NAMESPACE_PREFIX = "kqchaos"
SUBNET = "10.213.0"
HUB_ADDRESS = f"{SUBNET}.100"
# Inside its namespace each node has the well-known ports to itself.
KMIP_PORT, RAFT_PORT, API_PORT = 5696, 7000, 8696
# For a listener the dev config leaves to the OS (port 0).
SPARE_PORT = 7100

SERVER_COMMAND = (sys.executable, "-m", "keyquorum.cluster.cli", "server")
CLONE_NEWNET = 0x40000000
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass
class NamespacedNode:
    id: str
    namespace: str
    address: str
    config: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.id} was never started"
        return self.process.pid

    @property
    def api(self) -> str:
        return f"https://{self.address}:{API_PORT}"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run iproute2's ``ip``; a failure raises with ip's own message."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def _setns(path: str) -> None:
    with open(path, "rb") as handle:
        if _libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns {path}: {os.strerror(error)}")


@contextmanager
def in_namespace(name: str) -> Iterator[None]:
    """Run the calling thread (only it) inside the named network namespace."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(f"/run/netns/{name}")
        yield
    finally:
        try:
            if _libc.setns(original, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the original namespace")
        finally:
            os.close(original)


def remove_stale_namespaces(include_own: bool = False) -> list[str]:
    """Delete namespaces (and their processes) left by dead test processes; their names."""
    removed = []
    for line in ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(NAMESPACE_PREFIX):
            continue
        owner = name[len(NAMESPACE_PREFIX):].split("-", 1)[0]
        if not owner.isdigit():
            continue
        if int(owner) == os.getpid() and not include_own:
            continue
        if int(owner) != os.getpid() and _process_exists(int(owner)):
            continue
        _delete_namespace(name)
        removed.append(name)
    return removed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _delete_namespace(name: str) -> None:
    # A namespace with processes in it outlives `ip netns del` (it only loses its name),
    # so its processes go first.
    for pid in ip("netns", "pids", name, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    ip("netns", "del", name, check=False)


class NetnsCluster:
    """Three (or more) real nodes, each in its own namespace, joined by a hub bridge."""

    def __init__(self, directory: Path, nodes: int = 3) -> None:
        self.directory = directory.resolve()
        self.size = nodes
        self.tag = f"{NAMESPACE_PREFIX}{os.getpid()}-{secrets.token_hex(2)}"
        self.hub = f"{self.tag}-hub"
        self.nodes: dict[str, NamespacedNode] = {}
        self._namespaces: list[str] = []
        self._cuts: set[tuple[str, str]] = set()
        self._logs: list[IO[bytes]] = []
        self.layout = DevLayout(self.directory)

    @property
    def ca(self) -> Path:
        return self.layout.ca_file

    @property
    def client_cert(self) -> Path:
        return self.layout.client_cert_file

    @property
    def client_key(self) -> Path:
        return self.layout.client_key_file

    # Starting and stopping.

    def start(self, timeout: float = 90.0) -> None:
        try:
            self._make_network()
            self._write_configs()
            for node_id in self.nodes:
                self._launch(node_id)
            leader = self.leader(timeout=timeout)
            with self.client_side():
                bootstrap_tenancy(self.nodes[leader].api, self.admin_token(), self.ca,
                                  self.layout.ca_key_file, self.client_cert, self.client_key)
        except BaseException:
            self.stop()
            raise

    def _make_network(self) -> None:
        # First the hub with its bridge, then a namespace and a veth pair per node.
        self._add_namespace(self.hub)
        ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        ip("-n", self.hub, "addr", "add", f"{HUB_ADDRESS}/24", "dev", "br0")
        ip("-n", self.hub, "link", "set", "br0", "up")
        for number in range(1, self.size + 1):
            namespace = f"{self.tag}-n{number}"
            self._add_namespace(namespace)
            ip("-n", self.hub, "link", "add", f"v{number}", "type", "veth",
               "peer", "name", "eth0", "netns", namespace)
            ip("-n", self.hub, "link", "set", f"v{number}", "master", "br0", "up")
            ip("-n", namespace, "addr", "add", f"{SUBNET}.{number}/24", "dev", "eth0")
            ip("-n", namespace, "link", "set", "eth0", "up")

    def _add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self._namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def _write_configs(self) -> None:
        # The dev cluster's files (CA, client credential, secrets), then each node's
        # config and certificate for its namespace address.
        dev_nodes = prepare_cluster(DevOptions(root=self.directory, node_count=self.size,
                                               base_port=0))
        ca = CertificateAuthority.load(self.layout.ca_file, self.layout.ca_key_file)
        placed = [replace(node, host=f"{SUBNET}.{number}", kmip_port=KMIP_PORT,
                          raft_port=RAFT_PORT, api_port=API_PORT)
                  for number, node in enumerate(dev_nodes, start=1)]
        for number, node in enumerate(placed, start=1):
            _issue_node_certificate(ca, node)
            peers = [peer for peer in placed if peer is not node]
            text = _in_namespace_config(node_config_text(self.layout, node, peers), node.host)
            node.config_file.write_text(text, encoding="utf-8")
            self.nodes[node.id] = NamespacedNode(node.id, f"{self.tag}-n{number}", node.host,
                                                 node.config_file)

    def _launch(self, node_id: str) -> None:
        node = self.nodes[node_id]
        log = node.config.parent.joinpath("node.log").open("ab")
        self._logs.append(log)
        node.process = subprocess.Popen(
            ["ip", "netns", "exec", node.namespace, *SERVER_COMMAND, "--config",
             str(node.config)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def stop(self) -> None:
        for node in self.nodes.values():
            if node.process is not None and node.process.poll() is None:
                os.kill(node.pid, signal.SIGCONT)
                node.process.terminate()
        for node in self.nodes.values():
            if node.process is not None:
                try:
                    node.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()
        for namespace in reversed(self._namespaces):
            _delete_namespace(namespace)
        self._namespaces.clear()
        for handle in self._logs:
            handle.close()
        self._logs.clear()

    # Faults.

    def kill(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.process is not None and node.process.poll() is None:
            os.kill(node.pid, signal.SIGCONT)
            node.process.kill()
            node.process.wait()

    def pause(self, node_id: str) -> None:
        os.kill(self.nodes[node_id].pid, signal.SIGSTOP)

    def resume(self, node_id: str) -> None:
        os.kill(self.nodes[node_id].pid, signal.SIGCONT)

    def restart(self, node_id: str, wait: bool = True) -> None:
        """Start a killed node again from its config and data."""
        self._launch(node_id)
        if wait:
            wait_for(lambda: self.health(node_id) is not None, 30, f"{node_id} to serve")

    def partition(self, *groups: list[str]) -> None:
        """Cut every link between nodes of different groups; clients reach all nodes."""
        for group in groups:
            for other in groups:
                if other is group:
                    continue
                for near in group:
                    for far in other:
                        self._cut(near, far)

    def isolate(self, node_id: str) -> None:
        self.partition([node_id], [other for other in self.nodes if other != node_id])

    def heal(self) -> None:
        for near, far in sorted(self._cuts):
            ip("-n", self.nodes[near].namespace, "route", "del", "blackhole",
               f"{self.nodes[far].address}/32", check=False)
        self._cuts.clear()

    def _cut(self, near: str, far: str) -> None:
        if (near, far) in self._cuts:
            return
        ip("-n", self.nodes[near].namespace, "route", "add", "blackhole",
           f"{self.nodes[far].address}/32")
        self._cuts.add((near, far))

    # Observations.

    @contextmanager
    def client_side(self) -> Iterator[None]:
        """Run the calling thread in the hub, where every node's address is reachable."""
        with in_namespace(self.hub):
            yield

    def admin_token(self) -> str:
        return self.layout.admin_token_file.read_text(encoding="utf-8").strip()

    def health(self, node_id: str) -> tuple[int, dict[str, Any]] | None:
        """The health endpoint's status and body, or None when it does not answer."""
        context = ssl.create_default_context(cafile=str(self.ca))
        url = self.nodes[node_id].api + "/v1/sys/health"
        with self.client_side():
            try:
                with urllib.request.urlopen(url, context=context, timeout=2) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                with error:
                    return error.code, json.loads(error.read())
            except (OSError, ValueError):
                return None

    def leader(self, among: list[str] | None = None, timeout: float = 15.0) -> str:
        candidates = among or list(self.nodes)

        def find() -> str | None:
            for node_id in candidates:
                answer = self.health(node_id)
                if answer is not None and answer[0] == 200:
                    return node_id
            return None

        return wait_for(find, timeout, "a leader")

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context

    def rss_bytes(self, node_id: str) -> int:
        """The node's resident memory, from /proc."""
        for line in Path(f"/proc/{self.nodes[node_id].pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"{node_id} has no VmRSS")


def _in_namespace_config(text: str, host: str) -> str:
    """Move any listener the dev config leaves on loopback to the namespace address.

    Loopback inside a node's namespace is reachable by nobody else; a port 0 there
    (a dev listener the OS would place) becomes a fixed one, free in a namespace.
    """
    text = text.replace('"127.0.0.1:0"', f'"{host}:{SPARE_PORT}"')
    return text.replace('"127.0.0.1:', f'"{host}:')


def _issue_node_certificate(ca: CertificateAuthority, node: DevNode) -> None:
    certificate = issue_certificate(ca, node.id, sans=[node.host, "127.0.0.1", "localhost"],
                                    key_type=NODE_KEY_TYPE, ttl=CERTIFICATE_TTL)
    certificate.write(node.directory / "node.pem", node.directory / "node.key")


def wait_for(check: Callable[[], T | None | bool], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result  # type: ignore[return-value]
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
