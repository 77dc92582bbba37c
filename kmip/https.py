"""KMIP over HTTPS: ``POST /kmip`` with a TTLV, XML or JSON body, over mutual TLS.

Theory of operation
-------------------
The KMIP Additional Message Encodings profile (KMIP Profiles 1.4 section 5, 2.1
section 6) carries one request message per HTTP POST to ``/kmip`` and its response in
the HTTP response, in the encoding the request used, named by its Content-Type:

- ``application/octet-stream``: TTLV bytes, as on the binary port;
- ``text/xml`` or ``application/xml``: the XML encoding (kmip/xml.py);
- ``application/json``: the JSON encoding (kmip/json.py).

The HTTP layer is h11, which is sans-IO like the TTLV ``FrameReader``: bytes in,
events out. This module is the driver around it, and ``KmipOverHttp`` is the part
that turns one HTTP request into one HTTP response and knows nothing of sockets.

Who the client is, and what it may do, is decided exactly as on the binary port:
the TLS handshake requires a certificate the listener's CAs signed, the connection
is refused when its serial is revoked or it is no credential the node knows
(``known``), and every message runs under the grant the service looks up for it
(scope and role, cluster/kmip_access.py). The listener shares the binary port's
SSLContext, rebuilt by cluster/listener.py when the replicated TLS settings change.

Errors keep to the layer they belong to. A body that is not a KMIP message in the
named encoding is a KMIP error (Invalid Message), answered as a KMIP response in that
encoding with HTTP 200, like any other KMIP failure: a KMIP client reads the Result
Reason. What is wrong at the HTTP level gets a 4xx and a plain-text line saying what
to fix: another path (404), another method (405), an unknown Content-Type (415), a
body over the size limit (413), a request HTTP cannot parse (400).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

import h11

from .errors import KmipError, invalid_message
from .frontend import (
    HANDSHAKE_TIMEOUT,
    IDLE_TIMEOUT,
    MAX_CONNECTIONS,
    STOP_GRACE,
    TLS_SHUTDOWN_TIMEOUT,
    ClientIdentity,
    admit_everyone,
    client_identity,
    refusal_of,
)
from .json import JSON_CHARS_PER_TTLV_BYTE
from .limits import DEFAULT_LIMITS, Limits
from .messages import (
    RequestMessage,
    ResponseMessage,
    decode_message,
    decode_message_json,
    decode_message_xml,
    encode_message,
    encode_message_json,
    encode_message_xml,
)
from .xml import XML_CHARS_PER_TTLV_BYTE

log = logging.getLogger("keyquorum.kmip.https")

# The request URI the HTTPS profile names.
KMIP_PATH = "/kmip"

# The binary listener holds the registered KMIP port (5696), and one port cannot
# serve both TTLV and HTTP without sniffing the first bytes. The next port is the
# default of the config's example; the listener is off unless kmip.https_listen is set.
KMIP_HTTPS_PORT = 5697

# HTTP headers of one request, all lines together. KMIP clients send a handful.
MAX_HEADER_BYTES = 16 * 1024

# How long a request's body may take to arrive once its headers have.
BODY_TIMEOUT = 30.0

_READ_CHUNK = 65536


class Encoding(Enum):
    """A KMIP message encoding, with the Content-Type it answers in."""

    TTLV = "application/octet-stream"
    XML = "text/xml"
    JSON = "application/json"


# Media types a request may name; application/xml is XML's other registration.
_MEDIA_TYPES = {
    "application/octet-stream": Encoding.TTLV,
    "text/xml": Encoding.XML,
    "application/xml": Encoding.XML,
    "application/json": Encoding.JSON,
}


class MessageHandler(Protocol):
    """The node's KMIP processing, at the level of decoded messages (KmipService)."""

    async def answer(self, message: RequestMessage, client: ClientIdentity) -> ResponseMessage:
        ...

    def error_message(self, error: KmipError) -> ResponseMessage:
        ...


@dataclass(frozen=True)
class HttpAnswer:
    """One HTTP response: status, Content-Type and body."""

    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True)
class HttpsConfig:
    host: str = "0.0.0.0"
    port: int = KMIP_HTTPS_PORT
    idle_timeout: float = IDLE_TIMEOUT
    max_connections: int = MAX_CONNECTIONS
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    tls_shutdown_timeout: float = TLS_SHUTDOWN_TIMEOUT
    stop_grace: float = STOP_GRACE
    limits: Limits = field(default=DEFAULT_LIMITS)


def encoding_of(content_type: str | None) -> Encoding | None:
    """The encoding a Content-Type header names, parameters (charset) aside."""
    if content_type is None:
        return None
    media_type = content_type.split(";", 1)[0].strip().lower()
    return _MEDIA_TYPES.get(media_type)


def max_body_size(encoding: Encoding, limits: Limits) -> int:
    """The largest body accepted: the TTLV limit, scaled for the text encodings."""
    if encoding is Encoding.XML:
        return limits.max_message_size * XML_CHARS_PER_TTLV_BYTE
    if encoding is Encoding.JSON:
        return limits.max_message_size * JSON_CHARS_PER_TTLV_BYTE
    return limits.max_message_size


def _plain(status: int, text: str) -> HttpAnswer:
    return HttpAnswer(status, "text/plain; charset=utf-8", (text + "\n").encode())


class KmipOverHttp:
    """One HTTP request in, one HTTP response out; no I/O."""

    def __init__(self, handler: MessageHandler, limits: Limits = DEFAULT_LIMITS) -> None:
        self._handler = handler
        self._limits = limits

    def check_head(self, method: str, target: str, content_type: str | None,
                   content_length: int | None) -> HttpAnswer | None:
        """A refusal decided by the request line and headers alone, or None."""
        path = target.split("?", 1)[0]
        if path != KMIP_PATH:
            return _plain(404, f"no such resource {path!r}: KMIP requests go to {KMIP_PATH}")
        if method != "POST":
            return _plain(405, f"{method} is not allowed: send KMIP requests with POST")
        encoding = encoding_of(content_type)
        if encoding is None:
            return _plain(415, "Content-Type must be application/octet-stream (TTLV), "
                               "text/xml or application/xml (XML), or application/json")
        limit = max_body_size(encoding, self._limits)
        if content_length is not None and content_length > limit:
            return _plain(413, f"a body of {content_length} bytes exceeds the limit of "
                               f"{limit} for {encoding.name}")
        return None

    async def answer(self, content_type: str | None, body: bytes,
                     client: ClientIdentity) -> HttpAnswer:
        """The response to a POST /kmip whose head ``check_head`` accepted."""
        encoding = encoding_of(content_type)
        assert encoding is not None, "check_head refuses other media types"
        if len(body) > max_body_size(encoding, self._limits):
            return _plain(413, f"the body exceeds the limit of "
                               f"{max_body_size(encoding, self._limits)} bytes")

        # First the message; a body that is none is a KMIP error, in its encoding.
        try:
            message = _decode(encoding, body, self._limits)
        except KmipError as error:
            log.info("request_refused peer=%s reason=%s encoding=%s",
                     client.address, error.reason.name, encoding.name)
            response = self._handler.error_message(error)
        else:
            response = await self._handler.answer(message, client)
        return HttpAnswer(200, encoding.value, _encode(encoding, response))


def _decode(encoding: Encoding, body: bytes, limits: Limits) -> RequestMessage:
    if encoding is Encoding.TTLV:
        message = decode_message(body, limits)
    else:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid_message(f"the {encoding.name} body is not UTF-8") from None
        decode = decode_message_xml if encoding is Encoding.XML else decode_message_json
        message = decode(text, limits)
    if not isinstance(message, RequestMessage):
        raise invalid_message("expected a Request Message")
    return message


def _encode(encoding: Encoding, message: ResponseMessage) -> bytes:
    if encoding is Encoding.TTLV:
        return encode_message(message)
    if encoding is Encoding.XML:
        return encode_message_xml(message).encode("utf-8")
    return encode_message_json(message).encode("utf-8")


class KmipHttpsFrontend:
    """Serves ``POST /kmip`` over mutual TLS; see the module docstring."""

    def __init__(
        self,
        config: HttpsConfig,
        ssl_context: ssl.SSLContext,
        handler: MessageHandler,
        revoked: Callable[[int], bool] = lambda serial: False,
        known: Callable[[ClientIdentity], Awaitable[bool]] = admit_everyone,
    ) -> None:
        self.config = config
        self._ssl_context = ssl_context
        self._http = KmipOverHttp(handler, config.limits)
        self._revoked = revoked
        self._known = known
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

        # For metrics and tests, as on the binary listener.
        self.accepted = 0
        self.refused = 0
        self.handshake_failures = 0
        self.requests = 0

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the HTTPS listener is not listening")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def use_ssl_context(self, ssl_context: ssl.SSLContext) -> None:
        """Serve handshakes from now on with ``ssl_context``; open connections keep theirs."""
        self._ssl_context = ssl_context

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.config.host, self.config.port, limit=MAX_HEADER_BYTES)
        log.info("https_listener_started host=%s port=%d", self.config.host, self.port)

    async def stop(self) -> None:
        """Stop listening; requests in flight get the grace, then connections are cut."""
        if self._server is None:
            return
        port = self.port
        server, self._server = self._server, None
        server.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.config.stop_grace)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        await server.wait_closed()
        log.info("https_listener_stopped port=%d", port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Over the limit the socket is closed before any TLS work is spent on it.
        if len(self._tasks) >= self.config.max_connections:
            self.refused += 1
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = _address(writer.get_extra_info("peername"))
        try:
            identity = await self._handshake(writer, peer)
            if identity is not None:
                await self._serve(reader, writer, identity)
        except (ConnectionError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError):
            log.debug("https_connection_lost peer=%s", peer)
        finally:
            self._tasks.discard(task)
            writer.transport.abort()

    async def _handshake(self, writer: asyncio.StreamWriter, peer: str) -> ClientIdentity | None:
        try:
            await writer.start_tls(self._ssl_context,
                                   ssl_handshake_timeout=self.config.handshake_timeout)
        except Exception as error:
            # Wrong CA, no certificate, an old protocol: a line; a hang-up: debug.
            self.handshake_failures += 1
            reason = getattr(error, "reason", None) or type(error).__name__
            level = logging.INFO if isinstance(error, ssl.SSLError) else logging.DEBUG
            log.log(level, "https_handshake_failed peer=%s reason=%s", peer, reason)
            return None

        # The same checks as the binary port, failing closed.
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        try:
            if not der:
                raise ValueError("no peer certificate")
            identity = client_identity(peer, der)
            refusal = await refusal_of(identity, self._revoked, self._known)
        except Exception as error:
            refusal = f"identity_failed error={type(error).__name__}"
        if refusal is not None:
            self.refused += 1
            log.info("https_connection_refused peer=%s reason=%s", peer, refusal)
            return None
        self.accepted += 1
        return identity

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     identity: ClientIdentity) -> None:
        """Answer requests on one connection, in order, until either side closes."""
        http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        while True:
            try:
                answer = await self._one_request(http, reader, identity)
            except h11.RemoteProtocolError as error:
                # Unparseable HTTP: answer 400 if the state allows, then close.
                if http.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    answer = _plain(error.error_status_hint, f"bad HTTP request: {error}")
                    await _send(writer, http, answer, close=True)
                return
            if answer is None:
                return
            await _send(writer, http, answer, close=False)
            self.requests += 1
            if http.our_state is h11.MUST_CLOSE or http.their_state is h11.MUST_CLOSE:
                return
            try:
                http.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _one_request(self, http: h11.Connection, reader: asyncio.StreamReader,
                           identity: ClientIdentity) -> HttpAnswer | None:
        # The request line and headers, within the idle timeout.
        event = await _next_event(http, reader, self.config.idle_timeout)
        if not isinstance(event, h11.Request):
            return None
        headers = {name.decode("ascii").lower(): value.decode("latin-1")
                   for name, value in event.headers}
        length = headers.get("content-length")
        refusal = self._http.check_head(
            event.method.decode("ascii"), event.target.decode("latin-1"),
            headers.get("content-type"), int(length) if length and length.isdigit() else None)
        if refusal is not None:
            # The body is not read, so the connection closes after the refusal.
            return _closing(refusal)

        # Then the body, whole, within its size limit and time.
        limit = max_body_size(encoding_of(headers.get("content-type")) or Encoding.TTLV,
                              self.config.limits)
        body = bytearray()
        while True:
            event = await _next_event(http, reader, BODY_TIMEOUT)
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > limit:
                    return _closing(_plain(413, f"the body exceeds the limit of {limit} bytes"))
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                return None
        return await self._http.answer(headers.get("content-type"), bytes(body), identity)


@dataclass(frozen=True)
class _Closing(HttpAnswer):
    """An answer after which the connection closes (its body was not read)."""


def _closing(answer: HttpAnswer) -> HttpAnswer:
    return _Closing(answer.status, answer.content_type, answer.body)


async def _next_event(http: h11.Connection, reader: asyncio.StreamReader,
                      timeout: float) -> object:
    while True:
        event = http.next_event()
        if event is not h11.NEED_DATA:
            return event
        data = await asyncio.wait_for(reader.read(_READ_CHUNK), timeout)
        http.receive_data(data)


async def _send(writer: asyncio.StreamWriter, http: h11.Connection, answer: HttpAnswer,
                close: bool) -> None:
    close = close or isinstance(answer, _Closing)
    headers = [("Content-Type", answer.content_type),
               ("Content-Length", str(len(answer.body))),
               ("Cache-Control", "no-store")]
    if close:
        headers.append(("Connection", "close"))
    if answer.status == 405:
        headers.append(("Allow", "POST"))
    data = http.send(h11.Response(status_code=answer.status, headers=headers))
    data = (data or b"") + (http.send(h11.Data(data=answer.body)) or b"")
    data += http.send(h11.EndOfMessage()) or b""
    writer.write(data)
    await writer.drain()


def _address(peername: object) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = peername[0], peername[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peername)
