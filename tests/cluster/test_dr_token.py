"""Generating a DR operation token from a quorum of unseal shares, with a one-time pad."""

from __future__ import annotations

import pytest

from keyquorum.cluster.barrier import BarrierState, SealKind
from keyquorum.cluster.dr_token import (
    AttemptStatus,
    DrTokenError,
    DrTokenGeneration,
    TokenReady,
    decode_token,
)
from keyquorum.cluster.seal import Seal
from keyquorum.cluster.tenancy import Done

TTL = 600


def sealed_cluster(shares: int = 3, threshold: int = 2) -> tuple[Seal, list[str]]:
    """A Shamir-sealed barrier and its shares; the node stays sealed (shares do not need it)."""
    state = BarrierState()
    seal = Seal(state)
    made = seal.prepare_init(SealKind.SHAMIR, shares, threshold)
    assert isinstance(state.apply(made.command), Done)
    return seal, list(made.shares)


def test_the_threshold_of_shares_makes_a_token_only_the_pad_holder_reads() -> None:
    seal, shares = sealed_cluster()
    generation = DrTokenGeneration(seal)
    started = generation.start(TTL)
    nonce = started.status.nonce
    assert nonce is not None and started.status.required == 2

    first = generation.give(shares[2], nonce)
    assert first == AttemptStatus(True, nonce, 1, 2)
    ready = generation.give(shares[0], nonce)
    assert isinstance(ready, TokenReady)

    # The answer alone is not the token; with the starter's pad it is.
    assert ready.encoded_token != ready.token
    assert decode_token(ready.encoded_token, started.otp) == ready.token
    generation.finish(nonce)
    assert not generation.status().started


def test_shares_of_another_cluster_are_refused_and_forgotten() -> None:
    seal, shares = sealed_cluster()
    _, foreign = sealed_cluster()
    generation = DrTokenGeneration(seal)
    nonce = generation.start(TTL).status.nonce
    assert nonce is not None

    generation.give(foreign[0], nonce)
    with pytest.raises(DrTokenError, match="do not open"):
        generation.give(foreign[1], nonce)

    # The same nonce goes on, from no shares: the right ones then succeed.
    assert generation.status() == AttemptStatus(True, nonce, 0, 2)
    generation.give(shares[0], nonce)
    assert isinstance(generation.give(shares[1], nonce), TokenReady)


def test_a_wrong_nonce_a_repeated_share_and_a_second_attempt_are_refused() -> None:
    seal, shares = sealed_cluster()
    generation = DrTokenGeneration(seal)
    nonce = generation.start(TTL).status.nonce
    assert nonce is not None

    with pytest.raises(DrTokenError, match="nonce"):
        generation.give(shares[0], "0" * 32)
    generation.give(shares[0], nonce)
    with pytest.raises(DrTokenError, match="already given"):
        generation.give(shares[0], nonce)
    with pytest.raises(DrTokenError, match="already in progress"):
        generation.start(TTL)
    with pytest.raises(DrTokenError):
        generation.give("not a share", nonce)

    generation.cancel()
    with pytest.raises(DrTokenError, match="no DR operation token attempt"):
        generation.give(shares[1], nonce)


def test_a_pad_of_another_length_is_refused() -> None:
    with pytest.raises(DrTokenError, match="not the one"):
        decode_token("AAAA", "AAAAAAAA")
