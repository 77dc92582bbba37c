"""The generic mapping between frozen dataclasses and TTLV item trees.

Theory of operation
-------------------
Every KMIP structure of the model is a frozen, keyword-only dataclass whose fields
are declared in the specification's order, each with the tag it travels under:

    @dataclass(frozen=True, kw_only=True)
    class RevocationReason:
        revocation_reason_code: RevocationReasonCode | int = required(Tag.REVOCATION_REASON_CODE)
        revocation_message: str | None = at(Tag.REVOCATION_MESSAGE)

The annotation gives the TTLV type: ``str`` is a Text String, ``bytes`` a Byte
String, ``bool`` a Boolean, ``int`` an Integer (or a Long Integer, Big Integer or
Interval when the field says ``kind=``), an ``IntEnum`` an Enumeration, ``datetime``
a Date-Time, a dataclass a Structure and ``Item`` any raw item, kept whole.
``tuple[X, ...]`` repeats, ``X | None`` is optional, and a union of types that differ
on the wire (``KeyValue | bytes``, ``SymmetricKey | PublicKey``) is told apart by the
item's type or tag.

The first use of a class compiles its plan from the annotations, once: a decoder
and an encoder generated as Python source for that class alone (``plan_of(cls).source``
shows them). The decoder walks the items and the fields side by side, since a field
may only follow the fields before it: each field costs one tag comparison when
absent, and converting a present one is a type check and at most one call. It
builds the instance by filling its ``__dict__``, skipping the frozen ``__init__``.
The encoder reads the fields in order and appends items. The first version, a
generic loop that looked each item up in a per-class table, spent more time in its
own dispatch than in the fields; a request is decoded for every batch the server
answers, so the speed is worth the generated code (bench/codec_bench.py measures it).

Decoding is strict so that nothing is silently dropped and every message re-encodes
to the same bytes: a tag the structure does not define, a field out of the
specification's order, a repeated single field, a wrong item type or a missing
required field raise ``KmipError`` with Result Reason Invalid Field, naming it.
Enumeration values the table does not know (extensions, 0x8XXXXXXX) stay plain ints.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any, Final

from .errors import invalid_field
from .ttlv import Item, ItemType

ANY_TAG: Final = -1
"""The tag of a field that collects every item its structure does not name."""

_MISSING: Final = object()
_END: Final = Item(-2, ItemType.STRUCTURE, [])  # after the last item: no field has its tag
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND: Final = timedelta(seconds=1)
_MICROSECOND: Final = timedelta(microseconds=1)
_STRUCTURE: Final = ItemType.STRUCTURE


def at(tag: int | None = None, *, kind: ItemType | None = None) -> Any:
    """An optional field (None when absent) carried under ``tag``."""
    return dataclasses.field(default=None, metadata={"tag": tag, "kind": kind})


def many(tag: int | None = None, *, kind: ItemType | None = None) -> Any:
    """A repeated field (an empty tuple when absent) carried under ``tag``."""
    return dataclasses.field(default=(), metadata={"tag": tag, "kind": kind})


def required(tag: int | None = None, *, kind: ItemType | None = None) -> Any:
    """A field the structure must carry."""
    return dataclasses.field(metadata={"tag": tag, "kind": kind})


def rest() -> Any:
    """A repeated raw field that keeps every item the structure does not name."""
    return dataclasses.field(default=(), metadata={"tag": ANY_TAG, "kind": None})


def selected_by(tag: int, selector: str, registry: dict[Any, type], fallback: type) -> Any:
    """A Structure whose class is ``registry[value of field selector]``.

    A selector value with no class decodes to ``fallback(item=...)``, kept raw. This
    is how a batch item's payload follows its Operation.
    """
    meta = {"tag": tag, "kind": None, "select": (selector, registry, fallback)}
    return dataclasses.field(default=None, metadata=meta)


# How a decoded item becomes a field value; each names what ``aux`` holds.
_PLAIN = 0  # the item's value as it is
_ENUM = 1  # aux: {number: member}; unknown numbers stay ints
_STRUCT = 2  # aux: the dataclass
_RAW = 3  # the item itself
_TIME = 4  # aux: the unit (seconds or microseconds)
_SELECT = 5  # aux: (selector field, registry, fallback class)


class _Alternative(typing.NamedTuple):
    """One way a field can appear on the wire."""

    tag: int
    item_type: ItemType | None  # None: any type (a raw item)
    code: int
    aux: Any
    python_type: type


class _Field(typing.NamedTuple):
    position: int
    name: str
    repeated: bool
    required: bool
    default: Any
    alternatives: tuple[_Alternative, ...]


class _Plan:
    """The compiled decoder and encoder of one dataclass, and their source."""

    __slots__ = ("cls", "fields", "decode", "encode", "source")

    def __init__(self, cls: type) -> None:
        self.cls = cls
        hints = _hints(cls)
        self.fields = [
            _compile_field(position, spec, hints[spec.name], cls)
            for position, spec in enumerate(dataclasses.fields(cls))
        ]
        _check_tags(cls, self.fields)
        namespace = _namespace(self)
        self.source = _decoder_source(self) + "\n" + _encoder_source(self)
        exec(compile(self.source, f"<mapping of {cls.__name__}>", "exec"), namespace)
        self.decode: Callable[[list[Item]], Any] = namespace["decode"]
        self.encode: Callable[[Any], list[Item]] = namespace["encode"]


_PLANS: dict[type, _Plan | None] = {}
# Compiling is serialized: a class being compiled is marked None, and another thread
# reading that mark took it for a class that contains itself (the chaos clients, six
# threads encoding their first request at once, found this). Reentrant, because a
# plan compiles the plans of its fields; the compiled fast path takes no lock.
_COMPILING = threading.RLock()


def plan_of(cls: type) -> _Plan:
    """The compiled plan of ``cls``, compiled on first use."""
    plan = _PLANS.get(cls)
    if plan is not None:
        return plan
    with _COMPILING:
        plan = _PLANS.get(cls)
        if plan is None:
            if cls in _PLANS:
                raise TypeError(f"{cls.__name__} contains itself")
            _PLANS[cls] = None
            try:
                plan = _PLANS[cls] = _Plan(cls)
            except BaseException:
                del _PLANS[cls]
                raise
        return plan


def _hints(cls: type) -> dict[str, Any]:
    module = sys.modules[cls.__module__]
    return typing.get_type_hints(cls, globalns=vars(module))


def _compile_field(
    position: int, spec: dataclasses.Field[Any], annotation: Any, cls: type
) -> _Field:
    tag = spec.metadata.get("tag")
    kind = spec.metadata.get("kind")
    is_required = spec.default is dataclasses.MISSING
    default = _MISSING if is_required else spec.default

    # First peel off the tuple (repeated) and the None (optional) wrappers.
    repeated = typing.get_origin(annotation) is tuple
    if repeated:
        annotation = typing.get_args(annotation)[0]
    members = [m for m in _union_members(annotation) if m is not type(None)]

    # Then describe each remaining type as one wire alternative, raw items last.
    if "select" in spec.metadata:
        selection = spec.metadata["select"]
        alternatives = [
            _Alternative(
                _tag(tag, "a selection", cls, spec.name), _STRUCTURE, _SELECT, selection, object
            )
        ]
    else:
        has_enum = any(isinstance(m, type) and issubclass(m, IntEnum) for m in members)
        alternatives = [
            _alternative(member, tag, kind, cls, spec.name)
            for member in members
            if not (member is int and has_enum)  # the int of ``SomeEnum | int`` is its room
        ]
        alternatives.sort(key=lambda alt: alt.code == _RAW)
    return _Field(position, spec.name, repeated, is_required, default, tuple(alternatives))


def _union_members(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return list(typing.get_args(annotation))
    return [annotation]


def _alternative(
    member: Any, tag: int | None, kind: ItemType | None, cls: type, name: str
) -> _Alternative:
    base = member
    while hasattr(base, "__supertype__"):  # a NewType travels as its base type
        base = base.__supertype__

    if base is Item:
        return _Alternative(_tag(tag, member, cls, name), None, _RAW, None, Item)
    if dataclasses.is_dataclass(base):
        assert isinstance(base, type)
        if tag is None:
            tag = getattr(base, "TAG", None)
        return _Alternative(_tag(tag, member, cls, name), _STRUCTURE, _STRUCT, base, base)
    if base is datetime:
        item_type = kind or ItemType.DATE_TIME
        unit = _MICROSECOND if item_type == ItemType.DATE_TIME_EXTENDED else _SECOND
        return _Alternative(_tag(tag, member, cls, name), item_type, _TIME, unit, datetime)
    if isinstance(base, type) and issubclass(base, IntEnum):
        # Any int encodes here, since unknown values stay ints when decoded.
        lookup = dict(base._value2member_map_)
        tag = _tag(tag, member, cls, name)
        return _Alternative(tag, ItemType.ENUMERATION, _ENUM, lookup, int)
    scalar = {str: ItemType.TEXT_STRING, bytes: ItemType.BYTE_STRING, bool: ItemType.BOOLEAN}
    if base in scalar:
        return _Alternative(_tag(tag, member, cls, name), scalar[base], _PLAIN, None, base)
    if base is int:
        item_type = kind or ItemType.INTEGER
        return _Alternative(_tag(tag, member, cls, name), item_type, _PLAIN, None, int)
    raise TypeError(f"{cls.__name__}.{name}: no TTLV type for {member!r}")


def _tag(tag: int | None, member: Any, cls: type, name: str) -> int:
    if tag is None:
        raise TypeError(f"{cls.__name__}.{name}: {member!r} needs a tag")
    return int(tag)


def _check_tags(cls: type, fields: list[_Field]) -> None:
    # Decoding matches items to fields in order by tag alone, so tags must be unique,
    # and a catch-all field can only be the whole structure.
    seen: set[int] = set()
    for f in fields:
        tags = {alt.tag for alt in f.alternatives}
        if ANY_TAG in tags and len(fields) != 1:
            raise TypeError(f"{cls.__name__}.{f.name}: a catch-all must be the only field")
        if tags & seen:
            raise TypeError(f"{cls.__name__}.{f.name}: tag used by an earlier field")
        seen |= tags


# The generated code refers to the constants of a plan by these names: T (item
# type), E (enum lookup), D and N (nested decoder and encoder), U (time unit), A
# (selection), K (tag set), each suffixed with the field and alternative numbers.


def _namespace(plan: _Plan) -> dict[str, Any]:
    namespace: dict[str, Any] = {
        "cls": plan.cls,
        "PLAN": plan,
        "MISSING": _MISSING,
        "END": _END,
        "STRUCTURE": _STRUCTURE,
        "Item": Item,
        "new": object.__new__,
        "new_item": tuple.__new__,
        "to_datetime": _datetime,
        "to_timestamp": _timestamp,
        "select": _select,
        "encode_selected": _encode_selected,
        "leftover": _leftover,
        "missing": _missing,
        "wrong_type": _wrong_type,
        "cannot_hold": _cannot_hold,
    }
    for f in plan.fields:
        namespace[f"K{f.position}"] = frozenset(alt.tag for alt in f.alternatives)
        for j, alt in enumerate(f.alternatives):
            suffix = f"{f.position}_{j}"
            namespace["T" + suffix] = alt.item_type
            if alt.code == _ENUM:
                namespace["E" + suffix] = alt.aux
            elif alt.code == _STRUCT:
                nested = plan_of(alt.aux)
                namespace["D" + suffix] = nested.decode
                namespace["N" + suffix] = nested.encode
            elif alt.code == _TIME:
                namespace["U" + suffix] = alt.aux
            elif alt.code == _SELECT:
                namespace["A" + suffix] = alt.aux
            namespace["P" + suffix] = alt.python_type
    return namespace


def _decoder_source(plan: _Plan) -> str:
    # ``c`` is the next item not yet taken; END, whose tag matches no field, when none.
    lines = ["def decode(children):", "    it = iter(children)", "    c = next(it, END)"]
    for f in plan.fields:
        k = f.position
        lines.append(f"    v{k} = {'MISSING' if f.required else repr(f.default)}")

        # A catch-all takes everything; other fields take the items with their tags.
        if f.alternatives[0].tag == ANY_TAG:
            lines += [f"    v{k} = tuple(children)", "    c = END"]
            continue
        tags = {alt.tag for alt in f.alternatives}
        match = f"c[0] == {tags.pop()}" if len(tags) == 1 else f"c[0] in K{k}"
        if f.repeated:
            lines += [
                f"    if {match}:",
                "        found = []",
                f"        while {match}:",
                *_convert(plan, f, "x", "            "),
                "            found.append(x)",
                "            c = next(it, END)",
                f"        v{k} = tuple(found)",
            ]
        else:
            lines += [
                f"    if {match}:",
                *_convert(plan, f, f"v{k}", "        "),
                "        c = next(it, END)",
            ]

    # Anything left over is foreign, out of order or repeated; the rest is checked.
    lines.append("    if c is not END: leftover(PLAN, children)")
    for f in plan.fields:
        if f.required:
            lines.append(f"    if v{f.position} is MISSING: missing(PLAN, {f.name!r})")
    # Storing into the new instance's __dict__ one key at a time measured fastest.
    lines += ["    o = new(cls)", "    d = o.__dict__"]
    lines += [f"    d[{f.name!r}] = v{f.position}" for f in plan.fields]
    lines.append("    return o")
    return "\n".join(lines) + "\n"


def _convert(plan: _Plan, f: _Field, target: str, indent: str) -> list[str]:
    lines: list[str] = []
    several = len(f.alternatives) > 1
    for j, alt in enumerate(f.alternatives):
        suffix = f"{f.position}_{j}"
        if several:
            test = f"c[0] == {alt.tag}"
            if alt.item_type is not None:
                test += f" and c[1] is T{suffix}"
            lines.append(f"{indent}{'if' if j == 0 else 'elif'} {test}:")
        elif alt.item_type is not None:
            lines.append(f"{indent}if c[1] is not T{suffix}: wrong_type(PLAN, {f.name!r}, c)")
        inner = indent + "    " if several else indent
        lines.append(inner + _conversion(plan, alt, suffix, target))
    if several:
        lines.append(f"{indent}else: wrong_type(PLAN, {f.name!r}, c)")
    return lines


def _conversion(plan: _Plan, alt: _Alternative, suffix: str, target: str) -> str:
    if alt.code == _PLAIN:
        return f"{target} = c[2]"
    if alt.code == _ENUM:
        return f"{target} = E{suffix}.get(c[2], c[2])"
    if alt.code == _STRUCT:
        return f"{target} = D{suffix}(c[2])"
    if alt.code == _RAW:
        return f"{target} = c"
    if alt.code == _TIME:
        return f"{target} = to_datetime(c, U{suffix})"
    selector = next(f.position for f in plan.fields if f.name == alt.aux[0])
    return f"{target} = select(c, v{selector}, A{suffix})"


def _encoder_source(plan: _Plan) -> str:
    lines = ["def encode(o):", "    d = o.__dict__", "    out = []", "    append = out.append"]
    for f in plan.fields:
        if f.repeated:
            lines.append(f"    for v in d[{f.name!r}]:")
        else:
            lines += [f"    v = d[{f.name!r}]", "    if v is not None:"]
        lines += _emit(f, "        ")
    lines.append("    return out")
    return "\n".join(lines) + "\n"


def _emit(f: _Field, indent: str) -> list[str]:
    several = len(f.alternatives) > 1
    lines: list[str] = []
    for j, alt in enumerate(f.alternatives):
        suffix = f"{f.position}_{j}"
        if several:
            lines.append(f"{indent}{'if' if j == 0 else 'elif'} isinstance(v, P{suffix}):")
        inner = indent + "    " if several else indent
        lines.append(inner + _emission(alt, suffix))
    if several:
        lines.append(f"{indent}else: cannot_hold(PLAN, {f.name!r}, v)")
    return lines


def _emission(alt: _Alternative, suffix: str) -> str:
    tag = alt.tag
    if alt.code == _PLAIN or alt.code == _ENUM:
        return f"append(new_item(Item, ({tag}, T{suffix}, v)))"
    if alt.code == _STRUCT:
        return f"append(new_item(Item, ({tag}, STRUCTURE, N{suffix}(v))))"
    if alt.code == _RAW:
        return "append(v)"
    if alt.code == _TIME:
        return f"append(new_item(Item, ({tag}, T{suffix}, to_timestamp(v, U{suffix}, {tag}))))"
    return f"append(encode_selected(v, {tag}, A{suffix}))"


# Helpers the generated code calls off the hot path, or for rare types.


def _datetime(item: Item, unit: timedelta) -> datetime:
    try:
        return _EPOCH + item[2] * unit
    except OverflowError:
        raise invalid_field(f"date-time 0x{item[0]:06X} is out of range") from None


def _timestamp(value: datetime, unit: timedelta, tag: int) -> int:
    try:
        return (value - _EPOCH) // unit
    except TypeError:
        raise invalid_field(f"date-time 0x{tag:06X} must be timezone-aware") from None


def _select(item: Item, selector_value: Any, aux: tuple[str, dict[Any, type], type]) -> Any:
    _, registry, fallback = aux
    cls = registry.get(selector_value)
    if cls is None:
        return fallback(item=item)
    if item[1] is not _STRUCTURE:
        raise invalid_field(f"{cls.__name__} must be a Structure")
    return plan_of(cls).decode(item[2])


def _encode_selected(value: Any, tag: int, aux: tuple[str, dict[Any, type], Any]) -> Item:
    if isinstance(value, aux[2]):  # the fallback, kept raw
        raw: Item = value.item
        return raw
    return Item(tag, _STRUCTURE, plan_of(type(value)).encode(value))


def _leftover(plan: _Plan, children: list[Item]) -> None:
    # Walk the items again to say which one broke the order, and how.
    where = plan.cls.__name__
    owners = {alt.tag: f for f in plan.fields for alt in f.alternatives}
    last: _Field | None = None
    for child in children:
        owner = owners.get(child[0])
        if owner is None:
            raise invalid_field(f"{where} has no field tagged 0x{child[0]:06X}")
        if last is not None and owner.position == last.position and not owner.repeated:
            raise invalid_field(f"{where}.{owner.name} appears twice")
        if last is not None and owner.position < last.position:
            raise invalid_field(f"{where}.{owner.name} is out of order")
        last = owner
    raise AssertionError(f"{where}: the decoder stopped early on valid items")


def _missing(plan: _Plan, name: str) -> None:
    raise invalid_field(f"{plan.cls.__name__}.{name} is missing")


def _wrong_type(plan: _Plan, name: str, item: Item) -> None:
    raise invalid_field(f"{plan.cls.__name__}.{name} cannot be a {ItemType(item[1]).name}")


def _cannot_hold(plan: _Plan, name: str, value: Any) -> None:
    raise invalid_field(f"{plan.cls.__name__}.{name} cannot hold a {type(value).__name__}")


def from_item(cls: type[Any], item: Item) -> Any:
    """Decode ``item`` (a Structure) into an instance of the dataclass ``cls``."""
    if item[1] is not _STRUCTURE:
        raise invalid_field(f"{cls.__name__} must be a Structure")
    return plan_of(cls).decode(item[2])


def to_item(instance: Any, tag: int) -> Item:
    """Encode the dataclass ``instance`` as a Structure tagged ``tag``."""
    return Item(tag, _STRUCTURE, plan_of(type(instance)).encode(instance))


def check_plans(classes: list[type]) -> None:
    """Compile the plans of ``classes`` now, so that a declaration error shows at once."""
    for cls in classes:
        plan_of(cls)


__all__ = [
    "ANY_TAG",
    "at",
    "check_plans",
    "from_item",
    "many",
    "plan_of",
    "required",
    "rest",
    "selected_by",
    "to_item",
]
