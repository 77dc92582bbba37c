"""The cluster's certificate authority and the certificates it issues.

One CA per cluster signs every node certificate and every client credential; the
nodes trust nothing else. Issued certificates carry both the clientAuth and the
serverAuth extended key usage and a subjectAltName, because vCenter and ESXi refuse
certificates without an extended key usage, and a node certificate is also the
client certificate a node presents to its peers.

Keys are written unencrypted (PKCS#8 PEM) in files only their owner can read: the
node must start unattended, so a passphrase would have to sit next to the key.
"""

from __future__ import annotations

import enum
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Clocks on a cluster's hosts and its clients drift; a certificate valid from the
# moment it is issued would be refused for a few minutes by a client running late.
CLOCK_SKEW_ALLOWANCE = timedelta(minutes=5)

# Ten years: the CA outlives every certificate it signs, and rotating it means
# re-enrolling every client (vCenter included), which nobody wants to do often.
CA_TTL = timedelta(days=3650)
# A CA with less life left than this signs nothing: the certificate would expire
# before a client had finished installing it.
MIN_REMAINING_CA_LIFE = timedelta(minutes=1)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class KeyType(enum.Enum):
    """The key algorithms the CA can generate; the value is the name in configs and CLI."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    EC_P521 = "ec-p521"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"

    @classmethod
    def parse(cls, name: str) -> KeyType:
        """The key type called `name`, or a ValueError listing the allowed names."""
        for key_type in cls:
            if key_type.value == name:
                return key_type
        allowed = ", ".join(key_type.value for key_type in cls)
        raise ValueError(f"unknown key type {name!r}; allowed: {allowed}")

    @property
    def is_rsa(self) -> bool:
        return self.value.startswith("rsa-")


DEFAULT_KEY_TYPE = KeyType.EC_P256

_CURVES: dict[KeyType, ec.EllipticCurve] = {
    KeyType.EC_P256: ec.SECP256R1(),
    KeyType.EC_P384: ec.SECP384R1(),
    KeyType.EC_P521: ec.SECP521R1(),
}

_RSA_BITS = {KeyType.RSA_2048: 2048, KeyType.RSA_3072: 3072, KeyType.RSA_4096: 4096}


@dataclass(frozen=True)
class CertificateAuthority:
    """The cluster CA as PEM bytes; the parsed forms are derived on demand."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def private_key(self) -> PrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError("the CA key is neither RSA nor EC")
        return key

    @classmethod
    def load(cls, cert_file: Path, key_file: Path) -> CertificateAuthority:
        """Read a CA written by `write`; a ValueError if the files do not belong together."""
        ca = cls(cert_pem=cert_file.read_bytes(), key_pem=key_file.read_bytes())
        if ca.certificate.public_key() != ca.private_key.public_key():
            raise ValueError(f"{key_file} is not the key of the CA certificate {cert_file}")
        return ca

    def write(self, cert_file: Path, key_file: Path) -> None:
        """Write the certificate (world-readable) and the key (owner-only, 0600)."""
        write_pem_pair(self.cert_pem, self.key_pem, cert_file, key_file)


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate the CA signed, with its private key."""

    cert_pem: bytes
    key_pem: bytes
    serial: int
    not_after: datetime

    def write(self, cert_file: Path, key_file: Path) -> None:
        """Write the certificate (world-readable) and the key (owner-only, 0600)."""
        write_pem_pair(self.cert_pem, self.key_pem, cert_file, key_file)


def generate_private_key(key_type: KeyType) -> PrivateKey:
    if key_type.is_rsa:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[key_type])
    return ec.generate_private_key(_CURVES[key_type])


def create_ca(common_name: str, key_type: KeyType = DEFAULT_KEY_TYPE,
              ttl: timedelta = CA_TTL) -> CertificateAuthority:
    """A new self-signed CA that may sign end-entity certificates only (pathlen 0)."""
    key = generate_private_key(key_type)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)

    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW_ALLOWANCE)
        .not_valid_after(now + ttl)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    certificate = builder.sign(key, _signature_hash(key))
    return CertificateAuthority(cert_pem=_certificate_pem(certificate), key_pem=_key_pem(key))


def issue_certificate(
    ca: CertificateAuthority,
    common_name: str,
    *,
    sans: Sequence[str],
    key_type: KeyType = DEFAULT_KEY_TYPE,
    ttl: timedelta,
    serial: int | None = None,
) -> IssuedCertificate:
    """A new key and a certificate for it, signed by `ca`, usable as client and server.

    `sans` are host names or IP addresses; IP addresses become IP SANs (clients
    connecting by address match only those). With no SANs the common name is used,
    which must then be a valid host name.
    """
    if ttl <= timedelta(0):
        raise ValueError(f"ttl must be positive, got {ttl}")
    key = generate_private_key(key_type)
    certificate = sign_certificate(ca, key.public_key(), common_name, sans=sans, ttl=ttl,
                                   serial=serial)
    return IssuedCertificate(
        cert_pem=_certificate_pem(certificate),
        key_pem=_key_pem(key),
        serial=certificate.serial_number,
        not_after=certificate.not_valid_after_utc,
    )


def sign_certificate(
    ca: CertificateAuthority,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    common_name: str,
    *,
    sans: Sequence[str],
    ttl: timedelta,
    serial: int | None = None,
) -> x509.Certificate:
    """A client-and-server certificate for someone else's key (a CSR's), signed by `ca`.

    It never outlives `ca`: a longer `ttl` is cut to the CA's own expiry (see
    ``capped_not_after``), because a chain is only as valid as its shortest link and
    a client would be refused the moment the CA expired anyway.
    """
    if ttl <= timedelta(0):
        raise ValueError(f"ttl must be positive, got {ttl}")
    ca_certificate = ca.certificate
    ca_key = ca.private_key
    now = datetime.now(UTC)
    not_after = capped_not_after(ca_certificate, now, ttl)
    serial = serial if serial is not None else x509.random_serial_number()

    # First the identity and validity, then what the key may do, then where it lives.
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_certificate.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(now - CLOCK_SKEW_ALLOWANCE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _end_entity_key_usage(isinstance(public_key, rsa.RSAPublicKey)), critical=True
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(_subject_alt_name(sans or [common_name]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    return builder.sign(ca_key, _signature_hash(ca_key))


def capped_not_after(ca_certificate: x509.Certificate, now: datetime,
                     ttl: timedelta) -> datetime:
    """When a certificate issued `now` for `ttl` expires: at the latest with its CA.

    A ValueError when the CA has expired (or expires within a minute): nothing it
    signs would be accepted, so the caller must install a new CA first.
    """
    ca_expiry = ca_certificate.not_valid_after_utc
    if ca_expiry <= now + MIN_REMAINING_CA_LIFE:
        raise ValueError(f"the CA expires at {ca_expiry.isoformat()}; a certificate it "
                         "signs now would not be valid: install a new CA")
    return min(now + ttl, ca_expiry)


def write_pem_pair(cert_pem: bytes, key_pem: bytes, cert_file: Path, key_file: Path) -> None:
    """Write a certificate with mode 0644 and its key with mode 0600, creating folders."""
    cert_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    cert_file.write_bytes(cert_pem)
    write_private_file(key_file, key_pem)


def write_private_file(path: Path, content: bytes) -> None:
    """Write `content` to a file only its owner can read, even for an instant.

    The mode is set when the file is created, and again afterwards in case the file
    already existed with a looser mode.
    """
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(content)


def _subject_alt_name(sans: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for san in sans:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(_checked_dns_name(san)))
    return x509.SubjectAlternativeName(names)


def _checked_dns_name(name: str) -> str:
    labels = name.split(".")
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-*")
    if not name or any(not label or not set(label.lower()) <= allowed for label in labels):
        raise ValueError(f"{name!r} is neither an IP address nor a DNS name")
    return name


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _end_entity_key_usage(is_rsa: bool) -> x509.KeyUsage:
    # An RSA key may carry a TLS session key (static-RSA suites, which vCenter 7
    # negotiates); an EC key takes part in ECDH instead.
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=is_rsa,
        data_encipherment=False,
        key_agreement=not is_rsa,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _signature_hash(signing_key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    # Match the hash to the curve's strength, as RFC 5480 section 4 advises.
    if isinstance(signing_key, ec.EllipticCurvePrivateKey):
        if signing_key.curve.key_size >= 521:
            return hashes.SHA512()
        if signing_key.curve.key_size >= 384:
            return hashes.SHA384()
    return hashes.SHA256()


def _certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
