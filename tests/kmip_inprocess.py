"""A KMIP service in this process, over a one-node log, driven through its bytes.

The log commits and applies every command at once on one KeyStore, which is what a
single-node Raft log does, and seals key material with a real barrier keyring, so the
store holds ciphertext as on a real node. Requests are encoded and the answers decoded,
as a client would see them (tests/kmip_requests.py builds and reads them); the
replicated path is tested through tests/harness.py.
"""

from __future__ import annotations

import asyncio
import secrets

from kmip_requests import request, response

from keyquorum.cluster.barrier import Keyring
from keyquorum.cluster.state import Command, KeyStore, Outcome
from keyquorum.kmip.frontend import ClientIdentity
from keyquorum.kmip.messages import (
    RequestMessage,
    ResponseBatchItem,
    ResponseMessage,
    encode_message,
)
from keyquorum.kmip.service import KmipService
from keyquorum.kmip.tables import Operation

CLIENT = ClientIdentity(address="127.0.0.1:1", certificate_serial=1, common_name="test",
                        certificate_der=b"")


class OneNodeLog:
    """Every command commits and applies at once, sealed as on a real node."""

    def __init__(self) -> None:
        self.store = KeyStore()
        self.keyring = Keyring.generate(secrets.token_bytes(32))

    async def submit(self, command: Command) -> Outcome:
        return self.store.apply(command)

    async def read_barrier(self) -> None:
        pass

    def seal_material(self, plaintext: bytes, associated_data: bytes) -> bytes:
        return self.keyring.encrypt(plaintext, associated_data)

    def open_material(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        return self.keyring.decrypt(ciphertext, associated_data)


def new_service() -> KmipService:
    return KmipService(OneNodeLog())


def exchange(service: KmipService, message: RequestMessage) -> ResponseMessage:
    """The whole message through the service's bytes-in, bytes-out entry."""
    return response(asyncio.run(service.handle(encode_message(message), CLIENT)))


def send(service: KmipService, *payloads: tuple[Operation, object],
         version: tuple[int, int] = (1, 4)) -> list[ResponseBatchItem]:
    """One request of a batch item per (operation, payload); the items answered."""
    return list(exchange(service, request(*payloads, version=version)).batch_items)


def call(service: KmipService, operation: Operation, payload: object,
         version: tuple[int, int] = (1, 4)) -> ResponseBatchItem:
    """One operation in a request of its own, whatever its outcome."""
    return send(service, (operation, payload), version=version)[0]
