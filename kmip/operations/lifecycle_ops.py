"""Archive, Recover, Obtain Lease and Get Usage Allocation.

Archive and Recover change state through the log (cluster/state.py explains what
archiving means in a replicated in-memory store). Obtain Lease reads: this server
keeps no per-client lease, so it answers the object's Lease Time attribute, the
interval after which a client must ask again. Get Usage Allocation spends the
requested count of the object's Usage Limits through the log, as Encrypt does.
"""

from __future__ import annotations

from datetime import UTC, datetime

from keyquorum.cluster.state import Archive, ConsumeUsage, ManagedObject, Recover
from keyquorum.cluster.state import UniqueIdentifier as ObjectId

from ..errors import KmipError, invalid_field
from ..payloads import (
    ArchiveRequestPayload,
    ArchiveResponsePayload,
    GetUsageAllocationRequestPayload,
    GetUsageAllocationResponsePayload,
    ObtainLeaseRequestPayload,
    ObtainLeaseResponsePayload,
    RecoverRequestPayload,
    RecoverResponsePayload,
)
from ..tables import ResultReason, State
from .context import Context
from .object_ops import LEASE_SECONDS


async def archive(ctx: Context, payload: ArchiveRequestPayload) -> ArchiveResponsePayload:
    uid = ObjectId(ctx.uid_of(payload.unique_identifier))
    await ctx.write(Archive(ctx.scope, uid, ctx.now()))
    return ArchiveResponsePayload(unique_identifier=uid)


async def recover(ctx: Context, payload: RecoverRequestPayload) -> RecoverResponsePayload:
    uid = ObjectId(ctx.uid_of(payload.unique_identifier))
    await ctx.write(Recover(ctx.scope, uid, ctx.now()))
    return RecoverResponsePayload(unique_identifier=uid)


async def obtain_lease(
    ctx: Context, payload: ObtainLeaseRequestPayload
) -> ObtainLeaseResponsePayload:
    obj = await _usable(ctx, payload.unique_identifier)
    lease = obj.first("Lease Time")
    changed = obj.first("Last Change Date")
    return ObtainLeaseResponsePayload(
        unique_identifier=obj.uid,
        lease_time=LEASE_SECONDS if lease is None else int(lease.value),
        last_change_date=None if changed is None
        else datetime.fromtimestamp(int(changed.value), UTC),
    )


async def get_usage_allocation(
    ctx: Context, payload: GetUsageAllocationRequestPayload
) -> GetUsageAllocationResponsePayload:
    obj = await _usable(ctx, payload.unique_identifier)
    amount = payload.usage_limits_count
    if amount is None or amount <= 0:
        raise invalid_field("Get Usage Allocation needs a positive Usage Limits Count")
    if obj.first("Usage Limits") is None:
        raise KmipError(ResultReason.ITEM_NOT_FOUND,
                        "the object has no Usage Limits to allocate from")

    # The state refuses when the count left is smaller than the allocation.
    await ctx.write(ConsumeUsage(ctx.scope, obj.uid, amount, ctx.now()))
    return GetUsageAllocationResponsePayload(unique_identifier=obj.uid)


async def _usable(ctx: Context, requested: object) -> ManagedObject:
    """An object a client may use now: on line (not archived) and Active."""
    obj = await ctx.read(requested, material=False)
    if obj.first("Archive Date") is not None:
        raise KmipError(ResultReason.OBJECT_ARCHIVED, "the object is archived: Recover it")
    if obj.state != State.ACTIVE:
        raise KmipError(ResultReason.WRONG_KEY_LIFECYCLE_STATE,
                        f"an object in state {obj.state.name} cannot be used")
    return obj
