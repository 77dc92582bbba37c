"""Transform's replicated tables and the commands that change them.

The rules are the tenancy's (cluster/tenancy.py): a command carries every value drawn
at random or from the clock, drawn by the node that received the request (keys,
internal tweaks, tokens, times); ``apply`` checks the whole command against the state
before it changes anything and never raises; records are frozen and replaced whole.

Keys and token values arrive here already sealed by the barrier (cluster/barrier.py),
so the journal and snapshots hold ciphertext only. Tokens are kept by an HMAC of the
token (``TokenRecord``), never by the token itself.

Class and field names are pickled into the journal: add fields with defaults, never
rename.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..tenancy import Done, Problem, Refused, TenancyOutcome
from .model import (
    BUILTIN_ALPHABETS,
    BUILTIN_PREFIX,
    BUILTIN_TEMPLATES,
    Alphabet,
    Template,
    TokenRecord,
    Transformation,
    TransformationType,
    TransformRole,
    TweakSource,
    check_alphabet,
    check_name,
    check_template,
    check_transformation,
)

TWEAK_BYTES = 7


@dataclass(frozen=True)
class WriteAlphabet:
    alphabet: Alphabet


@dataclass(frozen=True)
class DeleteAlphabet:
    name: str


@dataclass(frozen=True)
class WriteTemplate:
    template: Template


@dataclass(frozen=True)
class DeleteTemplate:
    name: str


@dataclass(frozen=True)
class WriteTransformation:
    """Create or update; on update the stored key and internal tweak are kept."""

    transformation: Transformation


@dataclass(frozen=True)
class DeleteTransformation:
    """Delete a transformation and every token it made."""

    name: str


@dataclass(frozen=True)
class WriteTransformRole:
    role: TransformRole


@dataclass(frozen=True)
class DeleteTransformRole:
    name: str


@dataclass(frozen=True)
class StoreTokens:
    """Tokens made by one encode call (one value or a batch), committed together.

    A token id already stored (a convergent token made again) keeps its first record
    while that one lives.
    """

    transformation: str
    tokens: tuple[tuple[str, TokenRecord], ...]


@dataclass(frozen=True)
class PurgeExpiredTokens:
    transformation: str
    now: int


TransformCommand = (
    WriteAlphabet
    | DeleteAlphabet
    | WriteTemplate
    | DeleteTemplate
    | WriteTransformation
    | DeleteTransformation
    | WriteTransformRole
    | DeleteTransformRole
    | StoreTokens
    | PurgeExpiredTokens
)
TRANSFORM_COMMANDS = TransformCommand.__args__


class TransformState:
    """The Transform tables; apply runs on the Raft thread, reads on any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._alphabets: dict[str, Alphabet] = {}
        self._templates: dict[str, Template] = {}
        self._transformations: dict[str, Transformation] = {}
        self._roles: dict[str, TransformRole] = {}
        self._tokens: dict[str, dict[str, TokenRecord]] = {}

    # Reads. Built-ins are answered as if stored.

    def alphabet(self, name: str) -> Alphabet | None:
        with self._lock:
            return self._alphabet(name)

    def alphabets(self) -> list[str]:
        with self._lock:
            return sorted(BUILTIN_ALPHABETS) + sorted(self._alphabets)

    def template(self, name: str) -> Template | None:
        with self._lock:
            return BUILTIN_TEMPLATES.get(name) or self._templates.get(name)

    def templates(self) -> list[str]:
        with self._lock:
            return sorted(BUILTIN_TEMPLATES) + sorted(self._templates)

    def transformation(self, name: str) -> Transformation | None:
        with self._lock:
            return self._transformations.get(name)

    def transformations(self) -> list[str]:
        with self._lock:
            return sorted(self._transformations)

    def role(self, name: str) -> TransformRole | None:
        with self._lock:
            return self._roles.get(name)

    def roles(self) -> list[str]:
        with self._lock:
            return sorted(self._roles)

    def token(self, transformation: str, token_id: str) -> TokenRecord | None:
        with self._lock:
            return self._tokens.get(transformation, {}).get(token_id)

    def token_count(self, transformation: str) -> int:
        with self._lock:
            return len(self._tokens.get(transformation, {}))

    # The state machine contract.

    def apply(self, command: object) -> TenancyOutcome:
        with self._lock:
            handler = _APPLIERS.get(type(command))
            if handler is None:
                return Refused(Problem.INVALID, f"unknown command {type(command).__name__}")
            return handler(self, command)

    def snapshot(self) -> bytes:
        with self._lock:
            tables = {
                "alphabets": self._alphabets,
                "templates": self._templates,
                "transformations": self._transformations,
                "roles": self._roles,
                "tokens": self._tokens,
            }
            return pickle.dumps(tables, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, data: bytes | None) -> None:
        tables = pickle.loads(data) if data is not None else {}
        with self._lock:
            self._alphabets = tables.get("alphabets", {})
            self._templates = tables.get("templates", {})
            self._transformations = tables.get("transformations", {})
            self._roles = tables.get("roles", {})
            self._tokens = tables.get("tokens", {})

    # One method per command; each checks everything before it changes anything.

    def _alphabet(self, name: str) -> Alphabet | None:
        builtin = BUILTIN_ALPHABETS.get(name)
        return Alphabet(name, builtin) if builtin is not None else self._alphabets.get(name)

    def _alphabet_table(self) -> dict[str, str]:
        table = dict(BUILTIN_ALPHABETS)
        table.update({name: a.characters for name, a in self._alphabets.items()})
        return table

    def _write_alphabet(self, command: WriteAlphabet) -> TenancyOutcome:
        alphabet = command.alphabet
        problem = check_name("alphabet", alphabet.name) or check_alphabet(alphabet.characters)
        if problem:
            return Refused(Problem.INVALID, problem)
        existing = self._alphabets.get(alphabet.name)
        if existing is not None and existing.characters != alphabet.characters and (
                self._users_of_alphabet(alphabet.name)):
            # Changing the characters under a template would change what it decodes to.
            return Refused(Problem.CONFLICT, f"alphabet {alphabet.name} is used by "
                                             "templates; write a new alphabet instead")
        self._alphabets[alphabet.name] = alphabet
        return Done()

    def _users_of_alphabet(self, name: str) -> list[str]:
        return sorted(t.name for t in self._templates.values() if t.alphabet == name)

    def _delete_alphabet(self, command: DeleteAlphabet) -> TenancyOutcome:
        if command.name.startswith(BUILTIN_PREFIX):
            return Refused(Problem.INVALID, "built-in alphabets cannot be deleted")
        if command.name not in self._alphabets:
            return Refused(Problem.NOT_FOUND, f"no alphabet named {command.name}")
        users = self._users_of_alphabet(command.name)
        if users:
            return Refused(Problem.CONFLICT, f"alphabet {command.name} is used by template(s) "
                                             f"{', '.join(users)}; delete them first")
        del self._alphabets[command.name]
        return Done()

    def _write_template(self, command: WriteTemplate) -> TenancyOutcome:
        template = command.template
        problem = check_name("template", template.name) or check_template(
            template, self._alphabet_table())
        if problem:
            return Refused(Problem.INVALID, problem)
        self._templates[template.name] = template
        return Done()

    def _delete_template(self, command: DeleteTemplate) -> TenancyOutcome:
        if command.name.startswith(BUILTIN_PREFIX):
            return Refused(Problem.INVALID, "built-in templates cannot be deleted")
        if command.name not in self._templates:
            return Refused(Problem.NOT_FOUND, f"no template named {command.name}")
        users = sorted(t.name for t in self._transformations.values()
                       if t.template == command.name)
        if users:
            return Refused(Problem.CONFLICT, f"template {command.name} is used by "
                                             f"transformation(s) {', '.join(users)}; delete "
                                             "them first")
        del self._templates[command.name]
        return Done()

    def _write_transformation(self, command: WriteTransformation) -> TenancyOutcome:
        new = command.transformation
        templates = set(BUILTIN_TEMPLATES) | set(self._templates)
        problem = check_name("transformation", new.name) or check_transformation(new, templates)
        if problem:
            return Refused(Problem.INVALID, problem)
        existing = self._transformations.get(new.name)
        if existing is None:
            problem = _missing_material(new)
            if problem:
                return Refused(Problem.INVALID, problem)
            self._transformations[new.name] = new
            if new.type == TransformationType.TOKENIZATION:
                self._tokens[new.name] = {}
            return Done()

        # An update: what decides how stored or encoded values read back cannot change.
        for what, old_value, new_value in (("type", existing.type, new.type),
                                           ("tweak_source", existing.tweak_source,
                                            new.tweak_source),
                                           ("convergent", existing.convergent, new.convergent)):
            if old_value != new_value:
                return Refused(Problem.CONFLICT, f"the {what} of transformation {new.name} "
                                                 "cannot change: values it encoded would "
                                                 "no longer decode; create a new one")
        self._transformations[new.name] = replace(
            new, key_sealed=existing.key_sealed, internal_tweak=existing.internal_tweak,
            created_at=existing.created_at)
        return Done()

    def _delete_transformation(self, command: DeleteTransformation) -> TenancyOutcome:
        if command.name not in self._transformations:
            return Refused(Problem.NOT_FOUND, f"no transformation named {command.name}")
        users = sorted(r.name for r in self._roles.values() if command.name in r.transformations)
        if users:
            return Refused(Problem.CONFLICT, f"transformation {command.name} is listed by "
                                             f"role(s) {', '.join(users)}; take it out of "
                                             "them first")
        del self._transformations[command.name]
        self._tokens.pop(command.name, None)
        return Done()

    def _write_role(self, command: WriteTransformRole) -> TenancyOutcome:
        role = command.role
        problem = check_name("role", role.name)
        if problem:
            return Refused(Problem.INVALID, problem)
        missing = sorted(set(role.transformations) - set(self._transformations))
        if missing:
            return Refused(Problem.NOT_FOUND, f"no transformation named {', '.join(missing)}; "
                                              "write it first")
        for scope in role.scopes:
            problem = check_name("scope", scope)
            if problem:
                return Refused(Problem.INVALID, problem)
        existing = self._roles.get(role.name)
        if existing is not None:
            role = replace(role, created_at=existing.created_at)
        self._roles[role.name] = role
        return Done()

    def _delete_role(self, command: DeleteTransformRole) -> TenancyOutcome:
        if command.name not in self._roles:
            return Refused(Problem.NOT_FOUND, f"no transform role named {command.name}")
        del self._roles[command.name]
        return Done()

    def _store_tokens(self, command: StoreTokens) -> TenancyOutcome:
        transformation = self._transformations.get(command.transformation)
        if transformation is None or transformation.type != TransformationType.TOKENIZATION:
            return Refused(Problem.NOT_FOUND, f"no tokenization transformation named "
                                              f"{command.transformation} (deleted?)")
        stored = self._tokens.setdefault(command.transformation, {})
        for token_id, record in command.tokens:
            existing = stored.get(token_id)
            # A convergent token made again keeps its record, unless that one expired.
            if existing is None or (existing.expires_at is not None
                                    and existing.expires_at <= record.created_at):
                stored[token_id] = record
        return Done(len(command.tokens))

    def _purge_expired(self, command: PurgeExpiredTokens) -> TenancyOutcome:
        if command.transformation not in self._tokens:
            return Refused(Problem.NOT_FOUND, f"no tokenization transformation named "
                                              f"{command.transformation}")
        stored = self._tokens[command.transformation]
        expired = [token_id for token_id, record in stored.items()
                   if record.expires_at is not None and record.expires_at <= command.now]
        for token_id in expired:
            del stored[token_id]
        return Done(len(expired))


def _missing_material(transformation: Transformation) -> str | None:
    """What a new transformation lacks that the receiving node should have drawn."""
    if transformation.type == TransformationType.MASKING:
        return None
    if not transformation.key_sealed:
        return "a new transformation needs its sealed key"
    if (transformation.type == TransformationType.FPE
            and transformation.tweak_source == TweakSource.INTERNAL
            and len(transformation.internal_tweak) != TWEAK_BYTES):
        return f"an internal tweak is {TWEAK_BYTES} bytes"
    return None


_APPLIERS: dict[type, Callable[[TransformState, Any], TenancyOutcome]] = {
    WriteAlphabet: TransformState._write_alphabet,
    DeleteAlphabet: TransformState._delete_alphabet,
    WriteTemplate: TransformState._write_template,
    DeleteTemplate: TransformState._delete_template,
    WriteTransformation: TransformState._write_transformation,
    DeleteTransformation: TransformState._delete_transformation,
    WriteTransformRole: TransformState._write_role,
    DeleteTransformRole: TransformState._delete_role,
    StoreTokens: TransformState._store_tokens,
    PurgeExpiredTokens: TransformState._purge_expired,
}
