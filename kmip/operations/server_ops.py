"""Discover Versions and Query: what this server speaks and offers."""

from __future__ import annotations

from ..payloads import (
    DiscoverVersionsRequestPayload,
    DiscoverVersionsResponsePayload,
    ProtocolVersion,
    QueryRequestPayload,
    QueryResponsePayload,
)
from ..tables import ObjectType, Operation, QueryFunction
from .context import Context

# Newest first: a client that sends no list takes the first it also speaks.
SUPPORTED_VERSIONS: tuple[tuple[int, int], ...] = (
    (2, 1), (2, 0), (1, 4), (1, 3), (1, 2), (1, 1), (1, 0),
)

VENDOR_IDENTIFICATION = "keyquorum"

# Object types this server stores; Templates (deprecated in 1.3) are not among them.
OBJECT_TYPES = (
    ObjectType.SYMMETRIC_KEY,
    ObjectType.SECRET_DATA,
    ObjectType.OPAQUE_OBJECT,
    ObjectType.CERTIFICATE,
    ObjectType.PUBLIC_KEY,
    ObjectType.PRIVATE_KEY,
    ObjectType.SPLIT_KEY,
    ObjectType.PGP_KEY,
)


async def discover_versions(
    ctx: Context, payload: DiscoverVersionsRequestPayload
) -> DiscoverVersionsResponsePayload:
    # With a list, answer the versions of it this server speaks, in the client's
    # order of preference (KMIP 1.4 section 4.26); without one, all of ours.
    if payload.protocol_versions:
        offered = [(v.major, v.minor) for v in payload.protocol_versions]
        versions = [v for v in offered if v in SUPPORTED_VERSIONS]
    else:
        versions = list(SUPPORTED_VERSIONS)
    return DiscoverVersionsResponsePayload(
        protocol_versions=tuple(ProtocolVersion(major=a, minor=b) for a, b in versions)
    )


async def query(ctx: Context, payload: QueryRequestPayload) -> QueryResponsePayload:
    from . import HANDLERS  # the registry imports this module

    functions = set(payload.query_functions)
    operations: tuple[Operation, ...] = ()
    object_types: tuple[ObjectType, ...] = ()
    vendor = None
    if QueryFunction.QUERY_OPERATIONS in functions:
        operations = tuple(op for op in HANDLERS if _known_in(op, ctx.version))
    if QueryFunction.QUERY_OBJECTS in functions:
        object_types = OBJECT_TYPES if not ctx.is_v1 else tuple(
            t for t in OBJECT_TYPES if t != ObjectType.PGP_KEY or ctx.version >= (1, 2)
        )
    if QueryFunction.QUERY_SERVER_INFORMATION in functions:
        vendor = VENDOR_IDENTIFICATION
    return QueryResponsePayload(
        operations=operations, object_types=object_types, vendor_identification=vendor
    )


def _known_in(operation: Operation, version: tuple[int, int]) -> bool:
    from ..tables import VALUE_SINCE

    return VALUE_SINCE[Operation].get(int(operation), (1, 0)) <= version
