"""What an operation handler sees: who asks, in which version, and the key store.

Handlers are the only code that turns KMIP into state commands. A handler reads
through ``Backend.store`` after ``read_barrier`` and writes by ``submit``-ting a
command; it raises ``KmipError`` for everything a client can get wrong.

The barrier sits here, so that no handler can forget it: ``Context.write`` seals
the material of every object a command creates with the node's keyring before the
command leaves the node, and ``Context.read`` opens it again. Handlers see plain
key bytes; commands, the Raft journal and snapshots hold only ciphertext, bound to
the object's scope and identifier (cluster/barrier.py). A sealed node refuses both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from keyquorum.cluster.state import (
    Applied,
    Command,
    CreateFromSources,
    CreateObject,
    CreateObjects,
    ImportObject,
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

    def seal_material(self, plaintext: bytes, associated_data: bytes) -> bytes:
        """Barrier ciphertext of ``plaintext``; KmipError when the node is sealed."""
        ...

    def open_material(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        """The plaintext of barrier ciphertext; KmipError when the node is sealed."""
        ...


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
    # The identifiers of every object this message's commands changed, for an Undo
    # (kmip/operations/undo.py): more than the payloads name when a command also
    # links the objects it was made from (Re-key Key Pair, Certify).
    written: list[str] = field(default_factory=list)

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

    async def read(self, requested: Any, material: bool = True) -> ManagedObject:
        """The object an item names, as of a read barrier (linearizable).

        With ``material``, its key material opened, and Object Archived for an
        archived object (it must be recovered first; cluster/state.py Archive);
        without, its attributes only (material None), archived or not.
        """
        uid = self.uid_of(requested)
        await self.barrier()
        obj = self.backend.store.get(self.scope, uid)
        if obj is None:
            # Another scope's object answers exactly as a missing one does.
            raise KmipError(ResultReason.OBJECT_NOT_FOUND, "no object with that identifier")
        self.placeholder = uid
        if not material:
            return replace(obj, material=None)
        if obj.first("Archive Date") is not None:
            raise KmipError(ResultReason.OBJECT_ARCHIVED, "the object is archived: Recover it")
        if obj.material is None:
            return obj
        return replace(obj, material=self.backend.open_material(obj.material, _bound_to(obj)))

    async def barrier(self) -> None:
        # One barrier per request message: later items read what earlier items of
        # the same message wrote, because this node applied those writes itself.
        if not self._read_barrier_done:
            await self.backend.read_barrier()
            self._read_barrier_done = True

    async def write(self, command: Command) -> ObjectId:
        """Commit ``command``; a refusal by the state becomes the client's error."""
        outcome = await self.backend.submit(self._sealed(command))
        if not isinstance(outcome, Applied) or outcome.uid is None:
            reason = getattr(outcome, "reason", ResultReason.GENERAL_FAILURE)
            raise KmipError(reason, getattr(outcome, "message", "the command was not applied"))
        self.placeholder = outcome.uid
        self.written += _changed_by(command)
        return outcome.uid

    def _sealed(self, command: Command) -> Command:
        """``command`` with the material of every object it creates sealed by the barrier."""
        if isinstance(command, CreateObject):
            return self._sealed_object(command)
        if isinstance(command, CreateObjects):
            return CreateObjects(tuple(self._sealed_object(each) for each in command.objects))
        if isinstance(command, ImportObject):
            return replace(command, object=self._sealed_object(command.object))
        if isinstance(command, CreateFromSources):
            return replace(command, objects=tuple(self._sealed_object(each)
                                                  for each in command.objects))
        return command

    def _sealed_object(self, command: CreateObject) -> CreateObject:
        sealed = self.backend.seal_material(command.material, _bound_to(command))
        return replace(command, material=sealed)


def _changed_by(command: Command) -> list[str]:
    """The identifiers of the objects ``command`` creates or changes."""
    if isinstance(command, CreateFromSources):
        return ([str(c.uid) for c in command.objects] + [str(uid) for uid, _ in command.links]
                + [str(old) for old, _ in command.names_moved])
    if isinstance(command, CreateObjects):
        return [str(c.uid) for c in command.objects]
    uid = getattr(command, "uid", None)
    return [uid] if isinstance(uid, str) else []


def _bound_to(obj: CreateObject | ManagedObject) -> bytes:
    """The associated data that ties an object's ciphertext to it: scope and identifier."""
    return f"object/{obj.scope}/{obj.uid}".encode()
