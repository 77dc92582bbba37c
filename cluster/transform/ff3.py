"""FF3-1, the format-preserving cipher of NIST SP 800-38G Rev. 1 (section 6.3).

Theory of operation
-------------------
FF3-1 encrypts a string of *numerals* (integers below a radix) into another string of
the same length and radix: a Feistel network of eight rounds over the two halves, where
each round's function is one AES block. The round input is the round number and half
of the 56-bit tweak, xored together into four bytes, followed by the other half of the
string as a 96-bit number; FF3's habit of reversing strings, numbers and the key is
kept exactly as the standard writes it, because the published vectors depend on it.

Rev. 1 differs from the original FF3 in two places, both enforced here: the tweak is 56
bits (the 64-bit tweak of FF3 allowed the Durak-Vaudenay attack), and the domain must
hold at least a million values (radix ** minlen >= 1,000,000).

Numerals are plain ints, so any alphabet of 2..65,536 characters maps onto them
(cluster/transform/model.py); this module knows nothing of characters.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MIN_RADIX = 2
MAX_RADIX = 65536
TWEAK_BYTES = 7
# SP 800-38G Rev. 1, 5.2: a domain smaller than this is refused outright.
MIN_DOMAIN_SIZE = 1_000_000
ROUNDS = 8
KEY_SIZES = (16, 24, 32)


class FF3Error(ValueError):
    """Input outside what FF3-1 allows; the message says which rule and what to give."""


def min_length(radix: int) -> int:
    """The shortest input: the least length whose domain holds a million values."""
    length = 2
    while radix**length < MIN_DOMAIN_SIZE:
        length += 1
    return length


def max_length(radix: int) -> int:
    """The longest input, 2 * floor(log_radix(2 ** 96)): each half fits the 96-bit field."""
    half = 0
    while radix ** (half + 1) <= 2**96:
        half += 1
    return 2 * half


class FF3Cipher:
    """FF3-1 for one key and radix. Thread-safe: each call makes its own AES context."""

    def __init__(self, key: bytes, radix: int) -> None:
        if len(key) not in KEY_SIZES:
            raise FF3Error(f"the key must be 16, 24 or 32 bytes, not {len(key)}")
        if not MIN_RADIX <= radix <= MAX_RADIX:
            raise FF3Error(f"the radix must be between {MIN_RADIX} and {MAX_RADIX}, not {radix}")
        self.radix = radix
        self.min_length = min_length(radix)
        self.max_length = max_length(radix)
        # The standard applies AES under the byte-reversed key (REVB(K)).
        self._aes = algorithms.AES(key[::-1])

    def check(self, numerals: Sequence[int], tweak: bytes) -> None:
        """Raise FF3Error unless ``numerals`` and ``tweak`` are valid input."""
        if len(tweak) != TWEAK_BYTES:
            raise FF3Error(f"the tweak must be {TWEAK_BYTES} bytes (56 bits), not "
                           f"{len(tweak)}")
        if not self.min_length <= len(numerals) <= self.max_length:
            raise FF3Error(f"the input has {len(numerals)} characters; with {self.radix} "
                           f"characters in the alphabet FF3-1 takes {self.min_length} to "
                           f"{self.max_length}")

    def encrypt(self, numerals: Sequence[int], tweak: bytes) -> list[int]:
        return self._run(numerals, tweak, encrypt=True)

    def decrypt(self, numerals: Sequence[int], tweak: bytes) -> list[int]:
        return self._run(numerals, tweak, encrypt=False)

    def _run(self, numerals: Sequence[int], tweak: bytes, *, encrypt: bool) -> list[int]:
        self.check(numerals, tweak)
        radix = self.radix
        n = len(numerals)
        u = (n + 1) // 2
        v = n - u

        # The halves as numbers, least significant numeral first (NUM_radix(REV(X))).
        a = _number(numerals[:u], radix)
        b = _number(numerals[u:], radix)

        # The 56-bit tweak split into two 32-bit halves, the middle nibble shared out.
        left = tweak[:3] + bytes([tweak[3] & 0xF0])
        right = tweak[4:7] + bytes([(tweak[3] & 0x0F) << 4])
        modulus_u, modulus_v = radix**u, radix**v

        # One ECB context for the eight single-block calls of this input.
        aes = Cipher(self._aes, modes.ECB()).encryptor()
        if encrypt:
            for i in range(ROUNDS):
                even = i % 2 == 0
                y = _round(aes, right if even else left, i, b)
                a, b = b, (a + y) % (modulus_u if even else modulus_v)
        else:
            for i in reversed(range(ROUNDS)):
                even = i % 2 == 0
                y = _round(aes, right if even else left, i, a)
                a, b = (b - y) % (modulus_u if even else modulus_v), a

        return _numerals(a, radix, u) + _numerals(b, radix, v)


def _round(aes: object, half_tweak: bytes, i: int, value: int) -> int:
    # P = (W xor [i]^4) || [value]^12; S = REVB(CIPH(REVB(P))); y = NUM(S).
    w = int.from_bytes(half_tweak, "big") ^ i
    block = w.to_bytes(4, "big") + value.to_bytes(12, "big")
    out = aes.update(block[::-1])  # type: ignore[attr-defined]
    return int.from_bytes(out, "little")


def _number(numerals: Sequence[int], radix: int) -> int:
    value = 0
    for numeral in reversed(numerals):
        value = value * radix + numeral
    return value


def _numerals(value: int, radix: int, length: int) -> list[int]:
    # REV(STR_radix^m(value)): least significant numeral first.
    out = []
    for _ in range(length):
        value, numeral = divmod(value, radix)
        out.append(numeral)
    return out
