"""One Raft node in its own process, for the tests and the benchmark (not a test itself).

Runs a ReplicatedLog over a trivial key/value state machine and answers one JSON object per
line on a local TCP control port, which it prints as "ready <port>" once listening:

    {"op": "submit", "command": ["set", "k", "v"], "request_id": "r1"}
    {"op": "get", "key": "k"}          read after a read barrier
    {"op": "status"} / {"op": "state"}
    {"op": "load", "writers": 32, "count": 2000, "prefix": "w"}   concurrent writes in-node
    {"op": "read_load", "readers": 32, "count": 2000}   concurrent linearizable reads in-node
    {"op": "cpu"}                      CPU seconds this process has used

--reads-through-log and --fernet switch back to the log barrier and pysyncobj's Fernet,
so that the benchmark can compare them with what replaced them in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from keyquorum.cluster.raft import RaftConfig, ReplicatedLog, ReplicationError
from keyquorum.cluster.raft_journal import MEMORY_ENTRIES


class KeyValueMachine:
    """set / incr / fail commands over a dict; "fail" raises before touching anything."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.applied_commands = 0

    def apply(self, command: object) -> object:
        assert isinstance(command, tuple)
        op: str = command[0]
        key: str = command[1]
        rest: tuple[Any, ...] = command[2:]
        if op == "fail":
            raise ValueError(f"refused to apply to {key}")
        self.applied_commands += 1
        if op == "set":
            previous = self.data.get(key)
            self.data[key] = rest[0]
            return previous
        if op == "incr":
            self.data[key] = self.data.get(key, 0) + 1
            return self.data[key]
        raise ValueError(f"unknown op {op!r}")

    def snapshot(self) -> bytes:
        return json.dumps({"data": self.data, "applied": self.applied_commands}).encode()

    def restore(self, data: bytes) -> None:
        loaded = json.loads(data)
        self.data = loaded["data"]
        self.applied_commands = loaded["applied"]

    def digest(self) -> str:
        return hashlib.sha256(self.snapshot()).hexdigest()


class ControlServer:
    def __init__(self, raft: ReplicatedLog, machine: KeyValueMachine) -> None:
        self.raft = raft
        self.machine = machine

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            try:
                reply = await self.dispatch(json.loads(line))
            except ReplicationError as exc:
                reply = {"ok": False, "error": type(exc).__name__, "detail": str(exc)}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        writer.close()

    async def dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        timeout = float(request.get("timeout", 5.0))
        if op == "submit":
            started = time.perf_counter()
            result = await self.raft.submit(
                tuple(request["command"]), request["request_id"], timeout=timeout
            )
            return {"ok": True, "result": result, "seconds": time.perf_counter() - started}
        if op == "get":
            await self.raft.read_barrier(timeout=timeout)
            return {"ok": True, "value": self.machine.data.get(request["key"])}
        if op == "status":
            return {"ok": True, "status": dataclasses.asdict(self.raft.status())}
        if op == "state":
            return {
                "ok": True,
                "digest": self.machine.digest(),
                "applied_commands": self.machine.applied_commands,
                "keys": len(self.machine.data),
            }
        if op == "load":
            return await self.load(request)
        if op == "read_load":
            return await self.read_load(request)
        if op == "cpu":
            return {"ok": True, "seconds": time.process_time()}
        raise ValueError(f"unknown op {op!r}")

    async def load(self, request: dict[str, Any]) -> dict[str, Any]:
        writers, count, prefix = request["writers"], request["count"], request["prefix"]
        failures: dict[str, int] = {}
        latencies: list[float] = []
        next_number = iter(range(count))

        async def writer() -> None:
            for number in next_number:
                name = f"{prefix}-{number}"
                started = time.perf_counter()
                try:
                    await self.raft.submit(("set", name, number), name, timeout=10.0)
                    latencies.append(time.perf_counter() - started)
                except ReplicationError as exc:
                    failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(writers)))
        elapsed = time.perf_counter() - started
        latencies.sort()
        percentiles = {
            f"p{p}": latencies[min(len(latencies) - 1, len(latencies) * p // 100)]
            for p in (50, 99, 100)
        } if latencies else {}
        return {"ok": True, "seconds": elapsed, "failures": failures, "latency": percentiles}


    async def read_load(self, request: dict[str, Any]) -> dict[str, Any]:
        readers, count = request["readers"], request["count"]
        failures: dict[str, int] = {}
        latencies: list[float] = []
        remaining = iter(range(count))

        async def reader() -> None:
            for _ in remaining:
                started = time.perf_counter()
                try:
                    await self.raft.read_barrier(timeout=10.0)
                    latencies.append(time.perf_counter() - started)
                except ReplicationError as exc:
                    failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(reader() for _ in range(readers)))
        elapsed = time.perf_counter() - started
        latencies.sort()
        percentiles = {
            f"p{p}": latencies[min(len(latencies) - 1, len(latencies) * p // 100)]
            for p in (50, 99, 100)
        } if latencies else {}
        return {"ok": True, "seconds": elapsed, "failures": failures, "latency": percentiles}


async def serve(args: argparse.Namespace) -> None:
    config = RaftConfig(
        self_address=args.self_address,
        peer_addresses=tuple(args.peers.split(",")),
        data_dir=Path(args.data_dir),
        password=args.password,
        log_compaction_min_entries=args.compaction_entries,
        journal_memory_entries=args.journal_memory_entries,
        reads_through_log=args.reads_through_log,
        transport_cipher="fernet" if args.fernet else "aes-gcm",
        **({"idle_tick_seconds": args.idle_tick} if args.idle_tick else {}),
    )
    machine = KeyValueMachine()
    raft = ReplicatedLog(config, machine)
    control = ControlServer(raft, machine)
    server = await asyncio.start_server(control.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"ready {port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        raft.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--self-address", required=True)
    parser.add_argument("--peers", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--compaction-entries", type=int, default=50_000)
    parser.add_argument("--journal-memory-entries", type=int, default=MEMORY_ENTRIES)
    parser.add_argument("--reads-through-log", action="store_true")
    parser.add_argument("--idle-tick", type=float, default=0.0)
    parser.add_argument("--fernet", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
