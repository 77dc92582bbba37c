"""Limits the decoder enforces before it trusts anything a peer sent.

Each limit is a named default that a node's configuration may override. They bound
the memory and CPU one message can cost, so that a hostile or broken client cannot
take a node down with a single request.
"""

from __future__ import annotations

from dataclasses import dataclass

# vCenter's largest request in the captured conversation is 440 bytes, and a
# Register of a 4096-bit RSA key with a certificate chain stays under 16 KiB.
# 1 MiB leaves room for batches and large opaque objects while keeping a
# connection's buffer small; it is refused from the 8-byte header, unread.
MAX_MESSAGE_SIZE = 1024 * 1024

# The deepest real message (a 2.x Register of a wrapped key inside a batch item)
# nests about 9 structures. 32 leaves room and caps the decoder's recursion.
MAX_DEPTH = 32

# A 1 MiB message of empty structures would hold 131,072 items; real requests hold
# a few hundred. 20,000 bounds the objects one message can make the decoder build.
MAX_ITEMS = 20_000


@dataclass(frozen=True)
class Limits:
    max_message_size: int = MAX_MESSAGE_SIZE
    max_depth: int = MAX_DEPTH
    max_items: int = MAX_ITEMS


DEFAULT_LIMITS = Limits()
