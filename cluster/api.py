"""The admin HTTPS API: for now the health endpoint that load balancers and Consul poll.

`GET /v1/sys/health` needs no authentication and answers with the node's view of the
cluster. Its status code is the signal: 200 on the leader, 429 on a standby, 503 on
a node that is sealed or cut off from a quorum. Consul reads 2xx as passing, 429 as
warning and anything else as critical, so the leader is healthy, standbys are up but
not active, and a node that cannot serve is out.

The server runs inside the node's asyncio loop (`serve_api`), not in a process of
its own, and leaves signal handling to the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from keyquorum.cluster.tls import DEFAULT_CIPHERS, https_server_context

log = logging.getLogger("keyquorum.api")

Role = Literal["leader", "follower", "candidate"]

# A stop waits this long for requests in flight before closing their connections.
SHUTDOWN_GRACE_SECONDS = 5


@dataclass(frozen=True)
class NodeHealth:
    """One node's view of itself and the cluster, as the health endpoint reports it."""

    node_id: str
    role: Role
    # The leader's Raft address as this node knows it; None while there is no leader.
    leader: str | None
    term: int
    commit_index: int
    applied_index: int
    # A sealed node replicates but serves no KMIP request.
    sealed: bool
    # Whether this node hears from a majority (on the leader) or from a leader.
    has_quorum: bool

    @property
    def status_code(self) -> int:
        if self.sealed or not self.has_quorum:
            return 503
        return 200 if self.role == "leader" else 429


def create_api(status: Callable[[], NodeHealth]) -> FastAPI:
    """The admin API; `status` is called on every health request and must not block."""
    app = FastAPI(title="keyquorum", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/v1/sys/health")
    def health() -> JSONResponse:
        try:
            current = status()
        except Exception as error:
            # A broken status source must read as "do not send traffic here".
            log.exception("health_status_failed error=%s", type(error).__name__)
            return JSONResponse({"error": "node status unavailable"}, status_code=503)
        return JSONResponse(asdict(current), status_code=current.status_code)

    return app


class _EmbeddedServer(uvicorn.Server):
    """uvicorn's server without its signal handlers: the node decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class ApiServer:
    """A running API server; `stop` ends it and waits until its port is closed."""

    host: str
    port: int
    _server: uvicorn.Server
    _task: asyncio.Task[None]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    async def stop(self) -> None:
        self._server.should_exit = True
        await self._task
        log.info("api_stopped port=%d", self.port)


async def serve_api(
    app: FastAPI,
    host: str,
    port: int,
    *,
    cert_file: Path,
    key_file: Path,
    ciphers: str = DEFAULT_CIPHERS,
) -> ApiServer:
    """Serve `app` over HTTPS in the running loop; returns once the port accepts.

    Port 0 picks a free port; the handle says which. An OSError if the port cannot
    be bound.
    """
    context = https_server_context(cert_file, key_file, ciphers)

    # uvicorn narrates start and stop in prose; api_listening and api_stopped say it
    # in our log format. Its warnings and errors still come through.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )
    config.load()
    # Our context, not uvicorn's: it enforces TLS 1.2+ and the node's ciphers.
    config.ssl = context

    # Bind before starting so a busy port fails here, as an OSError, not in a task.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, port), family=family)
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[listener]), name="keyquorum-api")
    while not server.started:
        if task.done():
            listener.close()
            task.result()
            raise RuntimeError("the API server stopped before it started")
        await asyncio.sleep(0.01)

    bound_port = listener.getsockname()[1]
    log.info("api_listening host=%s port=%d", host, bound_port)
    return ApiServer(host=host, port=bound_port, _server=server, _task=task)
