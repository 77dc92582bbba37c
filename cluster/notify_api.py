"""Notify endpoints on the admin API: where the leader sends a scope's Notify and Put.

- ``GET /v1/kmip/scope/{scope}/notify-endpoint``: the scope's endpoints;
- ``POST /v1/kmip/scope/{scope}/notify-endpoint/{name}`` with ``{"address":
  "host:port", "kmip_version": "1.4"}``: register (or replace) an endpoint;
- ``DELETE /v1/kmip/scope/{scope}/notify-endpoint/{name}``: remove it.

A root token, or a token scoped to that scope with write rights: Put hands the
endpoint the scope's key material, which such a token can reach anyway by issuing
itself a credential. cluster/notify.py says what is sent and what is promised.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures.
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from .admin_api import AdminBackend, ApiError, Caller, _Body, _check_names, authenticate
from .notify_state import (
    NotifyEndpoint,
    RemoveNotifyEndpoint,
    SetNotifyEndpoint,
    check_endpoint,
)
from .state import ScopeName

log = logging.getLogger("keyquorum.api.notify")


class EndpointBody(_Body):
    # host:port of the client's KMIP listener; [v6]:port for an IPv6 address.
    address: str = Field(max_length=300)
    kmip_version: str = Field(default="1.4", max_length=8)


def notify_router(backend: AdminBackend) -> APIRouter:
    router = APIRouter(prefix="/v1/kmip/scope/{scope}/notify-endpoint",
                       tags=["notify endpoints"])
    endpoints = backend.state.notify

    async def caller(request: Request) -> Caller:
        return await authenticate(backend, request)

    Auth = Annotated[Caller, Depends(caller)]

    @router.get("")
    async def list_endpoints(scope: str, who: Auth) -> dict[str, Any]:
        """The scope's notify endpoints."""
        who.may(write=False, scope=scope)
        _check_names(scope)
        await backend.barrier()
        if backend.state.tenancy.scope(scope) is None:
            raise ApiError(404, f"no scope named {scope}")
        return {"endpoints": [_view(e) for e in endpoints.endpoints(ScopeName(scope))]}

    @router.post("/{name}")
    async def set_endpoint(scope: str, name: str, body: EndpointBody,
                           who: Auth) -> dict[str, Any]:
        """Register or replace an endpoint: the leader sends it Notify and Put."""
        who.may(write=True, scope=scope)
        _check_names(scope)
        host, port = _split(body.address)
        problem = check_endpoint(name, host, port, body.kmip_version)
        if problem:
            raise ApiError(400, problem)
        endpoint = NotifyEndpoint(ScopeName(scope), name, host, port, body.kmip_version,
                                  int(time.time()))
        await backend.write(SetNotifyEndpoint(endpoint))
        log.info("notify_endpoint_set scope=%s name=%s address=%s by=%s", scope, name,
                 endpoint.address, who.accessor)
        return _view(endpoint)

    @router.delete("/{name}")
    async def remove_endpoint(scope: str, name: str, who: Auth) -> dict[str, Any]:
        """Stop sending to an endpoint."""
        who.may(write=True, scope=scope)
        _check_names(scope)
        await backend.write(RemoveNotifyEndpoint(ScopeName(scope), name))
        log.info("notify_endpoint_removed scope=%s name=%s by=%s", scope, name, who.accessor)
        return {"scope": scope, "name": name, "removed": True}

    return router


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ApiError(400, f"address {address!r}: give host:port, e.g. 10.0.0.5:5696")
    return host.strip("[]"), int(port)


def _view(endpoint: NotifyEndpoint) -> dict[str, Any]:
    return {"scope": endpoint.scope, "name": endpoint.name, "address": endpoint.address,
            "kmip_version": endpoint.kmip_version, "created_at": endpoint.created_at}
