"""One request message in, one response message out: batches, versions, errors.

The front end hands this module whole frames; it decodes them, runs each batch item
through its operation handler in order, and encodes the answer. Batch semantics
follow KMIP 1.4 section 6 and 2.1 section 8:

- every response item echoes the Operation and the Unique Batch Item ID;
- Batch Error Continuation Option: Stop (the default) answers up to the first
  failed item, Continue runs every item, Undo also rolls back what the items
  before the failed one wrote (kmip/operations/undo.py) and answers them
  Operation Undone;
- items run in order, so Batch Order Option is always honoured;
- the ID Placeholder carries an identifier from one item to the next.

A 1.x client only ever receives Result Reasons its version defines: handlers speak
2.x's finer reasons and ``reason_for`` folds them onto 1.x's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from keyquorum.cluster.state import DEFAULT_SCOPE, ScopeName

from .audit import AuditUnavailable, KmipAudit
from .authorization import ALL_OPERATIONS, Grant
from .errors import KmipError, invalid_message
from .frontend import ClientIdentity
from .limits import DEFAULT_LIMITS, Limits
from .messages import (
    RequestBatchItem,
    RequestMessage,
    ResponseBatchItem,
    ResponseHeader,
    ResponseMessage,
    decode_message,
    encode_message,
)
from .operations import HANDLERS, SUPPORTED_VERSIONS, WRITES, Backend, Context, undo
from .payloads import ProtocolVersion, UnknownPayload
from .tables import (
    VALUE_SINCE,
    BatchErrorContinuationOption,
    Operation,
    ResultReason,
    ResultStatus,
)

log = logging.getLogger("keyquorum.kmip")

# 2.x reasons and the 1.x reason a 1.x client gets instead (KMIP 1.4 has 0x01-0x18).
_V1_REASONS = {
    ResultReason.OBJECT_NOT_FOUND: ResultReason.ITEM_NOT_FOUND,
    ResultReason.OBJECT_DESTROYED: ResultReason.ITEM_NOT_FOUND,
    ResultReason.ATTRIBUTE_NOT_FOUND: ResultReason.ITEM_NOT_FOUND,
    ResultReason.ATTRIBUTE_INSTANCE_NOT_FOUND: ResultReason.ITEM_NOT_FOUND,
    ResultReason.WRONG_KEY_LIFECYCLE_STATE: ResultReason.PERMISSION_DENIED,
    ResultReason.ATTRIBUTE_READ_ONLY: ResultReason.PERMISSION_DENIED,
    ResultReason.READ_ONLY_ATTRIBUTE: ResultReason.PERMISSION_DENIED,
    ResultReason.NOT_AUTHORISED: ResultReason.PERMISSION_DENIED,
    ResultReason.ATTRIBUTE_SINGLE_VALUED: ResultReason.INDEX_OUT_OF_BOUNDS,
    ResultReason.MULTI_VALUED_ATTRIBUTE: ResultReason.INDEX_OUT_OF_BOUNDS,
    ResultReason.NON_UNIQUE_NAME_ATTRIBUTE: ResultReason.ILLEGAL_OPERATION,
    ResultReason.INVALID_OBJECT_TYPE: ResultReason.INVALID_FIELD,
    ResultReason.ILLEGAL_OBJECT_TYPE: ResultReason.INVALID_FIELD,
    ResultReason.UNSUPPORTED_ATTRIBUTE: ResultReason.INVALID_FIELD,
    ResultReason.INVALID_ATTRIBUTE: ResultReason.INVALID_FIELD,
    ResultReason.INVALID_ATTRIBUTE_VALUE: ResultReason.INVALID_FIELD,
    ResultReason.UNSUPPORTED_PROTOCOL_VERSION: ResultReason.INVALID_MESSAGE,
}


def reason_for(version: tuple[int, int], reason: ResultReason) -> ResultReason:
    """The reason a client of ``version`` receives for ``reason``."""
    if version[0] >= 2 or VALUE_SINCE[ResultReason].get(int(reason), (1, 0)) <= version:
        return reason
    return _V1_REASONS.get(reason, ResultReason.GENERAL_FAILURE)


def negotiated(requested: tuple[int, int]) -> tuple[int, int] | None:
    """The version to answer in: the request's, or the newest of ours below it."""
    candidates = [v for v in SUPPORTED_VERSIONS if v[0] == requested[0] and v <= requested]
    return max(candidates) if candidates else None


def _scope_of_everyone(_: ClientIdentity) -> ScopeName:
    return DEFAULT_SCOPE


ALLOWED_ALL = frozenset({ALL_OPERATIONS})

# (operation, result status, result reason, seconds) of one answered batch item.
ItemObserver = Callable[[object, object, object, float], None]


class KmipService:
    """The front end's request handler: frames in, frames out."""

    def __init__(
        self,
        backend: Backend,
        limits: Limits = DEFAULT_LIMITS,
        scope_of: Callable[[ClientIdentity], ScopeName] = _scope_of_everyone,
        grant_of: Callable[[ClientIdentity], Grant | None] | None = None,
        audit: KmipAudit | None = None,
        observe: ItemObserver | None = None,
    ) -> None:
        self._backend = backend
        # Told of every answered item (cluster/metrics.py); must be cheap and not raise.
        self._observe = observe
        self._limits = limits
        self._audit = audit or KmipAudit()
        # With grant_of (the node), each message runs under the client's grant: its
        # scope and its role's operations. Without it, every operation is allowed
        # in scope_of's scope (tests of the service alone).
        self._grant_of = grant_of or (lambda client: Grant(scope_of(client), ALLOWED_ALL))

    async def handle(self, frame: bytes, client: ClientIdentity) -> bytes:
        try:
            message = decode_message(frame, self._limits)
            if not isinstance(message, RequestMessage):
                raise invalid_message("expected a Request Message")
        except KmipError as error:
            log.info("request_refused peer=%s reason=%s", client.address, error.reason.name)
            return self.error_response(error)

        return encode_message(await self.answer(message, client))

    async def answer(self, message: RequestMessage, client: ClientIdentity) -> ResponseMessage:
        """The response to a decoded request, within its Maximum Response Size.

        The size is that of the TTLV encoding whatever encoding carries the message
        (kmip/https.py answers in XML and JSON too): TTLV is the one every KMIP
        encoding maps onto, and the MSGENC test cases expect the same refusal in each.
        """
        response = await self.process(message, client)
        limit = message.header.maximum_response_size
        if limit is not None:
            size = len(encode_message(response))
            if size > limit:
                return _too_large(response, size, limit)
        return response

    def error_response(self, error: KmipError) -> bytes:
        """The answer to a message that could not be decoded at all."""
        return encode_message(self.error_message(error))

    def error_message(self, error: KmipError) -> ResponseMessage:
        """``error_response`` before encoding, for the XML and JSON encodings."""
        # The request's version is unknown; 1.0 is the one every client reads.
        item = _failure(None, None, (1, 0), error)
        return _response((1, 0), (item,))

    async def process(self, message: RequestMessage, client: ClientIdentity) -> ResponseMessage:
        header = message.header
        requested = (header.protocol_version.major, header.protocol_version.minor)
        version = negotiated(requested)
        items = message.batch_items

        # First, refuse what no item of the message can be run under.
        refusal: KmipError | None = None
        if version is None:
            version = (1, 0) if requested[0] < 2 else SUPPORTED_VERSIONS[0]
            refusal = KmipError(ResultReason.UNSUPPORTED_PROTOCOL_VERSION,
                                f"protocol version {requested[0]}.{requested[1]} is not supported")
        elif header.batch_count != len(items) or not items:
            refusal = invalid_message(
                f"Batch Count is {header.batch_count} but the message holds {len(items)} items")
        option = header.batch_error_continuation_option or BatchErrorContinuationOption.STOP
        if refusal is not None:
            failed = tuple(_failure(i.operation, i.unique_batch_item_id, version, refusal)
                           for i in items) or (_failure(None, None, version, refusal),)
            await self._audit_refused(client, None, version, items, failed)
            return _response(version, failed)

        # Who is asking is looked up per message, not per connection, so a role
        # changed or a credential revoked since the handshake applies at once.
        grant = self._grant_of(client)
        if grant is None:
            denied = KmipError(ResultReason.PERMISSION_DENIED,
                               "the client certificate is no longer a valid credential")
            failed = tuple(_failure(i.operation, i.unique_batch_item_id, version, denied)
                           for i in items)
            await self._audit_refused(client, None, version, items, failed)
            return _response(version, failed)

        # Then run the items in order, sharing one context for the ID Placeholder.
        ctx = Context(self._backend, grant.scope, version)
        undoable = option == BatchErrorContinuationOption.UNDO and any(
            item.operation in WRITES for item in items)
        before = await undo.snapshot(ctx) if undoable else {}
        answered: list[ResponseBatchItem] = []
        for item in items:
            started = time.perf_counter()
            answer = await self._run(ctx, item, client, grant)
            if self._observe is not None:
                self._observe(item.operation, answer.result_status, answer.result_reason,
                              time.perf_counter() - started)
            answered.append(answer)
            failed_item = answer.result_status != ResultStatus.SUCCESS
            if failed_item and undoable:
                answered = await self._undo(ctx, before, items, answered)
            if failed_item and option != BatchErrorContinuationOption.CONTINUE:
                break
        return _response(version, tuple(answered), header.client_correlation_value)

    async def _run(
        self, ctx: Context, item: RequestBatchItem, client: ClientIdentity, grant: Grant
    ) -> ResponseBatchItem:
        # Fail closed: an item the audit trail cannot record is not run, and an answer
        # it cannot record is not given (cluster/audit.py).
        try:
            entry = await self._audit.request(client, grant, ctx.version, item)
        except AuditUnavailable as error:
            return _failure(item.operation, item.unique_batch_item_id, ctx.version,
                            _unaudited(error))
        answer = await self._execute(ctx, item, client, grant)
        if entry is None:
            return answer
        try:
            await entry.response(answer)
        except AuditUnavailable as error:
            return _failure(item.operation, item.unique_batch_item_id, ctx.version,
                            _unaudited(error))
        return answer

    async def _audit_refused(
        self,
        client: ClientIdentity,
        grant: Grant | None,
        version: tuple[int, int],
        items: tuple[RequestBatchItem, ...],
        answers: tuple[ResponseBatchItem, ...],
    ) -> None:
        # Items refused before any could run are recorded too (a revoked credential
        # knocking is what an auditor looks for); they fail whether or not it works.
        try:
            for item, answer in zip(items, answers, strict=False):
                entry = await self._audit.request(client, grant, version, item)
                if entry is not None:
                    await entry.response(answer)
        except AuditUnavailable:
            pass

    async def _execute(
        self, ctx: Context, item: RequestBatchItem, client: ClientIdentity, grant: Grant
    ) -> ResponseBatchItem:
        started = time.perf_counter()
        operation = item.operation
        handler = HANDLERS.get(operation)  # type: ignore[call-overload]
        try:
            if handler is None or isinstance(item.payload, UnknownPayload):
                raise KmipError(ResultReason.OPERATION_NOT_SUPPORTED,
                                f"operation {operation} is not supported")
            if not grant.permits(operation):
                raise KmipError(ResultReason.PERMISSION_DENIED,
                                f"the client's role does not allow {_name(operation)}")
            if item.payload is None:
                raise KmipError(ResultReason.INVALID_FIELD, "the batch item has no payload")
            payload = await handler(ctx, item.payload)
        except KmipError as error:
            log.debug("operation_failed peer=%s operation=%s reason=%s",
                      client.address, _name(operation), error.reason.name)
            return _failure(operation, item.unique_batch_item_id, ctx.version, error)
        except Exception as error:  # a bug: the client gets a failure, never a traceback
            log.exception("operation_crashed operation=%s error=%s",
                          _name(operation), type(error).__name__)
            crash = KmipError(ResultReason.GENERAL_FAILURE, "internal error")
            return _failure(operation, item.unique_batch_item_id, ctx.version, crash)

        log.debug("operation_done peer=%s operation=%s ms=%.2f", client.address,
                  _name(operation), (time.perf_counter() - started) * 1000)
        return ResponseBatchItem(
            operation=operation,
            unique_batch_item_id=item.unique_batch_item_id,
            result_status=ResultStatus.SUCCESS,
            payload=payload,
        )

    async def _undo(
        self, ctx: Context, before: undo.Snapshot, items: tuple[RequestBatchItem, ...],
        answered: list[ResponseBatchItem],
    ) -> list[ResponseBatchItem]:
        """The answers once the items before the failed one are rolled back."""
        touched = [uid for item, answer in zip(items, answered, strict=False)
                   for uid in undo.identifiers(item.payload) + undo.identifiers(answer.payload)]
        touched += ctx.written
        try:
            await undo.roll_back(ctx, before, touched)
        except KmipError as error:
            log.warning("undo_refused reason=%s", error.reason.name)
            return answered
        return [replace(answer, result_status=ResultStatus.OPERATION_UNDONE)
                if answer.result_status == ResultStatus.SUCCESS else answer
                for answer in answered]


def _unaudited(error: AuditUnavailable) -> KmipError:
    return KmipError(ResultReason.GENERAL_FAILURE,
                     f"refused: the audit log cannot record this request ({error})")


def _name(operation: object) -> str:
    return operation.name if isinstance(operation, Operation) else str(operation)


def _failure(
    operation: Operation | int | None,
    batch_id: bytes | None,
    version: tuple[int, int],
    error: KmipError,
) -> ResponseBatchItem:
    return ResponseBatchItem(
        operation=operation,
        unique_batch_item_id=batch_id,
        result_status=error.status,
        result_reason=reason_for(version, error.reason),
        result_message=error.message,
    )


def _response(
    version: tuple[int, int],
    items: tuple[ResponseBatchItem, ...],
    client_correlation_value: str | None = None,
) -> ResponseMessage:
    header = ResponseHeader(
        protocol_version=ProtocolVersion(major=version[0], minor=version[1]),
        time_stamp=datetime.fromtimestamp(int(time.time()), UTC),
        client_correlation_value=client_correlation_value if version >= (1, 4) else None,
        batch_count=len(items),
    )
    return ResponseMessage(header=header, batch_items=items)


def _too_large(response: ResponseMessage, size: int, limit: int) -> ResponseMessage:
    version = (response.header.protocol_version.major, response.header.protocol_version.minor)
    error = KmipError(ResultReason.RESPONSE_TOO_LARGE,
                      f"the response of {size} bytes exceeds Maximum Response Size {limit}")
    items = tuple(_failure(i.operation, i.unique_batch_item_id, version, error)
                  for i in response.batch_items)
    return ResponseMessage(header=response.header, batch_items=items)
