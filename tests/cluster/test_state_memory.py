"""The key store's compact representation: shared attributes, slots, the same pickles.

bench/memory_bench.py measures what these save; here is what they must not change: every
key still reads its own values, the pickled form journals and dumps hold is the field
dict it always was, and a restore gives back equal objects.
"""

from __future__ import annotations

import gc
import pickle
import weakref

from keyquorum.cluster.collector import CollectorPause, FreezeSlowSurvivors
from keyquorum.cluster.state import (
    DEFAULT_SCOPE,
    SHARED_ATTRIBUTES_MAX,
    Applied,
    CreateObject,
    KeyStore,
    ManagedObject,
    StoredAttribute,
    UniqueIdentifier,
    attribute_value,
)
from keyquorum.kmip.tables import CryptographicAlgorithm, ObjectType, Tag
from keyquorum.kmip.ttlv import Item, ItemType


def create(store: KeyStore, uid: str, *attributes: StoredAttribute) -> ManagedObject:
    assert store.apply(CreateObject(DEFAULT_SCOPE, UniqueIdentifier(uid),
                                    ObjectType.SYMMETRIC_KEY, attributes, b"sealed",
                                    now=100)) == Applied(UniqueIdentifier(uid))
    obj = store.get(DEFAULT_SCOPE, uid)
    assert obj is not None
    return obj


def algorithm(value: object) -> StoredAttribute:
    return StoredAttribute("Cryptographic Algorithm",
                           attribute_value(ItemType.ENUMERATION, value))


def test_few_valued_attributes_are_one_copy_and_the_rest_stay_each_keys_own() -> None:
    store = KeyStore()
    rng = [Item(Tag.RNG_ALGORITHM, ItemType.ENUMERATION, 1)]
    first = create(store, "k1", algorithm(CryptographicAlgorithm.AES),
                   StoredAttribute("Random Number Generator",
                                   attribute_value(ItemType.STRUCTURE, list(rng))),
                   StoredAttribute("x-label", attribute_value(ItemType.TEXT_STRING, "a")))
    second = create(store, "k2", algorithm(CryptographicAlgorithm.AES),
                    StoredAttribute("Random Number Generator",
                                    attribute_value(ItemType.STRUCTURE, list(rng))),
                    StoredAttribute("x-label", attribute_value(ItemType.TEXT_STRING, "b")))

    def named(obj: ManagedObject, name: str) -> StoredAttribute:
        return next(a for a in obj.attributes if a.name == name)

    assert named(first, "Cryptographic Algorithm") is named(second, "Cryptographic Algorithm")
    assert named(first, "Random Number Generator") is named(second, "Random Number Generator")
    assert named(first, "Unique Identifier").value.value == "k1"
    assert named(second, "Unique Identifier").value.value == "k2"
    assert [named(o, "x-label").value.value for o in (first, second)] == ["a", "b"]

    # An IntEnum member equals its int, but each key keeps the value type it was given.
    third = create(store, "k3", algorithm(int(CryptographicAlgorithm.AES)))
    assert type(named(third, "Cryptographic Algorithm").value.value) is int
    assert isinstance(named(first, "Cryptographic Algorithm").value.value,
                      CryptographicAlgorithm)


def test_a_create_holds_its_time_once_and_shares_a_digests_few_valued_members() -> None:
    store = KeyStore()

    def digest(value: bytes) -> StoredAttribute:
        return StoredAttribute("Digest", attribute_value(ItemType.STRUCTURE, [
            Item(Tag.HASHING_ALGORITHM, ItemType.ENUMERATION, 6),
            Item(Tag.DIGEST_VALUE, ItemType.BYTE_STRING, value),
            Item(Tag.KEY_FORMAT_TYPE, ItemType.ENUMERATION, 1),
        ]))

    created_at = StoredAttribute("Original Creation Date",
                                 attribute_value(ItemType.DATE_TIME, 100))
    first = create(store, "k1", created_at, digest(b"\x01" * 32))
    second = create(store, "k2", digest(b"\x02" * 32))

    dates = [first.first(name) for name in
             ("Initial Date", "Last Change Date", "Original Creation Date")]
    assert [date.value for date in dates if date] == [100, 100, 100]
    assert dates[0] is dates[1] is dates[2]

    one, two = first.first("Digest"), second.first("Digest")
    assert one is not None and two is not None
    assert one.value[0] is two.value[0] and one.value[2] is two.value[2]
    assert [member.value for member in one.value] == [6, b"\x01" * 32, 1]
    assert two.value[1].value == b"\x02" * 32

    restored = KeyStore()
    restored.restore(store.snapshot())
    assert restored.get(DEFAULT_SCOPE, "k1") == first


def test_pool_stops_growing_at_its_limit() -> None:
    store = KeyStore()
    for n in range(SHARED_ATTRIBUTES_MAX + 10):
        create(store, f"k{n}", StoredAttribute(
            "Cryptographic Length", attribute_value(ItemType.INTEGER, n)))
    assert len(store._shared) == SHARED_ATTRIBUTES_MAX


def test_pickled_form_is_the_field_dict_and_a_snapshot_restores_equal_objects() -> None:
    store = KeyStore()
    obj = create(store, "k1", algorithm(CryptographicAlgorithm.AES))
    attribute = obj.attributes[0]

    # What a journal written before slots holds: the instance's field dict as its state.
    assert attribute.__reduce_ex__(5)[2] == {"name": attribute.name, "value": attribute.value}
    assert set(obj.__reduce_ex__(5)[2]) == {
        "scope", "uid", "object_type", "state", "attributes", "material"}
    assert pickle.loads(pickle.dumps(obj)) == obj

    restored = KeyStore()
    restored.restore(store.snapshot())
    assert restored.get(DEFAULT_SCOPE, "k1") == obj


def test_collector_pause_nests_and_resumes_collection() -> None:
    pause = CollectorPause()
    assert gc.isenabled()
    pause.begin()
    pause.begin()
    pause.end()
    assert not gc.isenabled()  # another holder is still rebuilding
    pause.end()
    pause.end()  # one end too many is ignored
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0  # what was rebuilt is out of later collections
    gc.unfreeze()  # frozen objects hide from gc.get_referrers, which Hypothesis uses


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_a_slow_full_collection_freezes_what_survived_it_and_nothing_unreachable() -> None:
    slow = FreezeSlowSurvivors(slow_seconds=0.0)  # every full collection counts as slow
    slow.install()
    try:
        kept = [[index] for index in range(1000)]
        cycle = _Cycle()
        unreachable = weakref.ref(cycle)
        del cycle
        before = gc.get_freeze_count()

        gc.collect()

        assert slow.freezes == 1
        assert unreachable() is None  # collected first, not frozen as garbage
        assert gc.get_freeze_count() >= before + len(kept)
        assert not any(obj is kept for obj in gc.get_objects(generation=2))
    finally:
        slow.uninstall()
        gc.unfreeze()


def test_a_quick_full_collection_freezes_nothing() -> None:
    patient = FreezeSlowSurvivors(slow_seconds=60.0)
    patient.install()
    try:
        before = gc.get_freeze_count()
        gc.collect()
        assert patient.freezes == 0 and gc.get_freeze_count() == before
    finally:
        patient.uninstall()
