"""Loading node configs: defaults, every option, and errors that name the option."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from keyquorum.cluster.config import (
    ConfigError,
    ListenAddress,
    NodeAddress,
    load_config,
)
from keyquorum.cluster.tls import DEFAULT_CIPHERS
from keyquorum.kmip.frontend import IDLE_TIMEOUT, MAX_CONNECTIONS
from keyquorum.kmip.limits import MAX_MESSAGE_SIZE

SECRET = "correct-horse-battery-staple"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _minimal(pki: Any, *, raft: str = f'password = "{SECRET}"', extra: str = "") -> str:
    return f"""
[node]
id = "node-1"
data_dir = "data"

[tls]
ca_file = "{pki.ca_file}"
cert_file = "{pki.rsa_cert_file}"
key_file = "{pki.rsa_key_file}"

[raft]
{raft}

{extra}
"""


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text))
    return str(caught.value)


def test_a_minimal_config_gets_the_documented_defaults(tmp_path: Path, pki: Any) -> None:
    config = load_config(_write(tmp_path, _minimal(pki)))

    assert config.node.id == "node-1"
    assert config.node.data_dir == tmp_path / "data"
    assert config.node.log_level == "info"
    assert config.kmip.listen == ListenAddress("0.0.0.0", 5696)
    assert config.kmip.max_message_size == MAX_MESSAGE_SIZE
    assert config.kmip.idle_timeout_seconds == IDLE_TIMEOUT
    assert config.kmip.max_connections == MAX_CONNECTIONS
    assert config.kmip.ciphers == DEFAULT_CIPHERS
    assert config.raft.listen == NodeAddress("127.0.0.1:7000")
    assert config.raft.peers == ()
    assert config.raft.password == SECRET
    assert config.raft.data_dir == tmp_path / "data" / "raft"
    assert config.api.listen == ListenAddress("127.0.0.1", 8696)
    assert config.api.cert_file == pki.rsa_cert_file
    assert config.api.admin_token is None


def test_secrets_stay_out_of_repr(tmp_path: Path, pki: Any) -> None:
    token_file = tmp_path / "admin.token"
    token_file.write_text("an-admin-token-long-enough\n")
    extra = '[api]\nadmin_token_file = "admin.token"'
    config = load_config(_write(tmp_path, _minimal(pki, extra=extra)))

    assert config.api.admin_token == "an-admin-token-long-enough"
    assert SECRET not in repr(config)
    assert "an-admin-token" not in repr(config)


def test_every_option_is_read(tmp_path: Path, pki: Any) -> None:
    (tmp_path / "secret").write_text(SECRET + "\n")
    text = f"""
[node]
id = "kq-a.1"
data_dir = "/var/lib/keyquorum"
log_level = "debug"

[kmip]
listen = "[::]:15696"
idle_timeout_seconds = 30
max_connections = 10
max_message_size = 65536
ciphers = "ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA256"

[tls]
ca_file = "{pki.ca_file}"
cert_file = "{pki.rsa_cert_file}"
key_file = "{pki.rsa_key_file}"

[raft]
listen = "10.0.0.1:7000"
peers = ["10.0.0.2:7000", "10.0.0.3:7000"]
password_file = "secret"
data_dir = "raft-data"
tick_seconds = 0.01
election_timeout_min_seconds = 0.5
election_timeout_max_seconds = 2.5
compaction_min_entries = 1000
compaction_min_seconds = 60

[api]
listen = "0.0.0.0:8443"
cert_file = "{pki.ec_cert_file}"
key_file = "{pki.ec_key_file}"
"""
    config = load_config(_write(tmp_path, text))

    assert config.node.log_level == "debug"
    assert config.kmip.listen == ListenAddress("::", 15696)
    assert str(config.kmip.listen) == "[::]:15696"
    assert (config.kmip.idle_timeout_seconds, config.kmip.max_connections) == (30.0, 10)
    assert config.kmip.max_message_size == 65536
    assert config.raft.peers == ("10.0.0.2:7000", "10.0.0.3:7000")
    assert config.raft.password == SECRET
    assert config.raft.data_dir == tmp_path / "raft-data"
    assert config.raft.tick_seconds == 0.01
    assert config.raft.election_timeout_max_seconds == 2.5
    assert config.raft.compaction_min_entries == 1000
    assert config.api.key_file == pki.ec_key_file


def test_raft_defaults_follow_the_replicated_log(tmp_path: Path, pki: Any) -> None:
    from keyquorum.cluster.raft import RaftConfig

    ours = load_config(_write(tmp_path, _minimal(pki))).raft
    theirs = {field.name: field.default for field in dataclasses.fields(RaftConfig)}

    assert ours.tick_seconds == theirs["tick_seconds"]
    assert ours.election_timeout_min_seconds == theirs["election_timeout_min_seconds"]
    assert ours.election_timeout_max_seconds == theirs["election_timeout_max_seconds"]
    assert ours.compaction_min_entries == theirs["log_compaction_min_entries"]
    assert ours.compaction_min_seconds == theirs["log_compaction_min_seconds"]


def test_a_missing_cluster_secret_names_the_option(tmp_path: Path, pki: Any) -> None:
    message = _error(tmp_path, _minimal(pki, raft=""))

    assert message.startswith(
        "raft.password: required (the cluster secret that authenticates Raft traffic)"
    )


@pytest.mark.parametrize(
    ("raft", "expected"),
    [
        ('password = ""', "raft.password: is empty"),
        ('password = "short"', "raft.password: the cluster secret must have at least 16"),
        (f'password = "{SECRET}"\npassword_file = "x"', "raft.password: set either"),
        ('password_file = "empty"', "raft.password_file: is empty"),
        ('password_file = "absent"', "raft.password_file: "),
    ],
)
def test_bad_cluster_secrets_are_refused(
    tmp_path: Path, pki: Any, raft: str, expected: str
) -> None:
    (tmp_path / "empty").write_text("\n")

    assert _error(tmp_path, _minimal(pki, raft=raft)).startswith(expected)


@pytest.mark.parametrize(
    ("raft", "expected"),
    [
        ('listen = "0.0.0.0:7000"', "raft.listen: 0.0.0.0:7000 is a wildcard"),
        ('listen = "[::]:7000"', "raft.listen: [::]:7000 is a wildcard"),
        ('peers = ["10.0.0.2:7000"]', "raft.listen: 127.0.0.1:7000 is a loopback address"),
        ('peers = ["127.0.0.1:7000"]', "raft.peers: lists this node's own address"),
        ('peers = ["127.0.0.1:7001", "127.0.0.1:7001"]', "raft.peers: lists an address twice"),
        ('peers = "127.0.0.1:7001"', "raft.peers: must be a list of host:port strings"),
        ('listen = "7000"', "raft.listen: '7000' is not host:port"),
        ('listen = "h:70000"', "raft.listen: port 70000 is out of range"),
        ("tick_seconds = 0.2", "raft.election_timeout_min_seconds: must exceed three"),
    ],
)
def test_bad_raft_addresses_are_refused(tmp_path: Path, pki: Any, raft: str, expected: str) -> None:
    text = _minimal(pki, raft=f'password = "{SECRET}"\n{raft}')

    assert _error(tmp_path, text).startswith(expected)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("[kmip]\nmax_message_size = 12", "kmip.max_message_size: 12 is out of range; allowed"),
        ('[kmip]\nmax_connections = "many"', "kmip.max_connections: must be an integer"),
        ("[kmip]\nmax_connections = true", "kmip.max_connections: must be an integer"),
        ('[kmip]\nciphers = "NOPE"', "kmip.ciphers: no usable cipher suite"),
        ("[kmip]\nlisten_port = 1", "kmip.listen_port: unknown option in [kmip]"),
        ("[kmpi]\nlisten = 1", "kmpi: unknown option in the top level"),
        ('[api]\nadmin_token_file = "nowhere"', "api.admin_token_file: "),
    ],
)
def test_bad_options_are_named(tmp_path: Path, pki: Any, extra: str, expected: str) -> None:
    assert _error(tmp_path, _minimal(pki, extra=extra)).startswith(expected)


def test_node_id_and_log_level_are_checked(tmp_path: Path, pki: Any) -> None:
    text = _minimal(pki)
    bad_id = text.replace('id = "node-1"', 'id = "node 1"')
    bad_level = text.replace('id = "node-1"', 'id = "node-1"\nlog_level = "loud"')
    no_id = text.replace('id = "node-1"', "")

    assert _error(tmp_path, bad_id).startswith("node.id: 'node 1' is not allowed")
    assert _error(tmp_path, bad_level).startswith("node.log_level: 'loud' is not one of")
    assert _error(tmp_path, no_id) == "node.id: required (a string)"


def test_tls_files_must_exist_and_belong_together(tmp_path: Path, pki: Any) -> None:
    text = _minimal(pki)
    missing = text.replace(str(pki.rsa_cert_file), str(tmp_path / "none.pem"))
    mismatched = text.replace(str(pki.rsa_key_file), str(pki.ec_key_file))

    assert _error(tmp_path, missing).startswith("tls.cert_file: ")
    assert _error(tmp_path, mismatched).startswith("tls: cannot use cert_file, key_file")


def test_unreadable_and_malformed_files_say_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(_write(tmp_path, "[node\n"))
