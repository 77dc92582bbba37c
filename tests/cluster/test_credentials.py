"""Credentials never outlive the CA that signs them: capped with a warning, or refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keyquorum.cluster import credentials
from keyquorum.cluster.pki import CertificateAuthority, KeyType, create_ca, issue_certificate
from keyquorum.cluster.state import ScopeName
from keyquorum.cluster.tenancy import Role, RoleName, RoleSettings

YEAR = 365 * 24 * 3600


def role(ttl_seconds: int) -> Role:
    settings = RoleSettings(frozenset({"operation_all"}), tls_client_ttl_seconds=ttl_seconds)
    return Role(ScopeName("sales"), RoleName("vcenter"), settings, created_at=0)


def expiry(ca: CertificateAuthority) -> datetime:
    return ca.certificate.not_valid_after_utc


def csr_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vcenter")]))
               .sign(key, hashes.SHA256()))
    return request.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def short_lived_ca() -> CertificateAuthority:
    # Two hours of life left, and roles that ask for a year.
    return create_ca("short-lived", KeyType.EC_P256, ttl=timedelta(hours=2))


def test_a_generated_credential_expires_with_the_ca_and_says_so(
    short_lived_ca: CertificateAuthority,
) -> None:
    issued = credentials.generate(short_lived_ca, role(YEAR), "client", [], now=0)

    assert issued.certificate.not_valid_after_utc == expiry(short_lived_ca)
    answer = credentials.render(issued, short_lived_ca.cert_pem, "pem")
    assert answer["not_after"] == int(expiry(short_lived_ca).timestamp())
    assert "expires with the CA" in answer["warnings"][0]


def test_a_signed_csr_expires_with_the_ca_and_says_so(
    short_lived_ca: CertificateAuthority,
) -> None:
    issued = credentials.sign_csr(short_lived_ca, role(YEAR), csr_pem(), None, now=0)

    assert issued.certificate.not_valid_after_utc == expiry(short_lived_ca)
    assert issued.warnings and "tls_client_ttl" in issued.warnings[0]


def test_a_ttl_inside_the_cas_life_is_kept_without_a_warning(
    short_lived_ca: CertificateAuthority,
) -> None:
    before = datetime.now(UTC)
    issued = credentials.generate(short_lived_ca, role(3600), "client", [], now=0)

    not_after = issued.certificate.not_valid_after_utc
    assert before + timedelta(minutes=59) <= not_after <= datetime.now(UTC) + timedelta(hours=1)
    assert issued.warnings == ()
    assert "warnings" not in credentials.render(issued, short_lived_ca.cert_pem, "pem")


def test_a_ca_at_the_end_of_its_life_signs_nothing() -> None:
    dying = create_ca("dying", KeyType.EC_P256, ttl=timedelta(seconds=30))

    with pytest.raises(credentials.CredentialError, match="install a new CA"):
        credentials.generate(dying, role(3600), "client", [], now=0)
    with pytest.raises(credentials.CredentialError, match="install a new CA"):
        credentials.sign_csr(dying, role(3600), csr_pem(), None, now=0)


def test_node_certificates_are_capped_the_same_way(short_lived_ca: CertificateAuthority) -> None:
    issued = issue_certificate(short_lived_ca, "node-1", sans=["127.0.0.1"],
                               ttl=timedelta(days=365))
    assert issued.not_after == expiry(short_lived_ca)
