"""The health endpoint, served by a real uvicorn over TLS on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from keyquorum.cluster.api import ApiServer, NodeHealth, create_api, serve_api

LEADER = NodeHealth(
    node_id="node-1",
    role="leader",
    leader="127.0.0.1:7001",
    term=3,
    commit_index=42,
    applied_index=41,
    sealed=False,
    has_quorum=True,
)


def _serve_and(
    pki: Any,
    status: Callable[[], NodeHealth],
    check: Callable[[ApiServer, httpx.AsyncClient], Awaitable[None]],
) -> None:
    """Start the API over TLS, run `check` against it with a verifying client, stop it."""

    async def scenario() -> None:
        server = await serve_api(
            create_api(status),
            "127.0.0.1",
            0,
            cert_file=pki.ec_cert_file,
            key_file=pki.ec_key_file,
        )
        try:
            verify = ssl.create_default_context(cafile=str(pki.ca_file))
            async with httpx.AsyncClient(base_url=server.url, verify=verify) as client:
                await check(server, client)
        finally:
            await server.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("health", "expected_status"),
    [
        (LEADER, 200),
        (dataclasses.replace(LEADER, role="follower"), 429),
        (dataclasses.replace(LEADER, role="candidate", leader=None), 429),
        (dataclasses.replace(LEADER, sealed=True), 503),
        (dataclasses.replace(LEADER, role="follower", has_quorum=False), 503),
    ],
)
def test_health_status_code_tells_leader_standby_and_out(
    pki: Any, health: NodeHealth, expected_status: int
) -> None:
    async def check(server: ApiServer, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/sys/health")

        assert response.status_code == expected_status
        assert response.json() == dataclasses.asdict(health)

    _serve_and(pki, lambda: health, check)


def test_health_body_names_every_field(pki: Any) -> None:
    async def check(server: ApiServer, client: httpx.AsyncClient) -> None:
        body = (await client.get("/v1/sys/health")).json()

        assert body == {
            "node_id": "node-1",
            "role": "leader",
            "leader": "127.0.0.1:7001",
            "term": 3,
            "commit_index": 42,
            "applied_index": 41,
            "sealed": False,
            "has_quorum": True,
        }

    _serve_and(pki, lambda: LEADER, check)


def test_a_failing_status_source_reads_as_unavailable(pki: Any) -> None:
    def broken() -> NodeHealth:
        raise RuntimeError("raft not started")

    async def check(server: ApiServer, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/sys/health")

        assert response.status_code == 503
        assert response.json() == {"error": "node status unavailable"}

    _serve_and(pki, broken, check)


def test_status_is_asked_on_every_request(pki: Any) -> None:
    answers = iter([LEADER, dataclasses.replace(LEADER, role="follower")])

    async def check(server: ApiServer, client: httpx.AsyncClient) -> None:
        first = await client.get("/v1/sys/health")
        second = await client.get("/v1/sys/health")

        assert (first.status_code, second.status_code) == (200, 429)

    _serve_and(pki, lambda: next(answers), check)


def test_stop_closes_the_port(pki: Any) -> None:
    async def scenario() -> int:
        server = await serve_api(
            create_api(lambda: LEADER),
            "127.0.0.1",
            0,
            cert_file=pki.rsa_cert_file,
            key_file=pki.rsa_key_file,
        )
        await server.stop()
        return server.port

    port = asyncio.run(scenario())

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_busy_port_fails_at_start(pki: Any) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]

        async def scenario() -> None:
            await serve_api(
                create_api(lambda: LEADER),
                "127.0.0.1",
                port,
                cert_file=pki.rsa_cert_file,
                key_file=pki.rsa_key_file,
            )

        with pytest.raises(OSError):
            asyncio.run(scenario())


def test_plain_http_gets_no_health(pki: Any) -> None:
    async def check(server: ApiServer, client: httpx.AsyncClient) -> None:
        async with httpx.AsyncClient() as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get(f"http://127.0.0.1:{server.port}/v1/sys/health")

    _serve_and(pki, lambda: LEADER, check)
