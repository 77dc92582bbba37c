"""The mapping compiles a class's plan once, even when threads ask for it at once.

Found by the chaos clients: six threads encoding their first request together got
"RequestMessage contains itself" from the threads that saw another's compilation in
progress. A node encodes on its event loop, the Raft thread and gRPC's threads.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

from keyquorum.kmip.mapping import at, from_item, many, required, to_item
from keyquorum.kmip.tables import Tag


# Used by no other test, so their plans do not exist until the test below; nested, so
# compiling one compiles another. The mapping resolves hints at module level.
@dataclass(frozen=True, kw_only=True)
class Inner:
    value: int = required(Tag.BATCH_COUNT)


@dataclass(frozen=True, kw_only=True)
class Outer:
    first: Inner = required(Tag.PROTOCOL_VERSION)
    rest: tuple[Inner, ...] = many(Tag.BATCH_ITEM)
    note: str | None = at(Tag.RESULT_MESSAGE)


def test_concurrent_first_use_of_a_class_compiles_it_once_for_everyone() -> None:
    message = Outer(first=Inner(value=1), rest=(Inner(value=2),) * 3, note="x")
    start = threading.Barrier(16)
    failures: list[BaseException] = []

    def encode() -> None:
        start.wait()
        try:
            assert from_item(Outer, to_item(message, Tag.REQUEST_MESSAGE)) == message
        except BaseException as error:  # collected for the assertion below
            failures.append(error)

    # Switch threads every microsecond, so that they meet inside the compilation.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=encode) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []
