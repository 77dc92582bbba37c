"""Shamir secret sharing over GF(256): the root key as N unseal shares, any T of which open it.

Theory of operation
-------------------
Each byte of the secret is the constant term of its own random polynomial of degree
T - 1 over GF(2^8) (the AES field, reduction polynomial x^8 + x^4 + x^3 + x + 1).
Share number x (1 to 255) holds every polynomial evaluated at x. Any T shares fix
the polynomials, and Lagrange interpolation at 0 gives the secret back; T - 1 shares
are consistent with every possible secret, so they tell nothing about it.

A share travels as text: base64 of one byte x followed by the evaluated bytes. The
format is on operators' paper and in their password managers: never change it.

What this module cannot tell: whether T well-formed shares belong together. Shares
of another split, or a mistyped but well-formed share, combine into a wrong secret;
the seal finds out because that secret does not open the keyring (AES-GCM refuses
it; cluster/seal.py).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Share numbers are the nonzero field elements: x = 0 would be the secret itself.
MAX_SHARES = 255


class ShareError(ValueError):
    """Shares that cannot be combined; the message says what is wrong with them."""


def _multiply(a: int, b: int) -> int:
    """a times b in GF(2^8), by shift and add ("Russian peasant"), reducing by 0x11B."""
    product = 0
    while b:
        if b & 1:
            product ^= a
        a <<= 1
        if a & 0x100:
            a ^= 0x11B
        b >>= 1
    return product


# Log and antilog tables over the generator 3, built once from _multiply: division
# then costs two lookups.
_EXP = [0] * 510
_LOG = [0] * 256
_element = 1
for _power in range(255):
    _EXP[_power] = _element
    _LOG[_element] = _power
    _element = _multiply(_element, 3)
for _power in range(255, 510):
    _EXP[_power] = _EXP[_power - 255]


def multiply(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def divide(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError("division by zero in GF(256)")
    if a == 0:
        return 0
    return _EXP[_LOG[a] + 255 - _LOG[b]]


@dataclass(frozen=True)
class Share:
    """One point of every byte's polynomial: x (1-255) and the values there."""

    x: int
    y: bytes

    def encode(self) -> str:
        return base64.b64encode(bytes([self.x]) + self.y).decode("ascii")

    @classmethod
    def decode(cls, text: str) -> Share:
        """Read a share as printed by ``encode``; ShareError if it is not one."""
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ShareError("a share is not valid base64; copy it exactly as printed") from None
        if len(raw) < 2:
            raise ShareError("a share is too short; copy it exactly as printed")
        if raw[0] == 0:
            raise ShareError("a share has number 0, which no split produces")
        return cls(raw[0], raw[1:])


def split(
    secret: bytes,
    shares: int,
    threshold: int,
    random_bytes: Callable[[int], bytes] = secrets.token_bytes,
) -> list[Share]:
    """``shares`` shares of ``secret``, any ``threshold`` of which recover it."""
    if not secret:
        raise ValueError("the secret is empty")
    if not 1 <= threshold <= shares <= MAX_SHARES:
        raise ValueError(f"need 1 <= threshold ({threshold}) <= shares ({shares}) <= "
                         f"{MAX_SHARES}")

    # One polynomial per secret byte: its constant term, then T - 1 random coefficients.
    coefficients = [random_bytes(len(secret)) for _ in range(threshold - 1)]
    made = []
    for x in range(1, shares + 1):
        y = bytearray(secret)
        # Horner's rule from the highest coefficient down to the secret.
        for position in range(len(secret)):
            value = 0
            for row in reversed(coefficients):
                value = multiply(value, x) ^ row[position]
            y[position] = multiply(value, x) ^ secret[position]
        made.append(Share(x, bytes(y)))
    return made


def combine(shares: Sequence[Share]) -> bytes:
    """The secret the shares interpolate to at 0; ShareError on duplicates or mismatch.

    Any number of distinct shares of one length is interpolated; the caller decides
    how many it requires (the threshold is not written in the shares).
    """
    if not shares:
        raise ShareError("no shares given")
    numbers = [share.x for share in shares]
    if len(set(numbers)) != len(numbers):
        raise ShareError("the same share was given twice")
    if len({len(share.y) for share in shares}) != 1:
        raise ShareError("the shares have different lengths: they come from different splits")

    # Lagrange at 0: secret = sum of y_i * prod_{j != i} x_j / (x_j - x_i); minus is xor.
    secret = bytearray(len(shares[0].y))
    for share in shares:
        weight = 1
        for other in shares:
            if other.x != share.x:
                weight = multiply(weight, divide(other.x, other.x ^ share.x))
        for position, value in enumerate(share.y):
            secret[position] ^= multiply(weight, value)
    return bytes(secret)
