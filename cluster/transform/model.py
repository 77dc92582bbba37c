"""Transform's vocabulary: alphabets, templates, transformations and roles.

An *alphabet* is the ordered set of characters FF3-1 works over (its size is the
radix). A *template* is a regular expression whose capture groups hold the characters
to transform, with an optional encode format and named decode formats that rearrange
the groups ("$1-$2"). A *transformation* is one of three types over a template:

- ``fpe``: FF3-1 under an AES-256 key the cluster draws, with a tweak that is supplied
  by the caller, generated per value and returned, or internal to the transformation;
- ``masking``: each captured character replaced by a masking character; irreversible;
- ``tokenization``: the value replaced by a random token, the value kept encrypted in
  the replicated state; optionally convergent (the same value gives the same token)
  and expiring.

A *role* names the transformations it may use and the tenancy scopes whose scoped
admin tokens may use it (see cluster/transform/api.py for who may do what).

Built-in alphabets and templates are named ``builtin/...``; they are not stored and
cannot be written or deleted. Everything here is a frozen dataclass pickled into the
Raft journal: add fields with defaults, never rename.
"""

from __future__ import annotations

import enum
import re
import string
from dataclasses import dataclass, field

from .ff3 import MAX_RADIX, MIN_RADIX

BUILTIN_PREFIX = "builtin/"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
# A template's regular expression; long patterns are a denial-of-service lever.
MAX_PATTERN_LENGTH = 1024
MAX_FORMATS = 32
# Metadata kept with a token, and its size, as a client gives it.
MAX_METADATA_BYTES = 4096

BUILTIN_ALPHABETS: dict[str, str] = {
    "builtin/numeric": string.digits,
    "builtin/alphalower": string.ascii_lowercase,
    "builtin/alphaupper": string.ascii_uppercase,
    "builtin/alphanumericlower": string.digits + string.ascii_lowercase,
    "builtin/alphanumericupper": string.digits + string.ascii_uppercase,
    "builtin/alphanumeric": string.digits + string.ascii_lowercase + string.ascii_uppercase,
}


class TransformationType(enum.Enum):
    """The values are in the journal: never rename."""

    FPE = "fpe"
    MASKING = "masking"
    TOKENIZATION = "tokenization"


class TweakSource(enum.Enum):
    """Where an FPE transformation's 56-bit tweak comes from. In the journal: never rename."""

    # The caller gives it with every encode and decode.
    SUPPLIED = "supplied"
    # Encode draws one per value and returns it; decode needs it back.
    GENERATED = "generated"
    # One tweak, drawn when the transformation was created; callers never see it.
    INTERNAL = "internal"


@dataclass(frozen=True)
class Alphabet:
    name: str
    characters: str


@dataclass(frozen=True)
class Template:
    name: str
    pattern: str
    alphabet: str
    # "$1-$2" style; empty keeps the input's own layout around the groups.
    encode_format: str = ""
    decode_formats: tuple[tuple[str, str], ...] = ()

    def decode_format(self, name: str) -> str | None:
        return dict(self.decode_formats).get(name)


BUILTIN_TEMPLATES: dict[str, Template] = {
    "builtin/creditcardnumber": Template(
        "builtin/creditcardnumber", r"(\d{4})[- ]?(\d{4})[- ]?(\d{4})[- ]?(\d{4})",
        "builtin/numeric"),
    "builtin/socialsecuritynumber": Template(
        "builtin/socialsecuritynumber", r"(\d{3})[- ]?(\d{2})[- ]?(\d{4})",
        "builtin/numeric"),
}


@dataclass(frozen=True)
class Transformation:
    """A transformation; its key is barrier ciphertext, drawn by the node that created it."""

    name: str
    type: TransformationType
    template: str = ""
    # Roles that may encode with it; "*" for every role that lists it.
    allowed_roles: tuple[str, ...] = ("*",)
    # Roles that may decode (fpe, tokenization); "*" for every allowed role.
    decode_roles: tuple[str, ...] = ("*",)
    tweak_source: TweakSource = TweakSource.SUPPLIED
    masking_character: str = "*"
    convergent: bool = False
    # Tokens expire this long after they are made unless the caller asks for less;
    # 0: they never expire unless the caller gives a ttl.
    max_ttl_seconds: int = 0
    # AES-256 key (fpe) or HMAC key (tokenization), sealed by the barrier.
    key_sealed: bytes = field(default=b"", repr=False)
    # The internal tweak (fpe with tweak_source internal), 7 bytes.
    internal_tweak: bytes = field(default=b"", repr=False)
    created_at: int = 0

    def allows(self, role: str, *, decode: bool) -> bool:
        allowed = "*" in self.allowed_roles or role in self.allowed_roles
        if not decode:
            return allowed
        return allowed and ("*" in self.decode_roles or role in self.decode_roles)


@dataclass(frozen=True)
class TransformRole:
    name: str
    transformations: tuple[str, ...]
    # Tenancy scopes whose scoped admin tokens may encode and decode through the role.
    scopes: tuple[str, ...] = ()
    created_at: int = 0


@dataclass(frozen=True)
class TokenRecord:
    """One token of a tokenization transformation; the token text itself is not kept.

    Records are found by ``token_id``, an HMAC of the token under the transformation's
    key, so the state alone does not give the tokens away.
    """

    value_sealed: bytes = field(repr=False)
    created_at: int
    # Seconds since the epoch; None: never expires.
    expires_at: int | None = None
    # Plain only in records made before metadata was sealed; new records keep it empty.
    metadata: tuple[tuple[str, str], ...] = ()
    # The metadata pairs as JSON, sealed by the barrier keyring (engine.py,
    # metadata_associated_data): callers put what they like there, so it may be secret.
    metadata_sealed: bytes = field(default=b"", repr=False)


# Checks shared by apply and the admin API.


def check_name(kind: str, name: str) -> str | None:
    if name.startswith(BUILTIN_PREFIX):
        return f"{kind} names starting with {BUILTIN_PREFIX} are reserved for built-ins"
    if not NAME_PATTERN.fullmatch(name):
        return f"{kind} name {name!r} is not allowed: use {NAME_RULE}"
    return None


def check_alphabet(characters: str) -> str | None:
    if not MIN_RADIX <= len(characters) <= MAX_RADIX:
        return (f"an alphabet has {MIN_RADIX} to {MAX_RADIX} characters; this one has "
                f"{len(characters)}")
    seen: set[str] = set()
    for character in characters:
        if character in seen:
            return f"the alphabet repeats {character!r}; each character may appear once"
        seen.add(character)
    return None


def compile_pattern(pattern: str) -> re.Pattern[str] | str:
    """The compiled pattern, or what is wrong with it."""
    if not pattern or len(pattern) > MAX_PATTERN_LENGTH:
        return f"the pattern must be 1 to {MAX_PATTERN_LENGTH} characters"
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        return f"the pattern is not a regular expression: {error}"
    if compiled.groups == 0:
        return ("the pattern has no capture group: put the characters to transform in "
                "parentheses, such as (\\d{4})-(\\d{4})")
    return compiled


_GROUP_REFERENCE = re.compile(r"\$(?:\{(\d+)\}|(\d+))")


def check_format(fmt: str, groups: int) -> str | None:
    for match in _GROUP_REFERENCE.finditer(fmt):
        number = int(match.group(1) or match.group(2))
        if not 1 <= number <= groups:
            return f"the format {fmt!r} names group ${number}; the pattern has {groups}"
    return None


def check_template(template: Template, alphabets: dict[str, str]) -> str | None:
    compiled = compile_pattern(template.pattern)
    if isinstance(compiled, str):
        return compiled
    if template.alphabet not in alphabets:
        return f"no alphabet named {template.alphabet}; write it first or use a builtin/ one"
    if len(template.decode_formats) > MAX_FORMATS:
        return f"at most {MAX_FORMATS} decode formats"
    for fmt in (template.encode_format, *(f for _, f in template.decode_formats)):
        problem = check_format(fmt, compiled.groups)
        if problem:
            return problem
    for name, _ in template.decode_formats:
        if not NAME_PATTERN.fullmatch(name):
            return f"decode format name {name!r} is not allowed: use {NAME_RULE}"
    return None


def check_transformation(transformation: Transformation, templates: set[str]) -> str | None:
    kind = transformation.type
    if kind in (TransformationType.FPE, TransformationType.MASKING):
        if not transformation.template:
            return f"a {kind.value} transformation needs a template"
        if transformation.template not in templates:
            return (f"no template named {transformation.template}; write it first or use "
                    "builtin/creditcardnumber or builtin/socialsecuritynumber")
    if kind == TransformationType.MASKING and len(transformation.masking_character) != 1:
        return "masking_character must be exactly one character"
    if transformation.max_ttl_seconds < 0:
        return "max_ttl cannot be negative"
    for role in (*transformation.allowed_roles, *transformation.decode_roles):
        if role != "*" and not NAME_PATTERN.fullmatch(role):
            return f"role name {role!r} is not allowed: use {NAME_RULE} or *"
    return None


def format_groups(fmt: str, groups: list[str]) -> str:
    """``fmt`` with each $N (or ${N}) replaced by group N."""
    return _GROUP_REFERENCE.sub(lambda m: groups[int(m.group(1) or m.group(2)) - 1], fmt)
