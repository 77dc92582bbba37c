"""Query answers what the server really does, in the terms of the client's version.

Each answer goes through the bytes, as a client would read it, and is checked
against the part of the server it describes: the handler registry, the batch
options the service honours, the profiles docs/conformance.md reports passing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from kmip_inprocess import call

from keyquorum.kmip.operations import HANDLERS
from keyquorum.kmip.operations.server_ops import profiles
from keyquorum.kmip.payloads import QueryRequestPayload, QueryResponsePayload
from keyquorum.kmip.service import KmipService
from keyquorum.kmip.tables import (
    VALUE_SINCE,
    DestroyAction,
    ObjectType,
    Operation,
    ProfileName,
    QueryFunction,
    ResultStatus,
    Tag,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"


class NoStore:
    """Query reads no object: a backend that fails the test if anything is asked."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Query touched the backend's {name}")


def query(version: tuple[int, int], *functions: QueryFunction) -> QueryResponsePayload:
    service = KmipService(cast(Any, NoStore()))
    item = call(service, Operation.QUERY, QueryRequestPayload(query_functions=functions), version)
    assert item.result_status == ResultStatus.SUCCESS, item.result_message
    assert isinstance(item.payload, QueryResponsePayload)
    return item.payload


@pytest.mark.parametrize("version", [(1, 0), (1, 2), (1, 4), (2, 0), (2, 1)])
def test_operations_are_the_registered_handlers_the_version_knows_in_spec_order(
    version: tuple[int, int]
) -> None:
    offered = query(version, QueryFunction.QUERY_OPERATIONS).operations

    known = {op for op in HANDLERS
             if VALUE_SINCE[Operation].get(int(op), (1, 0)) <= version}
    assert known <= set(offered)
    assert list(offered) == sorted(offered)
    assert all(VALUE_SINCE[Operation].get(int(op), (1, 0)) <= version for op in offered)


def test_a_1_0_client_is_not_offered_2_x_operations_or_object_types() -> None:
    answer = query((1, 0), QueryFunction.QUERY_OPERATIONS, QueryFunction.QUERY_OBJECTS)

    assert Operation.LOG not in answer.operations
    assert Operation.RNG_RETRIEVE not in answer.operations
    assert ObjectType.PGP_KEY not in answer.object_types
    assert ObjectType.SYMMETRIC_KEY in answer.object_types


def test_server_information_names_the_product_in_2_x_and_is_empty_in_1_x() -> None:
    v1 = query((1, 4), QueryFunction.QUERY_SERVER_INFORMATION)
    v2 = query((2, 1), QueryFunction.QUERY_SERVER_INFORMATION)

    assert v1.vendor_identification == v2.vendor_identification == "keyquorum"
    assert v1.server_information is not None and v1.server_information.value == []
    assert v2.server_information is not None
    fields = {child.tag: child.value for child in v2.server_information.value}
    assert fields[Tag.PRODUCT_NAME] == "keyquorum"
    assert fields[Tag.SERVER_VERSION]


def test_profiles_claimed_are_those_docs_conformance_reports_passing() -> None:
    report = (DOCS / "conformance.md").read_text()
    rows = {line.split("|")[1].split(":")[0].strip(): line.split("|")[2].strip()
            for line in report.splitlines() if line.startswith("| ") and ":" in line}

    # Every claimed profile's mandatory cases all pass; the word in the enum name
    # that the report's abbreviation stands for ties the two together.
    words = {"BL": "BASELINE", "SKLC": "SYMMETRIC_KEY_LIFECYCLE",
             "AKLC": "ASYMMETRIC_KEY_LIFECYCLE", "CS-BC": "BASIC_CRYPTOGRAPHIC",
             "CS-AC": "ADVANCED_CRYPTOGRAPHIC", "CS-RNG": "RNG_CRYPTOGRAPHIC",
             "SKFF": "SYMMETRIC_KEY_FOUNDRY", "OMOS": "OPAQUE_MANAGED_OBJECT_STORE"}
    claimed = [ProfileName(p.profile_name).name for p in profiles((2, 1))]
    for name in claimed:
        abbreviation = next(a for a, word in words.items() if name.startswith(word))
        passed, total = (int(n) for n in rows[abbreviation].split("/"))
        assert passed == total, f"{name} is claimed but {rows[abbreviation]} pass"


def test_profiles_use_the_names_of_the_clients_version() -> None:
    v13 = query((1, 3), QueryFunction.QUERY_PROFILES).profile_information
    v14 = query((1, 4), QueryFunction.QUERY_PROFILES).profile_information
    v21 = query((2, 1), QueryFunction.QUERY_PROFILES).profile_information
    v12 = query((1, 2), QueryFunction.QUERY_PROFILES).profile_information

    assert all(ProfileName(p.profile_name).name.endswith("V1_3") for p in v13)
    assert all(ProfileName(p.profile_name).name.endswith("V1_4") for p in v14)
    assert ProfileName.BASELINE_SERVER in {p.profile_name for p in v21}
    assert all(p.profile_version is not None and (p.profile_version.major,
               p.profile_version.minor) == (2, 1) for p in v21)
    assert v12 == ()  # Query Profiles is a 1.3 function


def test_capabilities_match_what_the_service_does() -> None:
    (capabilities,) = query((2, 1), QueryFunction.QUERY_CAPABILITIES).capability_information

    # The service honours both options (tests/kmip/test_service.py exercises them).
    assert capabilities.batch_undo_capability
    assert capabilities.batch_continue_capability
    assert capabilities.asynchronous_capability is False
    assert capabilities.destroy_action == DestroyAction.KEY_MATERIAL_DELETED


def test_rngs_registration_methods_defaults_and_masks_are_answered() -> None:
    answer = query((2, 1), QueryFunction.QUERY_RNGS,
                   QueryFunction.QUERY_CLIENT_REGISTRATION_METHODS,
                   QueryFunction.QUERY_DEFAULTS_INFORMATION,
                   QueryFunction.QUERY_STORAGE_PROTECTION_MASKS,
                   QueryFunction.QUERY_APPLICATION_NAMESPACES,
                   QueryFunction.QUERY_EXTENSION_LIST,
                   QueryFunction.QUERY_VALIDATIONS)

    assert len(answer.rng_parameters) == 1
    assert answer.client_registration_methods
    assert answer.defaults_information is not None
    object_defaults = answer.defaults_information.value
    assert {d.value[0].value for d in object_defaults} >= {ObjectType.SYMMETRIC_KEY}
    assert answer.protection_storage_masks is not None
    # Nothing to list, truthfully: no namespaces, extensions or validations.
    assert answer.application_namespaces == ()
    assert answer.extension_information == ()
    assert answer.validation_information == ()


def test_a_function_the_clients_version_lacks_is_ignored() -> None:
    answer = query((1, 2), QueryFunction.QUERY_CAPABILITIES, QueryFunction.QUERY_RNGS)

    assert answer.capability_information == ()
    assert answer.rng_parameters == ()
