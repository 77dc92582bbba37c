"""A cluster of real keyquorum processes on 127.0.0.1 that tests can hurt.

``Cluster`` starts ``keyquorum dev`` (the very command ``make run`` uses), reads
its cluster.json, and then can SIGKILL, SIGSTOP and SIGCONT a node, restart it
from its own config, and find the leader through the health endpoints. Every
process it started is gone when ``stop`` returns.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from kmip_requests import request, response

from keyquorum.kmip.messages import ResponseBatchItem, encode_message
from keyquorum.kmip.tables import Operation

KEYQUORUM = [sys.executable, "-m", "keyquorum.cluster.cli"]
T = TypeVar("T")


@dataclass
class Node:
    id: str
    pid: int
    kmip_host: str
    kmip_port: int
    api: str
    config: Path
    process: subprocess.Popen[bytes] | None = None  # set once the harness restarted it


class Cluster:
    def __init__(self, directory: Path, nodes: int = 3) -> None:
        self.directory = directory
        self.size = nodes
        self.nodes: dict[str, Node] = {}
        self._dev: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.directory / "client.key"

    @property
    def admin_token(self) -> str:
        """The root token `keyquorum dev` wrote for the admin API."""
        return (self.directory / "secrets" / "admin-token").read_text().strip()

    # Starting and stopping.

    def start(self, timeout: float = 90.0) -> None:
        cluster_file = self.directory / "cluster.json"
        cluster_file.unlink(missing_ok=True)
        log = self._log(self.directory.parent / f"{self.directory.name}-dev.log")
        self._dev = subprocess.Popen(
            [*KEYQUORUM, "dev", "--nodes", str(self.size), "--dir", str(self.directory),
             "--base-port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            wait_for(lambda: cluster_file.exists() or self._dev_died(), timeout, "cluster.json")
            if not cluster_file.exists():
                raise RuntimeError(f"keyquorum dev exited with {self._dev.returncode}")
        except BaseException:
            # A fixture whose start failed never reaches its stop: close the launcher's
            # log here, or a later test fails on the unclosed file when it is collected.
            self.stop()
            raise
        info = json.loads(cluster_file.read_text())
        for entry in info["nodes"]:
            host, port = entry["kmip"].rsplit(":", 1)
            config = self.directory / "nodes" / entry["id"] / "node.toml"
            self.nodes[entry["id"]] = Node(entry["id"], entry["pid"], host, int(port),
                                           entry["api"], config)

    def _log(self, path: Path) -> IO[bytes]:
        handle = path.open("ab")
        self._logs.append(handle)
        return handle

    def _dev_died(self) -> bool:
        return self._dev is not None and self._dev.poll() is not None

    def stop(self) -> None:
        # The dev launcher stops the nodes it started; the harness stops the ones
        # it restarted itself; anything left is killed.
        if self._dev is not None and self._dev.poll() is None:
            self._dev.send_signal(signal.SIGTERM)
            try:
                self._dev.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._dev.kill()
                self._dev.wait()
        for node in self.nodes.values():
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
                try:
                    node.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()
            _kill_quietly(node.pid)
        for handle in self._logs:
            handle.close()

    # Faults.

    def kill(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.process is not None:  # restarted by us: reap our own child
            node.process.kill()
            node.process.wait()
            return
        os.kill(node.pid, signal.SIGKILL)
        wait_for(lambda: not _alive(node.pid), 10, f"{node_id} to die")

    def pause(self, node_id: str) -> None:
        os.kill(self.nodes[node_id].pid, signal.SIGSTOP)

    def resume(self, node_id: str) -> None:
        os.kill(self.nodes[node_id].pid, signal.SIGCONT)

    def restart(self, node_id: str, wait: bool = True, timeout: float = 30.0) -> None:
        """Start a stopped node again from its own config and data; with ``wait``, until
        its API answers (a node that unseals itself may answer sealed at first)."""
        node = self.nodes[node_id]
        log = self._log(node.config.parent / "node.log")
        node.process = subprocess.Popen([*KEYQUORUM, "server", "--config", str(node.config)],
                                        stdout=log, stderr=log)
        node.pid = node.process.pid
        if wait:
            wait_for(lambda: self.health(node_id) is not None, timeout, f"{node_id} to serve")

    # Observations.

    def health(self, node_id: str) -> tuple[int, dict[str, Any]] | None:
        """The health endpoint's status and body, or None when it does not answer."""
        context = ssl.create_default_context(cafile=str(self.ca))
        request = urllib.request.Request(self.nodes[node_id].api + "/v1/sys/health")
        try:
            with urllib.request.urlopen(request, context=context, timeout=2) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())
        except (OSError, ValueError):
            return None

    def sys_page(self, node_id: str, page: str) -> dict[str, Any] | None:
        """An unauthenticated /v1/sys/ page (seal-status, raft/status) as JSON, or None
        when the node does not answer it."""
        context = ssl.create_default_context(cafile=str(self.ca))
        request = urllib.request.Request(f"{self.nodes[node_id].api}/v1/sys/{page}")
        try:
            with urllib.request.urlopen(request, context=context, timeout=5) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except OSError:
            return None

    def unsealed(self, node_id: str) -> bool:
        """Whether the node answers its seal status, unsealed."""
        status = self.sys_page(node_id, "seal-status")
        return status is not None and status["sealed"] is False

    def leader(self, among: list[str] | None = None, timeout: float = 15.0) -> str:
        candidates = among or list(self.nodes)

        def find() -> str | None:
            for node_id in candidates:
                answer = self.health(node_id)
                if answer is not None and answer[0] == 200:
                    return node_id
            return None

        return wait_for(find, timeout, "a leader")

    def followers(self, leader: str) -> list[str]:
        return [node_id for node_id in self.nodes if node_id != leader]

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context

    def exchange(self, node_id: str, request: bytes, timeout: float = 15.0,
                 tls_context: ssl.SSLContext | None = None) -> bytes:
        """Send one KMIP request on a new TLS connection, as vCenter does; as the cluster's
        client unless ``tls_context`` holds another certificate."""
        node = self.nodes[node_id]
        context = tls_context or self.tls_context()
        with socket.create_connection((node.kmip_host, node.kmip_port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=node.kmip_host) as tls:
                tls.sendall(request)
                return read_message(tls)

    def call(self, node_id: str, operation: Operation, payload: object,
             version: tuple[int, int] = (1, 4)) -> ResponseBatchItem:
        """One KMIP operation in a request of its own, whatever its outcome."""
        message = encode_message(request((operation, payload), version=version))
        return response(self.exchange(node_id, message)).batch_items[0]

    def operator(self, node_id: str, *args: str,
                 token: str | None = None) -> subprocess.CompletedProcess[str]:
        """`keyquorum operator ...` against a node's API, with ``token`` or with none (a
        KEYQUORUM_TOKEN of the test run's own is not passed on)."""
        env = dict(os.environ, KEYQUORUM_ADDR=self.nodes[node_id].api,
                   KEYQUORUM_CACERT=str(self.ca))
        env.pop("KEYQUORUM_TOKEN", None)
        if token:
            env["KEYQUORUM_TOKEN"] = token
        return subprocess.run([*KEYQUORUM, "operator", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    def register_aes(self, keys: dict[str, bytes]) -> dict[str, str]:
        """AES-256 keys of known bytes registered under their names through the leader,
        by PyKMIP; their Unique Identifiers by name."""
        from kmip.core import enums
        from kmip.pie import objects

        uids = {}
        with self.pykmip(self.leader()) as client:
            for name, material in keys.items():
                uids[name] = client.register(objects.SymmetricKey(
                    enums.CryptographicAlgorithm.AES, 256, material, name=name))
        return uids

    @contextmanager
    def pykmip(self, node_id: str) -> Iterator[Any]:
        """PyKMIP's client, an independent KMIP implementation, connected to a node."""
        from kmip.pie.client import ProxyKmipClient

        node = self.nodes[node_id]
        client = ProxyKmipClient(hostname=node.kmip_host, port=node.kmip_port,
                                 cert=str(self.client_cert), key=str(self.client_key),
                                 ca=str(self.ca), config_file=os.devnull)
        with client:
            yield client


def read_message(tls: ssl.SSLSocket) -> bytes:
    """One whole TTLV message from ``tls``: the 8-byte header says how long it is."""
    data = b""
    while len(data) < 8 or len(data) < 8 + int.from_bytes(data[4:8], "big"):
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-response")
        data += chunk
    return data


def wait_for(check: Callable[[], T | None | bool], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result  # type: ignore[return-value]
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def _alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); /proc tells it apart.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
