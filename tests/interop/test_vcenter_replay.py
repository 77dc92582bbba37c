"""vCenter 7.0.3's captured conversation, replayed against a three-node dev cluster.

Each request goes to the next node in turn, on a connection of its own (vCenter's
habit). The capture's identifiers "1" and "2" name the keys of its first and second
Create; the replay substitutes the identifiers this cluster returned.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

from harness import Cluster

from keyquorum.kmip import (
    RequestBatchItem,
    RequestHeader,
    RequestMessage,
    ResponseMessage,
    decode_message,
    encode_message,
)
from keyquorum.kmip.payloads import GetRequestPayload, ProtocolVersion
from keyquorum.kmip.tables import Operation, ResultStatus

CAPTURE = (Path(__file__).resolve().parents[2].parent / "shared" / "interop"
           / "vcenter-7.0.3-requests.txt")


def capture() -> list[tuple[str, bytes]]:
    lines = CAPTURE.read_text().splitlines()
    return [(op, bytes.fromhex(h)) for op, h in (ln.split() for ln in lines if ln[:1] != "#")]


def with_identifiers(data: bytes, identifiers: dict[str, str]) -> bytes:
    message = decode_message(data)
    assert isinstance(message, RequestMessage)
    items = []
    for item in message.batch_items:
        uid = getattr(item.payload, "unique_identifier", None)
        if isinstance(uid, str) and uid in identifiers:
            item = replace(item, payload=replace(item.payload, unique_identifier=identifiers[uid]))
        items.append(item)
    return encode_message(replace(message, batch_items=tuple(items)))


def ask(cluster: Cluster, node_id: str, data: bytes) -> ResponseMessage:
    response = decode_message(cluster.exchange(node_id, data))
    assert isinstance(response, ResponseMessage)
    return response


def test_the_capture_replays_round_robin_and_every_key_reads_back_alike(
    cluster: Cluster,
) -> None:
    nodes = itertools.cycle(sorted(cluster.nodes))
    identifiers: dict[str, str] = {}

    # First the whole conversation, every request on the next node.
    for operation, data in capture():
        response = ask(cluster, next(nodes), with_identifiers(data, identifiers))
        for item in response.batch_items:
            assert item.result_status == ResultStatus.SUCCESS, (operation, item.result_message)
        assert response.header.protocol_version == ProtocolVersion(major=1, minor=1)
        if operation == "Create":
            identifiers[str(len(identifiers) + 1)] = response.batch_items[0].payload\
                .unique_identifier
    assert len(identifiers) == 2

    # Then each created key, fetched from every node, is the same key.
    for uid in identifiers.values():
        materials = set()
        for node_id in cluster.nodes:
            request = RequestMessage(
                header=RequestHeader(protocol_version=ProtocolVersion(major=1, minor=1),
                                     batch_count=1),
                batch_items=(RequestBatchItem(operation=Operation.GET,
                                              payload=GetRequestPayload(unique_identifier=uid)),),
            )
            got = ask(cluster, node_id, encode_message(request)).batch_items[0]
            assert got.result_status == ResultStatus.SUCCESS
            materials.add(got.payload.object.key_block.key_value.key_material)
        assert len(materials) == 1
        assert len(materials.pop()) == 32
