"""Audit on the admin API: the ``/v1/sys/audit`` endpoints, and a record of every call.

Endpoints (root token), shaped like Vault's:

- ``GET /v1/sys/audit``: the enabled devices, and where each writes on this node;
- ``POST /v1/sys/audit/{name}`` with ``{"type": "file", "options": {"path": ...}}``:
  enable a device on every node (the command goes through the Raft log); the
  receiving node first checks that it can write there itself;
- ``DELETE /v1/sys/audit/{name}``: disable it everywhere;
- ``POST /v1/sys/audit-hash/{name}`` with ``{"input": ..., "encoding": "utf-8"}``
  (or ``hex``, ``base64`` for bytes such as key material): the HMAC that device
  writes for that value, so an auditor can search the trail for it.

``AuditMiddleware`` writes an ``api_request`` record before a call reaches its
route and an ``api_response`` record after, with the status, the errors and the
time taken. In bodies, only the values of fields known to be harmless (names,
identifiers, settings) are written as they are; every other string (tokens,
private keys, unseal shares, passwords, certificates) is an HMAC, and so is the
presented token. A call whose request record no device can write is answered 503
and never reaches its route; one whose response record fails is answered 503 in
place of its answer, although a write it made stays committed.

Two exceptions, both deliberate: ``/v1/sys/health`` and ``/v1/sys/metrics`` are not
recorded (load balancers, Consul and Prometheus poll them all the time, and they read
nothing secret), and the
``/v1/sys/audit`` endpoints are served even when no device can write, so that an
operator can repair the trail by replacing the failing device; they are recorded
by any device that still works and logged to the node log either way.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures.
import asyncio
import base64
import binascii
import hmac
import json
import logging
import os
import re
import secrets
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import Field

from keyquorum.kmip.audit import AuditUnavailable, Sensitive

from .admin_api import AdminBackend, ApiError, _Body, _presented_token, hash_token
from .audit import AuditBroker, SaltSealedError, device_path
from .audit_state import (
    SALT_BYTES,
    AuditDevice,
    DisableAuditDevice,
    EnableAuditDevice,
    check_device,
    salt_associated_data,
)
from .seal import SealedError
from .tenancy import TokenKind

log = logging.getLogger("keyquorum.api.audit")

# Bodies up to this size are recorded (their secrets as HMACs); a larger one, such
# as a snapshot upload, is recorded by its size alone and streams through unread.
MAX_RECORDED_BODY = 1 << 20

# Body fields whose text is written as it is; every other string is an HMAC. Names
# and settings an auditor needs to read, and nothing that grants access.
PLAIN_FIELDS = frozenset({
    "scope", "scopes", "role", "roles", "name", "kind", "accessor", "serial_number",
    "serial_numbers", "common_name", "display_name", "format", "origin", "operations",
    "tls_client_key_type", "tls_client_ttl", "tls_min_version", "tls_cipher_suites",
    "server_hostnames", "server_ips", "listen_addrs", "scope_field", "role_field",
    "key_type", "fingerprint_sha256", "sans", "errors", "type", "device", "path",
    "address", "facility", "tag", "description", "hash", "encoding", "node_id", "leader",
    "progress_text", "seal_type", "devices", "options", "local", "kmip_version",
})

# Calls never recorded, and calls served even when no device can write.
_UNRECORDED = frozenset({"/v1/sys/health", "/v1/sys/metrics"})
_REPAIR_PREFIXES = ("/v1/sys/audit/", "/v1/sys/audit")
_SCOPE_IN_PATH = re.compile(r"^/v1/kmip/scope/([^/]+)(?:/role/([^/]+))?")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class AuditEnableBody(_Body):
    type: Literal["file", "syslog", "socket"]
    options: dict[str, str] = Field(default_factory=dict, max_length=16)
    description: str = Field(default="", max_length=256)


class AuditHashBody(_Body):
    input: str = Field(max_length=1 << 20)
    encoding: Literal["utf-8", "hex", "base64"] = "utf-8"


def install_audit_api(app: FastAPI, backend: AdminBackend, broker: AuditBroker) -> None:
    """The audit endpoints, and the middleware that records every call to ``app``."""
    app.include_router(audit_router(backend, broker))
    app.add_middleware(AuditMiddleware, backend=backend, broker=broker)


def audit_router(backend: AdminBackend, broker: AuditBroker) -> APIRouter:
    router = APIRouter(prefix="/v1/sys", tags=["audit"])
    audit = backend.state.audit

    async def root_caller(request: Request) -> str:
        accessor = await _accessor(backend, _presented_token(request), barrier=True)
        if accessor is None:
            raise ApiError(403, "the token is not valid (revoked, or never issued)")
        if accessor[1] != TokenKind.ROOT:
            raise ApiError(403, "the audit endpoints need a root token")
        return accessor[0]

    Root = Annotated[str, Depends(root_caller)]

    @router.get("/audit")
    async def list_devices(who: Root) -> dict[str, Any]:
        """The enabled audit devices, and where each writes on this node."""
        await backend.barrier()
        return {"devices": [_view(device, backend) for device in audit.devices()]}

    @router.post("/audit/{name}")
    async def enable_device(name: str, body: AuditEnableBody, who: Root) -> dict[str, Any]:
        """Enable an audit device on every node; this node checks it can write first."""
        problem = check_device(body.type, name, body.options)
        if problem:
            raise ApiError(400, problem)
        # The salt enters the command sealed by the barrier, like every replicated secret.
        try:
            salt_sealed = backend.seal.encrypt(secrets.token_bytes(SALT_BYTES),
                                               salt_associated_data(name))
        except SealedError:
            raise ApiError(409, "this node is sealed: unseal it, or use another node") from None
        device = AuditDevice(name, body.type, tuple(sorted(body.options.items())), b"",
                             body.description, int(time.time()), salt_sealed=salt_sealed)
        try:
            await asyncio.to_thread(_try_device, device, backend)
        except OSError as error:
            raise ApiError(400, f"this node cannot write to the {body.type} device: "
                                f"{error.strerror or error}; fix the path or address "
                                "first") from None
        await backend.write(EnableAuditDevice(device))
        log.info("audit_device_enabled device=%s type=%s by=%s", name, body.type, who)
        return _view(device, backend)

    @router.delete("/audit/{name}")
    async def disable_device(name: str, who: Root) -> dict[str, Any]:
        """Disable an audit device on every node."""
        await backend.write(DisableAuditDevice(name))
        log.info("audit_device_disabled device=%s by=%s", name, who)
        return {"name": name, "disabled": True}

    @router.post("/audit-hash/{name}")
    async def hash_value(name: str, body: AuditHashBody, who: Root) -> dict[str, Any]:
        """The HMAC that device writes for a value, to search the trail with."""
        value = _decoded(body.input, body.encoding)
        if audit.device(name) is None:
            await backend.barrier()
        try:
            found = broker.hash(name, value)
        except SaltSealedError as error:
            raise ApiError(503, str(error)) from None
        if found is None:
            raise ApiError(404, f"no audit device named {name}; see GET /v1/sys/audit")
        return {"device": name, "hash": found}

    return router


class AuditMiddleware:
    """Records every admin API call before and after its route; see the module docstring."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]],
                 backend: AdminBackend, broker: AuditBroker) -> None:
        self.app = app
        self._backend = backend
        self._broker = broker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in _UNRECORDED or not self._broker.enabled:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        repair = path.startswith(_REPAIR_PREFIXES)

        # First the request record, with the body read and handed on unchanged.
        body, receive = await _buffered(scope, receive)
        fields = await self._request_fields(scope, body)
        try:
            await self._broker.record("api_request", fields)
        except AuditUnavailable as error:
            if not repair:
                await _refuse(send, error)
                return
            log.warning("audit_unrecorded path=%s error=%s", path, error)

        # Then the route, with its answer held back until the response is recorded.
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        status = next((m["status"] for m in held if m["type"] == "http.response.start"), 500)
        answer = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
        fields.pop("request", None)
        fields["status"] = status
        fields["response"] = _render_body(answer)
        fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
        try:
            await self._broker.record("api_response", fields)
        except AuditUnavailable as error:
            if not repair:
                await _refuse(send, error)
                return
            log.warning("audit_unrecorded path=%s error=%s", path, error)
        for message in held:
            await send(message)

    async def _request_fields(self, scope: Scope, body: bytes | int) -> dict[str, Any]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        token = headers.get("x-keyquorum-token")
        if token is None:
            scheme, _, value = headers.get("authorization", "").partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else None
        accessor = await _accessor(self._backend, token, barrier=False) if token else None
        client = scope.get("client")
        named = _SCOPE_IN_PATH.match(scope.get("path", ""))
        return {
            "id": uuid.uuid4().hex,
            "client": {"address": f"{client[0]}:{client[1]}" if client else None},
            "auth": {
                "accessor": accessor[0] if accessor else None,
                "token_kind": accessor[1].value if accessor else None,
                "token": Sensitive(token.encode()) if token else None,
                "scope": named.group(1) if named else None,
                "role": named.group(2) if named else None,
            },
            "operation": f"{scope.get('method', '')} {scope.get('path', '')}",
            "query": scope.get("query_string", b"").decode("latin-1") or None,
            "request": _render_body(body),
        }


async def _accessor(backend: AdminBackend, token: str | None,
                    barrier: bool) -> tuple[str, TokenKind] | None:
    """Who a token is: its accessor and kind, or None when it is not a valid token."""
    if not token:
        return None
    configured = backend.config.api.admin_token
    if configured is not None and hmac.compare_digest(token.encode(), configured.encode()):
        return "root", TokenKind.ROOT
    tenancy = backend.state.tenancy
    found = tenancy.token_by_hash(hash_token(token))
    if found is None and barrier:
        # Made on another node a moment ago? A barrier brings this node up to date.
        await backend.barrier()
        found = tenancy.token_by_hash(hash_token(token))
    return None if found is None else (str(found.accessor), found.kind)


async def _buffered(scope: Scope, receive: Receive) -> tuple[bytes | int, Receive]:
    """The request body (or its size, when too large to record) and a receive to replay."""
    declared = dict(scope.get("headers", [])).get(b"content-length")
    if declared is None:
        # Chunked, size unknown: streamed through unread, recorded as not recorded.
        return (b"" if scope.get("method") in ("GET", "HEAD") else -1), receive
    if not declared.isdigit() or int(declared) > MAX_RECORDED_BODY:
        return int(declared) if declared.isdigit() else -1, receive
    messages: list[Message] = []
    body = b""
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return body, replay


def _render_body(body: bytes | int) -> Any:
    if isinstance(body, int):
        return {"bytes": body if body >= 0 else None,
                "not_recorded": f"larger than {MAX_RECORDED_BODY} bytes, or of unknown size"}
    if not body:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return Sensitive(body)
    return _render_json(data, plain=False)


def _render_json(value: Any, plain: bool) -> Any:
    if isinstance(value, dict):
        return {key: _render_json(inner, key in PLAIN_FIELDS) for key, inner in value.items()}
    if isinstance(value, list):
        return [_render_json(inner, plain) for inner in value]
    if isinstance(value, str) and not plain:
        return Sensitive(value.encode())
    return value


async def _refuse(send: Send, error: AuditUnavailable) -> None:
    body = json.dumps({"errors": [f"refused: the audit log cannot record this request "
                                  f"({error}); fix the failing audit device, or replace it "
                                  "through /v1/sys/audit"]}).encode()
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _view(device: AuditDevice, backend: AdminBackend) -> dict[str, Any]:
    view: dict[str, Any] = {"name": device.name, "type": device.kind,
                            "options": dict(device.options), "description": device.description,
                            "enabled_at": device.enabled_at}
    if device.kind == "file":
        node = backend.config.node
        view["local"] = {"path": str(device_path(device, str(node.id), node.data_dir))}
    return view


def _try_device(device: AuditDevice, backend: AdminBackend) -> None:
    """Raise OSError unless this node can write to ``device`` (it writes nothing)."""
    if device.kind == "file":
        node = backend.config.node
        path = device_path(device, str(node.id), node.data_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
        return
    address = device.option("address", "/dev/log")
    if device.kind == "socket":
        scheme, _, rest = address.partition(":")
        if scheme == "unix":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(2.0)
                probe.connect(rest)
        else:
            host, _, port = rest.rpartition(":")
            socket.create_connection((host.strip("[]"), int(port)), timeout=2.0).close()
        return
    if not address.startswith("udp:") and not Path(address).exists():
        raise OSError(2, f"no syslog socket at {address}")


def _decoded(text: str, encoding: str) -> bytes:
    try:
        if encoding == "hex":
            return bytes.fromhex(text)
        if encoding == "base64":
            return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise ApiError(400, f"input is not valid {encoding}") from None
    return text.encode()
