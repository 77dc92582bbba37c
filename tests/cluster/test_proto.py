"""The generated replication modules match replication.proto and import as a package."""

from __future__ import annotations

from keyquorum.proto import generate, replication_pb2, replication_pb2_grpc


def test_the_committed_modules_are_what_make_proto_generates() -> None:
    assert generate.stale_outputs() == [], "run `make proto` and commit the result"


def test_the_grpc_module_imports_its_messages_through_the_package() -> None:
    # The quirk generate.py fixes: grpc_tools writes a top-level `import replication_pb2`.
    assert replication_pb2_grpc.replication__pb2 is replication_pb2
    source = (generate.HERE / "replication_pb2_grpc.py").read_text()
    assert "\nimport replication_pb2" not in source


def test_every_request_carries_a_protocol_version() -> None:
    for name in ("ActivateRequest", "StreamRequest", "ForwardRequest"):
        fields = getattr(replication_pb2, name).DESCRIPTOR.fields_by_name
        assert fields["protocol_version"].number == 1, name
