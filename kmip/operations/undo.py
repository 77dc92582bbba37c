"""Batch Error Continuation Option Undo: a failed item rolls back the items before it.

Committed Raft entries cannot be taken back, so an undo is a new write: before the
batch runs, the receiving node notes the scope's objects as they are; when an item
fails, it commits one ``RestoreObjects`` command that sets every object the batch
touched back to that note, on condition that each is still what the batch left
(cluster/state.py). The objects a batch touched are the ones its items named and
the ones its answers name (new keys).

What cannot be undone this way: computations already answered (an Encrypt's
ciphertext is not unlearned) and, when another client changed one of the objects in
between, the whole undo, which is then refused rather than half done.
"""

from __future__ import annotations

from collections.abc import Iterable

from keyquorum.cluster.state import ManagedObject, RestoreObjects
from keyquorum.cluster.state import UniqueIdentifier as ObjectId

from .context import Context

Snapshot = dict[ObjectId, ManagedObject]


async def snapshot(ctx: Context) -> Snapshot:
    """The scope's objects as they are before the batch (after a read barrier)."""
    await ctx.barrier()
    return {obj.uid: obj for obj in ctx.backend.store.objects(ctx.scope)}


async def roll_back(ctx: Context, before: Snapshot, touched: Iterable[str]) -> None:
    """Set every object in ``touched`` back to ``before``; KmipError if refused."""
    entries = []
    for uid in dict.fromkeys(touched):
        key = ObjectId(uid)
        after = ctx.backend.store.get(ctx.scope, key)
        if after != before.get(key):
            entries.append((key, before.get(key), after))
    if entries:
        await ctx.write(RestoreObjects(ctx.scope, tuple(entries)))


def identifiers(value: object) -> list[str]:
    """The unique identifiers a request or response payload names."""
    found = []
    for field in ("unique_identifier", "private_key_unique_identifier",
                  "public_key_unique_identifier"):
        uid = getattr(value, field, None)
        if isinstance(uid, str):
            found.append(uid)
    found += [uid for uid in getattr(value, "unique_identifiers", ()) if isinstance(uid, str)]
    return found
