"""Transform's admin API under ``/v1/transform/``, shaped like Vault's Transform engine.

Configuration: ``alphabet/{name}``, ``template/{name}``, ``transformation/{name}``,
``role/{name}`` (GET, POST, DELETE; GET on the plural-less prefix lists). Use:
``encode/{role}``, ``decode/{role}`` and ``decode/{role}/{decode_format}`` with one
``value`` or a ``batch_input`` list; ``tokens/lookup/{role}``, ``tokens/metadata/{role}``
and ``tokens/tidy/{transformation}``.

Who may do what, with the tenancy's admin tokens (cluster/admin_api.py):

- configuration changes and tidying: root tokens only;
- configuration reads: root and read-only tokens;
- encode, decode and token lookups through a role: root tokens, and scoped tokens
  whose scope the role lists in ``scopes``. Read-only tokens may not: encoding stores
  tokens, decoding reveals values. The transformation must be listed by the role, and
  the role allowed by the transformation (``allowed_roles``; for decode also
  ``decode_roles``).

A value Transform refuses is a 400 for a single value; in a batch, that item's result
carries ``error`` and the others go through. Values, tokens and tweaks never reach a
log line.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures.
import asyncio
import logging
import re
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from ..admin_api import AdminBackend, ApiError, Caller, _Body, authenticate
from ..barrier import BarrierError
from ..seal import SealedError
from ..tenancy import TokenKind
from .engine import Encoded, EncodeItem, Engine, NodeSealedError, TransformError
from .model import (
    Alphabet,
    Template,
    Transformation,
    TransformationType,
    TransformRole,
    TweakSource,
)
from .state import (
    DeleteAlphabet,
    DeleteTemplate,
    DeleteTransformation,
    DeleteTransformRole,
    PurgeExpiredTokens,
    WriteAlphabet,
    WriteTemplate,
    WriteTransformation,
    WriteTransformRole,
)

log = logging.getLogger("keyquorum.api.transform")

# One request's values: a batch is one commit (tokenization) and one thread's work.
MAX_BATCH = 1000
MAX_VALUE_LENGTH = 4096
_DURATION = re.compile(r"(\d+)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class AlphabetBody(_Body):
    alphabet: str = Field(min_length=2, max_length=65536)


class TemplateBody(_Body):
    type: Literal["regex"] = "regex"
    pattern: str = Field(min_length=1, max_length=1024)
    alphabet: str
    encode_format: str = Field(default="", max_length=1024)
    decode_formats: dict[str, str] = Field(default_factory=dict)


class TransformationBody(_Body):
    type: Literal["fpe", "masking", "tokenization"]
    template: str = ""
    tweak_source: Literal["supplied", "generated", "internal"] = "supplied"
    masking_character: str = Field(default="*", min_length=1, max_length=1)
    convergent: bool = False
    max_ttl: int | str = 0
    allowed_roles: list[str] = Field(default_factory=lambda: ["*"], max_length=256)
    decode_roles: list[str] = Field(default_factory=lambda: ["*"], max_length=256)


class TransformRoleBody(_Body):
    transformations: list[str] = Field(max_length=256)
    scopes: list[str] = Field(default_factory=list, max_length=256)


class ItemBody(_Body):
    value: str = Field(max_length=MAX_VALUE_LENGTH)
    tweak: str | None = Field(default=None, max_length=64)
    ttl: int | str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class UseBody(_Body):
    """One ``value`` (with its tweak, ttl and metadata) or a ``batch_input``."""

    transformation: str
    value: str | None = Field(default=None, max_length=MAX_VALUE_LENGTH)
    tweak: str | None = Field(default=None, max_length=64)
    ttl: int | str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    batch_input: list[ItemBody] | None = Field(default=None, max_length=MAX_BATCH)


class TokenBody(_Body):
    transformation: str
    value: str = Field(max_length=MAX_VALUE_LENGTH)


def transform_router(backend: AdminBackend, engine: Engine) -> APIRouter:
    router = APIRouter(prefix="/v1/transform", tags=["transform"])
    state = engine.state

    async def caller(request: Request) -> Caller:
        return await authenticate(backend, request)

    Auth = Annotated[Caller, Depends(caller)]

    def reader(who: Caller) -> None:
        if who.kind == TokenKind.SCOPED:
            raise ApiError(403, "Transform's configuration is cluster-wide: read it with a "
                                "root or read-only token")

    def writer(who: Caller) -> None:
        if who.kind != TokenKind.ROOT:
            raise ApiError(403, "changing Transform's configuration needs a root token")

    # Alphabets.

    @router.get("/alphabet")
    async def list_alphabets(who: Auth) -> dict[str, Any]:
        reader(who)
        await backend.barrier()
        return {"keys": state.alphabets()}

    @router.get("/alphabet/{name:path}")
    async def read_alphabet(name: str, who: Auth) -> dict[str, Any]:
        reader(who)
        await backend.barrier()
        found = state.alphabet(name)
        if found is None:
            raise ApiError(404, f"no alphabet named {name}")
        return {"name": found.name, "alphabet": found.characters}

    @router.post("/alphabet/{name:path}")
    async def write_alphabet(name: str, body: AlphabetBody, who: Auth) -> dict[str, Any]:
        """A custom alphabet: 2 to 65,536 distinct characters, in the order FF3-1 numbers them."""
        writer(who)
        await backend.write(WriteAlphabet(Alphabet(name, body.alphabet)))
        log.info("transform_alphabet_written name=%s size=%d by=%s", name, len(body.alphabet),
                 who.accessor)
        return {"name": name, "size": len(body.alphabet)}

    @router.delete("/alphabet/{name:path}")
    async def delete_alphabet(name: str, who: Auth) -> dict[str, Any]:
        writer(who)
        await backend.write(DeleteAlphabet(name))
        log.info("transform_alphabet_deleted name=%s by=%s", name, who.accessor)
        return {"name": name, "deleted": True}

    # Templates.

    @router.get("/template")
    async def list_templates(who: Auth) -> dict[str, Any]:
        reader(who)
        await backend.barrier()
        return {"keys": state.templates()}

    @router.get("/template/{name:path}")
    async def read_template(name: str, who: Auth) -> dict[str, Any]:
        reader(who)
        await backend.barrier()
        found = state.template(name)
        if found is None:
            raise ApiError(404, f"no template named {name}")
        return _template_view(found)

    @router.post("/template/{name:path}")
    async def write_template(name: str, body: TemplateBody, who: Auth) -> dict[str, Any]:
        """A regular expression whose groups hold the characters to transform."""
        writer(who)
        template = Template(name, body.pattern, body.alphabet, body.encode_format,
                            tuple(sorted(body.decode_formats.items())))
        await backend.write(WriteTemplate(template))
        log.info("transform_template_written name=%s by=%s", name, who.accessor)
        return _template_view(template)

    @router.delete("/template/{name:path}")
    async def delete_template(name: str, who: Auth) -> dict[str, Any]:
        writer(who)
        await backend.write(DeleteTemplate(name))
        log.info("transform_template_deleted name=%s by=%s", name, who.accessor)
        return {"name": name, "deleted": True}

    # Transformations.

    @router.get("/transformation")
    async def list_transformations(who: Auth) -> dict[str, Any]:
        reader(who)
        await backend.barrier()
        return {"keys": state.transformations()}

    @router.get("/transformation/{name}")
    async def read_transformation(name: str, who: Auth) -> dict[str, Any]:
        reader(who)
        await backend.barrier()
        return _transformation_view(_transformation(engine, name))

    @router.post("/transformation/{name}")
    async def write_transformation(name: str, body: TransformationBody,
                                   who: Auth) -> dict[str, Any]:
        """Create (the cluster draws its key) or update a transformation."""
        writer(who)
        kind = TransformationType(body.type)
        if kind == TransformationType.TOKENIZATION and body.template:
            raise ApiError(400, "tokenization takes no template: it replaces whole values")
        draft = Transformation(
            name, kind, body.template, tuple(body.allowed_roles), tuple(body.decode_roles),
            TweakSource(body.tweak_source), body.masking_character, body.convergent,
            _duration("max_ttl", body.max_ttl), created_at=int(time.time()))
        if kind != TransformationType.MASKING:
            await backend.barrier()
            if state.transformation(name) is None:
                draft = _guarded(lambda: engine.with_new_key(draft))
        await backend.write(WriteTransformation(draft))
        log.info("transform_transformation_written name=%s type=%s by=%s", name, kind.value,
                 who.accessor)
        return _transformation_view(_transformation(engine, name))

    @router.delete("/transformation/{name}")
    async def delete_transformation(name: str, who: Auth) -> dict[str, Any]:
        """Delete a transformation, its key and every token it made."""
        writer(who)
        await backend.write(DeleteTransformation(name))
        log.info("transform_transformation_deleted name=%s by=%s", name, who.accessor)
        return {"name": name, "deleted": True}

    # Roles.

    @router.get("/role")
    async def list_roles(who: Auth) -> dict[str, Any]:
        reader(who)
        await backend.barrier()
        return {"keys": state.roles()}

    @router.get("/role/{name}")
    async def read_role(name: str, who: Auth) -> dict[str, Any]:
        reader(who)
        await backend.barrier()
        return _role_view(_role(engine, name))

    @router.post("/role/{name}")
    async def write_role(name: str, body: TransformRoleBody, who: Auth) -> dict[str, Any]:
        """The transformations a role may use, and the scopes whose tokens may use it."""
        writer(who)
        role = TransformRole(name, tuple(body.transformations), tuple(body.scopes),
                             int(time.time()))
        await backend.write(WriteTransformRole(role))
        log.info("transform_role_written name=%s by=%s", name, who.accessor)
        return _role_view(_role(engine, name))

    @router.delete("/role/{name}")
    async def delete_role(name: str, who: Auth) -> dict[str, Any]:
        writer(who)
        await backend.write(DeleteTransformRole(name))
        log.info("transform_role_deleted name=%s by=%s", name, who.accessor)
        return {"name": name, "deleted": True}

    # Use: encode, decode, tokens.

    async def permitted(who: Caller, role_name: str, transformation_name: str,
                        *, decode: bool) -> Transformation:
        await backend.barrier()
        role = _role(engine, role_name)
        if who.kind == TokenKind.READ_ONLY or (
                who.kind == TokenKind.SCOPED and who.scope not in role.scopes):
            raise ApiError(403, f"this token may not use role {role_name}: use a root token, "
                                "or a token of a scope the role lists")
        if transformation_name not in role.transformations:
            raise ApiError(403, f"role {role_name} does not list transformation "
                                f"{transformation_name}")
        transformation = _transformation(engine, transformation_name)
        if not transformation.allows(role_name, decode=decode):
            what = "decode with" if decode else "use"
            raise ApiError(403, f"transformation {transformation_name} does not allow role "
                                f"{role_name} to {what} it")
        return transformation

    @router.post("/encode/{role}")
    async def encode(role: str, body: UseBody, who: Auth) -> dict[str, Any]:
        """Encode one value or a batch: FPE, masking or tokenization."""
        transformation = await permitted(who, role, body.transformation, decode=False)
        items = _items(body)
        now = int(time.time())
        results, command = await asyncio.to_thread(
            _guarded, lambda: engine.encode(transformation, items, now))
        if command is not None:
            # A token is answered only once a majority holds it.
            await backend.write(command)
        log.info("transform_encoded role=%s transformation=%s count=%d by=%s", role,
                 transformation.name, len(items), who.accessor)
        return _answer(body, [_encoded_view(result) for result in results])

    @router.post("/decode/{role}")
    async def decode(role: str, body: UseBody, who: Auth) -> dict[str, Any]:
        return await _decode(role, None, body, who)

    @router.post("/decode/{role}/{decode_format}")
    async def decode_with_format(role: str, decode_format: str, body: UseBody,
                                 who: Auth) -> dict[str, Any]:
        """Decode, laying the groups out with the template's named decode format."""
        return await _decode(role, decode_format, body, who)

    async def _decode(role: str, decode_format: str | None, body: UseBody,
                      who: Caller) -> dict[str, Any]:
        transformation = await permitted(who, role, body.transformation, decode=True)
        items = _items(body)
        now = int(time.time())
        results = await asyncio.to_thread(
            _guarded, lambda: engine.decode(transformation, items, now, decode_format))
        log.info("transform_decoded role=%s transformation=%s count=%d by=%s", role,
                 transformation.name, len(items), who.accessor)
        return _answer(body, [_decoded_view(result) for result in results])

    @router.post("/tokens/lookup/{role}")
    async def lookup(role: str, body: TokenBody, who: Auth) -> dict[str, Any]:
        """The live token of a value (convergent tokenization only)."""
        transformation = await permitted(who, role, body.transformation, decode=False)
        now = int(time.time())
        return {"tokens": _guarded(lambda: engine.lookup(transformation, body.value, now))}

    @router.post("/tokens/metadata/{role}")
    async def metadata(role: str, body: TokenBody, who: Auth) -> dict[str, Any]:
        """A token's metadata, creation and expiration times; never its value."""
        transformation = await permitted(who, role, body.transformation, decode=False)
        if transformation.type != TransformationType.TOKENIZATION:
            raise ApiError(400, f"transformation {transformation.name} makes no tokens")
        now = int(time.time())
        token_id, record = _guarded(lambda: engine.token_record(transformation, body.value,
                                                                now))
        metadata = _guarded(lambda: engine.token_metadata(transformation, token_id, record))
        return {"metadata": metadata, "created_at": record.created_at,
                "expires_at": record.expires_at}

    @router.post("/tokens/tidy/{transformation}")
    async def tidy(transformation: str, who: Auth) -> dict[str, Any]:
        """Drop the expired tokens of a tokenization transformation from the state."""
        writer(who)
        removed = await backend.write(PurgeExpiredTokens(transformation, int(time.time())))
        log.info("transform_tokens_tidied transformation=%s removed=%s by=%s", transformation,
                 removed, who.accessor)
        return {"transformation": transformation, "removed": removed}

    return router


# Helpers.


def _guarded(action: Any) -> Any:
    """Run ``action``; Transform's refusals become the caller's 4xx, a sealed node a 503."""
    try:
        return action()
    except NodeSealedError as error:
        raise ApiError(503, str(error)) from None
    except SealedError:
        raise ApiError(503, "this node is sealed: unseal it, or use another node") from None
    except TransformError as error:
        raise ApiError(400, str(error)) from None
    except BarrierError:
        log.error("transform_key_unreadable")
        raise ApiError(500, "the transformation's key does not open with this node's "
                            "keyring") from None


def _items(body: UseBody) -> list[EncodeItem]:
    if (body.value is None) == (body.batch_input is None):
        raise ApiError(400, "give either value or batch_input, exactly one of them")
    if body.batch_input is not None:
        if not body.batch_input:
            raise ApiError(400, "batch_input is empty")
        # The request's tweak, ttl and metadata stand for items that give none.
        return [EncodeItem(item.value, item.tweak or body.tweak, _ttl(item.ttl or body.ttl),
                           item.metadata or body.metadata)
                for item in body.batch_input]
    assert body.value is not None
    return [EncodeItem(body.value, body.tweak, _ttl(body.ttl), body.metadata)]


def _answer(body: UseBody, views: list[dict[str, Any]]) -> dict[str, Any]:
    if body.batch_input is not None:
        return {"batch_results": views}
    if "error" in views[0]:
        raise ApiError(400, views[0]["error"])
    return views[0]


def _encoded_view(result: Encoded | TransformError) -> dict[str, Any]:
    if isinstance(result, TransformError):
        return {"error": str(result)}
    view: dict[str, Any] = {"encoded_value": result.value}
    if result.tweak is not None:
        view["tweak"] = result.tweak
    if result.expires_at is not None:
        view["expires_at"] = result.expires_at
    return view


def _decoded_view(result: str | TransformError) -> dict[str, Any]:
    if isinstance(result, TransformError):
        return {"error": str(result)}
    return {"decoded_value": result}


def _ttl(value: int | str | None) -> int | None:
    return None if value is None else _duration("ttl", value)


def _duration(field: str, value: int | str) -> int:
    if isinstance(value, int):
        return value
    match = _DURATION.fullmatch(value.strip())
    if not match:
        raise ApiError(400, f"{field} {value!r} is not a duration: give seconds, or a number "
                            "with s, m, h or d (90s, 30m, 24h, 7d)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _transformation(engine: Engine, name: str) -> Transformation:
    found = engine.state.transformation(name)
    if found is None:
        raise ApiError(404, f"no transformation named {name}")
    return found


def _role(engine: Engine, name: str) -> TransformRole:
    found = engine.state.role(name)
    if found is None:
        raise ApiError(404, f"no transform role named {name}; write it first")
    return found


def _template_view(template: Template) -> dict[str, Any]:
    return {"name": template.name, "type": "regex", "pattern": template.pattern,
            "alphabet": template.alphabet, "encode_format": template.encode_format,
            "decode_formats": dict(template.decode_formats)}


def _transformation_view(transformation: Transformation) -> dict[str, Any]:
    view: dict[str, Any] = {
        "name": transformation.name,
        "type": transformation.type.value,
        "allowed_roles": list(transformation.allowed_roles),
        "created_at": transformation.created_at,
    }
    if transformation.type != TransformationType.TOKENIZATION:
        view["template"] = transformation.template
    if transformation.type == TransformationType.FPE:
        view["tweak_source"] = transformation.tweak_source.value
    if transformation.type == TransformationType.MASKING:
        view["masking_character"] = transformation.masking_character
    else:
        view["decode_roles"] = list(transformation.decode_roles)
    if transformation.type == TransformationType.TOKENIZATION:
        view.update(convergent=transformation.convergent,
                    max_ttl=transformation.max_ttl_seconds)
    return view


def _role_view(role: TransformRole) -> dict[str, Any]:
    return {"name": role.name, "transformations": list(role.transformations),
            "scopes": list(role.scopes), "created_at": role.created_at}
