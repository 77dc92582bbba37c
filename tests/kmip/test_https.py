"""KMIP over HTTPS on a real 3-node cluster: POST /kmip in TTLV, XML and JSON.

Every exchange is a real mutual-TLS connection to a node's HTTPS listener, with a
credential the admin API issued; one cluster serves the module.
"""

from __future__ import annotations

import http.client
import json
import ssl
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from harness import Cluster, wait_for
from kmip_requests import aes_256, request

from keyquorum.kmip.conformance import HttpsTransport, run_case
from keyquorum.kmip.messages import (
    RequestMessage,
    ResponseMessage,
    decode_message,
    decode_message_json,
    decode_message_xml,
    encode_message,
    encode_message_json,
    encode_message_xml,
)
from keyquorum.kmip.payloads import GetRequestPayload
from keyquorum.kmip.tables import (
    ObjectType,
    Operation,
    ResultReason,
    ResultStatus,
)

CASES = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"

ENCODINGS = {
    "ttlv": ("application/octet-stream", encode_message, decode_message),
    "xml": ("text/xml", lambda m: encode_message_xml(m).encode(), decode_message_xml),
    "json": ("application/json", lambda m: encode_message_json(m).encode(),
             decode_message_json),
}


def https_address(cluster: Cluster, node_id: str) -> tuple[str, int]:
    info = json.loads((cluster.directory / "cluster.json").read_text())
    url = next(node["kmip_https"] for node in info["nodes"] if node["id"] == node_id)
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None and parts.path == "/kmip"
    return parts.hostname, parts.port


def context(cluster: Cluster, cert: Path | None = None, key: Path | None = None
            ) -> ssl.SSLContext:
    tls = ssl.create_default_context(cafile=str(cluster.ca))
    if cert is not None and key is not None:
        tls.load_cert_chain(str(cert), str(key))
    return tls


def post(cluster: Cluster, node_id: str, body: bytes, content_type: str,
         tls: ssl.SSLContext | None = None, method: str = "POST", path: str = "/kmip",
         ) -> tuple[int, str, bytes]:
    host, port = https_address(cluster, node_id)
    connection = http.client.HTTPSConnection(
        host, port, context=tls or cluster.tls_context(), timeout=15)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


def send(cluster: Cluster, node_id: str, encoding: str, message: RequestMessage,
         tls: ssl.SSLContext | None = None) -> ResponseMessage:
    content_type, encode, decode = ENCODINGS[encoding]
    status, answered_type, body = post(cluster, node_id, encode(message), content_type, tls)
    assert status == 200, body
    assert answered_type == content_type
    response = decode(body)
    assert isinstance(response, ResponseMessage)
    return response


def create(cluster: Cluster, node_id: str, encoding: str,
           tls: ssl.SSLContext | None = None) -> str:
    response = send(cluster, node_id, encoding, request((Operation.CREATE, aes_256())), tls)
    item = response.batch_items[0]
    assert item.result_status == ResultStatus.SUCCESS, item.result_message
    uid: str = item.payload.unique_identifier
    return uid


def get_item(cluster: Cluster, node_id: str, encoding: str, uid: str,
             tls: ssl.SSLContext | None = None) -> Any:
    response = send(cluster, node_id, encoding,
                    request((Operation.GET, GetRequestPayload(unique_identifier=uid))), tls)
    return response.batch_items[0]


@pytest.mark.parametrize("encoding", ["ttlv", "xml", "json"])
def test_each_encoding_creates_a_key_that_a_follower_returns(
    cluster: Cluster, encoding: str
) -> None:
    uid = create(cluster, "node-1", encoding)

    got = get_item(cluster, "node-2", encoding, uid)

    assert got.result_status == ResultStatus.SUCCESS
    assert got.payload.unique_identifier == uid
    assert got.payload.object_type == ObjectType.SYMMETRIC_KEY


def test_a_key_created_over_https_is_read_on_the_binary_port(cluster: Cluster) -> None:
    uid = create(cluster, "node-3", "json")

    with cluster.pykmip("node-1") as client:
        assert len(client.get(uid).value) == 32


def test_a_client_without_a_certificate_is_refused(cluster: Cluster) -> None:
    body = encode_message(request((Operation.GET, GetRequestPayload(unique_identifier="x"))))

    with pytest.raises((ssl.SSLError, ConnectionError)):
        post(cluster, "node-1", body, "application/octet-stream", tls=context(cluster))


def test_another_scopes_object_is_item_not_found(cluster: Cluster, tmp_path: Path) -> None:
    token = cluster.admin_token
    verify = ssl.create_default_context(cafile=str(cluster.ca))
    with httpx.Client(base_url=cluster.nodes["node-1"].api, verify=verify, timeout=20,
                      headers={"X-Keyquorum-Token": token}) as admin:
        red = issue(admin, tmp_path, f"red-{uuid.uuid4().hex[:8]}")
        blue = issue(admin, tmp_path, f"blue-{uuid.uuid4().hex[:8]}")
    uid = create(cluster, "node-1", "xml", context(cluster, *red))

    theirs = get_item(cluster, "node-2", "json", uid, context(cluster, *blue))
    ours = get_item(cluster, "node-2", "json", uid, context(cluster, *red))

    assert theirs.result_status == ResultStatus.OPERATION_FAILED
    assert theirs.result_reason == ResultReason.ITEM_NOT_FOUND
    assert ours.result_status == ResultStatus.SUCCESS


def issue(admin: httpx.Client, folder: Path, scope: str) -> tuple[Path, Path]:
    """A new scope with an all-operations role and one credential's files."""
    for path, body in ((f"/v1/kmip/scope/{scope}", None),
                       (f"/v1/kmip/scope/{scope}/role/r", {"operation_all": True})):
        assert admin.post(path, json=body).status_code == 200
    answer = admin.post(f"/v1/kmip/scope/{scope}/role/r/credential/generate",
                        json={"format": "pem"})
    assert answer.status_code == 200, answer.text
    cert, key = folder / f"{scope}.pem", folder / f"{scope}.key"
    cert.write_text(answer.json()["certificate"])
    key.write_text(answer.json()["private_key"])
    return cert, key


@pytest.mark.parametrize(("content_type", "body", "decode"), [
    ("text/xml", b"<RequestMessage><Nonsense", decode_message_xml),
    ("application/json", b'{"tag": "RequestMessage", "value": [', decode_message_json),
    ("application/octet-stream", b"\x42\x00\x78\x01\x00\x00\x00\x08", decode_message),
])
def test_a_malformed_body_is_a_kmip_error_in_its_encoding(
    cluster: Cluster, content_type: str, body: bytes, decode: Any
) -> None:
    status, answered_type, answer = post(cluster, "node-1", body, content_type)

    assert (status, answered_type) == (200, content_type)
    item = decode(answer).batch_items[0]
    assert item.result_status == ResultStatus.OPERATION_FAILED
    assert item.result_reason == ResultReason.INVALID_MESSAGE


@pytest.mark.parametrize(("method", "path", "content_type", "status"), [
    ("POST", "/other", "text/xml", 404),
    ("GET", "/kmip", "text/xml", 405),
    ("POST", "/kmip", "text/plain", 415),
])
def test_what_is_wrong_at_the_http_level_is_a_4xx_with_a_reason(
    cluster: Cluster, method: str, path: str, content_type: str, status: int
) -> None:
    answered, answered_type, body = post(cluster, "node-1", b"<x/>", content_type,
                                         method=method, path=path)

    assert answered == status
    assert answered_type.startswith("text/plain")
    assert body.strip()


def test_a_body_over_the_limit_is_refused_before_it_is_read(cluster: Cluster) -> None:
    host, port = https_address(cluster, "node-1")
    connection = http.client.HTTPSConnection(host, port, context=cluster.tls_context(),
                                             timeout=15)
    try:
        connection.putrequest("POST", "/kmip")
        connection.putheader("Content-Type", "application/octet-stream")
        connection.putheader("Content-Length", str(1 << 30))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413
        assert response.getheader("Connection") == "close"
    finally:
        connection.close()


@pytest.mark.parametrize("encoding", ["ttlv", "xml", "json"])
def test_the_conformance_runner_passes_a_baseline_case_over_each_encoding(
    cluster: Cluster, encoding: str
) -> None:
    host, port = https_address(cluster, "node-2")
    tls = cluster.tls_context()

    result = run_case(CASES / "kmip-2.1" / "mandatory" / "BL-M-1-21.xml",
                      lambda: HttpsTransport(host, port, tls, encoding))

    assert result.passed, result.difference


def metric(cluster: Cluster, node_id: str, name: str) -> float:
    """One sample of the node's /v1/sys/metrics, by its full name."""
    verify = ssl.create_default_context(cafile=str(cluster.ca))
    text = httpx.get(f"{cluster.nodes[node_id].api}/v1/sys/metrics", verify=verify,
                     timeout=15).text
    values = [line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")]
    assert values, f"{name} is not in the metrics"
    return float(values[0])


def test_requests_and_refusals_are_counted_in_the_metrics(cluster: Cluster) -> None:
    before = metric(cluster, "node-3", "keyquorum_kmip_https_requests_total")
    refused = metric(cluster, "node-3", "keyquorum_kmip_https_connections_handshake_failures_total")

    create(cluster, "node-3", "xml")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        post(cluster, "node-3", b"", "application/octet-stream", tls=context(cluster))

    assert metric(cluster, "node-3", "keyquorum_kmip_https_requests_total") == before + 1
    wait_for(lambda: metric(cluster, "node-3",
                            "keyquorum_kmip_https_connections_handshake_failures_total")
             == refused + 1, 10, "the refused handshake to be counted")
