"""One keyquorum node: the key store, its Raft log, the KMIP listener, the admin API.

``run`` wires the parts a config names and serves until SIGTERM or SIGINT, then
stops them in the reverse order: first out of Consul (so that it sends no one here),
then no new KMIP connections, then the API, then the Raft log (its journal is
already durable; see cluster/raft.py).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid

from keyquorum.kmip.audit import KmipAudit
from keyquorum.kmip.errors import KmipError
from keyquorum.kmip.frontend import FrontendConfig, KmipFrontend
from keyquorum.kmip.https import HttpsConfig, KmipHttpsFrontend
from keyquorum.kmip.limits import Limits
from keyquorum.kmip.service import KmipService
from keyquorum.kmip.tables import ResultReason

from .admin_api import AdminBackend, install_admin_api
from .api import NodeHealth, create_api, serve_api
from .audit import AuditBroker
from .audit_api import install_audit_api
from .barrier import BarrierError
from .certify_api import certify_ca_router
from .cluster_state import ClusterState
from .collector import FreezeSlowSurvivors
from .config import NodeConfig
from .consul import replication_role_tag, start_registration
from .kmip_access import KmipAccess
from .listener import ListenerTls
from .listener_addresses import ListenerAddresses
from .log_format import configure_logging
from .metrics import KmipMetrics, NodeCollector, NodeParts, metrics_router, new_registry
from .notify import Notifier, client_context
from .notify_api import notify_router
from .raft import (
    CommandRejectedError,
    NoQuorumError,
    RaftConfig,
    ReplicatedLog,
    ReplicationError,
)
from .replication_client import KmipRouting
from .replication_node import ReplicationNode
from .replication_state import ReplicationState
from .seal import Seal, SealedError, auto_unseal_source, keep_unsealed
from .state import Command, KeyStore, Outcome
from .status_api import audit_trail_router, objects_router, raft_status_router
from .sys_api import sys_router
from .transform.api import transform_router
from .transform.engine import Engine as TransformEngine
from .web_ui import ui_router

log = logging.getLogger("keyquorum.node")

# How long a KMIP request waits for its write or read barrier to commit. vCenter
# gives up on a KMS after 30 s by default; answering an error well before that lets
# it try its next KMS address.
COMMIT_TIMEOUT_SECONDS = 10.0


class ClusterBackend:
    """The store and the log as the KMIP handlers see them (kmip.operations.Backend)."""

    def __init__(self, log_: ReplicatedLog, store: KeyStore, seal: Seal) -> None:
        self._log = log_
        self._store = store
        self._seal = seal

    # Set on every node: forwards or refuses what a secondary must not do itself.
    routing: KmipRouting | None = None

    @property
    def store(self) -> KeyStore:
        return self._store

    async def submit(self, command: Command) -> Outcome:
        # A fresh id per request: the log retries with it, and the replicated
        # request table makes those retries apply once (cluster/raft.py, hazard 6).
        if self.routing is not None:
            routed = await self.routing.submit(command)
            if routed is not None:
                return routed  # type: ignore[return-value]
        self._refuse_if_sealed()
        try:
            result = await self._log.submit(command, uuid.uuid4().hex, COMMIT_TIMEOUT_SECONDS)
        except CommandRejectedError as error:
            log.error("command_crashed error=%s", error.error_type)
            raise KmipError(ResultReason.GENERAL_FAILURE, "internal error") from None
        except ReplicationError as error:
            raise _unavailable(error) from None
        return result  # type: ignore[return-value]

    async def read_barrier(self) -> None:
        if self.routing is not None:
            self.routing.check_reads()
        self._refuse_if_sealed()
        try:
            await self._log.read_barrier(COMMIT_TIMEOUT_SECONDS)
        except ReplicationError as error:
            raise _unavailable(error) from None

    def seal_material(self, plaintext: bytes, associated_data: bytes) -> bytes:
        try:
            return self._seal.encrypt(plaintext, associated_data)
        except SealedError:
            raise _sealed() from None

    def open_material(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        try:
            return self._seal.decrypt(ciphertext, associated_data)
        except SealedError:
            raise _sealed() from None
        except BarrierError as error:
            log.error("material_unreadable error=%s", error)
            raise KmipError(ResultReason.GENERAL_FAILURE, "internal error") from None

    def _refuse_if_sealed(self) -> None:
        # A sealed node serves nothing from its state: not even attributes or Locate.
        if self._seal.sealed:
            raise _sealed()


def _sealed() -> KmipError:
    return KmipError(ResultReason.GENERAL_FAILURE,
                     "node is sealed; unseal it, or use another node of the cluster")


def _unavailable(error: ReplicationError) -> KmipError:
    what = "no quorum" if isinstance(error, NoQuorumError) else "commit timed out"
    log.warning("request_unavailable cause=%s", type(error).__name__)
    return KmipError(ResultReason.GENERAL_FAILURE,
                     f"the cluster cannot commit right now ({what}); retry or use another node")


def _cluster_ca_pem(state: ClusterState) -> bytes | None:
    cluster_ca = state.tenancy.cluster_ca()
    return None if cluster_ca is None else cluster_ca.cert_pem


def health(config: NodeConfig, replicated: ReplicatedLog, seal: Seal) -> NodeHealth:
    status = replicated.status()
    return NodeHealth(
        node_id=str(config.node.id),
        role=status.role,
        leader=status.leader_address,
        term=status.term,
        commit_index=status.commit_index,
        applied_index=status.applied_index,
        sealed=seal.sealed,
        has_quorum=status.has_quorum,
    )


def run(config: NodeConfig) -> int:
    """Serve until SIGTERM or SIGINT; the process's exit code."""
    configure_logging(config.node.log_level, config.node.log_format)
    # Full collections over a large state would stop the node for hundreds of ms.
    FreezeSlowSurvivors().install()
    try:
        return asyncio.run(_serve(config))
    except OSError as error:
        log.error("node_failed error=%s detail=%s", type(error).__name__, error)
        return 1


async def _serve(config: NodeConfig) -> int:
    # First the state and its log, so that the node catches up while it starts.
    state = ClusterState()
    # The root numbers every change for other clusters (cluster/replication_state.py).
    root = ReplicationState(state)
    replicated = ReplicatedLog(
        RaftConfig(
            self_address=str(config.raft.listen),
            peer_addresses=tuple(str(peer) for peer in config.raft.peers),
            data_dir=config.raft.data_dir,
            password=config.raft.password,
            tick_seconds=config.raft.tick_seconds,
            election_timeout_min_seconds=config.raft.election_timeout_min_seconds,
            election_timeout_max_seconds=config.raft.election_timeout_max_seconds,
            log_compaction_min_entries=config.raft.compaction_min_entries,
            log_compaction_min_seconds=config.raft.compaction_min_seconds,
        ),
        root,
    )
    replication = ReplicationNode(config, root, replicated)

    # The seal: the node stays sealed until shares, its HSM or (dev) its key file open
    # the keyring; the log replicates ciphertext meanwhile.
    seal = Seal(state.barrier, auto_unseal_source(config.seal))

    # Then the KMIP listener and the admin API.
    limits = Limits(max_message_size=config.kmip.max_message_size)
    access = KmipAccess(state.tenancy, catch_up=replicated.read_barrier)
    kmip_backend = ClusterBackend(replicated, state.keys, seal)
    kmip_backend.routing = replication.routing
    # Audit: this node's copy of every enabled device (cluster/audit.py).
    audit = AuditBroker(str(config.node.id), state.audit, config.node.data_dir,
                        decrypt=seal.decrypt)
    registry = new_registry()
    service = KmipService(kmip_backend, limits, grant_of=access.grant, audit=KmipAudit(audit),
                          observe=KmipMetrics(registry).observe)
    listener_tls = ListenerTls(config, state.tenancy, seal)
    kmip_context = listener_tls.build()
    frontend = KmipFrontend(
        FrontendConfig(
            host=config.kmip.listen.host,
            port=config.kmip.listen.port,
            idle_timeout=config.kmip.idle_timeout_seconds,
            max_connections=config.kmip.max_connections,
            limits=limits,
        ),
        kmip_context,
        service,
        revoked=state.tenancy.is_revoked,
        known=access.admits,
    )
    # KMIP over HTTPS, when configured: the same context, service and admission checks.
    https = None
    if config.kmip.https_listen is not None:
        https = KmipHttpsFrontend(
            HttpsConfig(host=config.kmip.https_listen.host, port=config.kmip.https_listen.port,
                        idle_timeout=config.kmip.idle_timeout_seconds,
                        max_connections=config.kmip.max_connections, limits=limits),
            kmip_context, service, revoked=state.tenancy.is_revoked, known=access.admits)
    # Notify and Put to the clients' registered endpoints, from the leader only.
    notifier = Notifier(
        state.notify, kmip_backend,
        is_leader=lambda: replicated.status().role == "leader",
        client_context=lambda: client_context(
            str(config.tls.ca_file), _cluster_ca_pem(state), str(config.tls.cert_file),
            str(config.tls.key_file)))
    state.on_object_change = notifier.observe
    app = create_api(lambda: health(config, replicated, seal))
    admin = AdminBackend(config, replicated, state, seal)
    install_admin_api(app, admin)
    install_audit_api(app, admin, audit)
    app.include_router(sys_router(admin, seal))
    app.include_router(transform_router(admin, TransformEngine(state.transform, seal)))
    replication.install_api(app, admin)
    registry.register(NodeCollector(NodeParts(frontend, replicated, seal, audit, replication,
                                                  https=https, notifier=notifier)))
    app.include_router(metrics_router(registry))
    app.include_router(raft_status_router(str(config.node.id), replicated, seal,
                                          lambda: health(config, replicated, seal).status_code))
    app.include_router(objects_router(admin))
    app.include_router(certify_ca_router(admin))
    app.include_router(notify_router(admin))
    app.include_router(audit_trail_router(admin))
    app.include_router(ui_router())
    try:
        await replication.start()
        await frontend.start()
        if https is not None:
            await https.start()
        api = await serve_api(
            app,
            config.api.listen.host,
            config.api.listen.port,
            cert_file=config.api.cert_file,
            key_file=config.api.key_file,
        )
    except BaseException:
        replicated.close()
        raise
    # Consul last: it must not announce a node before it serves. It runs in a thread.
    registration = start_registration(
        config, lambda: frontend.bound_address, api.port, lambda: health(config, replicated, seal),
        replication_role=lambda: replication_role_tag(root.mode.value),
    )
    log.info("node_started id=%s kmip=%s:%d api=%s:%d raft=%s", config.node.id,
             config.kmip.listen.host, frontend.port, config.api.listen.host, api.port,
             config.raft.listen)

    # Replicated listener settings apply without a restart.
    listeners = (frontend,) if https is None else (frontend, https)
    tls_watcher = asyncio.create_task(listener_tls.watch(*listeners), name="keyquorum-tls")
    unsealer = asyncio.create_task(keep_unsealed(seal, admin), name="keyquorum-unseal")
    notifying = asyncio.create_task(notifier.run(), name="keyquorum-notify")
    # ... and so do its addresses: the KMIP listener moves without dropping a connection.
    mover = asyncio.create_task(ListenerAddresses(config, state.tenancy).watch(frontend),
                                name="keyquorum-listen")

    # Serve until told to stop, then stop in reverse order.
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    # logrotate's postrotate sends SIGHUP: audit files are reopened at their paths.
    loop.add_signal_handler(signal.SIGHUP, audit.reopen)
    await stopping.wait()

    log.info("node_stopping id=%s", config.node.id)
    tls_watcher.cancel()
    mover.cancel()
    unsealer.cancel()
    notifying.cancel()
    if registration is not None:
        await asyncio.to_thread(registration.stop)
    await frontend.stop()
    if https is not None:
        await https.stop()
    await replication.stop()
    await api.stop()
    replicated.close()
    audit.close()
    log.info("node_stopped id=%s", config.node.id)
    return 0
