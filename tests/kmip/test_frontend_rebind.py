"""The KMIP listener moves to new addresses while it serves, over real TLS on 127.0.0.1.

The handler echoes each request, as in test_frontend.py: these tests only ask where
the front end listens and whether open connections survive the move.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable

import pytest
from conftest import PkiFiles

from keyquorum.cluster.tls import client_context, server_context
from keyquorum.kmip.errors import KmipError
from keyquorum.kmip.frontend import ClientIdentity, FrontendConfig, KmipFrontend
from keyquorum.kmip.tables import Tag
from keyquorum.kmip.ttlv import Item, ItemType, encode_item

STEP_TIMEOUT = 5.0
HOST = "127.0.0.1"


class Echo:
    async def handle(self, frame: bytes, client: ClientIdentity) -> bytes:
        return frame

    def error_response(self, error: KmipError) -> bytes:
        return b"ERROR"


def message(number: int) -> bytes:
    count = Item(Tag.BATCH_COUNT, ItemType.INTEGER, number)
    return encode_item(Item(Tag.REQUEST_MESSAGE, ItemType.STRUCTURE, [count]))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 4 * STEP_TIMEOUT))


async def echoed(stream: tuple[asyncio.StreamReader, asyncio.StreamWriter], number: int) -> bool:
    reader, writer = stream
    writer.write(message(number))
    return await asyncio.wait_for(reader.readexactly(len(message(number))),
                                  STEP_TIMEOUT) == message(number)


@pytest.fixture
def contexts(pki: PkiFiles) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return (server_context(pki.ec_cert_file, pki.ec_key_file, pki.ca_file),
            client_context(pki.ca_file, pki.client_cert_file, pki.client_key_file))


def test_a_rebind_serves_the_new_port_refuses_the_old_and_keeps_open_connections(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server, client = contexts

    async def scenario() -> None:
        old, new = free_port(), free_port()
        frontend = KmipFrontend(FrontendConfig(host=HOST, port=old, stop_grace=0.5), server,
                                Echo())
        await frontend.start()
        try:
            before = await asyncio.open_connection(HOST, old, ssl=client, server_hostname=HOST)
            assert await echoed(before, 1)

            await frontend.rebind([(HOST, new)])

            # The connection made before the move still answers; new ones go to the new port.
            assert await echoed(before, 2)
            after = await asyncio.open_connection(HOST, new, ssl=client, server_hostname=HOST)
            assert await echoed(after, 3)
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(HOST, old, ssl=client, server_hostname=HOST)
            assert frontend.addresses == [(HOST, new)] and frontend.port == new
            for _, writer in (before, after):
                writer.close()
        finally:
            await frontend.stop()

    run(scenario)


def test_a_rebind_that_cannot_bind_leaves_the_listener_as_it_was(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server, client = contexts

    async def scenario() -> None:
        old, spare = free_port(), free_port()
        frontend = KmipFrontend(FrontendConfig(host=HOST, port=old, stop_grace=0.5), server,
                                Echo())
        await frontend.start()
        with socket.socket() as squatter:
            squatter.bind((HOST, 0))
            squatter.listen()
            taken = squatter.getsockname()[1]
            try:
                # One good and one taken address: neither is used, the old one serves on.
                with pytest.raises(OSError):
                    await frontend.rebind([(HOST, spare), (HOST, taken)])
                assert frontend.addresses == [(HOST, old)]
                stream = await asyncio.open_connection(HOST, old, ssl=client,
                                                       server_hostname=HOST)
                assert await echoed(stream, 1)
                stream[1].close()
                with pytest.raises(ConnectionRefusedError):
                    await asyncio.open_connection(HOST, spare)
            finally:
                await frontend.stop()

    run(scenario)
