"""A stand-in for a Consul agent (a dev-mode server) on 127.0.0.1, for the tests.

No Consul binary can be installed from the registries the project reaches, so the
tests run keyquorum against this: an HTTP server with the agent and catalog
endpoints keyquorum and py-consul use, shaped after Consul's HTTP API documentation
(api-docs/agent/service, agent/check, health, catalog, status):

    PUT /v1/agent/service/register[?replace-existing-checks]
    PUT /v1/agent/service/deregister/:service_id
    PUT /v1/agent/check/pass|warn|fail/:check_id[?note=]
    PUT /v1/agent/check/update/:check_id          {"Status", "Output"}
    GET /v1/agent/services, /v1/agent/checks
    GET /v1/health/service/:service[?passing][&tag=...]
    GET /v1/catalog/service/:service[?tag=...], /v1/catalog/services
    GET /v1/status/leader

What it keeps of Consul's behaviour: request bodies decoded case-insensitively, with
snake_case accepted as Consul does; errors as text/plain with Consul's status codes
(400 for a body that does not decode or lacks a Name, 404 "Unknown check ID" and
"Unknown service ID", 403 without the token when one is required, 405 for a wrong
method); new checks critical unless a Status is given; a check registered again
under the same ID keeps its status (Consul has done so since 0.5.2); generated check
IDs "service:<id>" and "service:<id>:<n>"; a TTL check not refreshed within its TTL
turns critical with output "TTL expired"; HTTP checks run by the agent every
Interval (at least one second, as Consul enforces) after a random stagger, 2xx
passing, 429 warning, anything else critical, verifying TLS with the CA the agent
was given (Consul's enable_agent_tls_for_checks) unless TLSSkipVerify; the node's
serfHealth check in health results; X-Consul-Index on catalog and health reads, with
blocking queries on ?index.

What it leaves out: script, TCP, gRPC and other check kinds (refused with a 400 that
says so), ACL policies beyond one required token, filters (?filter), namespaces,
datacenters other than dc1, Connect. ``restart`` models an agent that comes back
with an empty state (a dev agent, or a lost data directory); a real agent with its
data directory restores its services, which is the easier case.
"""

from __future__ import annotations

import json
import random
import re
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

NODE_NAME = "standin"
DATACENTER = "dc1"
STATUSES = ("passing", "warning", "critical")
MIN_CHECK_INTERVAL = 1.0
TTL_SWEEP_SECONDS = 0.05
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                   "h": 3600.0}


class ApiError(Exception):
    """An error answer: Consul writes the reason as plain text."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def parse_duration(text: str) -> float:
    """A Go duration ("10s", "1500ms", "1m30s") in seconds; ValueError otherwise."""
    if text in ("0", ""):
        return 0.0
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"time: invalid duration {text!r}")
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def _canonical(document: dict[str, Any]) -> dict[str, Any]:
    """Keys folded as Consul's decoder matches them: any case, snake_case or not."""
    return {key.replace("_", "").lower(): value for key, value in document.items()}


@dataclass
class Check:
    check_id: str
    name: str
    service_id: str
    service_name: str
    status: str
    notes: str = ""
    output: str = ""
    ttl: float | None = None
    http: str | None = None
    interval: float = 0.0
    timeout: float = 10.0
    tls_skip_verify: bool = False
    ttl_deadline: float = 0.0
    create_index: int = 0
    modify_index: int = 0
    runner: threading.Event | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return "ttl" if self.ttl is not None else "http"


@dataclass
class Service:
    service_id: str
    name: str
    tags: list[str]
    meta: dict[str, str]
    address: str
    port: int
    create_index: int
    modify_index: int


class ConsulAgent:
    """The stand-in. `start` serves on `port` (0: a free one, kept across restarts)."""

    def __init__(self, port: int = 0, *, check_ca_file: Path | None = None,
                 token: str | None = None) -> None:
        self.port = port
        self.check_ca_file = check_ca_file
        self.token = token
        self.node_id = str(uuid.uuid4())
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Condition()
        self._index = 1
        self._services: dict[str, Service] = {}
        self._checks: dict[str, Check] = {}
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()

    # Life cycle.

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self, *, empty: bool = False) -> None:
        """Serve; `empty` forgets every service and check first, as a dev agent does."""
        if empty:
            self._forget_everything()
        agent = self

        class Handler(_Handler):
            standin = agent

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._stopped.clear()
        self._threads = [
            threading.Thread(target=self._server.serve_forever, daemon=True),
            threading.Thread(target=self._expire_ttls, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        with self._lock:
            for check in self._checks.values():
                self._start_runner(check)

    def stop(self) -> None:
        """Stop answering (connections are refused); the state is kept."""
        if self._server is None:
            return
        self._stopped.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        with self._lock:
            for check in self._checks.values():
                self._stop_runner(check)
        self._server = None

    def restart(self) -> None:
        """Come back on the same port with an empty state, as a dev agent does."""
        self.stop()
        self.start(empty=True)

    def _forget_everything(self) -> None:
        with self._lock:
            for check_id in list(self._checks):
                self._drop_check(check_id)
            self._services.clear()
            self._bump()

    # Direct views for the tests (the HTTP API is what keyquorum sees).

    def services(self) -> dict[str, Service]:
        with self._lock:
            return dict(self._services)

    def checks(self) -> dict[str, Check]:
        with self._lock:
            return dict(self._checks)

    # The state, under the lock.

    def _bump(self) -> int:
        self._index += 1
        self._lock.notify_all()
        return self._index

    def register_service(self, body: Any, replace_existing_checks: bool) -> None:
        if not isinstance(body, dict):
            raise ApiError(400, "Request decode failed: expected a JSON object")
        fields = _canonical(body)
        name = fields.get("name")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "Missing service name")
        service_id = fields.get("id") or name
        tags = fields.get("tags") or []
        meta = fields.get("meta") or {}
        port = fields.get("port") or 0
        address = fields.get("address") or ""
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise ApiError(400, "Request decode failed: Tags must be a list of strings")
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise ApiError(400, "Invalid Service Meta: values must be strings")
        if not isinstance(port, int) or isinstance(port, bool):
            raise ApiError(400, "Request decode failed: Port must be a number")

        definitions = list(fields.get("checks") or [])
        if fields.get("check"):
            definitions.insert(0, fields["check"])
        with self._lock:
            checks = [self._check_from(definition, position, len(definitions), service_id, name)
                      for position, definition in enumerate(definitions)]
            index = self._bump()
            existing = self._services.get(service_id)
            self._services[service_id] = Service(
                service_id, name, list(tags), dict(meta), address, port,
                create_index=existing.create_index if existing else index, modify_index=index,
            )
            # Checks named again are replaced; with replace-existing-checks, the
            # service's other checks go too.
            wanted = {check.check_id for check in checks}
            replaced: dict[str, Check] = {}
            for old in list(self._checks.values()):
                if old.check_id in wanted:
                    replaced[old.check_id] = self._drop_check(old.check_id)
                elif old.service_id == service_id and replace_existing_checks:
                    self._drop_check(old.check_id)
            for check in checks:
                previous = replaced.get(check.check_id)
                if previous is not None:
                    # Registered again: Consul keeps the status to avoid a flap.
                    check.status, check.output = previous.status, previous.output
                    check.create_index = previous.create_index
                else:
                    check.create_index = index
                check.modify_index = index
                if check.ttl is not None:
                    check.ttl_deadline = time.monotonic() + check.ttl
                self._checks[check.check_id] = check
                self._start_runner(check)

    def _check_from(self, definition: Any, position: int, count: int, service_id: str,
                    service_name: str) -> Check:
        if not isinstance(definition, dict):
            raise ApiError(400, "Request decode failed: a check must be an object")
        fields = _canonical(definition)
        check_id = fields.get("checkid") or (
            f"service:{service_id}" if count == 1 else f"service:{service_id}:{position + 1}"
        )
        name = fields.get("name") or f"Service '{service_name}' check"
        status = fields.get("status") or "critical"
        if status not in STATUSES:
            raise ApiError(400, f"Invalid check: status {status!r} is not one of {STATUSES}")
        try:
            ttl = parse_duration(fields["ttl"]) if fields.get("ttl") else None
            interval = parse_duration(fields.get("interval") or "0")
            timeout = parse_duration(fields.get("timeout") or "10s")
        except ValueError as error:
            raise ApiError(400, f"Request decode failed: {error}") from None
        http = fields.get("http")
        if ttl is None and not http:
            raise ApiError(400, "Invalid check: the stand-in implements TTL and HTTP checks only")
        if ttl is not None and http:
            raise ApiError(400, "Invalid check: TTL and HTTP are exclusive")
        if http and interval <= 0:
            raise ApiError(400, "Invalid check: Interval must be > 0 for an HTTP check")
        return Check(
            check_id=check_id, name=name, service_id=service_id, service_name=service_name,
            status=status, notes=fields.get("notes") or "", ttl=ttl, http=http,
            interval=max(interval, MIN_CHECK_INTERVAL) if http else 0.0,
            timeout=timeout, tls_skip_verify=bool(fields.get("tlsskipverify")),
        )

    def _drop_check(self, check_id: str) -> Check:
        check = self._checks.pop(check_id)
        self._stop_runner(check)
        return check

    def deregister_service(self, service_id: str) -> None:
        with self._lock:
            if service_id not in self._services:
                raise ApiError(404, f"Unknown service ID {service_id!r}. Ensure that the "
                                    "service ID is passed, not the service name.")
            del self._services[service_id]
            for check in list(self._checks.values()):
                if check.service_id == service_id:
                    self._drop_check(check.check_id)
            self._bump()

    def update_ttl(self, check_id: str, status: str, output: str) -> None:
        with self._lock:
            check = self._checks.get(check_id)
            if check is None:
                raise ApiError(404, f"Unknown check ID {check_id!r}. Ensure that the check ID "
                                    "is passed, not the check name.")
            if check.ttl is None:
                raise ApiError(500, f"CheckID {check_id!r} does not have associated TTL")
            check.ttl_deadline = time.monotonic() + check.ttl
            self._set_status(check, status, output)

    def _set_status(self, check: Check, status: str, output: str) -> None:
        if (check.status, check.output) != (status, output):
            check.status, check.output = status, output
            check.modify_index = self._bump()

    # The agent's own clocks: TTL expiry and HTTP checks.

    def _expire_ttls(self) -> None:
        while not self._stopped.wait(TTL_SWEEP_SECONDS):
            now = time.monotonic()
            with self._lock:
                for check in self._checks.values():
                    if check.ttl is not None and now > check.ttl_deadline:
                        self._set_status(check, "critical", "TTL expired")

    def _start_runner(self, check: Check) -> None:
        if check.http is None or self._server is None:
            return
        check.runner = threading.Event()
        threading.Thread(target=self._run_http_check, args=(check, check.runner),
                         daemon=True).start()

    def _stop_runner(self, check: Check) -> None:
        if check.runner is not None:
            check.runner.set()
            check.runner = None

    def _run_http_check(self, check: Check, stop: threading.Event) -> None:
        assert check.http is not None
        context = ssl.create_default_context(
            cafile=str(self.check_ca_file) if self.check_ca_file else None
        )
        if check.tls_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        # Consul staggers a check's first run over its interval.
        wait = random.uniform(0, check.interval)
        while not stop.wait(wait):
            status, output = _probe(check.http, context, min(check.timeout, check.interval))
            with self._lock:
                if not stop.is_set():
                    self._set_status(check, status, output)
            wait = check.interval

    # Reads, shaped as Consul answers them.

    def node_json(self) -> dict[str, Any]:
        return {"ID": self.node_id, "Node": NODE_NAME, "Address": "127.0.0.1",
                "Datacenter": DATACENTER,
                "TaggedAddresses": {"lan": "127.0.0.1", "wan": "127.0.0.1"},
                "Meta": {"consul-network-segment": ""}, "CreateIndex": 1, "ModifyIndex": 1}

    def agent_service_json(self, service: Service) -> dict[str, Any]:
        return {"ID": service.service_id, "Service": service.name, "Tags": list(service.tags),
                "Meta": dict(service.meta), "Port": service.port, "Address": service.address,
                "TaggedAddresses": {}, "Weights": {"Passing": 1, "Warning": 1},
                "EnableTagOverride": False, "Datacenter": DATACENTER}

    def check_json(self, check: Check) -> dict[str, Any]:
        service = self._services.get(check.service_id)
        definition = {"Interval": f"{check.interval:g}s", "Timeout": f"{check.timeout:g}s",
                      "HTTP": check.http or "", "TLSSkipVerify": check.tls_skip_verify,
                      "DeregisterCriticalServiceAfter": "0s"}
        return {"Node": NODE_NAME, "CheckID": check.check_id, "Name": check.name,
                "Status": check.status, "Notes": check.notes, "Output": check.output,
                "ServiceID": check.service_id, "ServiceName": check.service_name,
                "ServiceTags": list(service.tags) if service else [], "Type": check.kind,
                "Definition": definition, "CreateIndex": check.create_index,
                "ModifyIndex": check.modify_index}

    def serf_health_json(self) -> dict[str, Any]:
        return {"Node": NODE_NAME, "CheckID": "serfHealth", "Name": "Serf Health Status",
                "Status": "passing", "Notes": "", "Output": "Agent alive and reachable",
                "ServiceID": "", "ServiceName": "", "ServiceTags": [], "Type": "",
                "CreateIndex": 1, "ModifyIndex": 1}

    def health_entries(self, name: str, passing: bool, tags: list[str]) -> list[Any]:
        entries = []
        for service in self._instances(name, tags):
            checks = [self.serf_health_json()] + [
                self.check_json(check) for check in self._checks.values()
                if check.service_id == service.service_id
            ]
            if passing and any(check["Status"] != "passing" for check in checks):
                continue
            entries.append({"Node": self.node_json(), "Service": self.agent_service_json(service),
                            "Checks": checks})
        return entries

    def catalog_entries(self, name: str, tags: list[str]) -> list[Any]:
        node = self.node_json()
        return [{"ID": node["ID"], "Node": NODE_NAME, "Address": node["Address"],
                 "Datacenter": DATACENTER, "TaggedAddresses": node["TaggedAddresses"],
                 "NodeMeta": node["Meta"], "ServiceKind": "", "ServiceID": service.service_id,
                 "ServiceName": service.name, "ServiceTags": list(service.tags),
                 "ServiceAddress": service.address, "ServiceTaggedAddresses": {},
                 "ServiceWeights": {"Passing": 1, "Warning": 1},
                 "ServiceMeta": dict(service.meta), "ServicePort": service.port,
                 "ServiceEnableTagOverride": False,
                 "ServiceProxy": {"Config": None, "Upstreams": None},
                 "ServiceConnect": {}, "CreateIndex": service.create_index,
                 "ModifyIndex": service.modify_index}
                for service in self._instances(name, tags)]

    def catalog_services(self) -> dict[str, list[str]]:
        # A dev agent is a server, and servers register the "consul" service.
        names: dict[str, list[str]] = {"consul": []}
        for service in self._services.values():
            known = names.setdefault(service.name, [])
            known.extend(tag for tag in service.tags if tag not in known)
        return names

    def _instances(self, name: str, tags: list[str]) -> list[Service]:
        return [service for service in sorted(self._services.values(),
                                              key=lambda s: s.service_id)
                if service.name == name and all(tag in service.tags for tag in tags)]

    def wait_for_index(self, index: int, wait: float) -> None:
        deadline = time.monotonic() + wait
        with self._lock:
            while self._index <= index and not self._stopped.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._lock.wait(remaining)


def _probe(url: str, context: ssl.SSLContext, timeout: float) -> tuple[str, str]:
    request = urllib.request.Request(url, headers={"User-Agent": "Consul Health Check"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=timeout) as response:
            code, body = response.status, response.read(4096)
    except urllib.error.HTTPError as error:
        code, body = error.code, error.read(4096)
        error.close()
    except (OSError, ssl.SSLError) as error:
        return "critical", f"Get {url!r}: {error}"
    text = body.decode("utf-8", "replace")
    status = "passing" if 200 <= code < 300 else "warning" if code == 429 else "critical"
    return status, f"HTTP GET {url}: {code} Output: {text}"


_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("PUT", re.compile(r"/v1/agent/service/register"), "register"),
    ("PUT", re.compile(r"/v1/agent/service/deregister/(?P<id>.+)"), "deregister"),
    ("PUT", re.compile(r"/v1/agent/check/(?P<verb>pass|warn|fail)/(?P<id>.+)"), "ttl"),
    ("PUT", re.compile(r"/v1/agent/check/update/(?P<id>.+)"), "update"),
    ("GET", re.compile(r"/v1/agent/services"), "agent_services"),
    ("GET", re.compile(r"/v1/agent/checks"), "agent_checks"),
    ("GET", re.compile(r"/v1/health/service/(?P<name>[^/]+)"), "health_service"),
    ("GET", re.compile(r"/v1/catalog/service/(?P<name>[^/]+)"), "catalog_service"),
    ("GET", re.compile(r"/v1/catalog/services"), "catalog_services"),
    ("GET", re.compile(r"/v1/status/leader"), "leader"),
]
_VERB_STATUS = {"pass": "passing", "warn": "warning", "fail": "critical"}


class _Handler(BaseHTTPRequestHandler):
    standin: ConsulAgent
    # One request per connection: a stopped agent must not go on answering on a
    # kept-alive connection.
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        self.standin.requests.append((method, path))
        try:
            self._authorize(query)
            for route_method, pattern, action in _ROUTES:
                match = pattern.fullmatch(path)
                if match is None:
                    continue
                if route_method != method:
                    raise ApiError(405, f"method {method} not allowed")
                status, body, index = getattr(self, "_" + action)(query, **match.groupdict())
                self._answer(status, body, index)
                return
            raise ApiError(404, f"Invalid URL path: not a recognized HTTP API endpoint: {path}")
        except ApiError as error:
            self._answer(error.status, error.reason, None, plain=True)

    def _authorize(self, query: dict[str, list[str]]) -> None:
        required = self.standin.token
        if required is None:
            return
        given = self.headers.get("X-Consul-Token") or (query.get("token") or [None])[0]
        if given is None:
            raise ApiError(403, "Permission denied: anonymous token lacks permission")
        if given != required:
            raise ApiError(403, "ACL not found")

    def _answer(self, status: int, body: Any, index: int | None, plain: bool = False) -> None:
        # Errors are plain text; a write that succeeded has an empty body.
        if plain:
            data, kind = str(body).encode(), "text/plain; charset=utf-8"
        elif body is None:
            data, kind = b"", "application/json"
        else:
            data, kind = json.dumps(body).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        if index is not None:
            self.send_header("X-Consul-Index", str(index))
            self.send_header("X-Consul-Knownleader", "true")
            self.send_header("X-Consul-Lastcontact", "0")
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError as error:
            raise ApiError(400, f"Request decode failed: {error}") from None

    def _blocking(self, query: dict[str, list[str]]) -> None:
        if "index" in query:
            try:
                index = int(query["index"][0])
                wait = parse_duration(query.get("wait", ["5m"])[0])
            except ValueError as error:
                raise ApiError(400, f"Invalid blocking query: {error}") from None
            self.standin.wait_for_index(index, min(wait, 600.0))

    # The endpoints: each answers (status, body, X-Consul-Index or None).

    def _register(self, query: dict[str, list[str]]) -> tuple[int, Any, None]:
        replace = "replace-existing-checks" in query and query["replace-existing-checks"][0] in (
            "", "1", "true")
        self.standin.register_service(self._body(), replace)
        return 200, None, None

    def _deregister(self, query: dict[str, list[str]], id: str) -> tuple[int, Any, None]:
        self.standin.deregister_service(id)
        return 200, None, None

    def _ttl(self, query: dict[str, list[str]], verb: str, id: str) -> tuple[int, Any, None]:
        self.standin.update_ttl(id, _VERB_STATUS[verb], query.get("note", [""])[0])
        return 200, None, None

    def _update(self, query: dict[str, list[str]], id: str) -> tuple[int, Any, None]:
        body = self._body()
        if not isinstance(body, dict):
            raise ApiError(400, "Request decode failed: expected a JSON object")
        fields = _canonical(body)
        status = fields.get("status", "")
        if status not in STATUSES:
            raise ApiError(400, f"Invalid check status: {status!r}")
        self.standin.update_ttl(id, status, fields.get("output") or "")
        return 200, None, None

    def _agent_services(self, query: dict[str, list[str]]) -> tuple[int, Any, None]:
        standin = self.standin
        with standin._lock:
            return 200, {service_id: standin.agent_service_json(service)
                         for service_id, service in standin._services.items()}, None

    def _agent_checks(self, query: dict[str, list[str]]) -> tuple[int, Any, None]:
        standin = self.standin
        with standin._lock:
            return 200, {check_id: standin.check_json(check)
                         for check_id, check in standin._checks.items()}, None

    def _health_service(self, query: dict[str, list[str]], name: str) -> tuple[int, Any, int]:
        self._blocking(query)
        # "?passing" alone, or with 1/true, asks for passing; false/0 does not.
        passing = "passing" in query and query["passing"][0].lower() not in ("false", "0")
        with self.standin._lock:
            entries = self.standin.health_entries(name, passing, query.get("tag", []))
            return 200, entries, self.standin._index

    def _catalog_service(self, query: dict[str, list[str]], name: str) -> tuple[int, Any, int]:
        self._blocking(query)
        with self.standin._lock:
            return 200, self.standin.catalog_entries(name, query.get("tag", [])), \
                self.standin._index

    def _catalog_services(self, query: dict[str, list[str]]) -> tuple[int, Any, int]:
        self._blocking(query)
        with self.standin._lock:
            return 200, self.standin.catalog_services(), self.standin._index

    def _leader(self, query: dict[str, list[str]]) -> tuple[int, Any, None]:
        return 200, "127.0.0.1:8300", None
