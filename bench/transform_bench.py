"""Encode and decode rates of Transform, per transformation type, on one node's engine.

Run from the checkout: ``.venv/bin/python bench/transform_bench.py``. The engine is
the node's (cluster/transform/engine.py) over a real ``ClusterState`` and a real
barrier keyring; tokenization's encode includes applying its ``StoreTokens`` command
to the state, but not the Raft commit (one per request, whatever the batch size: see
docs/transform.md). Values are 16-digit card numbers through the built-in credit card
template. Rates are values per CPU second of this process (best of several rounds), so
other work on a shared machine disturbs them less.
"""

from __future__ import annotations

import argparse
import secrets
import time
import timeit
from collections.abc import Callable

from keyquorum.cluster.barrier import Keyring
from keyquorum.cluster.cluster_state import ClusterState
from keyquorum.cluster.transform.engine import Encoded, EncodeItem, Engine
from keyquorum.cluster.transform.model import Transformation, TransformationType, TweakSource
from keyquorum.cluster.transform.state import WriteTransformation

NOW = 1_700_000_000


class Unsealed:
    def __init__(self) -> None:
        self._keyring = Keyring.generate(secrets.token_bytes(32))
        self.sealed = False

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        return self._keyring.encrypt(plaintext, associated_data)

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        return self._keyring.decrypt(ciphertext, associated_data)


def rate(action: Callable[[], object], values: int, rounds: int) -> float:
    timer = timeit.Timer(action, timer=time.process_time)
    return values / min(timer.repeat(repeat=rounds, number=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=2000, help="values per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    state = ClusterState()
    engine = Engine(state.transform, Unsealed())  # type: ignore[arg-type]
    made = {
        "fpe": Transformation("fpe", TransformationType.FPE, "builtin/creditcardnumber",
                              tweak_source=TweakSource.INTERNAL),
        "masking": Transformation("masking", TransformationType.MASKING,
                                  "builtin/creditcardnumber"),
        "tokenization": Transformation("tokenization", TransformationType.TOKENIZATION),
        "tokenization (convergent)": Transformation("convergent",
                                                    TransformationType.TOKENIZATION,
                                                    convergent=True),
    }
    cards = [f"{4000_0000_0000_0000 + i * 7919:016d}" for i in range(args.values)]
    items = [EncodeItem(card) for card in cards]

    print(f"{'transformation':28} {'encode/s':>10} {'decode/s':>10}")
    for label, draft in made.items():
        if draft.type != TransformationType.MASKING:
            draft = engine.with_new_key(draft)
        state.apply(WriteTransformation(draft))
        transformation = state.transform.transformation(draft.name)
        assert transformation is not None
        encode_rate, decode_rate = measure(state, engine, transformation, items, args.rounds)
        decode_text = "-" if decode_rate is None else f"{decode_rate:,.0f}"
        print(f"{label:28} {encode_rate:10,.0f} {decode_text:>10}")


def measure(state: ClusterState, engine: Engine, transformation: Transformation,
            items: list[EncodeItem], rounds: int) -> tuple[float, float | None]:
    def encode() -> list[Encoded]:
        results, command = engine.encode(transformation, items, NOW)
        if command is not None:
            state.apply(command)
        return results  # type: ignore[return-value]

    encoded = [EncodeItem(result.value) for result in encode()]
    encode_rate = rate(encode, len(items), rounds)
    if transformation.type == TransformationType.MASKING:
        return encode_rate, None
    return encode_rate, rate(lambda: engine.decode(transformation, encoded, NOW), len(items),
                             rounds)

if __name__ == "__main__":
    main()
