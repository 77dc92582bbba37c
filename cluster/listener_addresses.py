"""Where the KMIP listener binds, moved whenever the replicated listener settings change.

The listener settings (cluster/tenancy.py) may name where every node listens
(``listen_addrs``) or where one node does (``node_listen_addrs``, by node id: nodes on
different hosts rarely share an IP address). ``ListenerAddresses.watch`` compares what
this node is asked to listen on with what it last asked its front end for and, when
they differ, has the front end bind the new addresses and only then close the old
sockets (``KmipFrontend.rebind``), so a client finds the node on one or the other at
every moment, and connections accepted before carry on until they end. With neither
setting a node listens on its node.toml ``kmip.listen``, so clearing them moves it back.

A node that cannot bind (the port is taken, the host has no such address) logs
``listener_rebind_failed`` and keeps serving where it was; it tries again when the
settings change, not on every tick. The admin API checks the syntax before the change
is committed, but whether an address can be bound is known only on each node.

The Consul registration (cluster/consul.py) reads the front end's bound address on
every round and registers again when it moved, so discovery follows within a poll.
"""

from __future__ import annotations

import asyncio
import logging

from keyquorum.kmip.frontend import Address, KmipFrontend

from .config import NodeConfig
from .tenancy import TenancyState, listen_addresses

log = logging.getLogger("keyquorum.listener")

# How often a node compares the settings with its sockets: a dict lookup. A change
# applied on this node is in force within this long (plus the bind).
WATCH_SECONDS = 0.2


class ListenerAddresses:
    """Keeps the front end bound where the replicated settings say this node listens."""

    def __init__(self, config: NodeConfig, tenancy: TenancyState) -> None:
        self._config = config
        self._tenancy = tenancy
        # What was last asked of the front end: node.toml's address at start.
        self.requested: list[Address] = self.configured()

    def configured(self) -> list[Address]:
        listen = self._config.kmip.listen
        return [(listen.host, listen.port)]

    def wanted(self) -> list[Address]:
        """Where this node is to listen now: the replicated settings, else node.toml."""
        settings = self._tenancy.listener()
        return listen_addresses(settings, str(self._config.node.id)) or self.configured()

    async def apply(self, frontend: KmipFrontend) -> None:
        """Move ``frontend`` to the wanted addresses if they changed since last asked."""
        wanted = self.wanted()
        if wanted == self.requested:
            return
        self.requested = wanted
        try:
            await frontend.rebind(wanted)
        except OSError as error:
            log.error("listener_rebind_failed addresses=%s error=%s detail=%s",
                      _text(wanted), type(error).__name__, error.strerror)
            return
        log.info("listener_rebound addresses=%s", _text(wanted))

    async def watch(self, frontend: KmipFrontend) -> None:
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            await self.apply(frontend)


def _text(addresses: list[Address]) -> str:
    return ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                    for host, port in addresses)
