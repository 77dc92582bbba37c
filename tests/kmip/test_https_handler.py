"""KMIP over HTTPS without sockets: what each request head and body is answered.

``KmipOverHttp`` is the sans-IO core of kmip/https.py; here it drives a stub
service, so that every HTTP-level rule and the any-bytes-in property run in
milliseconds. tests/kmip/test_https.py runs the same over real TLS on a cluster.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from kmip_inprocess import CLIENT
from kmip_requests import request

from keyquorum.kmip.errors import KmipError
from keyquorum.kmip.frontend import ClientIdentity
from keyquorum.kmip.https import Encoding, HttpAnswer, KmipOverHttp, encoding_of
from keyquorum.kmip.limits import Limits
from keyquorum.kmip.messages import (
    RequestMessage,
    ResponseBatchItem,
    ResponseHeader,
    ResponseMessage,
    decode_message,
    decode_message_json,
    decode_message_xml,
    encode_message,
    encode_message_json,
    encode_message_xml,
)
from keyquorum.kmip.payloads import ProtocolVersion, QueryRequestPayload
from keyquorum.kmip.tables import Operation, ResultReason, ResultStatus

V14 = ProtocolVersion(major=1, minor=4)


class EchoService:
    """Answers every request with one successful item of its operation."""

    def __init__(self) -> None:
        self.seen: list[RequestMessage] = []

    async def answer(self, message: RequestMessage, client: ClientIdentity) -> ResponseMessage:
        self.seen.append(message)
        return response(ResponseBatchItem(operation=message.batch_items[0].operation,
                                          result_status=ResultStatus.SUCCESS))

    def error_message(self, error: KmipError) -> ResponseMessage:
        return response(ResponseBatchItem(result_status=ResultStatus.OPERATION_FAILED,
                                          result_reason=error.reason,
                                          result_message=error.message))


def response(item: ResponseBatchItem) -> ResponseMessage:
    header = ResponseHeader(protocol_version=V14, batch_count=1,
                            time_stamp=datetime(2026, 1, 1, tzinfo=UTC))
    return ResponseMessage(header=header, batch_items=(item,))


QUERY = request((Operation.QUERY, QueryRequestPayload()))
BODIES = {
    Encoding.TTLV: encode_message(QUERY),
    Encoding.XML: encode_message_xml(QUERY).encode(),
    Encoding.JSON: encode_message_json(QUERY).encode(),
}
DECODERS = {Encoding.TTLV: decode_message, Encoding.XML: decode_message_xml,
            Encoding.JSON: decode_message_json}


def answer(http: KmipOverHttp, content_type: str, body: bytes) -> HttpAnswer:
    return asyncio.run(http.answer(content_type, body, CLIENT))


def test_each_encoding_is_answered_in_itself() -> None:
    service = EchoService()
    http = KmipOverHttp(service)

    for encoding, body in BODIES.items():
        answered = answer(http, encoding.value, body)
        assert (answered.status, answered.content_type) == (200, encoding.value)
        decoded = DECODERS[encoding](answered.body)
        assert decoded.batch_items[0].operation == Operation.QUERY

    assert service.seen == [QUERY, QUERY, QUERY]


def test_media_types_are_read_without_parameters_or_case() -> None:
    assert encoding_of("Text/XML; charset=utf-8") is Encoding.XML
    assert encoding_of("application/xml") is Encoding.XML
    assert encoding_of("application/json;charset=UTF-8") is Encoding.JSON
    assert encoding_of("application/octet-stream") is Encoding.TTLV
    assert encoding_of("text/plain") is None
    assert encoding_of(None) is None


def test_the_head_is_refused_with_the_status_that_says_what_to_fix() -> None:
    http = KmipOverHttp(EchoService(), Limits(max_message_size=4096))

    def status(method: str, target: str, content_type: str | None,
               length: int | None = None) -> int | None:
        refused = http.check_head(method, target, content_type, length)
        return None if refused is None else refused.status

    assert status("POST", "/kmip", "text/xml", 100) is None
    assert status("POST", "/kmip?x=1", "text/xml") is None
    assert status("POST", "/", "text/xml") == 404
    assert status("PUT", "/kmip", "text/xml") == 405
    assert status("POST", "/kmip", None) == 415
    assert status("POST", "/kmip", "application/octet-stream", 4097) == 413
    # The text encodings spell each TTLV byte in several characters: more room.
    assert status("POST", "/kmip", "application/json", 4097) is None


@settings(max_examples=300, deadline=None)
@given(encoding=st.sampled_from(list(Encoding)), data=st.binary(max_size=512))
def test_any_body_gets_a_kmip_answer_in_its_encoding(encoding: Encoding, data: bytes) -> None:
    answered = answer(KmipOverHttp(EchoService()), encoding.value, data)

    assert (answered.status, answered.content_type) == (200, encoding.value)
    item = DECODERS[encoding](answered.body).batch_items[0]
    if item.result_status != ResultStatus.SUCCESS:
        assert item.result_reason in (ResultReason.INVALID_MESSAGE, ResultReason.INVALID_FIELD)


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(BODIES[Encoding.XML]) - 1))
def test_a_truncated_xml_request_is_invalid_not_a_crash(cut: int) -> None:
    answered = answer(KmipOverHttp(EchoService()), "text/xml", BODIES[Encoding.XML][:cut])

    item = decode_message_xml(answered.body).batch_items[0]
    assert item.result_status == ResultStatus.OPERATION_FAILED
