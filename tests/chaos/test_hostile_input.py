"""Hostile input against a real node: each attack is answered with a KMIP error or a
closed connection, while a well-behaved client keeps being served and the node's
memory stays bounded.

One single-node cluster (``keyquorum dev --nodes 1``, restarted with a 3 s idle
timeout so that slow attacks end quickly) serves the module. PyKMIP's client, an
independent implementation, creates and reads keys in a thread for the whole module;
each test checks that it saw no failure and no answer slower than
``SLOWEST_GOOD_ANSWER_SECONDS`` while the attack ran.
"""

from __future__ import annotations

import os
import random
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Cluster
from kmip.core import enums

from keyquorum.kmip.frontend import HANDSHAKE_TIMEOUT
from keyquorum.kmip.messages import ResponseMessage, decode_message
from keyquorum.kmip.tables import ResultReason, ResultStatus

IDLE_TIMEOUT_SECONDS = 3
# A Create and a Get on a fresh connection take tens of milliseconds; an attack that
# stalls the event loop shows as seconds.
SLOWEST_GOOD_ANSWER_SECONDS = 3.0
# Resident memory the node may gain over the whole module. Hundreds of connections
# held open at once (the handshake flood) cost tens of MiB of TLS and asyncio state,
# and CPython keeps its high-water mark; a leak per hostile connection grows past this.
MEMORY_GROWTH_LIMIT = 160 * 1024 * 1024
# What a repeated round of every attack may still add once the first rounds have
# set the high-water mark: a leak of 1 KiB per hostile connection would add more.
MEMORY_GROWTH_PER_ROUND = 4 * 1024 * 1024

NODE = "node-1"


class GoodClient:
    """Create then Get through PyKMIP, again and again; remembers failures and latency."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.failures: list[str] = []
        self.slowest = 0.0
        self.served = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def reset(self) -> None:
        self.failures.clear()
        self.slowest = 0.0
        self.served = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                with self.cluster.pykmip(NODE) as client:
                    uid = client.create(enums.CryptographicAlgorithm.AES, 128)
                    if len(client.get(uid).value) != 16:
                        self.failures.append("wrong key length")
            except Exception as error:
                self.failures.append(type(error).__name__)
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.served += 1
            time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = Cluster(tmp_path_factory.mktemp("hostile") / "cluster", nodes=1)
    running.start()
    try:
        running.kill(NODE)
        config = running.nodes[NODE].config
        text = re.sub(r"\[kmip\]\n", f"[kmip]\nidle_timeout_seconds = {IDLE_TIMEOUT_SECONDS}\n",
                      config.read_text())
        config.write_text(text)
        running.restart(NODE)
        running.leader()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def good_client(cluster: Cluster) -> Iterator[GoodClient]:
    client = GoodClient(cluster)
    client.start()
    yield client
    client.stop()


@pytest.fixture(scope="module")
def baseline_memory(cluster: Cluster, good_client: GoodClient) -> int:
    time.sleep(1.0)  # let the good client warm the node up first
    return rss_bytes(cluster.nodes[NODE].pid)


@pytest.fixture
def served_throughout(cluster: Cluster, good_client: GoodClient,
                      baseline_memory: int) -> Iterator[None]:
    """The good client's record during one attack, checked after it."""
    good_client.reset()
    yield
    time.sleep(0.5)
    assert good_client.failures == []
    assert good_client.served > 0
    assert good_client.slowest < SLOWEST_GOOD_ANSWER_SECONDS
    grown = rss_bytes(cluster.nodes[NODE].pid) - baseline_memory
    assert grown < MEMORY_GROWTH_LIMIT, f"the node grew by {grown // 2**20} MiB"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


# Raw TTLV, built by hand so that it can be wrong in exactly one way.


def ttlv(tag: int, item_type: int, value: bytes, length: int | None = None) -> bytes:
    size = len(value) if length is None else length
    padding = b"\0" * (-len(value) % 8) if item_type not in (0x01,) else b""
    return tag.to_bytes(3, "big") + bytes([item_type]) + struct.pack(">I", size) + value + padding


def integer(tag: int, value: int) -> bytes:
    return ttlv(tag, 0x02, struct.pack(">i", value))


def enumeration(tag: int, value: int) -> bytes:
    return ttlv(tag, 0x05, struct.pack(">I", value))


def structure(tag: int, *children: bytes) -> bytes:
    return ttlv(tag, 0x01, b"".join(children))


def text(tag: int, value: bytes) -> bytes:
    return ttlv(tag, 0x07, value)


REQUEST_MESSAGE, REQUEST_HEADER, BATCH_ITEM, REQUEST_PAYLOAD = (
    0x420078, 0x420077, 0x42000F, 0x420079)
OPERATION, UNIQUE_IDENTIFIER, BATCH_COUNT = 0x42005C, 0x420094, 0x42000D
GET, CREATE, DISCOVER_VERSIONS, OBJECT_TYPE = 0x0A, 0x01, 0x1E, 0x420057


def header(batch_count: int) -> bytes:
    version = structure(0x420069, integer(0x42006A, 1), integer(0x42006B, 4))
    return structure(REQUEST_HEADER, version, integer(BATCH_COUNT, batch_count))


def request(*items: bytes, batch_count: int | None = None) -> bytes:
    count = len(items) if batch_count is None else batch_count
    return structure(REQUEST_MESSAGE, header(count), *items)


def batch_item(operation: int, *payload: bytes) -> bytes:
    return structure(BATCH_ITEM, enumeration(OPERATION, operation),
                     structure(REQUEST_PAYLOAD, *payload))


# Talking to the node.


def connect(cluster: Cluster, tls: bool = True,
            context: ssl.SSLContext | None = None) -> socket.socket:
    node = cluster.nodes[NODE]
    raw = socket.create_connection((node.kmip_host, node.kmip_port), timeout=15)
    if not tls:
        return raw
    return (context or cluster.tls_context()).wrap_socket(raw, server_hostname=node.kmip_host)


def answer_to(connection: socket.socket, data: bytes) -> str:
    """What the node did: "error <reason>", "ok", or "closed"."""
    try:
        connection.sendall(data)
        received = b""
        while len(received) < 8 or len(received) < 8 + int.from_bytes(received[4:8], "big"):
            chunk = connection.recv(65536)
            if not chunk:
                return "closed"
            received += chunk
    except (ConnectionError, ssl.SSLError, TimeoutError, OSError):
        return "closed"
    finally:
        connection.close()
    response = decode_message(received)
    assert isinstance(response, ResponseMessage)
    items = response.batch_items
    failed = [item for item in items if item.result_status != ResultStatus.SUCCESS]
    if not failed:
        return "ok"
    return f"error {ResultReason(failed[0].result_reason).name}"


def refused(outcome: str) -> bool:
    return outcome == "closed" or outcome.startswith("error ")


# The attacks. Each names what it sends and asserts the node refused it.

def nested(depth: int) -> bytes:
    inner = integer(0x42006A, 1)
    for _ in range(depth):
        inner = structure(REQUEST_PAYLOAD, inner)
    return inner


def frames() -> dict[str, bytes]:
    get_payload = text(UNIQUE_IDENTIFIER, b"x")
    return {
        "header claiming 4 GiB": b"\x42\x00\x78\x01\xff\xff\xff\xff" + b"\0" * 64,
        "random bytes": random.Random(9).randbytes(4096),
        "not a request message": structure(0x42007B, integer(BATCH_COUNT, 1)),
        "nesting past the limit (40)": request(batch_item(GET, nested(40))),
        "item flood (30,000 integers)": request(batch_item(
            DISCOVER_VERSIONS, *[integer(0x42006A, 1)] * 30_000)),
        "10,000 batch items": request(*[batch_item(DISCOVER_VERSIONS)] * 10_000),
        "batch count says 1,000,000": request(batch_item(DISCOVER_VERSIONS),
                                              batch_count=1_000_000),
        "invalid UTF-8": request(batch_item(GET, text(UNIQUE_IDENTIFIER, b"\xff\xfe\xc3("))),
        "integer of length 5": request(batch_item(GET, ttlv(UNIQUE_IDENTIFIER, 0x02,
                                                               b"\0" * 8, length=5))),
        "wrong type for a field": request(batch_item(GET, integer(UNIQUE_IDENTIFIER, 7))),
        "unknown tag": request(batch_item(GET, get_payload, text(0x54FFFF, b"?"))),
        "unknown operation": request(batch_item(0x7777, get_payload)),
        "Create without an object type": request(batch_item(CREATE)),
        "Get without an identifier or placeholder": request(batch_item(GET)),
        "structure length past the message": structure(REQUEST_MESSAGE, header(1))[:-4]
        + b"\xff\xff\xff\x00",
    }


@pytest.mark.parametrize("name", list(frames()))
def test_a_malformed_request_is_refused(cluster: Cluster, served_throughout: None,
                                        name: str) -> None:
    outcome = answer_to(connect(cluster), frames()[name])
    assert refused(outcome), f"{name}: {outcome}"


def test_a_truncated_frame_then_a_half_close_is_dropped(cluster: Cluster,
                                                         served_throughout: None) -> None:
    frame = request(batch_item(DISCOVER_VERSIONS))
    connection = connect(cluster)
    connection.sendall(frame[: len(frame) // 2])
    connection.settimeout(IDLE_TIMEOUT_SECONDS + 5)
    # TLS has no half-close; a peer that stops mid-frame is closed at the idle timeout.
    assert connection.recv(1) == b""
    connection.close()


def test_slowloris_bodies_are_closed_at_the_idle_timeout(cluster: Cluster,
                                                         served_throughout: None) -> None:
    # Fifty authenticated connections each announce a body and trickle it a byte at a
    # time, faster than the idle timeout: each must be closed anyway, by a deadline on
    # the whole request.
    frame = request(batch_item(DISCOVER_VERSIONS))
    connections = [connect(cluster) for _ in range(50)]
    started = time.monotonic()
    open_ones = list(connections)
    sent = 8
    for connection in connections:
        connection.sendall(frame[:sent])
    while open_ones and time.monotonic() - started < IDLE_TIMEOUT_SECONDS * 4:
        time.sleep(0.5)
        sent = min(sent + 1, len(frame) - 1)
        for connection in list(open_ones):
            try:
                connection.sendall(frame[sent - 1:sent])
            except OSError:
                open_ones.remove(connection)
    for connection in connections:
        connection.close()
    assert open_ones == [], f"{len(open_ones)} slow connections still open after " \
                            f"{IDLE_TIMEOUT_SECONDS * 4} s"


def test_plain_tcp_garbage_is_closed(cluster: Cluster, served_throughout: None) -> None:
    outcome = answer_to(connect(cluster, tls=False), random.Random(1).randbytes(8192))
    assert outcome == "closed"


def test_a_garbage_tls_record_is_closed(cluster: Cluster, served_throughout: None) -> None:
    # A handshake record header, then a ClientHello of noise.
    record = b"\x16\x03\x01\x02\x00" + b"\x01\x00\x01\xfc" + random.Random(2).randbytes(508)
    assert answer_to(connect(cluster, tls=False), record) == "closed"


def test_a_handshake_flood_is_shed_and_the_node_keeps_serving(
        cluster: Cluster, served_throughout: None) -> None:
    # Two hundred connections that never start their handshake, held open, and two
    # hundred handshakes without a client certificate meanwhile.
    idle = [connect(cluster, tls=False) for _ in range(200)]
    anonymous = ssl.create_default_context(cafile=str(cluster.ca))
    outcomes = []
    for _ in range(200):
        try:
            tls = connect(cluster, context=anonymous)
            outcomes.append(answer_to(tls, request(batch_item(DISCOVER_VERSIONS))))
        except (ssl.SSLError, OSError):
            outcomes.append("closed")
    assert set(outcomes) == {"closed"}

    # The silent ones lose their slots at the handshake timeout (10 s).
    for connection in idle:
        connection.settimeout(HANDSHAKE_TIMEOUT + 5)
    assert all(connection.recv(1) == b"" for connection in idle)
    for connection in idle:
        connection.close()


def test_a_client_without_a_certificate_is_refused(cluster: Cluster) -> None:
    anonymous = ssl.create_default_context(cafile=str(cluster.ca))
    try:
        outcome = answer_to(connect(cluster, context=anonymous),
                            request(batch_item(DISCOVER_VERSIONS)))
    except (ssl.SSLError, OSError):
        outcome = "closed"
    assert outcome == "closed"


def test_many_random_frames_in_a_row_are_all_refused(cluster: Cluster,
                                                     served_throughout: None) -> None:
    # Random mutations of a valid request, 300 of them, each on its own connection.
    rng = random.Random(int(os.environ.get("KEYQUORUM_FUZZ_SEED", "5")))
    valid = request(batch_item(GET, text(UNIQUE_IDENTIFIER, b"some-key")))
    outcomes = []
    for _ in range(300):
        frame = bytearray(valid)
        for _ in range(rng.randint(1, 6)):
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        outcomes.append(answer_to(connect(cluster), bytes(frame)))
    # A mutation may still be a valid Get (of a missing key): that is refused too.
    assert all(refused(outcome) for outcome in outcomes), outcomes


def test_repeated_rounds_of_attacks_do_not_grow_memory(cluster: Cluster,
                                                       served_throughout: None) -> None:
    # Every malformed frame and fifty anonymous handshakes, five rounds: the first
    # rounds set CPython's high-water mark, the last ones must not raise it.
    anonymous = ssl.create_default_context(cafile=str(cluster.ca))
    sizes = []
    for _ in range(5):
        for frame in frames().values():
            answer_to(connect(cluster), frame)
        for _ in range(50):
            try:
                answer_to(connect(cluster, context=anonymous), b"")
            except (ssl.SSLError, OSError):
                pass
        time.sleep(0.5)
        sizes.append(rss_bytes(cluster.nodes[NODE].pid))
    assert sizes[-1] - sizes[-3] < MEMORY_GROWTH_PER_ROUND, [s // 2**20 for s in sizes]
