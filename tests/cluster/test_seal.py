"""The barrier keyring and the seal, in process: unseal by threshold, rotation, rekey."""

from __future__ import annotations

import asyncio
import json
import pickle
import secrets
from pathlib import Path

import pytest

from keyquorum.cluster.audit import SEALED_VALUE, AuditBroker, SaltSealedError, hmac_of
from keyquorum.cluster.audit_state import (
    AuditDevice,
    AuditState,
    EnableAuditDevice,
    salt_associated_data,
)
from keyquorum.cluster.barrier import (
    BarrierError,
    BarrierState,
    InitializeBarrier,
    Keyring,
    ReplaceBarrier,
    SealKind,
)
from keyquorum.cluster.seal import (
    DevFileRootKey,
    Seal,
    SealedError,
    UnsealError,
    write_dev_root_key,
)
from keyquorum.cluster.shamir import Share, split
from keyquorum.cluster.tenancy import Done, Refused
from keyquorum.kmip.audit import Sensitive


def test_a_ciphertext_names_its_term_and_old_terms_still_open() -> None:
    first = Keyring.generate(secrets.token_bytes(32))
    old = first.encrypt(b"old secret", b"scope/uid-1")
    rotated = first.rotated()
    new = rotated.encrypt(b"new secret", b"scope/uid-2")

    assert (old[1:5], new[1:5]) == (b"\0\0\0\1", b"\0\0\0\2")
    assert rotated.decrypt(old, b"scope/uid-1") == b"old secret"
    assert rotated.decrypt(new, b"scope/uid-2") == b"new secret"
    with pytest.raises(BarrierError, match="no keyring term 2"):
        first.decrypt(new, b"scope/uid-2")


def test_a_ciphertext_moved_to_another_object_or_tampered_does_not_open() -> None:
    keyring = Keyring.generate(secrets.token_bytes(32))
    sealed = keyring.encrypt(b"secret", b"scope/uid-1")
    with pytest.raises(BarrierError):
        keyring.decrypt(sealed, b"scope/uid-2")
    with pytest.raises(BarrierError):
        keyring.decrypt(sealed[:-1] + bytes([sealed[-1] ^ 1]), b"scope/uid-1")
    with pytest.raises(BarrierError, match="too short"):
        keyring.decrypt(b"\x01", b"")


def test_a_keyring_survives_its_byte_form() -> None:
    keyring = Keyring.generate(secrets.token_bytes(32)).rotated().rotated()
    again = Keyring.from_bytes(keyring.to_bytes())
    assert again.versions == [1, 2, 3] and again.root_key == keyring.root_key
    assert again.decrypt(keyring.encrypt(b"x", b""), b"") == b"x"


def initialized(shares: int = 5, threshold: int = 3) -> tuple[BarrierState, Seal, list[str]]:
    state = BarrierState()
    seal = Seal(state)
    made = seal.prepare_init(SealKind.SHAMIR, shares, threshold)
    assert isinstance(state.apply(made.command), Done)
    return state, seal, list(made.shares)


def test_unseal_takes_the_threshold_of_shares_and_counts_progress() -> None:
    _, seal, shares = initialized(5, 3)
    assert seal.sealed and seal.status().progress == 0
    with pytest.raises(SealedError, match="node is sealed"):
        seal.encrypt(b"x", b"")

    assert seal.unseal(shares[4]).progress == 1
    status = seal.unseal(shares[1])
    assert (status.progress, status.threshold, status.sealed) == (2, 3, True)
    assert seal.unseal(shares[2]).sealed is False
    assert seal.decrypt(seal.encrypt(b"key", b"ad"), b"ad") == b"key"

    seal.seal()
    assert seal.sealed and seal.status().progress == 0


def test_wrong_shares_are_refused_and_reset_the_progress() -> None:
    _, seal, shares = initialized(3, 2)
    others = [share.encode() for share in split(secrets.token_bytes(32), 3, 2)]

    seal.unseal(shares[0])
    with pytest.raises(UnsealError, match="do not open"):
        seal.unseal(others[1])
    assert seal.sealed and seal.status().progress == 0

    with pytest.raises(UnsealError, match="already given"):
        seal.unseal(shares[0])
        seal.unseal(shares[0])
    with pytest.raises(UnsealError, match="base64"):
        seal.unseal("not a share")
    seal.reset_progress()
    seal.unseal(shares[2])
    assert seal.unseal(shares[0]).sealed is False


def test_another_node_follows_a_rotation_and_a_rekey_without_unsealing_again() -> None:
    state, here, shares = initialized(3, 2)
    there = Seal(state)
    for seal in (here, there):
        seal.unseal(shares[0])
        seal.unseal(shares[1])
    old = there.encrypt(b"before", b"ad")

    # Rotation on one node; the other reads the new term from the replicated record.
    assert isinstance(state.apply(here.prepare_rotation()), Done)
    new = here.encrypt(b"after", b"ad")
    assert new[1:5] == b"\0\0\0\2"
    assert there.decrypt(new, b"ad") == b"after"
    assert here.decrypt(old, b"ad") == b"before"

    # Rekey with the current shares: new shares, and the old ones stop working.
    rekey, new_shares = there.prepare_rekey(shares[1:], 4, 2)
    assert isinstance(state.apply(rekey), Done)
    assert len(new_shares) == 4
    assert there.decrypt(new, b"ad") == b"after"
    assert isinstance(state.apply(here.prepare_rotation()), Done)  # here holds the new root

    fresh = Seal(state)
    fresh.unseal(shares[0])
    with pytest.raises(UnsealError, match="do not open"):
        fresh.unseal(shares[1])
    fresh.unseal(new_shares[3])
    fresh.unseal(new_shares[0])
    assert fresh.decrypt(old, b"ad") == b"before"
    assert fresh.status().keyring_version == 3


def test_racing_rotations_commit_one_and_refuse_the_other() -> None:
    state, here, shares = initialized(1, 1)
    there = Seal(state)
    here.unseal(shares[0])
    there.unseal(shares[0])
    first, second = here.prepare_rotation(), there.prepare_rotation()
    assert isinstance(state.apply(first), Done)
    refused = state.apply(second)
    assert isinstance(refused, Refused) and "changed meanwhile" in refused.message


def test_rekey_needs_the_current_threshold_of_current_shares() -> None:
    _, seal, shares = initialized(3, 2)
    seal.unseal(shares[0])
    seal.unseal(shares[1])
    with pytest.raises(UnsealError, match="needs 2 distinct"):
        seal.prepare_rekey(shares[:1], 3, 2)
    others = [s.encode() for s in split(secrets.token_bytes(32), 3, 2)]
    with pytest.raises(UnsealError, match="not this cluster's"):
        seal.prepare_rekey(others[:2], 3, 2)
    with pytest.raises(UnsealError, match="threshold 4"):
        seal.prepare_rekey(shares[:2], 3, 4)


def test_initialization_happens_once() -> None:
    state, seal, _ = initialized()
    with pytest.raises(UnsealError, match="already initialized"):
        seal.prepare_init(SealKind.SHAMIR, 1, 1)
    other = Seal(BarrierState()).prepare_init(SealKind.SHAMIR, 1, 1)
    assert isinstance(state.apply(InitializeBarrier(other.command.record)), Refused)
    assert isinstance(BarrierState().apply(ReplaceBarrier(other.command.record, (1, 1))),
                      Refused)


def test_a_dev_key_file_unseals_automatically(tmp_path: Path) -> None:
    key_file = tmp_path / "root-key"
    write_dev_root_key(key_file)
    assert key_file.stat().st_mode & 0o777 == 0o600
    state = BarrierState()
    seal = Seal(state, DevFileRootKey(key_file))
    state.apply(seal.prepare_init(SealKind.DEV_FILE).command)

    restarted = Seal(state, DevFileRootKey(key_file))
    assert restarted.unseal_automatically() is True
    # The key file, read as one share of threshold 1, unseals by hand too (restores).
    restarted.seal()
    root = bytes.fromhex(key_file.read_text())
    assert restarted.unseal(Share(1, root).encode()).sealed is False

    write_dev_root_key(key_file)
    with pytest.raises(UnsealError, match="does not open"):
        Seal(state, DevFileRootKey(key_file)).unseal_automatically()


def test_a_restored_record_from_another_cluster_seals_the_nodes_it_does_not_open() -> None:
    # Same keyring version and root generation on both sides: only the keys differ.
    saved_state, _, saved_shares = initialized(1, 1)
    state, seal, shares = initialized(1, 1)
    seal.unseal(shares[0])

    state.restore(saved_state.snapshot())
    assert seal.sealed
    with pytest.raises(UnsealError, match="do not open"):
        seal.unseal(shares[0])
    assert seal.unseal(saved_shares[0]).sealed is False


def test_an_audit_salt_is_replicated_sealed_and_a_sealed_node_writes_no_hmac(
    tmp_path: Path,
) -> None:
    _, seal, shares = initialized(1, 1)
    seal.unseal(shares[0])
    salt = secrets.token_bytes(32)
    device = AuditDevice("main", "file", (("path", "audit.log"),), b"",
                         salt_sealed=seal.encrypt(salt, salt_associated_data("main")))
    state = AuditState()
    assert isinstance(state.apply(EnableAuditDevice(device)), Done)
    assert salt not in state.snapshot() and salt not in pickle.dumps(device)
    broker = AuditBroker("n1", state, tmp_path, decrypt=seal.decrypt)

    async def record(secret: bytes) -> None:
        await broker.record("test", {"secret": Sensitive(secret)})

    try:
        asyncio.run(record(b"k1"))
        assert broker.hash("main", b"k1") == hmac_of(salt, b"k1")
        seal.seal()
        asyncio.run(record(b"k2"))
        with pytest.raises(SaltSealedError):
            broker.hash("main", b"k2")
    finally:
        broker.close()

    written = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    secrets_written = [entry["secret"] for entry in written if entry["type"] == "test"]
    assert secrets_written == [hmac_of(salt, b"k1"), SEALED_VALUE]
