"""Consul: each node registers itself in its local agent; discovery finds the active node.

Theory of operation
===================

Each node registers one instance of the cluster's service (``keyquorum`` by default)
in the Consul agent on its host:

- ID ``<service>-<node id>``, the KMIP port, and the KMIP address (``service_address``,
  or the KMIP listen host, or when that is a wildcard the agent's own node address);
- tags that say what the node is now: ``active`` on the Raft leader that hears from
  a quorum, which is the node that accepts writes, ``standby`` on every other node;
  then the operator's own tags. A replication role tag (``primary``,
  ``perf-secondary``, ``dr-secondary``) is added only when the ``replication_role``
  callable names one: no replication exists yet, and a standalone cluster tagged
  ``primary`` would be found by a secondary looking for a real primary, so the
  default names none;
- meta: cluster_id, node_id, version and api_address;
- a TTL check, passing while the node is unsealed and critical while it is sealed.
  The node feeds it; a node that dies stops feeding it and Consul's own clock turns
  it critical one TTL later;
- an HTTP check on ``/v1/sys/health``, run by the agent: 200 (active, passing), 429
  (standby, warning), 503 (sealed or without quorum, critical). It takes a node that
  is alive but cut off out of the healthy set. The check verifies the API's
  certificate (TLSSkipVerify false): the agent must trust the cluster CA, see
  deploy/consul/README.md.

The sealed state and the Raft role come from the callable the health endpoint uses
(``node.health``), so that when the seal exists its state reaches Consul with no
change here.

A ``Registration`` runs in a thread of its own: py-consul is synchronous and an
agent can hang or vanish, and the asyncio loop that serves KMIP must never wait on
it. Every POLL_SECONDS the thread reads the node's status and reconciles:

1. when the tags the node should have differ from the ones last registered, or its
   KMIP listener has moved (the replicated listener settings rebind it live,
   cluster/listener_addresses.py), it registers again (Consul has no call that
   changes tags alone; the agent keeps the status of a check registered again under
   the same ID, so this does not flap the checks);
2. it refreshes the TTL check at a third of its TTL, and at once when the sealed
   state changed. A refresh answered 404 means the agent no longer knows the
   check: it restarted with an empty state or someone deregistered the service.
   The thread registers again in the same round.

A failure to reach the agent forgets what was registered and retries with
exponential backoff, from BACKOFF_MIN_SECONDS up to BACKOFF_MAX_SECONDS; once the
agent answers, everything is registered afresh. One line is logged when the agent
becomes unreachable and one when it is back, not one per attempt.

A clean stop deregisters the instance. A node killed with SIGKILL cannot, and
leaves a critical instance behind, out of the healthy set, until the node comes back
and registers the same ID again. (A DeregisterCriticalServiceAfter would reap it,
but would also reap a node sealed for longer than that; it is left out.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

import consul
import requests

from .api import NodeHealth
from .config import NodeConfig

log = logging.getLogger("keyquorum.consul")

# Tags must follow a leader change within a second; polling a local status read ten
# times a second costs nothing next to that.
POLL_SECONDS = 0.1
# One call to the agent. The agent is on this host and answers in milliseconds; a
# longer wait only delays the next retry and a clean shutdown.
AGENT_TIMEOUT_SECONDS = 2.0
# From a quarter second, doubling, to five seconds between attempts while the agent
# is down: a restarted agent is found again within five seconds.
BACKOFF_MIN_SECONDS = 0.25
BACKOFF_MAX_SECONDS = 5.0
# The TTL is refreshed this many times per TTL, so one lost refresh does not fail it.
TTL_REFRESHES_PER_TTL = 3

NodeState = Literal["active", "standby"]
StatusSource = Callable[[], NodeHealth]
RoleSource = Callable[[], str | None]

# What py-consul and requests raise when the agent is down, slow or refuses a call.
AGENT_ERRORS = (consul.ConsulException, requests.RequestException)


class DiscoveryError(Exception):
    """Consul could not be asked; the message says why."""


def no_replication() -> str | None:
    """No replication role, so no role tag: a standalone cluster is nobody's primary."""
    return None


# A cluster's replication mode (cluster/replication_state.py's Mode values) and the
# tag that says it in Consul; a cluster with replication off carries none.
_ROLE_TAGS = {"primary": "primary", "performance": "perf-secondary", "dr": "dr-secondary"}


def replication_role_tag(mode: str) -> str | None:
    """The role tag of a cluster in replication mode ``mode``, or None."""
    return _ROLE_TAGS.get(mode)


@dataclass(frozen=True)
class ServiceDefinition:
    """What a node registers, apart from the tags and the sealed status, which change."""

    name: str
    service_id: str
    # None lets Consul use the agent's node address.
    address: str | None
    port: int
    extra_tags: tuple[str, ...]
    meta: tuple[tuple[str, str], ...]
    health_url: str
    check_timeout_seconds: float

    @property
    def sealed_check_id(self) -> str:
        return f"{self.service_id}-sealed"

    @property
    def health_check_id(self) -> str:
        return f"{self.service_id}-health"


def service_definition(
    config: NodeConfig, kmip_port: int, api_port: int, kmip_host: str | None = None
) -> ServiceDefinition:
    """This node's instance, from its config and where it actually listens.

    ``kmip_host`` is where the KMIP listener is bound now, when the replicated listener
    settings moved it away from node.toml's address.
    """
    assert config.consul is not None
    settings = config.consul
    address = settings.service_address or _concrete(kmip_host or config.kmip.listen.host)

    # The agent runs on this host, so it reaches an API on a wildcard through loopback.
    api_host = _concrete(config.api.listen.host) or _loopback_for(config.api.listen.host)
    api_url = f"https://{_bracketed(api_host)}:{api_port}"
    meta = (
        ("cluster_id", settings.cluster_id),
        ("node_id", str(config.node.id)),
        ("version", _version()),
        ("api_address", api_url),
        *settings.service_meta,
    )
    return ServiceDefinition(
        name=settings.service,
        service_id=f"{settings.service}-{config.node.id}",
        address=address,
        port=kmip_port,
        extra_tags=settings.service_tags,
        meta=meta,
        health_url=f"{api_url}/v1/sys/health",
        check_timeout_seconds=settings.check_timeout_seconds,
    )


def node_state(status: NodeHealth) -> NodeState:
    """Active is the node that accepts writes: the leader, while it has a quorum."""
    return "active" if status.role == "leader" and status.has_quorum else "standby"


def consul_client(config: NodeConfig) -> consul.Consul:
    """A py-consul client for the agent the [consul] section names."""
    assert config.consul is not None
    settings = config.consul
    host, _, port = settings.address.rpartition(":")
    verify: bool | str = str(settings.ca_file) if settings.ca_file else True
    cert = (str(settings.cert_file), str(settings.key_file)) if settings.cert_file else None
    client = consul.Consul(
        host=host,
        port=int(port),
        scheme=settings.scheme,
        token=settings.token,
        verify=verify,
        cert=cert,
        connections_timeout=AGENT_TIMEOUT_SECONDS,
    )
    # py-consul lets CONSUL_HTTP_TOKEN win over its argument; the config must win.
    if settings.token is not None:
        client.token = settings.token
    return client


class Registration:
    """Keeps this node's instance in the agent true until `stop`; see the module doc."""

    def __init__(
        self,
        client: consul.Consul,
        definition: ServiceDefinition,
        status: StatusSource,
        replication_role: RoleSource = no_replication,
        moved: Callable[[], ServiceDefinition] | None = None,
    ) -> None:
        self._client = client
        self._definition = definition
        # The definition as it is now, when the node's KMIP address can move.
        self._moved = moved
        self._status = status
        self._replication_role = replication_role
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"consul-{definition.service_id}", daemon=True
        )
        # What the agent was last told; None when it must be told everything again.
        self._registered_tags: tuple[str, ...] | None = None
        self._reported_sealed: bool | None = None
        self._ttl_due = 0.0
        self._agent_reachable = True

    @property
    def definition(self) -> ServiceDefinition:
        return self._definition

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Deregister and end the thread; blocks for at most a few agent timeouts."""
        self._stopping.set()
        self._thread.join(timeout=3 * AGENT_TIMEOUT_SECONDS + POLL_SECONDS)

    def _run(self) -> None:
        backoff = BACKOFF_MIN_SECONDS
        while not self._stopping.is_set():
            try:
                self._reconcile()
            except AGENT_ERRORS as error:
                self._lost_agent(error)
                self._stopping.wait(backoff)
                backoff = min(2 * backoff, BACKOFF_MAX_SECONDS)
                continue
            if not self._agent_reachable:
                self._agent_reachable = True
                log.info("consul_agent_reachable service_id=%s", self._definition.service_id)
            backoff = BACKOFF_MIN_SECONDS
            self._stopping.wait(POLL_SECONDS)
        self._deregister()

    def _reconcile(self) -> None:
        status = self._current_status()
        sealed = status is None or status.sealed
        tags = self._tags(status)
        moved = self._current_definition()

        # First the tags, which change with the leader, and the address; then the TTL check.
        if moved != self._definition:
            log.info("consul_address_moved service_id=%s address=%s port=%d",
                     moved.service_id, moved.address or "agent", moved.port)
            self._definition = moved
            self._registered_tags = None
        if tags != self._registered_tags:
            self._register(tags, sealed)
        now = time.monotonic()
        if sealed == self._reported_sealed and now < self._ttl_due:
            return
        if not self._report_sealed(sealed):
            log.warning("consul_service_forgotten service_id=%s", self._definition.service_id)
            self._register(tags, sealed)
            if not self._report_sealed(sealed):
                raise consul.ConsulException("the agent forgot the check just registered")
        self._reported_sealed = sealed
        self._ttl_due = now + self._definition.check_timeout_seconds / TTL_REFRESHES_PER_TTL

    def _current_definition(self) -> ServiceDefinition:
        if self._moved is None:
            return self._definition
        try:
            return self._moved()
        except Exception as error:
            # A listener between sockets (stopping, or a rebind that failed): keep the
            # last address rather than end the thread.
            log.warning("consul_address_unknown service_id=%s error=%s",
                        self._definition.service_id, type(error).__name__)
            return self._definition

    def _current_status(self) -> NodeHealth | None:
        try:
            return self._status()
        except Exception as error:
            # As on the health endpoint: a status that cannot be read is not healthy.
            log.exception("consul_status_failed error=%s", type(error).__name__)
            return None

    def _tags(self, status: NodeHealth | None) -> tuple[str, ...]:
        state: NodeState = "standby" if status is None else node_state(status)
        role = self._replication_role()
        return (state, *((role,) if role else ()), *self._definition.extra_tags)

    def _register(self, tags: tuple[str, ...], sealed: bool) -> None:
        definition = self._definition
        self._client.agent.service.register(
            definition.name,
            service_id=definition.service_id,
            address=definition.address,
            port=definition.port,
            tags=list(tags),
            meta=dict(definition.meta),
            check=_sealed_check(definition, sealed),
            extra_checks=[_health_check(definition)],
            replace_existing_checks=True,
        )
        self._registered_tags = tags
        self._reported_sealed = None
        log.info("consul_registered service_id=%s tags=%s", definition.service_id,
                 ",".join(tags))

    def _report_sealed(self, sealed: bool) -> bool:
        """Refresh the TTL check; False when the agent does not know it (404)."""
        check = self._client.agent.check
        check_id = self._definition.sealed_check_id
        if sealed:
            known = check.ttl_fail(check_id, notes="sealed: the node serves no KMIP request")
        else:
            known = check.ttl_pass(check_id, notes="unsealed")
        return bool(known)

    def _lost_agent(self, error: Exception) -> None:
        self._registered_tags = None
        self._reported_sealed = None
        if self._agent_reachable:
            self._agent_reachable = False
            # The error's type only: its text can carry the agent URL with a token.
            log.warning("consul_agent_unreachable service_id=%s error=%s retry_max_seconds=%g",
                        self._definition.service_id, type(error).__name__, BACKOFF_MAX_SECONDS)

    def _deregister(self) -> None:
        service_id = self._definition.service_id
        try:
            self._client.agent.service.deregister(service_id)
        except AGENT_ERRORS as error:
            log.warning("consul_deregister_failed service_id=%s error=%s",
                        service_id, type(error).__name__)
            return
        log.info("consul_deregistered service_id=%s", service_id)


def start_registration(
    config: NodeConfig,
    kmip_address: Callable[[], tuple[str, int]],
    api_port: int,
    status: StatusSource,
    replication_role: RoleSource = no_replication,
) -> Registration | None:
    """Start registering this node, or None when its config asks for no registration.

    ``kmip_address`` is where the KMIP listener is bound now; it is read from the
    registration's thread on every round, so it must be cheap and never block.
    """
    if config.consul is None or config.consul.disable_registration:
        return None

    def describe() -> ServiceDefinition:
        host, port = kmip_address()
        return service_definition(config, port, api_port, kmip_host=host)

    registration = Registration(
        consul_client(config), describe(), status, replication_role, moved=describe)
    registration.start()
    return registration


@dataclass(frozen=True)
class ActiveNode:
    """The active node of a cluster, as Consul's catalog knows it."""

    node_id: str
    cluster_id: str
    # Where KMIP clients reach it.
    address: str
    port: int
    api_address: str


def find_active(
    client: consul.Consul, service: str = "keyquorum", cluster_id: str | None = None
) -> ActiveNode | None:
    """The one healthy instance tagged active, or None when there is none or several.

    Several healthy active instances are possible only for a moment, while a leader
    that lost its quorum has not yet failed its health check; the caller asks again.
    """
    try:
        _, entries = client.health.service(service, passing=True, tag="active")
    except AGENT_ERRORS as error:
        raise DiscoveryError(f"cannot ask Consul for {service}: {type(error).__name__}") from error

    found = [_active_node(entry) for entry in entries or []]
    if cluster_id is not None:
        found = [node for node in found if node.cluster_id == cluster_id]
    if len(found) > 1:
        log.warning("consul_active_ambiguous service=%s nodes=%s", service,
                    ",".join(node.node_id for node in found))
        return None
    return found[0] if found else None


def _active_node(entry: dict[str, Any]) -> ActiveNode:
    service = entry["Service"]
    meta = service.get("Meta") or {}
    return ActiveNode(
        node_id=meta.get("node_id", service["ID"]),
        cluster_id=meta.get("cluster_id", ""),
        # An instance registered without an address is reached at its agent's node.
        address=service.get("Address") or entry["Node"]["Address"],
        port=int(service["Port"]),
        api_address=meta.get("api_address", ""),
    )


def _sealed_check(definition: ServiceDefinition, sealed: bool) -> dict[str, Any]:
    return {
        "CheckID": definition.sealed_check_id,
        "Name": "keyquorum sealed status",
        "Notes": "critical while the node is sealed or stopped feeding it",
        "TTL": _duration(definition.check_timeout_seconds),
        # The first registration says the truth at once; later ones keep the status.
        "Status": "critical" if sealed else "passing",
    }


def _health_check(definition: ServiceDefinition) -> dict[str, Any]:
    interval = definition.check_timeout_seconds
    return {
        "CheckID": definition.health_check_id,
        "Name": "keyquorum health endpoint",
        "HTTP": definition.health_url,
        "Interval": _duration(interval),
        # Half the interval: an answer slower than that is as bad as none.
        "Timeout": _duration(interval / 2),
        "TLSSkipVerify": False,
    }


def _duration(seconds: float) -> str:
    """A Go duration, as Consul parses them."""
    return f"{round(seconds * 1000)}ms"


def _concrete(host: str) -> str | None:
    return None if host in ("0.0.0.0", "::", "") else host


def _loopback_for(host: str) -> str:
    return "::1" if ":" in host else "127.0.0.1"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _version() -> str:
    try:
        return metadata.version("keyquorum")
    except metadata.PackageNotFoundError:
        return "unknown"
