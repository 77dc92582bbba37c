"""What an operation handler sees: who asks, in which version, and the key store.

Handlers are the only code that turns KMIP into state commands. A handler reads
through ``Backend.store`` after ``read_barrier`` and writes by ``submit``-ting a
command; it raises ``KmipError`` for everything a client can get wrong.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from keyquorum.cluster.state import (
    Applied,
    Command,
    KeyStore,
    ManagedObject,
    Outcome,
    ScopeName,
)

from ..errors import KmipError, invalid_field
from ..objects import UniqueIdentifier as ObjectId
from ..tables import ResultReason, UniqueIdentifier
from ..ttlv import Item, ItemType


class Backend(Protocol):
    """The node as handlers see it: a store to read and a log to write through."""

    @property
    def store(self) -> KeyStore: ...

    async def submit(self, command: Command) -> Outcome: ...

    async def read_barrier(self) -> None: ...


@dataclass
class Context:
    """One request message's state, shared by its batch items in order."""

    backend: Backend
    scope: ScopeName
    version: tuple[int, int]
    # The ID Placeholder (KMIP 1.4 section 6.8): the identifier the last item
    # produced, used by a later item of the batch that names none.
    placeholder: str | None = None
    _read_barrier_done: bool = False

    @property
    def is_v1(self) -> bool:
        return self.version[0] < 2

    def now(self) -> int:
        """The POSIX time stamped into commands; drawn here, never in apply."""
        return int(time.time())

    def uid_of(self, requested: Any) -> str:
        """The identifier an item acts on: its own, or the ID Placeholder."""
        if isinstance(requested, str):
            return requested
        if isinstance(requested, Item):
            if requested.type == ItemType.ENUMERATION and (
                requested.value == UniqueIdentifier.ID_PLACEHOLDER
            ):
                return self._placeholder()
            raise KmipError(ResultReason.FEATURE_NOT_SUPPORTED,
                            "only the ID Placeholder may stand for a unique identifier")
        return self._placeholder()

    def _placeholder(self) -> str:
        if self.placeholder is None:
            raise invalid_field("no unique identifier, and no earlier item set the ID Placeholder")
        return self.placeholder

    async def read(self, requested: Any) -> ManagedObject:
        """The object an item names, as of a read barrier (linearizable)."""
        uid = self.uid_of(requested)
        await self.barrier()
        obj = self.backend.store.get(self.scope, uid)
        if obj is None:
            # Another scope's object answers exactly as a missing one does.
            raise KmipError(ResultReason.OBJECT_NOT_FOUND, "no object with that identifier")
        self.placeholder = uid
        return obj

    async def barrier(self) -> None:
        # One barrier per request message: later items read what earlier items of
        # the same message wrote, because this node applied those writes itself.
        if not self._read_barrier_done:
            await self.backend.read_barrier()
            self._read_barrier_done = True

    async def write(self, command: Command) -> ObjectId:
        """Commit ``command``; a refusal by the state becomes the client's error."""
        outcome = await self.backend.submit(command)
        if not isinstance(outcome, Applied) or outcome.uid is None:
            reason = getattr(outcome, "reason", ResultReason.GENERAL_FAILURE)
            raise KmipError(reason, getattr(outcome, "message", "the command was not applied"))
        self.placeholder = outcome.uid
        return outcome.uid
