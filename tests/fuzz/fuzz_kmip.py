"""Coverage-guided fuzzing (atheris) of the KMIP decoder and the request handler.

    python tests/fuzz/fuzz_kmip.py decoder [libFuzzer flags, e.g. -runs=100000]
    python tests/fuzz/fuzz_kmip.py service [libFuzzer flags]

The rule under test is the protocol layer's promise: any bytes either decode into a
message or raise KmipError, and the service answers any frame with a well-formed
response message, never an exception. A finding is a crash report from libFuzzer with
the input that caused it. The seed corpus is vCenter's captured requests.

`make fuzz` runs each target for longer; tests/fuzz/test_fuzz.py runs a short,
fixed-seed run of each in `make test`.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import atheris

# The service over a one-node log is the tests' (tests/kmip_inprocess.py); run as a
# script, this file has only its own folder on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports(include=["keyquorum"]):
    from kmip_inprocess import CLIENT, new_service

    from keyquorum.kmip.errors import KmipError
    from keyquorum.kmip.messages import ResponseMessage, decode_message

CAPTURE = (Path(__file__).resolve().parents[2].parent / "shared" / "interop"
           / "vcenter-7.0.3-requests.txt")


def fuzz_decoder(data: bytes) -> None:
    try:
        decode_message(data)
    except KmipError:
        pass


_SERVICE = new_service()
_LOOP = asyncio.new_event_loop()


def fuzz_service(data: bytes) -> None:
    answer = _LOOP.run_until_complete(_SERVICE.handle(data, CLIENT))
    response = decode_message(answer)
    if not isinstance(response, ResponseMessage):
        raise AssertionError("the service answered with something other than a response")


def write_seed_corpus(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for number, line in enumerate(CAPTURE.read_text().splitlines()):
        if line and not line.startswith("#"):
            operation, hex_bytes = line.split()
            (folder / f"{number:02d}-{operation}").write_bytes(bytes.fromhex(hex_bytes))


def main(argv: list[str]) -> None:
    target = {"decoder": fuzz_decoder, "service": fuzz_service}[argv[1]]
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
