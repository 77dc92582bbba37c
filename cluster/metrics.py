"""Prometheus metrics at ``GET /v1/sys/metrics``, in the text exposition format.

Two kinds of numbers, collected two ways:

- per KMIP batch item, a counter by operation and result and a latency histogram by
  operation. These are the only metrics that cost anything on the request path: one
  counter increment and one histogram observation, through ``KmipMetrics.observe``,
  which kmip/service.py calls once per item;
- everything else (connections, Raft state and indexes, seal, audit, replication) is
  read from the live objects when Prometheus scrapes, by ``NodeCollector``: the
  front end's counters, ``ReplicatedLog.status()``, ``Seal.sealed``, the audit
  broker's failure count and the replication link's status.

Each node has its own registry, so that two nodes in one process (tests) do not
share or collide. The endpoint needs no token, as the health endpoint does not: it
shows counts and indexes, never an identifier, a name or key material.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from keyquorum.kmip.frontend import KmipFrontend
from keyquorum.kmip.https import KmipHttpsFrontend
from keyquorum.kmip.tables import Operation, ResultReason, ResultStatus

from .audit import AuditBroker
from .notify import Notifier
from .raft import ReplicatedLog
from .replication_node import ReplicationNode
from .replication_state import SECONDARY_MODES
from .seal import Seal

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# KMIP latency spans a local Get (well under a millisecond of work, a few with a
# commit barrier) to a write that waits for a slow follower; the top buckets catch
# the commit timeout of cluster/node.py (10 s).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

ROLES = ("leader", "follower", "candidate")


class KmipMetrics:
    """The per-item counter and histogram; ``observe`` is the service's hook."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._items = Counter(
            "keyquorum_kmip_requests", "KMIP batch items answered, by operation and result.",
            ("operation", "result"), registry=registry)
        self._latency = Histogram(
            "keyquorum_kmip_request_duration_seconds",
            "Time to answer one KMIP batch item, audit included, by operation.",
            ("operation",), buckets=LATENCY_BUCKETS, registry=registry)

    def observe(self, operation: object, status: object, reason: object,
                seconds: float) -> None:
        name = _label(operation)
        self._items.labels(name, _result(status, reason)).inc()
        self._latency.labels(name).observe(seconds)


def _label(value: object) -> str:
    if isinstance(value, Operation | ResultReason):
        return value.name.lower()
    return "unknown" if value is None else str(value)


def _result(status: object, reason: object) -> str:
    # "success", or the Result Reason that failed the item (bounded: KMIP's table).
    if status == ResultStatus.SUCCESS:
        return "success"
    if status == ResultStatus.OPERATION_UNDONE:
        return "operation_undone"
    return _label(reason) if reason is not None else "failed"


@dataclass(frozen=True)
class NodeParts:
    """What the collector reads at scrape time; every part is the node's live object."""

    frontend: KmipFrontend
    replicated: ReplicatedLog
    seal: Seal
    audit: AuditBroker
    replication: ReplicationNode
    # KMIP over HTTPS, when kmip.https_listen is set; Notify and Put to endpoints.
    https: KmipHttpsFrontend | None = None
    notifier: Notifier | None = None


class NodeCollector(Collector):
    """Reads live values when scraped: nothing is counted twice or kept in sync."""

    def __init__(self, parts: NodeParts) -> None:
        self._parts = parts

    def collect(self) -> Iterator[Metric]:
        yield from self._connections()
        yield from self._raft()
        yield from self._seal_and_audit()
        yield from self._replication()
        yield from self._https_and_notify()

    def _https_and_notify(self) -> Iterator[Metric]:
        https, notifier = self._parts.https, self._parts.notifier
        if https is not None:
            for name, value, text in (
                ("accepted", https.accepted, "KMIP over HTTPS: TLS connections admitted."),
                ("refused", https.refused, "KMIP over HTTPS: connections refused."),
                ("handshake_failures", https.handshake_failures,
                 "KMIP over HTTPS: failed TLS handshakes."),
            ):
                yield _counter(f"keyquorum_kmip_https_connections_{name}", text, value)
            yield _counter("keyquorum_kmip_https_requests", "KMIP over HTTPS: requests answered.",
                           https.requests)
        if notifier is not None:
            yield _counter("keyquorum_notify_sent", "Notify and Put messages an endpoint took.",
                           notifier.sent)
            yield _counter("keyquorum_notify_failures",
                           "Failed Notify and Put attempts (each retry counts).", notifier.failed)
            yield _gauge("keyquorum_notify_queued", "Object changes waiting to be sent.",
                         notifier.queued)

    def _connections(self) -> Iterator[Metric]:
        frontend = self._parts.frontend
        for name, value, text in (
            ("accepted", frontend.accepted, "TLS connections admitted."),
            ("refused", frontend.refused, "Connections refused (limit, revoked or unknown)."),
            ("handshake_failures", frontend.handshake_failures, "Failed TLS handshakes."),
        ):
            yield _counter(f"keyquorum_kmip_connections_{name}", text, value)
        yield _counter("keyquorum_kmip_messages", "KMIP request messages answered.",
                       frontend.requests)
        yield _counter("keyquorum_kmip_message_failures",
                       "Request messages that could not be read or answered.",
                       frontend.request_failures)
        yield _gauge("keyquorum_kmip_active_connections", "Open KMIP connections.",
                     frontend.active_connections)

    def _raft(self) -> Iterator[Metric]:
        status = self._parts.replicated.status()
        role = GaugeMetricFamily("keyquorum_raft_role", "1 for this node's Raft role.",
                                 labels=("role",))
        for name in ROLES:
            role.add_metric((name,), 1.0 if status.role == name else 0.0)
        yield role
        yield _gauge("keyquorum_raft_term", "The current Raft term.", status.term)
        yield _gauge("keyquorum_raft_commit_index", "The highest committed log index.",
                     status.commit_index)
        yield _gauge("keyquorum_raft_applied_index", "The highest applied log index.",
                     status.applied_index)
        yield _gauge("keyquorum_raft_has_quorum",
                     "1 when this node hears a majority (leader) or a leader.",
                     int(status.has_quorum))
        connected = GaugeMetricFamily("keyquorum_raft_peer_connected",
                                      "1 when the peer's Raft connection is up.",
                                      labels=("peer",))
        matched = GaugeMetricFamily(
            "keyquorum_raft_peer_match_index",
            "The peer's highest replicated index, known on the leader only.", labels=("peer",))
        for peer in status.peers:
            connected.add_metric((peer.address,), int(peer.connected))
            if peer.match_index is not None:
                matched.add_metric((peer.address,), peer.match_index)
        yield connected
        yield matched

    def _seal_and_audit(self) -> Iterator[Metric]:
        yield _gauge("keyquorum_seal_sealed", "1 while the node is sealed.",
                     int(self._parts.seal.sealed))
        audit = self._parts.audit
        yield _gauge("keyquorum_audit_devices", "Audit devices open on this node.",
                     len(audit.device_names()))
        yield _counter("keyquorum_audit_failures",
                       "Records no audit device could write (the request was refused).",
                       audit.failures)

    def _replication(self) -> Iterator[Metric]:
        # Cheap reads only: the mode and sequences, not the link's lag samples.
        node = self._parts.replication
        root = node.root
        link = node.link.status()
        secondary = root.mode in SECONDARY_MODES
        mode = GaugeMetricFamily("keyquorum_replication_mode", "1 for the cluster's mode.",
                                 labels=("mode",))
        mode.add_metric((root.mode.value,), 1.0)
        yield mode
        yield _gauge("keyquorum_replication_sequence", "The last change numbered or applied.",
                     root.sequence)
        lag = max(0, link.primary_sequence - root.sequence) if secondary else 0
        yield _gauge("keyquorum_replication_lag_sequences",
                     "Changes the primary has that this secondary has not applied.", lag)
        if secondary and link.last_contact is not None:
            yield _gauge("keyquorum_replication_last_contact_age_seconds",
                         "Seconds since this secondary last heard from its primary.",
                         max(0.0, time.time() - link.last_contact))


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def metrics_router(registry: CollectorRegistry) -> APIRouter:
    router = APIRouter(prefix="/v1/sys", tags=["sys"])

    @router.get("/metrics", response_class=Response)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE)

    return router


def new_registry() -> CollectorRegistry:
    # auto_describe off: registering the collector must not scrape a node still starting.
    return CollectorRegistry(auto_describe=False)
