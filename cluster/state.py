"""The replicated key store: the state machine every node applies the log to.

Theory of operation
-------------------
A write reaches this module as a command: a frozen dataclass that holds every value
the write needs, drawn by the node that received the request (the unique
identifier, the key bytes, the time). Every node applies the same commands in the
same order and so holds the same objects. For that, ``apply``:

- is deterministic: it reads no clock, draws no randomness and does no I/O;
- checks every precondition (the object exists in that scope, the state machine of
  KMIP 1.4 section 3.22 allows the transition, the attribute may change) against
  the state it sees *before* it changes anything, so two racing commands cannot
  both win and a refused command leaves no trace;
- never raises: a refusal is returned as ``Rejected`` with the Result Reason the
  client will get.

Objects are immutable: apply replaces an object with a changed copy under a lock,
so a reader on the front end's thread always sees a whole object, old or new.

Commands and stored objects are pickled into the Raft journal and snapshots: their
class and field names are on disk. Add fields with defaults; never rename.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, NewType, TypeVar

from keyquorum.kmip.objects import UniqueIdentifier
from keyquorum.kmip.tables import ObjectType, ResultReason, RevocationReasonCode, State, Tag
from keyquorum.kmip.ttlv import Item, ItemType

ScopeName = NewType("ScopeName", str)



# Attribute values of these types are few (an algorithm, a length, a flag), so the key
# store keeps one copy of each such attribute for all its objects (KeyStore._share).
# A Structure made only of these is few-valued too (a Random Number Generator).
SHAREABLE_TYPES = frozenset(
    {ItemType.ENUMERATION, ItemType.BOOLEAN, ItemType.INTEGER, ItemType.INTERVAL}
)
SHARED_ATTRIBUTES_MAX = 4096

# The scope of credentials that belong to no tenant (the dev cluster's client).
DEFAULT_SCOPE = ScopeName("default")

# The scope of the cluster's own objects that no credential can hold (a scope name
# starts with a letter or digit, cluster/tenancy.py): the Certify issuing CA
# (kmip/operations/certificate_ops.py). It exists without being created.
ISSUING_SCOPE = ScopeName("_certify")


@dataclass(frozen=True, slots=True)
class StoredAttribute:
    """One attribute instance, in KMIP 1.x terms: its name and its value item.

    The value keeps the item as it travels in an Attribute Value (tag 0x42000B), so
    1.x and 2.x responses are both made from it; indexes are the order of the
    instances that share a name.

    Slots, because a key holds some twenty of these: an instance without a ``__dict__``
    is about a third the size, and pickling no longer gives each one a dict to keep.
    The pickled state stays the field dict it always was (journals and dumps hold it).
    """

    name: str
    value: Item

    def __getstate__(self) -> dict[str, object]:
        return {"name": self.name, "value": self.value}

    def __setstate__(self, state: dict[str, object]) -> None:
        object.__setattr__(self, "name", state["name"])
        object.__setattr__(self, "value", state["value"])


@dataclass(frozen=True, slots=True)
class ManagedObject:
    # Slots like StoredAttribute, one per key; pickled as the same field dict as ever.
    scope: ScopeName
    uid: UniqueIdentifier
    object_type: ObjectType
    state: State
    attributes: tuple[StoredAttribute, ...]
    # The TTLV encoding of the object's value (a Key Block, Secret Data, ...);
    # None once the object is destroyed: its attributes outlive it.
    material: bytes | None

    def __getstate__(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in _OBJECT_FIELDS}

    def __setstate__(self, state: dict[str, object]) -> None:
        for name in _OBJECT_FIELDS:
            object.__setattr__(self, name, state[name])

    def values(self, name: str) -> list[Item]:
        return [attribute.value for attribute in self.attributes if attribute.name == name]

    def first(self, name: str) -> Item | None:
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute.value
        return None


_OBJECT_FIELDS = ("scope", "uid", "object_type", "state", "attributes", "material")


# Commands. Each names the scope and object it acts on and carries `now`, the POSIX
# time the receiving node read, so that every node stamps the same dates.


@dataclass(frozen=True)
class CreateObject:
    scope: ScopeName
    uid: UniqueIdentifier
    object_type: ObjectType
    attributes: tuple[StoredAttribute, ...]
    material: bytes
    now: int


@dataclass(frozen=True)
class CreateObjects:
    """Several objects created together or not at all: a key pair and its links."""

    objects: tuple[CreateObject, ...]


@dataclass(frozen=True)
class CreateFromSources:
    """New objects made from existing ones, committed together with the links back.

    Re-key, Re-key Key Pair, Derive Key, Certify and Re-certify create objects that
    name where they came from. ``links`` are (source, Link value) to add to a source;
    ``names_moved`` are (old, new): the old object's Names move to the new one at
    apply time (KMIP 1.4 section 4.4: the replacement takes over the name). Every
    source must exist and hold its material, or nothing happens.
    """

    scope: ScopeName
    objects: tuple[CreateObject, ...]
    links: tuple[tuple[UniqueIdentifier, Item], ...]
    names_moved: tuple[tuple[UniqueIdentifier, UniqueIdentifier], ...]
    now: int


@dataclass(frozen=True)
class ImportObject:
    """KMIP 2.x Import: an object under the client's identifier, with exactly the
    attributes it brings (State and dates included), replacing one of that
    identifier only when ``replace_existing`` says so."""

    object: CreateObject
    replace_existing: bool


@dataclass(frozen=True)
class AddAttribute:
    scope: ScopeName
    uid: UniqueIdentifier
    attribute: StoredAttribute
    now: int


@dataclass(frozen=True)
class ModifyAttribute:
    scope: ScopeName
    uid: UniqueIdentifier
    name: str
    index: int
    value: Item
    now: int


@dataclass(frozen=True)
class DeleteAttribute:
    scope: ScopeName
    uid: UniqueIdentifier
    name: str
    index: int
    now: int


@dataclass(frozen=True)
class Activate:
    scope: ScopeName
    uid: UniqueIdentifier
    now: int


@dataclass(frozen=True)
class Revoke:
    scope: ScopeName
    uid: UniqueIdentifier
    reason: RevocationReasonCode
    message: str | None
    compromise_occurrence_date: int | None
    now: int


@dataclass(frozen=True)
class Destroy:
    scope: ScopeName
    uid: UniqueIdentifier
    now: int


@dataclass(frozen=True)
class SetAttribute:
    """KMIP 2.x Set Attribute: the attribute's one value, added or replaced."""

    scope: ScopeName
    uid: UniqueIdentifier
    attribute: StoredAttribute
    now: int


@dataclass(frozen=True)
class AdjustAttribute:
    """KMIP 2.x Adjust Attribute: increment, decrement or negate a numeric attribute."""

    scope: ScopeName
    uid: UniqueIdentifier
    name: str
    adjustment: int  # AdjustmentType: 1 increment, 2 decrement, 3 negate
    amount: int | None
    now: int


@dataclass(frozen=True)
class Archive:
    """The object goes to the archive; its material is not used until Recover.

    The store is replicated and in memory: there is no slower tier to move the
    material to, so archiving is a state every node records (the Archive Date), and
    the handlers refuse to serve or use an archived object's material
    (kmip/operations/context.py). The material stays sealed by the barrier in the
    log and snapshots, as it was.
    """

    scope: ScopeName
    uid: UniqueIdentifier
    now: int


@dataclass(frozen=True)
class Recover:
    scope: ScopeName
    uid: UniqueIdentifier
    now: int


@dataclass(frozen=True)
class MarkServed:
    """The object's key material left the server (a Get): it is no longer Fresh."""

    scope: ScopeName
    uid: UniqueIdentifier


@dataclass(frozen=True)
class ConsumeUsage:
    """Spend ``amount`` of the object's Usage Limits Count, or refuse when it lacks that."""

    scope: ScopeName
    uid: UniqueIdentifier
    amount: int
    now: int


@dataclass(frozen=True)
class RestoreObjects:
    """Put objects back as they were before a batch with Undo (KMIP 2.1 section 8.6).

    Each entry is (identifier, before, after): the object is set back to ``before``
    (None: it did not exist) only if it still is ``after``, what the batch left. If
    anyone else changed one in between, nothing is restored and the command is
    refused: an undo never overwrites another client's write.
    """

    scope: ScopeName
    entries: tuple[tuple[UniqueIdentifier, ManagedObject | None, ManagedObject | None], ...]


@dataclass(frozen=True)
class NoOp:
    """Changes nothing; the read barrier commits one to learn the commit index."""


Command = (
    CreateObject
    | CreateObjects
    | ImportObject
    | CreateFromSources
    | AddAttribute
    | ModifyAttribute
    | DeleteAttribute
    | Activate
    | Revoke
    | Destroy
    | MarkServed
    | ConsumeUsage
    | SetAttribute
    | AdjustAttribute
    | Archive
    | Recover
    | RestoreObjects
    | NoOp
)


@dataclass(frozen=True)
class Applied:
    uid: UniqueIdentifier | None = None


@dataclass(frozen=True)
class Rejected:
    """A command the state refused; the reason is what the client receives."""

    reason: ResultReason
    message: str


Outcome = Applied | Rejected


def attribute_value(item_type: ItemType, value: object) -> Item:
    """An Attribute Value item, the form attributes are stored in."""
    return Item(Tag.ATTRIBUTE_VALUE, item_type, value)


def date_value(seconds: int) -> Item:
    return attribute_value(ItemType.DATE_TIME, seconds)


def enum_value(value: int) -> Item:
    return attribute_value(ItemType.ENUMERATION, int(value))


# Attributes a client may never set, change or delete: the server owns them
# (KMIP 1.4 section 3, the "Modifiable by client" rows).
SERVER_OWNED = frozenset(
    {
        "Unique Identifier",
        "Object Type",
        "State",
        "Initial Date",
        "Activation Date",
        "Deactivation Date",
        "Destroy Date",
        "Compromise Date",
        "Compromise Occurrence Date",
        "Revocation Reason",
        "Last Change Date",
        "Archive Date",
        "Digest",
        "Cryptographic Algorithm",
        "Cryptographic Length",
        "Original Creation Date",
        "Fresh",
        "Key Value Present",
        # Read from the certificate itself (kmip/operations/certificate_attributes.py).
        "Certificate Length",
        *(f"Certificate {role} {field}" for role in ("Subject", "Issuer")
          for field in ("CN", "O", "OU", "Email", "C", "ST", "L")),
    }
)

# Attributes that hold at most one instance (KMIP 1.4 section 3, "Multiple instances
# permitted: No"). The others (Name, Link, Object Group, x-...) may repeat.
SINGLE_VALUED = SERVER_OWNED | frozenset(
    {
        "Cryptographic Usage Mask",
        "Cryptographic Parameters",
        "Contact Information",
        "Process Start Date",
        "Protect Stop Date",
        "Lease Time",
        "Sensitive",
        "Extractable",
        "Description",
        "Comment",
    }
)

_COMPROMISE_REASONS = (
    RevocationReasonCode.KEY_COMPROMISE,
    RevocationReasonCode.CA_COMPROMISE,
)


class KeyStore:
    """The state machine: managed objects by scope and unique identifier."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[tuple[ScopeName, UniqueIdentifier], ManagedObject] = {}
        self._shared: dict[tuple[str, object], StoredAttribute] = {}
        self._shared_items: dict[object, Item] = {}
        # The pooled attributes of the Creates the command being applied made, by the
        # command's id, for shared_form to hand the changelog without pooling them again.
        self._pooled_creates: dict[int, tuple[CreateObject, tuple[StoredAttribute, ...]]] = {}

    # Reads, from the front end's thread.

    def get(self, scope: ScopeName, uid: str) -> ManagedObject | None:
        with self._lock:
            return self._objects.get((scope, UniqueIdentifier(uid)))

    def objects(self, scope: ScopeName) -> list[ManagedObject]:
        with self._lock:
            return [obj for (owner, _), obj in self._objects.items() if owner == scope]

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    def __iter__(self) -> Iterator[ManagedObject]:
        with self._lock:
            return iter(list(self._objects.values()))

    # The state machine contract (cluster/raft.py calls these on its thread).

    def apply(self, command: object) -> Outcome:
        with self._lock:
            self._pooled_creates.clear()
            if isinstance(command, CreateObject):
                return self._create(command)
            if isinstance(command, CreateObjects):
                return self._create_all(command)
            if isinstance(command, ImportObject):
                return self._import(command)
            if isinstance(command, CreateFromSources):
                return self._create_from(command)
            if isinstance(command, NoOp):
                return Applied()
            if isinstance(command, RestoreObjects):
                return self._restore(command)
            if not isinstance(command, AddAttribute | ModifyAttribute | DeleteAttribute
                              | Activate | Revoke | Destroy | MarkServed | ConsumeUsage
                              | SetAttribute | AdjustAttribute | Archive | Recover):
                return Rejected(ResultReason.GENERAL_FAILURE, "unknown command")

            obj = self._objects.get((command.scope, command.uid))
            if obj is None:
                return Rejected(ResultReason.OBJECT_NOT_FOUND, "no object with that identifier")
            outcome = _change(obj, command)
            if isinstance(outcome, Rejected):
                return outcome
            self._objects[(obj.scope, obj.uid)] = outcome
            return Applied(obj.uid)

    def shared_form(self, command: object) -> object:
        """The command with its few-valued attributes taken from the store's pools.

        For the replication changelog (cluster/replication_state.py), which keeps the
        last 10,000 commands: a Create's own copies of its algorithm, length, flags and
        usage mask were most of its 2.8 KB there, all of them already held once here.
        Equal values, so a secondary receives and applies the same command.
        """
        with self._lock:
            return self._shared_form(command)

    def _shared_form(self, command: object) -> object:
        if isinstance(command, CreateObject):
            return self._shared_create(command)
        if isinstance(command, CreateObjects):
            return replace(command,
                           objects=tuple(self._shared_create(one) for one in command.objects))
        return command

    def _shared_create(self, command: CreateObject) -> CreateObject:
        # The apply just pooled these for the object: pooling them again had been a third
        # of a Create's apply, paid on every node and by every entry a restart replays.
        pooled = self._pooled_creates.pop(id(command), None)
        if pooled is not None and pooled[0] is command:
            return replace(command, attributes=pooled[1])
        return replace(command, attributes=tuple(self._share(a) for a in command.attributes))

    def drop_scope(self, scope: ScopeName) -> int:
        """Forget every object of ``scope`` (a forced scope deletion); how many went.

        Called only from apply (cluster/cluster_state.py), after the deletion was
        checked: it cannot fail.
        """
        with self._lock:
            doomed = [key for key in self._objects if key[0] == scope]
            for key in doomed:
                del self._objects[key]
            return len(doomed)

    def snapshot(self) -> bytes:
        with self._lock:
            return pickle.dumps(self._objects, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, data: bytes) -> None:
        objects = pickle.loads(data)
        with self._lock:
            self._objects = objects

    def _restore(self, command: RestoreObjects) -> Outcome:
        keys = [(command.scope, uid) for uid, _, _ in command.entries]
        if any(self._objects.get(key) != after
               for key, (_, _, after) in zip(keys, command.entries, strict=True)):
            return Rejected(ResultReason.GENERAL_FAILURE,
                            "another client changed an object since: nothing was undone")
        for key, (_, before, _) in zip(keys, command.entries, strict=True):
            if before is None:
                self._objects.pop(key, None)
            else:
                self._objects[key] = before
        return Applied(command.entries[0][0] if command.entries else None)

    def _import(self, command: ImportObject) -> Outcome:
        create = command.object
        key = (create.scope, create.uid)
        if key in self._objects and not command.replace_existing:
            return Rejected(ResultReason.OBJECT_ALREADY_EXISTS,
                            "an object has that identifier; set Replace Existing to replace it")

        # The attributes are the client's own, but the identifier and type are the
        # object's, and an object without a State starts Pre-Active.
        given = [a for a in create.attributes if a.name not in ("Unique Identifier", "Object Type")]
        state_item = next((a.value for a in given if a.name == "State"), None)
        if state_item is not None and state_item.value not in State._value2member_map_:
            return Rejected(ResultReason.INVALID_FIELD, "unknown State")
        state = State.PRE_ACTIVE if state_item is None else State(state_item.value)
        server_set = [
            StoredAttribute("Unique Identifier", attribute_value(ItemType.TEXT_STRING, create.uid)),
            StoredAttribute("Object Type", enum_value(create.object_type)),
        ]
        if state_item is None:
            server_set.append(StoredAttribute("State", enum_value(state)))
        destroyed = state in (State.DESTROYED, State.DESTROYED_COMPROMISED)
        self._objects[key] = ManagedObject(
            scope=create.scope,
            uid=create.uid,
            object_type=create.object_type,
            state=state,
            attributes=tuple(server_set + given),
            material=None if destroyed else create.material,
        )
        return Applied(create.uid)

    def _create_all(self, command: CreateObjects) -> Outcome:
        # Check every identifier before creating any, so that a refusal leaves none.
        keys = [(c.scope, c.uid) for c in command.objects]
        if not keys or len(set(keys)) != len(keys) or any(k in self._objects for k in keys):
            return Rejected(ResultReason.OBJECT_ALREADY_EXISTS, "identifier already in use")
        for create in command.objects:
            self._create(create)
        return Applied(command.objects[0].uid)

    def _create_from(self, command: CreateFromSources) -> Outcome:
        # Check the new identifiers and every source before changing anything.
        keys = [(command.scope, c.uid) for c in command.objects]
        if not keys or len(set(keys)) != len(keys) or any(k in self._objects for k in keys):
            return Rejected(ResultReason.OBJECT_ALREADY_EXISTS, "identifier already in use")
        sources = [uid for uid, _ in command.links] + [old for old, _ in command.names_moved]
        for uid in sources:
            source = self._objects.get((command.scope, uid))
            if source is None:
                return Rejected(ResultReason.OBJECT_NOT_FOUND, "no object with that identifier")
            if source.material is None:
                return Rejected(ResultReason.WRONG_KEY_LIFECYCLE_STATE,
                                "the object it is made from was destroyed")

        created = {c.uid: c for c in command.objects}
        if any(c.scope != command.scope for c in command.objects) or any(
                new not in created for _, new in command.names_moved):
            return Rejected(ResultReason.INVALID_FIELD,
                            "new objects must be in the command's scope, and take names only "
                            "from its sources")

        # Then the new objects, with the names they take over.
        for old, new in command.names_moved:
            names = self._objects[(command.scope, old)].values("Name")
            taken = tuple(StoredAttribute("Name", value) for value in names)
            created[new] = replace(created[new], attributes=created[new].attributes + taken)
        for create in created.values():
            self._create(create)

        # Last the sources: their links added, their names given away.
        changed: dict[UniqueIdentifier, ManagedObject] = {}
        for uid, link in command.links:
            source = changed.get(uid) or self._objects[(command.scope, uid)]
            changed[uid] = replace(source,
                                   attributes=source.attributes + (StoredAttribute("Link", link),))
        for old, _ in command.names_moved:
            source = changed.get(old) or self._objects[(command.scope, old)]
            kept = tuple(a for a in source.attributes if a.name != "Name")
            changed[old] = replace(source, attributes=kept)
        for uid, source in changed.items():
            self._objects[(command.scope, uid)] = _touched(source, command.now)
        return Applied(command.objects[0].uid)

    def _create(self, command: CreateObject) -> Outcome:
        key = (command.scope, command.uid)
        if key in self._objects:
            return Rejected(ResultReason.OBJECT_ALREADY_EXISTS, "identifier already in use")

        # An Activation Date in the past or now makes the object Active at once
        # (KMIP 1.4 section 3.24); otherwise it starts Pre-Active.
        state = State.PRE_ACTIVE
        for attribute in command.attributes:
            if attribute.name == "Activation Date" and attribute.value.value <= command.now:
                state = State.ACTIVE

        server_set = [
            StoredAttribute("Unique Identifier",
                            attribute_value(ItemType.TEXT_STRING, command.uid)),
            StoredAttribute("Object Type", enum_value(command.object_type)),
            StoredAttribute("State", enum_value(state)),
            StoredAttribute("Initial Date", date_value(command.now)),
            StoredAttribute("Last Change Date", date_value(command.now)),
        ]
        owned = {attribute.name for attribute in server_set}
        pooled = tuple(self._share(a) for a in command.attributes)
        self._pooled_creates[id(command)] = (command, pooled)
        client_set = [a for a in pooled if a.name not in owned]
        self._objects[key] = ManagedObject(
            scope=command.scope,
            uid=command.uid,
            object_type=command.object_type,
            state=state,
            attributes=self._compacted([self._share(a) for a in server_set] + client_set),
            material=command.material,
        )
        return Applied(command.uid)

    def _compacted(self, attributes: list[StoredAttribute]) -> tuple[StoredAttribute, ...]:
        """A new object's pooled attributes with one item for each instant they name.

        A Create stamps the same time as Initial Date, Last Change Date and usually
        Original Creation Date: one item serves all three. With the few-valued
        attributes and the few-valued members of a Structure (a Digest's algorithm and
        key format) shared with every other object (``_share``), about a fifth of a
        key's memory.
        """
        dates: dict[int, Item] = {}
        kept = []
        for attribute in attributes:
            value = attribute.value
            if value.type == ItemType.DATE_TIME and value.tag == Tag.ATTRIBUTE_VALUE:
                same = dates.setdefault(value.value, value)
                if same is not value:
                    attribute = StoredAttribute(attribute.name, same)
            kept.append(attribute)
        return tuple(kept)

    def _share(self, attribute: StoredAttribute) -> StoredAttribute:
        """One copy of an attribute most keys hold alike (Object Type, Fresh, AES, ...).

        Objects are immutable, so sharing is invisible to readers; it took a key's
        memory and its share of a snapshot's restore time down by about half
        (bench/memory_bench.py). Only the few-valued types are pooled, and the pool
        stops growing at SHARED_ATTRIBUTES_MAX. A Structure with other members too (a
        Digest) keeps a list of its own, whose few-valued members are pooled items.
        """
        key = _pool_key(attribute.value)
        if key is None:
            if attribute.value.type != ItemType.STRUCTURE:
                return attribute
            members = [self._share_item(member) for member in attribute.value.value]
            return StoredAttribute(attribute.name, attribute.value._replace(value=members))
        return _pooled(self._shared, (attribute.name, key), attribute)

    def _share_item(self, item: Item) -> Item:
        """One copy of a few-valued member of a Structure; any other item as it is."""
        key = _pool_key(item)
        return item if key is None else _pooled(self._shared_items, key, item)


_Pooled = TypeVar("_Pooled")


def _pooled(pool: dict[Any, _Pooled], key: object, value: _Pooled) -> _Pooled:
    """The pool's copy of what ``key`` stands for; ``value`` becomes it while there is room."""
    if len(pool) < SHARED_ATTRIBUTES_MAX:
        return pool.setdefault(key, value)
    return pool.get(key, value)


def _pool_key(item: Item) -> object | None:
    """A hashable stand-in for an item of few-valued types only, else None.

    A Structure's list becomes a tuple; the value's Python type is part of the key,
    since an IntEnum member equals its int.
    """
    if item.type == ItemType.STRUCTURE:
        inner = tuple(_pool_key(member) for member in item.value)
        return None if None in inner else (item.tag, inner)
    if item.type not in SHAREABLE_TYPES:
        return None
    # Plain ints: hashing an enumeration member runs Python code, and this runs for
    # every attribute of every Create a node applies or replays.
    value = item.value
    return (item.tag, int(item.type), type(value), int(value))


def _change(obj: ManagedObject, command: object) -> ManagedObject | Rejected:
    """The object as the command leaves it, or why the command is refused."""
    if isinstance(command, AddAttribute):
        return _add_attribute(obj, command)
    if isinstance(command, ModifyAttribute):
        return _modify_attribute(obj, command)
    if isinstance(command, DeleteAttribute):
        return _delete_attribute(obj, command)
    if isinstance(command, Activate):
        return _activate(obj, command)
    if isinstance(command, Revoke):
        return _revoke(obj, command)
    if isinstance(command, Destroy):
        return _destroy(obj, command)
    if isinstance(command, MarkServed):
        return _with(obj, "Fresh", attribute_value(ItemType.BOOLEAN, False))
    if isinstance(command, ConsumeUsage):
        return _consume_usage(obj, command)
    if isinstance(command, SetAttribute):
        return _set_attribute(obj, command)
    if isinstance(command, AdjustAttribute):
        return _adjust_attribute(obj, command)
    if isinstance(command, Archive):
        return _archive(obj, command)
    if isinstance(command, Recover):
        return _recover(obj, command)
    return Rejected(ResultReason.GENERAL_FAILURE, "unknown command")


def _set_attribute(obj: ManagedObject, command: SetAttribute) -> ManagedObject | Rejected:
    name = command.attribute.name
    if name in SERVER_OWNED:
        return Rejected(ResultReason.ATTRIBUTE_READ_ONLY, f"{name} is set by the server")
    if name == "Activation Date" and obj.state != State.PRE_ACTIVE:
        return _wrong_state(obj, "given another Activation Date")
    if len(obj.values(name)) > 1:
        return Rejected(ResultReason.MULTI_VALUED_ATTRIBUTE,
                        f"{name} has several values: use Modify Attribute on one")
    return _touched(_with(obj, name, command.attribute.value), command.now)


# The range of each numeric attribute type Adjust Attribute may change (KMIP 2.1
# section 9.1.1.4): a result outside it is refused, never wrapped around.
_NUMERIC_RANGES = {
    ItemType.INTEGER: (-(1 << 31), (1 << 31) - 1),
    ItemType.LONG_INTEGER: (-(1 << 63), (1 << 63) - 1),
    ItemType.INTERVAL: (0, (1 << 32) - 1),
    ItemType.DATE_TIME: (-(1 << 63), (1 << 63) - 1),
    ItemType.BIG_INTEGER: (None, None),
}


def _adjust_attribute(obj: ManagedObject, command: AdjustAttribute) -> ManagedObject | Rejected:
    if command.name in SERVER_OWNED:
        return Rejected(ResultReason.ATTRIBUTE_READ_ONLY, f"{command.name} is set by the server")
    values = obj.values(command.name)
    if not values:
        return Rejected(ResultReason.ATTRIBUTE_NOT_FOUND, f"the object has no {command.name}")
    if len(values) > 1:
        return Rejected(ResultReason.MULTI_VALUED_ATTRIBUTE, f"{command.name} has several values")
    current = values[0]
    if current.type not in _NUMERIC_RANGES:
        return Rejected(ResultReason.INVALID_DATA_TYPE, f"{command.name} is not a number")

    if command.adjustment == 3:
        adjusted = -current.value
    elif command.amount is None:
        return Rejected(ResultReason.INVALID_FIELD, "Increment and Decrement need a value")
    elif command.adjustment == 1:
        adjusted = current.value + command.amount
    elif command.adjustment == 2:
        adjusted = current.value - command.amount
    else:
        return Rejected(ResultReason.INVALID_FIELD, "unknown Adjustment Type")
    low, high = _NUMERIC_RANGES[current.type]
    if (low is not None and adjusted < low) or (high is not None and adjusted > high):
        return Rejected(ResultReason.NUMERIC_RANGE, f"{command.name} would leave its range")
    value = attribute_value(current.type, adjusted)
    return _touched(_with(obj, command.name, value), command.now)


def _archive(obj: ManagedObject, command: Archive) -> ManagedObject | Rejected:
    if obj.first("Archive Date") is not None:
        return Rejected(ResultReason.OBJECT_ARCHIVED, "the object is already archived")
    return _touched(_with(obj, "Archive Date", date_value(command.now)), command.now)


def _recover(obj: ManagedObject, command: Recover) -> ManagedObject | Rejected:
    # Recovering an object that is on line already changes nothing (KMIP 1.4
    # section 4.23 asks only that it be accessible afterwards).
    if obj.first("Archive Date") is None:
        return obj
    kept = tuple(a for a in obj.attributes if a.name != "Archive Date")
    return _touched(replace(obj, attributes=kept), command.now)


def _add_attribute(obj: ManagedObject, command: AddAttribute) -> ManagedObject | Rejected:
    name = command.attribute.name
    if name in SERVER_OWNED:
        return Rejected(ResultReason.ATTRIBUTE_READ_ONLY, f"{name} is set by the server")
    if name in SINGLE_VALUED and obj.first(name) is not None:
        return Rejected(ResultReason.ATTRIBUTE_SINGLE_VALUED, f"{name} already has a value")
    if name == "Name" and command.attribute.value in obj.values("Name"):
        return Rejected(ResultReason.NON_UNIQUE_NAME_ATTRIBUTE, "the object has that name")
    return _touched(obj, command.now, attributes=obj.attributes + (command.attribute,))


def _modify_attribute(obj: ManagedObject, command: ModifyAttribute) -> ManagedObject | Rejected:
    # Once a key is past Pre-Active its activation is history (KMIP 2.1 section 4.1).
    if command.name == "Activation Date" and obj.state != State.PRE_ACTIVE:
        return _wrong_state(obj, "given another Activation Date")
    if command.name in SERVER_OWNED:
        return Rejected(ResultReason.ATTRIBUTE_READ_ONLY, f"{command.name} is set by the server")
    position = _position(obj, command.name, command.index)
    if position is None:
        return Rejected(ResultReason.ATTRIBUTE_NOT_FOUND,
                        f"no {command.name} attribute at index {command.index}")
    attributes = list(obj.attributes)
    attributes[position] = StoredAttribute(command.name, command.value)
    return _touched(obj, command.now, attributes=tuple(attributes))


def _delete_attribute(obj: ManagedObject, command: DeleteAttribute) -> ManagedObject | Rejected:
    if command.name in SERVER_OWNED:
        return Rejected(ResultReason.ATTRIBUTE_READ_ONLY, f"{command.name} is set by the server")
    position = _position(obj, command.name, command.index)
    if position is None:
        return Rejected(ResultReason.ATTRIBUTE_NOT_FOUND,
                        f"no {command.name} attribute at index {command.index}")
    attributes = obj.attributes[:position] + obj.attributes[position + 1:]
    return _touched(obj, command.now, attributes=attributes)


def _consume_usage(obj: ManagedObject, command: ConsumeUsage) -> ManagedObject | Rejected:
    limits = obj.first("Usage Limits")
    if limits is None:
        return obj
    fields = {item.tag: item for item in limits.value}
    total = fields.get(Tag.USAGE_LIMITS_TOTAL)
    count = fields.get(Tag.USAGE_LIMITS_COUNT, total)
    if count is None or command.amount > count.value:
        return Rejected(ResultReason.PERMISSION_DENIED, "the key's Usage Limits are used up")
    fields[Tag.USAGE_LIMITS_COUNT] = Item(Tag.USAGE_LIMITS_COUNT, ItemType.LONG_INTEGER,
                                          count.value - command.amount)
    order = (Tag.USAGE_LIMITS_TOTAL, Tag.USAGE_LIMITS_COUNT, Tag.USAGE_LIMITS_UNIT)
    value = attribute_value(ItemType.STRUCTURE, [fields[t] for t in order if t in fields])
    return _touched(_with(obj, "Usage Limits", value), command.now)


def _activate(obj: ManagedObject, command: Activate) -> ManagedObject | Rejected:
    if obj.state != State.PRE_ACTIVE:
        return _wrong_state(obj, "activated")
    changed = _with(obj, "Activation Date", date_value(command.now))
    return _touched(changed, command.now, state=State.ACTIVE)


def _revoke(obj: ManagedObject, command: Revoke) -> ManagedObject | Rejected:
    reason = [Item(Tag.REVOCATION_REASON_CODE, ItemType.ENUMERATION, int(command.reason))]
    if command.message is not None:
        reason.append(Item(Tag.REVOCATION_MESSAGE, ItemType.TEXT_STRING, command.message))
    changed = _with(obj, "Revocation Reason", attribute_value(ItemType.STRUCTURE, reason))

    # A compromise moves any state but Destroyed Compromised to a compromised
    # state; any other reason deactivates a live object (KMIP 1.4 section 4.20).
    if command.reason in _COMPROMISE_REASONS:
        if obj.state == State.DESTROYED_COMPROMISED:
            return _wrong_state(obj, "revoked")
        occurred = command.compromise_occurrence_date
        changed = _with(changed, "Compromise Date", date_value(command.now))
        changed = _with(changed, "Compromise Occurrence Date",
                        date_value(command.now if occurred is None else occurred))
        destroyed = obj.state == State.DESTROYED
        state = State.DESTROYED_COMPROMISED if destroyed else State.COMPROMISED
        return _touched(changed, command.now, state=state)

    if obj.state not in (State.PRE_ACTIVE, State.ACTIVE):
        return _wrong_state(obj, "revoked")
    changed = _with(changed, "Deactivation Date", date_value(command.now))
    return _touched(changed, command.now, state=State.DEACTIVATED)


def _destroy(obj: ManagedObject, command: Destroy) -> ManagedObject | Rejected:
    # An Active object must be revoked first (KMIP 1.4 section 4.21).
    if obj.state == State.COMPROMISED:
        state = State.DESTROYED_COMPROMISED
    elif obj.state in (State.PRE_ACTIVE, State.DEACTIVATED):
        state = State.DESTROYED
    else:
        return _wrong_state(obj, "destroyed")
    changed = _with(obj, "Destroy Date", date_value(command.now))
    return _touched(changed, command.now, state=state, material=None)


def _wrong_state(obj: ManagedObject, verb: str) -> Rejected:
    return Rejected(
        ResultReason.WRONG_KEY_LIFECYCLE_STATE,
        f"an object in state {obj.state.name} cannot be {verb}",
    )


def _position(obj: ManagedObject, name: str, index: int) -> int | None:
    seen = 0
    for position, attribute in enumerate(obj.attributes):
        if attribute.name == name:
            if seen == index:
                return position
            seen += 1
    return None


def _with(obj: ManagedObject, name: str, value: Item) -> ManagedObject:
    """The object with the single-valued attribute ``name`` set to ``value``."""
    kept = tuple(attribute for attribute in obj.attributes if attribute.name != name)
    return replace(obj, attributes=kept + (StoredAttribute(name, value),))


def _touched(obj: ManagedObject, now: int, **changes: object) -> ManagedObject:
    """Apply ``changes`` and stamp Last Change Date and State to match."""
    changed = replace(obj, **changes)  # type: ignore[arg-type]
    changed = _with(changed, "Last Change Date", date_value(now))
    if changed.state != obj.state:
        changed = _with(changed, "State", enum_value(changed.state))
    return changed
