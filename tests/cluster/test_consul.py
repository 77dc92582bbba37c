"""Consul registration and discovery, through py-consul against the agent stand-in.

Two halves. In-process: a Registration fed by a status callable, which is how the
sealed state is driven until the seal exists (issue 6): the node's health() reports
sealed=False today, and the registration reads the very callable the health
endpoint reads, so a real seal will reach the TTL check the same way. Then a real
3-node cluster whose node.toml files get a [consul] section: registration, the
active tag following a killed leader, an agent that restarts empty, KMIP while the
agent is down, and deregistration on SIGTERM.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import consul
import pytest
from consul_agent import ConsulAgent
from harness import Cluster, wait_for
from kmip.core import enums

from keyquorum.cluster.api import NodeHealth
from keyquorum.cluster.config import ConfigError, parse_config
from keyquorum.cluster.consul import (
    AGENT_TIMEOUT_SECONDS,
    ActiveNode,
    Registration,
    ServiceDefinition,
    consul_client,
    find_active,
    replication_role_tag,
)
from keyquorum.cluster.replication_state import Mode

CHECK_TIMEOUT = 1.0


def client_for(agent: ConsulAgent) -> consul.Consul:
    return consul.Consul(host="127.0.0.1", port=agent.port, connections_timeout=2)


class FakeNode:
    """A status source the test controls, shaped as node.health() answers."""

    def __init__(self, role: str = "leader") -> None:
        self.health = NodeHealth(node_id="n1", role=role, leader="127.0.0.1:7000",  # type: ignore[arg-type]
                                 term=1, commit_index=1, applied_index=1, sealed=False,
                                 has_quorum=True)
        self.broken = False

    def __call__(self) -> NodeHealth:
        if self.broken:
            raise RuntimeError("status source broken")
        return self.health

    def set(self, **changes: Any) -> None:
        self.health = replace(self.health, **changes)


def definition(service_id: str = "keyquorum-n1", port: int = 5696) -> ServiceDefinition:
    return ServiceDefinition(
        name="keyquorum", service_id=service_id, address="127.0.0.1", port=port,
        extra_tags=("dc-east",),
        meta=(("cluster_id", "east"), ("node_id", service_id.rsplit("-", 1)[1]),
              ("version", "0.1.0"), ("api_address", "https://127.0.0.1:1")),
        # Nothing listens there: this half tests the TTL check and the tags.
        health_url="https://127.0.0.1:1/v1/sys/health",
        check_timeout_seconds=CHECK_TIMEOUT,
    )


@pytest.fixture
def agent() -> Iterator[ConsulAgent]:
    running = ConsulAgent()
    running.start()
    yield running
    running.stop()


@pytest.fixture
def registered(agent: ConsulAgent) -> Iterator[tuple[Registration, FakeNode]]:
    node = FakeNode()
    registration = Registration(client_for(agent), definition(), node)
    registration.start()
    wait_for(lambda: ttl_status(agent, "keyquorum-n1") == "passing", 5, "registration")
    yield registration, node
    registration.stop()


def ttl_status(agent: ConsulAgent, service_id: str) -> str | None:
    check = agent.checks().get(f"{service_id}-sealed")
    return None if check is None else check.status


def tags(agent: ConsulAgent, service_id: str) -> list[str] | None:
    service = agent.services().get(service_id)
    return None if service is None else service.tags


# In process: one Registration, a status the test controls.


def test_registration_has_the_id_port_tags_meta_and_both_checks(
    agent: ConsulAgent, registered: tuple[Registration, FakeNode]
) -> None:
    services = client_for(agent).agent.services()
    assert services["keyquorum-n1"]["Service"] == "keyquorum"
    assert services["keyquorum-n1"]["Port"] == 5696
    assert services["keyquorum-n1"]["Tags"] == ["active", "dc-east"]
    assert services["keyquorum-n1"]["Meta"]["cluster_id"] == "east"

    checks = client_for(agent).agent.checks()
    assert checks["keyquorum-n1-sealed"]["Type"] == "ttl"
    assert checks["keyquorum-n1-health"]["Definition"]["HTTP"].endswith("/v1/sys/health")
    assert checks["keyquorum-n1-health"]["Definition"]["TLSSkipVerify"] is False


def test_sealing_turns_the_ttl_check_critical_and_unsealing_passing(
    agent: ConsulAgent, registered: tuple[Registration, FakeNode]
) -> None:
    _, node = registered

    node.set(sealed=True)
    started = time.monotonic()
    wait_for(lambda: ttl_status(agent, "keyquorum-n1") == "critical", 2, "critical when sealed")
    assert time.monotonic() - started < 0.5
    assert "sealed" in agent.checks()["keyquorum-n1-sealed"].output

    # Sealed is not expiry: the node keeps refreshing the TTL, so the output stays.
    time.sleep(2 * CHECK_TIMEOUT)
    assert agent.checks()["keyquorum-n1-sealed"].output.startswith("sealed")

    node.set(sealed=False)
    wait_for(lambda: ttl_status(agent, "keyquorum-n1") == "passing", 2, "passing when unsealed")


def test_the_ttl_check_stays_passing_past_its_ttl_while_the_node_runs(
    agent: ConsulAgent, registered: tuple[Registration, FakeNode]
) -> None:
    time.sleep(3 * CHECK_TIMEOUT)
    assert ttl_status(agent, "keyquorum-n1") == "passing"


def test_tags_follow_the_raft_role_within_a_second(
    agent: ConsulAgent, registered: tuple[Registration, FakeNode]
) -> None:
    _, node = registered

    node.set(role="follower")
    started = time.monotonic()
    wait_for(lambda: tags(agent, "keyquorum-n1") == ["standby", "dc-east"], 1, "standby tag")
    assert time.monotonic() - started < 1.0

    # A leader without a quorum accepts no write: it is not the active node.
    node.set(role="leader", has_quorum=False)
    time.sleep(0.5)
    assert tags(agent, "keyquorum-n1") == ["standby", "dc-east"]
    node.set(has_quorum=True)
    wait_for(lambda: tags(agent, "keyquorum-n1") == ["active", "dc-east"], 1, "active tag")


def test_a_tag_change_does_not_reset_the_checks(
    agent: ConsulAgent, registered: tuple[Registration, FakeNode]
) -> None:
    _, node = registered
    before = agent.checks()["keyquorum-n1-sealed"].create_index

    node.set(role="follower")
    wait_for(lambda: tags(agent, "keyquorum-n1") == ["standby", "dc-east"], 1, "standby tag")
    assert ttl_status(agent, "keyquorum-n1") == "passing"
    assert agent.checks()["keyquorum-n1-sealed"].create_index == before


def test_a_broken_status_source_reads_as_sealed_standby(
    agent: ConsulAgent, registered: tuple[Registration, FakeNode],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, node = registered
    with caplog.at_level(logging.CRITICAL, logger="keyquorum.consul"):
        node.broken = True
        wait_for(lambda: ttl_status(agent, "keyquorum-n1") == "critical", 2, "critical")
        assert tags(agent, "keyquorum-n1") == ["standby", "dc-east"]
        node.broken = False
    wait_for(lambda: ttl_status(agent, "keyquorum-n1") == "passing", 2, "passing")


def test_the_replication_role_tag_comes_from_its_callable(agent: ConsulAgent) -> None:
    registration = Registration(client_for(agent), definition(), FakeNode(),
                                replication_role=lambda: "perf-secondary")
    registration.start()
    try:
        wait_for(lambda: tags(agent, "keyquorum-n1") == ["active", "perf-secondary", "dc-east"],
                 3, "the role tag")
    finally:
        registration.stop()


def test_a_forgotten_service_is_registered_again(
    agent: ConsulAgent, registered: tuple[Registration, FakeNode]
) -> None:
    assert client_for(agent).agent.service.deregister("keyquorum-n1")
    assert tags(agent, "keyquorum-n1") is None

    # Noticed at the next TTL refresh, a third of the TTL later at most.
    wait_for(lambda: ttl_status(agent, "keyquorum-n1") == "passing",
             CHECK_TIMEOUT / 3 + 1, "registered again")


def test_an_agent_that_restarts_empty_gets_everything_back(
    agent: ConsulAgent, registered: tuple[Registration, FakeNode]
) -> None:
    agent.stop()
    time.sleep(1.0)  # attempts fail meanwhile and back off
    agent.start(empty=True)
    wait_for(lambda: ttl_status(agent, "keyquorum-n1") == "passing", 6, "registered again")
    assert tags(agent, "keyquorum-n1") == ["active", "dc-east"]


def test_stop_deregisters_and_returns_promptly_even_without_an_agent(
    agent: ConsulAgent,
) -> None:
    registration = Registration(client_for(agent), definition(), FakeNode())
    registration.start()
    wait_for(lambda: tags(agent, "keyquorum-n1") is not None, 5, "registration")
    registration.stop()
    assert tags(agent, "keyquorum-n1") is None

    # With the agent gone, stop gives up after the agent timeout, never hangs.
    registration = Registration(client_for(agent), definition(), FakeNode())
    registration.start()
    wait_for(lambda: tags(agent, "keyquorum-n1") is not None, 5, "registration")
    agent.stop()
    started = time.monotonic()
    registration.stop()
    assert time.monotonic() - started < AGENT_TIMEOUT_SECONDS + 1
    agent.start()


def test_a_token_is_sent_and_a_wrong_one_refused(tmp_path: Path) -> None:
    agent = ConsulAgent(token="s3cret-token")
    agent.start()
    try:
        refused = consul.Consul(host="127.0.0.1", port=agent.port, token="wrong")
        with pytest.raises(consul.ACLPermissionDenied):
            refused.agent.services()
        registration = Registration(
            consul.Consul(host="127.0.0.1", port=agent.port, token="s3cret-token"),
            definition(), FakeNode(),
        )
        registration.start()
        wait_for(lambda: ttl_status(agent, "keyquorum-n1") == "passing", 5, "registration")
        registration.stop()
    finally:
        agent.stop()


def test_the_client_takes_the_configured_token_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, agent: ConsulAgent
) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-the-environment")
    config = parse(tmp_path, {"address": agent.address, "token": "from-the-config"})
    client = consul_client(config)
    assert client.token == "from-the-config"
    assert client.http.base_uri == f"http://{agent.address}"

    # Without one in the config, the environment's applies, as with Consul's CLI.
    assert consul_client(parse(tmp_path, {"address": agent.address})).token == \
        "from-the-environment"


# Discovery.


def register_instance(client: consul.Consul, node_id: str, cluster_id: str, tag: str,
                      status: str = "passing") -> None:
    client.agent.service.register(
        "keyquorum", service_id=f"keyquorum-{node_id}", port=5696, tags=[tag],
        meta={"cluster_id": cluster_id, "node_id": node_id, "api_address": "https://x:1"},
        check={"CheckID": f"{node_id}-ttl", "TTL": "60s", "Status": status},
    )


def test_find_active_takes_the_one_healthy_active_instance_of_the_cluster(
    agent: ConsulAgent,
) -> None:
    client = client_for(agent)
    assert find_active(client) is None

    register_instance(client, "a1", "east", "standby")
    register_instance(client, "a2", "east", "active")
    register_instance(client, "a3", "east", "active", status="critical")
    register_instance(client, "b1", "west", "active")
    assert find_active(client, cluster_id="east") == ActiveNode(
        node_id="a2", cluster_id="east", address="127.0.0.1", port=5696,
        api_address="https://x:1")

    # Two healthy active instances of one cluster: ambiguous, ask again later.
    assert find_active(client) is None


def test_find_active_says_when_consul_cannot_be_asked(agent: ConsulAgent) -> None:
    client = client_for(agent)
    agent.stop()
    try:
        with pytest.raises(Exception, match="cannot ask Consul"):
            find_active(client)
    finally:
        agent.start()


# The [consul] section.


def node_document(tmp_path: Path, consul_section: dict[str, Any] | None) -> dict[str, Any]:
    for name in ("ca.pem", "node.pem", "node.key", "password", "token"):
        (tmp_path / name).write_text("x" * 32)
    document: dict[str, Any] = {
        "node": {"id": "n1", "data_dir": "data"},
        "tls": {"ca_file": "ca.pem", "cert_file": "node.pem", "key_file": "node.key"},
        "raft": {"password_file": "password"},
    }
    if consul_section is not None:
        document["consul"] = consul_section
    return document


def parse(tmp_path: Path, consul_section: dict[str, Any] | None) -> Any:
    import keyquorum.cluster.config as config_module

    # The TLS files are fakes: skip building the context, which the config tests cover.
    original = config_module.server_context
    config_module.server_context = lambda *args, **kwargs: None  # type: ignore[assignment]
    try:
        return parse_config(node_document(tmp_path, consul_section), base_dir=tmp_path,
                            source=tmp_path / "node.toml")
    finally:
        config_module.server_context = original


def test_no_consul_section_means_no_consul(tmp_path: Path) -> None:
    assert parse(tmp_path, None).consul is None


def test_an_empty_consul_section_takes_the_defaults(tmp_path: Path) -> None:
    settings = parse(tmp_path, {}).consul
    assert (settings.address, settings.scheme, settings.service) == (
        "127.0.0.1:8500", "http", "keyquorum")
    assert settings.cluster_id == "keyquorum"
    assert settings.check_timeout_seconds == 5.0
    assert settings.token is None and not settings.disable_registration


def test_every_consul_option_is_read(tmp_path: Path) -> None:
    settings = parse(tmp_path, {
        "address": "10.0.0.9:8501", "scheme": "https", "token_file": "token",
        "ca_file": "ca.pem", "cert_file": "node.pem", "key_file": "node.key",
        "service": "kms", "cluster_id": "east", "service_tags": ["dc-east"],
        "service_meta": {"rack": "r1"}, "check_timeout_seconds": 2,
        "service_address": "kms1.example.com", "disable_registration": True,
    }).consul
    assert settings.token == "x" * 32
    assert "x" * 32 not in repr(settings)
    assert settings.ca_file == tmp_path / "ca.pem"
    assert settings.service_meta == (("rack", "r1"),)
    assert settings.service_address == "kms1.example.com"
    assert settings.disable_registration is True


@pytest.mark.parametrize(("section", "message"), [
    ({"bogus": 1}, "consul.bogus: unknown option"),
    ({"scheme": "ftp"}, "consul.scheme: 'ftp' is not http or https"),
    ({"ca_file": "ca.pem"}, 'consul.scheme: ca_file, cert_file and key_file need scheme'),
    ({"scheme": "https", "cert_file": "node.pem"}, "consul.cert_file: set cert_file and key"),
    ({"token": "a", "token_file": "token"}, "consul.token: set either token or token_file"),
    ({"token": ""}, "consul.token: is empty"),
    ({"service": "key quorum"}, "consul.service: 'key quorum' is not a DNS label"),
    ({"service_tags": ["active"]}, "consul.service_tags: 'active' is set by the node"),
    ({"service_tags": "dc"}, "consul.service_tags: must be a list of strings"),
    ({"service_meta": {"node_id": "x"}}, "consul.service_meta: 'node_id' is set by the node"),
    ({"service_meta": {"consul-x": "y"}}, "consul.service_meta: key 'consul-x'"),
    ({"service_meta": {"k": 1}}, "consul.service_meta: must be a table of strings"),
    ({"check_timeout_seconds": 0.5}, "consul.check_timeout_seconds: 0.5 is out of range"),
    ({"disable_registration": "yes"}, "consul.disable_registration: must be true or false"),
    ({"address": "consul"}, "consul.address: 'consul' is not host:port"),
])
def test_a_bad_consul_option_is_refused_with_what_to_fix(
    tmp_path: Path, section: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse(tmp_path, section)
    assert str(raised.value).startswith(message)


# A real cluster, registered in the stand-in.


@pytest.fixture(scope="module")
def consul_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster,
                                                                               ConsulAgent]]:
    cluster = Cluster(tmp_path_factory.mktemp("consul") / "cluster")
    cluster.start()
    # The agent checks the health endpoint over TLS, trusting the cluster CA.
    agent = ConsulAgent(check_ca_file=cluster.ca)
    agent.start()
    try:
        for node in cluster.nodes.values():
            with node.config.open("a") as config:
                config.write(f'\n[consul]\naddress = "{agent.address}"\n'
                             f"check_timeout_seconds = {CHECK_TIMEOUT}\n"
                             'service_tags = ["dev"]\nservice_meta = { rack = "r1" }\n')
        for node_id in cluster.nodes:
            cluster.kill(node_id)
        for node_id in cluster.nodes:
            cluster.restart(node_id)
        cluster.leader(timeout=30)
        wait_for(lambda: len(agent.services()) == 3, 15, "three registrations")
        yield cluster, agent
    finally:
        cluster.stop()
        agent.stop()


def active_ids(agent: ConsulAgent) -> list[str]:
    return sorted(service.service_id for service in agent.services().values()
                  if "active" in service.tags)


def discovered(agent: ConsulAgent) -> str | None:
    found = find_active(client_for(agent))
    return None if found is None else found.node_id


def test_three_nodes_register_and_discovery_finds_the_leader(
    consul_cluster: tuple[Cluster, ConsulAgent],
) -> None:
    cluster, agent = consul_cluster
    leader = cluster.leader()

    services = client_for(agent).agent.services()
    assert sorted(services) == [f"keyquorum-{node_id}" for node_id in sorted(cluster.nodes)]
    for node_id, node in cluster.nodes.items():
        service = services[f"keyquorum-{node_id}"]
        assert service["Port"] == node.kmip_port
        assert service["Address"] == "127.0.0.1"
        assert service["Meta"]["node_id"] == node_id
        assert service["Meta"]["cluster_id"] == "keyquorum"
        assert service["Meta"]["api_address"] == node.api
        assert service["Meta"]["rack"] == "r1"
        assert re.fullmatch(r"\d+\.\d+\.\d+.*", service["Meta"]["version"])
        wanted = "active" if node_id == leader else "standby"
        wait_for(lambda s=service["ID"], w=wanted: tags(agent, s) == [w, "dev"], 2, "tags")

    # The agent runs the HTTP checks against each node's health endpoint, over TLS
    # verified with the cluster CA: 200 passing on the leader, 429 warning elsewhere.
    def health_statuses() -> dict[str, str]:
        return {check.service_id: check.status for check in agent.checks().values()
                if check.check_id.endswith("-health")}

    expected = {f"keyquorum-{node_id}": "passing" if node_id == leader else "warning"
                for node_id in cluster.nodes}
    wait_for(lambda: health_statuses() == expected, 3 * CHECK_TIMEOUT + 2, "HTTP checks")
    assert wait_for(lambda: discovered(agent), 3, "discovery") == leader

    # Only the leader is in the passing set tagged active; standbys are found as such.
    client = client_for(agent)
    _, standbys = client.health.service("keyquorum", tag="standby")
    assert sorted(entry["Service"]["Meta"]["node_id"] for entry in standbys) == sorted(
        cluster.followers(leader))


def test_an_agent_restarting_empty_gets_all_three_back(
    consul_cluster: tuple[Cluster, ConsulAgent],
) -> None:
    cluster, agent = consul_cluster
    agent.restart()
    started = time.monotonic()
    wait_for(lambda: len(agent.services()) == 3, 5, "three registrations again")
    elapsed = time.monotonic() - started
    assert elapsed < 2 * CHECK_TIMEOUT
    assert wait_for(lambda: discovered(agent), 3 * CHECK_TIMEOUT + 2, "discovery") == \
        cluster.leader()


def test_kmip_keeps_serving_while_the_agent_is_down(
    consul_cluster: tuple[Cluster, ConsulAgent],
) -> None:
    cluster, agent = consul_cluster
    logs = {node.config.parent / "node.log": 0 for node in cluster.nodes.values()}
    for log_file in logs:
        logs[log_file] = len(log_file.read_text())
    agent.stop()
    try:
        time.sleep(1.0)  # registration attempts fail and back off meanwhile
        for node_id in cluster.nodes:
            started = time.monotonic()
            with cluster.pykmip(node_id) as client:
                uid = client.create(enums.CryptographicAlgorithm.AES, 256)
                assert len(client.get(uid).value) == 32
            assert time.monotonic() - started < 2.0
    finally:
        agent.start(empty=True)
    wait_for(lambda: len(agent.services()) == 3, 8, "three registrations again")

    # One warning per outage in each node's log, not one per retry, and a line
    # when the agent is back (written just after the registration).
    for log_file, start in logs.items():
        wait_for(lambda f=log_file, s=start: "consul_agent_reachable" in f.read_text()[s:], 2,
                 "the agent back in the log")
        assert log_file.read_text()[start:].count("consul_agent_unreachable") == 1


def test_sigterm_deregisters_before_the_process_exits(
    consul_cluster: tuple[Cluster, ConsulAgent],
) -> None:
    cluster, agent = consul_cluster
    follower = cluster.followers(cluster.leader())[0]
    process = cluster.nodes[follower].process
    assert process is not None

    process.terminate()
    assert process.wait(timeout=15) == 0
    assert f"keyquorum-{follower}" not in agent.services()
    assert f"keyquorum-{follower}-sealed" not in agent.checks()

    cluster.restart(follower)
    wait_for(lambda: tags(agent, f"keyquorum-{follower}") == ["standby", "dev"], 5,
             "registered again")


def test_the_active_tag_moves_to_the_new_leader_within_two_seconds(
    consul_cluster: tuple[Cluster, ConsulAgent],
) -> None:
    cluster, agent = consul_cluster
    old = cluster.leader()
    wait_for(lambda: discovered(agent) == old, 3 * CHECK_TIMEOUT + 2, "discovery of the leader")

    # Watch the agent's view in a thread while the leader dies.
    moved_at: list[float] = []
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            others = [service_id for service_id in active_ids(agent)
                      if service_id != f"keyquorum-{old}"]
            if others:
                moved_at.append(time.monotonic())
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    killed_at = time.monotonic()
    cluster.kill(old)
    watcher.join(timeout=10)
    watching.set()

    assert moved_at, "no survivor was tagged active within 10 s"
    tag_delay = moved_at[0] - killed_at
    new = cluster.leader(among=cluster.followers(old))
    assert active_ids(agent) == sorted([f"keyquorum-{old}", f"keyquorum-{new}"])
    assert tag_delay < 2.0, f"the active tag moved {tag_delay:.2f}s after the kill"

    # Discovery follows once the dead node's checks fail (its TTL, the HTTP check)
    # and the new leader's HTTP check has run: within about two check intervals more.
    assert wait_for(lambda: discovered(agent) == new or None, 2 + 3 * CHECK_TIMEOUT,
                    "discovery of the new leader")
    discovery_delay = time.monotonic() - killed_at
    print(f"active tag moved after {tag_delay:.2f}s, discovery after {discovery_delay:.2f}s")
    # The dead node's TTL check lapses one TTL after its last refresh, which may be
    # after discovery has already moved (0.70 s in one run, with a 1 s TTL).
    wait_for(lambda: ttl_status(agent, f"keyquorum-{old}") == "critical", CHECK_TIMEOUT + 2,
             "the dead node's TTL check to lapse")

    cluster.restart(old)
    wait_for(lambda: tags(agent, f"keyquorum-{old}") == ["standby", "dev"], 5,
             "the old leader back as a standby")


def operator_command(cluster: Cluster, node_id: str, *args: str) -> None:
    cli_command(cluster, node_id, "operator", *args)


def cli_command(cluster: Cluster, node_id: str, *args: str) -> None:
    token = json.loads((cluster.directory / "cluster.json").read_text())["admin_token"]
    env = dict(os.environ, KEYQUORUM_ADDR=cluster.nodes[node_id].api,
               KEYQUORUM_CACERT=str(cluster.ca), KEYQUORUM_TOKEN=token)
    done = subprocess.run([sys.executable, "-m", "keyquorum.cluster.cli", *args],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_registration_follows_a_listener_moved_by_the_replicated_settings(
    consul_cluster: tuple[Cluster, ConsulAgent],
) -> None:
    cluster, agent = consul_cluster
    node = cluster.nodes["node-2"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        new_port = probe.getsockname()[1]

    def registered_port() -> int | None:
        service = agent.services().get("keyquorum-node-2")
        return None if service is None else service.port

    cli_command(cluster, "node-1", "listener", "write",
                "--node-addr", f"node-2=127.0.0.1:{new_port}")
    try:
        wait_for(lambda: registered_port() == new_port, 5, "the new port in Consul")
        # Registered again, not afresh: the sealed check kept its status.
        assert ttl_status(agent, "keyquorum-node-2") == "passing"
        assert tags(agent, "keyquorum-node-2") is not None
    finally:
        cli_command(cluster, "node-1", "listener", "write", "--reset")
    wait_for(lambda: registered_port() == node.kmip_port, 5, "the configured port again")


def test_a_real_node_sealed_by_the_operator_drops_out_of_the_healthy_set(
    consul_cluster: tuple[Cluster, ConsulAgent],
) -> None:
    cluster, agent = consul_cluster
    follower = cluster.followers(cluster.leader())[0]
    service_id = f"keyquorum-{follower}"
    client = client_for(agent)
    wait_for(lambda: ttl_status(agent, service_id) == "passing", 5, "a passing TTL check")

    # Sealed through the operator CLI: the TTL check goes critical, as a health
    # query through the real client shows, and so does the HTTP check on 503.
    operator_command(cluster, follower, "seal")
    wait_for(lambda: ttl_status(agent, service_id) == "critical", 3, "a critical TTL check")
    _, entries = client.health.service("keyquorum")
    checks = {check["CheckID"]: check["Status"] for entry in entries
              if entry["Service"]["ID"] == service_id for check in entry["Checks"]}
    assert checks[f"{service_id}-sealed"] == "critical"

    # Unsealed with the dev cluster's key, it is back.
    unseal_key = (cluster.directory / "secrets" / "unseal-key").read_text().strip()
    operator_command(cluster, follower, "unseal", unseal_key)
    wait_for(lambda: ttl_status(agent, service_id) == "passing", 3, "a passing TTL check")


def test_replication_modes_map_to_their_consul_role_tags() -> None:
    # The node passes its replication mode's value (cluster/replication_state.py Mode).
    assert [replication_role_tag(mode.value) for mode in Mode] == [
        None, "primary", "perf-secondary", "dr-secondary"]
