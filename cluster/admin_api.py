"""The admin API for tenancy: scopes, roles, credentials, CAs, tokens, listener settings.

Paths follow Vault's KMIP secrets engine, under ``/v1/``, so that Vault users feel
at home: ``/v1/kmip/scope/{scope}``, ``/v1/kmip/scope/{scope}/role/{role}``,
``.../credential/generate``, ``.../credential/sign``, ``.../credential/lookup``,
``.../credential/revoke``, ``/v1/kmip/ca``, ``/v1/kmip/config``, and
``/v1/auth/token/...``. The OpenAPI description is at ``/v1/openapi.json``.

Every call but the health check carries a token, in ``X-Keyquorum-Token`` or
``Authorization: Bearer``. The root token is the node config's ``api.admin_token``
(initialization, an open issue, will mint it instead); tokens made through the API
are read-only or limited to one scope, and only their SHA-256 is replicated.

Writes are commands submitted through the Raft log, so every node has them once
they are answered; reads first pass a read barrier, so a read on any node sees
every write answered before it. Errors are ``{"errors": ["what to fix"]}`` with
404 (no such thing), 409 (conflict), 400/422 (bad input), 401/403 (token) or 503
(the cluster cannot commit right now).
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures'
# annotations, and those name the local dependency `Auth`.
import asyncio
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException

from keyquorum.kmip.authorization import NO_OPERATIONS

from . import credentials
from .cluster_state import ClusterState
from .config import NodeConfig
from .pki import CertificateAuthority, create_ca
from .raft import ReplicatedLog, ReplicationError
from .seal import Seal, SealedError
from .state import ScopeName
from .tenancy import (
    KEY_BITS,
    ROLE_FLAGS,
    AdminToken,
    ClusterCa,
    CreateScope,
    CreateToken,
    DeleteRole,
    DeleteScope,
    Done,
    ImportCa,
    ImportedCa,
    InstallClusterCa,
    IssueCredential,
    ListenerSettings,
    MappingRule,
    Problem,
    Refused,
    RemoveImportedCa,
    RevokeCredential,
    RevokeToken,
    Role,
    RoleName,
    RoleSettings,
    SetListener,
    SubjectField,
    TokenAccessor,
    TokenKind,
    WriteRole,
    check_listener,
    check_name,
    check_role_settings,
    listen_addresses,
    role_flags,
)
from .tls import check_ciphers

log = logging.getLogger("keyquorum.api.admin")

# As long as a KMIP write may wait: a commit that takes longer has lost its quorum.
COMMIT_TIMEOUT_SECONDS = 10.0
TOKEN_HEADER = "X-Keyquorum-Token"
CLUSTER_CA_NAME = "keyquorum cluster CA"

_STATUS = {Problem.NOT_FOUND: 404, Problem.CONFLICT: 409, Problem.INVALID: 400}
_DURATION = re.compile(r"(\d+)([smhd]?)")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# A token lives at most ten years, as long as the cluster CA: past that, "forever"
# is what the operator meant, and they can leave ttl out.
MAX_TOKEN_TTL_SECONDS = 3650 * 86400


class ApiError(Exception):
    """Answered as ``{"errors": [message]}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class AdminBackend:
    """What the admin API needs from the node."""

    config: NodeConfig
    log: ReplicatedLog
    state: ClusterState
    seal: Seal

    async def submit(self, command: object) -> object:
        try:
            return await self.log.submit(command, uuid.uuid4().hex, COMMIT_TIMEOUT_SECONDS)
        except ReplicationError as error:
            log.warning("admin_write_unavailable cause=%s", type(error).__name__)
            raise ApiError(503, "the cluster cannot commit right now (no quorum or timed "
                                "out); retry, or use another node") from None

    async def barrier(self) -> None:
        try:
            await self.log.read_barrier(COMMIT_TIMEOUT_SECONDS)
        except ReplicationError:
            raise ApiError(503, "the cluster cannot confirm a consistent read right now; "
                                "retry, or use another node") from None

    async def write(self, command: object) -> object:
        """Submit; a refusal by the state becomes the caller's 4xx."""
        outcome = await self.submit(command)
        if isinstance(outcome, Refused):
            raise ApiError(_STATUS[outcome.problem], outcome.message)
        if isinstance(outcome, Done):
            return outcome.value
        raise ApiError(500, "the command was not applied")


# Who is calling.


@dataclass(frozen=True)
class Caller:
    kind: TokenKind
    scope: ScopeName | None = None
    accessor: str = "root"

    def may(self, *, write: bool, scope: str | None) -> None:
        """Raise 403 unless this caller may read (or write) in ``scope`` (None: cluster-wide)."""
        if self.kind == TokenKind.ROOT:
            return
        if self.kind == TokenKind.READ_ONLY:
            if write:
                raise ApiError(403, "this token is read-only; use a root or scoped token "
                                    "to change anything")
            return
        if scope is None or scope != self.scope:
            where = f"scope {scope}" if scope else "cluster-wide settings"
            raise ApiError(403, f"this token is limited to scope {self.scope} and cannot "
                                f"touch {where}")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _presented_token(request: Request) -> str:
    token = request.headers.get(TOKEN_HEADER)
    if token is None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            token = value.strip()
    if not token:
        raise ApiError(401, f"no token: send it in the {TOKEN_HEADER} header or as "
                            "Authorization: Bearer <token>")
    return token


async def authenticate(backend: AdminBackend, request: Request) -> Caller:
    """Who presented the request's token; 401 without one, 403 for an unknown one."""
    token = _presented_token(request)
    root = backend.config.api.admin_token
    if root is not None and hmac.compare_digest(token.encode(), root.encode()):
        return Caller(TokenKind.ROOT)
    digest = hash_token(token)
    found = backend.state.tenancy.token_by_hash(digest)
    if found is None:
        # Made on another node a moment ago? A barrier brings this node up to date.
        await backend.barrier()
        found = backend.state.tenancy.token_by_hash(digest)
    if found is None:
        raise ApiError(403, "the token is not valid (revoked, or never issued)")
    if found.expired(time.time()):
        raise ApiError(403, f"the token expired at {_iso(found.expires_at)}; ask for a new "
                            "one (keyquorum token create)")
    return Caller(found.kind, found.scope, found.accessor)


def _iso(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


# Request bodies. extra="forbid" turns a misspelt field into a 422 that names it.


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


_role_fields: dict[str, Any] = {flag: (bool, False) for flag in sorted(ROLE_FLAGS)}
_role_fields["tls_client_key_type"] = (Literal["ec", "rsa"], "ec")
_role_fields["tls_client_key_bits"] = (int | None, None)
_role_fields["tls_client_ttl"] = (int | str, "8760h")
RoleBody = create_model(
    "RoleBody",
    __base__=_Body,
    __doc__="A role: one flag per KMIP operation, and its client certificates.",
    **_role_fields,
)


class GenerateBody(_Body):
    format: credentials.Format = "pem"
    common_name: str | None = Field(default=None, max_length=64)
    sans: list[str] = Field(default_factory=list, max_length=32)
    pkcs12_password: str | None = None


class SignBody(_Body):
    csr: str = Field(min_length=1, max_length=65536)
    format: Literal["pem", "pem_bundle", "der"] = "pem"
    common_name: str | None = Field(default=None, max_length=64)


class RevokeBody(_Body):
    serial_number: str = Field(min_length=1, max_length=64)


class ImportCaBody(_Body):
    name: str
    certificate: str = Field(min_length=1, max_length=65536)
    scope: str | None = None
    scope_field: SubjectField | None = None
    role: str | None = None
    role_field: SubjectField | None = None


class ClusterCaBody(_Body):
    # Either a CA to install (certificate and private_key), or a key type to draw one.
    certificate: str | None = Field(default=None, max_length=65536)
    private_key: str | None = Field(default=None, max_length=65536)
    key_type: Literal["ec", "rsa"] = "ec"
    key_bits: int | None = None


class ConfigBody(_Body):
    # host:port texts every node listens on, and per node id; empty: node.toml's.
    listen_addrs: list[str] = Field(default_factory=list, max_length=16)
    node_listen_addrs: dict[str, list[str]] = Field(default_factory=dict, max_length=64)
    server_hostnames: list[str] = Field(default_factory=list, max_length=64)
    server_ips: list[str] = Field(default_factory=list, max_length=64)
    tls_min_version: Literal["1.2", "1.3"] = "1.2"
    tls_cipher_suites: str | None = Field(default=None, max_length=4096)


class TokenBody(_Body):
    kind: Literal["root", "read-only", "scoped"]
    scope: str | None = None
    display_name: str = Field(default="", max_length=128)
    # How long the token works: seconds, or 90s, 30m, 1h, 7d; absent, until revoked.
    ttl: int | str | None = None


class TokenRevokeBody(_Body):
    accessor: str = Field(min_length=1, max_length=64)


def install_admin_api(app: FastAPI, backend: AdminBackend) -> None:
    """Add the admin routes, the OpenAPI description and readable errors to ``app``."""
    app.include_router(admin_router(backend))

    @app.get("/v1/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"errors": [error.message]}, status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"errors": readable_errors(error.errors())}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = str(error.detail)
        if error.status_code == 404:
            message = f"no such path {request.url.path}; see /v1/openapi.json"
        elif error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse({"errors": [message]}, status_code=error.status_code)


def readable_errors(errors: Any) -> list[str]:
    """pydantic's errors as one line each: where, and what is wrong."""
    lines = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        message = str(error.get("msg", "invalid"))
        if where == "" and error.get("type") in ("model_attributes_type", "dict_type"):
            message = "send a JSON object, with Content-Type: application/json"
        elif error.get("type") == "extra_forbidden":
            message = "unknown field; see /v1/openapi.json for the fields this path takes"
        elif error.get("type") == "missing":
            message = "required"
        lines.append(f"{where or 'body'}: {message}")
    return lines


def admin_router(backend: AdminBackend) -> APIRouter:
    router = APIRouter(prefix="/v1")
    tenancy = backend.state.tenancy

    async def caller(request: Request) -> Caller:
        return await authenticate(backend, request)

    Auth = Annotated[Caller, Depends(caller)]

    async def existing_role(scope: str, role: str) -> Role:
        _check_names(scope, role)
        await backend.barrier()
        found = tenancy.role(scope, role)
        if found is None:
            if tenancy.scope(scope) is None:
                raise ApiError(404, f"no scope named {scope}; create it first")
            raise ApiError(404, f"no role {role} in scope {scope}; write it first")
        return found

    async def ensure_ca() -> CertificateAuthority:
        """The cluster CA, drawn by this node on first use (EC P-256) if there is none."""
        current = tenancy.cluster_ca()
        if current is None:
            await backend.barrier()
            current = tenancy.cluster_ca()
        if current is None:
            made = await asyncio.to_thread(create_ca, CLUSTER_CA_NAME)
            # Two nodes may race here: the first commit wins and both use it.
            await backend.submit(InstallClusterCa(ClusterCa(
                made.cert_pem, seal_ca_key(backend.seal, made.key_pem), int(time.time()))))
            current = tenancy.cluster_ca()
        assert current is not None
        return CertificateAuthority(cert_pem=current.cert_pem,
                                    key_pem=open_ca_key(backend.seal, current.sealed_key))

    # Scopes.

    @router.get("/kmip/scope", tags=["scopes"])
    async def list_scopes(who: Auth) -> dict[str, Any]:
        """Scope names this token may see."""
        await backend.barrier()
        names = [scope.name for scope in tenancy.scopes()]
        if who.kind == TokenKind.SCOPED:
            names = [name for name in names if name == who.scope]
        return {"scopes": names}

    @router.post("/kmip/scope/{scope}", tags=["scopes"])
    async def create_scope(scope: str, who: Auth) -> dict[str, Any]:
        """Create a scope; the cluster CA is created with the first one."""
        who.may(write=True, scope=None)
        _check_names(scope)
        await ensure_ca()
        await backend.write(CreateScope(ScopeName(scope), int(time.time())))
        log.info("scope_created scope=%s by=%s", scope, who.accessor)
        return {"scope": scope}

    @router.get("/kmip/scope/{scope}", tags=["scopes"])
    async def read_scope(scope: str, who: Auth) -> dict[str, Any]:
        who.may(write=False, scope=scope)
        _check_names(scope)
        await backend.barrier()
        found = tenancy.scope(scope)
        if found is None:
            raise ApiError(404, f"no scope named {scope}")
        return {"scope": found.name, "created_at": found.created_at,
                "roles": [role.name for role in tenancy.roles(scope)],
                "objects": len(backend.state.keys.objects(found.name))}

    @router.delete("/kmip/scope/{scope}", tags=["scopes"])
    async def delete_scope(scope: str, who: Auth,
                           force: Annotated[bool, Query()] = False) -> dict[str, Any]:
        """Delete a scope with its roles and credentials; with force=true, its objects too."""
        who.may(write=True, scope=None)
        _check_names(scope)
        await backend.write(DeleteScope(ScopeName(scope), force))
        log.info("scope_deleted scope=%s force=%s by=%s", scope, force, who.accessor)
        return {"scope": scope, "deleted": True}

    # Roles.

    @router.get("/kmip/scope/{scope}/role", tags=["roles"])
    async def list_roles(scope: str, who: Auth) -> dict[str, Any]:
        who.may(write=False, scope=scope)
        _check_names(scope)
        await backend.barrier()
        if tenancy.scope(scope) is None:
            raise ApiError(404, f"no scope named {scope}")
        return {"roles": [role.name for role in tenancy.roles(scope)]}

    @router.post("/kmip/scope/{scope}/role/{role}", tags=["roles"])
    async def write_role(scope: str, role: str, body: RoleBody,  # type: ignore[valid-type]
                         who: Auth) -> dict[str, Any]:
        """Create or replace a role: set operation_* flags true to allow those operations."""
        who.may(write=True, scope=scope)
        _check_names(scope, role)
        settings = _role_settings(body)
        await backend.write(WriteRole(ScopeName(scope), RoleName(role), settings,
                                      int(time.time())))
        log.info("role_written scope=%s role=%s by=%s", scope, role, who.accessor)
        return _role_view(tenancy.role(scope, role))

    @router.get("/kmip/scope/{scope}/role/{role}", tags=["roles"])
    async def read_role(scope: str, role: str, who: Auth) -> dict[str, Any]:
        who.may(write=False, scope=scope)
        return _role_view(await existing_role(scope, role))

    @router.delete("/kmip/scope/{scope}/role/{role}", tags=["roles"])
    async def delete_role(scope: str, role: str, who: Auth) -> dict[str, Any]:
        """Delete a role; its credentials are refused from then on."""
        who.may(write=True, scope=scope)
        _check_names(scope, role)
        await backend.write(DeleteRole(ScopeName(scope), RoleName(role)))
        log.info("role_deleted scope=%s role=%s by=%s", scope, role, who.accessor)
        return {"scope": scope, "role": role, "deleted": True}

    # Credentials.

    @router.post("/kmip/scope/{scope}/role/{role}/credential/generate", tags=["credentials"])
    async def generate_credential(scope: str, role: str, body: GenerateBody,
                                  who: Auth) -> dict[str, Any]:
        """A new key and client certificate for the role; the key is kept nowhere."""
        who.may(write=True, scope=scope)
        found = await existing_role(scope, role)
        ca = await ensure_ca()
        sans = _checked_sans(body.sans)
        if body.format == "pkcs12" and body.pkcs12_password is not None and not (
                body.pkcs12_password):
            raise ApiError(400, "pkcs12_password is empty: give one, or leave it out")
        issued = await _issue(lambda: credentials.generate(ca, found, body.common_name, sans,
                                                           int(time.time())))
        await backend.write(IssueCredential(issued.record))
        log.info("credential_generated scope=%s role=%s serial=%x by=%s", scope, role,
                 issued.record.serial, who.accessor)
        return credentials.render(issued, ca.cert_pem, body.format, body.pkcs12_password)

    @router.post("/kmip/scope/{scope}/role/{role}/credential/sign", tags=["credentials"])
    async def sign_credential(scope: str, role: str, body: SignBody,
                              who: Auth) -> dict[str, Any]:
        """Sign a client's CSR (vCenter makes one) as a credential of the role."""
        who.may(write=True, scope=scope)
        found = await existing_role(scope, role)
        ca = await ensure_ca()
        issued = await _issue(lambda: credentials.sign_csr(ca, found, body.csr, body.common_name,
                                                           int(time.time())))
        await backend.write(IssueCredential(issued.record))
        log.info("credential_signed scope=%s role=%s serial=%x by=%s", scope, role,
                 issued.record.serial, who.accessor)
        return credentials.render(issued, ca.cert_pem, body.format)

    @router.get("/kmip/scope/{scope}/role/{role}/credential/lookup", tags=["credentials"])
    async def lookup_credential(scope: str, role: str, who: Auth,
                                serial_number: Annotated[str, Query()]) -> dict[str, Any]:
        who.may(write=False, scope=scope)
        await existing_role(scope, role)
        serial = _serial(serial_number)
        found = tenancy.credential(serial)
        if found is None or (found.scope, found.role) != (scope, role):
            raise ApiError(404, f"no credential with serial {serial_number} in role "
                                f"{scope}/{role}")
        return _credential_view(found)

    @router.get("/kmip/scope/{scope}/role/{role}/credential", tags=["credentials"])
    async def list_credentials(scope: str, role: str, who: Auth) -> dict[str, Any]:
        who.may(write=False, scope=scope)
        await existing_role(scope, role)
        listed = tenancy.credentials(scope, role)
        return {"serial_numbers": [credentials.serial_text(c.serial) for c in listed],
                "credentials": [_credential_view(c) for c in listed]}

    @router.post("/kmip/scope/{scope}/role/{role}/credential/revoke", tags=["credentials"])
    async def revoke_credential(scope: str, role: str, body: RevokeBody,
                                who: Auth) -> dict[str, Any]:
        """Revoke a credential: every node refuses it from its next handshake on."""
        who.may(write=True, scope=scope)
        _check_names(scope, role)
        serial = _serial(body.serial_number)
        await backend.write(RevokeCredential(ScopeName(scope), RoleName(role), serial,
                                             int(time.time())))
        log.info("credential_revoked scope=%s role=%s serial=%x by=%s", scope, role, serial,
                 who.accessor)
        return {"serial_number": credentials.serial_text(serial), "revoked": True}

    # CAs.

    @router.get("/kmip/ca", tags=["ca"])
    async def read_ca(who: Auth) -> dict[str, Any]:
        """The cluster CA certificate (clients trust it) and the imported CAs."""
        await backend.barrier()
        current = tenancy.cluster_ca()
        return {
            "certificate": current.cert_pem.decode() if current else None,
            "imported": [
                {"name": ca.name, "certificate": ca.cert_pem.decode(),
                 "scope": ca.rule.scope,
                 "scope_field": ca.rule.scope_field.value if ca.rule.scope_field else None,
                 "role": ca.rule.role,
                 "role_field": ca.rule.role_field.value if ca.rule.role_field else None}
                for ca in tenancy.imported_cas()
            ],
        }

    @router.post("/kmip/ca", tags=["ca"])
    async def import_ca(body: ImportCaBody, who: Auth) -> dict[str, Any]:
        """Trust an external CA; its certificates map to a scope and role by the rule."""
        who.may(write=True, scope=None)
        pem = _ca_certificate(body.certificate)
        rule = MappingRule(
            scope=ScopeName(body.scope) if body.scope else None, scope_field=body.scope_field,
            role=RoleName(body.role) if body.role else None, role_field=body.role_field)
        await backend.write(ImportCa(ImportedCa(body.name, pem, rule, int(time.time()))))
        log.info("ca_imported name=%s by=%s", body.name, who.accessor)
        return {"name": body.name, "imported": True}

    @router.delete("/kmip/ca/{name}", tags=["ca"])
    async def remove_ca(name: str, who: Auth) -> dict[str, Any]:
        who.may(write=True, scope=None)
        await backend.write(RemoveImportedCa(name))
        log.info("ca_removed name=%s by=%s", name, who.accessor)
        return {"name": name, "deleted": True}

    @router.post("/kmip/ca/cluster", tags=["ca"])
    async def install_cluster_ca(body: ClusterCaBody, who: Auth) -> dict[str, Any]:
        """Set the cluster CA once: install a given one, or draw one of key_type/key_bits."""
        who.may(write=True, scope=None)
        ca = await asyncio.to_thread(_cluster_ca_from, body)
        await backend.write(InstallClusterCa(ClusterCa(
            ca.cert_pem, seal_ca_key(backend.seal, ca.key_pem), int(time.time()))))
        log.info("cluster_ca_installed by=%s", who.accessor)
        return {"certificate": ca.cert_pem.decode()}

    # Listener settings.

    @router.get("/kmip/config", tags=["config"])
    async def read_config(who: Auth) -> dict[str, Any]:
        who.may(write=False, scope=None)
        await backend.barrier()
        settings = tenancy.listener()
        # Every setting applies on every node without a restart; where this node
        # listens is shown too (node.toml's address while no listen setting names it).
        node_id = str(backend.config.node.id)
        here = listen_addresses(settings, node_id)
        return {
            "listen_addrs": list(settings.listen_addrs),
            "node_listen_addrs": {node: list(texts) for node, texts in
                                  settings.node_listen_addrs},
            "node_id": node_id,
            "node_listens_on": ([f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in here]
                                if here else [str(backend.config.kmip.listen)]),
            "server_hostnames": list(settings.server_hostnames),
            "server_ips": list(settings.server_ips),
            "tls_min_version": settings.tls_min_version,
            "tls_cipher_suites": settings.tls_cipher_suites or backend.config.kmip.ciphers,
            # True while each node uses its configured cipher list.
            "tls_cipher_suites_default": settings.tls_cipher_suites is None,
        }

    @router.post("/kmip/config", tags=["config"])
    async def write_config(body: ConfigBody, who: Auth) -> dict[str, Any]:
        """Change the KMIP listener on every node, addresses included; no restart needed.

        The whole configuration is replaced: a field left out returns to its default.
        """
        who.may(write=True, scope=None)
        if body.tls_cipher_suites is not None:
            try:
                check_ciphers(body.tls_cipher_suites)
            except ValueError:
                raise ApiError(400, f"tls_cipher_suites: OpenSSL accepts no TLS 1.2 suite in "
                                    f"{body.tls_cipher_suites!r}; give an OpenSSL cipher list "
                                    "such as ECDHE-RSA-AES256-GCM-SHA384") from None
        for name in body.server_hostnames:
            if not _is_dns_name(name):
                raise ApiError(400, f"server_hostnames: {name!r} is not a DNS name")
        for address in body.server_ips:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ApiError(400, f"server_ips: {address!r} is not an IP address") from None
        settings = ListenerSettings(
            server_hostnames=tuple(body.server_hostnames), server_ips=tuple(body.server_ips),
            tls_min_version=body.tls_min_version, tls_cipher_suites=body.tls_cipher_suites,
            listen_addrs=tuple(body.listen_addrs),
            node_listen_addrs=tuple(sorted((node, tuple(texts))
                                           for node, texts in body.node_listen_addrs.items())))
        problem = check_listener(settings)
        if problem:
            raise ApiError(400, problem)
        await backend.write(SetListener(settings))
        log.info("listener_settings_changed by=%s", who.accessor)
        return await read_config(who)

    # Tokens.

    @router.post("/auth/token/create", tags=["tokens"])
    async def create_token(body: TokenBody, who: Auth) -> dict[str, Any]:
        """A new token; its value is shown once and only its hash is kept."""
        who.may(write=True, scope=None)
        kind = TokenKind(body.kind)
        if (kind == TokenKind.SCOPED) != (body.scope is not None):
            raise ApiError(400, "give scope for a scoped token, and only for one")
        if body.scope is not None:
            _check_names(body.scope)
        ttl = None if body.ttl is None else _duration(body.ttl, "ttl")
        if ttl is not None and not 0 < ttl <= MAX_TOKEN_TTL_SECONDS:
            raise ApiError(400, f"ttl must be from 1 second to {MAX_TOKEN_TTL_SECONDS} seconds "
                                "(3650d); leave it out for a token that lasts until revoked")
        token = "kq." + secrets.token_urlsafe(32)
        accessor = TokenAccessor(secrets.token_hex(12))
        now = int(time.time())
        record = AdminToken(accessor, hash_token(token), kind,
                            ScopeName(body.scope) if body.scope else None,
                            body.display_name, now, None if ttl is None else now + ttl)
        await backend.write(CreateToken(record))
        log.info("token_created accessor=%s kind=%s ttl=%s by=%s", accessor, kind.value, ttl,
                 who.accessor)
        return {"token": token, **_token_view(record)}

    @router.post("/auth/token/revoke", tags=["tokens"])
    async def revoke_token(body: TokenRevokeBody, who: Auth) -> dict[str, Any]:
        who.may(write=True, scope=None)
        await backend.write(RevokeToken(TokenAccessor(body.accessor)))
        log.info("token_revoked accessor=%s by=%s", body.accessor, who.accessor)
        return {"accessor": body.accessor, "revoked": True}

    @router.get("/auth/token", tags=["tokens"])
    async def list_tokens(who: Auth) -> dict[str, Any]:
        who.may(write=True, scope=None)
        await backend.barrier()
        return {"tokens": [_token_view(t) for t in tenancy.tokens()]}

    return router


# Helpers: checks that turn bad input into a 400 that says what to fix.


def _check_names(scope: str, role: str | None = None) -> None:
    problem = check_name("scope", scope) or (check_name("role", role) if role else None)
    if problem:
        raise ApiError(400, problem)


def _role_settings(body: BaseModel) -> RoleSettings:
    values = body.model_dump()
    flags = role_flags(flag for flag in ROLE_FLAGS if values[flag])
    if not values[NO_OPERATIONS] and not flags:
        raise ApiError(400, "the role allows no operation: set operation_all, some "
                            "operation_<name> flags, or operation_none explicitly")
    key_type = values["tls_client_key_type"]
    bits = values["tls_client_key_bits"] or KEY_BITS[key_type][0]
    settings = RoleSettings(flags, key_type, bits, _duration(values["tls_client_ttl"]))
    problem = check_role_settings(settings)
    if problem:
        raise ApiError(400, problem)
    return settings


def _token_view(token: AdminToken) -> dict[str, Any]:
    return {"accessor": token.accessor, "kind": token.kind.value, "scope": token.scope,
            "display_name": token.display_name, "created_at": token.created_at,
            "expires_at": token.expires_at, "expired": token.expired(time.time())}


def _duration(value: int | str, field: str = "tls_client_ttl") -> int:
    if isinstance(value, int):
        return value
    match = _DURATION.fullmatch(value.strip())
    if not match:
        raise ApiError(400, f"{field} {value!r} is not a duration: give seconds, or a "
                            "number with s, m, h or d (8760h, 30d)")
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


def _role_view(role: Role | None) -> dict[str, Any]:
    if role is None:
        raise ApiError(404, "the role is gone")
    settings = role.settings
    view: dict[str, Any] = {"scope": role.scope, "role": role.name,
                            "operations": sorted(settings.flags) or [NO_OPERATIONS]}
    view.update({
        "tls_client_key_type": settings.tls_client_key_type,
        "tls_client_key_bits": settings.tls_client_key_bits,
        "tls_client_ttl": settings.tls_client_ttl_seconds,
        "created_at": role.created_at,
    })
    return view


def _credential_view(credential: credentials.Credential) -> dict[str, Any]:
    return {
        "serial_number": credentials.serial_text(credential.serial),
        "scope": credential.scope,
        "role": credential.role,
        "common_name": credential.common_name,
        "fingerprint_sha256": credential.fingerprint_sha256,
        "issued_at": credential.issued_at,
        "not_after": credential.not_after,
        "origin": credential.origin,
        "revoked": credential.revoked_at is not None,
        "revoked_at": credential.revoked_at,
    }


def _serial(text: str) -> int:
    try:
        return credentials.parse_serial(text)
    except ValueError as error:
        raise ApiError(400, f"{error}: give it in hex, as credential list shows it") from None


def _checked_sans(sans: list[str]) -> list[str]:
    for san in sans:
        try:
            ipaddress.ip_address(san)
        except ValueError:
            if not _is_dns_name(san):
                raise ApiError(400, f"sans: {san!r} is neither a DNS name nor an IP "
                                    "address") from None
    return sans


def _is_dns_name(name: str) -> bool:
    label = re.compile(r"(\*|[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)")
    return 0 < len(name) <= 253 and all(label.fullmatch(part) for part in name.split("."))


async def _issue(make: Any) -> credentials.Issued:
    try:
        issued: credentials.Issued = await asyncio.to_thread(make)
    except credentials.CredentialError as error:
        raise ApiError(400, str(error)) from None
    return issued


def _ca_certificate(pem: str) -> bytes:
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise ApiError(400, "certificate is not a PEM certificate "
                            "(-----BEGIN CERTIFICATE-----)") from None
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        is_ca = constraints.value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ApiError(400, "certificate is not a CA certificate (its basic constraints do "
                            "not say CA:TRUE); import the CA that signs your clients")
    return certificate.public_bytes(serialization.Encoding.PEM)


# Binds the CA key's ciphertext to its purpose, so it cannot be passed off as a key.
CA_KEY_CONTEXT = b"keyquorum/cluster-ca-key"


def seal_ca_key(seal: Seal, key_pem: bytes) -> bytes:
    """The cluster CA's private key as barrier ciphertext, the only form it is stored in."""
    try:
        return seal.encrypt(key_pem, CA_KEY_CONTEXT)
    except SealedError:
        raise ApiError(503, "this node is sealed; unseal it, or use another node") from None


def open_ca_key(seal: Seal, sealed_key: bytes) -> bytes:
    try:
        return seal.decrypt(sealed_key, CA_KEY_CONTEXT)
    except SealedError:
        raise ApiError(503, "this node is sealed; unseal it, or use another node") from None


def _cluster_ca_from(body: ClusterCaBody) -> CertificateAuthority:
    if body.certificate is None and body.private_key is None:
        try:
            key_type = credentials.ca_key_type(body.key_type,
                                               body.key_bits or KEY_BITS[body.key_type][0])
        except ValueError as error:
            raise ApiError(400, f"key_bits: {error}") from None
        return create_ca(CLUSTER_CA_NAME, key_type)
    if body.certificate is None or body.private_key is None:
        raise ApiError(400, "give both certificate and private_key, or neither to have "
                            "the cluster draw its CA")
    ca = CertificateAuthority(cert_pem=_ca_certificate(body.certificate),
                              key_pem=body.private_key.encode())
    try:
        matches = ca.certificate.public_key() == ca.private_key.public_key()
    except (ValueError, TypeError):
        raise ApiError(400, "private_key is not an unencrypted PEM RSA or EC key") from None
    if not matches:
        raise ApiError(400, "private_key is not the key of certificate")
    return ca

