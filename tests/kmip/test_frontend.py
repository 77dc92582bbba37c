"""The KMIP listener over real mutual TLS on 127.0.0.1.

The handler echoes each request, so every test reads exactly the bytes it sent: the
front end is a transport and must not care what a message says. Certificates come
from the session's cluster CA (tests/conftest.py); the ones a test needs beyond those
(another CA's client, a revoked client) are issued here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import struct
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from keyquorum.cluster.pki import CertificateAuthority, create_ca, issue_certificate
from keyquorum.cluster.tls import client_context, server_context
from keyquorum.kmip.errors import KmipError
from keyquorum.kmip.frontend import (
    HANDSHAKE_TIMEOUT,
    IDLE_TIMEOUT,
    MAX_CONNECTIONS,
    MAX_PIPELINED,
    ClientIdentity,
    FrontendConfig,
    KmipFrontend,
)
from keyquorum.kmip.limits import Limits
from keyquorum.kmip.tables import Tag
from keyquorum.kmip.ttlv import Item, ItemType, encode_item

# Tags inside the test requests: Batch Count numbers them, Nonce Value pads them.
BATCH_COUNT = 0x42000D
NONCE_VALUE = 0x4200C9

# Every wait in these tests is bounded: a hang fails fast instead of stalling CI.
STEP_TIMEOUT = 5.0

TEST_CONFIG = FrontendConfig(host="127.0.0.1", port=0, stop_grace=0.5)


def request(number: int, padding: int = 0) -> bytes:
    """A well-formed message numbered `number`, `padding` bytes longer than the least."""
    items = [Item(BATCH_COUNT, ItemType.INTEGER, number)]
    if padding:
        items.append(Item(NONCE_VALUE, ItemType.BYTE_STRING, bytes(padding)))
    return encode_item(Item(Tag.REQUEST_MESSAGE, ItemType.STRUCTURE, items))


def error_bytes(error: KmipError) -> bytes:
    return b"ERROR " + error.reason.name.encode()


class EchoHandler:
    """Answers each request with itself; a few frames make it misbehave on purpose."""

    def __init__(self) -> None:
        self.clients: list[ClientIdentity] = []
        self.explode = request(666)
        self.release = asyncio.Event()
        self.blocking = False
        self.started = 0
        self.finished = 0
        self.response_padding = 0

    async def handle(self, frame: bytes, client: ClientIdentity) -> bytes:
        self.clients.append(client)
        self.started += 1
        if frame == self.explode:
            raise RuntimeError("secret key material must not reach the log")
        if self.blocking:
            await self.release.wait()
        self.finished += 1
        return frame + bytes(self.response_padding)

    def error_response(self, error: KmipError) -> bytes:
        return error_bytes(error)


@dataclass(frozen=True)
class Credentials:
    ca_file: Path
    server: ssl.SSLContext
    client: ssl.SSLContext
    client_serial: int
    client_common_name: str
    stranger: ssl.SSLContext  # a client certificate from another CA
    revoked: ssl.SSLContext
    revoked_serial: int
    anonymous: ssl.SSLContext  # trusts the server, presents no certificate


@pytest.fixture(scope="module")
def credentials(pki: Any, tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    directory = tmp_path_factory.mktemp("frontend-pki")
    ttl = timedelta(hours=1)

    # The same cluster CA issues a second client, whose serial the tests revoke.
    ca = CertificateAuthority.load(pki.ca_file, pki.ca_key_file)
    revoked = issue_certificate(ca, "revoked-client", sans=[], ttl=ttl)
    revoked.write(directory / "revoked.pem", directory / "revoked.key")

    # Another CA entirely: its client must not get in.
    other_ca = create_ca("some other CA")
    stranger = issue_certificate(other_ca, "stranger", sans=[], ttl=ttl)
    stranger.write(directory / "stranger.pem", directory / "stranger.key")

    return Credentials(
        ca_file=pki.ca_file,
        server=server_context(pki.ec_cert_file, pki.ec_key_file, pki.ca_file),
        client=client_context(pki.ca_file, pki.client_cert_file, pki.client_key_file),
        client_serial=pki.client_serial,
        client_common_name=pki.client_common_name,
        stranger=client_context(
            pki.ca_file, directory / "stranger.pem", directory / "stranger.key"
        ),
        revoked=client_context(pki.ca_file, directory / "revoked.pem", directory / "revoked.key"),
        revoked_serial=revoked.serial,
        anonymous=client_context(pki.ca_file),
    )


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 4 * STEP_TIMEOUT))


@asynccontextmanager
async def serving(
    credentials: Credentials,
    config: FrontendConfig = TEST_CONFIG,
    handler: EchoHandler | None = None,
    known: Callable[[ClientIdentity], Awaitable[bool]] | None = None,
) -> AsyncIterator[tuple[KmipFrontend, EchoHandler]]:
    handler = handler or EchoHandler()
    frontend = KmipFrontend(
        config,
        credentials.server,
        handler,
        revoked=lambda serial: serial == credentials.revoked_serial,
        **({"known": known} if known else {}),
    )
    await frontend.start()
    try:
        yield frontend, handler
    finally:
        await frontend.stop()


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(frontend: KmipFrontend, context: ssl.SSLContext) -> Stream:
    return await asyncio.wait_for(
        asyncio.open_connection(
            "127.0.0.1", frontend.port, ssl=context, server_hostname="127.0.0.1"
        ),
        STEP_TIMEOUT,
    )


async def exchange(stream: Stream, message: bytes) -> bytes:
    reader, writer = stream
    writer.write(message)
    return await asyncio.wait_for(reader.readexactly(len(message)), STEP_TIMEOUT)


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server hangs up; a reset counts as hanging up."""
    try:
        return await asyncio.wait_for(reader.read(), STEP_TIMEOUT)
    except (ConnectionError, ssl.SSLError):
        return b""


async def close(stream: Stream) -> None:
    writer = stream[1]
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), STEP_TIMEOUT)
    except (ConnectionError, ssl.SSLError):
        pass


async def assert_refused(frontend: KmipFrontend, context: ssl.SSLContext) -> None:
    """The server must not answer: the handshake fails, or (TLS 1.3) the first read does."""
    try:
        stream = await connect(frontend, context)
    except (ssl.SSLError, ConnectionError):
        return
    reader, writer = stream
    writer.write(request(1))
    assert await read_to_end(reader) == b""
    await close(stream)


async def eventually(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(STEP_TIMEOUT):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture(autouse=True)
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Any:
    """Nothing a client does may put an error or a traceback in the log."""
    caplog.set_level(logging.DEBUG)
    yield caplog
    allowed = {"request_failed"}
    for record in caplog.records:
        if record.levelno >= logging.ERROR:
            assert record.getMessage().split()[0] in allowed, record.getMessage()
            assert record.exc_info is None


# The defaults are what the module documents.


def test_defaults() -> None:
    config = FrontendConfig()
    assert config.port == 5696
    assert config.idle_timeout == IDLE_TIMEOUT == 60.0
    assert config.max_connections == MAX_CONNECTIONS == 512
    assert config.handshake_timeout == HANDSHAKE_TIMEOUT == 10.0
    assert config.max_pipelined == MAX_PIPELINED == 16


# Requests and answers.


def test_round_trip_carries_the_client_identity(credentials: Credentials) -> None:
    async def scenario() -> None:
        async with serving(credentials) as (frontend, handler):
            stream = await connect(frontend, credentials.client)
            assert await exchange(stream, request(1)) == request(1)
            await close(stream)

            client = handler.clients[0]
            assert client.certificate_serial == credentials.client_serial
            assert client.common_name == credentials.client_common_name
            assert client.address.startswith("127.0.0.1:")
            assert client.certificate_der.startswith(b"\x30")
            assert frontend.accepted == 1
            assert frontend.requests == 1

    run(scenario)


def test_a_hundred_requests_on_one_connection(credentials: Credentials) -> None:
    async def scenario() -> None:
        async with serving(credentials) as (frontend, _):
            stream = await connect(frontend, credentials.client)
            for number in range(100):
                assert await exchange(stream, request(number)) == request(number)
            await close(stream)
            assert frontend.requests == 100
            assert frontend.accepted == 1

    run(scenario)


def test_fifty_one_request_connections(credentials: Credentials) -> None:
    # vCenter's habit: connect, one request, hang up.
    async def scenario() -> None:
        async with serving(credentials) as (frontend, _):
            for number in range(50):
                stream = await connect(frontend, credentials.client)
                assert await exchange(stream, request(number)) == request(number)
                await close(stream)
            assert frontend.accepted == 50
            assert frontend.requests == 50
            await eventually(lambda: frontend.active_connections == 0)

    run(scenario)


def test_a_frame_written_one_byte_at_a_time(credentials: Credentials) -> None:
    async def scenario() -> None:
        async with serving(credentials) as (frontend, _):
            reader, writer = await connect(frontend, credentials.client)
            message = request(7, padding=20)
            for byte in message:
                writer.write(bytes([byte]))
                await writer.drain()
            answer = await asyncio.wait_for(reader.readexactly(len(message)), STEP_TIMEOUT)
            assert answer == message
            await close((reader, writer))

    run(scenario)


def test_two_frames_in_one_write_are_answered_in_order(credentials: Credentials) -> None:
    async def scenario() -> None:
        async with serving(credentials) as (frontend, _):
            reader, writer = await connect(frontend, credentials.client)
            first, second = request(1), request(2, padding=100)
            writer.write(first + second)
            answer = await asyncio.wait_for(
                reader.readexactly(len(first) + len(second)), STEP_TIMEOUT
            )
            assert answer == first + second
            await close((reader, writer))

    run(scenario)


def test_pipelined_requests_stop_the_reading_beyond_the_limit(credentials: Credentials) -> None:
    config = replace(TEST_CONFIG, max_pipelined=4)

    async def scenario() -> None:
        async with serving(credentials, config) as (frontend, handler):
            handler.blocking = True
            reader, writer = await connect(frontend, credentials.client)
            messages = [request(number) for number in range(100)]
            for message in messages:
                writer.write(message)
            await writer.drain()

            # With the first request stuck, reading stops after a handful are queued.
            await eventually(lambda: handler.started == 1)
            await asyncio.sleep(0.2)
            (connection,) = frontend._connections
            assert len(connection._queue) <= config.max_pipelined

            # Released, every request is answered, in order.
            handler.release.set()
            expected = b"".join(messages)
            answer = await asyncio.wait_for(reader.readexactly(len(expected)), STEP_TIMEOUT)
            assert answer == expected
            await close((reader, writer))

    run(scenario)


def test_a_client_that_does_not_read_is_served_once_it_does(credentials: Credentials) -> None:
    # Responses far bigger than the transport's write buffer: the worker must wait
    # for the client to read, then carry on in order.
    async def scenario() -> None:
        handler = EchoHandler()
        handler.response_padding = 256 * 1024
        async with serving(credentials, handler=handler) as (frontend, _):
            reader, writer = await connect(frontend, credentials.client)
            messages = [request(number) for number in range(20)]
            writer.write(b"".join(messages))
            await asyncio.sleep(0.2)
            for message in messages:
                answer = await asyncio.wait_for(
                    reader.readexactly(len(message) + handler.response_padding), STEP_TIMEOUT
                )
                assert answer.startswith(message)
            await close((reader, writer))

    run(scenario)


# Messages the front end refuses.


def test_an_oversized_header_gets_the_error_response_then_a_close(
    credentials: Credentials,
) -> None:
    limits = Limits(max_message_size=1024)
    config = replace(TEST_CONFIG, limits=limits)

    async def scenario() -> None:
        async with serving(credentials, config) as (frontend, handler):
            # A message of exactly the limit is served.
            stream = await connect(frontend, credentials.client)
            largest = request(1, padding=1024 - len(request(1)) - 8)
            assert len(largest) == limits.max_message_size
            assert await exchange(stream, largest) == largest

            # One over, announced by the header alone, is refused unread.
            reader, writer = stream
            too_big = request(2, padding=1024 - len(request(1)))
            writer.write(too_big[:8])
            assert await read_to_end(reader) == b"ERROR INVALID_MESSAGE"
            assert handler.started == 1
            await close(stream)

    run(scenario)


def test_the_default_message_limit_is_enforced(credentials: Credentials) -> None:
    async def scenario() -> None:
        async with serving(credentials) as (frontend, _):
            reader, writer = await connect(frontend, credentials.client)
            header = bytes.fromhex("42007801") + (1024 * 1024).to_bytes(4, "big")
            writer.write(header)
            assert await read_to_end(reader) == b"ERROR INVALID_MESSAGE"
            await close((reader, writer))

    run(scenario)


def test_bytes_that_are_not_kmip_get_the_error_response_then_a_close(
    credentials: Credentials,
) -> None:
    async def scenario() -> None:
        async with serving(credentials) as (frontend, handler):
            reader, writer = await connect(frontend, credentials.client)

            # The request before the garbage is still answered, first.
            writer.write(request(1) + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await read_to_end(reader) == request(1) + b"ERROR INVALID_MESSAGE"
            assert handler.started == 1
            await close((reader, writer))
            await eventually(lambda: frontend.active_connections == 0)

    run(scenario)


def test_a_failing_handler_answers_general_failure_and_keeps_the_connection(
    credentials: Credentials, no_errors_logged: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with serving(credentials) as (frontend, handler):
            reader, writer = await connect(frontend, credentials.client)
            writer.write(handler.explode)
            expected = b"ERROR GENERAL_FAILURE"
            answer = await asyncio.wait_for(reader.readexactly(len(expected)), STEP_TIMEOUT)
            assert answer == expected
            assert await exchange((reader, writer), request(2)) == request(2)
            await close((reader, writer))
            assert frontend.request_failures == 1

    run(scenario)
    failures = [r for r in no_errors_logged.records if r.getMessage().startswith("request_failed")]
    assert len(failures) == 1
    assert "builtins.RuntimeError" in failures[0].getMessage()
    assert all("secret" not in record.getMessage() for record in no_errors_logged.records)


# Who may connect.


def test_a_client_without_a_certificate_is_refused(credentials: Credentials) -> None:
    async def scenario() -> None:
        async with serving(credentials) as (frontend, handler):
            await assert_refused(frontend, credentials.anonymous)
            await eventually(lambda: frontend.handshake_failures == 1)
            assert handler.started == 0

    run(scenario)


def test_a_client_of_another_ca_is_refused(credentials: Credentials) -> None:
    async def scenario() -> None:
        async with serving(credentials) as (frontend, handler):
            await assert_refused(frontend, credentials.stranger)
            await eventually(lambda: frontend.handshake_failures == 1)
            assert handler.started == 0

    run(scenario)


def expired_client(credentials: Credentials, pki: Any, directory: Path) -> ssl.SSLContext:
    """A client certificate of the right CA whose validity ended yesterday."""
    ca = CertificateAuthority.load(pki.ca_file, pki.ca_key_file)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired-client")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=2))
        .not_valid_after(now - timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca.private_key, hashes.SHA256())
    )
    cert_file, key_file = directory / "expired.pem", directory / "expired.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return client_context(credentials.ca_file, cert_file, key_file)


def test_an_expired_client_certificate_is_refused(
    credentials: Credentials, pki: Any, tmp_path: Path
) -> None:
    expired = expired_client(credentials, pki, tmp_path)

    async def scenario() -> None:
        async with serving(credentials) as (frontend, handler):
            await assert_refused(frontend, expired)
            await eventually(lambda: frontend.handshake_failures == 1)
            assert handler.started == 0

    run(scenario)


def test_a_revoked_serial_is_closed_without_a_request_read(credentials: Credentials) -> None:
    async def scenario() -> None:
        async with serving(credentials) as (frontend, handler):
            await assert_refused(frontend, credentials.revoked)
            await eventually(lambda: frontend.refused == 1)
            assert handler.started == 0
            assert frontend.accepted == 0

            # The cluster's other client is still welcome.
            stream = await connect(frontend, credentials.client)
            assert await exchange(stream, request(1)) == request(1)
            await close(stream)

    run(scenario)


def test_admission_may_wait_for_the_node_to_catch_up(credentials: Credentials) -> None:
    # The node's check of a certificate it does not know yet waits for a read barrier
    # (cluster/kmip_access.py); a request the client sent meanwhile is answered after.
    asked: list[int] = []
    caught_up = asyncio.Event()

    async def known(identity: ClientIdentity) -> bool:
        asked.append(identity.certificate_serial)
        await caught_up.wait()
        return identity.certificate_serial == credentials.client_serial

    async def scenario() -> None:
        async with serving(credentials, known=known) as (frontend, handler):
            reader, writer = await connect(frontend, credentials.client)
            writer.write(request(1))
            await eventually(lambda: asked == [credentials.client_serial])
            assert handler.started == 0 and frontend.accepted == 0

            caught_up.set()
            assert await asyncio.wait_for(reader.readexactly(len(request(1))),
                                          STEP_TIMEOUT) == request(1)
            assert frontend.accepted == 1
            await close((reader, writer))

    run(scenario)


def test_a_certificate_still_unknown_after_catching_up_is_refused(
    credentials: Credentials,
) -> None:
    async def known(identity: ClientIdentity) -> bool:
        await asyncio.sleep(0.05)  # the read barrier, after which there is still no credential
        return False

    async def scenario() -> None:
        async with serving(credentials, known=known) as (frontend, handler):
            await assert_refused(frontend, credentials.client)
            await eventually(lambda: frontend.refused == 1)
            assert handler.started == 0 and frontend.accepted == 0

    run(scenario)


def test_a_tls_1_1_client_is_refused(credentials: Credentials) -> None:
    # The server, not the client, must be the one that says no: the client is
    # willing (security level 0 re-enables TLS 1.1 in OpenSSL 3) and the server
    # counts a failed handshake.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.minimum_version = ssl.TLSVersion.TLSv1_1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    old.load_verify_locations(cafile=credentials.ca_file)

    async def scenario() -> None:
        async with serving(credentials) as (frontend, _):
            await assert_refused(frontend, old)
            await eventually(lambda: frontend.handshake_failures == 1)

    run(scenario)


def test_a_silent_client_is_cut_off_by_the_handshake_timeout(credentials: Credentials) -> None:
    config = replace(TEST_CONFIG, handshake_timeout=0.2)

    async def scenario() -> None:
        async with serving(credentials, config) as (frontend, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", frontend.port)
            assert await read_to_end(reader) == b""
            assert frontend.handshake_failures == 1
            writer.close()

    run(scenario)


# Limits on connections.


def test_an_idle_connection_is_closed(credentials: Credentials) -> None:
    config = replace(TEST_CONFIG, idle_timeout=0.3)

    async def scenario() -> None:
        async with serving(credentials, config) as (frontend, _):
            stream = await connect(frontend, credentials.client)

            # Requests keep it open past the timeout...
            for number in range(4):
                assert await exchange(stream, request(number)) == request(number)
                await asyncio.sleep(0.15)

            # ...half a request does not.
            reader, writer = stream
            writer.write(request(9)[:10])
            started = asyncio.get_running_loop().time()
            assert await read_to_end(reader) == b""
            assert asyncio.get_running_loop().time() - started < 0.3 + 1.0
            await close(stream)
            await eventually(lambda: frontend.active_connections == 0)

    run(scenario)


def test_a_slow_request_is_not_idleness(credentials: Credentials) -> None:
    config = replace(TEST_CONFIG, idle_timeout=0.2)

    async def scenario() -> None:
        async with serving(credentials, config) as (frontend, handler):
            handler.blocking = True
            stream = await connect(frontend, credentials.client)
            stream[1].write(request(1))
            await asyncio.sleep(0.5)
            handler.release.set()
            answer = await asyncio.wait_for(stream[0].readexactly(len(request(1))), STEP_TIMEOUT)
            assert answer == request(1)
            await close(stream)

    run(scenario)


def test_connections_beyond_the_limit_are_closed_at_once(credentials: Credentials) -> None:
    config = replace(TEST_CONFIG, max_connections=2)

    async def scenario() -> None:
        async with serving(credentials, config) as (frontend, _):
            first = await connect(frontend, credentials.client)
            second = await connect(frontend, credentials.client)
            assert frontend.active_connections == 2

            await assert_refused(frontend, credentials.client)
            assert frontend.refused == 1
            assert frontend.handshake_failures == 0

            # A slot given back is a slot for the next client.
            await close(first)
            await eventually(lambda: frontend.active_connections == 1)
            third = await connect(frontend, credentials.client)
            assert await exchange(third, request(3)) == request(3)
            assert await exchange(second, request(2)) == request(2)
            await close(second)
            await close(third)

    run(scenario)


# Clients that go away, and stopping.


def test_a_client_leaving_mid_request_is_quietly_forgotten(credentials: Credentials) -> None:
    async def scenario() -> None:
        async with serving(credentials) as (frontend, handler):
            handler.blocking = True
            stream = await connect(frontend, credentials.client)
            stream[1].write(request(1))
            await eventually(lambda: handler.started == 1)
            stream[1].transport.abort()
            await eventually(lambda: frontend.active_connections == 0)

            # The handler still finishes what it started; the answer goes nowhere.
            handler.release.set()
            await eventually(lambda: handler.finished == 1)

            # Half a message, then gone.
            stream = await connect(frontend, credentials.client)
            stream[1].write(request(2)[:5])
            await close(stream)
            await eventually(lambda: frontend.active_connections == 0)

    run(scenario)


def test_a_reset_before_the_handshake_is_quietly_forgotten(credentials: Credentials) -> None:
    async def scenario() -> None:
        async with serving(credentials) as (frontend, _):
            # SO_LINGER on with a zero timeout: close() sends a reset, not a FIN.
            raw = socket.create_connection(("127.0.0.1", frontend.port))
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raw.close()
            await eventually(lambda: frontend.handshake_failures == 1)
            assert frontend.active_connections == 0

    run(scenario)


def test_stop_finishes_the_request_in_flight_and_closes_everything(
    credentials: Credentials,
) -> None:
    async def scenario() -> None:
        async with serving(credentials) as (frontend, handler):
            handler.blocking = True
            idle = await connect(frontend, credentials.client)
            busy = await connect(frontend, credentials.client)
            busy[1].write(request(1))
            await eventually(lambda: handler.started == 1)

            # Released shortly after stop() begins, the request in flight is answered.
            asyncio.get_running_loop().call_later(0.1, handler.release.set)
            port = frontend.port
            await frontend.stop()

            assert frontend.active_connections == 0
            answer = await asyncio.wait_for(busy[0].readexactly(len(request(1))), STEP_TIMEOUT)
            assert answer == request(1)
            assert await read_to_end(busy[0]) == b""
            assert await read_to_end(idle[0]) == b""
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", port)
            await close(idle)
            await close(busy)

    run(scenario)


def test_stop_cuts_off_a_request_stuck_beyond_the_grace(credentials: Credentials) -> None:
    config = replace(TEST_CONFIG, stop_grace=0.2)

    async def scenario() -> None:
        async with serving(credentials, config) as (frontend, handler):
            handler.blocking = True
            stream = await connect(frontend, credentials.client)
            stream[1].write(request(1))
            await eventually(lambda: handler.started == 1)
            started = asyncio.get_running_loop().time()
            await frontend.stop()
            assert asyncio.get_running_loop().time() - started < 0.2 + 1.5
            assert frontend.active_connections == 0
            assert await read_to_end(stream[0]) == b""
            await close(stream)

    run(scenario)
