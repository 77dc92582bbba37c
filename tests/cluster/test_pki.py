"""The CA and its certificates, checked with cryptography's own RFC 5280 verifier."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store

from keyquorum.cluster.pki import (
    CertificateAuthority,
    KeyType,
    create_ca,
    issue_certificate,
)

TTL = timedelta(days=30)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return create_ca("test CA")


def _load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


@pytest.mark.parametrize(
    "key_type", [KeyType.EC_P256, KeyType.EC_P384, KeyType.EC_P521, KeyType.RSA_2048]
)
def test_ca_may_sign_end_entities_only(key_type: KeyType) -> None:
    ca = create_ca("cluster CA", key_type)
    certificate = ca.certificate

    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is True
    assert constraints.value.path_length == 0

    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    certificate.verify_directly_issued_by(certificate)


@pytest.mark.parametrize("key_type", list(KeyType))
def test_issued_certificate_serves_both_ends_of_tls(
    ca: CertificateAuthority, key_type: KeyType
) -> None:
    issued = issue_certificate(
        ca, "node-1", sans=["127.0.0.1", "::1", "kms.example.com"], key_type=key_type, ttl=TTL
    )
    certificate = _load(issued.cert_pem)

    # vCenter refuses certificates without EKU; peers use node certificates as clients.
    eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}

    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert san.get_values_for_type(x509.DNSName) == ["kms.example.com"]

    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert usage.key_encipherment is key_type.is_rsa
    assert usage.key_agreement is not key_type.is_rsa

    assert certificate.serial_number == issued.serial
    assert certificate.not_valid_after_utc == issued.not_after


def test_issued_certificate_passes_a_strict_path_validation(ca: CertificateAuthority) -> None:
    issued = issue_certificate(ca, "node-1", sans=["localhost", "127.0.0.1"], ttl=TTL)
    store = Store([ca.certificate])

    server = PolicyBuilder().store(store).build_server_verifier(x509.DNSName("localhost"))
    server.verify(_load(issued.cert_pem), [])
    client = PolicyBuilder().store(store).build_client_verifier()
    client.verify(_load(issued.cert_pem), [])


def test_serial_and_lifetime_are_the_callers(ca: CertificateAuthority) -> None:
    before = datetime.now(UTC)
    issued = issue_certificate(ca, "client", sans=[], ttl=timedelta(hours=2), serial=4242)

    assert issued.serial == 4242
    assert before + timedelta(hours=2) - timedelta(seconds=1) <= issued.not_after
    assert issued.not_after <= datetime.now(UTC) + timedelta(hours=2)


def test_without_sans_the_common_name_is_the_dns_name(ca: CertificateAuthority) -> None:
    issued = issue_certificate(ca, "vcenter-prod", sans=[], ttl=TTL)

    san = _load(issued.cert_pem).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["vcenter-prod"]


def test_bad_input_is_refused_with_the_reason(ca: CertificateAuthority) -> None:
    with pytest.raises(ValueError, match="neither an IP address nor a DNS name"):
        issue_certificate(ca, "x", sans=["not a name"], ttl=TTL)
    with pytest.raises(ValueError, match="ttl must be positive"):
        issue_certificate(ca, "x", sans=["x"], ttl=timedelta(0))
    with pytest.raises(ValueError, match="allowed: ec-p256, ec-p384"):
        KeyType.parse("dsa-1024")
    assert KeyType.parse("rsa-3072") is KeyType.RSA_3072


def test_keys_are_written_owner_only(tmp_path: Path, ca: CertificateAuthority) -> None:
    issued = issue_certificate(ca, "node-1", sans=["127.0.0.1"], ttl=TTL)
    key_file = tmp_path / "node.key"
    key_file.write_bytes(b"old")
    key_file.chmod(0o644)

    issued.write(tmp_path / "certs" / "node.pem", key_file)

    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes() == issued.key_pem
    assert (tmp_path / "certs" / "node.pem").read_bytes() == issued.cert_pem


def test_ca_round_trips_through_files(tmp_path: Path, ca: CertificateAuthority) -> None:
    ca.write(tmp_path / "ca.pem", tmp_path / "ca" / "ca.key")

    assert CertificateAuthority.load(tmp_path / "ca.pem", tmp_path / "ca" / "ca.key") == ca
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600

    other = create_ca("other CA")
    other.write(tmp_path / "other.pem", tmp_path / "other.key")
    with pytest.raises(ValueError, match="is not the key of the CA certificate"):
        CertificateAuthority.load(tmp_path / "ca.pem", tmp_path / "other.key")
