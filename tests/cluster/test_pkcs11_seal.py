"""Auto-unseal through PKCS#11 against SoftHSM2 (Debian's softhsm2), on a token of our own."""

from __future__ import annotations

import pytest
from softhsm import LIBRARY, add_token, make_token

from keyquorum.cluster.barrier import BarrierState, SealKind
from keyquorum.cluster.cluster_state import ClusterState
from keyquorum.cluster.config import SealSettings
from keyquorum.cluster.pkcs11_seal import Pkcs11RootKey
from keyquorum.cluster.seal import Seal, UnsealError


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> SealSettings:
    """A fresh token with two AES keys, in a folder of its own (SOFTHSM2_CONF)."""
    make_token(tmp_path_factory.mktemp("softhsm"), "keyquorum", pin="1234", so_pin="5678",
               aes_keys=["root-seal", "other"])
    return SealSettings(type="pkcs11", library=LIBRARY, token_label="keyquorum", pin="1234",
                        key_label="root-seal")


def test_an_hsm_node_initializes_and_unseals_itself_again_after_a_restart(
    token: SealSettings,
) -> None:
    state = ClusterState()
    first = Seal(state.barrier, Pkcs11RootKey(token))
    made = first.prepare_init(SealKind.PKCS11)
    state.apply(made.command)
    first.unseal_with_root(made.keyring.root_key)
    sealed = first.encrypt(b"key bytes", b"object/default/1")

    record = state.barrier.record
    assert record is not None and record.root_under_hsm is not None
    assert made.keyring.root_key not in state.snapshot()

    # A restart: a new process replays the state and asks the HSM for the root key.
    restarted = ClusterState()
    restarted.restore(state.snapshot())
    seal = Seal(restarted.barrier, Pkcs11RootKey(token))
    assert seal.sealed and seal.unseal_automatically() is True
    assert seal.decrypt(sealed, b"object/default/1") == b"key bytes"


def test_another_hsm_key_or_a_wrong_pin_leaves_the_node_sealed(token: SealSettings) -> None:
    state = BarrierState()
    seal = Seal(state, Pkcs11RootKey(token))
    state.apply(seal.prepare_init(SealKind.PKCS11).command)

    other_key = SealSettings(**{**vars(token), "key_label": "other"})
    with pytest.raises(UnsealError, match="HSM refused"):
        Seal(state, Pkcs11RootKey(other_key)).unseal_automatically()
    wrong_pin = SealSettings(**{**vars(token), "pin": "0000"})
    with pytest.raises(UnsealError, match="PinIncorrect") as refused:
        Seal(state, Pkcs11RootKey(wrong_pin)).unseal_automatically()
    assert "0000" not in str(refused.value)

    # A node configured for shares cannot stand in for the HSM.
    with pytest.raises(UnsealError, match="not with shares|pkcs11"):
        Seal(state).unseal("AQID")


def test_a_token_that_appears_after_a_failed_try_is_found_at_the_next(
    token: SealSettings,
) -> None:
    # A PKCS#11 library lists its tokens at C_Initialize; a token it missed then (being
    # written by another process, or plugged in later) must still be found on a retry.
    late = SealSettings(**{**vars(token), "token_label": "late", "key_label": "late-seal"})
    hsm = Pkcs11RootKey(late)
    Pkcs11RootKey(token).new_root()  # the library is loaded in this process by now
    with pytest.raises(UnsealError, match="NoSuchToken"):
        hsm.new_root()

    add_token("late", pin=token.pin, so_pin="5678", aes_keys=["late-seal"])

    root, sealed = hsm.new_root()
    assert len(root) == 32 and sealed is not None
