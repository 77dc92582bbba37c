"""The secondary side: following the primary's stream, forwarding writes, routing KMIP.

``SecondaryLink.run`` runs on every node and does nothing unless this node leads a
secondary cluster. The leader opens ``StreamChanges`` after its own sequence and
submits what arrives to its own Raft log (``ApplySnapshot``, ``ApplyChanges``), so
every node of the secondary applies the same changes in the same order. Leadership
may move on either side at any moment:

- the primary's old leader ends the stream; this side dials the address the
  refusal names (``leader=host:port``), or the next it knows;
- this side's old leader stops at its next message (it checks before each submit),
  and the new one resumes from its own sequence; a run that overlaps what the log
  already holds is skipped by number in apply, and a run with a gap is refused whole
  (cluster/replication_state.py), so nothing is applied twice or missed.

``KmipRouting`` is what the KMIP backend asks first: a performance secondary
forwards writes (``ForwardWrite``) and answers once its own state has reached the
sequence the write got, so the client reads its own write through this cluster at
once; a DR secondary refuses every KMIP read and write until it is promoted.
A key's first Get is such a write: it clears the key's Fresh attribute (KMIP 2.1
4.13, ``MarkServed``), which is replicated state, so it goes to the primary and takes
a sequence number there; later Gets of that key are served here alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass

import grpc

from keyquorum.kmip.errors import KmipError
from keyquorum.kmip.tables import ResultReason
from keyquorum.proto import replication_pb2 as pb
from keyquorum.proto import replication_pb2_grpc as pb_grpc

from . import replication_wire as wire
from .raft import ReplicatedLog, ReplicationError
from .replication_server import PROTOCOL_VERSION, SERVER_NAME
from .replication_state import (
    SECONDARY_MODES,
    ApplyChanges,
    ApplySnapshot,
    Change,
    Mode,
    PrimaryLink,
    ReplicationState,
)
from .tenancy import Refused

log = logging.getLogger("keyquorum.replication")

RETRY_SECONDS = 0.2
COMMIT_TIMEOUT_SECONDS = 10.0
# A forwarded write waits this long for this cluster to apply it. After that it is
# answered anyway (it did commit on the primary): read-your-writes then depends on
# the stream catching up, which the warning in the log says.
READ_YOUR_WRITE_SECONDS = 10.0
FORWARD_TIMEOUT_SECONDS = 15.0
LAG_SAMPLES_KEPT = 10_000


def channel_to(address: str, link: PrimaryLink) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=link.ca_pem, private_key=link.key_pem, certificate_chain=link.cert_pem)
    return grpc.aio.secure_channel(
        address, credentials, options=[("grpc.ssl_target_name_override", SERVER_NAME)])


@dataclass(frozen=True)
class LinkStatus:
    primary_sequence: int
    connected_to: str | None
    last_contact: float | None
    lag_samples_ms: tuple[int, ...]


class SecondaryLink:
    """Follows the primary while this node leads a secondary cluster."""

    def __init__(self, node_id: str, state: ReplicationState, replicated: ReplicatedLog) -> None:
        self._node_id = node_id
        self._state = state
        self._log = replicated
        self._primary_sequence = 0
        self._connected_to: str | None = None
        self._last_contact: float | None = None
        self._learned: list[str] = []
        self._lag_ms: deque[int] = deque(maxlen=LAG_SAMPLES_KEPT)

    def status(self) -> LinkStatus:
        return LinkStatus(self._primary_sequence, self._connected_to, self._last_contact,
                          tuple(self._lag_ms))

    def _leads_a_secondary(self) -> bool:
        return (self._state.mode in SECONDARY_MODES and self._state.link is not None
                and self._log.status().role == "leader")

    async def run(self) -> None:
        preferred: str | None = None
        while True:
            link = self._state.link
            if not self._leads_a_secondary() or link is None:
                self._connected_to = None
                await asyncio.sleep(RETRY_SECONDS)
                continue

            # The address a refusal named first, then those learned, then the token's.
            candidates = list(dict.fromkeys(
                [a for a in (preferred, *self._learned, *link.addresses) if a]))
            preferred = None
            for address in candidates:
                try:
                    await self._follow(address, link)
                except grpc.aio.AioRpcError as error:
                    preferred = _named_leader(error)
                    log.info("stream_ended primary=%s code=%s", address, error.code().name)
                except (ReplicationError, wire.WireError) as error:
                    log.warning("stream_apply_failed primary=%s error=%s", address,
                                type(error).__name__)
                self._connected_to = None
                if preferred is not None or not self._leads_a_secondary():
                    break
            await asyncio.sleep(RETRY_SECONDS)

    async def _follow(self, address: str, link: PrimaryLink) -> None:
        async with channel_to(address, link) as channel:
            stub = pb_grpc.ReplicationStub(channel)
            after = 0 if self._state.awaiting_snapshot else self._state.sequence
            stream = stub.StreamChanges(pb.StreamRequest(
                protocol_version=PROTOCOL_VERSION, secondary_id=self._node_id,
                after_sequence=after))
            async for message in stream:
                self._connected_to = address
                self._last_contact = time.time()
                self._primary_sequence = message.primary_sequence
                self._learned = list(message.primary_addresses)
                if self._state.link is not link or not self._leads_a_secondary():
                    stream.cancel()
                    return
                if message.HasField("snapshot"):
                    await self._install(message.snapshot)
                if message.changes:
                    if not await self._apply(message.changes):
                        stream.cancel()
                        return

    async def _install(self, snapshot: pb.Snapshot) -> None:
        wire.check_snapshot(snapshot.state)
        await self._log.submit(ApplySnapshot(snapshot.sequence, snapshot.state),
                               uuid.uuid4().hex, COMMIT_TIMEOUT_SECONDS)
        log.info("snapshot_installed sequence=%d bytes=%d", snapshot.sequence,
                 len(snapshot.state))

    async def _apply(self, changes: object) -> bool:
        """Submit one run; False when it was refused (a gap): the stream restarts."""
        run = tuple(Change(c.sequence, wire.loads(c.command)) for c in changes)  # type: ignore[attr-defined]
        outcome = await self._log.submit(ApplyChanges(run), uuid.uuid4().hex,
                                         COMMIT_TIMEOUT_SECONDS)
        if isinstance(outcome, Refused):
            log.warning("changes_refused reason=%s", outcome.message)
            return False
        now_ms = int(time.time() * 1000)
        self._lag_ms.extend(now_ms - c.applied_at_ms for c in changes  # type: ignore[attr-defined]
                            if c.applied_at_ms)
        return True


def _named_leader(error: grpc.aio.AioRpcError) -> str | None:
    details = error.details() or ""
    _, found, leader = details.partition("leader=")
    return leader if found and leader != "unknown" else None


class KmipRouting:
    """Asked by the KMIP backend before it writes or reads locally."""

    def __init__(self, state: ReplicationState, link: SecondaryLink) -> None:
        self._state = state
        self._link = link
        self._preferred: str | None = None

    def check_reads(self) -> None:
        if self._state.mode == Mode.DR:
            raise _dr_refusal()

    async def submit(self, command: object) -> object | None:
        """The outcome of a write this cluster does not commit itself, or None."""
        mode = self._state.mode
        if mode == Mode.DR:
            raise _dr_refusal()
        if mode != Mode.PERFORMANCE:
            return None
        link = self._state.link
        if link is None:
            raise KmipError(ResultReason.GENERAL_FAILURE, "this performance secondary has no "
                                                          "primary; writes cannot be served")
        response = await self._forward(command, link)
        outcome = wire.loads(response.outcome)
        await self._until_applied(response.sequence)
        return outcome

    async def _forward(self, command: object, link: PrimaryLink) -> pb.ForwardResponse:
        request = pb.ForwardRequest(protocol_version=PROTOCOL_VERSION,
                                    request_id=uuid.uuid4().hex, command=wire.dumps(command))
        candidates = list(dict.fromkeys(
            [a for a in (self._preferred, self._link.status().connected_to, *link.addresses)
             if a]))
        for address in candidates:
            # The same request id on every attempt: the primary applies it once.
            async with channel_to(address, link) as channel:
                try:
                    response: pb.ForwardResponse = await pb_grpc.ReplicationStub(
                        channel).ForwardWrite(request, timeout=FORWARD_TIMEOUT_SECONDS)
                except grpc.aio.AioRpcError as error:
                    log.info("forward_failed primary=%s code=%s", address, error.code().name)
                    continue
            self._preferred = address
            return response
        raise KmipError(ResultReason.GENERAL_FAILURE,
                        "the primary cluster cannot take the write now; retry")

    async def _until_applied(self, sequence: int) -> None:
        deadline = time.monotonic() + READ_YOUR_WRITE_SECONDS
        while self._state.sequence < sequence:
            if time.monotonic() > deadline:
                log.warning("forwarded_write_not_yet_applied sequence=%d have=%d",
                            sequence, self._state.sequence)
                return
            await asyncio.sleep(0.002)


def _dr_refusal() -> KmipError:
    return KmipError(ResultReason.GENERAL_FAILURE,
                     "this cluster is a DR secondary: it serves KMIP only once promoted")
