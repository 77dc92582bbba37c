"""Who a KMIP client is: its verified certificate mapped to a scope and a role.

OpenSSL has checked the chain up to one of the CAs the listener trusts (the cluster
CA, the imported CAs, the node config's CA). That is not enough to be let in: the
certificate must also be a credential of the cluster CA that is neither revoked nor
orphaned (its role deleted), or come from an imported CA whose rule names a scope
and role that exist. Anything else is refused at the handshake
(``KmipFrontend(known=...)``) and, should it change while a connection is open, at
its next request (``KmipService(grant_of=...)``).

A node answers from its own copy of the state, which may trail the cluster: just
restarted and replaying its log, or a follower that has not yet applied a credential
generated through another node a moment ago. Before it refuses a certificate it does
not know, ``admits`` catches up with the leader (a read barrier) and looks again; a
node that cannot reach a quorum refuses, failing closed.

Serials are only unique per issuer, so a credential is matched by serial *and* by
its signature from the cluster CA: a certificate from the node config's CA that
happens to carry a credential's serial gets nothing. Which CA signed a certificate
never changes, so that answer is cached per certificate; the rest (revocation,
role, scope) is read from the replicated state on every call.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from keyquorum.kmip.authorization import Grant
from keyquorum.kmip.frontend import ClientIdentity

from .state import ScopeName
from .tenancy import ImportedCa, MappingRule, SubjectField, TenancyState

log = logging.getLogger("keyquorum.kmip.access")

# Certificates whose issuer is remembered. vCenter reconnects per request with the
# same few certificates; a few thousand distinct clients fit in well under a MiB.
ISSUER_CACHE_SIZE = 4096

_FIELD_OIDS = {
    SubjectField.CN: NameOID.COMMON_NAME,
    SubjectField.O: NameOID.ORGANIZATION_NAME,
    SubjectField.OU: NameOID.ORGANIZATIONAL_UNIT_NAME,
    SubjectField.UID: NameOID.USER_ID,
}

# The issuer of a certificate: the cluster CA, an imported CA by name, or nobody.
_CLUSTER = "cluster"


class KmipAccess:
    """Maps client certificates to grants from the node's copy of the tenancy state."""

    def __init__(
        self, tenancy: TenancyState, catch_up: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self._tenancy = tenancy
        # Waits until this node applied what the cluster had committed; raises if it can't.
        self._catch_up = catch_up
        self._issuers: OrderedDict[str, str | None] = OrderedDict()
        self._generation = -1

    def known(self, identity: ClientIdentity) -> bool:
        return self.grant(identity) is not None

    async def admits(self, identity: ClientIdentity) -> bool:
        """Whether the handshake may go on: known here, or known once caught up."""
        if self.known(identity):
            return True
        if self._catch_up is None:
            return False
        try:
            await self._catch_up()
        except Exception as error:
            log.info("catch_up_failed reason=%s", type(error).__name__)
            return False
        return self.known(identity)

    def grant(self, identity: ClientIdentity) -> Grant | None:
        certificate = _load(identity.certificate_der)
        issuer = self._issuer(identity.certificate_der, certificate)
        if issuer is None:
            return None
        if issuer == _CLUSTER:
            return self._credential_grant(certificate.serial_number)
        for imported in self._tenancy.imported_cas():
            if imported.name == issuer:
                return self._rule_grant(imported, certificate)
        return None

    def _credential_grant(self, serial: int) -> Grant | None:
        credential = self._tenancy.credential(serial)
        if credential is None or credential.revoked_at is not None:
            return None
        role = self._tenancy.role(credential.scope, credential.role)
        if role is None:
            return None
        return Grant(credential.scope, role.settings.flags, f"credential:{serial:x}",
                     credential.role)

    def _rule_grant(self, imported: ImportedCa, certificate: x509.Certificate) -> Grant | None:
        # Shortcoming: one certificate of an imported CA cannot be revoked here (no
        # CRL or OCSP is read); remove the CA or delete the role to cut its clients off.
        rule: MappingRule = imported.rule
        scope = rule.scope or _subject_field(certificate, rule.scope_field)
        role_name = rule.role or _subject_field(certificate, rule.role_field)
        if scope is None or role_name is None:
            return None
        role = self._tenancy.role(scope, role_name)
        if role is None:
            return None
        return Grant(ScopeName(scope), role.settings.flags, f"imported:{imported.name}",
                     role_name)

    def _issuer(self, der: bytes, certificate: x509.Certificate) -> str | None:
        # A new CA or a removed import changes who signed what: start afresh.
        if self._generation != self._tenancy.tls_generation:
            self._issuers.clear()
            self._generation = self._tenancy.tls_generation

        fingerprint = hashlib.sha256(der).hexdigest()
        if fingerprint in self._issuers:
            self._issuers.move_to_end(fingerprint)
            return self._issuers[fingerprint]
        issuer = self._find_issuer(certificate)
        self._issuers[fingerprint] = issuer
        if len(self._issuers) > ISSUER_CACHE_SIZE:
            self._issuers.popitem(last=False)
        return issuer

    def _find_issuer(self, certificate: x509.Certificate) -> str | None:
        cluster_ca = self._tenancy.cluster_ca()
        if cluster_ca is not None and _signed_by(certificate, cluster_ca.cert_pem):
            return _CLUSTER
        for imported in self._tenancy.imported_cas():
            if _signed_by(certificate, imported.cert_pem):
                return imported.name
        return None


@lru_cache(maxsize=64)
def _load_ca(cert_pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(cert_pem)


def _load(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def _signed_by(certificate: x509.Certificate, ca_pem: bytes) -> bool:
    try:
        certificate.verify_directly_issued_by(_load_ca(ca_pem))
    except (ValueError, TypeError, InvalidSignature):
        return False
    except Exception as error:  # an unusual key type: not ours, whatever it is
        log.info("issuer_check_failed error=%s", type(error).__name__)
        return False
    return True


def _subject_field(certificate: x509.Certificate, field: SubjectField | None) -> str | None:
    if field is None:
        return None
    values = certificate.subject.get_attributes_for_oid(_FIELD_OIDS[field])
    if len(values) != 1:
        # Two OUs could name two scopes: refuse rather than guess.
        return None
    value = values[0].value
    return value if isinstance(value, str) else None
