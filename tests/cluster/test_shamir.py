"""Shamir sharing over GF(256): field arithmetic against FIPS-197, split and combine."""

from __future__ import annotations

import itertools
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyquorum.cluster.shamir import Share, ShareError, combine, divide, multiply, split


def reference_multiply(a: int, b: int) -> int:
    """Carry-less multiplication, then reduction by x^8+x^4+x^3+x+1: a second reading."""
    wide = 0
    for bit in range(8):
        if b >> bit & 1:
            wide ^= a << bit
    for bit in range(14, 7, -1):
        if wide >> bit & 1:
            wide ^= 0x11B << (bit - 8)
    return wide


def test_multiplication_matches_the_worked_examples_of_fips_197() -> None:
    # FIPS-197 section 4.2: {57} . {83} = {c1}; section 4.2.1: {57} . {13} = {fe};
    # section 5.1.1: {53} is the inverse of {ca}.
    assert multiply(0x57, 0x83) == 0xC1
    assert multiply(0x57, 0x13) == 0xFE
    assert multiply(0x53, 0xCA) == 0x01
    assert divide(1, 0xCA) == 0x53


def test_multiplication_and_division_agree_with_a_reference_on_every_pair() -> None:
    for a, b in itertools.product(range(256), repeat=2):
        assert multiply(a, b) == reference_multiply(a, b)
        if b:
            assert multiply(divide(a, b), b) == a


def test_a_known_split_evaluates_the_polynomial_by_hand() -> None:
    # Threshold 2: y = secret + c * x. With c = {57}, share x = {83} is {c1} + secret
    # ({57}.{83} = {c1}, FIPS-197), and x = {13} is {fe} + secret.
    secret = bytes([0x00, 0x01, 0xFF])
    shares = split(secret, 0x83, 2, random_bytes=lambda n: bytes([0x57]) * n)

    assert shares[0x83 - 1] == Share(0x83, bytes([0xC1, 0xC0, 0x3E]))
    assert shares[0x13 - 1] == Share(0x13, bytes([0xFE, 0xFF, 0x01]))
    assert combine([shares[0x83 - 1], shares[0x13 - 1]]) == secret


@settings(max_examples=60, deadline=None)
@given(
    secret=st.binary(min_size=1, max_size=48),
    shape=st.integers(1, 8).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n))),
    data=st.data(),
)
def test_any_threshold_of_the_shares_recovers_the_secret(
    secret: bytes, shape: tuple[int, int], data: st.DataObject
) -> None:
    count, threshold = shape
    shares = split(secret, count, threshold)
    chosen = data.draw(st.permutations(shares))[:threshold]

    assert combine(chosen) == secret
    # More shares than needed interpolate the same polynomial.
    assert combine(shares) == secret


def test_one_share_short_of_the_threshold_never_gives_the_secret() -> None:
    for _ in range(300):
        secret = secrets.token_bytes(32)
        shares = split(secret, 5, 3)
        for pair in itertools.combinations(shares, 2):
            assert combine(list(pair)) != secret


def test_one_share_short_is_uniform_whatever_the_secret() -> None:
    # With threshold 2, one share's byte is secret + c.x with c uniform: every value
    # appears, for a secret of all zeros as for one of all ones.
    for secret in (b"\x00", b"\xff"):
        seen = {split(secret, 3, 2)[0].y[0] for _ in range(4000)}
        assert len(seen) == 256


def test_shares_survive_their_text_form() -> None:
    shares = split(secrets.token_bytes(32), 3, 2)
    texts = [share.encode() for share in shares]
    assert [Share.decode(text) for text in texts] == shares
    assert all(Share.decode(text).x == number for number, text in enumerate(texts, 1))


@pytest.mark.parametrize("text, problem", [
    ("not base64!", "not valid base64"),
    ("AQ==", "too short"),
    ("AAEC", "number 0"),
])
def test_malformed_shares_are_refused_with_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ShareError, match=problem):
        Share.decode(text)


def test_the_same_share_twice_is_refused() -> None:
    shares = split(secrets.token_bytes(32), 3, 2)
    with pytest.raises(ShareError, match="twice"):
        combine([shares[0], shares[0]])


def test_shares_of_different_lengths_are_refused() -> None:
    with pytest.raises(ShareError, match="different lengths"):
        combine([split(b"ab", 2, 2)[0], split(b"abc", 2, 2)[1]])
    with pytest.raises(ShareError, match="no shares"):
        combine([])


@pytest.mark.parametrize("count, threshold", [(3, 0), (2, 3), (256, 2)])
def test_impossible_splits_are_refused(count: int, threshold: int) -> None:
    with pytest.raises(ValueError, match="threshold"):
        split(b"secret", count, threshold)
