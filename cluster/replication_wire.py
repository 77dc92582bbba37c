"""Commands and snapshots between clusters: pickles, read back with an allow-list.

Changes travel as the primary's Raft log holds them, pickled. A pickle can name
any callable, so a peer that got past mutual TLS must still not get code run: the
reader resolves only classes of keyquorum's own modules and a few plain builtins,
and refuses everything else before anything is built.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

_ALLOWED_BUILTINS = frozenset({"frozenset", "set", "bytearray", "complex"})
_ALLOWED_MODULES = ("keyquorum.cluster.", "keyquorum.kmip.")
# The parts of ClusterState.snapshot() that are pickles themselves.
_SNAPSHOT_PARTS = ("keys", "tenancy", "barrier")


class WireError(ValueError):
    """Bytes from another cluster that are not a command or snapshot of ours."""


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _ALLOWED_BUILTINS:
            return super().find_class(module, name)
        if module.startswith(_ALLOWED_MODULES) and not name.startswith("_"):
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise WireError(f"refused to build {module}.{name} from another cluster's bytes")


def dumps(value: object) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> Any:
    """Unpickle ``data`` with the allow-list; a WireError for anything else."""
    try:
        return _AllowListUnpickler(io.BytesIO(data)).load()
    except WireError:
        raise
    except Exception as error:
        raise WireError(f"not a pickle of ours: {type(error).__name__}") from None


def check_snapshot(data: bytes) -> None:
    """Refuse a snapshot holding anything but our own types, nested pickles included.

    ClusterState's snapshot is a dict of byte strings, each a pickle of one part
    (keys, tenancy, barrier); each is read with the allow-list before the state
    restores it unchecked.
    """
    outer = loads(data)
    if isinstance(outer, dict):
        for name in _SNAPSHOT_PARTS:
            if isinstance(outer.get(name), bytes):
                loads(outer[name])
