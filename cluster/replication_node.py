"""Replication as one node runs it: the gRPC port, the secondary's link, the API.

``ReplicationNode`` is built by cluster/node.py next to the KMIP and admin parts.
Without a ``[replication]`` section it serves no port, but the state still numbers
its changes and the API still answers (saying what to configure).
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import grpc
from fastapi import FastAPI

from .admin_api import AdminBackend
from .config import NodeConfig
from .raft import ReplicatedLog, ReplicationError
from .replication_client import KmipRouting, SecondaryLink
from .replication_server import ChangeClock, start_server
from .replication_state import AnnounceAddress, ReplicationState

log = logging.getLogger("keyquorum.replication")

ANNOUNCE_SECONDS = 1.0


class ReplicationNode:
    def __init__(self, config: NodeConfig, root: ReplicationState,
                 replicated: ReplicatedLog) -> None:
        self.config = config
        self.root = root
        self.replicated = replicated
        self.clock = ChangeClock()
        root.on_change = self.clock.changed
        self.link = SecondaryLink(str(config.node.id), root, replicated)
        self.routing = KmipRouting(root, self.link)
        self.address: str | None = None
        self._server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def install_api(self, app: FastAPI, admin: AdminBackend) -> None:
        from .replication_api import replication_router

        app.include_router(replication_router(self, admin))

    async def start(self) -> None:
        settings = self.config.replication
        if settings is None:
            return
        self._server, port = await start_server(self.config, self.root, self.replicated,
                                                self.clock)
        self.address = settings.advertise or f"{settings.listen.host}:{port}"
        self._tasks = [
            asyncio.create_task(self.link.run(), name="keyquorum-replication-link"),
            asyncio.create_task(self._announce(), name="keyquorum-replication-announce"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._server is not None:
            await self._server.stop(grace=1.0)

    async def _announce(self) -> None:
        """Keep this node's replication address in the replicated table, for tokens."""
        raft_address = str(self.config.raft.listen)
        assert self.address is not None
        while True:
            if self.root.addresses().get(raft_address) != self.address:
                try:
                    await self.replicated.submit(AnnounceAddress(raft_address, self.address),
                                                 uuid.uuid4().hex, 5.0)
                    log.info("replication_address_announced address=%s", self.address)
                except ReplicationError:
                    pass  # no quorum yet: the next round tries again
            await asyncio.sleep(ANNOUNCE_SECONDS)
