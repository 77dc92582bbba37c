"""Every node.toml under deploy/ loads with load_config, as `keyquorum server` would.

The examples name files under /etc/keyquorum and /var/lib/keyquorum; the test points
those at a temporary folder holding a real CA, a node certificate and secrets, since
the loader opens the TLS files and checks that key and certificate match.
"""

from __future__ import annotations

import runpy
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from keyquorum.cluster.config import load_config
from keyquorum.cluster.pki import create_ca, issue_certificate

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
EXAMPLES = sorted((DEPLOY / "examples").rglob("*.toml"))


@pytest.fixture(scope="module")
def etc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("etc")
    ca = create_ca("example CA")
    ca.write(folder / "ca.pem", folder / "ca.key")
    node = issue_certificate(ca, "kq-node", sans=["localhost"], ttl=timedelta(days=1))
    node.write(folder / "node.pem", folder / "node.key")
    for secret in ("raft-password", "admin-token", "consul-token"):
        (folder / secret).write_text("an-example-secret-of-32-characters\n")
    return folder


def test_there_are_examples_of_each_layout() -> None:
    names = {path.relative_to(DEPLOY).parts[1] for path in EXAMPLES if "examples" in path.parts}
    assert names == {"three-node", "primary-dr"}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_example_loads(example: Path, etc: Path, tmp_path: Path) -> None:
    text = example.read_text().replace("/etc/keyquorum", str(etc))
    text = text.replace("/var/lib/keyquorum", str(tmp_path / "data"))
    copy = tmp_path / example.name
    copy.write_text(text)

    config = load_config(copy)

    assert config.node.data_dir == tmp_path / "data"
    assert config.raft.password == "an-example-secret-of-32-characters"
    assert config.api.admin_token == "an-example-secret-of-32-characters"
    assert str(config.raft.listen) not in {str(peer) for peer in config.raft.peers}


def test_three_node_peers_name_each_other() -> None:
    folder = DEPLOY / "examples" / "three-node"
    listens: dict[str, set[str]] = {}
    for path in sorted(folder.glob("*.toml")):
        text = path.read_text()
        listen = text.split('listen = "10.0.0.', 1)[1].split('"', 1)[0]
        listens[f"10.0.0.{listen}"] = {p.strip(' "') for p in
                                      text.split("peers = [", 1)[1].split("]", 1)[0].split(",")}
    for listen, peers in listens.items():
        assert peers == set(listens) - {listen}


def test_compose_setup_writes_configs_that_load(tmp_path: Path) -> None:
    setup = runpy.run_path(str(DEPLOY / "compose" / "setup.py"))
    root = tmp_path / "cluster"

    setup["write_files"](root)
    first_ca = (root / "ca.pem").read_bytes()
    setup["write_files"](root)  # a second `compose up` keeps the cluster's files

    assert (root / "ca.pem").read_bytes() == first_ca
    for node in setup["NODES"]:
        text = (root / node / "node.toml").read_text()
        copy = root / node / "local.toml"
        copy.write_text(text.replace("/data/", f"{tmp_path}/data/"))
        config = load_config(copy)
        assert str(config.raft.listen) == f"{node}:7000"
        assert len(config.raft.peers) == 2
        assert config.seal.type == "dev-file"


def test_kubernetes_objects_and_their_generated_config(tmp_path: Path, etc: Path) -> None:
    objects = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "keyquorum.yaml").read_text()))
    kinds = {o["kind"]: o for o in objects}
    assert set(kinds) == {"Service", "PodDisruptionBudget", "StatefulSet"}
    headless = [o for o in objects if o["kind"] == "Service" and o["spec"].get("clusterIP")]
    assert headless and headless[0]["spec"]["clusterIP"] == "None"
    assert kinds["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    pod = kinds["StatefulSet"]["spec"]["template"]["spec"]

    # Run the init container's script as the pod would, and load what it writes.
    script = pod["initContainers"][0]["args"][0].replace("/config/", f"{tmp_path}/")
    env = {"POD_NAME": "keyquorum-1", "POD_NAMESPACE": "kms", "PATH": "/usr/bin:/bin"}
    subprocess.run(["sh", "-c", script], env=env, check=True)
    text = (tmp_path / "node.toml").read_text()
    for mount, local in (("/tls/", f"{etc}/"), ("/secrets/", f"{etc}/"),
                         ('"/data"', f'"{tmp_path}/data"')):
        text = text.replace(mount, local)
    (tmp_path / "node.toml").write_text(text)
    config = load_config(tmp_path / "node.toml")
    assert str(config.raft.listen) == "keyquorum-1.keyquorum.kms.svc.cluster.local:7000"
    assert sorted(str(p) for p in config.raft.peers) == [
        f"keyquorum-{i}.keyquorum.kms.svc.cluster.local:7000" for i in (0, 2)]


def test_compose_file_runs_three_nodes_after_setup() -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"setup", "kq-1", "kq-2", "kq-3", "tenant"} <= set(services)
    for node in ("kq-1", "kq-2", "kq-3"):
        assert services[node]["command"][-1] == f"/cluster/{node}/node.toml"
        assert services[node]["depends_on"]["setup"]["condition"] == (
            "service_completed_successfully")


def test_systemd_unit_is_valid_and_sandboxed(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / "keyquorum.service"
    text = (DEPLOY / "systemd" / "keyquorum.service").read_text()
    # verify wants the ExecStart binary to exist.
    unit.write_text(text.replace("/opt/keyquorum/bin/keyquorum", shutil.which("true") or ""))

    verified = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                              timeout=60)
    assert verified.returncode == 0 and "keyquorum.service" not in verified.stderr, (
        verified.stderr)
    security = subprocess.run([analyze, "security", "--offline=yes", str(unit)],
                              capture_output=True, text=True, timeout=60)
    exposure = float(security.stdout.rsplit("exposure level for keyquorum.service:", 1)[1]
                     .split()[0])
    assert exposure < 2.0
