"""Rekeying the unseal shares step by step, as share holders do it in Vault.

An operator with a root token starts an attempt on one node, naming the new number of
shares and the new threshold; the node answers a nonce. Each holder of a current share
then hands it to that node with the nonce, one at a time, from wherever they are; the
node shows the progress ("2 of 3"). When the current threshold is reached the node
checks that the shares rebuild this cluster's root key, draws a new root key, splits it
into the new shares and commits the keyring wrapped under it (a ``ReplaceBarrier``,
cluster/seal.py ``prepare_rekey``). The new shares are answered once, to the holder
whose share completed the attempt, and stored nowhere.

Why the progress lives on one node, in memory: the shares given so far are secrets,
and anything replicated lands in every journal. So the attempt belongs to the node it
was started on, like unseal progress; holders must all talk to that node, and a restart
of that node cancels the attempt (start again). Nothing is ever half-applied: the keyring
changes only in the one command at the end. Nodes keep serving throughout; every
unsealed node follows the new record without being unsealed again.

A wrong share cannot be told apart from a right one until the threshold is reached
(a Shamir share carries no check of its own). Then the attempt's shares are thrown away
and the holders start over with the same nonce; the keyring is untouched.
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass

from .barrier import ReplaceBarrier, SealKind
from .seal import Seal, UnsealError
from .shamir import Share, ShareError

log = logging.getLogger("keyquorum.seal.rekey")


@dataclass(frozen=True)
class RekeyStatus:
    """What ``/v1/sys/rekey/init`` reports; the nonce is not secret, the shares are."""

    started: bool
    nonce: str | None
    # The new split: shares to make and the threshold that will unseal.
    key_shares: int
    key_threshold: int
    # Current shares given so far, and how many the current split needs.
    progress: int
    required: int


@dataclass(frozen=True)
class _Attempt:
    nonce: str
    key_shares: int
    key_threshold: int


class Rekey:
    """This node's rekey attempt, if any; see the module docstring. Thread-safe."""

    def __init__(self, seal: Seal) -> None:
        self._seal = seal
        self._lock = threading.Lock()
        self._attempt: _Attempt | None = None
        self._given: list[str] = []

    def status(self) -> RekeyStatus:
        record = self._seal.record
        required = 0 if record is None else record.seal.threshold
        with self._lock:
            attempt = self._attempt
            if attempt is None:
                return RekeyStatus(False, None, 0, 0, 0, required)
            return RekeyStatus(True, attempt.nonce, attempt.key_shares, attempt.key_threshold,
                               len(self._given), required)

    def start(self, key_shares: int, key_threshold: int) -> RekeyStatus:
        """A new attempt; refused while another runs (cancel it first)."""
        record = self._seal.record
        if record is None:
            raise UnsealError("the cluster is not initialized; run keyquorum operator init")
        if record.seal.kind != SealKind.SHAMIR:
            raise UnsealError(f"a {record.seal.kind.value} seal has no unseal shares to rekey")
        if not 1 <= key_threshold <= key_shares <= 255:
            raise UnsealError(f"cannot split into {key_shares} shares with threshold "
                              f"{key_threshold}: use 1 <= threshold <= shares <= 255")
        with self._lock:
            if self._attempt is not None:
                raise UnsealError("a rekey is already in progress on this node; finish it "
                                  "or cancel it (keyquorum operator rekey cancel)")
            self._attempt = _Attempt(secrets.token_hex(16), key_shares, key_threshold)
            self._given = []
        log.info("rekey_started key_shares=%d key_threshold=%d", key_shares, key_threshold)
        return self.status()

    def cancel(self) -> None:
        with self._lock:
            was_running = self._attempt is not None
            self._attempt = None
            self._given = []
        if was_running:
            log.info("rekey_cancelled")

    def give(self, share_text: str, nonce: str) -> RekeyStatus | RekeyReady:
        """One current share; at the threshold, the command to commit and the new shares.

        Raises UnsealError for a wrong nonce, a repeated or malformed share, or, at the
        threshold, shares that are not this cluster's (the progress is then reset).
        """
        record = self._seal.record
        required = 0 if record is None else record.seal.threshold
        try:
            share = Share.decode(share_text)
        except ShareError as error:
            raise UnsealError(str(error)) from None
        with self._lock:
            attempt = self._attempt
            if attempt is None:
                raise UnsealError("no rekey is in progress on this node; start one with "
                                  "keyquorum operator rekey init")
            if not secrets.compare_digest(nonce, attempt.nonce):
                raise UnsealError("that nonce is not the current rekey attempt's; ask the "
                                  "operator for it (keyquorum operator rekey status)")
            if any(Share.decode(given).x == share.x for given in self._given):
                raise UnsealError("that share was already given; give a different one")
            self._given.append(share_text)
            if len(self._given) < required:
                return RekeyStatus(True, attempt.nonce, attempt.key_shares,
                                   attempt.key_threshold, len(self._given), required)
            given, self._given = self._given, []

        # The threshold is reached: these shares authorize the new split, or none do.
        try:
            command, shares = self._seal.prepare_rekey(given, attempt.key_shares,
                                                       attempt.key_threshold)
        except UnsealError as error:
            log.warning("rekey_refused reason=shares_do_not_open_keyring")
            raise UnsealError(f"{error}; the shares given were forgotten, give them again "
                              "with the same nonce") from None
        return RekeyReady(command, shares, attempt.nonce)

    def finish(self, nonce: str) -> None:
        """The new record is committed: the attempt is over."""
        with self._lock:
            if self._attempt is not None and self._attempt.nonce == nonce:
                self._attempt = None
                self._given = []


@dataclass(frozen=True)
class RekeyReady:
    """The threshold was reached: the command to commit, then the new shares to hand out."""

    command: ReplaceBarrier
    shares: tuple[str, ...]
    nonce: str
