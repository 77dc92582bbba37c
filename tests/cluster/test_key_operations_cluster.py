"""Re-key, Derive Key, key wrapping, Certify and Validate through a real 3-node cluster.

PyKMIP's client (an independent KMIP implementation) drives the operations it has
(Re-key, Derive Key, Register, Get) against a follower; Certify and Validate, which
PyKMIP's client lacks, go as our own TTLV over the same mutual TLS. Each object is
then read back through another node, which proves it was committed through the
log with its links and material, not kept on the node that made it.
"""

from __future__ import annotations

import hashlib
import secrets
import ssl
import urllib.request
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, keywrap
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from harness import Cluster
from kmip.core import enums
from kmip.core.attributes import PrivateKeyUniqueIdentifier
from kmip.pie import objects

from keyquorum.kmip.attributes import Attribute, TemplateAttribute
from keyquorum.kmip.objects import (
    CryptographicParameters,
    EncryptionKeyInformation,
    KeyWrappingSpecification,
)
from keyquorum.kmip.payloads import (
    CertifyRequestPayload,
    CreateKeyPairRequestPayload,
    GetAttributesRequestPayload,
    GetRequestPayload,
    ValidateRequestPayload,
)
from keyquorum.kmip.tables import (
    BlockCipherMode,
    CryptographicAlgorithm,
    LinkType,
    Operation,
    ResultStatus,
    Tag,
    ValidityIndicator,
    WrappingMethod,
)
from keyquorum.kmip.ttlv import Item, ItemType, decode_item


@pytest.fixture(scope="module")
def nodes(cluster: Cluster) -> tuple[str, str]:
    """A follower to send to, and another node to read back from."""
    leader = cluster.leader()
    follower = cluster.followers(leader)[0]
    return follower, leader


def ask(cluster: Cluster, node_id: str, operation: Operation, payload: object) -> Any:
    item = cluster.call(node_id, operation, payload)
    assert item.result_status == ResultStatus.SUCCESS, item.result_message
    return item.payload


def rsa_pair(cluster: Cluster, node_id: str) -> Any:
    rsa = Attribute(name="Cryptographic Algorithm", value=Item(
        Tag.ATTRIBUTE_VALUE, ItemType.ENUMERATION, CryptographicAlgorithm.RSA))
    bits = Attribute(name="Cryptographic Length", value=Item(
        Tag.ATTRIBUTE_VALUE, ItemType.INTEGER, 2048))
    return ask(cluster, node_id, Operation.CREATE_KEY_PAIR, CreateKeyPairRequestPayload(
        common_template_attribute=TemplateAttribute(attributes=(rsa, bits))))


def link_of(cluster: Cluster, node_id: str, uid: str, link_type: LinkType) -> str:
    # PyKMIP's client cannot decode a Link attribute: asked in our own TTLV.
    answer = ask(cluster, node_id, Operation.GET_ATTRIBUTES, GetAttributesRequestPayload(
        unique_identifier=uid, attribute_names=("Link",)))
    for attribute in answer.attribute_list:
        fields = {child.tag: child.value for child in attribute.value.value}
        if fields[Tag.LINK_TYPE] == link_type:
            return str(fields[Tag.LINKED_OBJECT_IDENTIFIER])
    raise AssertionError(f"no {link_type.name} on {uid}")


def test_pykmip_rekeys_on_a_follower_and_every_node_sees_the_link(
    cluster: Cluster, nodes: tuple[str, str],
) -> None:
    follower, other = nodes
    with cluster.pykmip(follower) as client:
        old = client.create(enums.CryptographicAlgorithm.AES, 256, name="rekey-cluster")
        client.activate(old)
        new = client.rekey(uid=old, offset=0)
        assert new != old

    with cluster.pykmip(other) as client:
        assert len(client.get(new).value) == 32
        assert client.get(new).value != client.get(old).value
        assert link_of(cluster, other, old, LinkType.REPLACEMENT_OBJECT_LINK) == new
        assert link_of(cluster, other, new, LinkType.REPLACED_OBJECT_LINK) == old
        _, state = client.get_attributes(new, ["State"])
        assert state[0].attribute_value.value == enums.State.ACTIVE  # Offset 0: active now


def test_pykmip_derives_with_pbkdf2_and_the_key_is_replicated(
    cluster: Cluster, nodes: tuple[str, str],
) -> None:
    follower, other = nodes
    password = b"a password only this test knows"
    with cluster.pykmip(follower) as client:
        secret = client.register(objects.SecretData(
            password, enums.SecretDataType.PASSWORD,
            masks=[enums.CryptographicUsageMask.DERIVE_KEY]))
        client.activate(secret)
        derived = client.derive_key(
            enums.ObjectType.SYMMETRIC_KEY, [secret], enums.DerivationMethod.PBKDF2,
            {"cryptographic_parameters": {
                "hashing_algorithm": enums.HashingAlgorithm.SHA_256},
             "salt": b"pepper", "iteration_count": 4096},
            cryptographic_algorithm=enums.CryptographicAlgorithm.AES, cryptographic_length=128)

    with cluster.pykmip(other) as client:
        expected = PBKDF2HMAC(hashes.SHA256(), 16, b"pepper", 4096).derive(password)
        assert client.get(derived).value == expected
        assert link_of(cluster, other, derived,
                       LinkType.DERIVATION_BASE_OBJECT_LINK) == secret


def test_a_key_wrapped_on_one_node_unwraps_with_the_kek_from_another(
    cluster: Cluster, nodes: tuple[str, str],
) -> None:
    follower, other = nodes
    with cluster.pykmip(follower) as client:
        kek = client.create(enums.CryptographicAlgorithm.AES, 256, cryptographic_usage_mask=[
            enums.CryptographicUsageMask.WRAP_KEY, enums.CryptographicUsageMask.UNWRAP_KEY])
        key = client.create(enums.CryptographicAlgorithm.AES, 256)
        client.activate(kek)

    spec = KeyWrappingSpecification(
        wrapping_method=WrappingMethod.ENCRYPT,
        encryption_key_information=EncryptionKeyInformation(
            unique_identifier=kek,
            cryptographic_parameters=CryptographicParameters(
                block_cipher_mode=BlockCipherMode.NISTKEYWRAP)))
    wrapped = ask(cluster, follower, Operation.GET, GetRequestPayload(
        unique_identifier=key, key_wrapping_specification=spec)).object.key_block.key_value

    with cluster.pykmip(other) as client:
        opened = decode_item(keywrap.aes_key_unwrap(client.get(kek).value, wrapped))
        assert opened.value[0].value == client.get(key).value


def test_certify_on_a_follower_validates_on_another_node(
    cluster: Cluster, nodes: tuple[str, str],
) -> None:
    follower, other = nodes
    pair = rsa_pair(cluster, follower)
    subject = Attribute(name="Certificate Subject CN", value=Item(
        Tag.ATTRIBUTE_VALUE, ItemType.TEXT_STRING, "cluster-test"))

    # Two certificates from two nodes: the issuing CA is one for the whole cluster.
    first = ask(cluster, follower, Operation.CERTIFY, CertifyRequestPayload(
        unique_identifier=pair.public_key_unique_identifier,
        template_attribute=TemplateAttribute(attributes=(subject,)))).unique_identifier
    second = ask(cluster, other, Operation.CERTIFY, CertifyRequestPayload(
        unique_identifier=pair.public_key_unique_identifier)).unique_identifier

    issuers = set()
    for uid in (first, second):
        got = ask(cluster, other, Operation.GET, GetRequestPayload(unique_identifier=uid))
        certificate = x509.load_der_x509_certificate(got.object.certificate_value)
        issuers.add(hashlib.sha256(certificate.extensions.get_extension_for_class(
            x509.AuthorityKeyIdentifier).value.key_identifier or b"").hexdigest())
    assert len(issuers) == 1

    for node_id in (follower, other):
        answer = ask(cluster, node_id, Operation.VALIDATE, ValidateRequestPayload(
            unique_identifiers=(first,)))
        assert answer.validity_indicator == ValidityIndicator.VALID


def test_pykmip_rekeys_a_key_pair_and_both_old_keys_point_to_the_new_ones(
    cluster: Cluster, nodes: tuple[str, str],
) -> None:
    follower, other = nodes
    with cluster.pykmip(follower) as client:
        public, private = client.create_key_pair(enums.CryptographicAlgorithm.RSA, 2048)
        result = client.proxy.rekey_key_pair(
            private_key_uuid=PrivateKeyUniqueIdentifier(private))
        assert result.result_status.value == enums.ResultStatus.SUCCESS
        new_private = result.private_key_uuid
        new_public = result.public_key_uuid

    with cluster.pykmip(other) as client:
        assert client.get(new_public).value != client.get(public).value
        assert client.get(new_private).value != client.get(private).value
    assert link_of(cluster, other, private, LinkType.REPLACEMENT_OBJECT_LINK) == new_private
    assert link_of(cluster, other, public, LinkType.REPLACEMENT_OBJECT_LINK) == new_public
    assert link_of(cluster, other, new_private, LinkType.PUBLIC_KEY_LINK) == new_public


def test_pykmip_registers_a_key_wrapped_under_a_kek_the_cluster_holds(
    cluster: Cluster, nodes: tuple[str, str],
) -> None:
    follower, other = nodes
    secret = secrets.token_bytes(32)
    with cluster.pykmip(follower) as client:
        kek = client.create(enums.CryptographicAlgorithm.AES, 256, cryptographic_usage_mask=[
            enums.CryptographicUsageMask.WRAP_KEY, enums.CryptographicUsageMask.UNWRAP_KEY])
        client.activate(kek)
        wrapped = keywrap.aes_key_wrap(client.get(kek).value, secret)

    with cluster.pykmip(other) as client:
        uid = client.register(objects.SymmetricKey(
            enums.CryptographicAlgorithm.AES, 256, wrapped, key_wrapping_data={
                "wrapping_method": enums.WrappingMethod.ENCRYPT,
                "encryption_key_information": {
                    "unique_identifier": kek,
                    "cryptographic_parameters": {
                        "block_cipher_mode": enums.BlockCipherMode.NIST_KEY_WRAP}},
                "encoding_option": enums.EncodingOption.NO_ENCODING}))

    with cluster.pykmip(follower) as client:
        assert client.get(uid).value == secret


def test_every_node_serves_the_issuing_ca_that_signed_certify(
    cluster: Cluster, nodes: tuple[str, str],
) -> None:
    follower, other = nodes
    pair = rsa_pair(cluster, follower)
    uid = ask(cluster, follower, Operation.CERTIFY, CertifyRequestPayload(
        unique_identifier=pair.public_key_unique_identifier)).unique_identifier
    issued = x509.load_der_x509_certificate(ask(cluster, other, Operation.GET, GetRequestPayload(
        unique_identifier=uid)).object.certificate_value)

    for node_id in (follower, other):
        context = ssl.create_default_context(cafile=str(cluster.ca))
        url = cluster.nodes[node_id].api + "/v1/sys/certify-ca"
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            authority = x509.load_pem_x509_certificate(response.read())
        issued.verify_directly_issued_by(authority)
        # Not the cluster CA, whose certificates are credentials for this cluster.
        assert authority != x509.load_pem_x509_certificate(cluster.ca.read_bytes())
