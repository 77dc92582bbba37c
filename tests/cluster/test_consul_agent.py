"""The Consul agent stand-in answers as Consul's HTTP API documentation says.

The samples below are the documented ones (api-docs/agent/service, agent/check,
health, catalog): the register payload, and the field names of each documented
response. Where the stand-in departs from Consul (script checks) it says so.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import consul
import pytest
from consul_agent import ConsulAgent, parse_duration
from harness import wait_for

# api-docs/agent/service, "Register Service", sample payload; its script check is
# replaced by a TTL check (below, the script check itself is refused).
SAMPLE_REGISTER = {
    "ID": "redis1",
    "Name": "redis",
    "Tags": ["primary", "v1"],
    "Address": "127.0.0.1",
    "Port": 8000,
    "Meta": {"redis_version": "4.0"},
    "EnableTagOverride": False,
    "Check": {"DeregisterCriticalServiceAfter": "90m", "TTL": "30s"},
}
SAMPLE_SCRIPT_CHECK = {"Args": ["/usr/local/bin/check_redis.py"], "Interval": "10s"}

# The field names of the documented sample responses.
AGENT_SERVICE_FIELDS = {"ID", "Service", "Tags", "TaggedAddresses", "Meta", "Port", "Address",
                        "EnableTagOverride", "Datacenter", "Weights"}
AGENT_CHECK_FIELDS = {"Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID",
                      "ServiceName", "ServiceTags"}
HEALTH_NODE_FIELDS = {"ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta"}
HEALTH_SERVICE_FIELDS = {"ID", "Service", "Tags", "Address", "TaggedAddresses", "Meta", "Port",
                         "Weights"}
CATALOG_SERVICE_FIELDS = {"ID", "Node", "Address", "Datacenter", "TaggedAddresses", "NodeMeta",
                          "CreateIndex", "ModifyIndex", "ServiceAddress",
                          "ServiceEnableTagOverride", "ServiceID", "ServiceName", "ServicePort",
                          "ServiceMeta", "ServiceTaggedAddresses", "ServiceTags", "ServiceProxy",
                          "ServiceConnect"}


@pytest.fixture
def agent() -> Iterator[ConsulAgent]:
    running = ConsulAgent()
    running.start()
    yield running
    running.stop()


def call(agent: ConsulAgent, method: str, path: str, body: Any = None,
         raw: bytes | None = None) -> tuple[int, str, dict[str, str]]:
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{agent.address}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode(), dict(error.headers)


def test_the_documented_register_payload_is_listed_as_documented(agent: ConsulAgent) -> None:
    status, body, _ = call(agent, "PUT", "/v1/agent/service/register", SAMPLE_REGISTER)
    assert (status, body) == (200, "")

    _, listed, _ = call(agent, "GET", "/v1/agent/services")
    service = json.loads(listed)["redis1"]
    assert AGENT_SERVICE_FIELDS <= set(service)
    assert service["Service"] == "redis" and service["Tags"] == ["primary", "v1"]
    assert service["Meta"] == {"redis_version": "4.0"}
    assert service["Weights"] == {"Passing": 1, "Warning": 1}

    # One check without an ID: Consul names it after the service.
    _, checks, _ = call(agent, "GET", "/v1/agent/checks")
    check = json.loads(checks)["service:redis1"]
    assert AGENT_CHECK_FIELDS <= set(check)
    assert check["Name"] == "Service 'redis' check"
    assert check["Status"] == "critical"  # new checks start critical
    assert check["ServiceTags"] == ["primary", "v1"]


def test_several_checks_without_ids_are_numbered_from_one(agent: ConsulAgent) -> None:
    client = consul.Consul(host="127.0.0.1", port=agent.port)
    client.agent.service.register("web", service_id="web1", check={"TTL": "10s"},
                                  extra_checks=[{"TTL": "20s"}])
    assert sorted(client.agent.checks()) == ["service:web1:1", "service:web1:2"]


def test_snake_case_and_any_case_keys_are_read_as_consul_reads_them(agent: ConsulAgent) -> None:
    status, _, _ = call(agent, "PUT", "/v1/agent/service/register", {
        "name": "web", "id": "web1", "port": 80,
        "checks": [{"check_id": "web1-ttl", "ttl": "10s", "status": "passing"},
                   {"CHECKID": "web1-http", "http": "https://127.0.0.1:1/",
                    "interval": "10s", "tls_skip_verify": True}],
    })
    assert status == 200
    checks = agent.checks()
    assert checks["web1-ttl"].status == "passing"
    assert checks["web1-http"].tls_skip_verify is True


@pytest.mark.parametrize(("body", "raw", "status", "reason"), [
    (None, b"{not json", 400, "Request decode failed"),
    ({"ID": "x", "Port": 1}, None, 400, "Missing service name"),
    ({"Name": "x", "Check": {"TTL": "soon"}}, None, 400, "Request decode failed"),
    ({"Name": "x", "Check": {"HTTP": "http://h/"}}, None, 400, "Invalid check"),
    ({"Name": "x", "Check": {"TTL": "1s", "Status": "fine"}}, None, 400, "Invalid check"),
    ({"Name": "x", "Check": SAMPLE_SCRIPT_CHECK}, None, 400, "Invalid check: the stand-in"),
])
def test_a_bad_register_body_is_a_400_with_a_plain_text_reason(
    agent: ConsulAgent, body: Any, raw: bytes | None, status: int, reason: str
) -> None:
    code, text, headers = call(agent, "PUT", "/v1/agent/service/register", body, raw)
    assert code == status
    assert text.startswith(reason)
    assert headers["Content-Type"].startswith("text/plain")
    assert agent.services() == {}


def test_ttl_endpoints_set_the_status_and_the_note(agent: ConsulAgent) -> None:
    client = consul.Consul(host="127.0.0.1", port=agent.port)
    client.agent.service.register("web", service_id="web1", check={"CheckID": "t", "TTL": "9s"})

    for verb, status in (("pass", "passing"), ("warn", "warning"), ("fail", "critical")):
        code, body, _ = call(agent, "PUT", f"/v1/agent/check/{verb}/t?note=because")
        assert (code, body) == (200, "")
        assert (agent.checks()["t"].status, agent.checks()["t"].output) == (status, "because")

    assert call(agent, "PUT", "/v1/agent/check/update/t",
                {"Status": "passing", "Output": "all good"})[0] == 200
    assert agent.checks()["t"].output == "all good"
    code, text, _ = call(agent, "PUT", "/v1/agent/check/update/t", {"Status": "fine"})
    assert (code, text) == (400, "Invalid check status: 'fine'")
    assert call(agent, "PUT", "/v1/agent/check/update/t", raw=b"[")[0] == 400


def test_an_unknown_check_or_service_is_a_404(agent: ConsulAgent) -> None:
    code, text, _ = call(agent, "PUT", "/v1/agent/check/pass/nope")
    assert code == 404
    assert text.startswith("Unknown check ID 'nope'. Ensure that the check ID is passed")
    code, text, _ = call(agent, "PUT", "/v1/agent/service/deregister/nope")
    assert code == 404 and text.startswith("Unknown service ID 'nope'")

    # py-consul reads a 404 on these as False, which the registration relies on.
    client = consul.Consul(host="127.0.0.1", port=agent.port)
    assert client.agent.check.ttl_pass("nope") is False


def test_ttl_on_an_http_check_is_a_500(agent: ConsulAgent) -> None:
    client = consul.Consul(host="127.0.0.1", port=agent.port)
    client.agent.service.register("web", service_id="web1",
                                  check={"CheckID": "h", "HTTP": "http://127.0.0.1:1/",
                                         "Interval": "10s"})
    code, text, _ = call(agent, "PUT", "/v1/agent/check/pass/h")
    assert code == 500 and "does not have associated TTL" in text


def test_a_wrong_method_or_path(agent: ConsulAgent) -> None:
    assert call(agent, "GET", "/v1/agent/service/register")[0] == 405
    assert call(agent, "GET", "/v1/agent/nothing")[0] == 404


def test_a_ttl_check_not_refreshed_in_time_turns_critical(agent: ConsulAgent) -> None:
    client = consul.Consul(host="127.0.0.1", port=agent.port)
    client.agent.service.register("web", service_id="web1",
                                  check={"CheckID": "t", "TTL": "300ms", "Status": "passing"})
    time.sleep(0.15)
    client.agent.check.ttl_pass("t")
    time.sleep(0.2)
    assert agent.checks()["t"].status == "passing"  # refreshed: the clock restarted
    wait_for(lambda: agent.checks()["t"].status == "critical", 1, "expiry")
    assert agent.checks()["t"].output == "TTL expired"


def test_registering_again_keeps_the_checks_status(agent: ConsulAgent) -> None:
    client = consul.Consul(host="127.0.0.1", port=agent.port)
    client.agent.service.register("web", service_id="web1", check={"CheckID": "t", "TTL": "9s"},
                                  extra_checks=[{"CheckID": "u", "TTL": "9s"}])
    client.agent.check.ttl_pass("t")
    client.agent.service.register("web", service_id="web1", tags=["new"],
                                  check={"CheckID": "t", "TTL": "9s"})
    assert agent.checks()["t"].status == "passing"
    assert "u" in agent.checks()  # kept without replace-existing-checks
    client.agent.service.register("web", service_id="web1", check={"CheckID": "t", "TTL": "9s"},
                                  replace_existing_checks=True)
    assert sorted(agent.checks()) == ["t"]


def test_health_service_has_the_documented_shape_and_filters(agent: ConsulAgent) -> None:
    client = consul.Consul(host="127.0.0.1", port=agent.port)
    for service_id, tags, status in (("a", ["active", "x"], "passing"),
                                     ("b", ["standby", "x"], "passing"),
                                     ("c", ["active"], "warning")):
        client.agent.service.register("kq", service_id=service_id, tags=tags,
                                      check={"CheckID": service_id, "TTL": "9s",
                                             "Status": status})

    index, entries = client.health.service("kq")
    assert int(index) > 0
    entry = entries[0]
    assert HEALTH_NODE_FIELDS <= set(entry["Node"])
    assert HEALTH_SERVICE_FIELDS <= set(entry["Service"])
    assert [check["CheckID"] for check in entry["Checks"]] == ["serfHealth", "a"]
    assert AGENT_CHECK_FIELDS <= set(entry["Checks"][1])

    def ids(**filters: Any) -> list[str]:
        return [e["Service"]["ID"] for e in client.health.service("kq", **filters)[1]]

    assert ids() == ["a", "b", "c"]
    assert ids(passing=True) == ["a", "b"]  # a warning is not passing
    assert ids(tag="active") == ["a", "c"]
    assert ids(passing=True, tag="active") == ["a"]
    # The tag parameter may repeat; every tag must be present.
    _, body, _ = call(agent, "GET", "/v1/health/service/kq?tag=active&tag=x")
    assert [e["Service"]["ID"] for e in json.loads(body)] == ["a"]
    _, body, _ = call(agent, "GET", "/v1/health/service/kq?passing")
    assert len(json.loads(body)) == 2
    _, body, headers = call(agent, "GET", "/v1/health/service/kq?passing=false")
    assert len(json.loads(body)) == 3
    assert "X-Consul-Index" in headers and headers["X-Consul-Knownleader"] == "true"


def test_catalog_endpoints_have_the_documented_shape(agent: ConsulAgent) -> None:
    client = consul.Consul(host="127.0.0.1", port=agent.port)
    client.agent.service.register("web", service_id="web1", port=5000, tags=["prod"],
                                  address="172.17.0.3", meta={"web_meta_value": "baz"})
    client.agent.service.register("web", service_id="web2", port=5001, tags=["canary"])

    _, entries = client.catalog.service("web")
    assert CATALOG_SERVICE_FIELDS <= set(entries[0])
    assert (entries[0]["ServiceAddress"], entries[0]["ServicePort"]) == ("172.17.0.3", 5000)
    assert entries[0]["ServiceMeta"] == {"web_meta_value": "baz"}
    assert [e["ServiceID"] for e in client.catalog.service("web", tag="canary")[1]] == ["web2"]
    assert client.catalog.services()[1] == {"consul": [], "web": ["prod", "canary"]}
    assert client.status.leader() == "127.0.0.1:8300"


def test_a_blocking_query_waits_for_a_change(agent: ConsulAgent) -> None:
    client = consul.Consul(host="127.0.0.1", port=agent.port)
    index, _ = client.health.service("web")

    started = time.monotonic()
    timer = threading.Timer(0.3, lambda: client.agent.service.register("web", service_id="w"))
    timer.start()
    new_index, entries = client.health.service("web", index=index, wait="5s")
    assert 0.25 < time.monotonic() - started < 3
    assert int(new_index) > int(index) and len(entries) == 1

    started = time.monotonic()
    client.health.service("web", index=new_index, wait="200ms")
    assert 0.15 < time.monotonic() - started < 2


class StatusServer:
    """A plain HTTP server answering with whatever status code the test sets."""

    def __init__(self) -> None:
        owner = self
        self.code = 200

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(owner.code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/sys/health"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_http_checks_run_by_the_agent_map_2xx_429_and_the_rest(agent: ConsulAgent) -> None:
    target = StatusServer()
    try:
        client = consul.Consul(host="127.0.0.1", port=agent.port)
        # 100ms is raised to Consul's one-second minimum interval.
        client.agent.service.register("web", service_id="w", check={
            "CheckID": "h", "HTTP": target.url, "Interval": "100ms", "Timeout": "1s"})
        assert agent.checks()["h"].interval == 1.0
        for code, status in ((200, "passing"), (429, "warning"), (503, "critical")):
            target.code = code
            wait_for(lambda s=status: agent.checks()["h"].status == s, 3, status)
        assert agent.checks()["h"].output.startswith(f"HTTP GET {target.url}: 503")
    finally:
        target.close()


def test_restart_forgets_everything_and_keeps_the_port(agent: ConsulAgent) -> None:
    client = consul.Consul(host="127.0.0.1", port=agent.port)
    client.agent.service.register("web", service_id="w", check={"TTL": "9s"})
    port = agent.port
    agent.restart()
    assert agent.port == port
    assert client.agent.services() == {} and client.agent.checks() == {}


def test_go_durations() -> None:
    assert parse_duration("1m30s") == 90
    assert parse_duration("1500ms") == 1.5
    with pytest.raises(ValueError):
        parse_duration("10 seconds")
