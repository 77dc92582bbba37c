"""The barrier: every key byte the state holds is AES-256-GCM ciphertext under the keyring.

Theory of operation
-------------------
The *keyring* is a list of 256-bit *terms*, numbered from 1; the newest is active.
``Keyring.encrypt`` seals with the active term and writes the term's number in front
of the ciphertext, so ``decrypt`` finds the term that sealed it: after a rotation new
writes use the new term and everything older still opens. Associated data binds a
ciphertext to where it belongs (an object's scope and identifier), so ciphertexts
cannot be swapped between objects.

The keyring itself never reaches the state in the clear. ``BarrierRecord``, which
the Raft log replicates, holds it twice:

- ``keyring_under_root``: sealed by the root key, which comes from the unseal shares,
  the HSM or the dev key file (cluster/seal.py). Unsealing opens this copy.
- ``keyring_under_term``: sealed by the term that was active before this record.
  Nodes that are already unsealed open this one when a rotation or rekey made on
  another node reaches them, so they follow without being unsealed again. The
  keyring carries the root key for the same reason: after a rekey every unsealed
  node holds the new root key and can rotate in its turn.

Commands carry every value drawn at random (the node that rotates draws the new
term and seals both copies), and apply only checks and records, as everywhere in
the state (cluster/state.py). A replacement names the record it replaces (its
keyring version and root generation), so of two racing rotations one is refused.

Formats on disk are marked below: never renumber them.
"""

from __future__ import annotations

import enum
import pickle
import secrets
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .tenancy import Done, Problem, Refused

KEY_BYTES = 32
NONCE_BYTES = 12
# The first byte of every barrier ciphertext. Never renumber: it is in the journal.
CIPHERTEXT_FORMAT = 1
# The first bytes of a keyring's plaintext. Never change: it is in the journal.
KEYRING_MAGIC = b"KQKR1"
_HEADER = struct.Struct(">BI")  # format, term number
_TERM = struct.Struct(">I")

# Associated data of the two keyring copies, so one cannot stand for the other.
_UNDER_ROOT = b"keyquorum keyring under root key"
_UNDER_TERM = b"keyquorum keyring under previous term"


class BarrierError(Exception):
    """A ciphertext that does not open: wrong key, unknown term, or tampered bytes."""


class Keyring:
    """The barrier's terms and the root key they travel with; immutable."""

    def __init__(self, root_key: bytes, terms: dict[int, bytes]) -> None:
        if len(root_key) != KEY_BYTES or not terms:
            raise ValueError("a keyring needs a 32-byte root key and at least one term")
        self.root_key = root_key
        self._terms = dict(terms)
        self.active_version = max(terms)
        self._ciphers = {version: AESGCM(key) for version, key in terms.items()}

    @classmethod
    def generate(cls, root_key: bytes) -> Keyring:
        return cls(root_key, {1: secrets.token_bytes(KEY_BYTES)})

    @property
    def versions(self) -> list[int]:
        return sorted(self._terms)

    def rotated(self) -> Keyring:
        """A keyring with one more term, the new active one; the old ones stay."""
        terms = dict(self._terms)
        terms[self.active_version + 1] = secrets.token_bytes(KEY_BYTES)
        return Keyring(self.root_key, terms)

    def with_root(self, root_key: bytes) -> Keyring:
        """The same terms travelling with another root key (a rekey)."""
        return Keyring(root_key, self._terms)

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        header = _HEADER.pack(CIPHERTEXT_FORMAT, self.active_version)
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._ciphers[self.active_version].encrypt(
            nonce, plaintext, header + associated_data)
        return header + nonce + sealed

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        if len(ciphertext) < _HEADER.size + NONCE_BYTES + 16:
            raise BarrierError("the ciphertext is too short")
        header = ciphertext[:_HEADER.size]
        form, version = _HEADER.unpack(header)
        if form != CIPHERTEXT_FORMAT:
            raise BarrierError(f"unknown ciphertext format {form}")
        cipher = self._ciphers.get(version)
        if cipher is None:
            raise BarrierError(f"no keyring term {version}")
        nonce = ciphertext[_HEADER.size:_HEADER.size + NONCE_BYTES]
        try:
            return cipher.decrypt(nonce, ciphertext[_HEADER.size + NONCE_BYTES:],
                                  header + associated_data)
        except InvalidTag:
            raise BarrierError("the ciphertext does not open with its term") from None

    def to_bytes(self) -> bytes:
        parts = [KEYRING_MAGIC, self.root_key, _TERM.pack(len(self._terms))]
        for version in self.versions:
            parts += [_TERM.pack(version), self._terms[version]]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> Keyring:
        if not data.startswith(KEYRING_MAGIC):
            raise BarrierError("not a keyring")
        at = len(KEYRING_MAGIC)
        root_key = data[at:at + KEY_BYTES]
        (count,) = _TERM.unpack_from(data, at + KEY_BYTES)
        at += KEY_BYTES + _TERM.size
        terms = {}
        for _ in range(count):
            (version,) = _TERM.unpack_from(data, at)
            terms[version] = data[at + _TERM.size:at + _TERM.size + KEY_BYTES]
            at += _TERM.size + KEY_BYTES
        return cls(root_key, terms)


def seal_with_key(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """AES-256-GCM under a bare key: nonce, then ciphertext and tag."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data)


def open_with_key(key: bytes, sealed: bytes, associated_data: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated_data)
    except (InvalidTag, ValueError):
        raise BarrierError("does not open with that key") from None


# The replicated part.


class SealKind(enum.Enum):
    """Where the root key comes from. The values are in the journal: never rename."""

    SHAMIR = "shamir"
    PKCS11 = "pkcs11"
    # A file next to the node: for `keyquorum dev` only, never in production.
    DEV_FILE = "dev-file"


@dataclass(frozen=True)
class SealConfig:
    kind: SealKind
    shares: int = 1
    threshold: int = 1


@dataclass(frozen=True)
class BarrierRecord:
    """The replicated barrier: how to unseal, and the keyring sealed two ways."""

    seal: SealConfig
    keyring_version: int
    # Counts rekeys: each new root key gets the next number.
    root_generation: int
    keyring_under_root: bytes
    # Under the term active before this record; for the first record, its own.
    keyring_under_term: bytes
    # The root key sealed by the HSM (PKCS#11 seal only).
    root_under_hsm: bytes | None = None

    @classmethod
    def first(cls, seal: SealConfig, keyring: Keyring,
              root_under_hsm: bytes | None = None) -> BarrierRecord:
        return cls(seal, keyring.active_version, 1,
                   seal_keyring_under_root(keyring),
                   keyring.encrypt(keyring.to_bytes(), _UNDER_TERM), root_under_hsm)

    def succeeded_by(self, previous: Keyring, keyring: Keyring, *, rekeyed: bool,
                     seal: SealConfig | None = None,
                     root_under_hsm: bytes | None = None) -> BarrierRecord:
        """The record after a rotation or a rekey, drawn by a node holding ``previous``."""
        return BarrierRecord(
            seal=seal or self.seal,
            keyring_version=keyring.active_version,
            root_generation=self.root_generation + (1 if rekeyed else 0),
            keyring_under_root=seal_keyring_under_root(keyring),
            keyring_under_term=previous.encrypt(keyring.to_bytes(), _UNDER_TERM),
            root_under_hsm=root_under_hsm if rekeyed else self.root_under_hsm,
        )

    def open_with_root(self, root_key: bytes) -> Keyring:
        """The keyring, if ``root_key`` is this record's root key; BarrierError if not."""
        return open_keyring_under_root(root_key, self.keyring_under_root)

    def open_with_previous(self, previous: Keyring) -> Keyring:
        return Keyring.from_bytes(previous.decrypt(self.keyring_under_term, _UNDER_TERM))


def open_keyring_under_root(root_key: bytes, sealed: bytes) -> Keyring:
    keyring = Keyring.from_bytes(open_with_key(root_key, sealed, _UNDER_ROOT))
    if keyring.root_key != root_key:
        raise BarrierError("the keyring names another root key")
    return keyring


def seal_keyring_under_root(keyring: Keyring) -> bytes:
    return seal_with_key(keyring.root_key, keyring.to_bytes(), _UNDER_ROOT)


@dataclass(frozen=True)
class InitializeBarrier:
    record: BarrierRecord


@dataclass(frozen=True)
class ReplaceBarrier:
    """A rotation or rekey; refused unless ``replaces`` is still the current record's."""

    record: BarrierRecord
    # (keyring_version, root_generation) of the record this one succeeds.
    replaces: tuple[int, int]


@dataclass(frozen=True)
class RestoreState:
    """Replace the whole state with a snapshot's (``operator snapshot restore``)."""

    snapshot: bytes


BARRIER_COMMANDS = (InitializeBarrier, ReplaceBarrier)


class BarrierState:
    """The replicated barrier record; ``watchers`` hear every change, on the apply thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._record: BarrierRecord | None = None
        self.watchers: list[Callable[[BarrierRecord | None], None]] = []

    @property
    def record(self) -> BarrierRecord | None:
        with self._lock:
            return self._record

    def apply(self, command: object) -> Done | Refused:
        with self._lock:
            if isinstance(command, InitializeBarrier):
                if self._record is not None:
                    return Refused(Problem.CONFLICT, "the cluster is already initialized")
                self._record = command.record
            elif isinstance(command, ReplaceBarrier):
                if self._record is None:
                    return Refused(Problem.CONFLICT, "the cluster is not initialized")
                current = (self._record.keyring_version, self._record.root_generation)
                if command.replaces != current:
                    return Refused(Problem.CONFLICT, "the keyring changed meanwhile; retry")
                self._record = command.record
            else:
                return Refused(Problem.INVALID, f"unknown command {type(command).__name__}")
            record = self._record
        self._announce(record)
        return Done(record.keyring_version)

    def snapshot(self) -> bytes:
        with self._lock:
            return pickle.dumps(self._record, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, data: bytes | None) -> None:
        record = None if data is None else pickle.loads(data)
        with self._lock:
            self._record = record
        self._announce(record)

    def _announce(self, record: BarrierRecord | None) -> None:
        for watcher in self.watchers:
            watcher(record)
