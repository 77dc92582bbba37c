"""Import and Export (KMIP 2.x): an object with all its attributes, in or out.

Export is Get plus Get Attributes in one answer: the object in the format, wrapping
and compression asked for, with the same refusals (Sensitive, not Extractable,
archived), and every attribute the client's version defines. A destroyed object's
key material is gone (KMIP 2.1 section 6.1.21): it is exported as a key block that
describes the key without a Key Value; other objects are refused as destroyed.

Import stores an object under the identifier the client gives, with exactly the
attributes it brings (KMIP 2.1 section 6.1.32): the server sets none of its own, so
a client that moves an object between servers keeps its dates and state. An
existing object of that identifier is replaced only with Replace Existing. Key Wrap
Type Not Wrapped asks the server to unwrap the object first, with a key of the
caller's scope; otherwise it is stored as sent.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from keyquorum.cluster.state import CreateObject, ImportObject, ManagedObject
from keyquorum.cluster.state import UniqueIdentifier as ObjectId

from ..errors import KmipError, invalid_field
from ..mapping import to_item
from ..objects import KeyBlock, PrivateKey, PublicKey, SplitKey, SymmetricKey
from ..payloads import (
    ExportRequestPayload,
    ExportResponsePayload,
    GetRequestPayload,
    ImportRequestPayload,
    ImportResponsePayload,
)
from ..tables import KeyFormatType, KeyWrapType, ObjectType, ResultReason, State
from ..ttlv import encode_item
from .attribute_ops import as_v2, stored, stored_v2, visible
from .context import Context
from .object_ops import get, object_tag
from .wrapping import unwrap_block

# The objects whose destroyed form is still a key block (with no Key Value in it).
_KEY_BLOCK_CLASSES: dict[int, Any] = {
    ObjectType.SYMMETRIC_KEY: SymmetricKey,
    ObjectType.PUBLIC_KEY: PublicKey,
    ObjectType.PRIVATE_KEY: PrivateKey,
    ObjectType.SPLIT_KEY: SplitKey,
}


async def export(ctx: Context, payload: ExportRequestPayload) -> ExportResponsePayload:
    obj = await ctx.read(payload.unique_identifier, material=False)
    if obj.state in (State.DESTROYED, State.DESTROYED_COMPROMISED):
        exported: Any = _described(obj)
    else:
        exported = (await get(ctx, GetRequestPayload(
            unique_identifier=obj.uid,
            key_format_type=payload.key_format_type,
            key_wrap_type=payload.key_wrap_type,
            key_compression_type=payload.key_compression_type,
            key_wrapping_specification=payload.key_wrapping_specification,
        ))).object

    # Read again: Get may have cleared Fresh, and the answer shows the object as it is.
    now = await ctx.read(obj.uid, material=False)
    return ExportResponsePayload(
        object_type=now.object_type,
        unique_identifier=now.uid,
        attributes=as_v2(visible(now, ctx.version)),
        object=exported,
    )


def _described(obj: ManagedObject) -> Any:
    """A destroyed object as a key block without its key: format, algorithm, length."""
    cls = _KEY_BLOCK_CLASSES.get(obj.object_type)
    if cls is None:
        raise KmipError(ResultReason.OBJECT_DESTROYED, "the object was destroyed")
    key_format = obj.first("Key Format Type")
    algorithm = obj.first("Cryptographic Algorithm")
    length = obj.first("Cryptographic Length")
    block = KeyBlock(
        key_format_type=KeyFormatType.RAW if key_format is None else key_format.value,
        cryptographic_algorithm=None if algorithm is None else algorithm.value,
        cryptographic_length=None if length is None else length.value,
    )
    return cls(key_block=block)


async def import_object(ctx: Context, payload: ImportRequestPayload) -> ImportResponsePayload:
    if ctx.is_v1:
        raise KmipError(ResultReason.OPERATION_NOT_SUPPORTED, "Import arrived in KMIP 2.0")
    if payload.object_type == ObjectType.TEMPLATE:
        raise KmipError(ResultReason.INVALID_OBJECT_TYPE, "templates ended with KMIP 2.0")
    if payload.object.TAG != object_tag(payload.object_type):
        raise invalid_field("the object does not match the Object Type")
    attributes = [stored(a) for a in payload.attribute_list]
    if payload.attributes is not None:
        attributes += [stored_v2(item) for item in payload.attributes.items]

    # Unwrap first when asked to; the wrapping key must be the caller's.
    imported: Any = payload.object
    block = getattr(imported, "key_block", None)
    if payload.key_wrap_type == KeyWrapType.NOT_WRAPPED and isinstance(block, KeyBlock) \
            and block.key_wrapping_data is not None:
        imported = replace(imported, key_block=await unwrap_block(ctx, block))

    uid = await ctx.write(ImportObject(
        object=CreateObject(
            scope=ctx.scope,
            uid=ObjectId(payload.unique_identifier),
            object_type=ObjectType(payload.object_type),
            attributes=tuple(attributes),
            material=encode_item(to_item(imported, imported.TAG)),
            now=ctx.now(),
        ),
        replace_existing=bool(payload.replace_existing),
    ))
    return ImportResponsePayload(unique_identifier=uid)
