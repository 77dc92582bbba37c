"""The attributes a server reads out of an X.509 certificate it stores.

KMIP 1.4 section 3.9 and 2.1 section 4.3: Certificate Length and the subject's and
issuer's distinguished-name fields are set by the server from the certificate, and
a client may not change them (cluster/state.py lists them as server owned).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

from keyquorum.cluster.state import StoredAttribute

from ..tables import Tag
from ..ttlv import Item, ItemType

# The distinguished-name fields with a KMIP attribute each, by the suffix of its name.
_NAME_FIELDS = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "Email": NameOID.EMAIL_ADDRESS,
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
}


def certificate_attributes(der: bytes) -> list[StoredAttribute]:
    """Certificate Length and the subject and issuer fields of a DER certificate.

    A certificate the library cannot parse still gets its length: Register stores
    what the client sent, and parsing is only for these descriptive attributes.
    """
    found = [StoredAttribute("Certificate Length", _value(ItemType.INTEGER, len(der)))]
    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError:
        return found
    for role, name in (("Subject", certificate.subject), ("Issuer", certificate.issuer)):
        for suffix, oid in _NAME_FIELDS.items():
            for entry in name.get_attributes_for_oid(oid):
                text = entry.value if isinstance(entry.value, str) else entry.value.decode()
                found.append(StoredAttribute(f"Certificate {role} {suffix}",
                                             _value(ItemType.TEXT_STRING, text)))
    return found


def _value(item_type: ItemType, value: object) -> Item:
    return Item(Tag.ATTRIBUTE_VALUE, item_type, value)
