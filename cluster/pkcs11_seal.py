"""Auto-unseal through PKCS#11: the root key sealed by an AES key that never leaves an HSM.

At initialization the node draws the root key and has the HSM encrypt it with the
configured key (AES-GCM, a fresh 96-bit nonce, the purpose as associated data); the
result is replicated in the barrier record (``root_under_hsm``). After a restart
any node that reaches the same HSM key asks it to decrypt that record and so
unseals without operators. The root key is in this process's memory only.

Calls into the PKCS#11 module block; callers run them in a thread
(cluster/seal.py). A session is opened per call: unseal happens once per start,
so there is nothing worth keeping open, and a token that went away is found again.

Tested against SoftHSM2 (tests/cluster/test_pkcs11_seal.py). Other modules should
work when they offer CKM_AES_GCM on an AES key allowed to encrypt and decrypt;
nothing else has been tried.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pkcs11
from pkcs11 import GCMParams, KeyType, Mechanism

from .barrier import KEY_BYTES, BarrierRecord, SealKind
from .config import SealSettings
from .seal import UnsealError

NONCE_BYTES = 12
# Associated data: the HSM's ciphertext of a root key is good for nothing else.
_PURPOSE = b"keyquorum root key"


class Pkcs11RootKey:
    kind = SealKind.PKCS11

    def __init__(self, settings: SealSettings) -> None:
        assert settings.library is not None and settings.token_label and settings.key_label
        self._settings = settings

    def new_root(self) -> tuple[bytes, bytes | None]:
        root = secrets.token_bytes(KEY_BYTES)
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._call(lambda key: key.encrypt(
            root, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, _PURPOSE)))
        return root, nonce + sealed

    def root_key(self, record: BarrierRecord) -> bytes:
        if record.root_under_hsm is None:
            raise UnsealError("the barrier record holds no HSM-sealed root key")
        nonce, sealed = record.root_under_hsm[:NONCE_BYTES], record.root_under_hsm[NONCE_BYTES:]
        return self._call(lambda key: key.decrypt(
            sealed, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, _PURPOSE)))

    def _call(self, use: Callable[[Any], Any]) -> bytes:
        settings = self._settings
        try:
            library = pkcs11.lib(str(settings.library))
            token = _find_token(library, settings.token_label)
            with token.open(user_pin=settings.pin) as session:
                key = session.get_key(label=settings.key_label, key_type=KeyType.AES)
                return bytes(use(key))
        except pkcs11.exceptions.PKCS11Error as error:
            # The class names the problem (PinIncorrect, NoSuchKey, ...); never the PIN.
            raise UnsealError(f"the HSM refused: {type(error).__name__} (library "
                              f"{settings.library}, token {settings.token_label!r}, key "
                              f"{settings.key_label!r})") from None
        except RuntimeError as error:
            raise UnsealError(f"cannot load the PKCS#11 library {settings.library}: "
                              f"{error}") from None


def _find_token(library: Any, label: str | None) -> Any:
    """The token labelled ``label``, looking at the token store afresh if it is missing.

    A PKCS#11 library lists its tokens once, at C_Initialize: SoftHSM2 went on answering
    NoSuchToken, for as long as the node ran, for a token another process had been
    writing at that moment, and an HSM token plugged in later would stay unseen as well.
    Finalizing and initializing the library again reads the token store anew.
    """
    try:
        return library.get_token(token_label=label)
    except pkcs11.exceptions.NoSuchToken:
        library.reinitialize()
        return library.get_token(token_label=label)
