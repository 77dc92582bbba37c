"""Managed objects and the structures inside them.

KMIP 1.4 sections 2.1 and 2.2, KMIP 2.1 sections 2 and 3. Transparent key material
(a Structure of big integers whose shape depends on the Key Format Type) and
attribute values stay raw items, so that every key format round-trips unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NewType

from .attributes import Attribute, Attributes
from .mapping import at, many, required
from .tables import (
    BlockCipherMode,
    CertificateRequestType,
    CertificateType,
    CryptographicAlgorithm,
    DigitalSignatureAlgorithm,
    EncodingOption,
    HashingAlgorithm,
    KeyCompressionType,
    KeyFormatType,
    KeyRoleType,
    MaskGenerator,
    OpaqueDataType,
    PaddingMethod,
    SecretDataType,
    SplitKeyMethod,
    Tag,
    WrappingMethod,
)
from .ttlv import Item, ItemType

UniqueIdentifier = NewType("UniqueIdentifier", str)


@dataclass(frozen=True, kw_only=True)
class CryptographicParameters:
    block_cipher_mode: BlockCipherMode | int | None = at(Tag.BLOCK_CIPHER_MODE)
    padding_method: PaddingMethod | int | None = at(Tag.PADDING_METHOD)
    hashing_algorithm: HashingAlgorithm | int | None = at(Tag.HASHING_ALGORITHM)
    key_role_type: KeyRoleType | int | None = at(Tag.KEY_ROLE_TYPE)
    digital_signature_algorithm: DigitalSignatureAlgorithm | int | None = at(
        Tag.DIGITAL_SIGNATURE_ALGORITHM
    )
    cryptographic_algorithm: CryptographicAlgorithm | int | None = at(Tag.CRYPTOGRAPHIC_ALGORITHM)
    random_iv: bool | None = at(Tag.RANDOM_IV)
    iv_length: int | None = at(Tag.IV_LENGTH)
    tag_length: int | None = at(Tag.TAG_LENGTH)
    fixed_field_length: int | None = at(Tag.FIXED_FIELD_LENGTH)
    invocation_field_length: int | None = at(Tag.INVOCATION_FIELD_LENGTH)
    counter_length: int | None = at(Tag.COUNTER_LENGTH)
    initial_counter_value: int | None = at(Tag.INITIAL_COUNTER_VALUE)
    salt_length: int | None = at(Tag.SALT_LENGTH)
    mask_generator: MaskGenerator | int | None = at(Tag.MASK_GENERATOR)
    mask_generator_hashing_algorithm: HashingAlgorithm | int | None = at(
        Tag.MASK_GENERATOR_HASHING_ALGORITHM
    )
    p_source: bytes | None = at(Tag.P_SOURCE)
    trailer_field: int | None = at(Tag.TRAILER_FIELD)


@dataclass(frozen=True, kw_only=True)
class EncryptionKeyInformation:
    unique_identifier: UniqueIdentifier = required(Tag.UNIQUE_IDENTIFIER)
    cryptographic_parameters: CryptographicParameters | None = at(Tag.CRYPTOGRAPHIC_PARAMETERS)


@dataclass(frozen=True, kw_only=True)
class MacSignatureKeyInformation:
    unique_identifier: UniqueIdentifier = required(Tag.UNIQUE_IDENTIFIER)
    cryptographic_parameters: CryptographicParameters | None = at(Tag.CRYPTOGRAPHIC_PARAMETERS)


@dataclass(frozen=True, kw_only=True)
class KeyWrappingData:
    wrapping_method: WrappingMethod | int = required(Tag.WRAPPING_METHOD)
    encryption_key_information: EncryptionKeyInformation | None = at(Tag.ENCRYPTION_KEY_INFORMATION)
    mac_signature_key_information: MacSignatureKeyInformation | None = at(
        Tag.MAC_SIGNATURE_KEY_INFORMATION
    )
    mac_signature: bytes | None = at(Tag.MAC_SIGNATURE)
    iv_counter_nonce: bytes | None = at(Tag.IV_COUNTER_NONCE)
    encoding_option: EncodingOption | int | None = at(Tag.ENCODING_OPTION)


@dataclass(frozen=True, kw_only=True)
class KeyWrappingSpecification:
    wrapping_method: WrappingMethod | int = required(Tag.WRAPPING_METHOD)
    encryption_key_information: EncryptionKeyInformation | None = at(Tag.ENCRYPTION_KEY_INFORMATION)
    mac_signature_key_information: MacSignatureKeyInformation | None = at(
        Tag.MAC_SIGNATURE_KEY_INFORMATION
    )
    attribute_names: tuple[str, ...] = many(Tag.ATTRIBUTE_NAME)
    encoding_option: EncodingOption | int | None = at(Tag.ENCODING_OPTION)


@dataclass(frozen=True, kw_only=True)
class KeyValue:
    """Key material: bytes for raw formats, a raw Structure for transparent ones."""

    key_material: bytes | Item = required(Tag.KEY_MATERIAL)
    # Attributes bound to the key: 1.x lists Attribute structures, 2.x one Attributes.
    attribute_list: tuple[Attribute, ...] = many(Tag.ATTRIBUTE)
    attributes: Attributes | None = at(Tag.ATTRIBUTES)


@dataclass(frozen=True, kw_only=True)
class KeyBlock:
    key_format_type: KeyFormatType | int = required(Tag.KEY_FORMAT_TYPE)
    key_compression_type: KeyCompressionType | int | None = at(Tag.KEY_COMPRESSION_TYPE)
    # A wrapped key's value is the wrapped bytes; a plain one is a Key Value structure.
    key_value: KeyValue | bytes | None = at(Tag.KEY_VALUE)
    cryptographic_algorithm: CryptographicAlgorithm | int | None = at(Tag.CRYPTOGRAPHIC_ALGORITHM)
    cryptographic_length: int | None = at(Tag.CRYPTOGRAPHIC_LENGTH)
    key_wrapping_data: KeyWrappingData | None = at(Tag.KEY_WRAPPING_DATA)


@dataclass(frozen=True, kw_only=True)
class SymmetricKey:
    TAG = Tag.SYMMETRIC_KEY

    key_block: KeyBlock = required(Tag.KEY_BLOCK)


@dataclass(frozen=True, kw_only=True)
class PublicKey:
    TAG = Tag.PUBLIC_KEY

    key_block: KeyBlock = required(Tag.KEY_BLOCK)


@dataclass(frozen=True, kw_only=True)
class PrivateKey:
    TAG = Tag.PRIVATE_KEY

    key_block: KeyBlock = required(Tag.KEY_BLOCK)


@dataclass(frozen=True, kw_only=True)
class SecretData:
    TAG = Tag.SECRET_DATA

    secret_data_type: SecretDataType | int = required(Tag.SECRET_DATA_TYPE)
    key_block: KeyBlock = required(Tag.KEY_BLOCK)


@dataclass(frozen=True, kw_only=True)
class OpaqueObject:
    TAG = Tag.OPAQUE_OBJECT

    opaque_data_type: OpaqueDataType | int = required(Tag.OPAQUE_DATA_TYPE)
    opaque_data_value: bytes = required(Tag.OPAQUE_DATA_VALUE)


@dataclass(frozen=True, kw_only=True)
class Certificate:
    TAG = Tag.CERTIFICATE

    certificate_type: CertificateType | int = required(Tag.CERTIFICATE_TYPE)
    certificate_value: bytes = required(Tag.CERTIFICATE_VALUE)


@dataclass(frozen=True, kw_only=True)
class CertificateRequest:
    """KMIP 2.x: a certificate request kept as an object, for Certify to name later."""

    TAG = Tag.CERTIFICATE_REQUEST

    certificate_request_type: CertificateRequestType | int = required(
        Tag.CERTIFICATE_REQUEST_TYPE)
    certificate_request_value: bytes = required(Tag.CERTIFICATE_REQUEST_VALUE)


@dataclass(frozen=True, kw_only=True)
class SplitKey:
    TAG = Tag.SPLIT_KEY

    split_key_parts: int = required(Tag.SPLIT_KEY_PARTS)
    key_part_identifier: int = required(Tag.KEY_PART_IDENTIFIER)
    split_key_threshold: int = required(Tag.SPLIT_KEY_THRESHOLD)
    split_key_method: SplitKeyMethod | int = required(Tag.SPLIT_KEY_METHOD)
    prime_field_size: int | None = at(Tag.PRIME_FIELD_SIZE, kind=ItemType.BIG_INTEGER)
    key_block: KeyBlock = required(Tag.KEY_BLOCK)


@dataclass(frozen=True, kw_only=True)
class Template:
    """KMIP 1.x only (deprecated in 1.3, gone in 2.0): a named set of attributes."""

    TAG = Tag.TEMPLATE

    attributes: tuple[Attribute, ...] = many(Tag.ATTRIBUTE)


@dataclass(frozen=True, kw_only=True)
class PGPKey:
    TAG = Tag.PGP_KEY

    pgp_key_version: int = required(Tag.PGP_KEY_VERSION)
    key_block: KeyBlock = required(Tag.KEY_BLOCK)


ManagedObject = (
    SymmetricKey
    | PublicKey
    | PrivateKey
    | SecretData
    | OpaqueObject
    | Certificate
    | CertificateRequest
    | SplitKey
    | Template
    | PGPKey
)

MANAGED_OBJECT_CLASSES: tuple[type, ...] = (
    SymmetricKey,
    PublicKey,
    PrivateKey,
    SecretData,
    OpaqueObject,
    Certificate,
    CertificateRequest,
    SplitKey,
    Template,
    PGPKey,
)
