"""The audit hash chain and the broker's devices, in process.

Records are written by the real broker through real file and socket devices, then
the file is tampered with the ways an intruder would (an edited, a deleted, a
swapped line, a cut top) and ``verify`` must name the first line that shows it.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keyquorum.cluster.audit import AuditBroker, hmac_of
from keyquorum.cluster.audit_chain import FILE_OPENED, verify
from keyquorum.cluster.audit_state import (
    AuditDevice,
    AuditState,
    DisableAuditDevice,
    EnableAuditDevice,
    check_device,
)
from keyquorum.cluster.tenancy import Done, Refused
from keyquorum.kmip.audit import AuditUnavailable, Sensitive


def device(name: str, kind: str, **options: str) -> AuditDevice:
    return AuditDevice(name, kind, tuple(sorted(options.items())), secrets.token_bytes(32))


def enabled(*devices: AuditDevice) -> AuditState:
    state = AuditState()
    for each in devices:
        assert state.apply(EnableAuditDevice(each)) == Done()
    return state


def write(broker: AuditBroker, count: int, start: int = 0) -> None:
    async def main() -> None:
        for n in range(start, start + count):
            await broker.record("test", {"n": n, "secret": Sensitive(b"k%d" % n)})

    asyncio.run(main())


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[tuple[AuditBroker, Path, AuditDevice]]:
    config = device("file1", "file", path="audit/{node}.log")
    broker = AuditBroker("n1", enabled(config), tmp_path)
    yield broker, tmp_path / "audit" / "n1.log", config
    broker.close()


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def check(path: Path, *more: Path) -> Any:
    return verify([(str(p), p.read_bytes()) for p in (path, *more)])


def rewrite(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def test_an_intact_file_verifies_and_secrets_are_hmacs(logged: Any) -> None:
    broker, path, config = logged
    write(broker, 5)

    result = check(path)
    assert result.intact and result.records == 6 and (result.first_seq, result.last_seq) == (1, 6)
    records = [json.loads(line) for line in lines_of(path)]
    assert records[0]["type"] == FILE_OPENED and records[0]["prev"] is None
    assert [r["n"] for r in records[1:]] == [0, 1, 2, 3, 4]
    assert records[1]["node"] == "n1" and records[1]["type"] == "test"
    # The secret is the HMAC an auditor can compute with the endpoint, never itself.
    assert records[3]["secret"] == hmac_of(config.salt, b"k2") == broker.hash("file1", b"k2")
    assert b"k2" not in path.read_bytes().replace(b'"k2', b"")


def test_an_edited_line_is_named(logged: Any) -> None:
    broker, path, _ = logged
    write(broker, 5)
    lines = lines_of(path)
    lines[3] = lines[3].replace(b'"n":2', b'"n":7')
    rewrite(path, lines)

    finding = check(path).finding
    assert (finding.line, finding.problem) == (4, "altered")


def test_a_deleted_line_is_named(logged: Any) -> None:
    broker, path, _ = logged
    write(broker, 5)
    lines = lines_of(path)
    del lines[2]
    rewrite(path, lines)

    finding = check(path).finding
    assert (finding.line, finding.problem) == (3, "removed")
    assert "record 3 missing" in finding.detail


def test_swapped_lines_are_named(logged: Any) -> None:
    broker, path, _ = logged
    write(broker, 5)
    lines = lines_of(path)
    lines[2], lines[3] = lines[3], lines[2]
    rewrite(path, lines)

    finding = check(path).finding
    assert (finding.line, finding.problem) == (3, "reordered")


def test_a_cut_top_and_garbage_are_named(logged: Any) -> None:
    broker, path, _ = logged
    write(broker, 3)
    lines = lines_of(path)
    rewrite(path, lines[1:])
    assert (check(path).finding.line, check(path).finding.problem) == (1, "removed")

    rewrite(path, [*lines[:2], b"not json", *lines[2:]])
    assert (check(path).finding.line, check(path).finding.problem) == (3, "altered")


def test_the_chain_continues_across_a_rotation_and_a_restart(logged: Any,
                                                             tmp_path: Path) -> None:
    broker, path, config = logged
    write(broker, 3)
    rotated = path.with_suffix(".log.1")
    path.rename(rotated)
    # Records still go to the renamed file until the reopen, as with logrotate.
    write(broker, 1, start=3)
    broker.reopen()
    write(broker, 2, start=4)

    assert check(rotated).intact and check(path).intact
    joined = check(rotated, path)
    assert joined.intact and (joined.first_seq, joined.last_seq) == (1, 8)
    assert json.loads(lines_of(path)[0])["type"] == FILE_OPENED

    # Files given out of order do not link.
    assert check(path, rotated).finding.problem == "restarted"

    # A new broker (a node restart) continues the chain from the file's last line.
    broker.close()
    again = AuditBroker("n1", enabled(config), tmp_path)
    try:
        write(again, 2, start=6)
    finally:
        again.close()
    assert check(rotated, path).intact and check(rotated, path).last_seq == 11


def test_no_device_serves_and_an_unwritable_device_fails_closed(tmp_path: Path) -> None:
    # Without a device nothing is recorded and nothing is refused.
    quiet = AuditBroker("n1", AuditState(), tmp_path)
    assert not quiet.enabled
    write(quiet, 1)

    # A path that cannot be a file (a directory is in the way) fails every record.
    (tmp_path / "blocked").mkdir()
    broker = AuditBroker("n1", enabled(device("f", "file", path="blocked")), tmp_path)
    try:
        with pytest.raises(AuditUnavailable, match="no audit device could write"):
            write(broker, 1)
    finally:
        broker.close()


def test_one_working_device_is_enough(tmp_path: Path) -> None:
    (tmp_path / "blocked").mkdir()
    good = device("good", "file", path="good.log")
    broker = AuditBroker("n1", enabled(device("bad", "file", path="blocked"), good), tmp_path)
    try:
        write(broker, 2)
    finally:
        broker.close()
    assert check(tmp_path / "good.log").records == 3


def test_a_disabled_device_stops_receiving(tmp_path: Path) -> None:
    config = device("f", "file", path="a.log")
    state = enabled(config)
    broker = AuditBroker("n1", state, tmp_path)
    try:
        write(broker, 1)
        assert state.apply(DisableAuditDevice("f")) == Done()
        assert not broker.enabled
        write(broker, 1)
    finally:
        broker.close()
    assert check(tmp_path / "a.log").records == 2


class Reader:
    """A Unix socket listener that keeps every line it is sent."""

    def __init__(self, path: Path) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen()
        self.data = b""
        self.connection: socket.socket | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.connection, _ = self.listener.accept()
        with self.connection:
            while chunk := self.connection.recv(65536):
                self.data += chunk

    def close(self) -> None:
        """Go away as a killed reader does: the connection and the listener close."""
        if self.connection is not None:
            self.connection.shutdown(socket.SHUT_RDWR)
        self.listener.close()


def test_a_socket_device_fails_closed_when_its_reader_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "reader.sock"
    reader = Reader(path)
    broker = AuditBroker("n1", enabled(device("s", "socket", address=f"unix:{path}")),
                         tmp_path, write_timeout=1.0)
    try:
        write(broker, 3)
        reader.close()
        os.unlink(path)
        reader.thread.join(5)
        # The very next record fails: the reader's close is noticed before sending.
        with pytest.raises(AuditUnavailable):
            write(broker, 1, start=3)
    finally:
        broker.close()
    assert verify([("socket", reader.data)]).records == 4


def test_a_stuck_socket_reader_is_bounded_by_the_timeout(tmp_path: Path) -> None:
    # A reader that accepts and never reads: the send buffer fills, then sends block.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "stuck.sock"))
    listener.listen()
    broker = AuditBroker("n1", enabled(device("s", "socket",
                                              address=f"unix:{tmp_path / 'stuck.sock'}")),
                         tmp_path, write_timeout=0.5)

    async def flood() -> None:
        big = "x" * 60_000
        for _ in range(200):
            await broker.record("test", {"padding": big})

    try:
        with pytest.raises(AuditUnavailable, match="timed out"):
            asyncio.run(asyncio.wait_for(flood(), 30))
    finally:
        broker.close()
        listener.close()


def test_syslog_device_sends_one_datagram_per_record(tmp_path: Path) -> None:
    path = tmp_path / "log.sock"
    collector = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    collector.bind(str(path))
    collector.settimeout(5)
    broker = AuditBroker("n1", enabled(device("sys", "syslog", address=str(path),
                                              facility="local0")), tmp_path)
    try:
        write(broker, 2)
        messages = [collector.recv(65536) for _ in range(3)]
    finally:
        broker.close()
        collector.close()
    # local0 (16) * 8 + info (6) = 134.
    assert all(m.startswith(b"<134>keyquorum[") for m in messages)
    lines = b"\n".join(m.split(b"]: ", 1)[1] for m in messages)
    assert verify([("syslog", lines)]).intact


def test_device_settings_are_checked() -> None:
    assert check_device("file", "f", {}) == "a file device needs option(s) path"
    assert "does not take" in (check_device("file", "f", {"path": "a", "x": "1"}) or "")
    assert "tcp:HOST:PORT" in (check_device("socket", "s", {"address": "nowhere"}) or "")
    assert "unknown device type" in (check_device("tape", "t", {}) or "")
    assert check_device("syslog", "s", {"address": "udp:127.0.0.1:514"}) is None
    state = enabled(device("f", "file", path="a"))
    assert isinstance(state.apply(EnableAuditDevice(device("f", "file", path="b"))), Refused)
    assert isinstance(state.apply(DisableAuditDevice("nope")), Refused)
    restored = AuditState()
    restored.restore(state.snapshot())
    assert [d.name for d in restored.devices()] == ["f"]
