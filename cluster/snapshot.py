"""Encrypted snapshots: the whole replicated state in one file that only the unseal keys open.

The file is ``MAGIC``, then the keyring sealed by the root key (as the barrier record
holds it), then the state sealed by the keyring's active term. The state inside is
the very bytes a Raft dump holds, so key material in it is already barrier
ciphertext; the outer layer hides the rest (names, attributes, tenancy). Opening
takes the root key, which only the unseal shares give back: a snapshot restores onto
a fresh cluster only for whoever holds the old cluster's shares.

Nothing is unpickled before the outer layer authenticated the bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .barrier import BarrierError, BarrierRecord, Keyring, open_keyring_under_root
from .shamir import Share, ShareError, combine

# Never change: it starts every snapshot file.
MAGIC = b"KQSNAP\x01\n"
_LENGTH = struct.Struct(">I")
_BODY = b"keyquorum snapshot body"


class SnapshotError(ValueError):
    """A snapshot that cannot be made or opened; the message says what to do."""


@dataclass(frozen=True)
class OpenedSnapshot:
    state: bytes
    root_key: bytes


def seal_snapshot(state: bytes, record: BarrierRecord | None, keyring: Keyring) -> bytes:
    if record is None:
        raise SnapshotError("the cluster is not initialized; there is nothing to save")
    under_root = record.keyring_under_root
    return MAGIC + _LENGTH.pack(len(under_root)) + under_root + keyring.encrypt(state, _BODY)


def open_snapshot(data: bytes, keys: list[str]) -> OpenedSnapshot:
    """The state in ``data``, opened with the unseal ``keys`` of the cluster that saved it."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _LENGTH.size:
        raise SnapshotError("not a keyquorum snapshot file")
    if not keys:
        raise SnapshotError("give the unseal keys of the cluster that saved the snapshot")
    at = len(MAGIC)
    (length,) = _LENGTH.unpack_from(data, at)
    under_root = data[at + _LENGTH.size:at + _LENGTH.size + length]
    body = data[at + _LENGTH.size + length:]

    try:
        root_key = combine([Share.decode(key) for key in keys])
        keyring = open_keyring_under_root(root_key, under_root)
        state = keyring.decrypt(body, _BODY)
    except ShareError as error:
        raise SnapshotError(str(error)) from None
    except BarrierError:
        raise SnapshotError("these unseal keys do not open this snapshot (too few, or not "
                            "the keys of the cluster that saved it), or the file is damaged"
                            ) from None
    return OpenedSnapshot(state, root_key)
