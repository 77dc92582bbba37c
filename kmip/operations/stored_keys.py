"""Reading a stored key as the operations use it: its Key Block, and the Cryptographic
Parameters to use it with.

Wrapping, Encrypt and its kin, Re-key and Derive Key each start from a managed object
the key store holds; what they read of it is read here, once.
"""

from __future__ import annotations

from dataclasses import fields, replace

from keyquorum.cluster.state import ManagedObject

from ..errors import KmipError
from ..mapping import from_item
from ..objects import CryptographicParameters, KeyBlock
from ..tables import ResultReason, Tag
from ..ttlv import Item, ItemType, decode_item


def key_block(obj: ManagedObject, refusal: str) -> KeyBlock:
    """The object's Key Block; Invalid Object Type, saying ``refusal``, when it has none
    (a certificate, a template). The caller has checked the material is not destroyed."""
    assert obj.material is not None
    item = decode_item(obj.material)
    block = next((child for child in item.value if child.tag == Tag.KEY_BLOCK), None)
    if block is None:
        raise KmipError(ResultReason.INVALID_OBJECT_TYPE, refusal)
    return from_item(KeyBlock, block)


def parameters(obj: ManagedObject, requested: CryptographicParameters | None
               ) -> CryptographicParameters:
    """The request's parameters over the key's Cryptographic Parameters attribute: a
    field the request gives wins, one it leaves out is the key's."""
    stored = obj.first("Cryptographic Parameters")
    base = CryptographicParameters()
    if stored is not None and stored.type == ItemType.STRUCTURE:
        base = from_item(CryptographicParameters,
                         Item(Tag.CRYPTOGRAPHIC_PARAMETERS, ItemType.STRUCTURE, stored.value))
    if requested is None:
        return base
    given = {f.name: getattr(requested, f.name) for f in fields(requested)
             if getattr(requested, f.name) is not None}
    return replace(base, **given)
