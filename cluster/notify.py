"""Server-to-client KMIP: Notify and Put, sent by the leader to registered endpoints.

Theory of operation
-------------------
An operator registers a client's KMIP listener for a scope (cluster/notify_state.py,
through cluster/notify_api.py). From then on, changes to that scope's objects are
pushed to it:

- a new object (Create, Create Key Pair, Register, Derive Key, Certify) is sent with
  Put, Put Function New;
- an object that replaces another (Re-key, Re-key Key Pair, Re-certify: the command
  moves the old object's names to it) is sent with Put, Put Function Replace, and
  the Replaced Unique Identifier;
- an object whose attributes change (Add, Modify, Delete Attribute, Activate,
  Revoke, Destroy, a Link added by a replacement) is announced with Notify, carrying
  the attributes that changed as they now are, and, to a 1.x client, the names of
  those deleted with no value (KMIP 1.4 section 5.1).

Changes are seen where they happen: ``ClusterState`` applies each committed command
on every node, and for a scope with endpoints it hands ``object_changes`` the
objects before and after. Every node sees every change; only the node that leads
when it dequeues the change sends it, so one message leaves the cluster per change
and endpoint while leadership is stable.

What this promises, and what it does not:

- Delivery is best effort, at most once per attempt: each message is tried
  ``ATTEMPTS`` times with a growing pause, each failure logged as
  ``notify_delivery_failed`` with the endpoint and the reason, then dropped. Nothing
  is persisted: a change applied while the leader changes may be sent by neither
  node, or (rarely) by both; a client that must not miss a change reads the object
  itself (Get Attributes, Locate) when it reconnects.
- Changes are sent in the order they were applied, one at a time; an endpoint that
  is down delays the others by its retries. The queue holds ``QUEUE_LIMIT`` changes;
  beyond that new ones are dropped, with one log line per episode.
- Put carries the object's key material to the endpoint, as Get would to a client of
  the scope. An object that is Sensitive or not Extractable is never Put: its change
  is logged as skipped. Usage counters (Usage Limits) and the Fresh flag, which
  change on use rather than on management, are not announced.
- The endpoint is reached over mutual TLS: this node presents its configured
  certificate (tls.cert_file) and accepts only an endpoint certificate from the node's
  CA file or the cluster CA that names the registered host.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from keyquorum.kmip.attributes import Attribute
from keyquorum.kmip.errors import KmipError
from keyquorum.kmip.limits import DEFAULT_LIMITS
from keyquorum.kmip.messages import (
    RequestBatchItem,
    RequestHeader,
    RequestMessage,
    ResponseMessage,
    decode_message,
    encode_message,
)
from keyquorum.kmip.operations.attribute_ops import get_attributes
from keyquorum.kmip.operations.context import Backend, Context
from keyquorum.kmip.operations.object_ops import get
from keyquorum.kmip.payloads import (
    GetAttributesRequestPayload,
    GetRequestPayload,
    NotifyRequestPayload,
    ProtocolVersion,
    PutRequestPayload,
)
from keyquorum.kmip.tables import Operation, PutFunction, ResultStatus
from keyquorum.kmip.ttlv import NEED_DATA, FrameReader

from .notify_state import NotifyEndpoint, NotifyState
from .state import (
    Activate,
    AddAttribute,
    CreateFromSources,
    CreateObject,
    CreateObjects,
    DeleteAttribute,
    Destroy,
    ManagedObject,
    ModifyAttribute,
    Revoke,
    ScopeName,
    UniqueIdentifier,
)

log = logging.getLogger("keyquorum.notify")

# Tries per message, and the pause before each retry (seconds): an endpoint that
# restarts is usually back within a few seconds; a longer outage is the client's to
# catch up on by reading.
ATTEMPTS = 3
RETRY_PAUSES = (1.0, 3.0)

# A message's connect, handshake, send and answer together.
DELIVERY_TIMEOUT = 10.0

# Changes waiting to be sent. A bulk import into a scope with a down endpoint would
# otherwise grow without bound; 1024 changes of a few hundred bytes each is little.
QUEUE_LIMIT = 1024

# Attribute commands: they change one object's attributes.
_ATTRIBUTE_COMMANDS = (AddAttribute, ModifyAttribute, DeleteAttribute, Activate, Revoke,
                       Destroy)


class ChangeKind(Enum):
    NEW = "new"
    REPLACE = "replace"
    ATTRIBUTES = "attributes"


@dataclass(frozen=True)
class ObjectChange:
    scope: ScopeName
    uid: UniqueIdentifier
    kind: ChangeKind
    # REPLACE: the object this one replaces.
    replaced: UniqueIdentifier | None = None
    # ATTRIBUTES: names whose values changed or appeared, and names now absent.
    changed: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()


def watched(command: object) -> tuple[ScopeName, tuple[UniqueIdentifier, ...]] | None:
    """The scope and the existing objects a command may change, or None if none."""
    if isinstance(command, _ATTRIBUTE_COMMANDS):
        return command.scope, (command.uid,)
    if isinstance(command, CreateObject):
        return command.scope, ()
    if isinstance(command, CreateObjects) and command.objects:
        return command.objects[0].scope, ()
    if isinstance(command, CreateFromSources):
        sources = tuple(uid for uid, _ in command.links)
        sources += tuple(old for old, _ in command.names_moved)
        return command.scope, tuple(dict.fromkeys(sources))
    return None


def object_changes(command: object, before: dict[UniqueIdentifier, ManagedObject | None],
                   after: Callable[[UniqueIdentifier], ManagedObject | None]
                   ) -> list[ObjectChange]:
    """What an applied command changed, for Notify and Put; pure, so apply can call it."""
    if isinstance(command, CreateObject):
        return [ObjectChange(command.scope, command.uid, ChangeKind.NEW)]
    if isinstance(command, CreateObjects):
        return [ObjectChange(o.scope, o.uid, ChangeKind.NEW) for o in command.objects]

    changes: list[ObjectChange] = []
    if isinstance(command, CreateFromSources):
        replaced = {new: old for old, new in command.names_moved}
        changes += [ObjectChange(command.scope, o.uid, ChangeKind.REPLACE, replaced[o.uid])
                    if o.uid in replaced else ObjectChange(command.scope, o.uid, ChangeKind.NEW)
                    for o in command.objects]
    for uid, old in before.items():
        new = after(uid)
        if old is not None and new is not None:
            changed, deleted = _attribute_diff(old, new)
            if changed or deleted:
                changes.append(ObjectChange(new.scope, uid, ChangeKind.ATTRIBUTES,
                                            changed=changed, deleted=deleted))
    return changes


def _attribute_diff(old: ManagedObject, new: ManagedObject) -> tuple[tuple[str, ...],
                                                                      tuple[str, ...]]:
    def values(obj: ManagedObject) -> dict[str, list[object]]:
        found: dict[str, list[object]] = {}
        for attribute in obj.attributes:
            found.setdefault(attribute.name, []).append(attribute.value)
        return found

    was, now = values(old), values(new)
    changed = [name for name in now if was.get(name) != now[name]]
    if old.state != new.state and "State" not in changed:
        changed.append("State")
    deleted = [name for name in was if name not in now]
    return tuple(changed), tuple(deleted)


class Notifier:
    """Sends Notify and Put from the leader; see the module docstring."""

    def __init__(
        self,
        endpoints: NotifyState,
        backend: Backend,
        is_leader: Callable[[], bool],
        client_context: Callable[[], ssl.SSLContext],
    ) -> None:
        self._endpoints = endpoints
        self._backend = backend
        self._is_leader = is_leader
        self._client_context = client_context
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[ObjectChange] = asyncio.Queue(QUEUE_LIMIT)
        self._overflowing = False

        # For metrics and tests.
        self.sent = 0
        self.failed = 0

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def observe(self, changes: Sequence[ObjectChange]) -> None:
        """Called on the Raft thread after each apply; hands the changes to the loop."""
        loop = self._loop
        if loop is not None and changes:
            loop.call_soon_threadsafe(self._enqueue, tuple(changes))

    def _enqueue(self, changes: tuple[ObjectChange, ...]) -> None:
        for change in changes:
            try:
                self._queue.put_nowait(change)
            except asyncio.QueueFull:
                if not self._overflowing:
                    self._overflowing = True
                    log.warning("notify_queue_full limit=%d scope=%s", QUEUE_LIMIT,
                                change.scope)
                return
        if self._queue.qsize() < QUEUE_LIMIT // 2:
            self._overflowing = False

    async def run(self) -> None:
        """Send changes as they come, until cancelled."""
        self._loop = asyncio.get_running_loop()
        while True:
            change = await self._queue.get()
            if not self._is_leader():
                continue
            for endpoint in self._endpoints.endpoints(change.scope):
                try:
                    await self._send(change, endpoint)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # a bug here must not stop the next change
                    self.failed += 1
                    log.error("notify_failed endpoint=%s error=%s", endpoint.name,
                              type(error).__name__)

    async def _send(self, change: ObjectChange, endpoint: NotifyEndpoint) -> None:
        # First the message, read from the store as it is now.
        try:
            message = await self.message(change, endpoint.version)
        except KmipError as error:
            log.info("notify_skipped scope=%s endpoint=%s uid=%s reason=%s", change.scope,
                     endpoint.name, change.uid, error.reason.name)
            return
        operation = message.batch_items[0].operation
        data = encode_message(message)

        # Then the delivery, with retries, while this node still leads.
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await asyncio.wait_for(self._deliver(endpoint, data), DELIVERY_TIMEOUT)
            except (OSError, TimeoutError, ssl.SSLError, KmipError) as error:
                self.failed += 1
                log.warning("notify_delivery_failed endpoint=%s address=%s operation=%s "
                            "uid=%s attempt=%d error=%s", endpoint.name, endpoint.address,
                            _name(operation), change.uid, attempt, _reason(error))
                if attempt < ATTEMPTS and self._is_leader():
                    await asyncio.sleep(RETRY_PAUSES[attempt - 1])
                    continue
                return
            self.sent += 1
            log.debug("notify_sent endpoint=%s operation=%s uid=%s", endpoint.name,
                      _name(operation), change.uid)
            return

    async def message(self, change: ObjectChange, version: tuple[int, int]) -> RequestMessage:
        """The Notify or Put request for ``change``, in ``version``."""
        ctx = Context(self._backend, change.scope, version)
        payload: NotifyRequestPayload | PutRequestPayload
        if change.kind is ChangeKind.ATTRIBUTES:
            operation, payload = Operation.NOTIFY, await self._notify(ctx, change)
        else:
            got = await get(ctx, GetRequestPayload(unique_identifier=change.uid))
            replacing = change.kind is ChangeKind.REPLACE
            operation, payload = Operation.PUT, PutRequestPayload(
                unique_identifier=change.uid,
                put_function=PutFunction.REPLACE if replacing else PutFunction.NEW,
                replaced_unique_identifier=change.replaced if replacing else None,
                object=got.object,
            )
        header = RequestHeader(
            protocol_version=ProtocolVersion(major=version[0], minor=version[1]),
            batch_count=1)
        return RequestMessage(header=header, batch_items=(
            RequestBatchItem(operation=operation, payload=payload),))

    async def _notify(self, ctx: Context, change: ObjectChange) -> NotifyRequestPayload:
        # Asking for no names would return every attribute: only when some changed.
        current = None
        if change.changed:
            current = await get_attributes(ctx, GetAttributesRequestPayload(
                unique_identifier=change.uid, attribute_names=change.changed))
        if ctx.is_v1:
            # A deleted attribute is its name without a value (KMIP 1.4 section 5.1).
            gone = tuple(Attribute(name=name) for name in change.deleted)
            present = current.attribute_list if current is not None else ()
            return NotifyRequestPayload(unique_identifier=change.uid,
                                        attribute_list=present + gone)
        # Shortcoming: 2.x names deleted attributes by Attribute Reference, which this
        # payload model does not carry yet; a 2.x endpoint hears only of changed ones.
        return NotifyRequestPayload(unique_identifier=change.uid,
                                    attributes=current.attributes if current else None)

    async def _deliver(self, endpoint: NotifyEndpoint, data: bytes) -> None:
        reader, writer = await asyncio.open_connection(
            endpoint.host, endpoint.port, ssl=self._client_context(),
            server_hostname=endpoint.host)
        try:
            writer.write(data)
            await writer.drain()
            frames = FrameReader(DEFAULT_LIMITS)
            while (frame := frames.next_frame()) is NEED_DATA:
                chunk = await reader.read(65536)
                if not chunk:
                    raise ConnectionError("the endpoint closed the connection unanswered")
                frames.feed(chunk)
            assert isinstance(frame, bytes)
            answer = decode_message(frame)
        finally:
            writer.close()
        if not isinstance(answer, ResponseMessage) or not answer.batch_items:
            raise ConnectionError("the endpoint answered with no response batch item")
        item = answer.batch_items[0]
        if item.result_status != ResultStatus.SUCCESS:
            raise ConnectionError(f"the endpoint answered {_name(item.result_status)}")


def client_context(ca_file: str, cluster_ca_pem: bytes | None, cert_file: str,
                   key_file: str) -> ssl.SSLContext:
    """How a node reaches an endpoint: its configured certificate, the CAs it trusts."""
    context = ssl.create_default_context(cafile=ca_file)
    if cluster_ca_pem is not None:
        context.load_verify_locations(cadata=cluster_ca_pem.decode("ascii"))
    context.load_cert_chain(cert_file, key_file)
    return context


def _name(value: object) -> str:
    return getattr(value, "name", str(value))


def _reason(error: BaseException) -> str:
    if isinstance(error, KmipError):
        return error.reason.name
    detail = getattr(error, "reason", None) or getattr(error, "strerror", None)
    return f"{type(error).__name__}:{detail}" if detail else type(error).__name__
