"""Templates (KMIP 1.x): named sets of attributes a Create or Register may refer to.

A Template is a managed object like any other: Register stores it through the log
(its attribute set is its material, its Name and the like its own attributes), Get
returns it, Locate finds it by name, Destroy removes its content. Templates were
deprecated in KMIP 1.3 and removed in 2.0, so only 1.x requests may use them.

A Create or Register whose Template-Attribute names templates takes each template's
attributes, then the attributes it gives itself: an attribute given explicitly
replaces the templates' instances of that name (KMIP 1.4 section 2.1.8). Templates
are looked up in the requester's scope, after the request's read barrier.

Create Key Pair, Re-key and the other operations with Template-Attribute fields do
not resolve template names yet: they refuse them, saying so.
"""

from __future__ import annotations

from keyquorum.cluster.state import ManagedObject

from ..attributes import Attribute, Name
from ..errors import KmipError
from ..mapping import from_item
from ..objects import Template
from ..tables import ObjectType, ResultReason, State, Tag
from ..ttlv import decode_item
from .context import Context


async def with_templates(
    ctx: Context, names: tuple[Name, ...], given: list[Attribute]
) -> list[Attribute]:
    """The attributes of the named templates, overridden by ``given``."""
    if not names:
        return given
    if not ctx.is_v1:
        raise KmipError(ResultReason.INVALID_FIELD, "templates ended with KMIP 2.0")

    inherited: list[Attribute] = []
    for name in names:
        template = await _template_named(ctx, name.name_value)
        inherited += from_item(Template, decode_item(_content(template))).attributes

    explicit = {attribute.name for attribute in given}
    return [a for a in inherited if a.name not in explicit] + given


async def _template_named(ctx: Context, name: str) -> ManagedObject:
    await ctx.barrier()
    for obj in ctx.backend.store.objects(ctx.scope):
        if obj.object_type != ObjectType.TEMPLATE or obj.state in (
            State.DESTROYED, State.DESTROYED_COMPROMISED
        ):
            continue
        names = [value.value for value in obj.values("Name")]
        if any(field.tag == Tag.NAME_VALUE and field.value == name
               for value in names for field in value):
            return await ctx.read(obj.uid)
    raise KmipError(ResultReason.ITEM_NOT_FOUND, f"no template named {name!r}")


def _content(template: ManagedObject) -> bytes:
    if template.material is None:
        raise KmipError(ResultReason.OBJECT_DESTROYED, "the template was destroyed")
    return template.material
