"""Audit records of KMIP batch items: what the service tells the audit trail.

The service writes two records per batch item through an ``AuditSink`` (the node's
audit broker, cluster/audit.py): ``kmip_request`` before the handler runs, and
``kmip_response`` after, with the result and the time it took. If the sink cannot
write the request record the item is not run at all; if it cannot write the
response record the client gets a failure in place of the answer, although a write
the handler made stays committed (a Raft entry cannot be taken back; Vault's audit
behaves alike).

A payload is recorded whole, field by field, except that every value that may be
secret is a ``Sensitive``: each device writes it as an HMAC-SHA256 under its own
salt, never as itself. Which values: every byte string (key material, secret data,
plaintext, ciphertext, IVs, signatures, random bytes, certificates), every big
integer (transparent key components), and the whole Key Value of a key block
whatever its form. Text, numbers and enumerations are written as they are: unique
identifiers, names, attribute values that are not bytes.
"""

from __future__ import annotations

import dataclasses
import enum
import time
import uuid
from datetime import datetime
from typing import Any, Protocol

from .authorization import Grant
from .frontend import ClientIdentity
from .messages import RequestBatchItem, ResponseBatchItem
from .tables import Tag
from .ttlv import Item, ItemType, encode_item


@dataclasses.dataclass(frozen=True)
class Sensitive:
    """A value a record may only carry as its HMAC under the device's salt."""

    value: bytes = dataclasses.field(repr=False)


class AuditUnavailable(Exception):
    """Audit devices are enabled and none of them could write the record."""


class AuditSink(Protocol):
    """Where records go: the node's audit broker."""

    @property
    def enabled(self) -> bool:
        """Whether any audit device is enabled; without one nothing is recorded."""
        ...

    async def record(self, kind: str, fields: dict[str, Any]) -> None:
        """Write one record on every device; AuditUnavailable if none took it."""
        ...


class KmipAudit:
    """Builds and writes the records of batch items; a no-op without a sink."""

    def __init__(self, sink: AuditSink | None = None) -> None:
        self._sink = sink

    async def request(
        self,
        client: ClientIdentity,
        grant: Grant | None,
        version: tuple[int, int],
        item: RequestBatchItem,
    ) -> KmipEntry | None:
        """Record a batch item before it runs; None when nothing is being recorded."""
        sink = self._sink
        if sink is None or not sink.enabled:
            return None
        identifiers: list[str] = []
        fields: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "client": {
                "address": client.address,
                "certificate_serial": f"{client.certificate_serial:x}",
                "common_name": client.common_name,
            },
            "auth": {
                "scope": grant.scope if grant else None,
                "role": grant.role if grant else None,
                "source": grant.source if grant else None,
            },
            "operation": _name(item.operation),
            "protocol_version": f"{version[0]}.{version[1]}",
            "batch_item_id": item.unique_batch_item_id.hex() if item.unique_batch_item_id
            else None,
        }
        fields["request"] = render(item.payload, identifiers)
        fields["unique_identifiers"] = identifiers
        await sink.record("kmip_request", fields)
        return KmipEntry(sink, fields, time.perf_counter())


class KmipEntry:
    """One batch item being recorded: its request written, its response to come."""

    def __init__(self, sink: AuditSink, fields: dict[str, Any], started: float) -> None:
        self._sink = sink
        self._fields = fields
        self._started = started

    async def response(self, answer: ResponseBatchItem) -> None:
        fields = dict(self._fields)
        identifiers = list(fields["unique_identifiers"])
        fields["response"] = render(answer.payload, identifiers)
        fields["unique_identifiers"] = list(dict.fromkeys(identifiers))
        fields["result"] = {
            "status": _name(answer.result_status),
            "reason": _name(answer.result_reason) if answer.result_reason is not None else None,
            "message": answer.result_message,
        }
        fields["duration_ms"] = round((time.perf_counter() - self._started) * 1000, 3)
        del fields["request"]
        await self._sink.record("kmip_response", fields)


# Fields whose values are unique identifiers, collected for the record's index.
_IDENTIFIER_FIELDS = frozenset({
    "unique_identifier", "unique_identifiers", "private_key_unique_identifier",
    "public_key_unique_identifier",
})
# Always sensitive whatever their type: the key material of a key block.
_SECRET_FIELDS = frozenset({"key_value", "key_material"})


def render(value: Any, identifiers: list[str]) -> Any:
    """``value`` as JSON-able data with secrets as ``Sensitive``; collects identifiers."""
    if value is None or isinstance(value, (bool, str, float)):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, int):
        return value
    if isinstance(value, bytes):
        return Sensitive(value)
    if isinstance(value, Item):
        return _render_item(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (tuple, list)):
        return [render(element, identifiers) for element in value]
    if dataclasses.is_dataclass(value):
        rendered: dict[str, Any] = {}
        for field in dataclasses.fields(value):
            inner = getattr(value, field.name)
            if inner is None or inner == ():
                continue
            if field.name in _SECRET_FIELDS:
                rendered[field.name] = _secret(inner)
                continue
            if field.name in _IDENTIFIER_FIELDS:
                identifiers.extend(_identifiers(inner))
            rendered[field.name] = render(inner, identifiers)
        return rendered
    # A type this walk does not know might hold anything: name it, show nothing.
    return f"<{type(value).__name__}>"


def _secret(value: Any) -> Sensitive:
    material = getattr(value, "key_material", value)
    if isinstance(material, bytes):
        return Sensitive(material)
    if isinstance(material, Item):
        return Sensitive(encode_item(material))
    return Sensitive(repr(material).encode())


def _identifiers(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (tuple, list)):
        return [element for element in value if isinstance(element, str)]
    return []


def _render_item(item: Item) -> dict[str, Any]:
    name = Tag(item.tag).name if item.tag in Tag._value2member_map_ else f"0x{item.tag:06x}"
    if item.type == ItemType.STRUCTURE:
        return {name: [_render_item(child) for child in item.value]}
    if item.type == ItemType.BYTE_STRING:
        return {name: Sensitive(item.value)}
    if item.type == ItemType.BIG_INTEGER:
        return {name: Sensitive(encode_item(item))}
    value = item.value
    if isinstance(value, datetime):
        value = value.isoformat()
    elif isinstance(value, enum.Enum):
        value = value.name
    return {name: value}


def _name(value: object) -> str | None:
    if value is None:
        return None
    return value.name if isinstance(value, enum.Enum) else str(value)
