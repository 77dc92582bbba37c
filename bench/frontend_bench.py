"""Round trips per second through the KMIP front end, beside two baselines.

A client process keeps 16 mutual-TLS connections busy, each sending one small
request and waiting for its answer, as KMIP clients do. The server, in this process,
is one of:

- frontend: KmipFrontend with a handler that echoes the request;
- streams:  the same job written with asyncio streams (start_server, read loop);
- echo:     a bare asyncio TLS echo protocol, the ceiling for any framing code.

Each kind also runs on uvloop's event loop as <kind>-uvloop (the client keeps asyncio's),
and --repeats takes turns over the kinds, so that both loops see the same machine.
frontend-uvloop fails for now: KmipFrontend asserts asyncio's own Transport class, and
with that relaxed its TLS handshakes under uvloop end in a reset (docs/performance.md).

Usage: python bench/frontend_bench.py [frontend|streams|echo[-uvloop] ...] [--seconds N]
       [--repeats N]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import ssl
import tempfile
import time
import typing
from datetime import timedelta
from pathlib import Path

from keyquorum.cluster.pki import create_ca, issue_certificate
from keyquorum.cluster.tls import client_context, server_context
from keyquorum.kmip.errors import KmipError
from keyquorum.kmip.frontend import ClientIdentity, FrontendConfig, KmipFrontend
from keyquorum.kmip.ttlv import NEED_DATA, FrameReader, Item, ItemType, encode_item

CONNECTIONS = 16
REQUEST = encode_item(Item(0x420078, ItemType.STRUCTURE, [Item(0x42000D, ItemType.INTEGER, 1)] * 4))


class Echo:
    async def handle(self, frame: bytes, client: ClientIdentity) -> bytes:
        return frame

    def error_response(self, error: KmipError) -> bytes:
        return b""


def write_pki(directory: Path) -> dict[str, Path]:
    ca = create_ca("bench CA")
    ca.write(directory / "ca.pem", directory / "ca.key")
    ttl = timedelta(hours=1)
    issue_certificate(ca, "server", sans=["127.0.0.1"], ttl=ttl).write(
        directory / "server.pem", directory / "server.key"
    )
    issue_certificate(ca, "client", sans=[], ttl=ttl).write(
        directory / "client.pem", directory / "client.key"
    )
    return {name: directory / name for name in ("ca.pem", "server.pem", "server.key")} | {
        "client.pem": directory / "client.pem",
        "client.key": directory / "client.key",
    }


async def serve_streams(context: ssl.SSLContext) -> asyncio.Server:
    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = FrameReader()
        handler = Echo()
        identity = ClientIdentity("bench", 0, None, b"")
        try:
            while data := await reader.read(65536):
                frames.feed(data)
                while (frame := frames.next_frame()) is not NEED_DATA:
                    assert isinstance(frame, bytes)
                    writer.write(await handler.handle(frame, identity))
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        writer.close()

    return await asyncio.start_server(connection, "127.0.0.1", 0, ssl=context)


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have Transport's methods without being its subclass.
        self.transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


def client_process(files: dict[str, Path], port: int, seconds: float, out: object) -> None:
    async def main() -> int:
        context = client_context(files["ca.pem"], files["client.pem"], files["client.key"])
        streams = [await asyncio.open_connection("127.0.0.1", port, ssl=context) for _ in range(16)]
        deadline = time.monotonic() + seconds
        counts = [0] * CONNECTIONS

        async def worker(index: int) -> None:
            reader, writer = streams[index]
            while time.monotonic() < deadline:
                writer.write(REQUEST)
                await reader.readexactly(len(REQUEST))
                counts[index] += 1

        await asyncio.gather(*(worker(index) for index in range(CONNECTIONS)))
        for _, writer in streams:
            writer.close()
        return sum(counts)

    out.send(asyncio.run(main()))  # type: ignore[attr-defined]


async def measure(kind: str, files: dict[str, Path], seconds: float) -> tuple[float, float]:
    context = server_context(files["server.pem"], files["server.key"], files["ca.pem"])
    frontend = None
    if kind == "frontend":
        frontend = KmipFrontend(FrontendConfig(host="127.0.0.1", port=0), context, Echo())
        await frontend.start()
        port = frontend.port
    elif kind == "streams":
        server = await serve_streams(context)
        port = server.sockets[0].getsockname()[1]
    else:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(EchoProtocol, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]

    # Server CPU per round trip is the robust number on a shared machine: the rate
    # moves with whatever else runs, the CPU cost much less.
    cpu_before = time.process_time()
    receive, send = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.Process(target=client_process, args=(files, port, seconds, send))
    process.start()
    while not receive.poll():
        await asyncio.sleep(0.05)
    total: int = receive.recv()
    cpu = time.process_time() - cpu_before
    process.join()

    if frontend is not None:
        await frontend.stop()
    else:
        server.close()
    return total / seconds, cpu / total * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kinds", nargs="*", default=["frontend", "streams", "echo"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=1)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        files = write_pki(Path(directory))
        for _ in range(arguments.repeats):
            for kind in arguments.kinds:
                base, _, loop = kind.partition("-")
                factory = None
                if loop == "uvloop":
                    import uvloop

                    factory = uvloop.new_event_loop
                with asyncio.Runner(loop_factory=factory) as runner:
                    rate, cpu = runner.run(measure(base, files, arguments.seconds))
                print(
                    f"{kind:16} {rate:9,.0f} round trips/s over {CONNECTIONS} connections, "
                    f"server CPU {cpu:5.1f} us each", flush=True
                )


if __name__ == "__main__":
    main()
