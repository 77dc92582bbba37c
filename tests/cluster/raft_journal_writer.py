"""Appends entries to a DurableJournal, then waits to be killed (helper for test_raft.py).

Usage: raft_journal_writer.py JOURNAL_PATH COUNT. Entry i (1-based) holds b"entry-<i>" at
term 1 + i // 10. Prints "synced" once all entries are appended and synced.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from keyquorum.cluster.raft_journal import DurableJournal


def main() -> None:
    path, count = Path(sys.argv[1]), int(sys.argv[2])
    journal = DurableJournal(path, path.with_name("raft.dump"))
    for index in range(1, count + 1):
        journal.add(b"entry-%d" % index, index, 1 + index // 10)
        if index % 10 == 0:
            journal.sync()
    journal.sync()
    journal.setCurrentTerm(7, "127.0.0.1:9")
    print("synced", flush=True)
    time.sleep(60)


if __name__ == "__main__":
    main()
