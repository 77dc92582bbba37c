"""Archive, Recover, Set Attribute, Import, Export and Templates through a 3-node cluster.

Each change is sent to one follower and observed on the other: it went through the
Raft log (forwarded to the leader, applied everywhere), not into one node's memory.
"""

from __future__ import annotations

from typing import Any

import pytest
from harness import Cluster

from keyquorum.kmip.attributes import Attribute, Attributes, Name, NewAttribute, TemplateAttribute
from keyquorum.kmip.objects import Template
from keyquorum.kmip.payloads import (
    ActivateRequestPayload,
    ArchiveRequestPayload,
    CreateRequestPayload,
    ExportRequestPayload,
    GetAttributesRequestPayload,
    GetRequestPayload,
    ImportRequestPayload,
    RecoverRequestPayload,
    RegisterRequestPayload,
    SetAttributeRequestPayload,
)
from keyquorum.kmip.tables import (
    CryptographicAlgorithm,
    ObjectType,
    Operation,
    ResultReason,
    ResultStatus,
    Tag,
)
from keyquorum.kmip.ttlv import Item, ItemType

V1_4 = (1, 4)
V2_1 = (2, 1)


@pytest.fixture(scope="module")
def followers(cluster: Cluster) -> tuple[str, str]:
    first, second = cluster.followers(cluster.leader())[:2]
    return first, second


def ok(cluster: Cluster, node: str, operation: Operation, payload: object,
       version: tuple[int, int] = V2_1) -> Any:
    answer = cluster.call(node, operation, payload, version)
    assert answer.result_status == ResultStatus.SUCCESS, answer.result_message
    return answer.payload


def new_active_key(cluster: Cluster, node: str) -> str:
    created = ok(cluster, node, Operation.CREATE, CreateRequestPayload(
        object_type=ObjectType.SYMMETRIC_KEY, attributes=Attributes(items=(
            Item(Tag.CRYPTOGRAPHIC_ALGORITHM, ItemType.ENUMERATION,
                 int(CryptographicAlgorithm.AES)),
            Item(Tag.CRYPTOGRAPHIC_LENGTH, ItemType.INTEGER, 256),
            Item(Tag.CRYPTOGRAPHIC_USAGE_MASK, ItemType.INTEGER, 12),
        ))))
    uid: str = created.unique_identifier
    ok(cluster, node, Operation.ACTIVATE, ActivateRequestPayload(unique_identifier=uid))
    return uid


def test_archive_on_one_node_withholds_the_key_on_another_until_recovered(
    cluster: Cluster, followers: tuple[str, str]
) -> None:
    one, other = followers
    uid = new_active_key(cluster, one)

    ok(cluster, one, Operation.ARCHIVE, ArchiveRequestPayload(unique_identifier=uid))
    withheld = cluster.call(other, Operation.GET, GetRequestPayload(unique_identifier=uid),
                            V2_1)
    assert withheld.result_reason == ResultReason.OBJECT_ARCHIVED

    ok(cluster, other, Operation.RECOVER, RecoverRequestPayload(unique_identifier=uid))
    ok(cluster, one, Operation.GET, GetRequestPayload(unique_identifier=uid))


def test_set_attribute_on_one_node_is_read_on_another(
    cluster: Cluster, followers: tuple[str, str]
) -> None:
    one, other = followers
    uid = new_active_key(cluster, one)

    ok(cluster, one, Operation.SET_ATTRIBUTE, SetAttributeRequestPayload(
        unique_identifier=uid, new_attribute=NewAttribute(items=(
            Item(Tag.DESCRIPTION, ItemType.TEXT_STRING, "replicated"),))))

    read = ok(cluster, other, Operation.GET_ATTRIBUTES, GetAttributesRequestPayload(
        unique_identifier=uid, attribute_references=(Tag.DESCRIPTION,)))
    assert [i.value for i in read.attributes.items] == ["replicated"]


def test_an_export_imported_on_another_node_is_the_same_key(
    cluster: Cluster, followers: tuple[str, str]
) -> None:
    one, other = followers
    uid = new_active_key(cluster, one)
    exported = ok(cluster, one, Operation.EXPORT, ExportRequestPayload(unique_identifier=uid))

    ok(cluster, other, Operation.IMPORT, ImportRequestPayload(
        unique_identifier=f"{uid}-copy", object_type=ObjectType.SYMMETRIC_KEY,
        attributes=exported.attributes, object=exported.object))

    copy = ok(cluster, one, Operation.GET, GetRequestPayload(unique_identifier=f"{uid}-copy"))
    assert copy.object == exported.object


def test_a_template_registered_on_one_node_shapes_a_key_created_on_another(
    cluster: Cluster, followers: tuple[str, str]
) -> None:
    one, other = followers
    aes_128 = (
        Attribute(name="Cryptographic Algorithm", value=Item(
            Tag.ATTRIBUTE_VALUE, ItemType.ENUMERATION, int(CryptographicAlgorithm.AES))),
        Attribute(name="Cryptographic Length",
                  value=Item(Tag.ATTRIBUTE_VALUE, ItemType.INTEGER, 128)),
    )
    name = Attribute(name="Name", value=Item(Tag.ATTRIBUTE_VALUE, ItemType.STRUCTURE, [
        Item(Tag.NAME_VALUE, ItemType.TEXT_STRING, "cluster-aes-128"),
        Item(Tag.NAME_TYPE, ItemType.ENUMERATION, 1)]))
    ok(cluster, one, Operation.REGISTER, RegisterRequestPayload(
        object_type=ObjectType.TEMPLATE, template_attribute=TemplateAttribute(attributes=(name,)),
        object=Template(attributes=aes_128)), V1_4)

    created = ok(cluster, other, Operation.CREATE, CreateRequestPayload(
        object_type=ObjectType.SYMMETRIC_KEY, template_attribute=TemplateAttribute(
            names=(Name(name_value="cluster-aes-128", name_type=1),))), V1_4)

    key = ok(cluster, one, Operation.GET,
             GetRequestPayload(unique_identifier=created.unique_identifier), V1_4)
    assert len(key.object.key_block.key_value.key_material) == 16
