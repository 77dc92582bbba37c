"""KMIP tags, enumerations and masks.

GENERATED from kmip/spec/kmip.toml by `python -m keyquorum.kmip.gen_tables`:
do not edit. The numbers are on the wire and on disk: never renumber.
"""

from enum import IntEnum, IntFlag

# An enumeration or a mask class: the keys of the per-value tables.
EnumClass = type[IntEnum] | type[IntFlag]


class Tag(IntEnum):
    CRYPTOGRAPHIC_USAGE_MASK = 0x42002C
    REQUEST_MESSAGE = 0x420078
    RESPONSE_MESSAGE = 0x42007B
    RESULT_REASON = 0x42007E
    RESULT_STATUS = 0x42007F


class ResultStatus(IntEnum):
    SUCCESS = 0x00000000
    OPERATION_FAILED = 0x00000001
    OPERATION_PENDING = 0x00000002
    OPERATION_UNDONE = 0x00000003


class ResultReason(IntEnum):
    ITEM_NOT_FOUND = 0x00000001
    RESPONSE_TOO_LARGE = 0x00000002
    AUTHENTICATION_NOT_SUCCESSFUL = 0x00000003
    INVALID_MESSAGE = 0x00000004
    OPERATION_NOT_SUPPORTED = 0x00000005
    MISSING_DATA = 0x00000006
    INVALID_FIELD = 0x00000007
    FEATURE_NOT_SUPPORTED = 0x00000008
    OPERATION_CANCELED_BY_REQUESTER = 0x00000009
    CRYPTOGRAPHIC_FAILURE = 0x0000000A
    ILLEGAL_OPERATION = 0x0000000B
    PERMISSION_DENIED = 0x0000000C
    OBJECT_ARCHIVED = 0x0000000D
    INDEX_OUT_OF_BOUNDS = 0x0000000E
    APPLICATION_NAMESPACE_NOT_SUPPORTED = 0x0000000F
    KEY_FORMAT_TYPE_NOT_SUPPORTED = 0x00000010
    KEY_COMPRESSION_TYPE_NOT_SUPPORTED = 0x00000011
    GENERAL_FAILURE = 0x00000100


class CryptographicUsageMask(IntFlag):
    SIGN = 0x00000001
    VERIFY = 0x00000002
    ENCRYPT = 0x00000004
    DECRYPT = 0x00000008


# Tag number -> the name the XML and JSON encodings use.
TAG_XML_NAMES: dict[int, str] = {
    0x42002C: 'CryptographicUsageMask',
    0x420078: 'RequestMessage',
    0x42007B: 'ResponseMessage',
    0x42007E: 'ResultReason',
    0x42007F: 'ResultStatus',
}

# Tag number -> the name the specification gives it.
TAG_SPEC_NAMES: dict[int, str] = {
    0x42002C: 'Cryptographic Usage Mask',
    0x420078: 'Request Message',
    0x42007B: 'Response Message',
    0x42007E: 'Result Reason',
    0x42007F: 'Result Status',
}

# Tag number -> the first protocol version that defines it.
TAG_SINCE: dict[int, tuple[int, int]] = {
    0x42002C: (1, 0),
    0x420078: (1, 0),
    0x42007B: (1, 0),
    0x42007E: (1, 0),
    0x42007F: (1, 0),
}

# Tag number -> the enumeration its Enumeration values use.
TAG_ENUMS: dict[int, type[IntEnum]] = {
    0x42007E: ResultReason,
    0x42007F: ResultStatus,
}

# Tag number -> the mask its Integer values use.
TAG_MASKS: dict[int, type[IntFlag]] = {
    0x42002C: CryptographicUsageMask,
}

# Attribute tags: 1.x Attribute Name text -> tag.
ATTRIBUTE_TAGS: dict[str, int] = {
    'Cryptographic Usage Mask': 0x42002C,
}

# XML and JSON name (or an accepted alias) -> tag number.
TAGS_BY_XML_NAME: dict[str, int] = {
    'CryptographicUsageMask': 0x42002C,
    'RequestMessage': 0x420078,
    'ResponseMessage': 0x42007B,
    'ResultReason': 0x42007E,
    'ResultStatus': 0x42007F,
}


# Enumeration or mask -> {value: XML name}.
VALUE_XML_NAMES: dict[EnumClass, dict[int, str]] = {
    Tag: TAG_XML_NAMES,
    ResultStatus: {
        0x00000000: 'Success',
        0x00000001: 'OperationFailed',
        0x00000002: 'OperationPending',
        0x00000003: 'OperationUndone',
    },
    ResultReason: {
        0x00000001: 'ItemNotFound',
        0x00000002: 'ResponseTooLarge',
        0x00000003: 'AuthenticationNotSuccessful',
        0x00000004: 'InvalidMessage',
        0x00000005: 'OperationNotSupported',
        0x00000006: 'MissingData',
        0x00000007: 'InvalidField',
        0x00000008: 'FeatureNotSupported',
        0x00000009: 'OperationCanceledByRequester',
        0x0000000A: 'CryptographicFailure',
        0x0000000B: 'IllegalOperation',
        0x0000000C: 'PermissionDenied',
        0x0000000D: 'ObjectArchived',
        0x0000000E: 'IndexOutOfBounds',
        0x0000000F: 'ApplicationNamespaceNotSupported',
        0x00000010: 'KeyFormatTypeNotSupported',
        0x00000011: 'KeyCompressionTypeNotSupported',
        0x00000100: 'GeneralFailure',
    },
    CryptographicUsageMask: {
        0x00000001: 'Sign',
        0x00000002: 'Verify',
        0x00000004: 'Encrypt',
        0x00000008: 'Decrypt',
    },
}

# Enumeration or mask -> {value: first protocol version}.
VALUE_SINCE: dict[EnumClass, dict[int, tuple[int, int]]] = {
    Tag: TAG_SINCE,
    ResultStatus: {
        0x00000000: (1, 0),
        0x00000001: (1, 0),
        0x00000002: (1, 0),
        0x00000003: (1, 0),
    },
    ResultReason: {
        0x00000001: (1, 0),
        0x00000002: (1, 0),
        0x00000003: (1, 0),
        0x00000004: (1, 0),
        0x00000005: (1, 0),
        0x00000006: (1, 0),
        0x00000007: (1, 0),
        0x00000008: (1, 0),
        0x00000009: (1, 0),
        0x0000000A: (1, 0),
        0x0000000B: (1, 0),
        0x0000000C: (1, 0),
        0x0000000D: (1, 0),
        0x0000000E: (1, 0),
        0x0000000F: (1, 0),
        0x00000010: (1, 0),
        0x00000011: (1, 0),
        0x00000100: (1, 0),
    },
    CryptographicUsageMask: {
        0x00000001: (1, 0),
        0x00000002: (1, 0),
        0x00000004: (1, 0),
        0x00000008: (1, 0),
    },
}

# Enumeration or mask -> {XML name or accepted alias: value}, for decoders.
VALUES_BY_XML_NAME: dict[EnumClass, dict[str, int]] = {
    Tag: TAGS_BY_XML_NAME,
    ResultStatus: {
        'Success': 0x00000000,
        'OperationFailed': 0x00000001,
        'OperationPending': 0x00000002,
        'OperationUndone': 0x00000003,
    },
    ResultReason: {
        'ItemNotFound': 0x00000001,
        'ResponseTooLarge': 0x00000002,
        'AuthenticationNotSuccessful': 0x00000003,
        'InvalidMessage': 0x00000004,
        'OperationNotSupported': 0x00000005,
        'MissingData': 0x00000006,
        'InvalidField': 0x00000007,
        'FeatureNotSupported': 0x00000008,
        'OperationCanceledByRequester': 0x00000009,
        'CryptographicFailure': 0x0000000A,
        'IllegalOperation': 0x0000000B,
        'PermissionDenied': 0x0000000C,
        'ObjectArchived': 0x0000000D,
        'IndexOutOfBounds': 0x0000000E,
        'ApplicationNamespaceNotSupported': 0x0000000F,
        'KeyFormatTypeNotSupported': 0x00000010,
        'KeyCompressionTypeNotSupported': 0x00000011,
        'GeneralFailure': 0x00000100,
    },
    CryptographicUsageMask: {
        'Sign': 0x00000001,
        'Verify': 0x00000002,
        'Encrypt': 0x00000004,
        'Decrypt': 0x00000008,
    },
}
