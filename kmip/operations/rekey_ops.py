"""Re-key and Re-key Key Pair: a fresh key that replaces an existing one.

KMIP 1.4 sections 4.4 and 4.5. The replacement is generated on the receiving node
with the existing key's algorithm, length and attributes (the request's attributes
override them) and is committed with one ``CreateFromSources`` command that also
links the two keys (Replacement Object on the old one, Replaced Object on the new
one) and moves the old key's names to the new one, so that a client looking a key
up by name finds the replacement.

Dates: with no Offset, the replacement keeps the existing key's Activation, Process
Start, Protect Stop and Deactivation dates. With an Offset, the replacement becomes
active Offset seconds after its creation and each other date keeps its distance
from the activation date (section 4.4's table).
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from keyquorum.cluster.state import (
    CreateFromSources,
    CreateObject,
    ManagedObject,
    StoredAttribute,
)
from keyquorum.cluster.state import UniqueIdentifier as ObjectId

from ..errors import KmipError, invalid_field
from ..mapping import to_item
from ..objects import KeyBlock, KeyValue, PrivateKey, PublicKey, SymmetricKey
from ..payloads import (
    ReKeyKeyPairRequestPayload,
    ReKeyKeyPairResponsePayload,
    ReKeyRequestPayload,
    ReKeyResponsePayload,
)
from ..tables import CryptographicAlgorithm, KeyFormatType, LinkType, ObjectType, ResultReason, Tag
from ..ttlv import Item, ItemType, encode_item
from .context import Context
from .keypair_ops import generate_pair, requested_attributes, with_algorithm
from .object_ops import checked_attributes, server_attributes
from .stored_keys import key_block

# What the replacement does not inherit: what the server sets for every new object,
# what describes the old key's own life, and what is recomputed here.
_NOT_INHERITED = frozenset({
    "Unique Identifier", "Object Type", "State", "Initial Date", "Last Change Date",
    "Activation Date", "Deactivation Date", "Destroy Date", "Compromise Date",
    "Compromise Occurrence Date", "Revocation Reason", "Archive Date", "Digest",
    "Original Creation Date", "Process Start Date", "Protect Stop Date", "Fresh",
    "Name", "Link", "Random Number Generator", "Key Format Type", "Always Sensitive",
    "Never Extractable", "Key Value Present", "Usage Limits",
})

# The dates that follow the activation date when an Offset is given.
_DATES_AFTER_ACTIVATION = ("Process Start Date", "Protect Stop Date", "Deactivation Date")


async def rekey(ctx: Context, payload: ReKeyRequestPayload) -> ReKeyResponsePayload:
    old = await ctx.read(payload.unique_identifier)
    if old.object_type != ObjectType.SYMMETRIC_KEY:
        raise KmipError(ResultReason.INVALID_OBJECT_TYPE,
                        "Re-key replaces symmetric keys; use Re-key Key Pair for key pairs")
    if old.material is None:
        raise KmipError(ResultReason.WRONG_KEY_LIFECYCLE_STATE, "the key was destroyed")
    block = key_block(old, "the object is not a key")
    requested = checked_attributes(requested_attributes(payload.template_attribute,
                                                        payload.attributes))

    # First the new key: the old one's algorithm and length, fresh bytes.
    algorithm = block.cryptographic_algorithm or _attribute(old, "Cryptographic Algorithm")
    length = block.cryptographic_length or _attribute(old, "Cryptographic Length")
    if algorithm is None or length is None:
        raise invalid_field("the key has no Cryptographic Algorithm and Length to repeat")
    for name, value in (("Cryptographic Algorithm", algorithm), ("Cryptographic Length", length)):
        if any(a.name == name and a.value.value != value for a in requested):
            raise invalid_field(f"Re-key keeps the key's {name}; create a new key to change it")
    key = SymmetricKey(key_block=KeyBlock(
        key_format_type=KeyFormatType.RAW,
        key_value=KeyValue(key_material=secrets.token_bytes(int(length) // 8)),
        cryptographic_algorithm=CryptographicAlgorithm(int(algorithm)),
        cryptographic_length=int(length),
    ))

    # Then its attributes and the command that links both keys.
    now = ctx.now()
    new_uid = ObjectId(str(uuid.uuid4()))
    create = _replacement(old, new_uid, to_item(key, Tag.SYMMETRIC_KEY), requested,
                          payload.offset, now)
    await ctx.write(CreateFromSources(
        scope=ctx.scope, objects=(create,),
        links=((old.uid, link_value(LinkType.REPLACEMENT_OBJECT_LINK, new_uid)),),
        names_moved=((old.uid, new_uid),), now=now))
    return ReKeyResponsePayload(unique_identifier=new_uid)


async def rekey_key_pair(
    ctx: Context, payload: ReKeyKeyPairRequestPayload
) -> ReKeyKeyPairResponsePayload:
    old_private = await ctx.read(payload.private_key_unique_identifier)
    if old_private.object_type != ObjectType.PRIVATE_KEY:
        raise KmipError(ResultReason.INVALID_OBJECT_TYPE, "Re-key Key Pair names a private key")
    if old_private.material is None:
        raise KmipError(ResultReason.WRONG_KEY_LIFECYCLE_STATE, "the private key was destroyed")
    public_link = linked(old_private, LinkType.PUBLIC_KEY_LINK)
    if public_link is None:
        raise invalid_field("the private key has no Public Key Link to its public key")
    old_public = await ctx.read(public_link)
    ctx.placeholder = old_private.uid

    # First the requested attributes, common and per key.
    common = requested_attributes(payload.common_template_attribute, payload.common_attributes)
    private_requested = checked_attributes(common + requested_attributes(
        payload.private_key_template_attribute, payload.private_key_attributes))
    public_requested = checked_attributes(common + requested_attributes(
        payload.public_key_template_attribute, payload.public_key_attributes))

    # Then a pair like the old one.
    block = key_block(old_private, "the object is not a key")
    algorithm = block.cryptographic_algorithm or _attribute(old_private, "Cryptographic Algorithm")
    length = block.cryptographic_length or _attribute(old_private, "Cryptographic Length")
    curve = _attribute(old_private, "Recommended Curve")
    if algorithm is None:
        raise invalid_field("the private key has no Cryptographic Algorithm to repeat")
    pair = generate_pair(int(algorithm), length, curve)

    # Last both keys, linked to each other and to the keys they replace, in one command.
    now = ctx.now()
    private_uid = ObjectId(str(uuid.uuid4()))
    public_uid = ObjectId(str(uuid.uuid4()))
    creates = []
    for old, uid, other, link, cls, der, key_format, requested in (
        (old_private, private_uid, public_uid, LinkType.PUBLIC_KEY_LINK, PrivateKey,
         pair.private_der, pair.private_format, private_requested),
        (old_public, public_uid, private_uid, LinkType.PRIVATE_KEY_LINK, PublicKey,
         pair.public_der, pair.public_format, public_requested),
    ):
        material = to_item(cls(key_block=KeyBlock(
            key_format_type=key_format,
            key_value=KeyValue(key_material=der),
            cryptographic_algorithm=CryptographicAlgorithm(int(algorithm)),
            cryptographic_length=pair.length,
        )), cls.TAG)
        sized = with_algorithm(requested, int(algorithm), pair.length)
        sized.append(StoredAttribute("Link", link_value(link, other)))
        creates.append(_replacement(old, uid, material, sized, payload.offset, now))
    await ctx.write(CreateFromSources(
        scope=ctx.scope, objects=tuple(creates),
        links=((old_private.uid, link_value(LinkType.REPLACEMENT_OBJECT_LINK, private_uid)),
               (old_public.uid, link_value(LinkType.REPLACEMENT_OBJECT_LINK, public_uid))),
        names_moved=((old_private.uid, private_uid), (old_public.uid, public_uid)), now=now))
    ctx.placeholder = private_uid
    return ReKeyKeyPairResponsePayload(private_key_unique_identifier=private_uid,
                                       public_key_unique_identifier=public_uid)


def _replacement(old: ManagedObject, uid: ObjectId, material: Item,
                 requested: list[StoredAttribute], offset: int | None, now: int
                 ) -> CreateObject:
    """The command creating the key that replaces ``old``."""
    given = {a.name for a in requested}
    inherited = [a for a in old.attributes
                 if a.name not in _NOT_INHERITED and a.name not in given]
    attributes = requested + inherited + _dates(old, offset, now, given)
    limits = old.first("Usage Limits")
    if limits is not None and "Usage Limits" not in given:
        attributes.append(StoredAttribute("Usage Limits", _fresh_limits(limits)))
    attributes.append(StoredAttribute("Link", link_value(LinkType.REPLACED_OBJECT_LINK, old.uid)))
    original = old.first("Original Creation Date")
    if original is not None:
        attributes.append(StoredAttribute("Original Creation Date", original))
    attributes += [a for a in server_attributes(material, now, generated=True, given=attributes)
                   if a.name != "Original Creation Date" or original is None]
    return CreateObject(scope=old.scope, uid=uid, object_type=old.object_type,
                        attributes=tuple(attributes), material=encode_item(material), now=now)


def _dates(old: ManagedObject, offset: int | None, now: int, given: set[str]
           ) -> list[StoredAttribute]:
    names = ("Activation Date", *_DATES_AFTER_ACTIVATION)
    found = {name: int(item.value) for name in names
             if (item := old.first(name)) is not None and name not in given}
    if offset is not None:
        activated = found.get("Activation Date")
        moved = {"Activation Date": now + offset} if "Activation Date" not in given else {}
        if activated is not None:
            moved.update({name: now + offset + (found[name] - activated)
                          for name in _DATES_AFTER_ACTIVATION if name in found})
        found = moved
    return [StoredAttribute(name, Item(Tag.ATTRIBUTE_VALUE, ItemType.DATE_TIME, value))
            for name, value in found.items()]


def _fresh_limits(limits: Item) -> Item:
    """Usage Limits with the count back at the total: a new key has used nothing."""
    fields = {child.tag: child for child in limits.value}
    total = fields.get(Tag.USAGE_LIMITS_TOTAL)
    if total is not None:
        fields[Tag.USAGE_LIMITS_COUNT] = Item(Tag.USAGE_LIMITS_COUNT, ItemType.LONG_INTEGER,
                                              total.value)
    order = (Tag.USAGE_LIMITS_TOTAL, Tag.USAGE_LIMITS_COUNT, Tag.USAGE_LIMITS_UNIT)
    return Item(Tag.ATTRIBUTE_VALUE, ItemType.STRUCTURE, [fields[t] for t in order if t in fields])


def linked(obj: ManagedObject, link_type: int) -> str | None:
    for link in obj.values("Link"):
        fields = {child.tag: child.value for child in link.value}
        if fields.get(Tag.LINK_TYPE) == link_type:
            return str(fields.get(Tag.LINKED_OBJECT_IDENTIFIER))
    return None


def link_value(link_type: int, uid: str) -> Item:
    return Item(Tag.ATTRIBUTE_VALUE, ItemType.STRUCTURE, [
        Item(Tag.LINK_TYPE, ItemType.ENUMERATION, int(link_type)),
        Item(Tag.LINKED_OBJECT_IDENTIFIER, ItemType.TEXT_STRING, uid),
    ])


def _attribute(obj: ManagedObject, name: str) -> Any:
    item = obj.first(name)
    return None if item is None else item.value

