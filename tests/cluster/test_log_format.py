"""`[node] log_format`: keyquorum's key=value lines, or the same fields as JSON."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import time
from datetime import timedelta
from pathlib import Path

from harness import KEYQUORUM

from keyquorum.cluster.log_format import JsonFormatter, fields_of
from keyquorum.cluster.pki import create_ca, issue_certificate

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "three-node" / "kq-1.toml"


def test_fields_of_splits_event_and_fields_and_keeps_spaces_in_values() -> None:
    assert fields_of("node_started id=kq-1 kmip=0.0.0.0:5696") == {
        "event": "node_started", "id": "kq-1", "kmip": "0.0.0.0:5696"}
    assert fields_of("audit_device_failed device=f1 detail=No space left") == {
        "event": "audit_device_failed", "device": "f1", "detail": "No space left"}
    assert fields_of("listener_stopped") == {"event": "listener_stopped"}
    # Someone else's prose is kept whole, not forced into fields.
    assert fields_of("Started server process [12]") == {"message": "Started server process [12]"}


def test_json_formatter_never_lets_a_field_replace_the_line_s_own_members() -> None:
    record = logging.LogRecord("keyquorum.node", logging.WARNING, __file__, 1,
                               "odd_event level=forged logger=forged n=%d", (3,), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "warning" and line["logger"] == "keyquorum.node"
    assert line["event"] == "odd_event" and line["n"] == "3"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_a_node_with_log_format_json_writes_only_json_lines(tmp_path: Path) -> None:
    ca = create_ca("log test CA")
    ca.write(tmp_path / "ca.pem", tmp_path / "ca.key")
    issue_certificate(ca, "kq-1", sans=["localhost"], ttl=timedelta(days=1)).write(
        tmp_path / "node.pem", tmp_path / "node.key")
    for secret in ("raft-password", "admin-token"):
        (tmp_path / secret).write_text("a-log-test-secret-of-enough-length\n")
    text = EXAMPLE.read_text().replace("/etc/keyquorum", str(tmp_path))
    text = text.replace("/var/lib/keyquorum", str(tmp_path / "data"))
    text = text.replace('data_dir = ', 'log_format = "json"\ndata_dir = ', 1)
    text = text.replace('"0.0.0.0:5696"', f'"127.0.0.1:{free_port()}"')
    text = text.replace('listen = "10.0.0.1:7000"', f'listen = "127.0.0.1:{free_port()}"')
    text = text.replace('peers = ["10.0.0.2:7000", "10.0.0.3:7000"]', "peers = []")
    text = text.replace('"10.0.0.1:8696"', f'"127.0.0.1:{free_port()}"')
    config = tmp_path / "node.toml"
    config.write_text(text)
    log = tmp_path / "node.log"

    with log.open("wb") as output:
        node = subprocess.Popen([*KEYQUORUM, "server", "--config", str(config)],
                                stdout=output, stderr=output)
        try:
            deadline = time.monotonic() + 60
            while b"node_started" not in log.read_bytes() and node.poll() is None:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            assert node.poll() is None, log.read_text()
        finally:
            node.send_signal(signal.SIGTERM)
            node.wait(timeout=30)

    lines = [json.loads(line) for line in log.read_text().splitlines()]
    events = {line.get("event") for line in lines}
    assert {"node_started", "node_stopped"} <= events, events
    started = next(line for line in lines if line.get("event") == "node_started")
    assert started["id"] == "kq-1" and started["logger"] == "keyquorum.node"
