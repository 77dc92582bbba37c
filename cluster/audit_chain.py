"""The hash chain of an audit device, and the check that finds where it breaks.

Every line a device writes is one JSON object that begins with two fields:

- ``seq``: the record's number on this device, 1, 2, 3, ... with no gap;
- ``prev``: the SHA-256 (hex) of the exact bytes of the previous line, without its
  newline, or null for the very first record of the device.

So a line edited anywhere changes its hash and no longer matches the ``prev`` of the
line after it; a removed line leaves a gap in ``seq``; lines swapped or moved come
out of ``seq`` order. ``verify`` walks a file and names the first line where one of
these shows, with what happened to it.

Files and rotation. Whenever a device opens its file (enabled, node start, SIGHUP
after a rotation; for a socket, each connection) the first line it writes is an
``audit_opened`` record, and
the chain simply continues: that record's ``seq`` follows the last record the device
wrote and its ``prev`` is that record's hash, in the old file. A file therefore
checks alone from its first line (which must be an ``audit_opened``, or lines
were cut from its top), and ``verify OLD NEW`` also checks the link between them.
A node that restarts reads the last line of its file to continue the chain; if the
file was rotated away while the node was down, the new file starts a new chain
(``prev`` null, ``seq`` 1): it verifies alone, and ``verify OLD NEW`` reports the
restart, since the link between the two is lost.

What a chain cannot show: the last lines of the newest file removed (nothing after
them records their hash), and a file rewritten wholesale by someone who recomputes
every hash after their edit - the chain is keyless, so that anyone can verify it
without the device's salt. Against both, enable a second device that ships records
off the host (syslog, socket): its copy anchors the file's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

FILE_OPENED = "audit_opened"


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


@dataclass(frozen=True)
class ChainHead:
    """Where a device's chain stands: the last record's number and hash."""

    seq: int = 0
    hash: str | None = None

    def next(self, line: bytes) -> ChainHead:
        return ChainHead(self.seq + 1, line_hash(line))


def chain_line(head: ChainHead, body: str) -> bytes:
    """One record's line: ``body`` is the record's JSON object without its opening brace."""
    prev = "null" if head.hash is None else f'"{head.hash}"'
    return f'{{"seq":{head.seq + 1},"prev":{prev},{body}'.encode()


def head_of(last_line: bytes) -> ChainHead | None:
    """The chain head a file's last line leaves, or None if it is not a record."""
    try:
        seq = json.loads(last_line)["seq"]
    except (ValueError, KeyError, TypeError):
        return None
    return ChainHead(seq, line_hash(last_line)) if isinstance(seq, int) else None


@dataclass(frozen=True)
class Finding:
    """The first place a file's chain breaks; ``line`` counts from 1 in the file checked."""

    file: str
    line: int
    problem: str  # altered, removed, reordered, restarted
    detail: str


@dataclass(frozen=True)
class Verified:
    files: tuple[str, ...]
    records: int
    first_seq: int
    last_seq: int
    finding: Finding | None

    @property
    def intact(self) -> bool:
        return self.finding is None


def verify(files: Iterable[tuple[str, bytes]]) -> Verified:
    """Check the chain through ``files`` (name and content), in rotation order."""
    names: list[str] = []
    head: ChainHead | None = None
    first_seq = 0
    records = 0
    for name, content in files:
        names.append(name)
        lines = content.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        finding, head, count = _verify_file(name, lines, head)
        if head is not None and not first_seq:
            first_seq = head.seq - count + 1
        records += count
        if finding is not None:
            return Verified(tuple(names), records, first_seq, head.seq if head else 0, finding)
    return Verified(tuple(names), records, first_seq, head.seq if head else 0, None)


def _verify_file(
    name: str, lines: list[bytes], head: ChainHead | None
) -> tuple[Finding | None, ChainHead | None, int]:
    # First read every line, so that a record out of place can be told from a removed
    # one by whether its number shows up elsewhere in the file.
    parsed: list[dict[str, Any] | None] = [_parse(line) for line in lines]
    seqs = {record["seq"] for record in parsed if record is not None}

    def found(number: int, problem: str, detail: str) -> tuple[Finding, ChainHead | None, int]:
        return Finding(name, number, problem, detail), head, number - 1

    for index, (line, record) in enumerate(zip(lines, parsed, strict=True)):
        number = index + 1
        if record is None:
            return found(number, "altered", "not an audit record (bad JSON, or no seq/prev)")

        # The first line of a file opens it: either the first record of a chain, or
        # the continuation of the file before (checked when that file was given).
        restarts = record.get("type") == FILE_OPENED and record["prev"] is None
        if index == 0 and head is not None and restarts:
            return found(number, "restarted", "this file starts a new chain: the files are "
                                              "out of order, or the node restarted after the "
                                              "file before was rotated away; verify it alone")
        if index == 0 and head is None:
            if record.get("type") != FILE_OPENED:
                return found(number, "removed", f"the file does not begin with an "
                                                f"{FILE_OPENED} record: lines were cut from "
                                                "its top")
            if record["prev"] is None and record["seq"] != 1:
                return found(number, "altered", "a chain start whose seq is not 1")
            head = ChainHead(record["seq"], line_hash(line))
            continue

        assert head is not None
        expected = head.seq + 1
        links = record["prev"] == head.hash
        if record["seq"] == expected and links:
            head = head.next(line)
            continue
        if record["seq"] == expected:
            return found(number - 1 if index else number, "altered",
                         f"the hash of this line does not match the prev of line {number}"
                         if index else "it does not follow the last line of the file before")
        if links:
            return found(number, "altered", f"seq is {record['seq']}, expected {expected}, yet "
                                            "the line links to the one before it")
        if record["seq"] > expected and expected not in seqs:
            gap = (f"record {expected}" if record["seq"] == expected + 1
                   else f"records {expected}-{record['seq'] - 1}")
            return found(number, "removed", f"{gap} missing before this line")
        return found(number, "reordered", f"seq {record['seq']} where {expected} belongs "
                                          "(lines swapped, moved or duplicated)")
    return None, head, len(lines)


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("seq"), int):
        return None
    prev = record.get("prev", 0)
    if not (prev is None or isinstance(prev, str)):
        return None
    return record
