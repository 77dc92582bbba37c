"""The replication gRPC service every node serves (proto/replication.proto).

Who may talk: the listener requires a client certificate from the cluster's
replication CA (``ReplicationState.ca``, drawn when the cluster becomes a primary)
and presents one from it, named ``SERVER_NAME`` so that secondaries need not know
which address a certificate was issued for. Until the CA exists the node presents
its configured certificate and trusts no one: ``grpc.dynamic_ssl_server_credentials``
asks ``_TlsSource`` again at each handshake, so the CA takes effect without a restart.

What it serves:

- ``Activate`` redeems a single-use activation token through the Raft log.
- ``StreamChanges`` runs on the primary's active node only; any other node answers
  FAILED_PRECONDITION naming the leader's replication address (``leader=host:port``).
  It sends a snapshot when asked from 0 or from before the changelog, then runs of
  changes as they are applied, and a heartbeat each second. It ends (UNAVAILABLE)
  once this node stops leading, so the secondary finds the new leader and resumes
  from its own sequence.
- ``ForwardWrite`` commits a performance secondary's command through this cluster's
  log, on any node (pysyncobj forwards to the leader), and says the sequence it got.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import grpc

from keyquorum.proto import replication_pb2 as pb
from keyquorum.proto import replication_pb2_grpc as pb_grpc

from . import replication_wire as wire
from .config import NodeConfig
from .pki import CertificateAuthority as PkiCa
from .pki import KeyType, issue_certificate
from .raft import ReplicatedLog, ReplicationError
from .replication_state import (
    Forwarded,
    ForwardedOutcome,
    Mode,
    RedeemActivation,
    ReplicationState,
    secret_hash,
)
from .tenancy import Refused

log = logging.getLogger("keyquorum.replication")

# Bump on an incompatible change of proto/replication.proto; never reuse a number.
PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})
# The name in every replication server certificate, and what secondaries check.
SERVER_NAME = "keyquorum-replication"
CERTIFICATE_TTL = timedelta(days=365)
COMMIT_TIMEOUT_SECONDS = 10.0
# A run of changes per message: big enough to keep up, small enough for one command.
CHANGES_PER_MESSAGE = 256
HEARTBEAT_SECONDS = 1.0
# Up to this many apply times are remembered for lag in seconds.
APPLY_TIMES_KEPT = 20_000


class ChangeClock:
    """When this node applied each recent sequence, and a wake-up for streams.

    ``ReplicationState.on_change`` calls ``changed`` on the Raft thread; the streams
    wait on the asyncio side. Not replicated: each node has its own clock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: deque[tuple[int, int]] = deque(maxlen=APPLY_TIMES_KEPT)
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def changed(self, sequence: int) -> None:
        with self._lock:
            self._times.append((sequence, int(time.time() * 1000)))
            waiters = list(self._waiters)
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    def applied_at_ms(self, sequence: int) -> int:
        with self._lock:
            for seen, at in reversed(self._times):
                if seen == sequence:
                    return at
                if seen < sequence:
                    break
        return 0

    async def wait(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        entry = (loop, asyncio.Event())
        with self._lock:
            self._waiters.add(entry)
        try:
            await asyncio.wait_for(entry[1].wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(entry)


class _TlsSource:
    """The server's certificate and trusted CA, from the replicated replication CA."""

    def __init__(self, config: NodeConfig, state: ReplicationState) -> None:
        self._config = config
        self._state = state
        self._ca_in_use: bytes | None = None

    def initial(self) -> grpc.ServerCertificateConfiguration:
        current = self.fetch()
        if current is not None:
            return current
        tls = self._config.tls
        # No CA yet: our configured certificate, and a trust list no peer can meet
        # (the node's own certificate is not a CA), so every handshake fails.
        own = tls.cert_file.read_bytes()
        return grpc.ssl_server_certificate_configuration(
            [(tls.key_file.read_bytes(), own)], root_certificates=own)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        ca = self._state.ca
        if ca is None or ca.cert_pem == self._ca_in_use:
            return None
        issued = issue_certificate(PkiCa(ca.cert_pem, ca.key_pem), SERVER_NAME,
                                   sans=[SERVER_NAME], key_type=KeyType.EC_P256,
                                   ttl=CERTIFICATE_TTL)
        self._ca_in_use = ca.cert_pem
        log.info("replication_certificate_issued serial=%x", issued.serial)
        return grpc.ssl_server_certificate_configuration(
            [(issued.key_pem, issued.cert_pem)], root_certificates=ca.cert_pem)


class ReplicationService(pb_grpc.ReplicationServicer):
    def __init__(self, state: ReplicationState, replicated: ReplicatedLog, clock: ChangeClock,
                 leader_address: Callable[[], str | None]) -> None:
        self._state = state
        self._log = replicated
        self._clock = clock
        self._leader_address = leader_address

    async def Activate(self, request: pb.ActivateRequest,
                       context: grpc.aio.ServicerContext) -> pb.ActivateResponse:
        await _check_version(request.protocol_version, context)
        try:
            kind = Mode(request.kind)
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "kind is performance or dr")
        command = RedeemActivation(request.token_id, secret_hash(request.token_secret), kind,
                                   int(time.time()))
        outcome = await self._submit(command, context)
        if isinstance(outcome, Refused):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, outcome.message)
        log.info("secondary_activated secondary=%s kind=%s", request.secondary_id, kind.value)
        return pb.ActivateResponse(primary_cluster_id=self._state.cluster_id,
                                   primary_sequence=self._state.sequence)

    async def StreamChanges(self, request: pb.StreamRequest,
                            context: grpc.aio.ServicerContext) -> AsyncIterator[pb.StreamMessage]:
        await _check_version(request.protocol_version, context)
        await self._check_active(context)
        after = request.after_sequence
        log.info("stream_started secondary=%s after=%d", request.secondary_id, after)

        # First a snapshot, if the secondary holds nothing or the changelog lost its gap.
        if after == 0 or self._state.changes_after(after) is None:
            sequence, data = await asyncio.to_thread(self._state.snapshot_at)
            log.info("stream_snapshot secondary=%s sequence=%d bytes=%d",
                     request.secondary_id, sequence, len(data))
            yield self._message(snapshot=pb.Snapshot(sequence=sequence, state=data))
            after = sequence

        # Then changes as they are applied, while this node leads.
        while True:
            await self._check_active(context)
            changes = self._state.changes_after(after, CHANGES_PER_MESSAGE)
            if changes is None:
                await context.abort(grpc.StatusCode.OUT_OF_RANGE,
                                    "fell behind the changelog; resume for a snapshot")
            if changes:
                yield self._message(changes=[
                    pb.Change(sequence=c.sequence, command=wire.dumps(c.command),
                              applied_at_ms=self._clock.applied_at_ms(c.sequence))
                    for c in changes])
                after = changes[-1].sequence
                continue
            await self._clock.wait(HEARTBEAT_SECONDS)
            if self._state.sequence == after:
                yield self._message()

    async def ForwardWrite(self, request: pb.ForwardRequest,
                           context: grpc.aio.ServicerContext) -> pb.ForwardResponse:
        await _check_version(request.protocol_version, context)
        try:
            command = wire.loads(request.command)
        except wire.WireError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        if not type(command).__module__.endswith(".state"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "only key store commands are forwarded")
        outcome = await self._submit(Forwarded(command), context, request.request_id)
        if isinstance(outcome, ForwardedOutcome):
            return pb.ForwardResponse(outcome=wire.dumps(outcome.outcome),
                                      sequence=outcome.sequence)
        await context.abort(grpc.StatusCode.INTERNAL, "the write was not applied")
        raise AssertionError("abort returned")  # pragma: no cover

    async def _submit(self, command: object, context: grpc.aio.ServicerContext,
                      request_id: str | None = None) -> object:
        try:
            return await self._log.submit(command, request_id or uuid.uuid4().hex,
                                          COMMIT_TIMEOUT_SECONDS)
        except ReplicationError as error:
            log.warning("replication_commit_failed cause=%s", type(error).__name__)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the primary cannot commit now")
        raise AssertionError("abort returned")  # pragma: no cover

    async def _check_active(self, context: grpc.aio.ServicerContext) -> None:
        if self._state.mode != Mode.PRIMARY:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "this cluster is not a replication primary")
        status = self._log.status()
        if status.role != "leader":
            leader = self._leader_address()
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"not the active node; leader={leader or 'unknown'}")

    def _message(self, **fields: object) -> pb.StreamMessage:
        addresses = sorted(self._state.addresses().values())
        return pb.StreamMessage(primary_sequence=self._state.sequence,
                                primary_addresses=addresses, **fields)  # type: ignore[arg-type]


async def _check_version(version: int, context: grpc.aio.ServicerContext) -> None:
    if version not in SUPPORTED_VERSIONS:
        await context.abort(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"protocol version {version} is not supported; this node speaks "
            f"{', '.join(map(str, sorted(SUPPORTED_VERSIONS)))}")


async def start_server(config: NodeConfig, state: ReplicationState, replicated: ReplicatedLog,
                       clock: ChangeClock) -> tuple[grpc.aio.Server, int]:
    """Serve the replication port; the server and the port it bound."""
    assert config.replication is not None
    tls = _TlsSource(config, state)

    def leader_address() -> str | None:
        leader = replicated.status().leader_address
        return None if leader is None else state.addresses().get(leader)

    server = grpc.aio.server()
    pb_grpc.add_ReplicationServicer_to_server(
        ReplicationService(state, replicated, clock, leader_address), server)
    credentials = grpc.dynamic_ssl_server_credentials(
        tls.initial(), tls.fetch, require_client_authentication=True)
    port = server.add_secure_port(str(config.replication.listen), credentials)
    if port == 0:
        raise OSError(f"cannot bind the replication port {config.replication.listen}")
    await server.start()
    log.info("replication_listening address=%s port=%d", config.replication.listen.host, port)
    return server, port
