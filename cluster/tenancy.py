"""Multi-tenancy, replicated: scopes, roles, credentials, the cluster CA, admin tokens.

Theory of operation
-------------------
Operators run one cluster for many tenants. A *scope* partitions managed objects (the
key store is keyed by scope); a *role* inside a scope says which KMIP operations its
clients may run and what certificates it issues; a *credential* is a client
certificate the cluster CA signed for one role, known by its serial. Certificates of
an *imported CA* map to a scope and role by a rule instead. *Admin tokens* guard the
admin API; only a hash of each is kept.

All of it lives in this state machine and reaches every node through the Raft log,
so every node answers a handshake from its own copy: a revoked serial is refused
everywhere as soon as each node applied the revocation, a few milliseconds after it
committed. The rules are the key store's (cluster/state.py):

- a command carries every value drawn at random or from the clock, drawn by the
  node that received the request (serials, keys, token hashes, times);
- ``apply`` checks the command against the state before it changes anything, and
  never raises: a refusal comes back as ``Refused`` with what to fix;
- the stored records are frozen dataclasses, replaced whole, so a reader on another
  thread sees a record old or new, never half of one.

The cluster CA's private key sits in this state, in the Raft journal and in every
snapshot, unencrypted: every node must be able to sign credentials. Encryption at
rest (the seal, an open issue) is what will wrap it; until then protect the data
folders as you would the key itself.

Class and field names are pickled into the journal: add fields with defaults, never
rename.
"""

from __future__ import annotations

import enum
import pickle
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, NewType

from keyquorum.kmip.authorization import ALL_OPERATIONS, NO_OPERATIONS, operation_flags
from keyquorum.kmip.operations import HANDLERS
from keyquorum.kmip.tables import Operation

from .pki import KeyType
from .state import ScopeName

RoleName = NewType("RoleName", str)
TokenAccessor = NewType("TokenAccessor", str)

# Scope, role and imported-CA names travel in URL paths and certificate subjects:
# keep them to characters that need no escaping anywhere.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"

# One flag per operation the server implements, and the two that stand for sets.
OPERATION_FLAGS: dict[str, Operation] = operation_flags(HANDLERS)
ROLE_FLAGS = frozenset(OPERATION_FLAGS) | {ALL_OPERATIONS, NO_OPERATIONS}

# A year: vCenter and storage arrays are enrolled by hand, and re-enrolling them
# more often than yearly is what operators avoid by not rotating at all.
DEFAULT_CLIENT_TTL_SECONDS = 365 * 24 * 3600
# Ten years, the CA's own lifetime: a credential cannot outlive what signed it.
MAX_CLIENT_TTL_SECONDS = 3650 * 24 * 3600
# A minute: shorter certificates expire while a client is still being set up.
MIN_CLIENT_TTL_SECONDS = 60

# The key types and sizes a role may issue (the cluster CA's, too), as in Vault's
# tls_client_key_type and tls_client_key_bits.
KEY_BITS = {"ec": (256, 384, 521), "rsa": (2048, 3072, 4096)}

TLS_VERSIONS = ("1.2", "1.3")


class Problem(enum.Enum):
    """Why a command was refused; the admin API answers 404, 409 or 400."""

    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    INVALID = "invalid"


class TokenKind(enum.Enum):
    ROOT = "root"
    READ_ONLY = "read-only"
    # Everything inside one scope, nothing outside it.
    SCOPED = "scoped"


class SubjectField(enum.Enum):
    """Subject fields an imported CA's certificates may name their scope or role in."""

    CN = "CN"
    O = "O"  # noqa: E741 - the X.500 name of the field
    OU = "OU"
    UID = "UID"


# Records.


@dataclass(frozen=True)
class Scope:
    name: ScopeName
    created_at: int


@dataclass(frozen=True)
class RoleSettings:
    """What a role allows and the client certificates it issues."""

    flags: frozenset[str]
    tls_client_key_type: str = "ec"
    tls_client_key_bits: int = 256
    tls_client_ttl_seconds: int = DEFAULT_CLIENT_TTL_SECONDS

    @property
    def key_type(self) -> KeyType:
        return KeyType(f"{self.tls_client_key_type}-{'p' if self.is_ec else ''}"
                       f"{self.tls_client_key_bits}")

    @property
    def is_ec(self) -> bool:
        return self.tls_client_key_type == "ec"


@dataclass(frozen=True)
class Role:
    scope: ScopeName
    name: RoleName
    settings: RoleSettings
    created_at: int


@dataclass(frozen=True)
class Credential:
    """A client certificate the cluster CA signed for a role."""

    serial: int
    scope: ScopeName
    role: RoleName
    common_name: str
    fingerprint_sha256: str
    issued_at: int
    not_after: int
    # "generated" (the node drew the key) or "signed" (from the client's CSR).
    origin: str
    revoked_at: int | None = None


@dataclass(frozen=True)
class ClusterCa:
    """The CA that signs credentials and node certificates.

    Its private key is kept only as barrier ciphertext (``seal_ca_key`` in
    cluster/admin_api.py), so the journal, dumps and snapshots never hold it in the
    clear and a sealed node cannot sign.
    """

    cert_pem: bytes
    sealed_key: bytes = field(repr=False)
    installed_at: int = 0


@dataclass(frozen=True)
class MappingRule:
    """How an imported CA's certificate names its scope and role: fixed or a subject field."""

    scope: ScopeName | None = None
    scope_field: SubjectField | None = None
    role: RoleName | None = None
    role_field: SubjectField | None = None


@dataclass(frozen=True)
class ImportedCa:
    name: str
    cert_pem: bytes
    rule: MappingRule
    imported_at: int


@dataclass(frozen=True)
class AdminToken:
    """An admin API token; the token itself is never stored, only its SHA-256."""

    accessor: TokenAccessor
    token_hash: str = field(repr=False)
    kind: TokenKind = TokenKind.READ_ONLY
    scope: ScopeName | None = None
    display_name: str = ""
    created_at: int = 0
    # Unix time from which the token is refused; None: it lasts until revoked. Checked
    # by each node against its own clock when the token is presented (never in apply).
    expires_at: int | None = None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass(frozen=True)
class ListenerSettings:
    """The KMIP listener settings every node applies without a restart."""

    # Extra names and addresses for the SAN of each node's server certificate, for
    # clients that dial a load balancer or a DNS alias.
    server_hostnames: tuple[str, ...] = ()
    server_ips: tuple[str, ...] = ()
    tls_min_version: str = "1.2"
    # An OpenSSL cipher list for TLS 1.2; None keeps the node's configured list.
    tls_cipher_suites: str | None = None
    # Where the nodes listen for KMIP, as "host:port" texts: every node binds
    # listen_addrs, except a node named in node_listen_addrs, which binds its own
    # entry there (nodes on different hosts rarely share an IP address). Empty: each
    # node keeps its node.toml kmip.listen. A change moves the listener at once
    # (cluster/listener_addresses.py); a node that cannot bind the new ones keeps the old.
    listen_addrs: tuple[str, ...] = ()
    node_listen_addrs: tuple[tuple[str, tuple[str, ...]], ...] = ()


# Commands. Every value drawn at random or from the clock is in the command.


@dataclass(frozen=True)
class CreateScope:
    scope: ScopeName
    now: int


@dataclass(frozen=True)
class DeleteScope:
    """Delete a scope, its roles and credentials; with force, its objects too."""

    scope: ScopeName
    force: bool


@dataclass(frozen=True)
class WriteRole:
    """Create a role, or replace its settings (its credentials stay valid)."""

    scope: ScopeName
    role: RoleName
    settings: RoleSettings
    now: int


@dataclass(frozen=True)
class DeleteRole:
    """Delete a role; its credentials go with it and are refused from then on."""

    scope: ScopeName
    role: RoleName


@dataclass(frozen=True)
class InstallClusterCa:
    """Set the cluster CA; only while there is none (rotation is not supported yet)."""

    ca: ClusterCa


@dataclass(frozen=True)
class IssueCredential:
    credential: Credential


@dataclass(frozen=True)
class RevokeCredential:
    scope: ScopeName
    role: RoleName
    serial: int
    now: int


@dataclass(frozen=True)
class ImportCa:
    ca: ImportedCa


@dataclass(frozen=True)
class RemoveImportedCa:
    name: str


@dataclass(frozen=True)
class CreateToken:
    token: AdminToken


@dataclass(frozen=True)
class RevokeToken:
    accessor: TokenAccessor


@dataclass(frozen=True)
class SetListener:
    settings: ListenerSettings


TenancyCommand = (
    CreateScope
    | DeleteScope
    | WriteRole
    | DeleteRole
    | InstallClusterCa
    | IssueCredential
    | RevokeCredential
    | ImportCa
    | RemoveImportedCa
    | CreateToken
    | RevokeToken
    | SetListener
)
TENANCY_COMMANDS = TenancyCommand.__args__


@dataclass(frozen=True)
class Done:
    value: object = None


@dataclass(frozen=True)
class Refused:
    """A command the state refused; the message says what to fix."""

    problem: Problem
    message: str


TenancyOutcome = Done | Refused


# Checks shared by apply and the admin API, so bad input is refused before it is
# submitted and a command from elsewhere is refused the same way.


def check_name(kind: str, name: str) -> str | None:
    """What is wrong with a scope, role or CA name, or None."""
    if not NAME_PATTERN.fullmatch(name):
        return f"{kind} name {name!r} is not allowed: use {NAME_RULE}"
    return None


def check_role_settings(settings: RoleSettings) -> str | None:
    """What is wrong with a role's settings, or None."""
    unknown = sorted(settings.flags - ROLE_FLAGS)
    if unknown:
        return (f"unknown operation flag(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(ROLE_FLAGS))}")
    if NO_OPERATIONS in settings.flags and len(settings.flags) > 1:
        return f"{NO_OPERATIONS} cannot be combined with other operation flags"
    bits = KEY_BITS.get(settings.tls_client_key_type)
    if bits is None:
        return f"tls_client_key_type must be one of {', '.join(KEY_BITS)}"
    if settings.tls_client_key_bits not in bits:
        return (f"tls_client_key_bits for {settings.tls_client_key_type} must be one of "
                f"{', '.join(str(b) for b in bits)}")
    ttl = settings.tls_client_ttl_seconds
    if not MIN_CLIENT_TTL_SECONDS <= ttl <= MAX_CLIENT_TTL_SECONDS:
        return (f"tls_client_ttl must be between {MIN_CLIENT_TTL_SECONDS} and "
                f"{MAX_CLIENT_TTL_SECONDS} seconds")
    return None


def check_rule(rule: MappingRule) -> str | None:
    """What is wrong with an imported CA's mapping rule, or None."""
    for what, fixed, taken in (("scope", rule.scope, rule.scope_field),
                               ("role", rule.role, rule.role_field)):
        if (fixed is None) == (taken is None):
            return f"give either {what} or {what}_field for the mapping, exactly one of them"
        if fixed is not None:
            problem = check_name(what, fixed)
            if problem:
                return problem
    return None


def check_listener(settings: ListenerSettings) -> str | None:
    if settings.tls_min_version not in TLS_VERSIONS:
        return f"tls_min_version must be one of {', '.join(TLS_VERSIONS)}"
    groups = [("listen_addrs", settings.listen_addrs)] + [
        (f"node_listen_addrs.{node}", texts) for node, texts in settings.node_listen_addrs]
    for node, _ in settings.node_listen_addrs:
        problem = check_name("node", node)
        if problem:
            return f"node_listen_addrs: {problem}"
    for where, texts in groups:
        if where != "listen_addrs" and not texts:
            return f"{where}: give at least one host:port, or leave the node out"
        for text in texts:
            try:
                parse_listen_addr(text)
            except ValueError as error:
                return f"{where}: {error}"
    return None


def parse_listen_addr(text: str) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port"; ValueError saying what is wrong."""
    host, colon, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r} is not host:port with a port from 1 to 65535 "
                         "(such as 0.0.0.0:5696, or [::]:5696 for IPv6)")
    if any(c.isspace() for c in host) or (":" in host and not text.startswith("[")):
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, as [::1]:5696")
    return host, int(port_text)


def listen_addresses(settings: ListenerSettings, node_id: str) -> list[tuple[str, int]] | None:
    """Where ``node_id`` is to listen by the replicated settings; None: its node.toml."""
    own = dict(settings.node_listen_addrs).get(node_id)
    texts = own or settings.listen_addrs
    if not texts:
        return None
    return [parse_listen_addr(text) for text in texts]


class TenancyState:
    """The tenancy tables; apply runs on the Raft thread, reads on any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scopes: dict[ScopeName, Scope] = {}
        self._roles: dict[tuple[ScopeName, RoleName], Role] = {}
        self._credentials: dict[int, Credential] = {}
        self._cluster_ca: ClusterCa | None = None
        self._imported: dict[str, ImportedCa] = {}
        self._tokens: dict[TokenAccessor, AdminToken] = {}
        self._listener = ListenerSettings()
        # Not replicated: counts changes to what a node's TLS context is built from
        # (the CA, imported CAs, listener settings), so the node knows to rebuild it.
        self.tls_generation = 0

    # Reads.

    def scopes(self) -> list[Scope]:
        with self._lock:
            return sorted(self._scopes.values(), key=lambda scope: scope.name)

    def scope(self, name: str) -> Scope | None:
        with self._lock:
            return self._scopes.get(ScopeName(name))

    def roles(self, scope: str) -> list[Role]:
        with self._lock:
            return sorted((role for (owner, _), role in self._roles.items() if owner == scope),
                          key=lambda role: role.name)

    def role(self, scope: str, name: str) -> Role | None:
        with self._lock:
            return self._roles.get((ScopeName(scope), RoleName(name)))

    def credential(self, serial: int) -> Credential | None:
        with self._lock:
            return self._credentials.get(serial)

    def credentials(self, scope: str, role: str) -> list[Credential]:
        with self._lock:
            return sorted((c for c in self._credentials.values()
                           if c.scope == scope and c.role == role),
                          key=lambda credential: credential.issued_at)

    def is_revoked(self, serial: int) -> bool:
        with self._lock:
            credential = self._credentials.get(serial)
            return credential is not None and credential.revoked_at is not None

    def cluster_ca(self) -> ClusterCa | None:
        with self._lock:
            return self._cluster_ca

    def imported_cas(self) -> list[ImportedCa]:
        with self._lock:
            return sorted(self._imported.values(), key=lambda ca: ca.name)

    def token_by_hash(self, token_hash: str) -> AdminToken | None:
        with self._lock:
            for token in self._tokens.values():
                if token.token_hash == token_hash:
                    return token
            return None

    def tokens(self) -> list[AdminToken]:
        with self._lock:
            return sorted(self._tokens.values(), key=lambda token: token.created_at)

    def listener(self) -> ListenerSettings:
        with self._lock:
            return self._listener

    # The state machine contract.

    def apply(self, command: object) -> TenancyOutcome:
        with self._lock:
            handler = _APPLIERS.get(type(command))
            if handler is None:
                return Refused(Problem.INVALID, f"unknown command {type(command).__name__}")
            return handler(self, command)

    def snapshot(self) -> bytes:
        with self._lock:
            tables = {
                "scopes": self._scopes,
                "roles": self._roles,
                "credentials": self._credentials,
                "cluster_ca": self._cluster_ca,
                "imported": self._imported,
                "tokens": self._tokens,
                "listener": self._listener,
            }
            return pickle.dumps(tables, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, data: bytes) -> None:
        tables = pickle.loads(data)
        with self._lock:
            self._scopes = tables["scopes"]
            self._roles = tables["roles"]
            self._credentials = tables["credentials"]
            self._cluster_ca = tables["cluster_ca"]
            self._imported = tables["imported"]
            self._tokens = tables["tokens"]
            self._listener = tables["listener"]
            self.tls_generation += 1

    # One method per command; each checks everything before it changes anything.

    def _create_scope(self, command: CreateScope) -> TenancyOutcome:
        problem = check_name("scope", command.scope)
        if problem:
            return Refused(Problem.INVALID, problem)
        if command.scope in self._scopes:
            return Refused(Problem.CONFLICT, f"scope {command.scope} already exists")
        self._scopes[command.scope] = Scope(command.scope, command.now)
        return Done()

    def _delete_scope(self, command: DeleteScope) -> TenancyOutcome:
        # The key store's objects were checked and dropped by the caller
        # (cluster/cluster_state.py), which sees both tables.
        if command.scope not in self._scopes:
            return _no_scope(command.scope)
        del self._scopes[command.scope]
        self._roles = {key: role for key, role in self._roles.items()
                       if key[0] != command.scope}
        self._credentials = {serial: c for serial, c in self._credentials.items()
                             if c.scope != command.scope}
        self._tokens = {accessor: t for accessor, t in self._tokens.items()
                        if t.scope != command.scope}
        return Done()

    def _write_role(self, command: WriteRole) -> TenancyOutcome:
        problem = check_name("role", command.role) or check_role_settings(command.settings)
        if problem:
            return Refused(Problem.INVALID, problem)
        if command.scope not in self._scopes:
            return _no_scope(command.scope)
        key = (command.scope, command.role)
        existing = self._roles.get(key)
        created_at = existing.created_at if existing else command.now
        self._roles[key] = Role(command.scope, command.role, command.settings, created_at)
        return Done()

    def _delete_role(self, command: DeleteRole) -> TenancyOutcome:
        key = (command.scope, command.role)
        if key not in self._roles:
            return _no_role(command.scope, command.role)
        del self._roles[key]
        self._credentials = {serial: c for serial, c in self._credentials.items()
                             if (c.scope, c.role) != key}
        return Done()

    def _install_cluster_ca(self, command: InstallClusterCa) -> TenancyOutcome:
        # Two nodes may race to create the CA on first use: the first one wins and
        # the loser reads the winner's.
        if self._cluster_ca is not None:
            return Refused(Problem.CONFLICT, "the cluster CA is already set")
        self._cluster_ca = command.ca
        self.tls_generation += 1
        return Done()

    def _issue_credential(self, command: IssueCredential) -> TenancyOutcome:
        credential = command.credential
        if (credential.scope, credential.role) not in self._roles:
            return _no_role(credential.scope, credential.role)
        if credential.serial in self._credentials:
            return Refused(Problem.CONFLICT, f"serial {credential.serial:x} is already issued")
        self._credentials[credential.serial] = credential
        return Done(credential.serial)

    def _revoke_credential(self, command: RevokeCredential) -> TenancyOutcome:
        credential = self._credentials.get(command.serial)
        if credential is None or (credential.scope, credential.role) != (command.scope,
                                                                         command.role):
            return Refused(Problem.NOT_FOUND, f"no credential with serial {command.serial:x} "
                                              f"in role {command.scope}/{command.role}")
        if credential.revoked_at is None:
            self._credentials[command.serial] = replace(credential, revoked_at=command.now)
        return Done()

    def _import_ca(self, command: ImportCa) -> TenancyOutcome:
        problem = check_name("CA", command.ca.name) or check_rule(command.ca.rule)
        if problem:
            return Refused(Problem.INVALID, problem)
        if command.ca.name in self._imported:
            return Refused(Problem.CONFLICT, f"an imported CA named {command.ca.name} exists; "
                                             "delete it first to replace it")
        self._imported[command.ca.name] = command.ca
        self.tls_generation += 1
        return Done()

    def _remove_imported_ca(self, command: RemoveImportedCa) -> TenancyOutcome:
        if command.name not in self._imported:
            return Refused(Problem.NOT_FOUND, f"no imported CA named {command.name}")
        del self._imported[command.name]
        self.tls_generation += 1
        return Done()

    def _create_token(self, command: CreateToken) -> TenancyOutcome:
        token = command.token
        if token.kind == TokenKind.SCOPED and token.scope not in self._scopes:
            return _no_scope(token.scope or "")
        if token.kind != TokenKind.SCOPED and token.scope is not None:
            return Refused(Problem.INVALID, "only a scoped token names a scope")
        if token.accessor in self._tokens:
            return Refused(Problem.CONFLICT, "token accessor already in use")
        self._tokens[token.accessor] = token
        return Done(token.accessor)

    def _revoke_token(self, command: RevokeToken) -> TenancyOutcome:
        if command.accessor not in self._tokens:
            return Refused(Problem.NOT_FOUND, f"no token with accessor {command.accessor}")
        del self._tokens[command.accessor]
        return Done()

    def _set_listener(self, command: SetListener) -> TenancyOutcome:
        problem = check_listener(command.settings)
        if problem:
            return Refused(Problem.INVALID, problem)
        self._listener = command.settings
        self.tls_generation += 1
        return Done()


def _no_scope(scope: str) -> Refused:
    return Refused(Problem.NOT_FOUND, f"no scope named {scope}; create it first")


def _no_role(scope: str, role: str) -> Refused:
    return Refused(Problem.NOT_FOUND, f"no role {role} in scope {scope}; write the role first")


_APPLIERS: dict[type, Callable[[TenancyState, Any], TenancyOutcome]] = {
    CreateScope: TenancyState._create_scope,
    DeleteScope: TenancyState._delete_scope,
    WriteRole: TenancyState._write_role,
    DeleteRole: TenancyState._delete_role,
    InstallClusterCa: TenancyState._install_cluster_ca,
    IssueCredential: TenancyState._issue_credential,
    RevokeCredential: TenancyState._revoke_credential,
    ImportCa: TenancyState._import_ca,
    RemoveImportedCa: TenancyState._remove_imported_ca,
    CreateToken: TenancyState._create_token,
    RevokeToken: TenancyState._revoke_token,
    SetListener: TenancyState._set_listener,
}


def role_flags(names: Iterable[str]) -> frozenset[str]:
    """Flags as a role stores them: operation_none stands for the empty set."""
    flags = frozenset(names)
    return frozenset() if flags == {NO_OPERATIONS} else flags
