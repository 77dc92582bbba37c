"""Searching a cluster's files for bytes that must never be written in the clear.

The encryption-at-rest tests know the key bytes they registered and look for them in
every file the nodes wrote: journals, dumps, logs, snapshots.
"""

from __future__ import annotations

import base64
from pathlib import Path


def forms(material: bytes) -> list[bytes]:
    """The key bytes as a file could hold them: raw, hex either case, base64."""
    return [material, material.hex().encode(), material.hex().upper().encode(),
            base64.b64encode(material), base64.urlsafe_b64encode(material)]


def files_under(*roots: Path) -> list[Path]:
    """Each root that is a file, and every file below each root that is a folder."""
    found = []
    for root in roots:
        found += [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
    return found


def read_if_present(path: Path) -> bytes:
    """A file's bytes; nothing for a dump renamed into place since it was listed (its
    content is then in raft.dump, which is read too)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
