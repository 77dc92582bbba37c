"""Discover Versions and Query: what this server speaks and offers."""

from __future__ import annotations

import importlib.metadata
from enum import IntEnum
from typing import Any

from ..attributes import Attribute, attribute_to_v2
from ..payloads import (
    CapabilityInformation,
    DiscoverVersionsRequestPayload,
    DiscoverVersionsResponsePayload,
    ProfileInformation,
    ProfileVersion,
    ProtectionStorageMasks,
    ProtocolVersion,
    QueryRequestPayload,
    QueryResponsePayload,
    RNGParameters,
)
from ..tables import (
    VALUE_SINCE,
    ClientRegistrationMethod,
    DestroyAction,
    ObjectType,
    Operation,
    ProfileName,
    ProtectionStorageMask,
    QueryFunction,
    RNGAlgorithm,
    RNGMode,
    ShreddingAlgorithm,
    Tag,
)
from ..ttlv import Item, ItemType
from .context import Context

# Newest first: a client that sends no list takes the first it also speaks.
SUPPORTED_VERSIONS: tuple[tuple[int, int], ...] = (
    (2, 1), (2, 0), (1, 4), (1, 3), (1, 2), (1, 1), (1, 0),
)

VENDOR_IDENTIFICATION = "keyquorum"

# Object types this server stores. Templates, removed in 2.0, only for 1.x clients
# (kmip/operations/templates.py).
OBJECT_TYPES = (
    ObjectType.SYMMETRIC_KEY,
    ObjectType.SECRET_DATA,
    ObjectType.OPAQUE_OBJECT,
    ObjectType.CERTIFICATE,
    ObjectType.PUBLIC_KEY,
    ObjectType.PRIVATE_KEY,
    ObjectType.SPLIT_KEY,
    ObjectType.PGP_KEY,
    # KMIP 2.x only: Register keeps a certificate request as an object.
    ObjectType.CERTIFICATE_REQUEST,
)
V1_OBJECT_TYPES = OBJECT_TYPES + (ObjectType.TEMPLATE,)


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
    """What this server offers, each answer drawn from what it really does.

    A Query Function the client's version does not define is ignored, as is one
    this server has nothing to answer for (attestation types, validations): an
    empty list is the truthful answer.
    """
    functions = {f for f in payload.query_functions if _known_in(QueryFunction, f, ctx.version)}
    answer: dict[str, Any] = {}
    if QueryFunction.QUERY_OPERATIONS in functions:
        answer["operations"] = offered_operations(ctx.version)
    if QueryFunction.QUERY_OBJECTS in functions:
        answer["object_types"] = tuple(
            t for t in (V1_OBJECT_TYPES if ctx.is_v1 else OBJECT_TYPES)
            if _known_in(ObjectType, t, ctx.version))
    if QueryFunction.QUERY_SERVER_INFORMATION in functions:
        answer["vendor_identification"] = VENDOR_IDENTIFICATION
        answer["server_information"] = _server_information(ctx.version)
    if QueryFunction.QUERY_RNGS in functions:
        answer["rng_parameters"] = (RNG_PARAMETERS,)
    if QueryFunction.QUERY_PROFILES in functions:
        answer["profile_information"] = profiles(ctx.version)
    if QueryFunction.QUERY_CAPABILITIES in functions:
        answer["capability_information"] = (CAPABILITIES,)
    if QueryFunction.QUERY_CLIENT_REGISTRATION_METHODS in functions:
        answer["client_registration_methods"] = CLIENT_REGISTRATION_METHODS
    if QueryFunction.QUERY_DEFAULTS_INFORMATION in functions:
        answer["defaults_information"] = _defaults_information()
    if QueryFunction.QUERY_STORAGE_PROTECTION_MASKS in functions:
        answer["protection_storage_masks"] = ProtectionStorageMasks(
            masks=(int(ProtectionStorageMask.SOFTWARE),))
    # Application namespaces, extensions, attestation types and validations: none.
    # This server fills in no Application Specific Information namespace, defines no
    # extension tags, verifies no attestation and holds no FIPS 140 or Common
    # Criteria validation, so the empty answer is the true one.
    return QueryResponsePayload(**answer)


def offered_operations(version: tuple[int, int]) -> tuple[Operation, ...]:
    """The operations a client of ``version`` may ask for, in the spec's order.

    The client-to-server ones are exactly those with a registered handler; the
    server-to-client ones (Notify, Put) are those cluster/notify.py sends.
    """
    from . import HANDLERS  # the registry imports this module

    offered = set(HANDLERS) | SERVER_TO_CLIENT_OPERATIONS
    return tuple(sorted(op for op in offered if _known_in(Operation, op, version)))


# Notify and Put, which the leader sends to the endpoints an operator registers for
# a scope (cluster/notify.py). They are offered whether or not an endpoint is
# registered: Query describes what the server can do, and registering an endpoint
# is an operator's choice a client cannot make over KMIP.
SERVER_TO_CLIENT_OPERATIONS = frozenset({Operation.NOTIFY, Operation.PUT})


# The profiles whose every mandatory OASIS test case passes through a cluster, as
# measured by `make conformance` and listed in docs/conformance.md. Keep the two
# in step: a claim here is a promise a client may rely on.
_PROFILES_V1_4 = (
    ProfileName.BASELINE_SERVER_TLS_V1_2_KMIP_V1_4,
    ProfileName.SYMMETRIC_KEY_LIFECYCLE_SERVER_KMIP_V1_4,
    ProfileName.ASYMMETRIC_KEY_LIFECYCLE_SERVER_KMIP_V1_4,
    ProfileName.BASIC_CRYPTOGRAPHIC_SERVER_KMIP_V1_4,
    ProfileName.ADVANCED_CRYPTOGRAPHIC_SERVER_KMIP_V1_4,
    ProfileName.RNG_CRYPTOGRAPHIC_SERVER_KMIP_V1_4,
    ProfileName.SYMMETRIC_KEY_FOUNDRY_SERVER_KMIP_V1_4,
    ProfileName.OPAQUE_MANAGED_OBJECT_STORE_SERVER_KMIP_V1_4,
)
# The same profiles as KMIP 1.3 names them (a 1.3 client knows no 1.4 value).
_PROFILES_V1_3 = (
    ProfileName.BASELINE_SERVER_TLS_V1_2_KMIP_V1_3,
    ProfileName.SYMMETRIC_KEY_LIFECYCLE_SERVER_KMIP_V1_3,
    ProfileName.ASYMMETRIC_KEY_LIFECYCLE_SERVER_KMIP_V1_3,
    ProfileName.BASIC_CRYPTOGRAPHIC_SERVER_KMIP_V1_3,
    ProfileName.ADVANCED_CRYPTOGRAPHIC_SERVER_KMIP_V1_3,
    ProfileName.RNG_CRYPTOGRAPHIC_SERVER_KMIP_V1_3,
    ProfileName.SYMMETRIC_KEY_FOUNDRY_SERVER_KMIP_V1_3,
    ProfileName.OPAQUE_MANAGED_OBJECT_STORE_SERVER_KMIP_V1_3,
)
# KMIP 2.x names profiles without a version and carries it in Profile Version.
_PROFILES_V2 = (
    ProfileName.BASELINE_SERVER,
    ProfileName.SYMMETRIC_KEY_LIFECYCLE_SERVER,
    ProfileName.ASYMMETRIC_KEY_LIFECYCLE_SERVER,
    ProfileName.BASIC_CRYPTOGRAPHIC_SERVER,
    ProfileName.ADVANCED_CRYPTOGRAPHIC_SERVER,
    ProfileName.RNG_CRYPTOGRAPHIC_SERVER,
    ProfileName.SYMMETRIC_KEY_FOUNDRY_SERVER,
    ProfileName.OPAQUE_MANAGED_OBJECT_STORE_SERVER,
)


def profiles(version: tuple[int, int]) -> tuple[ProfileInformation, ...]:
    """The conformance profiles claimed to a client of ``version``."""
    if version >= (2, 0):
        # The 2.1 suites are the ones run; 2.0's profiles ask the same of a server.
        profile_version = ProfileVersion(major=version[0], minor=version[1])
        return tuple(ProfileInformation(profile_name=name, profile_version=profile_version)
                     for name in _PROFILES_V2)
    names = _PROFILES_V1_4 if version >= (1, 4) else _PROFILES_V1_3
    return tuple(ProfileInformation(profile_name=name) for name in names)


# Random bytes come from the operating system's CSPRNG (os.urandom, getrandom(2)),
# the generator object_ops records as a DRBG on every key it generates; which DRBG
# construction the kernel uses is not one KMIP names, so DRBG Algorithm is left out.
RNG_PARAMETERS = RNGParameters(rng_algorithm=RNGAlgorithm.DRBG)

CAPABILITIES = CapabilityInformation(
    # Multi-part Encrypt, Decrypt, Sign, MAC with Init and Final Indicators.
    streaming_capability=True,
    # Every operation is answered at once; Poll finds nothing (session_ops.py).
    asynchronous_capability=False,
    attestation_capability=False,
    # Batch Error Continuation Option Undo and Continue (kmip/service.py).
    batch_undo_capability=True,
    batch_continue_capability=True,
    # Destroy deletes the key material and keeps the metadata (cluster/state.py);
    # nothing is overwritten in place: Raft log entries and snapshots written before
    # the Destroy keep the sealed material until compaction drops them.
    destroy_action=DestroyAction.KEY_MATERIAL_DELETED,
    shredding_algorithm=ShreddingAlgorithm.UNSUPPORTED,
    # One generator, the kernel's, serves every client.
    rng_mode=RNGMode.SHARED_INSTANTIATION,
    quantum_safe_capability=False,
)

# Client credentials are made outside KMIP, through the admin API: generated by the
# server (credential/generate) or signed from the client's own key (credential/sign).
CLIENT_REGISTRATION_METHODS = (
    int(ClientRegistrationMethod.SERVER_PRE_GENERATED),
    int(ClientRegistrationMethod.CLIENT_GENERATED),
)


def _server_information(version: tuple[int, int]) -> Item:
    # Its content is the vendor's (KMIP 1.4 section 4.25); 2.0 names the fields
    # below, and a 1.x client gets the empty structure rather than tags it lacks.
    if version < (2, 0):
        return Item(Tag.SERVER_INFORMATION, ItemType.STRUCTURE, [])
    return Item(Tag.SERVER_INFORMATION, ItemType.STRUCTURE, [
        Item(Tag.SERVER_VERSION, ItemType.TEXT_STRING, _server_version()),
        Item(Tag.PRODUCT_NAME, ItemType.TEXT_STRING, VENDOR_IDENTIFICATION),
    ])


def _server_version() -> str:
    try:
        return importlib.metadata.version("keyquorum")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _defaults_information() -> Item:
    """What Create and Register set on an object when the client does not (2.x)."""
    from .object_ops import _protection_defaults  # the attributes it really sets

    attributes = Item(Tag.ATTRIBUTES, ItemType.STRUCTURE, [
        attribute_to_v2(Attribute(name=stored.name, value=stored.value))
        for stored in _protection_defaults({})
        if not stored.name.startswith(("Always ", "Never ", "Fresh"))
    ])
    return Item(Tag.DEFAULTS_INFORMATION, ItemType.STRUCTURE, [
        Item(Tag.OBJECT_DEFAULTS, ItemType.STRUCTURE, [
            Item(Tag.OBJECT_TYPE, ItemType.ENUMERATION, int(object_type)), attributes])
        for object_type in OBJECT_TYPES
    ])


def _known_in(enumeration: type[IntEnum], value: int, version: tuple[int, int]) -> bool:
    return VALUE_SINCE[enumeration].get(int(value), (1, 0)) <= version
