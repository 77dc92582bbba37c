"""Run the OASIS KMIP profile test cases against a KMIP server and say which pass.

Theory of operation
-------------------
A test case (KMIP Profiles 1.4 and 2.1) is a conversation: request, expected response,
request, expected response. The runner sends each request over mutual TLS and compares
what the server answers with what the file expects, item by item. A case passes when
every answer matches; the first difference is the reason it fails.

The files leave what a server chooses to placeholders: ``$UNIQUE_IDENTIFIER_0``,
``$NOW``, ``$IV_COUNTER_NONCE``, ``$DATA_1``, ... (see ``kmip/xml.py``). In an
expected response a placeholder matches any value of its type and, the first time,
binds its name to what the server sent; a later appearance, in a response or a
request, stands for that bound value. ``$NOW`` in a request is the current time.

Beyond placeholders, the runner tolerates what the profiles tolerate and nothing more:

- the response header's Time Stamp, and any date the file gives as ``$NOW``;
- a Result Message, which is free text for a person (its Result Status and Result
  Reason are still compared);
- what describes the server rather than KMIP: a Query's Vendor Identification and
  Server Information, the Random Number Generator attribute, and the manufacturer,
  description and version in a PKCS#11 C_GetInfo answer;
- random material: a byte string or big integer under one of ``RANDOM_TAGS`` (key
  material, ciphertext, signatures, IVs, tags, certificates) once the case has had
  the server generate anything (a key, a key pair, a certificate, random bytes),
  or when the value comes from randomness the server drew in that very operation
  (an IV it chose, a PSS or ECDSA signature). The value the server gave replaces
  the file's value in every later request, so that Decrypt receives the server's
  own ciphertext and Signature Verify its own signature: a wrong value still fails
  there.

Some cases continue an earlier one: TL-M-3 locates the key TL-M-2 had the server
generate and reads it back. A run of several cases (``run_cases``) remembers, in a
``RunMemory``, which objects the server generated and which random values it
answered in place of the file's. When a later case meets such an object, its
material is random too, but a value an earlier case already answered must come back
identical: the key TL-M-3 gets is the key TL-M-2 got, or the case fails.

Everything else, including the order of items, must be exactly as the file says.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .errors import KmipError
from .json import item_from_json, item_to_json
from .tables import (
    BlockCipherMode,
    CryptographicAlgorithm,
    ObjectType,
    Operation,
    PaddingMethod,
    PKCS11Function,
    Tag,
)
from .text_values import format_enumeration, tag_name, type_name, typing_tag
from .ttlv import NEED_DATA, FrameReader, Item, ItemType, decode_item, encode_item
from .xml import (
    TEST_CASE_LIMITS,
    item_from_test_element,
    item_from_xml,
    item_to_xml,
    test_case_elements,
)

# Values that come from randomness: they differ between any two runs of a case once
# the server generated a key, or drew an IV, a nonce or a signature's salt.
RANDOM_TAGS = frozenset({
    Tag.KEY_MATERIAL, Tag.KEY, Tag.KEY_VALUE,
    Tag.MODULUS, Tag.PRIVATE_EXPONENT, Tag.P, Tag.Q, Tag.PRIME_EXPONENT_P,
    Tag.PRIME_EXPONENT_Q, Tag.CRT_COEFFICIENT, Tag.D, Tag.Q_STRING, Tag.X, Tag.Y,
    Tag.DATA, Tag.SIGNATURE_DATA, Tag.MAC_DATA, Tag.IV_COUNTER_NONCE,
    Tag.AUTHENTICATED_ENCRYPTION_TAG, Tag.CERTIFICATE_VALUE, Tag.DIGEST_VALUE,
})

# Operations whose answer is random even for a key the client registered.
_RANDOM_OPERATIONS = frozenset({
    Operation.CREATE, Operation.CREATE_KEY_PAIR, Operation.RE_KEY,
    Operation.RE_KEY_KEY_PAIR, Operation.DERIVE_KEY, Operation.CERTIFY,
    Operation.RE_CERTIFY, Operation.RNG_RETRIEVE, Operation.CREATE_SPLIT_KEY,
})

# Operations that answer with the identifier of an object they made.
_CREATING_OPERATIONS = _RANDOM_OPERATIONS | {Operation.REGISTER, Operation.JOIN_SPLIT_KEY}

# Operations whose answer may be random when the server draws an input: an IV the
# request left out, a PSS salt, an ECDSA nonce.
_MAYBE_RANDOM_OPERATIONS = frozenset({Operation.ENCRYPT, Operation.SIGN})

# Free text for a person; KMIP does not define its content.
_FREE_TEXT = frozenset({Tag.RESULT_MESSAGE})

# Response header fields a server may or may not send: the echo of the client's
# correlation value, and the server's own one (an identifier it generates).
_OPTIONAL_HEADER = frozenset({Tag.CLIENT_CORRELATION_VALUE, Tag.SERVER_CORRELATION_VALUE})

# What a Query answer says about the server that answered, not about KMIP: the file
# shows the reference server's vendor and build.
_SERVER_SPECIFIC = frozenset({Tag.VENDOR_IDENTIFICATION, Tag.SERVER_INFORMATION})

# Attributes whose value describes the server rather than the object: the random
# number generator it draws keys from (the files show the reference server's).
_SERVER_SPECIFIC_VALUES = frozenset({Tag.RANDOM_NUMBER_GENERATOR})
_SERVER_SPECIFIC_NAMES = frozenset({"Random Number Generator"})

# PKCS#11 C_GetInfo answers a CK_INFO that describes the library, like a Query's
# Vendor Identification: its manufacturer (bytes 2-33), description (42-73) and
# version (74-75) are the server's own. Its layout, Cryptoki version and flags are
# still compared.
_CK_INFO_LENGTH = 76
_CK_INFO_SERVER_SPECIFIC = (slice(2, 34), slice(42, 76))

# Query answers list what a server offers. The reference server's lists are in the
# files; another server passes when it offers at least those, in any order.
_OFFERED = frozenset({Tag.OPERATION, Tag.OBJECT_TYPE})

# A response a server needs longer than this for is a failure, not a hang.
EXCHANGE_TIMEOUT_SECONDS = 30.0


class Transport(Protocol):
    """One connection to a KMIP server: a request's TTLV bytes in, the response's out."""

    def exchange(self, request: bytes) -> bytes: ...

    def close(self) -> None: ...


class TlsTransport:
    """KMIP over mutual TLS (KMIP 1.4 section 10.1), one request at a time."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        raw = socket.create_connection((host, port), timeout=EXCHANGE_TIMEOUT_SECONDS)
        try:
            self._socket = context.wrap_socket(raw, server_hostname=host)
        except BaseException:
            raw.close()
            raise
        self._frames = FrameReader(TEST_CASE_LIMITS)

    def exchange(self, request: bytes) -> bytes:
        self._socket.sendall(request)
        while True:
            frame = self._frames.next_frame()
            if frame is not NEED_DATA:
                assert isinstance(frame, bytes)
                return frame
            chunk = self._socket.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection before answering")
            self._frames.feed(chunk)

    def close(self) -> None:
        self._socket.close()


# The Content-Type each encoding is posted with (KMIP over HTTPS, kmip/https.py).
HTTPS_CONTENT_TYPES = {
    "ttlv": "application/octet-stream",
    "xml": "text/xml",
    "json": "application/json",
}


class HttpsTransport:
    """KMIP over HTTPS: each request POSTed to /kmip in TTLV, XML or JSON.

    The runner speaks TTLV; this transport re-encodes each request in the chosen
    encoding and the answer back to TTLV, so that one comparison serves all three.
    One keep-alive connection carries a whole case, as a KMIP client would use it.
    """

    def __init__(self, host: str, port: int, context: ssl.SSLContext, encoding: str,
                 path: str = "/kmip") -> None:
        if encoding not in HTTPS_CONTENT_TYPES:
            raise ValueError(f"unknown encoding {encoding!r}: use ttlv, xml or json")
        self._encoding = encoding
        self._path = path
        self._connection = http.client.HTTPSConnection(
            host, port, context=context, timeout=EXCHANGE_TIMEOUT_SECONDS)

    def exchange(self, request: bytes) -> bytes:
        body = self._encode(request)
        content_type = HTTPS_CONTENT_TYPES[self._encoding]
        self._connection.request("POST", self._path, body=body,
                                 headers={"Content-Type": content_type})
        response = self._connection.getresponse()
        answer = response.read()
        if response.status != 200:
            text = answer.decode("utf-8", "replace").strip()
            raise ConnectionError(f"HTTP {response.status}: {text[:200]}")
        return self._decode(answer)

    def _encode(self, request: bytes) -> bytes:
        if self._encoding == "ttlv":
            return request
        item = decode_item(request, TEST_CASE_LIMITS)
        if self._encoding == "xml":
            return item_to_xml(item).encode("utf-8")
        return item_to_json(item).encode("utf-8")

    def _decode(self, answer: bytes) -> bytes:
        if self._encoding == "ttlv":
            return answer
        if self._encoding == "xml":
            return encode_item(item_from_xml(answer, TEST_CASE_LIMITS))
        return encode_item(item_from_json(answer, TEST_CASE_LIMITS))

    def close(self) -> None:
        self._connection.close()


def client_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS client context that trusts ``ca`` and presents ``cert``."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    return context


@dataclass(frozen=True)
class Wildcard:
    """A placeholder in an expected response: matches any value of the item's type."""

    name: str

    def __add__(self, _offset: int) -> Wildcard:
        # $NOW-3600 is as open as $NOW: the server's clock is not the file's.
        return self


@dataclass(frozen=True)
class CaseResult:
    name: str
    passed: bool
    difference: str = ""


class Mismatch(Exception):
    """The first difference between an expected and an actual response."""


@dataclass
class RunMemory:
    """What a run of cases carries from one case to the next (see the module's top)."""

    # Identifiers of the objects whose material the server generated.
    generated: set[Any] = field(default_factory=set)
    # The random values the files show, and what this server answered in their place.
    replaced: dict[Any, Any] = field(default_factory=dict)


@dataclass
class _Conversation:
    """What one case has learned so far from the server's answers."""

    bound: dict[str, Any] = field(default_factory=dict)
    # The last value of each tag in the server's answers, by its placeholder name
    # ($MAC_DATA for MAC Data): some files use one in a request that no expected
    # response binds, meaning "what the server just answered".
    answered: dict[str, Any] = field(default_factory=dict)
    answer_counts: dict[str, int] = field(default_factory=dict)
    # A random value the file shows, and what this server answered in its place.
    replaced: dict[Any, Any] = field(default_factory=dict)
    generated: bool = False
    # What earlier cases of the run learned; read, and added to at the end.
    earlier: RunMemory = field(default_factory=RunMemory)
    only_earlier: bool = False
    # Identifiers of the objects this case created: never an earlier case's.
    created: set[Any] = field(default_factory=set)
    # Whether the case stored a public or private key (whose encryption is random).
    asymmetric: bool = False
    # The operation of the batch item being compared, and the last Attribute Name seen.
    operation: int | None = None
    attribute: str | None = None
    # The PKCS#11 function of the batch item being compared.
    pkcs11_function: int | None = None

    def request_value(self, name: str, item_type: ItemType) -> Any:
        if name in self.bound:
            return self.bound[name]
        if name in self.answered:
            return self.answered[name]
        if name.startswith("$NOW"):
            now = int(time.time())
            return now * 1_000_000 if item_type == ItemType.DATE_TIME_EXTENDED else now
        raise Mismatch(f"the request uses {name} before any response gave it")

    def with_replacements(self, item: Item) -> Item:
        if item.type == ItemType.STRUCTURE:
            return Item(item.tag, item.type, [self.with_replacements(c) for c in item.value])
        if item.type in (ItemType.BYTE_STRING, ItemType.BIG_INTEGER):
            return Item(item.tag, item.type, self.replaced.get(item.value, item.value))
        return item


def run_case(
    path: Path, connect: Callable[[], Transport], memory: RunMemory | None = None
) -> CaseResult:
    """Run one test case file on a fresh connection, after the cases ``memory`` saw."""
    name = path.name.removesuffix(".xml")
    try:
        elements = test_case_elements(path)
    except KmipError as error:
        return CaseResult(name, False, f"cannot read the case: {error.message}")

    try:
        transport = connect()
    except (OSError, ssl.SSLError) as error:
        return CaseResult(name, False, f"cannot connect: {error}")
    try:
        _converse(elements, transport, memory or RunMemory())
    except Mismatch as error:
        return CaseResult(name, False, str(error))
    except KmipError as error:
        return CaseResult(name, False, f"unreadable response: {error.message}")
    except (OSError, ssl.SSLError) as error:
        return CaseResult(name, False, f"connection failed: {error}")
    finally:
        transport.close()
    return CaseResult(name, True)


def _converse(elements: list[ET.Element], transport: Transport, memory: RunMemory) -> None:
    conversation = _Conversation(earlier=memory)
    pairs = list(zip(elements[0::2], elements[1::2], strict=False))
    if len(elements) % 2 or any(
        request.tag != "RequestMessage" or response.tag != "ResponseMessage"
        for request, response in pairs
    ):
        raise Mismatch("the case does not alternate requests and responses")

    for number, (request_element, expected_element) in enumerate(pairs):
        # First the request, with what earlier answers taught us.
        request = item_from_test_element(request_element, conversation.request_value)
        request = conversation.with_replacements(request)
        answer = decode_item(transport.exchange(encode_item(request)), TEST_CASE_LIMITS)

        # Then the answer, against the file's, tolerating only what may differ.
        expected = item_from_test_element(expected_element, lambda name, _: Wildcard(name))
        if _holds_value(request, Tag.OBJECT_TYPE, {ObjectType.PUBLIC_KEY, ObjectType.PRIVATE_KEY}):
            conversation.asymmetric = True
        own_random = conversation.generated or _draws_randomness(
            request, conversation.asymmetric) or _server_sent_iv(request, answer)
        # Randomness only an earlier case drew must come back as that case saw it.
        if any(_operation(item) in _CREATING_OPERATIONS for item in _batch_items(request)):
            conversation.created.update(_identifiers(answer))
        conversation.only_earlier = not own_random and any(
            uid in memory.generated and uid not in conversation.created
            for uid in _identifiers(answer))
        random = own_random or conversation.only_earlier
        _remember(answer, conversation)
        try:
            _compare(expected, answer, f"response {number + 1}", conversation, random)
        finally:
            memory.replaced.update(conversation.replaced)
        if any(_operation(item) in _RANDOM_OPERATIONS for item in _batch_items(request)):
            conversation.generated = True
            memory.generated.update(_identifiers(answer))


def _identifiers(message: Item) -> list[Any]:
    """Every Unique Identifier in a message."""
    if message.tag == Tag.UNIQUE_IDENTIFIER:
        return [message.value]
    if message.type != ItemType.STRUCTURE:
        return []
    return [uid for child in message.value for uid in _identifiers(child)]


def _remember(answer: Item, conversation: _Conversation) -> None:
    if answer.type == ItemType.STRUCTURE:
        for child in answer.value:
            _remember(child, conversation)
    elif answer.tag in Tag._value2member_map_:
        # $DATA is the last Data answered; $DATA_0, $DATA_1, ... each one in turn.
        name = f"${Tag(answer.tag).name}"
        conversation.answered[name] = answer.value
        count = conversation.answer_counts.get(name, 0)
        conversation.answered[f"{name}_{count}"] = answer.value
        conversation.answer_counts[name] = count + 1


def _server_sent_iv(request: Item, answer: Item) -> bool:
    """Whether the server chose the IV of an Encrypt: the answer has one the request
    lacks (the key's own Cryptographic Parameters may ask for a Random IV)."""
    return any(
        _operation(item) == Operation.ENCRYPT and _find(item, Tag.IV_COUNTER_NONCE) is None
        for item in _batch_items(request)
    ) and _find(answer, Tag.IV_COUNTER_NONCE) is not None


def _batch_items(message: Item) -> list[Item]:
    return [child for child in message.value if child.tag == Tag.BATCH_ITEM]


def _operation(batch_item: Item) -> int | None:
    for child in batch_item.value:
        if child.tag == Tag.OPERATION:
            return int(child.value)
    return None


def _holds_value(item: Item, tag: int, values: set[int]) -> bool:
    if item.tag == tag and item.value in values:
        return True
    return item.type == ItemType.STRUCTURE and any(
        _holds_value(child, tag, values) for child in item.value)


def _draws_randomness(request: Item, asymmetric: bool) -> bool:
    """Whether the server answers this request with randomness it draws itself."""
    for batch_item in _batch_items(request):
        operation = _operation(batch_item)
        if operation in _RANDOM_OPERATIONS:
            return True
        # RSA encryption pads with random bytes (OAEP and PKCS#1 v1.5 alike); the
        # key's own parameters may say RSA where the request does not.
        if operation == Operation.ENCRYPT and (
            _server_draws_iv(batch_item) or _rsa_padding(batch_item) or asymmetric
        ):
            return True
        # PSS and ECDSA signatures are random; the Signature Verify after them is
        # what proves a signature right.
        if operation == Operation.SIGN:
            return True
    return False


def _server_draws_iv(batch_item: Item) -> bool:
    """Whether an Encrypt leaves the IV to the server: asked to, or a mode needs one."""
    if _find(batch_item, Tag.RANDOM_IV) is True:
        return True
    if _find(batch_item, Tag.IV_COUNTER_NONCE) is not None:
        return False
    mode = _find(batch_item, Tag.BLOCK_CIPHER_MODE)
    return mode is not None and mode != BlockCipherMode.ECB


def _rsa_padding(batch_item: Item) -> bool:
    """Whether an Encrypt uses RSA padding: OAEP and PKCS#1 v1.5 both draw randomness."""
    padding = _find(batch_item, Tag.PADDING_METHOD)
    return padding in (PaddingMethod.OAEP, PaddingMethod.PKCS1_V1_5) or (
        _find(batch_item, Tag.CRYPTOGRAPHIC_ALGORITHM) == CryptographicAlgorithm.RSA
    )


def _find(item: Item, tag: int) -> Any:
    """The value of the first item under ``item`` with ``tag``, or None."""
    if item.tag == tag:
        return item.value
    if item.type != ItemType.STRUCTURE:
        return None
    for child in item.value:
        found = _find(child, tag)
        if found is not None:
            return found
    return None


def _compare(
    expected: Item, actual: Item, where: str, conversation: _Conversation, random: bool
) -> None:
    here = f"{where}/{_name(expected.tag)}"
    if expected.tag != actual.tag:
        raise Mismatch(f"{where}: expected {_name(expected.tag)}, got {_name(actual.tag)}")
    if expected.type != actual.type:
        raise Mismatch(f"{here}: expected a {type_name(expected.type)}, "
                       f"got a {type_name(actual.type)}")

    if expected.tag in _SERVER_SPECIFIC_VALUES or (
        expected.tag == Tag.ATTRIBUTE_VALUE and conversation.attribute in _SERVER_SPECIFIC_NAMES
    ):
        return
    if expected.tag == Tag.ATTRIBUTE_NAME:
        conversation.attribute = actual.value
    if expected.tag == Tag.PKCS_11_FUNCTION:
        conversation.pkcs11_function = actual.value
    if expected.tag == Tag.PKCS_11_OUTPUT_PARAMETERS and (
        conversation.pkcs11_function == PKCS11Function.C_GETINFO
    ):
        _compare_library_info(expected.value, actual.value, here)
        return
    if expected.type == ItemType.STRUCTURE:
        children = expected.value, actual.value
        if expected.tag == Tag.RESPONSE_HEADER:
            children = _without(expected.value, actual.value, _OPTIONAL_HEADER)
        elif expected.tag == Tag.BATCH_ITEM:
            conversation.operation = _operation(expected)
        elif expected.tag == Tag.RESPONSE_PAYLOAD and conversation.operation == Operation.QUERY:
            children = _offered_lists(expected.value, actual.value, here)
        _compare_children(*children, here, conversation, random)
        return

    if isinstance(expected.value, Wildcard):
        _bind(expected.value.name, actual.value, here, conversation)
        return
    if expected.tag in _FREE_TEXT or expected.value == actual.value:
        return
    if random and expected.tag in RANDOM_TAGS and expected.type in (
        ItemType.BYTE_STRING, ItemType.BIG_INTEGER
    ):
        earlier = conversation.earlier.replaced.get(expected.value)
        if conversation.only_earlier and earlier is not None and earlier != actual.value:
            raise Mismatch(f"{here}: expected {_short(earlier)}, the value an earlier case "
                           f"got for it, got {_show(actual)}")
        conversation.replaced[expected.value] = actual.value
        return
    raise Mismatch(f"{here}: expected {_show(expected)}, got {_show(actual)}")


def _compare_library_info(expected: bytes, actual: bytes, where: str) -> None:
    if len(expected) != _CK_INFO_LENGTH or len(actual) != _CK_INFO_LENGTH:
        raise Mismatch(f"{where}: expected a {_CK_INFO_LENGTH}-byte CK_INFO, "
                       f"got {len(actual)} bytes")
    masked = [bytearray(expected), bytearray(actual)]
    for info in masked:
        for part in _CK_INFO_SERVER_SPECIFIC:
            info[part] = bytes(part.stop - part.start)
    if masked[0] != masked[1]:
        raise Mismatch(f"{where}: expected CK_INFO {expected.hex()[:48]}..., "
                       f"got {actual.hex()[:48]}...")


def _without(
    expected: list[Item], actual: list[Item], optional: frozenset[int]
) -> tuple[list[Item], list[Item]]:
    """Both sides without the optional items either side lacks."""
    expected_tags = {item.tag for item in expected}
    actual_tags = {item.tag for item in actual}
    absent = {tag for tag in optional if (tag in expected_tags) != (tag in actual_tags)}
    return ([item for item in expected if item.tag not in absent],
            [item for item in actual if item.tag not in absent])


def _offered_lists(
    expected: list[Item], actual: list[Item], where: str
) -> tuple[list[Item], list[Item]]:
    """Check the offered lists as sets and leave the rest to be compared in order."""
    for tag in _OFFERED:
        offered = {item.value for item in actual if item.tag == tag}
        for item in expected:
            if item.tag == tag and item.value not in offered:
                raise Mismatch(f"{where}: {_name(tag)} {_show(item)} is not offered")
    skipped = _OFFERED | _SERVER_SPECIFIC
    return ([item for item in expected if item.tag not in skipped],
            [item for item in actual if item.tag not in skipped])


def _compare_children(
    expected: list[Item], actual: list[Item], where: str, conversation: _Conversation,
    random: bool,
) -> None:
    # A Result Message may be absent on either side: it is optional text.
    expected = [item for item in expected if item.tag not in _FREE_TEXT]
    actual = [item for item in actual if item.tag not in _FREE_TEXT]
    for position, wanted in enumerate(expected):
        if position >= len(actual):
            raise Mismatch(f"{where}: missing {_name(wanted.tag)} "
                           f"(item {position + 1} of {len(expected)})")
        _compare(wanted, actual[position], where, conversation, random)
    if len(actual) > len(expected):
        extra = actual[len(expected)]
        raise Mismatch(f"{where}: unexpected {_name(extra.tag)} after "
                       f"{len(expected)} expected items")


def _bind(name: str, value: Any, where: str, conversation: _Conversation) -> None:
    if name.startswith("$NOW"):
        return
    if name not in conversation.bound:
        conversation.bound[name] = value
        return
    if conversation.bound[name] != value:
        raise Mismatch(f"{where}: expected {name} = {_short(conversation.bound[name])}, "
                       f"got {_short(value)}")


def _name(tag: int) -> str:
    return tag_name(tag) or f"0x{tag:06x}"


def _show(item: Item) -> str:
    if item.type == ItemType.ENUMERATION:
        try:
            return format_enumeration(typing_tag(item.tag, None), item.value)
        except (KmipError, KeyError, ValueError):
            return str(item.value)
    return _short(item.value)


def _short(value: Any) -> str:
    if isinstance(value, bytes):
        text = value.hex()
    elif isinstance(value, int) and not isinstance(value, bool) and value > 1 << 64:
        text = f"0x{value:x}"
    else:
        text = repr(value)
    return text if len(text) <= 48 else f"{text[:45]}..."


def run_cases(
    paths: Iterable[Path], connect: Callable[[], Transport], report: Callable[[str], None]
) -> list[CaseResult]:
    """Run every case, reporting ``PASS name`` or ``FAIL name: difference`` as each ends."""
    results = []
    memory = RunMemory()
    for path in paths:
        result = run_case(path, connect, memory)
        results.append(result)
        report(f"PASS {result.name}" if result.passed
               else f"FAIL {result.name}: {result.difference}")
    return results


def summary(results: list[CaseResult]) -> str:
    """The last line of a run; outside scripts parse it."""
    passed = sum(result.passed for result in results)
    return f"{passed} passed, {len(results) - passed} failed"


__all__ = [
    "RunMemory",
    "RANDOM_TAGS",
    "CaseResult",
    "HttpsTransport",
    "TlsTransport",
    "Transport",
    "Wildcard",
    "client_context",
    "run_case",
    "run_cases",
    "summary",
]
