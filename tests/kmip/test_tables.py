"""The generated tag, enumeration and mask tables against the OASIS test cases.

The OASIS KMIP 1.4 and 2.1 profile test cases are written in the XML encoding,
so every element name, every enumeration value name and every mask bit name
in them must resolve through the tables; a number the tables get wrong would
put a wrong name here. The vCenter capture checks the same from the wire side.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyquorum.kmip import gen_tables
from keyquorum.kmip.tables import (
    ATTRIBUTE_TAGS,
    TAG_ENUMS,
    TAG_MASKS,
    TAG_SINCE,
    TAG_SPEC_NAMES,
    TAG_XML_NAMES,
    TAGS_BY_XML_NAME,
    VALUE_SINCE,
    VALUE_XML_NAMES,
    VALUES_BY_XML_NAME,
    CryptographicAlgorithm,
    CryptographicUsageMask,
    HashingAlgorithm,
    LinkType,
    ObjectType,
    Operation,
    ProtectionStorageMask,
    ResultReason,
    ResultStatus,
    State,
    Tag,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CONFORMANCE = SHARED / "conformance"
VCENTER = SHARED / "interop" / "vcenter-7.0.3-requests.txt"
CONFORMANCE_FILES = sorted(CONFORMANCE.rglob("*.xml"))

# Elements that wrap the test cases and are no KMIP tag.
WRAPPERS = {"KMIP"}


def file_id(path: Path) -> str:
    return str(path.relative_to(CONFORMANCE))


def elements(path: Path) -> Iterator[tuple[ET.Element, ET.Element | None]]:
    """Every element of a test case file with its parent."""

    def walk(
        element: ET.Element, parent: ET.Element | None
    ) -> Iterator[tuple[ET.Element, ET.Element | None]]:
        yield element, parent
        for child in element:
            yield from walk(child, element)

    yield from walk(ET.parse(path).getroot(), None)


def value_tag(element: ET.Element, parent: ET.Element | None) -> int | None:
    """The tag whose enumeration or mask the element's value uses.

    A 1.x Attribute Value takes its meaning from the sibling Attribute Name;
    None means a custom ("x-") attribute, whose values the tables cannot know.
    """
    if element.tag != "AttributeValue":
        return TAGS_BY_XML_NAME[element.tag]
    assert parent is not None
    name = parent.find("AttributeName")
    assert name is not None, "an Attribute Value without an Attribute Name"
    text = name.get("value", "")
    if text.startswith(("x-", "y-")):
        return None
    return ATTRIBUTE_TAGS[text]


def is_number(text: str) -> bool:
    try:
        int(text, 0)
    except ValueError:
        return False
    return True


def test_tables_are_not_stale() -> None:
    assert gen_tables.main(["--check"]) == 0


def test_conformance_files_are_there() -> None:
    # The acceptance check must not pass by finding nothing to check.
    assert len(CONFORMANCE_FILES) == 168, CONFORMANCE


@pytest.mark.parametrize("path", CONFORMANCE_FILES, ids=file_id)
def test_every_element_is_a_known_tag(path: Path) -> None:
    unknown = {
        element.tag
        for element, _ in elements(path)
        if element.tag not in WRAPPERS
        and "tag" not in element.attrib
        and element.tag not in TAGS_BY_XML_NAME
    }
    assert not unknown


@pytest.mark.parametrize("path", CONFORMANCE_FILES, ids=file_id)
def test_every_enumeration_value_is_known(path: Path) -> None:
    unknown = []
    for element, parent in elements(path):
        text = element.get("value", "")
        if element.get("type") != "Enumeration" or text.startswith("0x"):
            continue
        tag = value_tag(element, parent)
        if tag is None:
            continue
        enum = TAG_ENUMS.get(tag)
        if enum is None or text not in VALUES_BY_XML_NAME[enum]:
            unknown.append((element.tag, text))
    assert not unknown


@pytest.mark.parametrize("path", CONFORMANCE_FILES, ids=file_id)
def test_every_mask_bit_is_known(path: Path) -> None:
    unknown = []
    for element, parent in elements(path):
        text = element.get("value", "")
        if element.get("type") != "Integer" or is_number(text):
            continue
        tag = value_tag(element, parent)
        if tag is None:
            continue
        mask = TAG_MASKS.get(tag)
        bits = VALUES_BY_XML_NAME[mask] if mask else {}
        unknown += [(element.tag, bit) for bit in text.split() if bit not in bits]
    assert not unknown


def ttlv_items(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(tag, type, value) of every item in a TTLV message, depth first."""
    offset = 0
    while offset < len(data):
        tag = int.from_bytes(data[offset : offset + 3], "big")
        item_type = data[offset + 3]
        length = int.from_bytes(data[offset + 4 : offset + 8], "big")
        value = data[offset + 8 : offset + 8 + length]
        yield tag, item_type, value
        if item_type == 0x01:
            yield from ttlv_items(value)
        # Items are padded to a multiple of eight bytes.
        offset += 8 + (length + 7) // 8 * 8


def vcenter_requests() -> list[bytes]:
    lines = VCENTER.read_text().splitlines()
    return [bytes.fromhex(line.split()[1]) for line in lines if line and line[0] != "#"]


def test_vcenter_capture_uses_known_tags_and_values() -> None:
    requests = vcenter_requests()
    assert requests
    for message in requests:
        for tag, item_type, value in ttlv_items(message):
            assert tag in TAG_XML_NAMES, hex(tag)
            if item_type == 0x05 and tag in TAG_ENUMS:
                number = int.from_bytes(value, "big")
                assert number in VALUE_XML_NAMES[TAG_ENUMS[tag]], (hex(tag), number)
            if tag == Tag.ATTRIBUTE_NAME:
                name = value.decode()
                assert name.startswith("x-") or name in ATTRIBUTE_TAGS, name
    # vCenter numbers its batch items, with a tag 1.0 already had.
    assert any(tag == Tag.UNIQUE_BATCH_ITEM_ID for tag, _, _ in ttlv_items(requests[1]))


def test_numbers_agree_with_the_specification() -> None:
    # Spot checks against KMIP 1.4 section 9.1.3 and 2.1 section 11.
    assert Tag.ACTIVATION_DATE == 0x420001
    assert Tag.UNIQUE_BATCH_ITEM_ID == 0x420093
    assert Tag.UNIQUE_IDENTIFIER == 0x420094
    assert Tag.REQUEST_MESSAGE == 0x420078
    assert Tag.RESPONSE_MESSAGE == 0x42007B
    assert Tag.BATCH_ITEM == 0x42000F
    assert Tag.ATTRIBUTES == 0x420125
    assert Tag.ATTRIBUTE_REFERENCE == 0x42013B
    assert Tag.PROTECTION_STORAGE_MASKS == 0x42015F
    assert Tag.ASYNCHRONOUS_CORRELATION_VALUES == 0x420176
    assert Operation.CREATE == 0x01
    assert Operation.RE_KEY_KEY_PAIR == 0x1D
    assert Operation.DISCOVER_VERSIONS == 0x1E
    assert Operation.PKCS_11 == 0x33
    assert Operation.PING == 0x3B
    assert ObjectType.SYMMETRIC_KEY == 2
    assert ObjectType.PGP_KEY == 9
    assert State.PRE_ACTIVE == 1
    assert State.DESTROYED_COMPROMISED == 6
    assert CryptographicAlgorithm.AES == 3
    assert CryptographicAlgorithm.DES3 == 2
    assert ResultStatus.OPERATION_UNDONE == 3
    assert ResultReason.GENERAL_FAILURE == 0x100
    assert ResultReason.OBJECT_NOT_FOUND == 0x37
    assert LinkType.PUBLIC_KEY_LINK == 0x102
    assert HashingAlgorithm.SHA_256 == 6
    assert CryptographicUsageMask.ENCRYPT | CryptographicUsageMask.DECRYPT == 0x0C
    assert ProtectionStorageMask.SOFTWARE == 1


def test_irregular_names_follow_the_encodings() -> None:
    # Names the normalization rule bends; each appears in the test cases.
    assert VALUE_XML_NAMES[Operation][Operation.RNG_RETRIEVE] == "RNGRetrieve"
    assert VALUE_XML_NAMES[Operation][Operation.MAC_VERIFY] == "MACVerify"
    assert VALUE_XML_NAMES[Operation][Operation.RE_KEY_KEY_PAIR] == "ReKeyKeyPair"
    assert VALUE_XML_NAMES[ObjectType][ObjectType.PGP_KEY] == "PGPKey"
    assert VALUE_XML_NAMES[State][State.PRE_ACTIVE] == "PreActive"
    assert VALUE_XML_NAMES[CryptographicAlgorithm][CryptographicAlgorithm.DES3] == "DES3"
    assert TAG_XML_NAMES[Tag.PKCS_11_FUNCTION] == "PKCS_11Function"
    assert TAG_XML_NAMES[Tag.IV_COUNTER_NONCE] == "IVCounterNonce"
    assert TAG_XML_NAMES[Tag.X_509_CERTIFICATE_IDENTIFIER] == "X_509CertificateIdentifier"
    # 1.4 spelled the SHA-3 hashes "SHA-3-224"; 2.x spells them "SHA3-224".
    assert VALUES_BY_XML_NAME[HashingAlgorithm]["SHA_3_224"] == HashingAlgorithm.SHA3_224


def test_tables_are_consistent() -> None:
    versions = {(1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (2, 0), (2, 1)}
    assert set(TAG_SPEC_NAMES) == set(TAG_XML_NAMES) == set(TAG_SINCE) == set(Tag)
    assert all(0x420001 <= tag <= 0x42FFFF for tag in Tag)
    assert set(TAG_SINCE.values()) <= versions
    assert set(ATTRIBUTE_TAGS.values()) <= set(Tag)
    for cls, names in VALUE_XML_NAMES.items():
        assert set(names) == set(VALUE_SINCE[cls]) == {int(member) for member in cls}
        assert set(VALUE_SINCE[cls].values()) <= versions
        # Each XML name decodes back to its own value.
        assert all(VALUES_BY_XML_NAME[cls][name] == value for value, name in names.items())
