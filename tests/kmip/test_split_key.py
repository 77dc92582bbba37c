"""Create Split Key and Join Split Key through the service, over a one-node log.

Every split is joined back and compared with the key it came from, for each method;
the refusals say what the client got wrong.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from kmip_inprocess import call, new_service
from kmip_requests import attribute

from keyquorum.kmip.attributes import TemplateAttribute
from keyquorum.kmip.messages import ResponseBatchItem
from keyquorum.kmip.objects import KeyBlock, KeyValue, SymmetricKey
from keyquorum.kmip.payloads import (
    CreateSplitKeyRequestPayload,
    GetRequestPayload,
    JoinSplitKeyRequestPayload,
    RegisterRequestPayload,
)
from keyquorum.kmip.service import KmipService
from keyquorum.kmip.tables import (
    CryptographicAlgorithm,
    KeyFormatType,
    ObjectType,
    Operation,
    ResultReason,
    ResultStatus,
    SplitKeyMethod,
)
from keyquorum.kmip.ttlv import ItemType

# 2^521 - 1, a Mersenne prime: larger than any key here.
PRIME = 2**521 - 1


@pytest.fixture
def service() -> KmipService:
    return new_service()


def ok(item: ResponseBatchItem) -> Any:
    assert item.result_status == ResultStatus.SUCCESS, item.result_message
    return item.payload


def register_aes(service: KmipService, key: bytes) -> str:
    block = KeyBlock(key_format_type=KeyFormatType.RAW, key_value=KeyValue(key_material=key),
                     cryptographic_algorithm=CryptographicAlgorithm.AES,
                     cryptographic_length=len(key) * 8)
    payload = RegisterRequestPayload(object_type=ObjectType.SYMMETRIC_KEY,
                                     object=SymmetricKey(key_block=block))
    uid: str = ok(call(service, Operation.REGISTER, payload)).unique_identifier
    return uid


def split(service: KmipService, method: SplitKeyMethod, parts: int, threshold: int,
          uid: str | None = None, prime: int | None = None,
          template: TemplateAttribute | None = None) -> ResponseBatchItem:
    return call(service, Operation.CREATE_SPLIT_KEY, CreateSplitKeyRequestPayload(
        object_type=ObjectType.SPLIT_KEY, unique_identifier=uid, split_key_parts=parts,
        split_key_threshold=threshold, split_key_method=method, prime_field_size=prime,
        template_attribute=template))


def join(service: KmipService, uids: tuple[str, ...]) -> ResponseBatchItem:
    return call(service, Operation.JOIN_SPLIT_KEY, JoinSplitKeyRequestPayload(
        object_type=ObjectType.SYMMETRIC_KEY, unique_identifiers=uids))


def key_of(service: KmipService, uid: str) -> bytes:
    got = ok(call(service, Operation.GET, GetRequestPayload(unique_identifier=uid)))
    material: bytes = got.object.key_block.key_value.key_material
    return material


@pytest.mark.parametrize(("method", "parts", "threshold", "chosen", "prime"), [
    (SplitKeyMethod.XOR, 3, 3, (0, 1, 2), None),
    (SplitKeyMethod.POLYNOMIAL_SHARING_GF_2_8, 5, 3, (0, 2, 4), None),
    (SplitKeyMethod.POLYNOMIAL_SHARING_PRIME_FIELD, 4, 2, (3, 1), PRIME),
])
def test_a_split_key_joins_back_into_the_key_it_came_from(
    service: KmipService, method: SplitKeyMethod, parts: int, threshold: int,
    chosen: tuple[int, ...], prime: int | None
) -> None:
    original = secrets.token_bytes(32)
    uids = ok(split(service, method, parts, threshold, register_aes(service, original),
                    prime)).unique_identifiers

    joined = ok(join(service, tuple(uids[i] for i in chosen))).unique_identifier

    assert len(uids) == parts
    assert key_of(service, joined) == original
    assert all(key_of(service, uid) != original for uid in uids)


def test_a_new_key_is_drawn_when_none_is_named(service: KmipService) -> None:
    template = TemplateAttribute(attributes=(
        attribute("Cryptographic Algorithm", ItemType.ENUMERATION, CryptographicAlgorithm.AES),
        attribute("Cryptographic Length", ItemType.INTEGER, 128)))
    uids = ok(split(service, SplitKeyMethod.POLYNOMIAL_SHARING_GF_2_8, 3, 2,
                    template=template)).unique_identifiers

    first, second = key_of(service, join(service, uids[:2]).payload.unique_identifier), \
        key_of(service, join(service, uids[1:]).payload.unique_identifier)

    assert len(first) == 16 and first == second


def test_too_few_parts_or_parts_of_two_splits_are_refused(service: KmipService) -> None:
    method = SplitKeyMethod.POLYNOMIAL_SHARING_GF_2_8
    one = ok(split(service, method, 3, 3, register_aes(service, bytes(32)))).unique_identifiers
    two = ok(split(service, method, 3, 2, register_aes(service, bytes(32)))).unique_identifiers

    too_few = join(service, one[:2])
    mixed = join(service, (one[0], two[1]))

    assert too_few.result_reason == ResultReason.INVALID_FIELD
    assert "needs 3" in (too_few.result_message or "")
    assert mixed.result_reason == ResultReason.INVALID_FIELD


def test_bad_split_requests_say_what_is_wrong(service: KmipService) -> None:
    uid = register_aes(service, bytes(range(32)))

    xor_threshold = split(service, SplitKeyMethod.XOR, 3, 2, uid)
    no_prime = split(service, SplitKeyMethod.POLYNOMIAL_SHARING_PRIME_FIELD, 3, 2, uid)
    composite = split(service, SplitKeyMethod.POLYNOMIAL_SHARING_PRIME_FIELD, 3, 2, uid,
                      prime=PRIME * 3)
    gf16 = split(service, SplitKeyMethod.POLYNOMIAL_SHARING_GF_2_16, 3, 2, uid)
    threshold_over = split(service, SplitKeyMethod.POLYNOMIAL_SHARING_GF_2_8, 2, 3, uid)

    for refused, words in ((xor_threshold, "XOR"), (no_prime, "Prime Field Size"),
                           (composite, "prime"), (gf16, "not supported"),
                           (threshold_over, "Threshold")):
        assert refused.result_status == ResultStatus.OPERATION_FAILED
        assert words in (refused.result_message or ""), refused.result_message


def test_query_offers_both_operations() -> None:
    from keyquorum.kmip.operations.server_ops import offered_operations

    assert {Operation.CREATE_SPLIT_KEY, Operation.JOIN_SPLIT_KEY} <= set(
        offered_operations((1, 4)))
