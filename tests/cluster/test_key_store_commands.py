"""The key store's commands for usage limits, freshness, undo and activation dates.

Each is applied straight to a KeyStore, as every node applies it from the log: the
outcome and the object afterwards are what every node agrees on.
"""

from __future__ import annotations

from keyquorum.cluster.state import (
    DEFAULT_SCOPE,
    Activate,
    Applied,
    ConsumeUsage,
    CreateObject,
    KeyStore,
    MarkServed,
    ModifyAttribute,
    Rejected,
    RestoreObjects,
    StoredAttribute,
    UniqueIdentifier,
    attribute_value,
    date_value,
)
from keyquorum.kmip.tables import ObjectType, ResultReason, State, Tag, UsageLimitsUnit
from keyquorum.kmip.ttlv import Item, ItemType

UID = UniqueIdentifier("key-1")


def store_with_key(*attributes: StoredAttribute) -> KeyStore:
    store = KeyStore()
    created = store.apply(CreateObject(DEFAULT_SCOPE, UID, ObjectType.SYMMETRIC_KEY,
                                       attributes, b"sealed", now=100))
    assert created == Applied(UID)
    return store


def usage_limits(total: int) -> StoredAttribute:
    return StoredAttribute("Usage Limits", attribute_value(ItemType.STRUCTURE, [
        Item(Tag.USAGE_LIMITS_TOTAL, ItemType.LONG_INTEGER, total),
        Item(Tag.USAGE_LIMITS_UNIT, ItemType.ENUMERATION, int(UsageLimitsUnit.BYTE)),
    ]))


def count_of(store: KeyStore) -> int:
    obj = store.get(DEFAULT_SCOPE, UID)
    assert obj is not None
    limits = obj.first("Usage Limits")
    assert limits is not None
    return next(i.value for i in limits.value if i.tag == Tag.USAGE_LIMITS_COUNT)


def test_usage_limits_are_spent_and_an_overdraft_is_refused_whole() -> None:
    store = store_with_key(usage_limits(16))

    assert store.apply(ConsumeUsage(DEFAULT_SCOPE, UID, 10, now=101)) == Applied(UID)
    refused = store.apply(ConsumeUsage(DEFAULT_SCOPE, UID, 7, now=102))

    assert isinstance(refused, Rejected) and refused.reason == ResultReason.PERMISSION_DENIED
    assert count_of(store) == 6
    assert store.apply(ConsumeUsage(DEFAULT_SCOPE, UID, 6, now=103)) == Applied(UID)
    assert count_of(store) == 0


def test_a_served_key_is_no_longer_fresh() -> None:
    store = store_with_key(StoredAttribute("Fresh", attribute_value(ItemType.BOOLEAN, True)))

    store.apply(MarkServed(DEFAULT_SCOPE, UID))

    obj = store.get(DEFAULT_SCOPE, UID)
    assert obj is not None and obj.values("Fresh") == [attribute_value(ItemType.BOOLEAN, False)]


def test_the_activation_date_of_an_active_key_is_history() -> None:
    store = store_with_key()
    store.apply(Activate(DEFAULT_SCOPE, UID, now=101))

    refused = store.apply(ModifyAttribute(DEFAULT_SCOPE, UID, "Activation Date", 0,
                                          date_value(200), now=102))

    assert isinstance(refused, Rejected)
    assert refused.reason == ResultReason.WRONG_KEY_LIFECYCLE_STATE


def test_restore_sets_objects_back_only_if_nobody_changed_them_since() -> None:
    store = store_with_key()
    before = store.get(DEFAULT_SCOPE, UID)
    store.apply(Activate(DEFAULT_SCOPE, UID, now=101))
    after = store.get(DEFAULT_SCOPE, UID)

    # Another client's write lands between the batch and its undo: nothing is undone.
    store.apply(MarkServed(DEFAULT_SCOPE, UID))
    raced = store.apply(RestoreObjects(DEFAULT_SCOPE, ((UID, before, after),)))
    assert isinstance(raced, Rejected)
    current = store.get(DEFAULT_SCOPE, UID)
    assert current is not None and current.state == State.ACTIVE

    # Without the race, the key is Pre-Active again and a key the batch made is gone.
    made = UniqueIdentifier("key-2")
    store.apply(CreateObject(DEFAULT_SCOPE, made, ObjectType.SYMMETRIC_KEY, (), b"x", now=104))
    restored = store.apply(RestoreObjects(DEFAULT_SCOPE, (
        (UID, before, current), (made, None, store.get(DEFAULT_SCOPE, made)))))
    assert restored == Applied(UID)
    assert store.get(DEFAULT_SCOPE, UID) == before
    assert store.get(DEFAULT_SCOPE, made) is None
