"""Check, Poll, Cancel, and the 2.x test operations Interop and Log.

This server answers every operation synchronously: it never returns Operation
Pending, so no asynchronous correlation value it could be asked to Poll or Cancel
exists. Poll therefore answers Item Not Found, and Cancel says the operation is
unavailable (KMIP 1.4 sections 4.22 and 4.23), both truthfully.
"""

from __future__ import annotations

import logging

from ..errors import KmipError
from ..payloads import (
    CancelRequestPayload,
    CancelResponsePayload,
    CheckRequestPayload,
    CheckResponsePayload,
    InteropRequestPayload,
    InteropResponsePayload,
    LogRequestPayload,
    LogResponsePayload,
    PollRequestPayload,
    PollResponsePayload,
)
from ..tables import CancellationResult, CryptographicUsageMask, ResultReason, State, Tag
from ..ttlv import Item
from .context import Context

log = logging.getLogger("keyquorum.kmip")

# A client's Log message is written to the node's log, cut to this many characters
# so that one request cannot flood it.
MAX_LOGGED_CHARACTERS = 200


async def check(ctx: Context, payload: CheckRequestPayload) -> CheckResponsePayload:
    """Whether the object could be used as asked (KMIP 1.4 section 4.10)."""
    obj = await ctx.read(payload.unique_identifier)
    wanted = payload.cryptographic_usage_mask
    if wanted is not None:
        mask = obj.first("Cryptographic Usage Mask")
        if mask is None or wanted & ~int(mask.value):
            raise KmipError(ResultReason.INCOMPATIBLE_CRYPTOGRAPHIC_USAGE_MASK,
                            f"the usage mask does not allow {CryptographicUsageMask(wanted)!r}")
    if obj.state in (State.DESTROYED, State.DESTROYED_COMPROMISED):
        raise KmipError(ResultReason.OBJECT_DESTROYED, "the object was destroyed")

    # A count must be left in the Usage Limits (Check spends nothing; Get Usage
    # Allocation does), and a lease must not outlast the object's Lease Time (the
    # one Obtain Lease grants). An object without Usage Limits is not limited.
    left = _usage_left(obj.first("Usage Limits"))
    if payload.usage_limits_count is not None and left is not None \
            and payload.usage_limits_count > left:
        raise KmipError(ResultReason.PERMISSION_DENIED,
                        f"only {left} of the key's Usage Limits are left")
    lease = obj.first("Lease Time")
    if payload.lease_time is not None and lease is not None and payload.lease_time > lease.value:
        raise KmipError(ResultReason.PERMISSION_DENIED,
                        f"the object's lease is {lease.value} seconds")
    # A passed check answers with the identifier alone.
    return CheckResponsePayload(unique_identifier=obj.uid)


def _usage_left(limits: Item | None) -> int | None:
    if limits is None:
        return None
    fields = {item.tag: item.value for item in limits.value}
    left = fields.get(Tag.USAGE_LIMITS_COUNT, fields.get(Tag.USAGE_LIMITS_TOTAL))
    return None if left is None else int(left)


async def poll(ctx: Context, payload: PollRequestPayload) -> PollResponsePayload:
    raise KmipError(ResultReason.ITEM_NOT_FOUND,
                    "no asynchronous operation has that correlation value: "
                    "this server answers every operation at once")


async def cancel(ctx: Context, payload: CancelRequestPayload) -> CancelResponsePayload:
    return CancelResponsePayload(
        asynchronous_correlation_value=payload.asynchronous_correlation_value,
        cancellation_result=CancellationResult.UNAVAILABLE,
    )


async def interop(ctx: Context, payload: InteropRequestPayload) -> InteropResponsePayload:
    # The interop test functions (KMIP 2.1 section 6.1.24) mark test boundaries for
    # the server's log; this server keeps no per-test state to begin, end or reset.
    log.info("interop function=%s identifier=%s", payload.interop_function,
             (payload.interop_identifier or "")[:MAX_LOGGED_CHARACTERS])
    return InteropResponsePayload()


async def log_message(ctx: Context, payload: LogRequestPayload) -> LogResponsePayload:
    log.info("client_log scope=%s message=%r", ctx.scope,
             payload.log_message[:MAX_LOGGED_CHARACTERS])
    return LogResponsePayload()
