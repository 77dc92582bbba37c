"""Encode and decode, on the node that received the request.

Nothing here goes through the Raft log but new tokens: FPE and masking are computed
from the replicated configuration after a read barrier, as Encrypt and Decrypt are
(kmip/crypto.py). Tokenization draws its tokens here and returns the ``StoreTokens``
command the caller commits before it answers, so a token is never handed out before a
majority holds it.

Keys and token values are sealed by the barrier (cluster/barrier.py, through the node's
``Seal``). Opened keys are cached per transformation while the node stays unsealed;
sealing the node empties the cache, as every call first asks the seal.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from .ff3 import TWEAK_BYTES, FF3Cipher, FF3Error
from .model import (
    MAX_METADATA_BYTES,
    Template,
    TokenRecord,
    Transformation,
    TransformationType,
    TweakSource,
    compile_pattern,
    format_groups,
)
from .state import StoreTokens, TransformState

KEY_BYTES = 32
# Random tokens: 24 bytes, 192 bits, written as 32 URL-safe characters.
TOKEN_BYTES = 24


class Sealer(Protocol):
    """What Transform needs of the node's seal (cluster/seal.py, ``Seal``)."""

    @property
    def sealed(self) -> bool: ...

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes: ...

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes: ...


class TransformError(ValueError):
    """A value or request Transform refuses; the message says what to fix."""


class NodeSealedError(TransformError):
    """The node holds no keyring; answered 503 (unseal it, or use another node)."""


@dataclass(frozen=True)
class EncodeItem:
    value: str
    # Base64 of 7 bytes, for fpe with a supplied tweak.
    tweak: str | None = None
    # Tokenization: seconds until the token expires (capped by the transformation's).
    ttl_seconds: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Encoded:
    value: str
    # The tweak of a generated-tweak fpe encode, base64; the caller needs it to decode.
    tweak: str | None = None
    expires_at: int | None = None


def key_associated_data(name: str) -> bytes:
    return b"keyquorum transform key\x00" + name.encode()


def token_associated_data(name: str, token_id: str) -> bytes:
    return b"keyquorum transform token\x00" + name.encode() + b"\x00" + token_id.encode()


def metadata_associated_data(name: str, token_id: str) -> bytes:
    return b"keyquorum transform token metadata\x00" + name.encode() + b"\x00" + token_id.encode()


class Engine:
    """Encode, decode and token lookups over one node's ``TransformState``."""

    def __init__(self, state: TransformState, sealer: Sealer) -> None:
        self.state = state
        self._sealer = sealer
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, bytes], bytes] = {}
        self._ciphers: dict[tuple[str, bytes, int], FF3Cipher] = {}

    # Making transformations: the material a new one needs, drawn on this node.

    def with_new_key(self, transformation: Transformation) -> Transformation:
        self._require_unsealed()
        key = secrets.token_bytes(KEY_BYTES)
        sealed = self._sealer.encrypt(key, key_associated_data(transformation.name))
        tweak = secrets.token_bytes(TWEAK_BYTES)
        return replace(transformation, key_sealed=sealed, internal_tweak=tweak)

    # Encode and decode.

    def encode(self, transformation: Transformation, items: Sequence[EncodeItem],
               now: int) -> tuple[list[Encoded | TransformError], StoreTokens | None]:
        """One result per item, and for tokenization the command that stores the tokens."""
        self._require_unsealed()
        kind = transformation.type
        if kind == TransformationType.TOKENIZATION:
            return self._tokenize(transformation, items, now)
        results: list[Encoded | TransformError] = []
        for item in items:
            try:
                if kind == TransformationType.MASKING:
                    results.append(Encoded(self._mask(transformation, item.value)))
                else:
                    results.append(self._fpe_encode(transformation, item))
            except TransformError as error:
                results.append(error)
        return results, None

    def decode(self, transformation: Transformation, items: Sequence[EncodeItem],
               now: int, decode_format: str | None = None) -> list[str | TransformError]:
        self._require_unsealed()
        kind = transformation.type
        if kind == TransformationType.MASKING:
            raise TransformError(f"transformation {transformation.name} masks: masking is "
                                 "irreversible and has nothing to decode")
        if kind == TransformationType.TOKENIZATION and decode_format is not None:
            raise TransformError("decode formats belong to templates; tokenization has none")
        results: list[str | TransformError] = []
        for item in items:
            try:
                if kind == TransformationType.TOKENIZATION:
                    results.append(self._detokenize(transformation, item.value, now))
                else:
                    results.append(self._fpe_decode(transformation, item, decode_format))
            except TransformError as error:
                results.append(error)
        return results

    # FPE.

    def _fpe_encode(self, transformation: Transformation, item: EncodeItem) -> Encoded:
        template, pattern, alphabet = self._template(transformation)
        tweak, returned = self._encode_tweak(transformation, item.tweak)
        match = _match(pattern, item.value, template)
        groups = [group or "" for group in match.groups()]
        encrypted = self._ff3(transformation, alphabet, "".join(groups), tweak, encrypt=True)
        pieces = _split_like(encrypted, groups)
        if template.encode_format:
            out = format_groups(template.encode_format, pieces)
        else:
            out = _replace_groups(match, pieces)
        return Encoded(out, tweak=returned)

    def _fpe_decode(self, transformation: Transformation, item: EncodeItem,
                    decode_format: str | None) -> str:
        template, pattern, alphabet = self._template(transformation)
        fmt = None
        if decode_format is not None:
            fmt = template.decode_format(decode_format)
            if fmt is None:
                known = ", ".join(name for name, _ in template.decode_formats) or "none"
                raise TransformError(f"template {template.name} has no decode format "
                                     f"{decode_format!r} (it has: {known})")
        tweak = self._decode_tweak(transformation, item.tweak)
        match = _match(pattern, item.value, template)
        groups = [group or "" for group in match.groups()]
        decrypted = self._ff3(transformation, alphabet, "".join(groups), tweak, encrypt=False)
        pieces = _split_like(decrypted, groups)
        return format_groups(fmt, pieces) if fmt is not None else _replace_groups(match, pieces)

    def _ff3(self, transformation: Transformation, alphabet: str, text: str, tweak: bytes,
             *, encrypt: bool) -> str:
        index = _index(alphabet)
        try:
            numerals = [index[character] for character in text]
        except KeyError as error:
            raise TransformError(f"the character {error.args[0]!r} is not in the template's "
                                 "alphabet") from None
        cipher = self._cipher(transformation, len(alphabet))
        try:
            out = (cipher.encrypt if encrypt else cipher.decrypt)(numerals, tweak)
        except FF3Error as error:
            raise TransformError(str(error)) from None
        return "".join(alphabet[numeral] for numeral in out)

    def _encode_tweak(self, transformation: Transformation,
                      given: str | None) -> tuple[bytes, str | None]:
        source = transformation.tweak_source
        if source == TweakSource.GENERATED:
            if given is not None:
                raise TransformError(f"transformation {transformation.name} generates its "
                                     "tweaks: do not give one to encode")
            tweak = secrets.token_bytes(TWEAK_BYTES)
            return tweak, base64.b64encode(tweak).decode()
        return self._decode_tweak(transformation, given), None

    def _decode_tweak(self, transformation: Transformation, given: str | None) -> bytes:
        source = transformation.tweak_source
        if source == TweakSource.INTERNAL:
            if given is not None:
                raise TransformError(f"transformation {transformation.name} uses an internal "
                                     "tweak: do not give one")
            return transformation.internal_tweak
        if given is None:
            what = "the tweak encode returned" if source == TweakSource.GENERATED else "a tweak"
            raise TransformError(f"transformation {transformation.name} needs {what}: give "
                                 f"tweak, base64 of {TWEAK_BYTES} bytes (56 bits)")
        try:
            tweak = base64.b64decode(given, validate=True)
        except (binascii.Error, ValueError):
            raise TransformError("the tweak is not base64") from None
        if len(tweak) != TWEAK_BYTES:
            raise TransformError(f"the tweak must be {TWEAK_BYTES} bytes (56 bits) for FF3-1, "
                                 f"base64-encoded; this one is {len(tweak)} bytes")
        return tweak

    # Masking.

    def _mask(self, transformation: Transformation, value: str) -> str:
        template, pattern, _ = self._template(transformation)
        match = _match(pattern, value, template)
        masked = [transformation.masking_character * len(group or "") for group in match.groups()]
        return _replace_groups(match, masked)

    # Tokenization.

    def _tokenize(self, transformation: Transformation, items: Sequence[EncodeItem],
                  now: int) -> tuple[list[Encoded | TransformError], StoreTokens | None]:
        key = self._key(transformation)
        results: list[Encoded | TransformError] = []
        stored: list[tuple[str, TokenRecord]] = []
        for item in items:
            try:
                expires_at = _expiry(transformation, item.ttl_seconds, now)
                metadata = _metadata(item.metadata)
            except TransformError as error:
                results.append(error)
                continue
            if transformation.convergent:
                token = _convergent_token(key, item.value)
            else:
                token = secrets.token_urlsafe(TOKEN_BYTES)
            token_id = _token_id(key, token)
            sealed = self._sealer.encrypt(item.value.encode(),
                                          token_associated_data(transformation.name, token_id))
            metadata_sealed = b""
            if metadata:
                metadata_sealed = self._sealer.encrypt(
                    json.dumps(metadata).encode(),
                    metadata_associated_data(transformation.name, token_id))
            stored.append((token_id, TokenRecord(sealed, now, expires_at,
                                                 metadata_sealed=metadata_sealed)))
            results.append(Encoded(token, expires_at=expires_at))
        command = StoreTokens(transformation.name, tuple(stored)) if stored else None
        return results, command

    def token_record(self, transformation: Transformation, token: str,
                     now: int) -> tuple[str, TokenRecord]:
        """The live record of ``token``; TransformError if unknown or expired."""
        key = self._key(transformation)
        token_id = _token_id(key, token)
        record = self.state.token(transformation.name, token_id)
        if record is None:
            raise TransformError(f"no such token in transformation {transformation.name}")
        if record.expires_at is not None and record.expires_at <= now:
            raise TransformError("the token has expired")
        return token_id, record

    def token_metadata(self, transformation: Transformation, token_id: str,
                       record: TokenRecord) -> dict[str, str]:
        """A token's metadata, opened through the barrier (plain in older records)."""
        if not record.metadata_sealed:
            return dict(record.metadata)
        self._require_unsealed()
        opened = self._sealer.decrypt(record.metadata_sealed,
                                      metadata_associated_data(transformation.name, token_id))
        return {str(key): str(value) for key, value in json.loads(opened)}

    def _detokenize(self, transformation: Transformation, token: str, now: int) -> str:
        token_id, record = self.token_record(transformation, token, now)
        value = self._sealer.decrypt(record.value_sealed,
                                     token_associated_data(transformation.name, token_id))
        return value.decode()

    def lookup(self, transformation: Transformation, value: str, now: int) -> list[str]:
        """The live tokens of ``value``: convergent tokenization only, as in Vault."""
        self._require_unsealed()
        if transformation.type != TransformationType.TOKENIZATION or not (
                transformation.convergent):
            raise TransformError(f"token lookup needs a convergent tokenization "
                                 f"transformation; {transformation.name} is not one")
        token = _convergent_token(self._key(transformation), value)
        try:
            self.token_record(transformation, token, now)
        except TransformError:
            return []
        return [token]

    # Keys, ciphers and templates.

    def _require_unsealed(self) -> None:
        if self._sealer.sealed:
            with self._lock:
                self._keys.clear()
                self._ciphers.clear()
            raise NodeSealedError("this node is sealed: unseal it, or use another node")

    def _key(self, transformation: Transformation) -> bytes:
        cache_key = (transformation.name, transformation.key_sealed)
        with self._lock:
            key = self._keys.get(cache_key)
        if key is None:
            key = self._sealer.decrypt(transformation.key_sealed,
                                       key_associated_data(transformation.name))
            with self._lock:
                self._keys[cache_key] = key
        return key

    def _cipher(self, transformation: Transformation, radix: int) -> FF3Cipher:
        cache_key = (transformation.name, transformation.key_sealed, radix)
        with self._lock:
            cipher = self._ciphers.get(cache_key)
        if cipher is None:
            cipher = FF3Cipher(self._key(transformation), radix)
            with self._lock:
                self._ciphers[cache_key] = cipher
        return cipher

    def _template(self, transformation: Transformation) -> tuple[Template, re.Pattern[str], str]:
        template = self.state.template(transformation.template)
        if template is None:
            raise TransformError(f"template {transformation.template} is gone")
        alphabet = self.state.alphabet(template.alphabet)
        if alphabet is None:
            raise TransformError(f"alphabet {template.alphabet} is gone")
        return template, _compiled(template.pattern), alphabet.characters


_PATTERNS: dict[str, re.Pattern[str]] = {}
_INDEXES: dict[str, dict[str, int]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        made = compile_pattern(pattern)
        if isinstance(made, str):
            raise TransformError(made)
        compiled = _PATTERNS[pattern] = made
    return compiled


def _index(alphabet: str) -> dict[str, int]:
    index = _INDEXES.get(alphabet)
    if index is None:
        index = _INDEXES[alphabet] = {character: i for i, character in enumerate(alphabet)}
    return index


def _match(pattern: re.Pattern[str], value: str, template: Template) -> re.Match[str]:
    match = pattern.fullmatch(value)
    if match is None:
        raise TransformError(f"the value does not match template {template.name} "
                             f"({template.pattern})")
    return match


def _split_like(text: str, groups: Sequence[str]) -> list[str]:
    pieces, at = [], 0
    for group in groups:
        pieces.append(text[at:at + len(group)])
        at += len(group)
    return pieces


def _replace_groups(match: re.Match[str], pieces: Sequence[str]) -> str:
    """The matched value with each capture group's text replaced by its piece."""
    value = match.string
    out, at = [], 0
    for number, piece in enumerate(pieces, start=1):
        start, end = match.span(number)
        if start < 0:
            continue
        if start < at:
            raise TransformError("the template's capture groups nest or overlap; make inner "
                                 "groups non-capturing with (?:...)")
        out += [value[at:start], piece]
        at = end
    out.append(value[at:])
    return "".join(out)


def _convergent_token(key: bytes, value: str) -> str:
    digest = hmac.new(key, b"convergent token\x00" + value.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:TOKEN_BYTES]).decode()


def _token_id(key: bytes, token: str) -> str:
    return hmac.new(key, b"token id\x00" + token.encode(), hashlib.sha256).hexdigest()


def _expiry(transformation: Transformation, ttl_seconds: int | None, now: int) -> int | None:
    limit = transformation.max_ttl_seconds
    if ttl_seconds is not None and ttl_seconds <= 0:
        raise TransformError("ttl must be a positive number of seconds")
    if ttl_seconds is None:
        return now + limit if limit else None
    if limit and ttl_seconds > limit:
        raise TransformError(f"ttl {ttl_seconds}s is longer than the transformation's "
                             f"max_ttl of {limit}s")
    return now + ttl_seconds


def _metadata(metadata: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    pairs = tuple(sorted((str(k), str(v)) for k, v in metadata.items()))
    if sum(len(k) + len(v) for k, v in pairs) > MAX_METADATA_BYTES:
        raise TransformError(f"metadata is limited to {MAX_METADATA_BYTES} characters")
    return pairs
