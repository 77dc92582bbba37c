"""Certify, Re-certify and Validate: X.509 certificates for keys the client holds.

KMIP 1.4 sections 4.7, 4.8 and 4.23. Certify signs a public key of the caller's
scope, or the key of a PKCS#10 request sent with the operation, into an X.509
certificate that becomes a managed object of that scope; the certificate and the
public key are linked both ways in the same command that creates the certificate.

Who signs. KMIP leaves the choice of CA to the server. Clients of KMS products
expect two things: that the server can act as a CA when asked nothing more (a
storage array or a hypervisor sends Certify with just its key), and that a client
running its own PKI can name its issuer. Cosmian KMS, the other server this project
measures itself against, takes the issuer from the request's Link attributes; we
do the same:

- a Link of type Private Key Link names the issuer's private key, a private key of
  the caller's own scope; a Link of type Certificate Link may name the issuer's
  certificate (its subject becomes the issuer name, and the new certificate links
  to it). A private key that belongs to the key being certified signs a
  self-signed certificate, marked as a CA, that can then issue others;
- with no issuer named, the cluster's issuing CA signs. Its key pair and its
  self-signed certificate are managed objects of the reserved scope
  ``ISSUING_SCOPE`` that no credential can hold (scope names start with a letter
  or digit), made on first use through the log like any object, sealed by the
  barrier at rest. It is not the cluster CA that signs node and client TLS
  certificates: a certificate from Certify must never be a credential for this
  cluster. Its private key is never served; its certificate is public.

Validate checks a chain given leaf first, as certificates in the request and as
identifiers of certificates of the caller's scope, at the Validity Date (now when
absent): Valid when every signature and date holds and the chain ends at a trust
anchor under the RFC 5280 rules of ``cryptography.x509.verification``; Invalid when
a signature, a date, a CA constraint or a revocation fails; Unknown when it does not
reach an anchor. The anchors are the chain's own last certificate when self-signed
(the client chose it) and the cluster's issuing CA.

The issuing CA's certificate is served as PEM by every node's API at
`GET /v1/sys/certify-ca` (cluster/certify_api.py), not as a KMIP object: a copy in
every scope would be an object nobody asked for, found by their Locates.

Shortcomings: certificates are X.509 only (no PGP, no CRMF requests); a client
issuer makes end-entity certificates only, so a chain has no intermediate CAs
made here; an X.509 Certificate Subject (a DER name) is refused, the text subject
fields are taken instead.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from keyquorum.cluster import pki
from keyquorum.cluster.state import (
    ISSUING_SCOPE,
    CreateFromSources,
    CreateObject,
    CreateObjects,
    ManagedObject,
    StoredAttribute,
)
from keyquorum.cluster.state import UniqueIdentifier as ObjectId

from .. import crypto
from ..errors import KmipError, invalid_field
from ..mapping import to_item
from ..objects import Certificate, KeyBlock, KeyValue, PrivateKey
from ..payloads import (
    CertifyRequestPayload,
    CertifyResponsePayload,
    ReCertifyRequestPayload,
    ReCertifyResponsePayload,
    ValidateRequestPayload,
    ValidateResponsePayload,
)
from ..tables import (
    CertificateRequestType,
    CertificateType,
    CryptographicAlgorithm,
    CryptographicUsageMask,
    DigitalSignatureAlgorithm,
    KeyFormatType,
    LinkType,
    ObjectType,
    ResultReason,
    State,
    Tag,
    ValidityIndicator,
)
from ..ttlv import Item, ItemType, decode_item, encode_item
from .certificate_attributes import certificate_attributes
from .context import Context
from .keypair_ops import requested_attributes
from .object_ops import checked_attributes, server_attributes
from .rekey_ops import link_value, linked

ISSUING_KEY_UID = ObjectId("issuing-ca-private-key")
ISSUING_CERTIFICATE_UID = ObjectId("issuing-ca-certificate")
ISSUING_CA_NAME = "keyquorum Certify issuing CA"

# How long a certificate from Certify lives: a year, the usual life of a device
# certificate (vCenter's KMS client certificates, storage arrays' KMIP clients),
# never past its issuer's certificate.
CERTIFICATE_LIFETIME = timedelta(days=365)

# A chain longer than this is refused rather than walked (real chains have 2 to 4).
MAX_CHAIN = 8

# Hash by Digital Signature Algorithm a client may ask for; SHA-256 otherwise.
_SIGNATURE_HASHES: dict[int, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    DigitalSignatureAlgorithm.SHA_256_WITH_RSA_ENCRYPTION: hashes.SHA256,
    DigitalSignatureAlgorithm.SHA_384_WITH_RSA_ENCRYPTION: hashes.SHA384,
    DigitalSignatureAlgorithm.SHA_512_WITH_RSA_ENCRYPTION: hashes.SHA512,
    DigitalSignatureAlgorithm.ECDSA_WITH_SHA256: hashes.SHA256,
    DigitalSignatureAlgorithm.ECDSA_WITH_SHA384: hashes.SHA384,
    DigitalSignatureAlgorithm.ECDSA_WITH_SHA512: hashes.SHA512,
}

# Subject fields a request may give, by the KMIP attribute that carries each.
_SUBJECT_FIELDS = {
    "Certificate Subject CN": NameOID.COMMON_NAME,
    "Certificate Subject O": NameOID.ORGANIZATION_NAME,
    "Certificate Subject OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "Certificate Subject Email": NameOID.EMAIL_ADDRESS,
    "Certificate Subject C": NameOID.COUNTRY_NAME,
    "Certificate Subject ST": NameOID.STATE_OR_PROVINCE_NAME,
    "Certificate Subject L": NameOID.LOCALITY_NAME,
}

# Request attributes that steer issuance and are not stored as given.
_ISSUANCE_ATTRIBUTES = frozenset({"Link", "Certificate Subject", "X.509 Certificate Subject",
                                  "Digital Signature Algorithm", *_SUBJECT_FIELDS})

PublicKeyType = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class _Issuer:
    """Who signs: a key, the name it signs as, and its certificate's object if any."""

    def __init__(self, key: crypto.PrivateKey, name: x509.Name,
                 certificate: x509.Certificate | None, certificate_uid: str | None,
                 self_signed: bool = False) -> None:
        self.key = key
        self.name = name
        self.certificate = certificate
        self.certificate_uid = certificate_uid
        self.self_signed = self_signed


# Certify and Re-certify.


async def certify(ctx: Context, payload: CertifyRequestPayload) -> CertifyResponsePayload:
    requested = checked_attributes(requested_attributes(payload.template_attribute,
                                                        payload.attributes))

    # First the key to certify and the name to certify it under.
    public_key, subject, key_obj = await _subject_key(ctx, payload, requested)

    # Then who signs, and the certificate.
    issuer = await _issuer(ctx, requested, public_key, key_obj, subject)
    der = _sign(public_key, subject, issuer, requested, ctx.now())

    # Last the object, linked to its public key both ways.
    uid = await _store(ctx, der, requested, key_obj, issuer, replaced=None, offset=None)
    return CertifyResponsePayload(unique_identifier=uid)


async def recertify(ctx: Context, payload: ReCertifyRequestPayload) -> ReCertifyResponsePayload:
    old = await ctx.read(payload.unique_identifier)
    if old.object_type != ObjectType.CERTIFICATE or old.material is None:
        raise KmipError(ResultReason.INVALID_OBJECT_TYPE, "Re-certify renews a certificate")
    previous = _x509(old)
    requested = checked_attributes(requested_attributes(payload.template_attribute,
                                                        payload.attributes))

    # The same key and subject, unless a new request brings others.
    key_obj = None
    public_key: Any = previous.public_key()
    subject = previous.subject
    if payload.certificate_request_value is not None:
        public_key, subject = _from_request(payload.certificate_request_type,
                                            payload.certificate_request_value)
    else:
        key_uid = linked(old, LinkType.PUBLIC_KEY_LINK)
        held = None if key_uid is None else ctx.backend.store.get(ctx.scope, key_uid)
        key_obj = held if held is not None and held.material is not None else None
    ctx.placeholder = old.uid

    # The same issuer: the one the request names, or the one that signed before.
    issuer = await _issuer(ctx, requested, public_key, key_obj, subject, previous=previous)
    der = _sign(public_key, subject, issuer, requested, ctx.now())
    uid = await _store(ctx, der, requested, key_obj, issuer, replaced=old,
                       offset=payload.offset)
    return ReCertifyResponsePayload(unique_identifier=uid)


async def _subject_key(ctx: Context, payload: CertifyRequestPayload,
                       requested: list[StoredAttribute]
                       ) -> tuple[PublicKeyType, x509.Name, ManagedObject | None]:
    """The public key to certify, its subject name, and its object when it has one."""
    if payload.certificate_request_value is not None:
        public_key, subject = _from_request(payload.certificate_request_type,
                                            payload.certificate_request_value)
        return public_key, _subject(requested) or subject, None
    key_obj = await ctx.read(payload.unique_identifier)
    if key_obj.object_type != ObjectType.PUBLIC_KEY or key_obj.material is None:
        raise KmipError(ResultReason.INVALID_OBJECT_TYPE,
                        "Certify signs a public key or a PKCS#10 request")
    public_key = crypto.load_public_key(_key_der(key_obj))
    subject = _subject(requested) or _default_subject(key_obj)
    return public_key, subject, key_obj


def _from_request(kind: int | None, value: bytes) -> tuple[PublicKeyType, x509.Name]:
    """The key and subject of a signed PKCS#10 request (DER, or PEM)."""
    try:
        if kind == CertificateRequestType.PEM:
            request = x509.load_pem_x509_csr(value)
        elif kind in (None, CertificateRequestType.PKCS_10):
            request = x509.load_der_x509_csr(value)
        else:
            raise KmipError(ResultReason.FEATURE_NOT_SUPPORTED,
                            "certificate requests are PKCS#10, DER or PEM")
    except ValueError:
        raise invalid_field("the Certificate Request Value is not a PKCS#10 request") from None
    if not request.is_signature_valid:
        raise invalid_field("the certificate request's signature does not verify")
    public_key = request.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise KmipError(ResultReason.FEATURE_NOT_SUPPORTED, "only RSA and EC keys are certified")
    return public_key, request.subject


def _subject(requested: list[StoredAttribute]) -> x509.Name | None:
    """The subject the request's attributes give: the Certificate Subject CN, O, ...
    fields (2.x attributes, and this server's 1.x names of them), or a 1.0/1.1
    Certificate Subject with its distinguished name as text."""
    fields: list[tuple[Any, str]] = []
    for attribute in requested:
        if attribute.name in _SUBJECT_FIELDS:
            fields.append((_SUBJECT_FIELDS[attribute.name], str(attribute.value.value)))
        if attribute.name == "Certificate Subject":
            names = [c.value for c in attribute.value.value
                     if c.tag == Tag.CERTIFICATE_SUBJECT_DISTINGUISHED_NAME]
            try:
                return x509.Name.from_rfc4514_string(str(names[0])) if names else None
            except ValueError:
                raise invalid_field("the Certificate Subject is not a readable name") from None
        if attribute.name == "X.509 Certificate Subject":
            # Its DER name has no parser in `cryptography`; the text fields do the same.
            raise KmipError(ResultReason.FEATURE_NOT_SUPPORTED,
                            "give the subject as Certificate Subject CN, O, OU, ... attributes")
    if not fields:
        return None
    try:
        return x509.Name([x509.NameAttribute(oid, value) for oid, value in fields])
    except ValueError as error:
        raise invalid_field(f"bad subject name: {error}") from None


def _default_subject(key_obj: ManagedObject) -> x509.Name:
    """CN = the key's first Name, or its identifier: a subject is never empty."""
    name = key_obj.first("Name")
    common = str(name.value[0].value) if name is not None else str(key_obj.uid)
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


async def _issuer(ctx: Context, requested: list[StoredAttribute], public_key: PublicKeyType,
                  key_obj: ManagedObject | None, subject: x509.Name,
                  previous: x509.Certificate | None = None) -> _Issuer:
    """The issuer the request names with its Links, else the one that signed
    ``previous`` (renewing), else the cluster's issuing CA."""
    links = {}
    for value in (a.value for a in requested if a.name == "Link"):
        fields = {child.tag: child.value for child in value.value}
        if Tag.LINK_TYPE not in fields or Tag.LINKED_OBJECT_IDENTIFIER not in fields:
            raise invalid_field("a Link needs a Link Type and a Linked Object Identifier")
        links[int(fields[Tag.LINK_TYPE])] = str(fields[Tag.LINKED_OBJECT_IDENTIFIER])
    private_uid = links.get(LinkType.PRIVATE_KEY_LINK)
    if private_uid is None and previous is not None:
        private_uid = _previous_signer(previous, key_obj)
    if private_uid is None:
        return await _issuing_ca(ctx)

    # A client's own issuer: a usable private key of its scope, named by its
    # certificate or, signing its own public key, by the subject (self-signed).
    key = await _signing_key(ctx, private_uid)
    certificate_uid = links.get(LinkType.CERTIFICATE_LINK)
    if certificate_uid is not None:
        certificate = await _issuer_certificate(ctx, certificate_uid)
        if certificate.public_key() != key.public_key():
            raise invalid_field("the issuer's certificate is not for the issuer's private key")
        return _Issuer(key, certificate.subject, certificate, certificate_uid)
    if key.public_key() == public_key:
        return _Issuer(key, subject, None, None, self_signed=True)
    raise invalid_field("name the issuer's certificate with a Certificate Link")


def _previous_signer(previous: x509.Certificate, key_obj: ManagedObject | None) -> str | None:
    """Who signs a renewal with no issuer named: the cluster's CA again (None), or the
    key's own private key for a self-signed certificate; otherwise the client must say."""
    if previous.issuer == _issuing_name():
        return None
    own = None if key_obj is None else linked(key_obj, LinkType.PRIVATE_KEY_LINK)
    if previous.issuer != previous.subject or own is None:
        raise invalid_field("name the issuer's private key with a Private Key Link "
                            "(and its certificate with a Certificate Link)")
    return own


async def _signing_key(ctx: Context, uid: str) -> crypto.PrivateKey:
    placeholder = ctx.placeholder
    signer = await ctx.read(uid)
    ctx.placeholder = placeholder
    if signer.object_type != ObjectType.PRIVATE_KEY or signer.material is None:
        raise KmipError(ResultReason.INVALID_OBJECT_TYPE,
                        "the Private Key Link must name a private key")
    if signer.state != State.ACTIVE:
        raise KmipError(ResultReason.WRONG_KEY_LIFECYCLE_STATE,
                        "the issuer's private key must be Active")
    mask = signer.first("Cryptographic Usage Mask")
    if mask is not None and not mask.value & (CryptographicUsageMask.CERTIFICATE_SIGN
                                              | CryptographicUsageMask.SIGN):
        raise KmipError(ResultReason.INCOMPATIBLE_CRYPTOGRAPHIC_USAGE_MASK,
                        "the issuer's private key may not sign certificates")
    return crypto.load_private_key(_key_der(signer))


async def _issuer_certificate(ctx: Context, uid: str) -> x509.Certificate:
    placeholder = ctx.placeholder
    held = await ctx.read(uid)
    ctx.placeholder = placeholder
    if held.object_type != ObjectType.CERTIFICATE or held.material is None:
        raise invalid_field("the Certificate Link must name a certificate")
    return _x509(held)


def _sign(public_key: PublicKeyType, subject: x509.Name, issuer: _Issuer,
          requested: list[StoredAttribute], now_seconds: int) -> bytes:
    now = datetime.fromtimestamp(now_seconds, UTC)
    not_after = now + CERTIFICATE_LIFETIME
    if issuer.certificate is not None:
        not_after = min(not_after, issuer.certificate.not_valid_after_utc)
        if not_after <= now:
            raise KmipError(ResultReason.CRYPTOGRAPHIC_FAILURE,
                            "the issuer's certificate has expired")
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - pki.CLOCK_SKEW_ALLOWANCE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=issuer.self_signed, path_length=None),
                       critical=True)
        .add_extension(_key_usage(issuer.self_signed), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer.key.public_key()), critical=False)
    )
    chosen = next((a.value.value for a in requested if a.name == "Digital Signature Algorithm"),
                  None)
    digest = _SIGNATURE_HASHES.get(int(chosen or 0), hashes.SHA256)()
    try:
        certificate = builder.sign(issuer.key, digest)
    except (ValueError, TypeError) as error:
        raise crypto.crypto_failure(f"signing the certificate failed: {error}") from None
    return certificate.public_bytes(serialization.Encoding.DER)


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=not ca,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False)


async def _store(ctx: Context, der: bytes, requested: list[StoredAttribute],
                 key_obj: ManagedObject | None, issuer: _Issuer,
                 replaced: ManagedObject | None, offset: int | None) -> ObjectId:
    """Commit the certificate with its links (and, renewing, those to the old one)."""
    now = ctx.now()
    uid = ObjectId(str(uuid.uuid4()))
    material = to_item(Certificate(certificate_type=CertificateType.X_509,
                                   certificate_value=der), Tag.CERTIFICATE)
    attributes = [a for a in requested if a.name not in _ISSUANCE_ATTRIBUTES]
    attributes += certificate_attributes(der)
    sources: list[tuple[ObjectId, Item]] = []
    if key_obj is not None:
        attributes.append(StoredAttribute("Link", link_value(LinkType.PUBLIC_KEY_LINK,
                                                             key_obj.uid)))
        sources.append((key_obj.uid, link_value(LinkType.CERTIFICATE_LINK, uid)))
    if issuer.certificate_uid is not None:
        attributes.append(StoredAttribute("Link", link_value(LinkType.CERTIFICATE_LINK,
                                                             issuer.certificate_uid)))
    names_moved: tuple[tuple[ObjectId, ObjectId], ...] = ()
    if replaced is not None:
        attributes.append(StoredAttribute("Link", link_value(LinkType.REPLACED_OBJECT_LINK,
                                                             replaced.uid)))
        sources.append((replaced.uid, link_value(LinkType.REPLACEMENT_OBJECT_LINK, uid)))
        names_moved = ((replaced.uid, uid),)
    if offset is not None and "Activation Date" not in {a.name for a in attributes}:
        attributes.append(StoredAttribute("Activation Date", Item(
            Tag.ATTRIBUTE_VALUE, ItemType.DATE_TIME, now + offset)))
    attributes += server_attributes(material, now, generated=False, given=attributes)
    await ctx.write(CreateFromSources(
        scope=ctx.scope,
        objects=(CreateObject(scope=ctx.scope, uid=uid, object_type=ObjectType.CERTIFICATE,
                              attributes=tuple(attributes), material=encode_item(material),
                              now=now),),
        links=tuple(sources), names_moved=names_moved, now=now))
    return uid


# The cluster's issuing CA.


def _issuing_name() -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUING_CA_NAME)])


async def _issuing_ca(ctx: Context) -> _Issuer:
    """The cluster's issuing CA, made through the log the first time it is needed.

    Two nodes may make one at once: both commands use the same identifiers, the
    state takes the first and refuses the second, and both then use the first.
    """
    await ctx.barrier()
    if ctx.backend.store.get(ISSUING_SCOPE, ISSUING_KEY_UID) is None:
        authority = pki.create_ca(ISSUING_CA_NAME, pki.KeyType.EC_P256)
        now = ctx.now()
        key_der = authority.private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        certificate_der = authority.certificate.public_bytes(serialization.Encoding.DER)
        key_item = to_item(PrivateKey(key_block=KeyBlock(
            key_format_type=KeyFormatType.PKCS_8, key_value=KeyValue(key_material=key_der),
            cryptographic_algorithm=CryptographicAlgorithm.EC, cryptographic_length=256)),
            Tag.PRIVATE_KEY)
        certificate_item = to_item(Certificate(certificate_type=CertificateType.X_509,
                                               certificate_value=certificate_der),
                                   Tag.CERTIFICATE)
        placeholder = ctx.placeholder
        try:
            await ctx.write(CreateObjects((
                CreateObject(ISSUING_SCOPE, ISSUING_KEY_UID, ObjectType.PRIVATE_KEY, (),
                             encode_item(key_item), now),
                CreateObject(ISSUING_SCOPE, ISSUING_CERTIFICATE_UID, ObjectType.CERTIFICATE,
                             (), encode_item(certificate_item), now),
            )))
        except KmipError as error:
            if error.reason != ResultReason.OBJECT_ALREADY_EXISTS:
                raise
        ctx.placeholder = placeholder
    return _Issuer(crypto.load_private_key(_issuing_material(ctx, ISSUING_KEY_UID)),
                   _issuing_name(), _issuing_certificate(ctx), None)


def _issuing_material(ctx: Context, uid: ObjectId) -> bytes:
    obj = ctx.backend.store.get(ISSUING_SCOPE, uid)
    if obj is None or obj.material is None:
        raise KmipError(ResultReason.GENERAL_FAILURE, "the issuing CA is missing")
    plain = ctx.backend.open_material(obj.material, f"object/{ISSUING_SCOPE}/{uid}".encode())
    item = decode_item(plain)
    if uid == ISSUING_CERTIFICATE_UID:
        return bytes(next(c.value for c in item.value if c.tag == Tag.CERTIFICATE_VALUE))
    block = next(c for c in item.value if c.tag == Tag.KEY_BLOCK)
    value = next(c for c in block.value if c.tag == Tag.KEY_VALUE)
    return bytes(next(c.value for c in value.value if c.tag == Tag.KEY_MATERIAL))


def _issuing_certificate(ctx: Context) -> x509.Certificate | None:
    if ctx.backend.store.get(ISSUING_SCOPE, ISSUING_CERTIFICATE_UID) is None:
        return None
    return x509.load_der_x509_certificate(_issuing_material(ctx, ISSUING_CERTIFICATE_UID))


# Validate.


async def validate(ctx: Context, payload: ValidateRequestPayload) -> ValidateResponsePayload:
    chain, revoked = await _chain(ctx, payload)
    when = payload.validity_date or datetime.fromtimestamp(ctx.now(), UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return ValidateResponsePayload(validity_indicator=_validity(ctx, chain, revoked, when))


async def _chain(ctx: Context, payload: ValidateRequestPayload
                 ) -> tuple[list[x509.Certificate], bool]:
    """The chain, leaf first: the request's certificates, then the named ones."""
    given = list(payload.certificates)
    if len(given) + len(payload.unique_identifiers) > MAX_CHAIN:
        raise invalid_field(f"a chain of more than {MAX_CHAIN} certificates is not validated")
    if not given and not payload.unique_identifiers:
        raise invalid_field("Validate needs certificates or their unique identifiers")
    chain = []
    for certificate in given:
        if certificate.certificate_type != CertificateType.X_509:
            raise KmipError(ResultReason.FEATURE_NOT_SUPPORTED, "only X.509 chains validate")
        chain.append(_load(certificate.certificate_value))
    revoked = False
    for requested in payload.unique_identifiers:
        obj = await ctx.read(requested)
        if obj.object_type != ObjectType.CERTIFICATE:
            raise KmipError(ResultReason.INVALID_OBJECT_TYPE, "Validate takes certificates")
        if obj.state in (State.COMPROMISED, State.DESTROYED_COMPROMISED, State.DEACTIVATED):
            revoked = True
        if obj.material is None:
            raise KmipError(ResultReason.OBJECT_DESTROYED, "a certificate was destroyed")
        chain.append(_x509(obj))
    return chain, revoked


def _validity(ctx: Context, chain: list[x509.Certificate], revoked: bool,
              when: datetime) -> ValidityIndicator:
    # First what holds or fails without an anchor: each link's signature and dates.
    if revoked:
        return ValidityIndicator.INVALID
    for certificate in chain:
        if not certificate.not_valid_before_utc <= when <= certificate.not_valid_after_utc:
            return ValidityIndicator.INVALID
    for child, parent in zip(chain, chain[1:], strict=False):
        if not _issued_by(child, parent):
            return ValidityIndicator.INVALID

    # Then the anchor: the chain's own self-signed root, or the issuing CA.
    last = chain[-1]
    anchors = [last] if _issued_by(last, last) else []
    issuing = _issuing_certificate(ctx)
    if issuing is not None and last != issuing and _issued_by(last, issuing):
        anchors.append(issuing)
    if not anchors:
        return ValidityIndicator.UNKNOWN
    if len(chain) == 1 and anchors == [last]:
        return ValidityIndicator.VALID

    # Last the RFC 5280 path rules (CA constraints, key usage) from leaf to anchor.
    intermediates = [c for c in chain[1:] if c not in anchors]
    verifier = (
        PolicyBuilder().store(Store(anchors)).time(when).max_chain_depth(MAX_CHAIN)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                            ee_policy=ExtensionPolicy.permit_all())
        .build_client_verifier()
    )
    try:
        verifier.verify(chain[0], intermediates)
    except VerificationError:
        return ValidityIndicator.INVALID
    return ValidityIndicator.VALID


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


# Reading stored objects.


def _x509(obj: ManagedObject) -> x509.Certificate:
    assert obj.material is not None
    item = decode_item(obj.material)
    value = next((c.value for c in item.value if c.tag == Tag.CERTIFICATE_VALUE), None)
    if not isinstance(value, bytes):
        raise KmipError(ResultReason.INVALID_OBJECT_TYPE, "the object is not a certificate")
    return _load(value)


def _load(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        raise invalid_field("a certificate is not readable X.509 DER") from None


def _key_der(obj: ManagedObject) -> bytes:
    assert obj.material is not None
    item = decode_item(obj.material)
    block = next((c for c in item.value if c.tag == Tag.KEY_BLOCK), None)
    value = None if block is None else next(
        (c for c in block.value if c.tag == Tag.KEY_VALUE), None)
    material = None if value is None or value.type != ItemType.STRUCTURE else next(
        (c.value for c in value.value if c.tag == Tag.KEY_MATERIAL), None)
    if not isinstance(material, bytes):
        raise KmipError(ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED,
                        "the key must be stored as PKCS#1, PKCS#8 or X.509 DER")
    return material
