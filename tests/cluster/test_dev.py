"""`keyquorum dev`: the folder it prepares, cluster.json, and its process management.

The process tests run the real dev command in its own process with stand-in nodes:
small scripts that read their generated config and serve the real health API over
TLS, node-1 as leader. That exercises start-up, readiness, cluster.json, signals and
stopping, and failures that a real node rarely shows on demand. One test runs
`keyquorum dev --nodes 3` itself, with real Raft nodes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from keyquorum.cluster.config import NodeId, load_config
from keyquorum.cluster.dev import (
    DevError,
    DevLayout,
    DevNode,
    DevOptions,
    cluster_info,
    prepare_cluster,
    write_cluster_file,
)

WAIT_SECONDS = 30

_STARTED: list[subprocess.Popen[bytes]] = []

FAKE_NODE = """
import asyncio, os, signal, sys
from pathlib import Path
from keyquorum.cluster.api import NodeHealth, create_api, serve_api
from keyquorum.cluster.config import NodeId, load_config

config = load_config(Path(sys.argv[sys.argv.index("--config") + 1]))
if os.environ.get("FAKE_NODE_FAIL") == config.node.id:
    print("boom: this node refuses to start", flush=True)
    sys.exit(3)
ignore_term = os.environ.get("FAKE_NODE_IGNORE_TERM") == "1"
if ignore_term:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

async def main():
    role = "leader" if config.node.id == "node-1" else "follower"
    health = NodeHealth(config.node.id, role, "node-1", 1, 5, 5, False, True)
    server = await serve_api(
        create_api(lambda: health), config.api.listen.host, config.api.listen.port,
        cert_file=config.api.cert_file, key_file=config.api.key_file,
    )
    stop = asyncio.Event()
    if not ignore_term:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop()

asyncio.run(main())
"""

RUNNER = """
import sys
from pathlib import Path
from keyquorum.cluster.dev import DevOptions, run_dev

options = DevOptions(
    root=Path(sys.argv[1]), node_count=3, base_port=0,
    server_command=[sys.executable, sys.argv[2]],
    start_timeout_seconds=30, stop_timeout_seconds=float(sys.argv[3]),
)
sys.exit(run_dev(options))
"""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_prepare_writes_a_cluster_every_node_can_load(tmp_path: Path) -> None:
    nodes = prepare_cluster(DevOptions(root=tmp_path / "dev", base_port=0))
    layout = DevLayout((tmp_path / "dev").resolve())

    assert [node.id for node in nodes] == ["node-1", "node-2", "node-3"]
    ports = [port for node in nodes for port in (node.kmip_port, node.raft_port, node.api_port)]
    assert len(set(ports)) == 9

    # Each config is valid, lists the other two as peers and keeps its state in DIR.
    for node in nodes:
        config = load_config(node.config_file)
        others = {peer.raft_address for peer in nodes if peer is not node}
        assert set(config.raft.peers) == others
        assert str(config.raft.listen) == node.raft_address
        assert str(config.kmip.listen) == node.kmip_address
        assert config.api.listen.port == node.api_port
        assert config.node.data_dir.is_relative_to(layout.root)
        assert config.raft.password == layout.password_file.read_text().strip()
        assert config.api.admin_token == layout.admin_token_file.read_text().strip()

    # Private files are private; the vCenter suite needs RSA node certificates.
    assert _mode(layout.ca_key_file.parent) == 0o700
    for private in (
        layout.ca_key_file,
        layout.client_key_file,
        layout.password_file,
        layout.admin_token_file,
        nodes[0].directory / "node.key",
    ):
        assert _mode(private) == 0o600
    node_cert = x509.load_pem_x509_certificate((nodes[0].directory / "node.pem").read_bytes())
    assert isinstance(node_cert.public_key(), rsa.RSAPublicKey)
    san = node_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert layout.client_cert_file.exists()


def test_a_second_run_reuses_credentials_and_ports(tmp_path: Path) -> None:
    options = DevOptions(root=tmp_path, node_count=3, base_port=0)
    first = prepare_cluster(options)
    layout = DevLayout(tmp_path.resolve())
    ca_pem, secret = layout.ca_file.read_bytes(), layout.password_file.read_bytes()

    second = prepare_cluster(options)

    assert second == first
    assert layout.ca_file.read_bytes() == ca_pem
    assert layout.password_file.read_bytes() == secret


def test_a_second_run_with_another_node_count_is_refused(tmp_path: Path) -> None:
    prepare_cluster(DevOptions(root=tmp_path, node_count=3, base_port=0))

    with pytest.raises(DevError, match="run with --nodes 3") as caught:
        prepare_cluster(DevOptions(root=tmp_path, node_count=5, base_port=0))
    assert caught.value.exit_code == 2


def test_node_one_gets_the_base_port_when_free(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        free_port = probe.getsockname()[1]

    nodes = prepare_cluster(DevOptions(root=tmp_path, node_count=1, base_port=free_port))

    assert nodes[0].kmip_port == free_port


def test_cluster_json_has_the_keys_scripts_rely_on(tmp_path: Path) -> None:
    nodes = [
        DevNode(NodeId("node-1"), tmp_path, 5696, 40001, 40002),
        DevNode(NodeId("node-2"), tmp_path, 5697, 40003, 40004),
    ]
    path = tmp_path / "cluster.json"

    write_cluster_file(path, cluster_info(nodes, [101, 102], "token-abc"))

    assert json.loads(path.read_text()) == {
        "nodes": [
            {
                "id": "node-1",
                "pid": 101,
                "kmip": "127.0.0.1:5696",
                "api": "https://127.0.0.1:40002",
            },
            {
                "id": "node-2",
                "pid": 102,
                "kmip": "127.0.0.1:5697",
                "api": "https://127.0.0.1:40004",
            },
        ],
        "admin_token": "token-abc",
    }
    assert _mode(path) == 0o600
    assert not (tmp_path / "cluster.json.partial").exists()


def _start_dev(
    tmp_path: Path, env: dict[str, str] | None = None, stop_timeout: float = 5
) -> subprocess.Popen[bytes]:
    (tmp_path / "fake_node.py").write_text(FAKE_NODE)
    (tmp_path / "runner.py").write_text(RUNNER)
    dev = subprocess.Popen(
        [
            sys.executable,
            str(tmp_path / "runner.py"),
            str(tmp_path / "dev"),
            str(tmp_path / "fake_node.py"),
            str(stop_timeout),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    _STARTED.append(dev)
    return dev


def _wait_for_cluster_json(path: Path, dev: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    while not path.exists():
        assert dev.poll() is None, dev.communicate()
        assert time.monotonic() < deadline, "cluster.json never appeared"
        time.sleep(0.1)
    info: dict[str, Any] = json.loads(path.read_text())
    return info


@pytest.fixture(autouse=True)
def _no_stray_processes() -> Iterator[None]:
    """Kill any dev command a failed test left behind (its nodes die with it)."""
    yield
    for dev in list(_STARTED):
        if dev.poll() is None:
            dev.send_signal(signal.SIGTERM)
            try:
                dev.communicate(timeout=WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                dev.kill()
                dev.communicate()
        _STARTED.remove(dev)


def test_dev_starts_nodes_writes_cluster_json_and_stops_on_sigterm(tmp_path: Path) -> None:
    dev = _start_dev(tmp_path)
    cluster_file = tmp_path / "dev" / "cluster.json"
    info = _wait_for_cluster_json(cluster_file, dev)

    # Every node serves its health endpoint over TLS with the dev CA; node-1 leads.
    verify = ssl.create_default_context(cafile=str(tmp_path / "dev" / "ca.pem"))
    codes = {
        node["id"]: httpx.get(f"{node['api']}/v1/sys/health", verify=verify).status_code
        for node in info["nodes"]
    }
    assert codes == {"node-1": 200, "node-2": 429, "node-3": 429}
    assert info["admin_token"] == (tmp_path / "dev/secrets/admin-token").read_text().strip()
    pids = [node["pid"] for node in info["nodes"]]
    assert all(_alive(pid) for pid in pids)

    dev.send_signal(signal.SIGTERM)
    stdout, _ = dev.communicate(timeout=WAIT_SECONDS)

    assert dev.returncode == 0
    assert b"node-1 leads" in stdout
    assert b"client.key" in stdout
    assert not any(_alive(pid) for pid in pids)
    assert not cluster_file.exists()


def test_keyquorum_dev_runs_a_real_three_node_cluster(tmp_path: Path) -> None:
    # Free ports rather than 5696: a developer's own dev cluster may be running.
    dev = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "keyquorum.cluster.cli",
            "dev",
            "--nodes",
            "3",
            "--dir",
            str(tmp_path / "dev"),
            "--base-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _STARTED.append(dev)
    info = _wait_for_cluster_json(tmp_path / "dev" / "cluster.json", dev)

    verify = ssl.create_default_context(cafile=str(tmp_path / "dev" / "ca.pem"))
    codes = sorted(
        httpx.get(f"{node['api']}/v1/sys/health", verify=verify).status_code
        for node in info["nodes"]
    )
    assert codes == [200, 429, 429]
    pids = [node["pid"] for node in info["nodes"]]

    dev.send_signal(signal.SIGTERM)
    dev.communicate(timeout=WAIT_SECONDS)

    assert dev.returncode == 0
    assert not any(_alive(pid) for pid in pids)
    assert not (tmp_path / "dev" / "cluster.json").exists()


def test_a_node_dying_at_start_up_fails_the_command_with_its_log(tmp_path: Path) -> None:
    dev = _start_dev(tmp_path, env={"FAKE_NODE_FAIL": "node-2"})

    _, stderr = dev.communicate(timeout=WAIT_SECONDS)

    assert dev.returncode == 1
    assert b"node-2 exited during start-up with status 3" in stderr
    assert b"boom: this node refuses to start" in stderr
    assert not (tmp_path / "dev" / "cluster.json").exists()


def test_a_node_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    dev = _start_dev(tmp_path, env={"FAKE_NODE_IGNORE_TERM": "1"}, stop_timeout=0.5)
    info = _wait_for_cluster_json(tmp_path / "dev" / "cluster.json", dev)
    pids = [node["pid"] for node in info["nodes"]]

    dev.send_signal(signal.SIGINT)
    dev.communicate(timeout=WAIT_SECONDS)

    assert dev.returncode == 0
    assert not any(_alive(pid) for pid in pids)


def _keyquorum(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keyquorum.cluster.cli", *args],
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )


def test_cli_exit_codes_and_messages(tmp_path: Path) -> None:
    assert _keyquorum("--version").returncode == 0

    bad_count = _keyquorum("dev", "--nodes", "0", "--dir", str(tmp_path))
    assert bad_count.returncode == 2
    assert "--nodes" in bad_count.stderr

    missing = _keyquorum("server", "--config", str(tmp_path / "absent.toml"))
    assert missing.returncode == 2
    assert "cannot read config file" in missing.stderr
    assert "Traceback" not in missing.stderr

    (tmp_path / "bad.toml").write_text('[node]\nid = "n1"\n')
    bad = _keyquorum("server", "--config", str(tmp_path / "bad.toml"))
    assert bad.returncode == 2
    assert "node.data_dir: required" in bad.stderr

    prepare_cluster(DevOptions(root=tmp_path / "dev", node_count=1, base_port=0))
    mismatch = _keyquorum("dev", "--nodes", "3", "--dir", str(tmp_path / "dev"))
    assert mismatch.returncode == 2
    assert "run with --nodes 1" in mismatch.stderr
