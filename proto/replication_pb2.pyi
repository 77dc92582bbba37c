from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ActivateRequest(_message.Message):
    __slots__ = ("protocol_version", "token_id", "token_secret", "secondary_id", "kind")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_SECRET_FIELD_NUMBER: _ClassVar[int]
    SECONDARY_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    token_id: str
    token_secret: bytes
    secondary_id: str
    kind: str
    def __init__(self, protocol_version: _Optional[int] = ..., token_id: _Optional[str] = ..., token_secret: _Optional[bytes] = ..., secondary_id: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class ActivateResponse(_message.Message):
    __slots__ = ("primary_cluster_id", "primary_sequence")
    PRIMARY_CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    primary_cluster_id: str
    primary_sequence: int
    def __init__(self, primary_cluster_id: _Optional[str] = ..., primary_sequence: _Optional[int] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("protocol_version", "secondary_id", "after_sequence")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SECONDARY_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    secondary_id: str
    after_sequence: int
    def __init__(self, protocol_version: _Optional[int] = ..., secondary_id: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class Change(_message.Message):
    __slots__ = ("sequence", "command", "applied_at_ms")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    APPLIED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    command: bytes
    applied_at_ms: int
    def __init__(self, sequence: _Optional[int] = ..., command: _Optional[bytes] = ..., applied_at_ms: _Optional[int] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("sequence", "state")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    state: bytes
    def __init__(self, sequence: _Optional[int] = ..., state: _Optional[bytes] = ...) -> None: ...

class StreamMessage(_message.Message):
    __slots__ = ("snapshot", "changes", "primary_sequence", "primary_addresses")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    snapshot: Snapshot
    changes: _containers.RepeatedCompositeFieldContainer[Change]
    primary_sequence: int
    primary_addresses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, snapshot: _Optional[_Union[Snapshot, _Mapping]] = ..., changes: _Optional[_Iterable[_Union[Change, _Mapping]]] = ..., primary_sequence: _Optional[int] = ..., primary_addresses: _Optional[_Iterable[str]] = ...) -> None: ...

class ForwardRequest(_message.Message):
    __slots__ = ("protocol_version", "request_id", "command")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    request_id: str
    command: bytes
    def __init__(self, protocol_version: _Optional[int] = ..., request_id: _Optional[str] = ..., command: _Optional[bytes] = ...) -> None: ...

class ForwardResponse(_message.Message):
    __slots__ = ("outcome", "sequence")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    outcome: bytes
    sequence: int
    def __init__(self, outcome: _Optional[bytes] = ..., sequence: _Optional[int] = ...) -> None: ...
