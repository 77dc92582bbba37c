"""`keyquorum replication` and `keyquorum drill dr`: what they say before any call is made."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from keyquorum.cluster.cli import cli

USAGE = 2


def test_a_token_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "dc-b.token"
    result = CliRunner().invoke(cli, ["replication", "secondary", "enable", "--kind", "dr",
                                      f"@{missing}", "--addr", "https://127.0.0.1:1"])
    assert result.exit_code == USAGE
    assert f"cannot read the token file {missing}" in result.output


def test_a_command_without_an_address_says_how_to_give_one() -> None:
    result = CliRunner().invoke(cli, ["replication", "status"], env={"KEYQUORUM_ADDR": ""})
    assert result.exit_code == USAGE
    assert "pass --addr or set KEYQUORUM_ADDR" in result.output


def test_dr_token_decode_reverses_the_pad_and_refuses_a_pad_of_another_attempt() -> None:
    token = "Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4"
    pad = bytes(range(7, 7 + len(token)))
    encoded = base64.urlsafe_b64encode(bytes(a ^ b for a, b in zip(token.encode(), pad,
                                                                   strict=True))).decode()
    otp = base64.urlsafe_b64encode(pad).decode()

    decoded = CliRunner().invoke(cli, ["replication", "dr-token", "decode", "--otp", otp,
                                       encoded])
    assert decoded.exit_code == 0 and decoded.stdout.strip() == token

    short = base64.urlsafe_b64encode(pad[:8]).decode()
    refused = CliRunner().invoke(cli, ["replication", "dr-token", "decode", "--otp", short,
                                       encoded])
    assert refused.exit_code == USAGE
    assert "not the one of the attempt" in refused.output


def test_the_drill_names_every_option_it_needs() -> None:
    result = CliRunner().invoke(cli, ["drill", "dr"])
    assert result.exit_code == USAGE
    assert "--primary-addr" in result.output


def drill(ca: Path, cert: Path, key: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [
        "drill", "dr", "--primary-addr", "https://127.0.0.1:1", "--primary-token", "t",
        "--primary-kmip", "127.0.0.1:1", "--dr-addr", "https://127.0.0.1:1", "--dr-token", "t",
        "--dr-kmip", "127.0.0.1:1", "--kmip-ca", str(ca), "--kmip-cert", str(cert),
        "--kmip-key", str(key), "--unseal-key", "share"])
    return result.exit_code, result.output


def test_the_drill_stops_with_a_failure_when_a_cluster_cannot_be_reached(pki: Any) -> None:
    code, output = drill(pki.ca_file, pki.client_cert_file, pki.client_key_file)
    assert code == 1
    assert "the drill stopped: the API call failed: https://127.0.0.1:1" in output


def test_the_drill_names_the_kmip_files_it_cannot_load(tmp_path: Path) -> None:
    pem = tmp_path / "any.pem"
    pem.write_text("not a certificate")
    code, output = drill(pem, pem, pem)
    assert code == 1
    assert "check --kmip-ca, --kmip-cert and --kmip-key" in output
