"""Client credentials: issued by the cluster CA for a role, in the format a client wants.

A credential is made on the node that received the request: the node draws the key
(or takes the public key from a CSR), signs the certificate with the cluster CA
from the replicated state, and submits only the record (serial, role, dates,
fingerprint) through the log. The private key goes back to the caller once and is
kept nowhere.

Formats, as in Vault's KMIP engine plus one file for tools that want a single file:

- ``pem``: certificate, private key and CA chain as PEM texts;
- ``pem_bundle``: the same, plus ``bundle``, all three in one PEM text (what
  ``keyquorum credential generate -o vcenter.pem`` writes);
- ``der``: base64 of the DER certificate, PKCS#8 key and CA certificate;
- ``pkcs12``: base64 of one PKCS#12 file with all three, encrypted when a password
  is given.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from .pki import (
    CertificateAuthority,
    KeyType,
    capped_not_after,
    generate_private_key,
    sign_certificate,
)
from .state import ScopeName
from .tenancy import Credential, Role, RoleName

Format = Literal["pem", "pem_bundle", "der", "pkcs12"]
FORMATS: tuple[Format, ...] = ("pem", "pem_bundle", "der", "pkcs12")


class CredentialError(ValueError):
    """The request cannot make a credential; the message says what to fix."""


@dataclass(frozen=True)
class Issued:
    """A certificate the cluster CA signed, with its key when the node drew it."""

    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None
    record: Credential
    # What the caller should know, such as a lifetime cut short by the CA's expiry.
    warnings: tuple[str, ...] = ()


def generate(ca: CertificateAuthority, role: Role, common_name: str | None,
             sans: list[str], now: int) -> Issued:
    """A new key and certificate for ``role``; a CredentialError for bad names."""
    warnings = _lifetime_warnings(ca, role)
    key = generate_private_key(role.settings.key_type)
    certificate = _sign(ca, key.public_key(), role, common_name, sans)
    return Issued(certificate, key, _record(certificate, role, "generated", now), warnings)


def sign_csr(ca: CertificateAuthority, role: Role, csr_pem: str, common_name: str | None,
             now: int) -> Issued:
    """A certificate for the key in a CSR (vCenter makes one), named as the CSR asks."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError as error:
        raise CredentialError("csr is not a PEM certificate signing request "
                              "(-----BEGIN CERTIFICATE REQUEST-----)") from error
    if not csr.is_signature_valid:
        raise CredentialError("the CSR's signature does not verify: it was altered or "
                              "signed with another key")
    public_key = csr.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise CredentialError("the CSR's key must be RSA or EC")
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < 2048:
        raise CredentialError("the CSR's RSA key must have at least 2048 bits")

    # The CSR's own names, unless the request overrides the common name.
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    requested = common_name or (str(names[0].value) if names else None)
    sans: list[str] = []
    try:
        extension = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        sans = [str(v) for v in extension.value.get_values_for_type(x509.DNSName)]
        sans += [str(v) for v in extension.value.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    warnings = _lifetime_warnings(ca, role)
    certificate = _sign(ca, public_key, role, requested, sans)
    return Issued(certificate, None, _record(certificate, role, "signed", now), warnings)


def render(issued: Issued, ca_pem: bytes, format_: Format,
           pkcs12_password: str | None = None) -> dict[str, Any]:
    """The API's answer for one credential in ``format_``."""
    record = issued.record
    answer: dict[str, Any] = {
        "serial_number": serial_text(record.serial),
        "scope": record.scope,
        "role": record.role,
        "common_name": record.common_name,
        "not_after": record.not_after,
        "format": format_,
    }
    if issued.warnings:
        answer["warnings"] = list(issued.warnings)
    ca_certificate = x509.load_pem_x509_certificate(ca_pem)
    certificate = issued.certificate
    key = issued.private_key

    if format_ == "der":
        answer["certificate"] = _b64(certificate.public_bytes(serialization.Encoding.DER))
        answer["ca_chain"] = [_b64(ca_certificate.public_bytes(serialization.Encoding.DER))]
        if key is not None:
            answer["private_key"] = _b64(key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
        return answer
    if format_ == "pkcs12":
        if key is None:
            raise CredentialError("pkcs12 holds a private key, and a signed CSR has none "
                                  "here: use pem, pem_bundle or der")
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(pkcs12_password.encode())
            if pkcs12_password else serialization.NoEncryption())
        blob = pkcs12.serialize_key_and_certificates(
            record.common_name.encode(), key, certificate, [ca_certificate], encryption)
        answer["pkcs12"] = _b64(blob)
        return answer

    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    answer["certificate"] = cert_pem
    answer["ca_chain"] = [ca_pem.decode()]
    key_pem = ""
    if key is not None:
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        answer["private_key"] = key_pem
    if format_ == "pem_bundle":
        answer["bundle"] = key_pem + cert_pem + ca_pem.decode()
    return answer


def serial_text(serial: int) -> str:
    """A serial as the API shows it: lowercase hex, as openssl x509 -serial prints it."""
    return f"{serial:x}"


def parse_serial(text: str) -> int:
    """A serial from hex, with or without colons (as browsers show it); ValueError if not."""
    cleaned = text.strip().lower().replace(":", "")
    if cleaned.startswith("0x"):
        cleaned = cleaned[2:]
    if not cleaned or len(cleaned) > 40:
        raise ValueError(f"serial_number {text!r} is not a hex serial number")
    return int(cleaned, 16)


def fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


def _sign(ca: CertificateAuthority, public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
          role: Role, common_name: str | None, sans: list[str]) -> x509.Certificate:
    # A random name, as Vault does, unless the caller gives one: a client's
    # credential names its role in our records, not in its subject.
    name = common_name or secrets.token_hex(10)
    if not name or len(name) > 64:
        raise CredentialError("common_name must have 1 to 64 characters")
    ttl = timedelta(seconds=role.settings.tls_client_ttl_seconds)
    try:
        return sign_certificate(ca, public_key, name, sans=sans, ttl=ttl)
    except ValueError as error:
        raise CredentialError(f"{error}: a certificate needs a subject alternative name; "
                              "give sans (DNS names or IP addresses), or a common_name that "
                              "is a DNS name") from error


def _lifetime_warnings(ca: CertificateAuthority, role: Role) -> tuple[str, ...]:
    """Refuse when the CA can sign nothing valid; say so when it cuts the role's TTL."""
    ttl = timedelta(seconds=role.settings.tls_client_ttl_seconds)
    now = datetime.now(UTC)
    try:
        not_after = capped_not_after(ca.certificate, now, ttl)
    except ValueError as error:
        raise CredentialError(str(error)) from error
    if not_after >= now + ttl:
        return ()
    return (f"the role's tls_client_ttl ({role.settings.tls_client_ttl_seconds} s) outlives "
            f"the cluster CA; this certificate expires with the CA at "
            f"{not_after.isoformat()}",)


def _record(certificate: x509.Certificate, role: Role, origin: str, now: int) -> Credential:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return Credential(
        serial=certificate.serial_number,
        scope=ScopeName(role.scope),
        role=RoleName(role.name),
        common_name=str(names[0].value) if names else "",
        fingerprint_sha256=fingerprint(certificate),
        issued_at=now,
        not_after=int(certificate.not_valid_after_utc.timestamp()),
        origin=origin,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def ca_key_type(key_type: str, key_bits: int) -> KeyType:
    """The pki KeyType for ("ec", 384) and the like; ValueError listing what is allowed."""
    return KeyType.parse(f"{key_type}-{'p' if key_type == 'ec' else ''}{key_bits}")

