"""Transform in one process: every alphabet and template, tweak rules, masking, tokens.

The state is the real ``ClusterState`` applying the very commands the API submits, and
keys are sealed by a real barrier ``Keyring``; only the Raft log is left out (the
cluster test, test_transform_cluster.py, puts it back).
"""

from __future__ import annotations

import base64
import pickle
import secrets
from dataclasses import replace

import pytest

from keyquorum.cluster.barrier import Keyring
from keyquorum.cluster.cluster_state import ClusterState
from keyquorum.cluster.tenancy import Done, Refused
from keyquorum.cluster.transform.engine import (
    Encoded,
    EncodeItem,
    Engine,
    NodeSealedError,
    TransformError,
)
from keyquorum.cluster.transform.model import (
    BUILTIN_ALPHABETS,
    Alphabet,
    Template,
    Transformation,
    TransformationType,
    TweakSource,
)
from keyquorum.cluster.transform.state import (
    DeleteAlphabet,
    DeleteTemplate,
    PurgeExpiredTokens,
    WriteAlphabet,
    WriteTemplate,
    WriteTransformation,
)

NOW = 1_700_000_000


class KeyringSealer:
    """The node's seal as Transform sees it, over a real barrier keyring."""

    def __init__(self) -> None:
        self.keyring: Keyring | None = Keyring.generate(secrets.token_bytes(32))

    @property
    def sealed(self) -> bool:
        return self.keyring is None

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        assert self.keyring is not None
        return self.keyring.encrypt(plaintext, associated_data)

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        assert self.keyring is not None
        return self.keyring.decrypt(ciphertext, associated_data)


@pytest.fixture
def world() -> tuple[ClusterState, Engine, KeyringSealer]:
    state = ClusterState()
    sealer = KeyringSealer()
    return state, Engine(state.transform, sealer), sealer


def applied(state: ClusterState, command: object) -> object:
    outcome = state.apply(command)
    assert isinstance(outcome, Done), outcome
    return outcome.value


def refused(state: ClusterState, command: object) -> str:
    outcome = state.apply(command)
    assert isinstance(outcome, Refused), outcome
    return outcome.message


def make(state: ClusterState, engine: Engine, transformation: Transformation) -> Transformation:
    if transformation.type != TransformationType.MASKING:
        transformation = engine.with_new_key(transformation)
    applied(state, WriteTransformation(transformation))
    found = state.transform.transformation(transformation.name)
    assert found is not None
    return found


def fpe(name: str, template: str, source: TweakSource = TweakSource.INTERNAL) -> Transformation:
    return Transformation(name, TransformationType.FPE, template, tweak_source=source)


def encode_one(engine: Engine, transformation: Transformation, value: str,
               **item: object) -> Encoded:
    results, command = engine.encode(transformation, [EncodeItem(value, **item)], NOW)  # type: ignore[arg-type]
    assert command is None
    result = results[0]
    if isinstance(result, TransformError):
        raise result
    return result


def decode_one(engine: Engine, transformation: Transformation, value: str,
               decode_format: str | None = None, **item: object) -> str:
    result = engine.decode(transformation, [EncodeItem(value, **item)], NOW,  # type: ignore[arg-type]
                           decode_format)[0]
    if isinstance(result, TransformError):
        raise result
    return result


# Alphabets.


@pytest.mark.parametrize("alphabet", sorted(BUILTIN_ALPHABETS))
def test_every_builtin_alphabet_round_trips_through_fpe(world, alphabet: str) -> None:
    state, engine, _ = world
    characters = BUILTIN_ALPHABETS[alphabet]
    applied(state, WriteTemplate(Template("any", r"(.+)", alphabet)))
    transformation = make(state, engine, fpe("t", "any"))
    value = (characters * 3)[:20]

    encoded = encode_one(engine, transformation, value).value

    assert encoded != value and len(encoded) == 20
    assert set(encoded) <= set(characters)
    assert decode_one(engine, transformation, encoded) == value


@pytest.mark.parametrize("size", [2, 3, 1000, 65536])
def test_custom_alphabets_of_any_size_round_trip(world, size: int) -> None:
    state, engine, _ = world
    # Code points from U+0100 on: letters of many scripts, no surrogates below 65,536 + 256.
    characters = "".join(chr(0x100 + i) if 0x100 + i < 0xD800 else chr(0xE000 + i)
                         for i in range(size))
    applied(state, WriteAlphabet(Alphabet("wide", characters)))
    applied(state, WriteTemplate(Template("wide", r"(.+)", "wide")))
    transformation = make(state, engine, fpe("t", "wide"))
    length = {2: 20, 3: 13, 1000: 2, 65536: 4}[size]
    value = (characters * 20)[-length:]

    encoded = encode_one(engine, transformation, value).value

    assert len(encoded) == length and set(encoded) <= set(characters)
    assert decode_one(engine, transformation, encoded) == value


@pytest.mark.parametrize(("characters", "message"), [
    ("a", "2 to 65536 characters"),
    ("abca", "repeats 'a'"),
    ("x" * 2 + "".join(chr(0x100 + i) for i in range(65535)), "2 to 65536"),
])
def test_bad_alphabets_are_refused(world, characters: str, message: str) -> None:
    state, _, _ = world

    assert message in refused(state, WriteAlphabet(Alphabet("bad", characters)))


def test_builtin_names_are_reserved_and_used_alphabets_stay(world) -> None:
    state, _, _ = world
    applied(state, WriteAlphabet(Alphabet("hex", "0123456789abcdef")))
    applied(state, WriteTemplate(Template("hex", r"([0-9a-f]+)", "hex")))

    assert "reserved" in refused(state, WriteAlphabet(Alphabet("builtin/numeric", "01")))
    assert "cannot be deleted" in refused(state, DeleteAlphabet("builtin/numeric"))
    assert "used by template(s) hex" in refused(state, DeleteAlphabet("hex"))
    assert "used by templates" in refused(state, WriteAlphabet(Alphabet("hex", "0123456789")))


# Templates.


def test_credit_card_template_keeps_its_layout(world) -> None:
    state, engine, _ = world
    transformation = make(state, engine, fpe("cc", "builtin/creditcardnumber"))

    for card in ("4111-1111-1111-1111", "4111 1111 1111 1111", "4111111111111111"):
        encoded = encode_one(engine, transformation, card).value
        assert len(encoded) == len(card) and encoded != card
        # Separators stay where they were; only digits change.
        assert [c for c in encoded if not c.isdigit()] == [c for c in card if not c.isdigit()]
        assert decode_one(engine, transformation, encoded) == card


def test_social_security_template_with_encode_and_decode_formats(world) -> None:
    state, engine, _ = world
    template = Template("ssn", r"(\d{3})-?(\d{2})-?(\d{4})", "builtin/numeric",
                        encode_format="$1-$2-$3",
                        decode_formats=(("last-four", "***-**-$3"), ("plain", "$1$2$3")))
    applied(state, WriteTemplate(template))
    transformation = make(state, engine, fpe("ssn", "ssn"))

    encoded = encode_one(engine, transformation, "123456789").value

    assert len(encoded) == 11 and encoded[3] == encoded[6] == "-"
    assert decode_one(engine, transformation, encoded) == "123-45-6789"
    assert decode_one(engine, transformation, encoded, "last-four") == "***-**-6789"
    assert decode_one(engine, transformation, encoded, "plain") == "123456789"
    with pytest.raises(TransformError, match="no decode format 'nope'.*last-four, plain"):
        decode_one(engine, transformation, encoded, "nope")


def test_builtin_ssn_template(world) -> None:
    state, engine, _ = world
    transformation = make(state, engine, fpe("ssn", "builtin/socialsecuritynumber"))

    encoded = encode_one(engine, transformation, "078-05-1120").value

    assert encoded[3] == encoded[6] == "-" and encoded != "078-05-1120"
    assert decode_one(engine, transformation, encoded) == "078-05-1120"


@pytest.mark.parametrize(("template", "message"), [
    (Template("t", r"\d+", "builtin/numeric"), "no capture group"),
    (Template("t", r"(\d+", "builtin/numeric"), "not a regular expression"),
    (Template("t", r"(\d+)", "nowhere"), "no alphabet named nowhere"),
    (Template("t", r"(\d+)", "builtin/numeric", encode_format="$2"), "names group $2"),
])
def test_bad_templates_are_refused(world, template: Template, message: str) -> None:
    state, _, _ = world

    assert message in refused(state, WriteTemplate(template))


def test_values_outside_the_template_are_refused(world) -> None:
    state, engine, _ = world
    transformation = make(state, engine, fpe("cc", "builtin/creditcardnumber"))

    with pytest.raises(TransformError, match="does not match template builtin/creditcard"):
        encode_one(engine, transformation, "4111-1111")


def test_templates_in_use_stay(world) -> None:
    state, engine, _ = world
    applied(state, WriteTemplate(Template("digits", r"(\d+)", "builtin/numeric")))
    make(state, engine, fpe("t", "digits"))

    assert "used by transformation(s) t" in refused(state, DeleteTemplate("digits"))


# Lengths and tweaks.


def test_wrong_length_input_is_refused_with_a_clear_message(world) -> None:
    state, engine, _ = world
    applied(state, WriteTemplate(Template("digits", r"(\d+)", "builtin/numeric")))
    transformation = make(state, engine, fpe("t", "digits"))

    with pytest.raises(TransformError, match="has 5 characters.*takes 6 to 56"):
        encode_one(engine, transformation, "12345")
    with pytest.raises(TransformError, match="has 57 characters.*takes 6 to 56"):
        encode_one(engine, transformation, "1" * 57)


def test_supplied_tweaks(world) -> None:
    state, engine, _ = world
    transformation = make(state, engine, fpe("t", "builtin/creditcardnumber",
                                             TweakSource.SUPPLIED))
    tweak = base64.b64encode(b"7 bytes").decode()
    other = base64.b64encode(b"7 other").decode()

    encoded = encode_one(engine, transformation, "4111111111111111", tweak=tweak).value

    assert decode_one(engine, transformation, encoded, tweak=tweak) == "4111111111111111"
    assert decode_one(engine, transformation, encoded, tweak=other) != "4111111111111111"
    with pytest.raises(TransformError, match="needs a tweak"):
        encode_one(engine, transformation, "4111111111111111")
    with pytest.raises(TransformError, match="7 bytes .56 bits.*this one is 8 bytes"):
        encode_one(engine, transformation, "4111111111111111",
                   tweak=base64.b64encode(b"8 bytes!").decode())
    with pytest.raises(TransformError, match="not base64"):
        encode_one(engine, transformation, "4111111111111111", tweak="%%%")


def test_generated_tweaks_are_returned_and_needed_to_decode(world) -> None:
    state, engine, _ = world
    transformation = make(state, engine, fpe("t", "builtin/creditcardnumber",
                                             TweakSource.GENERATED))

    first = encode_one(engine, transformation, "4111111111111111")
    second = encode_one(engine, transformation, "4111111111111111")

    assert first.tweak is not None and len(base64.b64decode(first.tweak)) == 7
    assert first.tweak != second.tweak and first.value != second.value
    assert decode_one(engine, transformation, first.value, tweak=first.tweak) == (
        "4111111111111111")
    with pytest.raises(TransformError, match="do not give one to encode"):
        encode_one(engine, transformation, "4111111111111111", tweak=first.tweak)
    with pytest.raises(TransformError, match="needs the tweak encode returned"):
        decode_one(engine, transformation, first.value)


def test_internal_tweaks_are_fixed_and_never_given(world) -> None:
    state, engine, _ = world
    transformation = make(state, engine, fpe("t", "builtin/creditcardnumber"))

    first = encode_one(engine, transformation, "4111111111111111")

    assert first.tweak is None
    assert encode_one(engine, transformation, "4111111111111111").value == first.value
    with pytest.raises(TransformError, match="internal tweak: do not give one"):
        encode_one(engine, transformation, "4111111111111111",
                   tweak=base64.b64encode(bytes(7)).decode())


def test_tweak_source_and_type_cannot_change(world) -> None:
    state, engine, _ = world
    transformation = make(state, engine, fpe("t", "builtin/creditcardnumber"))
    changed = replace(transformation, tweak_source=TweakSource.SUPPLIED)

    assert "tweak_source of transformation t cannot change" in refused(
        state, WriteTransformation(changed))


def test_an_update_keeps_the_key(world) -> None:
    state, engine, _ = world
    transformation = make(state, engine, fpe("t", "builtin/creditcardnumber"))
    encoded = encode_one(engine, transformation, "4111111111111111").value
    # The API draws a fresh key for every write; apply keeps the stored one.
    applied(state, WriteTransformation(replace(engine.with_new_key(transformation),
                                               allowed_roles=("clerks",))))
    updated = state.transform.transformation("t")
    assert updated is not None and updated.allowed_roles == ("clerks",)

    assert decode_one(engine, updated, encoded) == "4111111111111111"


# Masking.


def test_masking_replaces_the_groups_and_cannot_be_decoded(world) -> None:
    state, engine, _ = world
    applied(state, WriteTemplate(Template("first12", r"(\d{4})-(\d{4})-(\d{4})-\d{4}",
                                          "builtin/numeric")))
    transformation = make(state, engine, Transformation(
        "mask", TransformationType.MASKING, "first12", masking_character="#"))

    assert encode_one(engine, transformation, "4111-2222-3333-4444").value == (
        "####-####-####-4444")
    with pytest.raises(TransformError, match="irreversible"):
        decode_one(engine, transformation, "####-####-####-4444")


def test_masking_needs_one_character(world) -> None:
    state, _, _ = world

    assert "exactly one character" in refused(state, WriteTransformation(Transformation(
        "mask", TransformationType.MASKING, "builtin/creditcardnumber", masking_character="")))


# Tokenization.


def tokenize(state: ClusterState, engine: Engine, transformation: Transformation,
             items: list[EncodeItem], now: int = NOW) -> list[Encoded | TransformError]:
    results, command = engine.encode(transformation, items, now)
    if command is not None:
        applied(state, command)
    return results


def test_tokens_decode_and_are_stored_sealed(world) -> None:
    state, engine, _ = world
    transformation = make(state, engine, Transformation("tok", TransformationType.TOKENIZATION))

    results = tokenize(state, engine, transformation,
                       [EncodeItem("4111-1111-1111-1111"), EncodeItem("4111-1111-1111-1111")])

    tokens = [r.value for r in results if isinstance(r, Encoded)]
    assert len(set(tokens)) == 2, "non-convergent tokens differ for the same value"
    assert all(decode_one(engine, transformation, t) == "4111-1111-1111-1111" for t in tokens)
    # Neither the value nor the tokens appear in the replicated state.
    dumped = state.snapshot()
    assert b"4111-1111" not in dumped
    assert not any(t.encode() in dumped for t in tokens)
    with pytest.raises(TransformError, match="no such token"):
        decode_one(engine, transformation, "not-a-token")


def test_convergent_tokens_and_lookup(world) -> None:
    state, engine, _ = world
    transformation = make(state, engine, Transformation(
        "tok", TransformationType.TOKENIZATION, convergent=True))

    first = tokenize(state, engine, transformation, [EncodeItem("alice@example.com")])[0]
    again = tokenize(state, engine, transformation, [EncodeItem("alice@example.com")])[0]

    assert isinstance(first, Encoded) and isinstance(again, Encoded)
    assert first.value == again.value
    assert state.transform.token_count("tok") == 1
    assert engine.lookup(transformation, "alice@example.com", NOW) == [first.value]
    assert engine.lookup(transformation, "bob@example.com", NOW) == []


def test_lookup_needs_convergence(world) -> None:
    state, engine, _ = world
    transformation = make(state, engine, Transformation("tok", TransformationType.TOKENIZATION))

    with pytest.raises(TransformError, match="convergent"):
        engine.lookup(transformation, "x", NOW)


def test_tokens_expire_carry_metadata_and_are_tidied(world) -> None:
    state, engine, _ = world
    transformation = make(state, engine, Transformation(
        "tok", TransformationType.TOKENIZATION, max_ttl_seconds=3600))

    results = tokenize(state, engine, transformation, [
        EncodeItem("short", ttl_seconds=60, metadata={"owner": "billing"}),
        EncodeItem("default"),
        EncodeItem("too long", ttl_seconds=7200),
    ])

    short, default, too_long = results
    assert isinstance(short, Encoded) and short.expires_at == NOW + 60
    assert isinstance(default, Encoded) and default.expires_at == NOW + 3600
    assert isinstance(too_long, TransformError) and "max_ttl of 3600s" in str(too_long)
    token_id, record = engine.token_record(transformation, short.value, NOW)
    # The metadata is replicated sealed by the barrier, and opens on an unsealed node.
    assert record.metadata == () and b"billing" not in record.metadata_sealed
    assert engine.token_metadata(transformation, token_id, record) == {"owner": "billing"}
    assert engine.decode(transformation, [EncodeItem(short.value)], NOW + 61)[0].args == (
        "the token has expired",)
    assert applied(state, PurgeExpiredTokens("tok", NOW + 61)) == 1
    assert state.transform.token_count("tok") == 1


def test_a_sealed_node_refuses_and_forgets_keys(world) -> None:
    state, engine, sealer = world
    transformation = make(state, engine, fpe("t", "builtin/creditcardnumber"))
    encode_one(engine, transformation, "4111111111111111")

    sealer.keyring = None

    with pytest.raises(NodeSealedError, match="sealed"):
        encode_one(engine, transformation, "4111111111111111")


def test_state_survives_a_snapshot(world) -> None:
    state, engine, _ = world
    transformation = make(state, engine, Transformation(
        "tok", TransformationType.TOKENIZATION, convergent=True))
    token = tokenize(state, engine, transformation, [EncodeItem("v")])[0]
    assert isinstance(token, Encoded)

    restored = ClusterState()
    restored.restore(state.snapshot())

    assert restored.transform.token_count("tok") == 1
    assert pickle.loads(restored.snapshot())["transform"] == pickle.loads(
        state.snapshot())["transform"]
