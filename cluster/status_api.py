"""``GET /v1/sys/raft/status``: this node's view of the Raft cluster, for the CLI.

``keyquorum status`` and ``keyquorum operator raft list-peers`` read it. Like the
health endpoint it needs no token: it shows addresses, roles and indexes, which the
health endpoint and the metrics already show, and no tenant's data.

Each node knows its own term and indexes, and which peers it is connected to; only
the leader knows how far each peer has replicated (``match_index``). A node does not
know its peers' API addresses, so a full table of every node's own view takes one
call per node (the CLI does that when given several addresses).

``GET /v1/sys/objects`` counts managed objects by scope, type and state for the web
UI; it takes any admin token, and a scoped token sees its own scope only. It counts
this node's applied state without a read barrier: a dashboard can be a commit late.

``GET /v1/sys/audit-trail`` reads back the last records this node's file devices
wrote (root or read-only token). Syslog and socket devices send their records away
and keep nothing to read back.
"""


from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request

from .admin_api import AdminBackend, ApiError, authenticate
from .audit import device_path
from .raft import ReplicatedLog
from .seal import Seal
from .tenancy import TokenKind

# How much of the end of an audit file is read to find the last records.
AUDIT_TAIL_BYTES = 512 * 1024
AUDIT_TRAIL_MAX = 200


def raft_status_router(node_id: str, replicated: ReplicatedLog, seal: Seal,
                       health_code: Callable[[], int]) -> APIRouter:
    router = APIRouter(prefix="/v1/sys/raft", tags=["sys"])

    @router.get("/status")
    def raft_status() -> dict[str, Any]:
        status = replicated.status()
        return {
            "node_id": node_id,
            "address": status.node_address,
            "role": status.role,
            "leader": status.leader_address,
            "term": status.term,
            "commit_index": status.commit_index,
            "applied_index": status.applied_index,
            "has_quorum": status.has_quorum,
            "sealed": seal.sealed,
            "health": health_code(),
            "peers": [{"address": peer.address, "connected": peer.connected,
                       "match_index": peer.match_index} for peer in status.peers],
        }

    return router


def objects_router(backend: AdminBackend) -> APIRouter:
    router = APIRouter(prefix="/v1/sys", tags=["sys"])

    @router.get("/objects")
    async def objects(request: Request) -> dict[str, Any]:
        who = await authenticate(backend, request)
        counts: Counter[tuple[str, str, str]] = Counter(
            (str(obj.scope), obj.object_type.name.lower(), obj.state.name.lower())
            for obj in backend.state.keys
            if who.kind != TokenKind.SCOPED or obj.scope == who.scope)
        return {"counts": [{"scope": scope, "object_type": kind, "state": state, "count": n}
                           for (scope, kind, state), n in sorted(counts.items())]}

    return router


def audit_trail_router(backend: AdminBackend) -> APIRouter:
    router = APIRouter(prefix="/v1/sys", tags=["sys"])
    node = backend.config.node

    @router.get("/audit-trail")
    async def audit_trail(request: Request,
                          limit: int = Query(50, ge=1, le=AUDIT_TRAIL_MAX)) -> dict[str, Any]:
        who = await authenticate(backend, request)
        if who.kind == TokenKind.SCOPED:
            raise ApiError(403, "the audit trail spans every scope: use a root or read-only "
                                "token")
        devices = []
        for device in backend.state.audit.devices():
            if device.kind != "file":
                continue
            path = device_path(device, str(node.id), node.data_dir)
            devices.append({"device": device.name, "records": _last_records(path, limit)})
        return {"devices": devices}

    return router


def _last_records(path: Path, limit: int) -> list[dict[str, Any]]:
    try:
        with path.open("rb") as file:
            size = file.seek(0, 2)
            file.seek(max(0, size - AUDIT_TAIL_BYTES))
            lines = file.read().splitlines()
    except OSError:
        return []
    if size > AUDIT_TAIL_BYTES:
        lines = lines[1:]  # the first line read is cut
    records = []
    for line in lines[-limit:]:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a line being written right now
    return records
