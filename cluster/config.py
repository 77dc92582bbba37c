"""A node's configuration: one TOML file read into frozen dataclasses.

Every option is described beside its field below and in docs/configuration.md. The
loader refuses unknown options (a typo must not silently fall back to a default) and
every error names the option, says what is wrong and what is allowed, e.g.
``raft.password: required (the cluster secret that authenticates Raft traffic)``.
Relative paths are relative to the folder of the config file.

Listen defaults differ on purpose. KMIP listens on every interface: its clients
(vCenter, storage arrays) live on other hosts, and nothing is parsed before a client
completes mutual TLS with a certificate from the cluster CA. Raft never defaults to a
wildcard: pysyncobj unpickles what peers send, and the address it binds is also the
address peers dial, so it must be one concrete address. The admin API defaults to
loopback: the local Consul agent and operators on the host reach it there, and
exposing it further is a decision to take deliberately.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NewType, TypeVar

from keyquorum.cluster.tls import DEFAULT_CIPHERS, check_ciphers, server_context
from keyquorum.kmip.frontend import IDLE_TIMEOUT, KMIP_PORT, MAX_CONNECTIONS
from keyquorum.kmip.limits import MAX_MESSAGE_SIZE

NodeId = NewType("NodeId", str)
# "host:port" exactly as the peers dial it; pysyncobj names nodes by this string.
NodeAddress = NewType("NodeAddress", str)

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")

DEFAULT_KMIP_LISTEN = f"0.0.0.0:{KMIP_PORT}"
DEFAULT_RAFT_LISTEN = "127.0.0.1:7000"
DEFAULT_API_LISTEN = "127.0.0.1:8696"
DEFAULT_REPLICATION_LISTEN = "0.0.0.0:8697"

# The front end's limits, each justified where it is defined.
DEFAULT_IDLE_TIMEOUT_SECONDS = IDLE_TIMEOUT
DEFAULT_MAX_CONNECTIONS = MAX_CONNECTIONS

# The secret is the only thing between the network and pysyncobj's unpickler.
MIN_PASSWORD_LENGTH = 16

DEFAULT_CONSUL_ADDRESS = "127.0.0.1:8500"
DEFAULT_CONSUL_SERVICE = "keyquorum"
# Tags and meta keys the node writes itself (cluster/consul.py), so config may not.
CONSUL_STATE_TAGS = ("active", "standby", "primary", "perf-secondary", "dr-secondary")
CONSUL_NODE_META_KEYS = ("cluster_id", "node_id", "version", "api_address")
# Consul refuses more meta pairs, longer values, and other key characters.
CONSUL_MAX_META_PAIRS = 64
CONSUL_MAX_META_VALUE = 512
_META_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")
# RFC 1123 labels: what Consul's DNS interface can answer for.
_DNS_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")

_NODE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_WILDCARD_HOSTS = ("0.0.0.0", "::")


class ConfigError(ValueError):
    """A config problem, naming the option (``section.key``) and what is allowed."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}" if option else problem)
        self.option = option
        self.problem = problem


@dataclass(frozen=True)
class ListenAddress:
    """An address to bind; the host may be a wildcard."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class NodeSettings:
    """[node]: who this node is and where it keeps its state."""

    # Required. A name unique in the cluster, used in logs, the API and Consul:
    # letters, digits, ".", "_", "-", at most 64 characters.
    id: NodeId
    # Required. The folder for the Raft journal, dumps and every other file the
    # node writes; created on start if missing.
    data_dir: Path
    # How much the node logs: debug, info, warning or error.
    log_level: str = "info"
    # "text" (key=value after a timestamp) or "json" (one object a line).
    log_format: str = "text"


@dataclass(frozen=True)
class KmipSettings:
    """[kmip]: the KMIP listener (mutual TLS, certificates from the [tls] section)."""

    # host:port to bind; "0.0.0.0:5696" (all interfaces, the KMIP port) by default.
    listen: ListenAddress
    # Close a connection that sent nothing for this long (seconds, 1 to 86400).
    idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_SECONDS
    # Refuse connections beyond this many at once (1 to 100000).
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    # Refuse a request whose TTLV header announces more bytes (4096 to 64 MiB).
    max_message_size: int = MAX_MESSAGE_SIZE
    # OpenSSL cipher list for TLS 1.2; see keyquorum.cluster.tls.DEFAULT_CIPHERS.
    ciphers: str = DEFAULT_CIPHERS
    # host:port of KMIP over HTTPS (POST /kmip, kmip/https.py), with the same TLS and
    # client certificates; absent (the default) serves no HTTPS. Port 0: one the OS picks.
    https_listen: ListenAddress | None = None


@dataclass(frozen=True)
class TlsSettings:
    """[tls]: the node's certificate and the cluster CA. All three are required."""

    # The cluster CA certificate (PEM); clients must present certificates it issued.
    ca_file: Path
    # The node certificate (PEM), with an RSA key if vCenter is to connect: its
    # static-RSA suite needs one.
    cert_file: Path
    # The node certificate's private key (PEM, unencrypted, mode 0600).
    key_file: Path


@dataclass(frozen=True)
class RaftSettings:
    """[raft]: the replicated log between the nodes."""

    # host:port to bind, which is also the address the peers list for this node;
    # never a wildcard. "127.0.0.1:7000" by default, which suits one host only.
    listen: NodeAddress
    # The other nodes' raft.listen addresses; empty for a single-node cluster.
    peers: tuple[NodeAddress, ...]
    # Required, from raft.password or raft.password_file (one of the two): the
    # cluster secret, the same on every node, at least 16 characters.
    password: str = field(repr=False)
    # Where the journal and dumps live; <node.data_dir>/raft by default.
    data_dir: Path
    # Seconds between pysyncobj ticks; each commit takes a few ticks.
    tick_seconds: float = 0.002
    # A follower that hears no leader for a random time in this range (seconds)
    # starts an election.
    election_timeout_min_seconds: float = 0.4
    election_timeout_max_seconds: float = 1.4
    # Compact the journal into a dump once it holds this many entries and at least
    # this many seconds passed since the last compaction.
    compaction_min_entries: int = 50_000
    compaction_min_seconds: float = 3600.0


@dataclass(frozen=True)
class ApiSettings:
    """[api]: the admin HTTPS API, with the health endpoint for load balancers."""

    # host:port to bind; "127.0.0.1:8696" by default.
    listen: ListenAddress
    # Certificate and key served over HTTPS; the [tls] ones by default.
    cert_file: Path
    key_file: Path
    # Read from api.admin_token_file; without it, admin endpoints refuse every call.
    admin_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ConsulSettings:
    """[consul]: registration in the local Consul agent; no section, no Consul."""

    # host:port of the agent's HTTP API; "127.0.0.1:8500" by default.
    address: str = DEFAULT_CONSUL_ADDRESS
    # "http" or "https" to reach the agent.
    scheme: str = "http"
    # An ACL token with service:write on the service, from token or token_file.
    token: str | None = field(default=None, repr=False)
    # With https: the CA that signed the agent's certificate, and a client
    # certificate and key for an agent that verifies incoming connections.
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    # The service name, a DNS label: <name>.service.consul finds the cluster.
    service: str = DEFAULT_CONSUL_SERVICE
    # The name of this cluster in each instance's meta, for discovery to tell
    # clusters apart; the service name by default.
    cluster_id: str = DEFAULT_CONSUL_SERVICE
    # Tags added to "active"/"standby", and meta added to the node's own.
    service_tags: tuple[str, ...] = ()
    service_meta: tuple[tuple[str, str], ...] = ()
    # The TTL of the sealed-status check and the interval of the health check.
    check_timeout_seconds: float = 5.0
    # The address registered for KMIP clients; the KMIP listen host by default, or
    # the agent's node address when KMIP listens on a wildcard.
    service_address: str | None = None
    # Keep the section (for discovery) but register nothing.
    disable_registration: bool = False


SEAL_TYPES = ("shamir", "pkcs11", "dev-file")
PKCS11_MECHANISMS = ("aes-gcm",)


@dataclass(frozen=True)
class SealSettings:
    """[seal]: where the root key comes from (cluster/seal.py); no section, Shamir shares."""

    # "shamir": operators unseal every node with shares after each start;
    # "pkcs11": the root key is sealed by an HSM key and the node unseals itself;
    # "dev-file": the root key is read from key_file; for `keyquorum dev` only.
    type: str = "shamir"
    # dev-file: the file holding the root key (64 hex digits, mode 0600).
    key_file: Path | None = None
    # pkcs11: the module to load, the token (by label), its user PIN (from pin or
    # pin_file), the label of the AES key that seals the root key, and the mechanism.
    library: Path | None = None
    token_label: str | None = None
    pin: str | None = field(default=None, repr=False)
    key_label: str | None = None
    mechanism: str = "aes-gcm"


@dataclass(frozen=True)
class ReplicationSettings:
    """[replication]: the gRPC port other clusters replicate through; no section, none."""

    # host:port to bind; "0.0.0.0:8697" by default: other datacenters dial it, and
    # nothing is served before mutual TLS with the replication CA. Port 0 picks a
    # free port (the dev cluster), which the node then announces.
    listen: ListenAddress
    # host:port other clusters dial to reach this node; listen by default, which
    # must then name a concrete host.
    advertise: str | None = None


@dataclass(frozen=True)
class NodeConfig:
    """A whole node configuration, as read from `source`."""

    source: Path
    node: NodeSettings
    kmip: KmipSettings
    tls: TlsSettings
    raft: RaftSettings
    api: ApiSettings
    consul: ConsulSettings | None = None
    replication: ReplicationSettings | None = None
    seal: SealSettings = SealSettings()


def load_config(path: Path) -> NodeConfig:
    """Read and check the TOML file at `path`; a ConfigError says what to fix."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError("", f"cannot read config file {path}: {error.strerror}") from error
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError("", f"{path} is not valid TOML: {error}") from error
    return parse_config(document, base_dir=path.resolve().parent, source=path)


def parse_config(document: dict[str, Any], *, base_dir: Path, source: Path) -> NodeConfig:
    """Check a decoded TOML document; relative paths are taken from `base_dir`."""
    root = _Table("", document, base_dir)
    names: tuple[str, ...] = ("node", "kmip", "tls", "raft", "api", "consul", "seal")
    names += ("replication",)
    sections = {name: root.table(name) for name in names}
    root.refuse_unknown()

    # Each section in turn; later ones default to values of earlier ones.
    node = _node_settings(sections["node"])
    kmip = _kmip_settings(sections["kmip"])
    tls = _tls_settings(sections["tls"], kmip.ciphers)
    raft = _raft_settings(sections["raft"], node)
    api = _api_settings(sections["api"], tls)
    consul = _consul_settings(sections["consul"]) if root.has("consul") else None
    seal = _seal_settings(sections["seal"])
    replication = (_replication_settings(sections["replication"])
                   if root.has("replication") else None)
    for section in sections.values():
        section.refuse_unknown()

    return NodeConfig(
        replication=replication,
        source=source, node=node, kmip=kmip, tls=tls, raft=raft, api=api, consul=consul,
        seal=seal,
    )


def _node_settings(table: _Table) -> NodeSettings:
    node_id = table.string("id")
    if not _NODE_ID_PATTERN.fullmatch(node_id):
        raise table.error(
            "id", f"{node_id!r} is not allowed: use letters, digits, '.', '_', '-' (1 to 64)"
        )
    log_level = table.string("log_level", "info")
    if log_level not in LOG_LEVELS:
        raise table.error("log_level", f"{log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    log_format = table.string("log_format", "text")
    if log_format not in LOG_FORMATS:
        raise table.error("log_format", f"{log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    return NodeSettings(id=NodeId(node_id), data_dir=table.path("data_dir"), log_level=log_level,
                        log_format=log_format)


def _kmip_settings(table: _Table) -> KmipSettings:
    ciphers = table.string("ciphers", DEFAULT_CIPHERS)
    try:
        check_ciphers(ciphers)
    except ValueError as error:
        raise table.error("ciphers", f"{error}; see the OpenSSL ciphers manual") from error
    return KmipSettings(
        listen=table.listen_address("listen", DEFAULT_KMIP_LISTEN),
        idle_timeout_seconds=table.number(
            "idle_timeout_seconds", DEFAULT_IDLE_TIMEOUT_SECONDS, minimum=1, maximum=86_400
        ),
        max_connections=table.integer(
            "max_connections", DEFAULT_MAX_CONNECTIONS, minimum=1, maximum=100_000
        ),
        max_message_size=table.integer(
            "max_message_size", MAX_MESSAGE_SIZE, minimum=4096, maximum=64 * 1024 * 1024
        ),
        ciphers=ciphers,
        https_listen=(table.listen_address("https_listen", "")
                      if table.has("https_listen") else None),
    )


def _tls_settings(table: _Table, ciphers: str) -> TlsSettings:
    settings = TlsSettings(
        ca_file=table.existing_file("ca_file"),
        cert_file=table.existing_file("cert_file"),
        key_file=table.existing_file("key_file"),
    )

    # Build the context once now, so a key that does not match its certificate is a
    # config error at start-up rather than a failed handshake later.
    try:
        server_context(settings.cert_file, settings.key_file, settings.ca_file, ciphers)
    except (OSError, ValueError) as error:
        raise ConfigError(
            "tls", f"cannot use cert_file, key_file and ca_file together: {error}"
        ) from error
    return settings


def _raft_settings(table: _Table, node: NodeSettings) -> RaftSettings:
    listen = table.node_address("listen", DEFAULT_RAFT_LISTEN)
    peers = tuple(table.node_address_list("peers"))
    _check_peers(table, listen, peers)

    tick_seconds = table.number("tick_seconds", 0.002, minimum=0.0005, maximum=1.0)
    election_min = table.number("election_timeout_min_seconds", 0.4, minimum=0.01, maximum=60)
    election_max = table.number("election_timeout_max_seconds", 1.4, minimum=0.01, maximum=120)
    if election_min <= 3 * tick_seconds:
        raise table.error("election_timeout_min_seconds", "must exceed three tick_seconds")
    if election_max <= election_min:
        raise table.error(
            "election_timeout_max_seconds", "must exceed election_timeout_min_seconds"
        )

    return RaftSettings(
        listen=listen,
        peers=peers,
        password=_cluster_secret(table),
        data_dir=table.path("data_dir", node.data_dir / "raft"),
        tick_seconds=tick_seconds,
        election_timeout_min_seconds=election_min,
        election_timeout_max_seconds=election_max,
        compaction_min_entries=table.integer(
            "compaction_min_entries", 50_000, minimum=100, maximum=100_000_000
        ),
        compaction_min_seconds=table.number(
            "compaction_min_seconds", 3600.0, minimum=0, maximum=30 * 86_400
        ),
    )


def _check_peers(table: _Table, listen: NodeAddress, peers: tuple[NodeAddress, ...]) -> None:
    if listen in peers:
        raise table.error("peers", f"lists this node's own address {listen}; list the others")
    if len(set(peers)) != len(peers):
        raise table.error("peers", "lists an address twice")

    # A loopback address works only when every peer is on this host too.
    remote = [peer for peer in peers if not _is_loopback(_split_host_port(peer)[0])]
    if remote and _is_loopback(_split_host_port(listen)[0]):
        raise table.error(
            "listen",
            f"{listen} is a loopback address but peer {remote[0]} is on another host; "
            "set raft.listen to an address the peers can reach",
        )


def _cluster_secret(table: _Table) -> str:
    has_inline = table.has("password")
    has_file = table.has("password_file")
    if has_inline and has_file:
        raise table.error("password", "set either password or password_file, not both")
    if not has_inline and not has_file:
        raise table.error(
            "password",
            "required (the cluster secret that authenticates Raft traffic); "
            "set raft.password_file to a file holding it",
        )

    if has_file:
        option, secret_file = "password_file", table.existing_file("password_file")
        secret = secret_file.read_text(encoding="utf-8").strip()
    else:
        option, secret = "password", table.string("password")
    if not secret:
        raise table.error(option, "is empty; the cluster secret must not be empty")
    if len(secret) < MIN_PASSWORD_LENGTH:
        raise table.error(
            option, f"the cluster secret must have at least {MIN_PASSWORD_LENGTH} characters"
        )
    return secret


def _api_settings(table: _Table, tls: TlsSettings) -> ApiSettings:
    admin_token = None
    if table.has("admin_token_file"):
        admin_token = table.existing_file("admin_token_file").read_text(encoding="utf-8").strip()
        if len(admin_token) < MIN_PASSWORD_LENGTH:
            raise table.error(
                "admin_token_file", f"the token must have at least {MIN_PASSWORD_LENGTH} characters"
            )
    return ApiSettings(
        listen=table.listen_address("listen", DEFAULT_API_LISTEN),
        cert_file=table.existing_file("cert_file", tls.cert_file),
        key_file=table.existing_file("key_file", tls.key_file),
        admin_token=admin_token,
    )


def _consul_settings(table: _Table) -> ConsulSettings:
    scheme = table.string("scheme", "http")
    if scheme not in ("http", "https"):
        raise table.error("scheme", f"{scheme!r} is not http or https")
    address = table.string("address", DEFAULT_CONSUL_ADDRESS)
    table.listen_address("address", DEFAULT_CONSUL_ADDRESS)  # checks host:port

    # TLS files speak to an https agent only; a client key needs its certificate.
    tls_files = {key: table.existing_file(key) if table.has(key) else None
                 for key in ("ca_file", "cert_file", "key_file")}
    if scheme == "http" and any(tls_files.values()):
        raise table.error("scheme", "ca_file, cert_file and key_file need scheme = \"https\"")
    if (tls_files["cert_file"] is None) != (tls_files["key_file"] is None):
        raise table.error("cert_file", "set cert_file and key_file together, or neither")

    service = table.string("service", DEFAULT_CONSUL_SERVICE)
    if not _DNS_LABEL.fullmatch(service):
        raise table.error(
            "service", f"{service!r} is not a DNS label: letters, digits and '-', at most 63"
        )
    return ConsulSettings(
        address=address,
        scheme=scheme,
        token=_consul_token(table),
        ca_file=tls_files["ca_file"],
        cert_file=tls_files["cert_file"],
        key_file=tls_files["key_file"],
        service=service,
        cluster_id=table.string("cluster_id", service),
        service_tags=_consul_tags(table),
        service_meta=_consul_meta(table),
        check_timeout_seconds=table.number(
            "check_timeout_seconds", 5.0, minimum=1, maximum=3600
        ),
        service_address=table.string("service_address") if table.has("service_address") else None,
        disable_registration=table.boolean("disable_registration", False),
    )


def _seal_settings(table: _Table) -> SealSettings:
    kind = table.string("type", "shamir")
    if kind not in SEAL_TYPES:
        raise table.error("type", f"{kind!r} is not one of {', '.join(SEAL_TYPES)}")
    if kind == "shamir":
        return SealSettings()
    if kind == "dev-file":
        return SealSettings(type=kind, key_file=table.path("key_file"))

    # pkcs11: every option is needed to find the key; the PIN inline or from a file.
    mechanism = table.string("mechanism", "aes-gcm")
    if mechanism not in PKCS11_MECHANISMS:
        raise table.error("mechanism", f"{mechanism!r} is not one of "
                                       f"{', '.join(PKCS11_MECHANISMS)}")
    if table.has("pin") == table.has("pin_file"):
        raise table.error("pin", "set exactly one of pin or pin_file (the token's user PIN)")
    if table.has("pin_file"):
        pin = table.existing_file("pin_file").read_text(encoding="utf-8").strip()
    else:
        pin = table.string("pin")
    return SealSettings(
        type=kind,
        library=table.existing_file("library"),
        token_label=table.string("token_label"),
        pin=pin,
        key_label=table.string("key_label"),
        mechanism=mechanism,
    )


def _replication_settings(table: _Table) -> ReplicationSettings:
    # Port 0 (a free port, announced once bound) is allowed here, unlike elsewhere.
    host, _, port = table.string("listen", DEFAULT_REPLICATION_LISTEN).rpartition(":")
    if host and port == "0":
        listen = ListenAddress(host=host.strip("[]"), port=0)
    else:
        listen = table.listen_address("listen", DEFAULT_REPLICATION_LISTEN)
    advertise = table.node_address("advertise") if table.has("advertise") else None
    if advertise is None and listen.host in _WILDCARD_HOSTS:
        raise table.error("advertise", f"required when listen is a wildcard ({listen}): the "
                                       "host:port other clusters dial to reach this node")
    return ReplicationSettings(listen=listen, advertise=advertise)


def _consul_token(table: _Table) -> str | None:
    if table.has("token") and table.has("token_file"):
        raise table.error("token", "set either token or token_file, not both")
    if table.has("token_file"):
        option, token = "token_file", table.existing_file("token_file").read_text().strip()
    elif table.has("token"):
        option, token = "token", table.string("token")
    else:
        return None
    if not token:
        raise table.error(option, "is empty; remove it to use the agent's default token")
    return token


def _consul_tags(table: _Table) -> tuple[str, ...]:
    tags = tuple(table.string_list("service_tags"))
    for tag in tags:
        if tag in CONSUL_STATE_TAGS:
            raise table.error("service_tags", f"{tag!r} is set by the node itself; remove it")
        if not _DNS_LABEL.fullmatch(tag):
            raise table.error("service_tags", f"{tag!r} is not a DNS label, so DNS cannot find it")
    return tags


def _consul_meta(table: _Table) -> tuple[tuple[str, str], ...]:
    meta = table.string_table("service_meta")

    # Consul's own limits on service meta, and the keys the node writes itself.
    if len(meta) > CONSUL_MAX_META_PAIRS - len(CONSUL_NODE_META_KEYS):
        raise table.error("service_meta", "too many pairs; Consul allows 64 with the node's own")
    for key, value in meta.items():
        if key in CONSUL_NODE_META_KEYS:
            raise table.error("service_meta", f"{key!r} is set by the node itself; remove it")
        if not _META_KEY.fullmatch(key) or key.startswith("consul-"):
            raise table.error(
                "service_meta",
                f"key {key!r}: use letters, digits, '_' and '-' (at most 128), not 'consul-'",
            )
        if len(value) > CONSUL_MAX_META_VALUE:
            raise table.error("service_meta", f"the value of {key!r} is over 512 characters")
    return tuple(sorted(meta.items()))


_T = TypeVar("_T")
_REQUIRED: Any = object()


class _Table:
    """One TOML table, read key by key; remembers which keys were read."""

    def __init__(self, name: str, values: dict[str, Any], base_dir: Path) -> None:
        self.name = name
        self.values = values
        self.base_dir = base_dir
        self.read: set[str] = set()

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.name}.{key}" if self.name else key, problem)

    def has(self, key: str) -> bool:
        return key in self.values

    def table(self, key: str) -> _Table:
        value = self._get(key, {}, dict, "a table")
        return _Table(key, value, self.base_dir)

    def string(self, key: str, default: str = _REQUIRED) -> str:
        return self._get(key, default, str, "a string")

    def integer(self, key: str, default: int, *, minimum: int, maximum: int) -> int:
        value = self._get(key, default, int, "an integer")
        return self._in_range(key, value, minimum, maximum)

    def number(self, key: str, default: float, *, minimum: float, maximum: float) -> float:
        value = float(self._get(key, default, (int, float), "a number"))
        return self._in_range(key, value, minimum, maximum)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.values.get(key, default)
        self.read.add(key)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def string_list(self, key: str) -> list[str]:
        values = self._get(key, [], list, "a list of strings")
        if not all(isinstance(value, str) for value in values):
            raise self.error(key, "must be a list of strings")
        return values

    def string_table(self, key: str) -> dict[str, str]:
        values = self._get(key, {}, dict, "a table of strings")
        if not all(isinstance(value, str) for value in values.values()):
            raise self.error(key, "must be a table of strings, e.g. { rack = \"r1\" }")
        return values

    def path(self, key: str, default: Path = _REQUIRED) -> Path:
        if not self.has(key) and default is not _REQUIRED:
            return default
        return self.base_dir / self.string(key)

    def existing_file(self, key: str, default: Path = _REQUIRED) -> Path:
        path = self.path(key, default)
        if not path.is_file():
            raise self.error(key, f"{path} does not exist or is not a file")
        return path

    def listen_address(self, key: str, default: str) -> ListenAddress:
        text = self.string(key, default)
        host, port = self._parsed_address(key, text)
        return ListenAddress(host=host, port=port)

    def node_address(self, key: str, default: str = _REQUIRED) -> NodeAddress:
        return self._node_address(key, self.string(key, default))

    def node_address_list(self, key: str) -> list[NodeAddress]:
        values = self._get(key, [], list, "a list of host:port strings")
        if not all(isinstance(value, str) for value in values):
            raise self.error(key, "must be a list of host:port strings")
        return [self._node_address(key, value) for value in values]

    def refuse_unknown(self) -> None:
        unknown = sorted(set(self.values) - self.read)
        if unknown:
            where = f"[{self.name}]" if self.name else "the top level"
            raise self.error(unknown[0], f"unknown option in {where}; see docs/configuration.md")

    def _node_address(self, key: str, text: str) -> NodeAddress:
        host, _ = self._parsed_address(key, text)
        if host in _WILDCARD_HOSTS:
            raise self.error(
                key, f"{text} is a wildcard; give the one address peers dial to reach this node"
            )
        return NodeAddress(text)

    def _parsed_address(self, key: str, text: str) -> tuple[str, int]:
        try:
            return _split_host_port(text)
        except ValueError as error:
            raise self.error(key, f"{error}; expected host:port, e.g. 10.0.0.5:7000") from error

    def _get(self, key: str, default: Any, kind: type | tuple[type, ...], noun: str) -> Any:
        self.read.add(key)
        if key not in self.values:
            if default is _REQUIRED:
                raise self.error(key, f"required ({noun})")
            return default
        value = self.values[key]
        # TOML booleans are Python ints; true is not a port number.
        if isinstance(value, bool) or not isinstance(value, kind):
            raise self.error(key, f"must be {noun}, got {value!r}")
        return value

    def _in_range(self, key: str, value: _T, minimum: Any, maximum: Any) -> _T:
        if not minimum <= value <= maximum:
            raise self.error(key, f"{value} is out of range; allowed {minimum} to {maximum}")
        return value


def _split_host_port(text: str) -> tuple[str, int]:
    host, separator, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not separator or not host or not port_text.isdigit():
        raise ValueError(f"{text!r} is not host:port")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 1 to 65535")
    return host, port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
