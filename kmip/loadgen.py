"""A KMIP load generator: many connections to any KMIP server, then rates and latencies.

Theory of operation
===================

The client competes with the server for the same cores, so it must cost little per
request. Everything that can be done once is done before the clock starts:

1. ``prepare`` creates and activates the keys that Get, Locate and Encrypt need, over
   one blocking connection, with plain KMIP 1.x requests of our own message model.
2. ``request_plan`` encodes every request the run will send, once: a Create is the
   same bytes each time, a Get cycles over the prepared keys, a mix is a fixed,
   shuffled list. Sending is then a ``transport.write`` of ready bytes.
3. ``run_load`` starts worker processes (forked, or spawned from a threaded parent),
   each an asyncio loop (uvloop when installed) driving its share of the connections.
   Each connection sends one request, waits for its answer, and sends the next, as
   KMIP clients do. Workers open their connections, say they are ready, and all
   start at one instant of the system-wide monotonic clock.
4. A response is checked by decoding it with ``decode_message``; an item that did not
   succeed is counted by its Result Reason, a broken connection by what broke it.
   Latency is measured from the moment the request was due: with ``rate`` set, a
   request that waits behind a slow one is charged for its wait too, so a paced run
   does not hide queueing.
5. Each worker sends back its latencies, error counts and its own CPU time; the
   parent merges them into one ``LoadReport``.

Nothing here is specific to keyquorum: the same run drives PyKMIP's server, which is
how ``make bench`` compares the two (bench/kmip_bench.py).
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import random
import ssl
import threading
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .attributes import Attribute, Name, TemplateAttribute
from .conformance import TlsTransport, client_context
from .errors import KmipError
from .messages import (
    RequestBatchItem,
    RequestHeader,
    RequestMessage,
    ResponseMessage,
    decode_message,
    encode_message,
)
from .objects import CryptographicParameters, UniqueIdentifier
from .payloads import (
    ActivateRequestPayload,
    CreateRequestPayload,
    EncryptRequestPayload,
    GetRequestPayload,
    LocateRequestPayload,
    ProtocolVersion,
)
from .tables import (
    BlockCipherMode,
    CryptographicAlgorithm,
    CryptographicUsageMask,
    NameType,
    ObjectType,
    Operation,
    PaddingMethod,
    ResultReason,
    ResultStatus,
    Tag,
)
from .ttlv import NEED_DATA, FrameReader, Item, ItemType

OPERATIONS = ("create", "get", "locate", "encrypt", "mix")

# KMIP 1.2: every server of interest speaks it, PyKMIP's included.
PROTOCOL_VERSION = ProtocolVersion(major=1, minor=2)

# The mix: roughly what a key manager serving storage sees, mostly reads.
MIX_WEIGHTS = {"get": 7, "create": 1, "locate": 1, "encrypt": 1}
MIX_PLAN_LENGTH = 100

# Bytes each Encrypt carries: one database page's worth is typical of KMIP encrypt use.
ENCRYPT_DATA = bytes(range(256)) * 16

# A request that has no answer this long after the run's end is counted as a timeout.
ANSWER_GRACE_SECONDS = 10.0

# A worker that does not connect within this long is reported as failed to start.
START_TIMEOUT_SECONDS = 60.0


class LoadError(Exception):
    """The run could not start: no connection, or the keys it needs were refused."""


@dataclass(frozen=True)
class LoadOptions:
    servers: tuple[tuple[str, int], ...]
    ca: Path
    cert: Path
    key: Path
    op: str
    connections: int
    duration_seconds: float
    new_connection: bool = False
    # With new_connection: offer each server the TLS session of the last connection to
    # it, as Java clients such as vCenter do, so that handshakes are abbreviated.
    resume_sessions: bool = False
    # 0 picks one process per core, at most one per connection (see ``process_count``).
    processes: int = 0
    # Total requests a second over all connections; None sends as fast as answered.
    rate: float | None = None
    # Stop after this many requests (or at the duration, whichever comes first).
    requests: int | None = None
    # How many keys Get, Locate and Encrypt cycle over.
    keys: int = 32

    def __post_init__(self) -> None:
        if self.op not in OPERATIONS:
            raise ValueError(f"op must be one of {', '.join(OPERATIONS)}, not {self.op!r}")
        if not self.servers:
            raise ValueError("give at least one server")
        if self.connections < 1 or self.duration_seconds <= 0 or self.keys < 1:
            raise ValueError("connections, duration and keys must be positive")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be positive")
        if self.resume_sessions and not self.new_connection:
            raise ValueError("resuming sessions needs a new connection per request")


@dataclass(frozen=True)
class LoadReport:
    op: str
    connections: int
    new_connection: bool
    processes: int
    # Connections on which the server resumed the offered TLS session.
    resumed_sessions: int
    rate: float | None
    duration_seconds: float  # as run: shorter than asked when the request budget ran out
    requests: int  # answered, successfully or not
    succeeded: int
    # By Result Reason for answered failures ("item_not_found"), by what broke otherwise.
    errors: dict[str, int]
    throughput: float  # succeeded requests per second
    latency_ms: dict[str, float]  # p50, p90, p99, max, mean of answered requests
    client_cpu_seconds: float  # the worker processes' own CPU during the run

    @property
    def client_cpu_us_per_request(self) -> float:
        return self.client_cpu_seconds / max(self.requests, 1) * 1e6

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"client_cpu_us_per_request": self.client_cpu_us_per_request}


# Requests, encoded once.


def request_bytes(operation: Operation, payload: object) -> bytes:
    """One KMIP 1.2 request message with a single batch item, as TTLV bytes."""
    message = RequestMessage(
        header=RequestHeader(protocol_version=PROTOCOL_VERSION, batch_count=1),
        batch_items=(RequestBatchItem(operation=operation, payload=payload),),
    )
    return encode_message(message)


def _attribute(name: str, item_type: ItemType, value: object) -> Attribute:
    return Attribute(name=name, value=Item(Tag.ATTRIBUTE_VALUE, item_type, value))


def create_request(name: str | None = None) -> bytes:
    """Create an AES-256 key for encryption and decryption, with a Name when given."""
    usage = CryptographicUsageMask.ENCRYPT | CryptographicUsageMask.DECRYPT
    attributes = [
        _attribute("Cryptographic Algorithm", ItemType.ENUMERATION, CryptographicAlgorithm.AES),
        _attribute("Cryptographic Length", ItemType.INTEGER, 256),
        _attribute("Cryptographic Usage Mask", ItemType.INTEGER, int(usage)),
    ]
    if name is not None:
        attributes.append(_attribute("Name", ItemType.STRUCTURE, [
            Item(Tag.NAME_VALUE, ItemType.TEXT_STRING, name),
            Item(Tag.NAME_TYPE, ItemType.ENUMERATION, NameType.UNINTERPRETED_TEXT_STRING),
        ]))
    payload = CreateRequestPayload(
        object_type=ObjectType.SYMMETRIC_KEY,
        template_attribute=TemplateAttribute(attributes=tuple(attributes)),
    )
    return request_bytes(Operation.CREATE, payload)


def get_request(uid: str) -> bytes:
    return request_bytes(Operation.GET, GetRequestPayload(unique_identifier=UniqueIdentifier(uid)))


def activate_request(uid: str) -> bytes:
    return request_bytes(Operation.ACTIVATE, ActivateRequestPayload(
        unique_identifier=UniqueIdentifier(uid)
    ))


def locate_request(name: str) -> bytes:
    name_value = Name(name_value=name, name_type=NameType.UNINTERPRETED_TEXT_STRING)
    attribute = _attribute("Name", ItemType.STRUCTURE, [
        Item(Tag.NAME_VALUE, ItemType.TEXT_STRING, name_value.name_value),
        Item(Tag.NAME_TYPE, ItemType.ENUMERATION, name_value.name_type),
    ])
    return request_bytes(Operation.LOCATE, LocateRequestPayload(attribute_list=(attribute,)))


def encrypt_request(uid: str) -> bytes:
    # AES-CBC with PKCS#5 padding and a server-drawn IV: what every KMIP server supports.
    parameters = CryptographicParameters(
        block_cipher_mode=BlockCipherMode.CBC,
        padding_method=PaddingMethod.PKCS5,
        cryptographic_algorithm=CryptographicAlgorithm.AES,
    )
    payload = EncryptRequestPayload(
        unique_identifier=UniqueIdentifier(uid), cryptographic_parameters=parameters,
        data=ENCRYPT_DATA,
    )
    return request_bytes(Operation.ENCRYPT, payload)


@dataclass(frozen=True)
class PreparedKey:
    uid: str
    name: str


def request_plan(op: str, keys: list[PreparedKey]) -> list[bytes]:
    """Every distinct request the run sends, in the order each connection cycles them."""
    if op == "create":
        return [create_request()]
    if op == "get":
        return [get_request(key.uid) for key in keys]
    if op == "locate":
        return [locate_request(key.name) for key in keys]
    if op == "encrypt":
        return [encrypt_request(key.uid) for key in keys]

    # The mix: fixed proportions, shuffled with a fixed seed so every run sends the same.
    chooser = random.Random(1)
    plan: list[bytes] = []
    for kind, weight in MIX_WEIGHTS.items():
        count = MIX_PLAN_LENGTH * weight // sum(MIX_WEIGHTS.values())
        for _ in range(count):
            key = chooser.choice(keys)
            plan.append(create_request() if kind == "create" else
                        request_plan(kind, [key])[0])
    chooser.shuffle(plan)
    return plan


def needs_keys(op: str) -> bool:
    return op != "create"


# Responses.


def failure_reason(frame: bytes) -> str | None:
    """None when every batch item of the response succeeded, else why the first failed."""
    try:
        message = decode_message(frame)
    except KmipError:
        return "undecodable_response"
    if not isinstance(message, ResponseMessage):
        return "not_a_response"
    for item in message.batch_items:
        if item.result_status != ResultStatus.SUCCESS:
            return reason_name(item.result_reason, item.result_status)
    return None


def reason_name(reason: int | None, status: int) -> str:
    """``item_not_found`` for a Result Reason; the status when the server gave no reason."""
    if reason is None:
        try:
            return ResultStatus(status).name.lower()
        except ValueError:
            return f"result_status_{status:#x}"
    try:
        return ResultReason(reason).name.lower()
    except ValueError:
        return f"result_reason_{reason:#x}"


def connection_failure(error: BaseException) -> str:
    """What broke a connection, as an error count's name."""
    if isinstance(error, ConnectionRefusedError):
        return "connection_refused"
    if isinstance(error, ssl.SSLError):
        return "tls_error"
    if isinstance(error, ConnectionResetError | BrokenPipeError | EOFError):
        return "connection_reset"
    if isinstance(error, ServerClosed):
        return "closed_by_server"
    if isinstance(error, TimeoutError):
        return "timeout"
    return "connection_error"


class ServerClosed(ConnectionError):
    """The server closed the connection while a request waited for its answer."""


# Preparation, over one blocking connection.


def prepare(options: LoadOptions) -> list[PreparedKey]:
    """Create and activate the keys the run reads; none for a Create run."""
    if not needs_keys(options.op):
        return []
    host, port = options.servers[0]
    try:
        context = client_context(options.ca, options.cert, options.key)
        transport = TlsTransport(host, port, context)
    except (OSError, ValueError) as error:
        raise LoadError(f"cannot connect to {host}:{port}: {error}") from error

    prefix = f"loadgen-{uuid.uuid4().hex[:12]}"
    keys: list[PreparedKey] = []
    try:
        for index in range(options.keys):
            name = f"{prefix}-{index}"
            created = _expect_success(transport.exchange(create_request(name)), "Create")
            uid = created.batch_items[0].payload.unique_identifier
            _expect_success(transport.exchange(activate_request(uid)), "Activate")
            keys.append(PreparedKey(uid, name))
    except OSError as error:
        raise LoadError(f"the connection to {host}:{port} broke while preparing keys: "
                        f"{error}") from error
    finally:
        transport.close()
    return keys


def _expect_success(frame: bytes, what: str) -> ResponseMessage:
    reason = failure_reason(frame)
    if reason is not None:
        raise LoadError(f"the server refused the {what} that prepares the run's keys: {reason}")
    message = decode_message(frame)
    assert isinstance(message, ResponseMessage)
    return message


# Running: the parent.


def process_count(options: LoadOptions) -> int:
    if options.processes > 0:
        return min(options.processes, options.connections)
    # Two cores here: two workers keep up with any server this machine can run, and
    # a connection's requests never wait behind another worker's Python code.
    return min(2, options.connections)


@dataclass
class _WorkerResult:
    answered: int = 0
    succeeded: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: bytes = b""  # array("d") of seconds
    cpu_seconds: float = 0.0
    finished_at: float = 0.0  # monotonic: the last answer, or the deadline
    resumed_sessions: int = 0


def run_load(
    options: LoadOptions,
    keys: list[PreparedKey] | None = None,
    progress: Callable[[float, int], None] | None = None,
) -> LoadReport:
    """Drive the servers as ``options`` say and measure; ``progress(elapsed, done)``
    is called a few times a second while the run lasts."""
    if keys is None:
        keys = prepare(options)
    plan = request_plan(options.op, keys)
    processes = process_count(options)

    # Connections go round-robin over the servers and over the workers.
    shares = [list(range(worker, options.connections, processes)) for worker in range(processes)]
    # Fork starts a worker in milliseconds; a parent with threads must spawn instead.
    method = "fork" if threading.active_count() == 1 else "spawn"
    context: Any = multiprocessing.get_context(method)
    done_counts = context.RawArray("q", processes)
    pipes = []
    workers = []
    for worker, share in enumerate(shares):
        parent_end, child_end = context.Pipe()
        budget = None if options.requests is None else _split(options.requests, processes)[worker]
        process = context.Process(
            target=_worker_main,
            args=(options, plan, share, budget, worker, done_counts, child_end),
            daemon=True,
        )
        process.start()
        child_end.close()
        pipes.append(parent_end)
        workers.append(process)

    try:
        # Every worker connected: start them all at one instant.
        for pipe in pipes:
            if not pipe.poll(START_TIMEOUT_SECONDS):
                raise LoadError("a load worker did not start in time")
            ready = pipe.recv()
            if ready != "ready":
                raise LoadError(f"a load worker could not start: {ready}")
        start_at = time.monotonic() + 0.05
        for pipe in pipes:
            pipe.send(start_at)

        # Report progress until every worker has answered.
        results: list[_WorkerResult | None] = [None] * processes
        # Workers stop by the grace period, then take a few seconds to close and send.
        hard_stop = start_at + options.duration_seconds + ANSWER_GRACE_SECONDS + 30
        while any(result is None for result in results) and time.monotonic() < hard_stop:
            for index, pipe in enumerate(pipes):
                if results[index] is None and pipe.poll():
                    answer = pipe.recv()
                    if isinstance(answer, str):
                        raise LoadError(f"a load worker failed: {answer}")
                    results[index] = answer
            if progress is not None:
                elapsed = min(max(time.monotonic() - start_at, 0.0), options.duration_seconds)
                progress(elapsed, sum(done_counts))
            time.sleep(0.1)
    finally:
        for process in workers:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()

    finished = [result for result in results if result is not None]
    if len(finished) < processes:
        raise LoadError("a load worker did not report its results")
    return _merge(options, processes, finished, start_at)


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def _merge(options: LoadOptions, processes: int, results: list[_WorkerResult],
           start_at: float) -> LoadReport:
    latencies = array("d")
    errors: Counter[str] = Counter()
    for result in results:
        latencies.frombytes(result.latencies)
        errors.update(result.errors)
    ordered = sorted(latencies)
    answered = sum(result.answered for result in results)
    succeeded = sum(result.succeeded for result in results)

    # A run with a request budget may end before its duration: rate over what it took.
    elapsed = max(result.finished_at for result in results) - start_at
    elapsed = min(max(elapsed, 1e-3), options.duration_seconds)
    return LoadReport(
        op=options.op,
        connections=options.connections,
        new_connection=options.new_connection,
        processes=processes,
        resumed_sessions=sum(result.resumed_sessions for result in results),
        rate=options.rate,
        duration_seconds=elapsed,
        requests=answered,
        succeeded=succeeded,
        errors=dict(errors.most_common()),
        throughput=succeeded / elapsed,
        latency_ms=latency_summary(ordered),
        client_cpu_seconds=sum(result.cpu_seconds for result in results),
    )


def latency_summary(ordered: list[float]) -> dict[str, float]:
    """p50, p90, p99 (nearest rank), max and mean, in milliseconds, of sorted seconds."""
    if not ordered:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}

    def rank(fraction: float) -> float:
        index = min(len(ordered), max(1, math.ceil(len(ordered) * fraction))) - 1
        return ordered[index] * 1000

    return {
        "p50": rank(0.50),
        "p90": rank(0.90),
        "p99": rank(0.99),
        "max": ordered[-1] * 1000,
        "mean": sum(ordered) / len(ordered) * 1000,
    }


# Running: a worker process.


def _worker_main(
    options: LoadOptions,
    plan: list[bytes],
    share: list[int],
    budget: int | None,
    worker: int,
    done_counts: Any,
    pipe: Any,
) -> None:
    try:
        import uvloop  # the client's own cost matters: uvloop's is lower

        uvloop.install()
    except ImportError:
        pass
    # The parent hears "ready", then a _WorkerResult; or a sentence saying what failed.
    try:
        result: _WorkerResult | str = asyncio.run(
            _Worker(options, plan, share, budget, worker, done_counts).run(pipe)
        )
    except Exception as error:
        result = f"{type(error).__name__}: {error}"
    pipe.send(result)


class _Connection(asyncio.Protocol):
    """One TLS connection: one request out, then wait for the whole answer."""

    def __init__(self) -> None:
        self._frames = FrameReader()
        self._waiter: asyncio.Future[bytes] | None = None
        self._transport: Any = None  # uvloop's transports are not asyncio.Transport
        self.closed = False
        self.gone = asyncio.Event()  # set once the connection is fully closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._frames.feed(data)
        try:
            frame = self._frames.next_frame()
        except KmipError:
            frame = b""  # not TTLV: the check below names it undecodable
        if frame is not NEED_DATA and self._waiter is not None and not self._waiter.done():
            assert isinstance(frame, bytes)
            self._waiter.set_result(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gone.set()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc or ServerClosed("closed by the server"))

    def exchange(self, request: bytes) -> asyncio.Future[bytes]:
        assert self._transport is not None
        if self.closed:
            raise ServerClosed("closed by the server")
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def tls_session(self) -> tuple[ssl.SSLSession | None, bool]:
        """The connection's TLS session, and whether the server resumed it."""
        ssl_object = self._transport.get_extra_info("ssl_object") if self._transport else None
        if ssl_object is None:
            return None, False
        return ssl_object.session, ssl_object.session_reused


class _ResumingContext(ssl.SSLContext):
    """A client context that offers its server the session it was last given.

    asyncio has no way to hand a session to one connection, but it makes each
    connection's SSL object through the context: this one adds the session there.
    """

    offered: ssl.SSLSession | None = None

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname,
                                session if session is not None else self.offered)


def resuming_context(ca: Path, cert: Path, key: Path) -> _ResumingContext:
    context = _ResumingContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies chain and host name
    context.load_verify_locations(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    return context


class _Worker:
    def __init__(self, options: LoadOptions, plan: list[bytes], share: list[int],
                 budget: int | None, worker: int, done_counts: Any) -> None:
        self.options = options
        self.plan = plan
        self.share = share
        self.budget = budget
        self.worker = worker
        self.done_counts = done_counts
        self.context: ssl.SSLContext = client_context(options.ca, options.cert, options.key)
        # A session belongs to one server: one resuming context for each.
        self.resuming = {
            server: resuming_context(options.ca, options.cert, options.key)
            for server in options.servers
        } if options.resume_sessions else {}
        self.result = _WorkerResult()
        self.latencies = array("d")
        self.opened: list[_Connection] = []  # pruned as connections close

    def server_of(self, connection: int) -> tuple[str, int]:
        return self.options.servers[connection % len(self.options.servers)]

    async def connect(self, connection: int) -> _Connection:
        host, port = self.server_of(connection)
        loop = asyncio.get_running_loop()
        context = self.resuming.get((host, port), self.context)
        _, protocol = await loop.create_connection(
            _Connection, host, port, ssl=context, server_hostname=host
        )
        self.opened.append(protocol)
        return protocol

    def _keep_session(self, connection: int, fresh: _Connection) -> None:
        session, resumed = fresh.tls_session()
        self.result.resumed_sessions += resumed
        if session is not None:
            self.resuming[self.server_of(connection)].offered = session

    async def run(self, pipe: Any) -> _WorkerResult:
        # Persistent connections are opened before the clock starts.
        connections: dict[int, _Connection] = {}
        if not self.options.new_connection:
            for connection in self.share:
                try:
                    connections[connection] = await self.connect(connection)
                except OSError as error:
                    host, port = self.server_of(connection)
                    raise LoadError(f"cannot connect to {host}:{port}: {error}") from error
        pipe.send("ready")
        start_at: float = pipe.recv()
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))

        # Drive every connection until the deadline; what has not answered by the
        # grace period is a timeout.
        cpu_before = time.process_time()
        deadline = start_at + self.options.duration_seconds
        tasks = [
            asyncio.create_task(self.drive(connection, position, connections, deadline))
            for position, connection in enumerate(self.share)
        ]
        _, pending = await asyncio.wait(tasks, timeout=deadline - time.monotonic()
                                        + ANSWER_GRACE_SECONDS)
        for task in pending:
            task.cancel()
            self.result.errors["timeout"] += 1
        self.result.cpu_seconds = time.process_time() - cpu_before
        self.result.finished_at = min(time.monotonic(), deadline)

        # uvloop refuses to close a loop with a connection still closing.
        for protocol in self.opened:
            protocol.close()
        closing = [asyncio.create_task(p.gone.wait()) for p in self.opened if not p.closed]
        if closing:
            await asyncio.wait(closing, timeout=5)
        self.result.latencies = self.latencies.tobytes()
        return self.result

    async def drive(self, connection: int, position: int,
                    connections: dict[int, _Connection], deadline: float) -> None:
        options = self.options
        plan = self.plan
        result = self.result
        errors = result.errors
        latencies = self.latencies
        counts = self.done_counts
        worker = self.worker

        # With a rate, each connection sends at its own even interval, staggered so the
        # connections do not fire together.
        interval = options.connections / options.rate if options.rate else 0.0
        due = time.monotonic() + interval * connection / options.connections
        index = connection * 7  # connections start at different places in the plan

        while True:
            if interval:
                due += interval
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            if time.monotonic() >= deadline:
                return
            if self.budget is not None:
                if self.budget <= 0:
                    return
                self.budget -= 1

            request = plan[index % len(plan)]
            index += 1
            started = time.monotonic()
            if interval:
                started = min(started, due)  # charge the wait behind a slow answer
            try:
                if options.new_connection:
                    fresh = await self.connect(connection)
                    try:
                        frame = await fresh.exchange(request)
                        if options.resume_sessions:
                            # TLS 1.3 tickets come after the handshake: read after the answer.
                            self._keep_session(connection, fresh)
                    finally:
                        fresh.close()
                        if len(self.opened) > 1000:
                            self.opened = [p for p in self.opened if not p.closed]
                else:
                    protocol = connections.get(connection)
                    if protocol is None or protocol.closed:
                        protocol = connections[connection] = await self.connect(connection)
                    frame = await protocol.exchange(request)
            except (OSError, EOFError) as error:
                errors[connection_failure(error)] += 1
                connections.pop(connection, None)
                await asyncio.sleep(0.01)  # a refusing server is not a busy loop
                continue
            latencies.append(time.monotonic() - started)

            result.answered += 1
            counts[worker] += 1
            reason = failure_reason(frame)
            if reason is None:
                result.succeeded += 1
            else:
                errors[reason] += 1


def parse_servers(text: str) -> tuple[tuple[str, int], ...]:
    """``"127.0.0.1:5696,[::1]:5697"`` -> ((host, port), ...); ValueError says what is wrong."""
    servers = []
    for part in text.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{part.strip()!r} is not HOST:PORT (e.g. 127.0.0.1:5696)")
        servers.append((host.strip("[]"), int(port)))
    return tuple(servers)
