"""The node's seal: whether it holds the keyring, and every way of getting it.

Theory of operation
-------------------
A node starts *sealed*: it replicates and applies the log like any other node, but
the key bytes in its state are barrier ciphertext (cluster/barrier.py) and it holds
no key to open them. It becomes *unsealed* once it has the root key, which opens the
replicated keyring. The root key comes

- from unseal shares (Shamir, cluster/shamir.py): operators hand this node shares
  one at a time, through the CLI or the API, until it has the threshold;
- from an HSM (``Pkcs11RootKey``, cluster/pkcs11_seal.py): the replicated record
  holds the root key sealed by a key that never leaves the HSM; the node opens it
  at start, so it unseals itself after a restart (auto-unseal);
- in dev mode only, from a file beside the node (``DevFileRootKey``), which it says
  loudly in its log.

Unsealing is per node and never replicated: the shares or the root key stay in this
process's memory. Sealing forgets the keyring and any shares given so far.

Initialization draws the root key and the first keyring here, on the node asked to
initialize, and commits only ciphertext (``InitializeBarrier``). With Shamir the
shares are returned once to the caller and never stored. An auto-unseal node
initializes the cluster itself when it finds no barrier record (the first commit
wins; the others open what it committed).

A rotation or rekey committed through another node reaches this one through
``BarrierState``'s watchers, on the apply thread: an unsealed node opens the new
keyring with the one it holds and carries on without being unsealed again.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .barrier import (
    KEY_BYTES,
    BarrierError,
    BarrierRecord,
    BarrierState,
    InitializeBarrier,
    Keyring,
    ReplaceBarrier,
    SealConfig,
    SealKind,
)
from .config import SealSettings
from .shamir import Share, ShareError, combine, split
from .tenancy import Done

log = logging.getLogger("keyquorum.seal")


class SealedError(Exception):
    """The node is sealed: it cannot open or make key material until it is unsealed."""

    def __init__(self) -> None:
        super().__init__("node is sealed")


class UnsealError(ValueError):
    """Shares, a root key or a request the seal refuses; the message says what to do."""


class RootKeySource(Protocol):
    """Where an auto-unseal node gets its root key without operators."""

    kind: SealKind

    def new_root(self) -> tuple[bytes, bytes | None]:
        """A root key for a new cluster, and what to replicate for ``root_key`` (or None)."""
        ...

    def root_key(self, record: BarrierRecord) -> bytes:
        """The root key of ``record``; UnsealError if this source cannot give it."""
        ...


class DevFileRootKey:
    """The root key read from a file: for `keyquorum dev` only, and said so at start."""

    kind = SealKind.DEV_FILE

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> bytes:
        try:
            key = bytes.fromhex(self.path.read_text(encoding="ascii").strip())
        except (OSError, ValueError) as error:
            raise UnsealError(f"cannot read the dev root key from {self.path}: {error}") from None
        if len(key) != KEY_BYTES:
            raise UnsealError(f"{self.path} must hold 64 hex digits (a 256-bit key)")
        return key

    def new_root(self) -> tuple[bytes, bytes | None]:
        return self._read(), None

    def root_key(self, record: BarrierRecord) -> bytes:
        return self._read()


def write_dev_root_key(path: Path) -> None:
    """A fresh dev root key file, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(secrets.token_bytes(KEY_BYTES).hex() + "\n", encoding="ascii")


@dataclass(frozen=True)
class SealStatus:
    """What ``/v1/sys/seal-status`` reports; nothing secret."""

    initialized: bool
    sealed: bool
    kind: str | None
    threshold: int
    shares: int
    # Shares given so far towards the threshold ("2 of 3").
    progress: int
    keyring_version: int | None
    root_generation: int | None


@dataclass(frozen=True)
class Initialized:
    """What initialization hands back once: the shares (Shamir only)."""

    command: InitializeBarrier
    shares: tuple[str, ...]
    keyring: Keyring


class Seal:
    """One node's seal; see the module docstring. Thread-safe."""

    def __init__(self, barrier: BarrierState, auto: RootKeySource | None = None) -> None:
        self._barrier = barrier
        self.auto = auto
        self._lock = threading.Lock()
        self._keyring: Keyring | None = None
        self._generation: int | None = None
        # The record this node's keyring came from, to tell a new record from a replay.
        self._opened: BarrierRecord | None = None
        self._pending: list[Share] = []
        # Sealed by an operator: auto-unseal leaves the node sealed until told otherwise.
        self.held = False
        barrier.watchers.append(self._follow)

    # Status.

    @property
    def record(self) -> BarrierRecord | None:
        return self._barrier.record

    @property
    def sealed(self) -> bool:
        with self._lock:
            return self._keyring is None

    def status(self) -> SealStatus:
        record = self._barrier.record
        with self._lock:
            return SealStatus(
                initialized=record is not None,
                sealed=self._keyring is None,
                kind=None if record is None else record.seal.kind.value,
                threshold=0 if record is None else record.seal.threshold,
                shares=0 if record is None else record.seal.shares,
                progress=len(self._pending),
                keyring_version=None if record is None else record.keyring_version,
                root_generation=None if record is None else record.root_generation,
            )

    # Key material: what handlers put into commands and take out of the state.

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        return self.keyring().encrypt(plaintext, associated_data)

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        return self.keyring().decrypt(ciphertext, associated_data)

    def keyring(self) -> Keyring:
        with self._lock:
            if self._keyring is None:
                raise SealedError()
            return self._keyring

    # Initialization.

    def prepare_init(self, kind: SealKind, shares: int = 1, threshold: int = 1) -> Initialized:
        """Draw a root key and keyring; the command to commit and the shares to hand out."""
        if self._barrier.record is not None:
            raise UnsealError("the cluster is already initialized")
        root_under_hsm = None
        handed_out: tuple[str, ...] = ()
        if kind == SealKind.SHAMIR:
            root = secrets.token_bytes(KEY_BYTES)
            handed_out = _split(root, shares, threshold)
        else:
            if self.auto is None or self.auto.kind != kind:
                raise UnsealError(f"this node is not configured for the {kind.value} seal")
            root, root_under_hsm = self.auto.new_root()
            shares = threshold = 1
        keyring = Keyring.generate(root)
        record = BarrierRecord.first(SealConfig(kind, shares, threshold), keyring, root_under_hsm)
        return Initialized(InitializeBarrier(record), handed_out, keyring)

    # Unsealing and sealing.

    def unseal(self, share_text: str) -> SealStatus:
        """Take one share; with the threshold reached, try to open the keyring."""
        record = self._require_record()
        # A dev key file is a share too: one share of threshold 1 is the root key itself.
        if record.seal.kind == SealKind.PKCS11:
            raise UnsealError(f"this cluster unseals through its {record.seal.kind.value} "
                              "seal, not with shares")
        try:
            share = Share.decode(share_text)
        except ShareError as error:
            raise UnsealError(str(error)) from None
        with self._lock:
            if self._keyring is not None:
                return self._status_locked(record)
            if any(given.x == share.x for given in self._pending):
                raise UnsealError("that share was already given; give a different one")
            self._pending.append(share)
            if len(self._pending) < record.seal.threshold:
                return self._status_locked(record)
            pending, self._pending = self._pending, []

        # The threshold is reached: the shares either open the keyring or are all wrong.
        try:
            root = combine(pending)
            keyring = record.open_with_root(root)
        except (ShareError, BarrierError):
            log.warning("unseal_refused reason=shares_do_not_open_keyring")
            raise UnsealError("these shares do not open this cluster's keyring; progress "
                              "was reset, start again with the right shares") from None
        self._hold(keyring, record)
        return self.status()

    def unseal_automatically(self) -> bool:
        """Open the keyring through the configured source; whether the node is unsealed."""
        record = self._barrier.record
        if self.auto is None or record is None or not self.sealed:
            return not self.sealed
        if record.seal.kind != self.auto.kind:
            raise UnsealError(f"the cluster was initialized with the {record.seal.kind.value} "
                              f"seal, this node is configured for {self.auto.kind.value}")
        try:
            keyring = record.open_with_root(self.auto.root_key(record))
        except BarrierError:
            raise UnsealError(f"the {self.auto.kind.value} root key does not open this "
                              "cluster's keyring") from None
        self._hold(keyring, record)
        return True

    def unseal_with_root(self, root: bytes) -> None:
        record = self._require_record()
        try:
            keyring = record.open_with_root(root)
        except BarrierError:
            raise UnsealError("that root key does not open this cluster's keyring") from None
        self._hold(keyring, record)

    def seal(self, held: bool = False) -> None:
        with self._lock:
            self.held = held
            self._keyring = None
            self._generation = None
            self._pending = []
        log.warning("node_sealed")

    def reset_progress(self) -> None:
        with self._lock:
            self._pending = []

    # Rotation and rekey, drawn here and committed by the caller.

    def prepare_rotation(self) -> ReplaceBarrier:
        record = self._require_record()
        current = self.keyring()
        self._check_current(record)
        rotated = current.rotated()
        return ReplaceBarrier(record.succeeded_by(current, rotated, rekeyed=False),
                              (record.keyring_version, record.root_generation))

    def prepare_rekey(self, given: list[str], shares: int,
                      threshold: int) -> tuple[ReplaceBarrier, tuple[str, ...]]:
        """New unseal shares; the current threshold of current shares authorize it."""
        record = self._require_record()
        current = self.keyring()
        self._check_current(record)
        if record.seal.kind != SealKind.SHAMIR:
            raise UnsealError(f"a {record.seal.kind.value} seal has no unseal shares to rekey")
        try:
            decoded = [Share.decode(text) for text in given]
        except ShareError as error:
            raise UnsealError(str(error)) from None
        if len({share.x for share in decoded}) < record.seal.threshold:
            raise UnsealError(f"rekeying needs {record.seal.threshold} distinct current "
                              f"shares; {len(decoded)} given")
        try:
            matches = combine(decoded) == current.root_key
        except ShareError as error:
            raise UnsealError(str(error)) from None
        if not matches:
            raise UnsealError("these are not this cluster's current unseal shares")

        root = secrets.token_bytes(KEY_BYTES)
        handed_out = _split(root, shares, threshold)
        rekeyed = current.with_root(root)
        replacement = record.succeeded_by(current, rekeyed, rekeyed=True,
                                          seal=SealConfig(SealKind.SHAMIR, shares, threshold))
        return (ReplaceBarrier(replacement, (record.keyring_version, record.root_generation)),
                handed_out)

    # Internals.

    def _require_record(self) -> BarrierRecord:
        record = self._barrier.record
        if record is None:
            raise UnsealError("the cluster is not initialized; run keyquorum operator init")
        return record

    def _check_current(self, record: BarrierRecord) -> None:
        with self._lock:
            if self._generation != record.root_generation:
                raise UnsealError("this node has not caught up with the latest rekey; retry")

    def _hold(self, keyring: Keyring, record: BarrierRecord) -> None:
        with self._lock:
            self.held = False
            self._keyring = keyring
            self._generation = record.root_generation
            self._opened = record
            self._pending = []
        log.info("node_unsealed keyring_version=%d", record.keyring_version)

    def _status_locked(self, record: BarrierRecord) -> SealStatus:
        return SealStatus(True, self._keyring is None, record.seal.kind.value,
                          record.seal.threshold, record.seal.shares, len(self._pending),
                          record.keyring_version, record.root_generation)

    def _follow(self, record: BarrierRecord | None) -> None:
        """On the apply thread: keep an unsealed node's keyring current. Never raises."""
        with self._lock:
            held = self._keyring
        if held is None:
            return
        if record is None:
            self.seal()
            return
        try:
            if record == self._opened:
                return
            try:
                keyring = record.open_with_previous(held)
            except BarrierError:
                # A restored snapshot: its keyring opens with its own root key only.
                keyring = record.open_with_root(held.root_key)
        except Exception as error:
            log.warning("keyring_unreadable_sealing error=%s", type(error).__name__)
            self.seal()
            return
        with self._lock:
            self._keyring = keyring
            self._generation = record.root_generation
            self._opened = record
        log.info("keyring_followed keyring_version=%d root_generation=%d",
                 record.keyring_version, record.root_generation)


def _split(root: bytes, shares: int, threshold: int) -> tuple[str, ...]:
    try:
        return tuple(share.encode() for share in split(root, shares, threshold))
    except ValueError as error:
        raise UnsealError(f"cannot split into {shares} shares with threshold {threshold}: "
                          "use 1 <= threshold <= shares <= 255") from error


def auto_unseal_source(settings: SealSettings) -> RootKeySource | None:
    """The root key source a node's [seal] section names; None for Shamir shares."""
    if settings.type == "dev-file":
        assert settings.key_file is not None
        log.warning("dev_seal_in_use key_file=%s note=the root key sits in a plain file, "
                    "for keyquorum dev only; never run a cluster that matters like this",
                    settings.key_file)
        return DevFileRootKey(settings.key_file)
    if settings.type == "pkcs11":
        # Imported here: python-pkcs11 is only needed by nodes sealed by an HSM.
        from .pkcs11_seal import Pkcs11RootKey

        return Pkcs11RootKey(settings)
    return None


class _Log(Protocol):
    async def barrier(self) -> None: ...

    async def submit(self, command: object) -> object: ...


# How often a sealed auto-unseal node tries again (its HSM may be back, or the
# barrier record may have arrived through the log).
AUTO_UNSEAL_RETRY_SECONDS = 0.5


async def keep_unsealed(seal: Seal, replicated: _Log) -> None:
    """For an auto-unseal node: initialize the cluster if nobody did, then unseal; forever.

    A node an operator sealed stays sealed until unsealed through the API.
    """
    if seal.auto is None:
        return
    last_problem = ""
    while True:
        try:
            if seal.sealed and not seal.held:
                await _auto_unseal_once(seal, replicated)
            last_problem = ""
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # Said once per distinct problem: a missing HSM must not flood the log.
            problem = str(error) if isinstance(error, UnsealError) else type(error).__name__
            if problem != last_problem:
                log.error("auto_unseal_failed problem=%s", problem)
                last_problem = problem
        await asyncio.sleep(AUTO_UNSEAL_RETRY_SECONDS)


async def _auto_unseal_once(seal: Seal, replicated: _Log) -> None:
    assert seal.auto is not None
    if seal.record is None:
        # Only a record committed before this barrier counts as "already initialized".
        await replicated.barrier()
    if seal.record is None:
        made = await asyncio.to_thread(seal.prepare_init, seal.auto.kind)
        outcome = await replicated.submit(made.command)
        if isinstance(outcome, Done):
            log.info("cluster_initialized seal=%s", seal.auto.kind.value)
            seal.unseal_with_root(made.keyring.root_key)
            return
    await asyncio.to_thread(seal.unseal_automatically)
