"""The replication sequence in the state machine: numbering, changelog, secondaries."""

from __future__ import annotations

import pickle
from dataclasses import replace

import pytest

from keyquorum.cluster import replication_wire
from keyquorum.cluster.barrier import BarrierError, SealKind
from keyquorum.cluster.replication_state import (
    ApplyChanges,
    ApplySnapshot,
    CertificateAuthority,
    Demote,
    EnablePrimary,
    EnableSecondary,
    Forwarded,
    ForwardedOutcome,
    IssueDrOperationToken,
    Mode,
    PrimaryLink,
    Promote,
    ReplicationState,
)
from keyquorum.cluster.seal import Seal
from keyquorum.cluster.state import (
    Applied,
    CreateObject,
    Destroy,
    NoOp,
    Rejected,
    ScopeName,
    StoredAttribute,
    attribute_value,
)
from keyquorum.cluster.tenancy import CreateScope, Done, Refused
from keyquorum.kmip.objects import UniqueIdentifier
from keyquorum.kmip.tables import ObjectType, Tag
from keyquorum.kmip.ttlv import Item, ItemType

SCOPE = ScopeName("default")
CA = CertificateAuthority(b"ca", b"key")
LINK = PrimaryLink("dc1", ("127.0.0.1:1",), b"ca", b"cert", b"key")


def create(uid: str) -> CreateObject:
    return CreateObject(SCOPE, UniqueIdentifier(uid), ObjectType.SYMMETRIC_KEY, (),
                        b"wrapped", now=1_700_000_000)


def primary(changelog_size: int = 100) -> ReplicationState:
    state = ReplicationState(changelog_size=changelog_size)
    state.apply(EnablePrimary("dc1", CA))
    state.apply(CreateScope(SCOPE, now=1))
    return state


def secondary(kind: Mode = Mode.PERFORMANCE) -> ReplicationState:
    state = ReplicationState()
    state.apply(EnableSecondary(kind, "dc2", LINK))
    return state


def test_each_successful_change_takes_the_next_number_and_nothing_else_does() -> None:
    state = primary()
    assert state.sequence == 1  # the scope

    assert isinstance(state.apply(create("a")), Applied)
    assert isinstance(state.apply(create("a")), Rejected)  # refused: no number
    state.apply(NoOp())
    assert isinstance(state.apply(Destroy(SCOPE, UniqueIdentifier("a"), now=2)), Applied)

    assert state.sequence == 3
    assert [c.sequence for c in state.changes_after(0) or []] == [1, 2, 3]
    assert [type(c.command) for c in state.changes_after(1) or []] == [CreateObject, Destroy]
    assert state.changes_after(3) == []


def test_the_changelog_is_bounded_and_an_older_gap_asks_for_a_snapshot() -> None:
    state = primary(changelog_size=5)
    for n in range(10):
        state.apply(create(f"k{n}"))

    assert state.sequence == 11
    assert [c.sequence for c in state.changes_after(6) or []] == [7, 8, 9, 10, 11]
    assert state.changes_after(5) is None
    sequence, data = state.snapshot_at()
    assert sequence == 11
    replication_wire.check_snapshot(data)


def test_the_changelog_holds_a_create_in_the_attributes_the_store_shares() -> None:
    state = primary()
    algorithm = StoredAttribute("Cryptographic Algorithm",
                                attribute_value(ItemType.ENUMERATION, 3))
    label = StoredAttribute("x-label", attribute_value(ItemType.TEXT_STRING, "mine"))
    commands = [replace(create(uid), attributes=(
        StoredAttribute("Cryptographic Algorithm", attribute_value(ItemType.ENUMERATION, 3)),
        label)) for uid in ("a", "b")]
    for command in commands:
        state.apply(command)

    logged = [change.command for change in state.changes_after(1) or []]
    assert logged == commands  # what a secondary receives is the command as applied
    assert isinstance(logged[0], CreateObject) and isinstance(logged[1], CreateObject)
    stored = state.keys.get(SCOPE, "a")
    assert stored is not None and stored.first("Cryptographic Algorithm") == algorithm.value
    # One copy of the algorithm among the store and both logged commands.
    assert logged[0].attributes[0] is logged[1].attributes[0]
    assert any(a is logged[0].attributes[0] for a in stored.attributes)
    assert logged[1].attributes[1].value.value == "mine"


def test_the_changelog_and_the_store_hold_one_copy_of_a_creates_digest() -> None:
    # A Digest mixes few-valued members with the key's own hash, so pooling builds it a
    # new list: the changelog's Create and the stored key used to hold one each.
    state = primary()
    digest = StoredAttribute("Digest", attribute_value(ItemType.STRUCTURE, [
        Item(Tag.HASHING_ALGORITHM, ItemType.ENUMERATION, 6),
        Item(Tag.DIGEST_VALUE, ItemType.BYTE_STRING, b"\x01" * 32),
    ]))
    command = replace(create("a"), attributes=(digest,))
    state.apply(command)

    [logged] = [change.command for change in state.changes_after(1) or []]
    stored = state.keys.get(SCOPE, "a")
    assert logged == command and stored is not None
    assert isinstance(logged, CreateObject)
    assert [a for a in stored.attributes if a.name == "Digest"] == [logged.attributes[0]]
    assert any(a is logged.attributes[0] for a in stored.attributes)


def test_the_sequence_and_changelog_survive_a_dump() -> None:
    state = primary()
    state.apply(create("a"))
    restored = ReplicationState()
    restored.restore(state.snapshot())

    assert restored.sequence == 2 and restored.mode == Mode.PRIMARY
    assert restored.changes_after(0) == state.changes_after(0)
    assert restored.digest() == state.digest()


def test_a_secondary_takes_the_snapshot_then_changes_without_gap_or_duplicate() -> None:
    source = primary()
    for n in range(3):
        source.apply(create(f"k{n}"))
    replica = secondary()

    # Nothing applies before the snapshot; then the snapshot replaces the state.
    early = ApplyChanges(tuple(source.changes_after(0) or []))
    assert isinstance(replica.apply(early), Refused)
    sequence, data = source.snapshot_at()
    assert replica.apply(ApplySnapshot(sequence, data)) == Done(4)

    # A run overlapping what it has (a duplicate after a leader change) skips the
    # overlap; a run that leaves a gap is refused whole.
    source.apply(create("k3"))
    source.apply(create("k4"))
    source.apply(create("k5"))
    newer = source.changes_after(2) or []
    assert replica.apply(ApplyChanges(tuple(newer[:3]))) == Done(5)
    assert isinstance(replica.apply(ApplyChanges(tuple(newer[4:]))), Refused)
    assert replica.sequence == 5
    assert replica.apply(ApplyChanges(tuple(newer))) == Done(7)
    assert replica.apply(ApplyChanges(tuple(newer))) == Done(7)

    assert replica.digest() == source.digest()
    assert len(replica.keys) == 6


def test_a_secondary_refuses_local_writes_and_the_primary_answers_forwarded_ones() -> None:
    replica = secondary()
    refused = replica.apply(create("x"))
    assert isinstance(refused, Rejected)
    assert "secondary" in refused.message
    assert isinstance(replica.apply(CreateScope(ScopeName("other"), now=1)), Refused)

    source = primary()
    answer = source.apply(Forwarded(create("x")))
    assert answer == ForwardedOutcome(Applied(UniqueIdentifier("x")), 2)
    again = source.apply(Forwarded(create("x")))
    assert isinstance(again, ForwardedOutcome) and again.sequence == 0


def test_promotion_needs_a_dr_operation_token_once_and_keeps_the_numbering() -> None:
    source = primary()
    source.apply(create("a"))
    replica = secondary(Mode.DR)
    replica.apply(ApplySnapshot(*source.snapshot_at()))

    assert isinstance(replica.apply(Promote("nope", CA, now=10)), Refused)
    replica.apply(IssueDrOperationToken("hash", expires_at=100))
    assert replica.apply(Promote("hash", CA, now=10)) == Done(2)
    assert replica.mode == Mode.PRIMARY
    assert isinstance(replica.apply(create("b")), Applied)
    assert replica.sequence == 3

    assert replica.apply(Demote()) == Done(3)
    assert replica.mode == Mode.DR


def test_the_wire_reader_refuses_anything_but_our_own_types() -> None:
    command = create("a")
    assert replication_wire.loads(replication_wire.dumps(command)) == command

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os
            return (os.system, ("true",))

    with pytest.raises(replication_wire.WireError, match="refused"):
        replication_wire.loads(pickle.dumps(Evil()))
    with pytest.raises(replication_wire.WireError):
        replication_wire.loads(b"not a pickle")


def seal_of(state: ReplicationState, root: bytes | None = None) -> Seal:
    """``state``'s barrier initialized and this node unsealed: with ``root``, the dev seal."""
    seal = Seal(state.inner.barrier)
    kind = SealKind.SHAMIR if root is None else SealKind.DEV_FILE
    if root is not None:
        seal.auto = _FixedRoot(root)
    made = seal.prepare_init(kind, 1, 1)
    assert isinstance(state.apply(made.command), Done)
    seal.unseal_with_root(made.keyring.root_key)
    return seal


class _FixedRoot:
    kind = SealKind.DEV_FILE

    def __init__(self, root: bytes) -> None:
        self.root = root

    def new_root(self) -> tuple[bytes, bytes | None]:
        return self.root, None

    def root_key(self, record: object) -> bytes:
        return self.root


def test_a_secondary_sharing_the_root_key_opens_the_primary_keyring_from_the_snapshot() -> None:
    shared = bytes(range(32))
    source = primary()
    primary_seal = seal_of(source, shared)
    # Each cluster was initialized on its own before the secondary was attached.
    replica = ReplicationState()
    replica_seal = seal_of(replica, shared)
    replica.apply(EnableSecondary(Mode.PERFORMANCE, "dc2", LINK))
    wrapped = primary_seal.encrypt(b"key material", b"uid-1")
    with pytest.raises(BarrierError):
        replica_seal.decrypt(wrapped, b"uid-1")

    # The primary's keyring lands with its state and opens what the primary wrapped.
    sequence, data = source.snapshot_at()
    replica.apply(ApplySnapshot(sequence, data))
    assert not replica_seal.sealed
    assert replica_seal.decrypt(wrapped, b"uid-1") == b"key material"


def test_a_secondary_with_a_root_key_of_its_own_seals_itself_on_the_snapshot() -> None:
    source = primary()
    seal_of(source, bytes(range(32)))
    replica = ReplicationState()
    replica_seal = seal_of(replica)
    replica.apply(EnableSecondary(Mode.DR, "dc2", LINK))

    sequence, data = source.snapshot_at()
    replica.apply(ApplySnapshot(sequence, data))
    assert replica_seal.sealed
