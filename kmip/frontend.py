"""The KMIP listener: mutual TLS on port 5696, whole messages in, whole messages out.

Theory of operation
-------------------
This module is the thin I/O driver around the sans-IO pieces: ``FrameReader`` cuts
the decrypted byte stream into messages and the ``RequestHandler`` (the node) turns
each request message into a response message. Everything here is about sockets,
TLS, ordering, limits and logging; nothing here looks inside a message.

One ``_Connection`` protocol object lives from TCP accept to close, in three phases:

1. Accepted. The plain TCP transport is paused at once so that no byte of the
   ClientHello is mistaken for a request. Over ``max_connections`` the socket is
   closed here, before any TLS work is spent on it.
2. Handshake. The connection's task runs ``loop.start_tls``, driven by us rather
   than passing ``ssl=`` to ``create_server``, so that the limit above can be applied
   before the handshake and handshake failures reach our log instead of asyncio's.
   The verified peer certificate becomes a ``ClientIdentity``; a revoked serial, or
   a certificate the node holds no credential for, is aborted without reading a byte.
3. Open. Decrypted bytes feed the ``FrameReader``; whole frames queue up and the
   connection's task, the same one that ran the handshake, answers them strictly in
   order, writing each response before it starts the next request. One task for the
   connection's life, woken by a future, costs less than a task per request. A
   frame the reader refuses (oversized header, not KMIP) queues an error after the
   frames before it, so the client gets every earlier answer, then the error
   response, then the close.

Memory per connection is bounded: frames are cut from the reader only while fewer
than ``max_pipelined`` wait behind the one in flight, and reading pauses while the
queue is full, so a connection holds at most that many frames plus one read; the
worker waits while the transport's write buffer is over its high-water mark (a client
that sends but never reads). The idle timer is lazy: activity only stamps a time, and
the one timer handle re-arms itself for the remainder when it fires early, so a request
costs no timer-heap operation.

Logging follows the style guide: a fixed event name and key=value fields, debug for
the per-connection lifecycle (vCenter opens a connection per request, so INFO would
log every request), info for refusals a client caused, error only for a handler bug,
and never any message content: requests carry key material.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from cryptography import x509
from cryptography.x509.oid import NameOID

from .errors import KmipError
from .limits import DEFAULT_LIMITS, Limits
from .tables import ResultReason
from .ttlv import NEED_DATA, FrameReader

log = logging.getLogger("keyquorum.kmip.frontend")

# KMIP over TLS is registered on 5696 (KMIP 1.4 Profiles section 3.1.3).
KMIP_PORT = 5696

# A connection without a complete request for this long is closed. vCenter connects
# per request and closes at once, so this only touches clients that hold a connection
# between bursts (databases, storage arrays) and peers that vanished without a FIN
# (a crashed host, a NAT that dropped the mapping). Such a peer holds a slot of
# max_connections until this fires; a minute frees it quickly, and a client that
# keeps a connection between bursts reconnects transparently when it next needs one.
IDLE_TIMEOUT = 60.0

# Concurrent connections, counted from TCP accept, so handshakes in progress count.
# By Little's law a client that connects per request holds about (connection rate x
# lifetime) connections: 1,000 connections/s living 20 ms each (handshake plus one
# Raft write) is 20 at once. 512 leaves that 25 times over, and stays well under the
# usual 1024 open-file soft limit, which the node shares with Raft peers and its
# journal. Each TLS connection costs tens of KiB, so 512 of them stay a few MiB.
MAX_CONNECTIONS = 512

# A handshake takes a few milliseconds on a LAN and well under a second between
# datacenters. Ten seconds covers a loaded node or a slow WAN, while a peer that
# connects and stalls (or trickles its ClientHello) gives its slot back soon.
HANDSHAKE_TIMEOUT = 10.0

# How long a closing connection waits for the peer's close_notify. asyncio's default
# is 30 s, during which a silent peer keeps its slot; our answer is already flushed
# before the close begins, so waiting longer buys nothing.
TLS_SHUTDOWN_TIMEOUT = 5.0

# KMIP clients wait for each answer before they send the next request, so the queue
# behind the request in flight is normally empty. A client that pipelines anyway is
# served in order; beyond this many waiting requests we stop reading until the queue
# drains, so that a flood of small frames cannot grow a connection's memory.
MAX_PIPELINED = 16

# stop() lets requests already in flight finish for this long. A Raft write commits in
# milliseconds; one that is still waiting after two seconds is stuck on a lost quorum,
# and its client will retry against another node anyway.
STOP_GRACE = 2.0


@dataclass(frozen=True)
class ClientIdentity:
    """Who is on the other end, from the verified client certificate."""

    address: str
    certificate_serial: int
    common_name: str | None
    certificate_der: bytes


class RequestHandler(Protocol):
    """What the front end drives: the node's KMIP request processing."""

    async def handle(self, frame: bytes, client: ClientIdentity) -> bytes:
        """Answer one whole request message with one whole response message.

        Expected failures are the handler's own to encode in the response; anything
        that escapes is logged by type and answered with ``error_response``.
        """
        ...

    def error_response(self, error: KmipError) -> bytes:
        """A response for a request that could not be handled or framed.

        For a framing failure it is sent once, then the connection is closed: the
        stream cannot be resynchronized.
        """
        ...


# Where a listener binds: a host (name or IP address) and a port.
Address = tuple[str, int]


@dataclass(frozen=True)
class FrontendConfig:
    host: str = "0.0.0.0"
    port: int = KMIP_PORT
    idle_timeout: float = IDLE_TIMEOUT
    max_connections: int = MAX_CONNECTIONS
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    tls_shutdown_timeout: float = TLS_SHUTDOWN_TIMEOUT
    max_pipelined: int = MAX_PIPELINED
    stop_grace: float = STOP_GRACE
    limits: Limits = field(default=DEFAULT_LIMITS)


def client_identity(address: str, certificate_der: bytes) -> ClientIdentity:
    """Read the identity fields from a peer certificate OpenSSL has already verified."""
    certificate = x509.load_der_x509_certificate(certificate_der)
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = names[0].value if names else None
    return ClientIdentity(
        address=address,
        certificate_serial=certificate.serial_number,
        common_name=common_name if isinstance(common_name, str) else None,
        certificate_der=certificate_der,
    )


async def admit_everyone(identity: ClientIdentity) -> bool:
    """The default admission check: any certificate the CA signed gets in."""
    return True


async def refusal_of(
    identity: ClientIdentity,
    revoked: Callable[[int], bool],
    known: Callable[[ClientIdentity], Awaitable[bool]],
) -> str | None:
    """Why a client with a verified chain may not in ("revoked", "unknown_certificate"),
    or None. Revocation is read first, so that a revoked client costs no catch-up, and
    again after ``known``, whose catch-up with the cluster may have brought one."""
    serial = identity.certificate_serial
    if revoked(serial):
        return "revoked"
    if not await known(identity):
        return "unknown_certificate"
    return "revoked" if revoked(serial) else None


def _format_address(peername: object) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = peername[0], peername[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peername)


class KmipFrontend:
    """Accepts KMIP clients over mutual TLS and feeds their requests to a handler."""

    def __init__(
        self,
        config: FrontendConfig,
        ssl_context: ssl.SSLContext,
        handler: RequestHandler,
        revoked: Callable[[int], bool] = lambda serial: False,
        known: Callable[[ClientIdentity], Awaitable[bool]] = admit_everyone,
    ) -> None:
        self.config = config
        self._ssl_context = ssl_context
        self._handler = handler
        self._revoked = revoked
        # Whether a verified certificate is one the node has a credential (or an
        # imported CA's rule) for; a certificate the CA signed is not enough. It may
        # wait for the node to catch up with its cluster before it says no.
        self._known = known
        # One listening server per bound address, in the order they were asked for.
        self._servers: list[tuple[Address, asyncio.Server]] = []
        self._connections: set[_Connection] = set()
        self._all_closed: asyncio.Event | None = None
        self._limit_warned = False

        # Counters for metrics: connections admitted after the handshake, connections
        # closed by us at once (over the limit, revoked), failed handshakes, requests
        # answered, and requests the handler failed on.
        self.accepted = 0
        self.refused = 0
        self.handshake_failures = 0
        self.requests = 0
        self.request_failures = 0

    @property
    def port(self) -> int:
        """The bound port: the configured one, or the one the OS chose for port 0."""
        if not self._servers or not self._servers[0][1].sockets:
            raise RuntimeError("the front end is not listening")
        port: int = self._servers[0][1].sockets[0].getsockname()[1]
        return port

    @property
    def bound_address(self) -> Address:
        """The first address listened on, with the port the OS chose for port 0."""
        return self.addresses[0][0], self.port

    @property
    def addresses(self) -> list[Address]:
        """The addresses listened on, as asked for (port 0 stays 0; see ``port``)."""
        return [address for address, _ in self._servers]

    def use_ssl_context(self, ssl_context: ssl.SSLContext) -> None:
        """Serve handshakes from now on with ``ssl_context``; open connections keep theirs."""
        self._ssl_context = ssl_context

    @property
    def active_connections(self) -> int:
        """Open connections, handshakes in progress included."""
        return len(self._connections)

    async def start(self) -> None:
        self._all_closed = asyncio.Event()
        address = (self.config.host, self.config.port)
        self._servers = [(address, await self._listen(address))]
        log.info(
            "listener_started host=%s port=%d max_connections=%d",
            self.config.host,
            self.port,
            self.config.max_connections,
        )

    async def rebind(self, addresses: list[Address]) -> None:
        """Listen on ``addresses`` instead, without dropping a connection.

        The new addresses are bound first and the old sockets closed only once all
        of them are, so a client always finds the node on one set or the other, and
        a failed bind (an address in use, one this host does not have) leaves the
        node as it was: the OSError reaches the caller. Connections accepted on a
        closed socket carry on until they end. An address kept from before keeps its
        socket. Limit: going from a wildcard (0.0.0.0:5696) to a specific address on
        the same port fails, as the wildcard still holds the port; use another port,
        or two steps.
        """
        if not addresses:
            raise ValueError("the front end needs at least one address to listen on")
        kept = {address: server for address, server in self._servers if address in addresses}

        # First bind every new address; undo them all if one fails.
        opened: dict[Address, asyncio.Server] = {}
        try:
            for address in addresses:
                if address not in kept and address not in opened:
                    opened[address] = await self._listen(address)
        except OSError:
            for server in opened.values():
                server.close()
            raise

        # Then stop accepting on the old ones; their connections stay open.
        for address, server in self._servers:
            if address not in kept:
                server.close()
                log.info("listener_closed host=%s port=%d", address[0], address[1])
        servers = {**kept, **opened}
        self._servers = [(address, servers[address]) for address in dict.fromkeys(addresses)]
        for address in opened:
            log.info("listener_started host=%s port=%d", address[0], address[1])

    async def _listen(self, address: Address) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: _Connection(self), address[0], address[1])

    async def stop(self) -> None:
        """Stop listening, let requests in flight finish briefly, close every connection."""
        if not self._servers:
            return
        port = self.port
        servers, self._servers = [server for _, server in self._servers], []

        # First stop accepting, and stop every connection from reading new requests.
        for server in servers:
            server.close()
        connections = list(self._connections)
        for connection in connections:
            connection.begin_shutdown()

        # Then give the requests in flight their grace; each connection closes itself
        # once its answer is written.
        closed = await self._wait_all_closed(self.config.stop_grace)

        # Whatever is still open after the grace is cut off.
        if not closed:
            for connection in list(self._connections):
                connection.abort("stopped")
            await self._wait_all_closed(1.0)
        for server in servers:
            await server.wait_closed()
        log.info("listener_stopped port=%d", port)

    async def _wait_all_closed(self, timeout: float) -> bool:
        assert self._all_closed is not None
        if not self._connections:
            return True
        self._all_closed.clear()
        try:
            await asyncio.wait_for(self._all_closed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # Called by the connections.

    def _admit(self, connection: _Connection) -> bool:
        if len(self._connections) >= self.config.max_connections:
            self.refused += 1
            if not self._limit_warned:
                # Once per episode, not once per refused connection.
                self._limit_warned = True
                log.warning("connection_limit_reached max=%d", self.config.max_connections)
            return False
        self._connections.add(connection)
        return True

    def _release(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        if self._limit_warned and len(self._connections) < self.config.max_connections // 2:
            self._limit_warned = False
        if not self._connections and self._all_closed is not None:
            self._all_closed.set()


class _Connection(asyncio.Protocol):
    """One client connection, from TCP accept to close. See the module docstring."""

    def __init__(self, frontend: KmipFrontend) -> None:
        self._frontend = frontend
        self._config = frontend.config
        self._loop = asyncio.get_running_loop()
        self._reader = FrameReader(frontend.config.limits)
        self._raw: asyncio.Transport | None = None
        self._transport: asyncio.Transport | None = None
        self._identity: ClientIdentity | None = None
        self.address = "unknown"

        # One task per connection does the handshake, then answers requests; it
        # sleeps on _wakeup while the queue is empty, and on _writable while the
        # client is not reading.
        self._task: asyncio.Task[None] | None = None
        self._queue: deque[bytes | KmipError] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._busy = False
        self._reading_paused = False
        self._refusing_input = False
        self._stopping = False
        self._admitted = False
        self._closed = False
        self._close_reason: str | None = None
        self._requests = 0

        self._last_activity = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None

    # Phase 1: accepted.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.address = _format_address(transport.get_extra_info("peername"))

        # Nothing may be read before start_tls takes the transport over.
        transport.pause_reading()
        if not self._frontend._admit(self):
            log.debug("connection_refused peer=%s reason=max_connections", self.address)
            self._close_reason = "max_connections"
            transport.abort()
            return
        self._admitted = True
        self._raw = transport
        self._task = self._loop.create_task(self._run(transport))

    async def _run(self, raw: asyncio.Transport) -> None:
        # Phase 2: the handshake.
        try:
            transport = await self._loop.start_tls(
                raw,
                self,
                self._frontend._ssl_context,
                server_side=True,
                ssl_handshake_timeout=self._config.handshake_timeout,
                ssl_shutdown_timeout=self._config.tls_shutdown_timeout,
            )
        except Exception as error:
            # A client with the wrong CA, no certificate or an old protocol version is
            # worth a line; one that hung up or was cut off by the timeout (port scans,
            # a load balancer's TCP health check) only a debug line. Never a traceback.
            self._frontend.handshake_failures += 1
            reason = getattr(error, "reason", None) or type(error).__name__
            level = logging.INFO if isinstance(error, ssl.SSLError) else logging.DEBUG
            log.log(level, "handshake_failed peer=%s reason=%s", self.address, reason)
            raw.abort()
            self._finish("handshake_failed")
            return
        if transport is None or transport.is_closing():
            self._finish("closed_during_handshake")
            return

        # Phase 3: open, until the client leaves or we close.
        if await self._open(transport):
            try:
                await self._serve(transport)
            except Exception as error:
                # error_response itself failed, or the transport broke under us.
                log.error(
                    "connection_failed peer=%s error=%s.%s",
                    self.address,
                    type(error).__module__,
                    type(error).__qualname__,
                )
                self.abort("internal_error")

    async def _open(self, transport: asyncio.Transport) -> bool:
        self._transport = transport
        frontend = self._frontend

        # Who is it? OpenSSL has verified the chain; we read the fields and ask whether
        # this certificate may in (which may wait for the node to catch up with its
        # cluster). Any failure here refuses the client: fail closed.
        try:
            ssl_object = transport.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
            if not der:
                raise ValueError("no peer certificate")
            identity = client_identity(self.address, der)
            refusal = await refusal_of(identity, frontend._revoked, frontend._known)
        except Exception as error:
            frontend.refused += 1
            log.warning(
                "connection_refused peer=%s reason=identity_failed error=%s",
                self.address,
                type(error).__name__,
            )
            self.abort("identity_failed")
            return False
        if transport.is_closing():
            return False  # the client left, or stop() came, while we waited
        if refusal is not None:
            frontend.refused += 1
            log.info(
                "connection_refused peer=%s reason=%s serial=%x",
                self.address,
                refusal,
                identity.certificate_serial,
            )
            self.abort(refusal)
            return False

        # Admitted: take whatever arrived with the handshake, start the idle clock.
        self._identity = identity
        frontend.accepted += 1
        log.debug(
            "connection_opened peer=%s serial=%x cn=%s",
            self.address,
            identity.certificate_serial,
            identity.common_name,
        )
        self._last_activity = self._loop.time()
        self._idle_timer = self._loop.call_later(self._config.idle_timeout, self._check_idle)
        self._take_frames()
        return True

    async def _serve(self, transport: asyncio.Transport) -> None:
        """Answer queued requests one at a time, in order, until the connection ends."""
        assert self._identity is not None
        identity = self._identity
        queue = self._queue
        frontend = self._frontend
        handler = frontend._handler

        while not transport.is_closing():
            # Sleep until a frame arrives, or the connection ends, or stop() asks.
            if not queue:
                if self._stopping:
                    self.close("stopped")
                    return
                self._wakeup = self._loop.create_future()
                await self._wakeup
                self._wakeup = None
                continue
            item = queue.popleft()

            # A frame the reader refused: answer it once and close.
            if isinstance(item, KmipError):
                self._send_error_and_close(item)
                return

            # Room in the queue again: refill it from the reader, and read on.
            if self._reading_paused and not self._refusing_input:
                self._take_frames()

            # Then answer the request; the response waits for nothing else.
            self._busy = True
            try:
                response = await handler.handle(item, identity)
            except KmipError as error:
                log.info("request_refused peer=%s reason=%s", self.address, error.reason.name)
                response = handler.error_response(error)
            except Exception as error:
                frontend.request_failures += 1
                log.error(
                    "request_failed peer=%s error=%s.%s",
                    self.address,
                    type(error).__module__,
                    type(error).__qualname__,
                )
                response = handler.error_response(
                    KmipError(ResultReason.GENERAL_FAILURE, "internal error")
                )
            finally:
                self._busy = False
            self._requests += 1
            frontend.requests += 1
            self._last_activity = self._loop.time()

            # A client that left mid-request gets nothing; the handler has finished,
            # so whatever it committed stays committed.
            if transport.is_closing():
                return
            transport.write(response)
            if self._writable is not None:
                await self._writable

    def data_received(self, data: bytes) -> None:
        # Bytes can arrive with the end of the handshake, before _open has run: they
        # wait in the reader. After a framing error the stream is garbage: drop it.
        if self._refusing_input:
            return
        self._reader.feed(data)
        if self._identity is not None:
            self._take_frames()

    def eof_received(self) -> bool | None:
        # Returning anything true is meaningless under TLS; let the transport close.
        return None

    def _take_frames(self) -> None:
        reader = self._reader
        queue = self._queue
        limit = self._config.max_pipelined

        # Cut whole frames while there is room; the rest stays as bytes in the reader.
        try:
            while len(queue) < limit:
                frame = reader.next_frame()
                if frame is NEED_DATA:
                    break
                assert isinstance(frame, bytes)
                queue.append(frame)
                self._last_activity = self._loop.time()
        except KmipError as error:
            log.info("frame_refused peer=%s reason=%s", self.address, error.message)
            queue.append(error)
            self._refusing_input = True
            self._pause_reading()

        # A full queue stops the reading until the worker makes room, so what waits
        # behind the request in flight is at most this many frames and one read.
        if not self._refusing_input:
            if len(queue) >= limit:
                self._pause_reading()
            else:
                self._resume_reading()
        if queue:
            self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _send_error_and_close(self, error: KmipError) -> None:
        try:
            response = self._frontend._handler.error_response(error)
        except Exception as failure:
            log.error(
                "error_response_failed peer=%s error=%s.%s",
                self.address,
                type(failure).__module__,
                type(failure).__qualname__,
            )
            self.abort("framing_error")
            return
        assert self._transport is not None
        self._transport.write(response)
        self.close("framing_error")

    def _check_idle(self) -> None:
        self._idle_timer = None
        if self._closed or self._transport is None:
            return

        # A request being answered is not idleness, however slow the answer.
        timeout = self._config.idle_timeout
        if self._busy or self._queue:
            self._idle_timer = self._loop.call_later(timeout, self._check_idle)
            return
        remaining = self._last_activity + timeout - self._loop.time()
        if remaining > 0:
            self._idle_timer = self._loop.call_later(remaining, self._check_idle)
            return
        self.close("idle")

    # Flow control, both ways.

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None:
            if not self._writable.done():
                self._writable.set_result(None)
            self._writable = None

    # Closing.

    def begin_shutdown(self) -> None:
        """For stop(): read nothing more, finish the request in flight, then close."""
        if self._transport is None:
            self.abort("stopped")
            return
        self._refusing_input = True
        self._pause_reading()
        self._queue.clear()
        self._stopping = True
        if not self._busy:
            self.close("stopped")
        self._wake()

    def close(self, reason: str) -> None:
        """Close after flushing what was written (our TLS close_notify included)."""
        self._close_reason = reason
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def abort(self, reason: str) -> None:
        """Close at once, discarding anything unsent and cancelling a request in flight."""
        self._close_reason = reason
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

        # Still in the handshake: the task may not even have started, so it cannot be
        # left to clean up after itself.
        if self._transport is None:
            if self._raw is not None:
                self._raw.abort()
            self._finish(reason)
            return
        self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._close_reason is None:
            self._close_reason = "reset" if exc is not None else "eof"
        self._finish(self._close_reason)

    def _finish(self, reason: str) -> None:
        # Reached once from connection_lost or a failed handshake, whichever is first.
        if self._closed:
            return
        self._closed = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

        # Wake the task wherever it sleeps; it sees the transport closing and ends.
        self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if self._admitted:
            self._frontend._release(self)
        log.debug(
            "connection_closed peer=%s requests=%d reason=%s",
            self.address,
            self._requests,
            reason,
        )
