"""The tenancy state machine in process: every command's checks, and the composite state."""

from __future__ import annotations

import pickle

import pytest

from keyquorum.cluster.cluster_state import ClusterState
from keyquorum.cluster.state import (
    CreateObject,
    CreateObjects,
    KeyStore,
    Rejected,
    ScopeName,
)
from keyquorum.cluster.tenancy import (
    OPERATION_FLAGS,
    AdminToken,
    ClusterCa,
    CreateScope,
    CreateToken,
    Credential,
    DeleteRole,
    DeleteScope,
    Done,
    ImportCa,
    ImportedCa,
    InstallClusterCa,
    IssueCredential,
    ListenerSettings,
    MappingRule,
    Problem,
    Refused,
    RevokeCredential,
    RevokeToken,
    RoleName,
    RoleSettings,
    SetListener,
    SubjectField,
    TenancyState,
    TokenAccessor,
    TokenKind,
    WriteRole,
    check_role_settings,
    listen_addresses,
)
from keyquorum.kmip.objects import UniqueIdentifier
from keyquorum.kmip.tables import ObjectType, ResultReason

SALES = ScopeName("sales")
ADMIN = RoleName("admin")
ALL = RoleSettings(frozenset({"operation_all"}))


def credential(serial: int, scope: str = SALES, role: str = ADMIN) -> Credential:
    return Credential(serial=serial, scope=ScopeName(scope), role=RoleName(role),
                      common_name="c", fingerprint_sha256="00", issued_at=10, not_after=20,
                      origin="generated")


def create_object(scope: str, uid: str) -> CreateObject:
    return CreateObject(scope=ScopeName(scope), uid=UniqueIdentifier(uid),
                        object_type=ObjectType.SECRET_DATA, attributes=(), material=b"x", now=1)


@pytest.fixture
def state() -> TenancyState:
    tenancy = TenancyState()
    assert tenancy.apply(CreateScope(SALES, now=1)) == Done()
    assert tenancy.apply(WriteRole(SALES, ADMIN, ALL, now=2)) == Done()
    return tenancy


def refused(outcome: object, problem: Problem) -> str:
    assert isinstance(outcome, Refused), outcome
    assert outcome.problem == problem
    return outcome.message


def test_a_scope_is_created_once_and_needs_a_clean_name(state: TenancyState) -> None:
    assert "already exists" in refused(state.apply(CreateScope(SALES, now=3)), Problem.CONFLICT)
    assert "not allowed" in refused(state.apply(CreateScope(ScopeName("a/b"), now=3)),
                                    Problem.INVALID)
    assert [scope.name for scope in state.scopes()] == ["sales"]


def test_a_role_needs_its_scope_and_known_flags(state: TenancyState) -> None:
    message = refused(state.apply(WriteRole(ScopeName("hr"), ADMIN, ALL, now=3)),
                      Problem.NOT_FOUND)
    assert "create it first" in message

    bad = RoleSettings(frozenset({"operation_teleport"}))
    assert "operation_teleport" in refused(state.apply(WriteRole(SALES, ADMIN, bad, now=3)),
                                           Problem.INVALID)
    mixed = RoleSettings(frozenset({"operation_none", "operation_get"}))
    assert check_role_settings(mixed) is not None
    assert check_role_settings(RoleSettings(ALL.flags, "rsa", 256)) is not None
    assert check_role_settings(RoleSettings(ALL.flags, tls_client_ttl_seconds=1)) is not None

    # The refused writes left the role as it was.
    role = state.role(SALES, ADMIN)
    assert role is not None and role.settings == ALL


def test_every_implemented_operation_has_a_flag() -> None:
    assert {"operation_create", "operation_get", "operation_destroy", "operation_locate",
            "operation_discover_versions", "operation_get_attribute_list"} <= set(OPERATION_FLAGS)


def test_a_role_rewrite_keeps_its_creation_time_and_credentials(state: TenancyState) -> None:
    state.apply(IssueCredential(credential(7)))
    only_get = RoleSettings(frozenset({"operation_get"}), "rsa", 2048)
    assert state.apply(WriteRole(SALES, ADMIN, only_get, now=50)) == Done()

    role = state.role(SALES, ADMIN)
    assert role is not None and role.created_at == 2 and role.settings.key_type.value == "rsa-2048"
    assert state.credential(7) is not None


def test_credentials_are_issued_once_into_an_existing_role(state: TenancyState) -> None:
    assert state.apply(IssueCredential(credential(7))) == Done(7)
    refused(state.apply(IssueCredential(credential(7))), Problem.CONFLICT)
    refused(state.apply(IssueCredential(credential(8, role="nobody"))), Problem.NOT_FOUND)
    assert [c.serial for c in state.credentials(SALES, ADMIN)] == [7]


def test_revocation_is_checked_against_the_role_in_the_path(state: TenancyState) -> None:
    state.apply(WriteRole(SALES, RoleName("reader"), ALL, now=3))
    state.apply(IssueCredential(credential(7)))

    refused(state.apply(RevokeCredential(SALES, RoleName("reader"), 7, now=5)),
            Problem.NOT_FOUND)
    assert not state.is_revoked(7)
    assert state.apply(RevokeCredential(SALES, ADMIN, 7, now=5)) == Done()
    assert state.is_revoked(7)

    # Revoking again keeps the first date.
    state.apply(RevokeCredential(SALES, ADMIN, 7, now=9))
    revoked = state.credential(7)
    assert revoked is not None and revoked.revoked_at == 5


def test_deleting_a_role_forgets_its_credentials(state: TenancyState) -> None:
    state.apply(IssueCredential(credential(7)))
    assert state.apply(DeleteRole(SALES, ADMIN)) == Done()
    assert state.credential(7) is None
    refused(state.apply(DeleteRole(SALES, ADMIN)), Problem.NOT_FOUND)


def test_the_cluster_ca_is_installed_once(state: TenancyState) -> None:
    first = ClusterCa(b"cert-1", b"key-1", 1)
    generation = state.tls_generation
    assert state.apply(InstallClusterCa(first)) == Done()
    refused(state.apply(InstallClusterCa(ClusterCa(b"cert-2", b"key-2", 2))), Problem.CONFLICT)
    assert state.cluster_ca() == first
    assert state.tls_generation == generation + 1


def test_an_imported_ca_needs_exactly_one_source_for_scope_and_role(state: TenancyState) -> None:
    both = MappingRule(scope=SALES, scope_field=SubjectField.O, role=ADMIN)
    neither = MappingRule(role=ADMIN)
    for rule in (both, neither):
        message = refused(state.apply(ImportCa(ImportedCa("corp", b"pem", rule, 1))),
                          Problem.INVALID)
        assert "exactly one" in message
    good = MappingRule(scope_field=SubjectField.O, role=ADMIN)
    assert state.apply(ImportCa(ImportedCa("corp", b"pem", good, 1))) == Done()
    refused(state.apply(ImportCa(ImportedCa("corp", b"pem", good, 1))), Problem.CONFLICT)


def test_tokens_scoped_to_a_missing_scope_are_refused(state: TenancyState) -> None:
    scoped = AdminToken(TokenAccessor("a1"), "hash-1", TokenKind.SCOPED, SALES)
    stray = AdminToken(TokenAccessor("a2"), "hash-2", TokenKind.SCOPED, ScopeName("hr"))
    wrong = AdminToken(TokenAccessor("a3"), "hash-3", TokenKind.READ_ONLY, SALES)
    assert state.apply(CreateToken(scoped)) == Done("a1")
    refused(state.apply(CreateToken(stray)), Problem.NOT_FOUND)
    refused(state.apply(CreateToken(wrong)), Problem.INVALID)
    assert state.token_by_hash("hash-1") == scoped

    assert state.apply(RevokeToken(TokenAccessor("a1"))) == Done()
    assert state.token_by_hash("hash-1") is None


def test_listener_settings_are_checked(state: TenancyState) -> None:
    refused(state.apply(SetListener(ListenerSettings(tls_min_version="1.0"))), Problem.INVALID)
    settings = ListenerSettings(server_hostnames=("kms.example",), tls_min_version="1.3")
    assert state.apply(SetListener(settings)) == Done()
    assert state.listener() == settings


def test_listen_addresses_are_checked_and_a_nodes_own_entry_wins(state: TenancyState) -> None:
    for bad, words in ((("5696",), "host:port"), (("h:0",), "1 to 65535"),
                       (("::1:5696",), "brackets"), (("a b:1",), "brackets")):
        message = refused(state.apply(SetListener(ListenerSettings(listen_addrs=bad))),
                          Problem.INVALID)
        assert "listen_addrs" in message and words in message, message
    empty = ListenerSettings(node_listen_addrs=(("node-1", ()),))
    assert "at least one" in refused(state.apply(SetListener(empty)), Problem.INVALID)

    settings = ListenerSettings(listen_addrs=("0.0.0.0:5697",),
                                node_listen_addrs=(("node-2", ("[::1]:5698", "10.0.0.2:5696")),))
    assert state.apply(SetListener(settings)) == Done()
    assert listen_addresses(state.listener(), "node-1") == [("0.0.0.0", 5697)]
    assert listen_addresses(state.listener(), "node-2") == [("::1", 5698), ("10.0.0.2", 5696)]
    assert listen_addresses(ListenerSettings(), "node-1") is None


def test_unknown_commands_are_refused_not_raised() -> None:
    refused(TenancyState().apply(object()), Problem.INVALID)


# The composite state.


def test_a_scope_with_objects_is_deleted_only_with_force(state: TenancyState) -> None:
    cluster = ClusterState(KeyStore(), state)
    state.apply(IssueCredential(credential(7)))
    cluster.apply(create_object(SALES, "k1"))

    message = refused(cluster.apply(DeleteScope(SALES, force=False)), Problem.CONFLICT)
    assert "force" in message
    assert cluster.keys.get(SALES, "k1") is not None and state.scope(SALES) is not None

    assert cluster.apply(DeleteScope(SALES, force=True)) == Done()
    assert cluster.keys.get(SALES, "k1") is None
    assert state.scope(SALES) is None and state.credential(7) is None


def test_objects_are_created_only_in_existing_scopes(state: TenancyState) -> None:
    cluster = ClusterState(KeyStore(), state)
    outcome = cluster.apply(create_object("gone", "k1"))
    assert isinstance(outcome, Rejected) and outcome.reason == ResultReason.PERMISSION_DENIED
    assert len(cluster.keys) == 0


def test_a_key_pair_is_created_only_when_every_scope_it_names_exists(
    state: TenancyState,
) -> None:
    cluster = ClusterState(KeyStore(), state)

    # A key pair whose public half names a scope deleted meanwhile: neither half is made.
    stray = CreateObjects((create_object(SALES, "private"), create_object("gone", "public")))
    outcome = cluster.apply(stray)
    assert isinstance(outcome, Rejected) and outcome.reason == ResultReason.PERMISSION_DENIED
    assert "gone" in outcome.message
    assert len(cluster.keys) == 0

    # Both halves in an existing scope are made together.
    pair = CreateObjects((create_object(SALES, "private"), create_object(SALES, "public")))
    assert not isinstance(cluster.apply(pair), Rejected)
    assert cluster.keys.get(SALES, "private") is not None
    assert cluster.keys.get(SALES, "public") is not None


def test_one_snapshot_restores_both_parts(state: TenancyState) -> None:
    cluster = ClusterState(KeyStore(), state)
    state.apply(IssueCredential(credential(7)))
    cluster.apply(create_object(SALES, "k1"))

    restored = ClusterState()
    restored.restore(cluster.snapshot())
    assert restored.keys.get(SALES, "k1") is not None
    assert restored.tenancy.credential(7) == credential(7)
    assert restored.tenancy.role(SALES, ADMIN) == state.role(SALES, ADMIN)


def test_a_snapshot_from_before_tenancy_restores_the_keys() -> None:
    keys = KeyStore()
    keys.apply(create_object(SALES, "k1"))
    legacy = keys.snapshot()
    assert isinstance(pickle.loads(legacy), dict)

    restored = ClusterState()
    restored.restore(legacy)
    assert restored.keys.get(SALES, "k1") is not None
    assert restored.tenancy.scopes() == []
