"""Decode and encode rates of vCenter's Create request: keyquorum against PyKMIP.

Run from the checkout: ``.venv/bin/python bench/codec_bench.py``. Times are CPU time
of this process (``time.process_time``), best of several rounds, so that other work
on a shared machine disturbs them less; the ratio is what the project tracks.
"""

from __future__ import annotations

import argparse
import time
import timeit
import warnings
from collections.abc import Callable
from pathlib import Path

from keyquorum.kmip import decode_message, encode_message
from keyquorum.kmip.messages import message_from_item, message_to_item
from keyquorum.kmip.ttlv import decode_item, encode_item

CAPTURE = Path("/work/shared/interop/vcenter-7.0.3-requests.txt")


def create_request(capture: Path) -> bytes:
    """The first Create request of the capture (one line: 'OPERATION HEX')."""
    for line in capture.read_text().splitlines():
        if line.startswith("Create "):
            return bytes.fromhex(line.split()[1])
    raise SystemExit(f"no Create request in {capture}")


def per_second(action: Callable[[], object], rounds: int, number: int) -> float:
    timer = timeit.Timer(action, timer=time.process_time)
    best = min(timer.repeat(repeat=rounds, number=number))
    return number / best


def pykmip_actions(data: bytes) -> tuple[Callable[[], object], Callable[[], object]]:
    # PyKMIP is only a yardstick here; its import warns about its own dependencies.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from kmip.core import utils
        from kmip.core.messages import messages

    def read() -> object:
        message = messages.RequestMessage()
        message.read(utils.BytearrayStream(data))
        return message

    decoded = read()

    def write() -> object:
        stream = utils.BytearrayStream()
        decoded.write(stream)  # type: ignore[attr-defined]
        return stream.buffer

    return read, write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capture", type=Path, default=CAPTURE)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--number", type=int, default=5000)
    args = parser.parse_args()

    data = create_request(args.capture)
    message = decode_message(data)
    item = decode_item(data)
    assert encode_message(message) == data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pykmip_read, pykmip_write = pykmip_actions(data)
        rows = [
            ("decode_message", lambda: decode_message(data), pykmip_read),
            ("encode_message", lambda: encode_message(message), pykmip_write),
            ("  bytes -> items", lambda: decode_item(data), None),
            ("  items -> model", lambda: message_from_item(item), None),
            ("  model -> items", lambda: message_to_item(message), None),
            ("  items -> bytes", lambda: encode_item(item), None),
        ]

        print(f"vCenter Create request, {len(data)} bytes; CPU time, best of {args.rounds}")
        print(f"{'':18}{'keyquorum/s':>12}{'us':>8}{'PyKMIP/s':>11}{'us':>8}{'ratio':>8}")
        for name, ours, theirs in rows:
            rate = per_second(ours, args.rounds, args.number)
            line = f"{name:18}{rate:12,.0f}{1e6 / rate:8.1f}"
            if theirs is not None:
                their_rate = per_second(theirs, args.rounds, max(args.number // 10, 1))
                line += f"{their_rate:11,.0f}{1e6 / their_rate:8.1f}{rate / their_rate:7.1f}x"
            print(line)


if __name__ == "__main__":
    main()
