"""`keyquorum conformance` against a fake KMIP server that replays a test case.

The fake server speaks real mutual TLS and answers each request with the response
the file expects (placeholders filled in), optionally altered: the honest replay
passes, and a deliberately wrong answer is reported as a FAIL with the difference.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from keyquorum.cluster.cli import cli
from keyquorum.cluster.pki import create_ca, issue_certificate
from keyquorum.kmip.tables import ResultStatus, Tag
from keyquorum.kmip.ttlv import FrameReader, Item, ItemType, NeedData, encode_item
from keyquorum.kmip.xml import load_test_case

CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"
LIFECYCLE = CONFORMANCE / "kmip-1.4" / "mandatory" / "SKLC-M-1-14.xml"
GENERATED_KEY_ENCRYPT = CONFORMANCE / "kmip-1.4" / "mandatory" / "CS-BC-M-1-14.xml"
REGISTERED_KEY_ENCRYPT = CONFORMANCE / "kmip-1.4" / "mandatory" / "CS-BC-M-4-14.xml"
# Encrypt under a key whose own parameters ask for a Random IV; Decrypt sends $DATA_0.
KEY_RANDOM_IV = CONFORMANCE / "kmip-1.4" / "mandatory" / "CS-BC-M-13-14.xml"
# MAC Verify sends $MAC_DATA, which no expected response binds.
MAC_THEN_VERIFY = CONFORMANCE / "kmip-1.4" / "mandatory" / "CS-AC-M-6-14.xml"
# The tape library creates a key (TL-M-2), then reads it back in another case (TL-M-3).
TAPE_CREATES = CONFORMANCE / "kmip-1.4" / "mandatory" / "TL-M-2-14.xml"
TAPE_READS_BACK = CONFORMANCE / "kmip-1.4" / "mandatory" / "TL-M-3-14.xml"
# PKCS#11 C_Initialize, C_GetInfo (the library's CK_INFO), C_Finalize.
PKCS11_INFO = CONFORMANCE / "kmip-2.1" / "mandatory" / "PKCS11-M-1-21.xml"

# Alters the responses of one case before the fake server sends them.
Alteration = Callable[[list[Item]], list[Item]]


class ReplayServer:
    """Answers the n-th request of each connection with the n-th expected response."""

    def __init__(self, context: ssl.SSLContext, scripts: list[list[Item]]) -> None:
        self._context = context
        self._scripts = scripts
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        for script in self._scripts:
            raw, _ = self._listener.accept()
            with self._context.wrap_socket(raw, server_side=True) as connection:
                frames = FrameReader()
                for response in script:
                    if not _read_frame(connection, frames):
                        break
                    connection.sendall(encode_item(response))

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=5)


def _read_frame(connection: ssl.SSLSocket, frames: FrameReader) -> bool:
    while isinstance(frames.next_frame(), NeedData):
        chunk = connection.recv(65536)
        if not chunk:
            return False
        frames.feed(chunk)
    return True


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("runner-pki")
    ca = create_ca("runner test CA")
    ca.write(folder / "ca.pem", folder / "ca.key")
    for name in ("server", "client"):
        issued = issue_certificate(ca, name, sans=["127.0.0.1"], ttl=timedelta(hours=1))
        issued.write(folder / f"{name}.pem", folder / f"{name}.key")
    return {name: folder / name for name in
            ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


@pytest.fixture
def replay(credentials: dict[str, Path]) -> Iterator[Callable[..., ReplayServer]]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(credentials["server.pem"], credentials["server.key"])
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(credentials["ca.pem"])
    servers: list[ReplayServer] = []

    def start(*cases: tuple[Path, Alteration | None]) -> ReplayServer:
        scripts = []
        for path, alteration in cases:
            responses = load_test_case(path).messages[1::2]
            scripts.append(alteration(responses) if alteration else responses)
        server = ReplayServer(context, scripts)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def run_cli(credentials: dict[str, Path], port: int, *cases: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, [
        "conformance", "--server", f"127.0.0.1:{port}",
        "--ca", str(credentials["ca.pem"]),
        "--cert", str(credentials["client.pem"]), "--key", str(credentials["client.key"]),
        *map(str, cases),
    ])
    return result.exit_code, result.output.splitlines()


def changed(item: Item, tag: int, new_value: object, occurrence: int = 0) -> Item:
    """``item`` with the value of the ``occurrence``-th item tagged ``tag`` replaced."""
    seen = [0]

    def walk(node: Item) -> Item:
        if node.type == ItemType.STRUCTURE:
            return Item(node.tag, node.type, [walk(child) for child in node.value])
        if node.tag == tag:
            seen[0] += 1
            if seen[0] == occurrence + 1:
                return Item(node.tag, node.type, new_value)
        return node

    return walk(item)


def in_response(number: int, tag: int, value: object, occurrence: int = 0) -> Alteration:
    def alter(responses: list[Item]) -> list[Item]:
        altered = list(responses)
        altered[number] = changed(altered[number], tag, value, occurrence)
        return altered

    return alter


def test_an_honest_replay_passes(credentials: dict[str, Path], replay: Callable[..., ReplayServer]
                                 ) -> None:
    server = replay((LIFECYCLE, None))

    code, lines = run_cli(credentials, server.port, LIFECYCLE)

    assert lines == ["PASS SKLC-M-1-14", "1 passed, 0 failed"]
    assert code == 0


def test_a_wrong_value_fails_with_the_first_difference(
    credentials: dict[str, Path], replay: Callable[..., ReplayServer]
) -> None:
    # The Get Attributes answer (response 2) claims a 128-bit key; the case made 256.
    server = replay((LIFECYCLE, in_response(1, Tag.ATTRIBUTE_VALUE, 128, occurrence=5)),
                    (LIFECYCLE, None))

    code, lines = run_cli(credentials, server.port, LIFECYCLE, LIFECYCLE)

    assert lines[0].startswith("FAIL SKLC-M-1-14: response 2/")
    assert "expected 256, got 128" in lines[0]
    assert lines[1:] == ["PASS SKLC-M-1-14", "1 passed, 1 failed"]
    assert code == 1


def test_an_identifier_must_stay_the_one_the_server_gave(
    credentials: dict[str, Path], replay: Callable[..., ReplayServer]
) -> None:
    # Destroy (response 3) answers with another identifier than Create gave.
    server = replay((LIFECYCLE, in_response(2, Tag.UNIQUE_IDENTIFIER, "someone-else")))

    _, lines = run_cli(credentials, server.port, LIFECYCLE)

    assert lines[0].startswith("FAIL SKLC-M-1-14: response 3/")
    assert "$UNIQUE_IDENTIFIER_0" in lines[0] and "someone-else" in lines[0]


def test_a_failed_status_is_a_failure(
    credentials: dict[str, Path], replay: Callable[..., ReplayServer]
) -> None:
    server = replay((LIFECYCLE, in_response(0, Tag.RESULT_STATUS,
                                            int(ResultStatus.OPERATION_FAILED))))

    _, lines = run_cli(credentials, server.port, LIFECYCLE)

    assert lines[0] == ("FAIL SKLC-M-1-14: response 1/ResponseMessage/BatchItem/ResultStatus: "
                        "expected Success, got OperationFailed")


def test_ciphertext_may_differ_only_under_a_generated_key(
    credentials: dict[str, Path], replay: Callable[..., ReplayServer]
) -> None:
    # Under a key the server generated, other ciphertext is expected; under a key the
    # case registered (AES-ECB, no IV), the ciphertext is fixed by the file.
    other = bytes(16)
    server = replay((GENERATED_KEY_ENCRYPT, in_response(1, Tag.DATA, other)),
                    (REGISTERED_KEY_ENCRYPT, in_response(1, Tag.DATA, other)))

    _, lines = run_cli(credentials, server.port, GENERATED_KEY_ENCRYPT, REGISTERED_KEY_ENCRYPT)

    assert lines[0] == "PASS CS-BC-M-1-14"
    assert lines[1].startswith("FAIL CS-BC-M-4-14: response 2/")
    assert "Data: expected" in lines[1]
    assert lines[2] == "1 passed, 1 failed"


def test_an_iv_the_server_chose_makes_its_ciphertext_its_own(
    credentials: dict[str, Path], replay: Callable[..., ReplayServer]
) -> None:
    # The request names no IV: the server drew one, so other ciphertext is expected,
    # and the Decrypt that follows ($DATA_0) receives the server's own.
    server = replay((KEY_RANDOM_IV, lambda responses: in_response(1, Tag.IV_COUNTER_NONCE,
                                                                  bytes(16))(
        in_response(1, Tag.DATA, bytes(35))(responses))))

    _, lines = run_cli(credentials, server.port, KEY_RANDOM_IV)

    assert lines == ["PASS CS-BC-M-13-14", "1 passed, 0 failed"]


def test_a_placeholder_no_response_binds_is_the_servers_last_answer(
    credentials: dict[str, Path], replay: Callable[..., ReplayServer]
) -> None:
    server = replay((MAC_THEN_VERIFY, None))

    _, lines = run_cli(credentials, server.port, MAC_THEN_VERIFY)

    assert lines == ["PASS CS-AC-M-6-14", "1 passed, 0 failed"]


def test_a_later_case_must_get_back_the_key_an_earlier_case_got(
    credentials: dict[str, Path], replay: Callable[..., ReplayServer]
) -> None:
    # TL-M-2 has the server generate a key; TL-M-3 locates and reads it. Its material
    # is the server's, not the file's, but it must be the one TL-M-2 received.
    ours, other = bytes(range(32)), bytes(32)
    server = replay((TAPE_CREATES, in_response(0, Tag.KEY_MATERIAL, ours)),
                    (TAPE_READS_BACK, in_response(0, Tag.KEY_MATERIAL, ours)),
                    (TAPE_CREATES, in_response(0, Tag.KEY_MATERIAL, ours)),
                    (TAPE_READS_BACK, in_response(0, Tag.KEY_MATERIAL, other)))

    _, lines = run_cli(credentials, server.port,
                       TAPE_CREATES, TAPE_READS_BACK, TAPE_CREATES, TAPE_READS_BACK)

    assert lines[:3] == ["PASS TL-M-2-14", "PASS TL-M-3-14", "PASS TL-M-2-14"]
    assert lines[3].startswith("FAIL TL-M-3-14: response 1/")
    assert "an earlier case" in lines[3]


def test_a_library_describes_itself_but_keeps_the_ck_info_layout(
    credentials: dict[str, Path], replay: Callable[..., ReplayServer]
) -> None:
    # Another manufacturer, description and version pass; other flags do not.
    expected = bytes.fromhex(
        "022854455354202020202020507479204c74642020202020202020202020202020200000000000"
        "00000054455354202020202020202020202020202020202020202020202020202020200100")
    ours = expected[:2] + b"another".ljust(32) + expected[34:42] + b"lib".ljust(32) + b"\x03\x07"
    flagged = ours[:41] + b"\x01" + ours[42:]
    server = replay((PKCS11_INFO, in_response(1, Tag.PKCS_11_OUTPUT_PARAMETERS, ours)),
                    (PKCS11_INFO, in_response(1, Tag.PKCS_11_OUTPUT_PARAMETERS, flagged)))

    _, lines = run_cli(credentials, server.port, PKCS11_INFO, PKCS11_INFO)

    assert lines[0] == "PASS PKCS11-M-1-21"
    assert lines[1].startswith("FAIL PKCS11-M-1-21: response 2/")
    assert "CK_INFO" in lines[1]


def test_an_unreachable_server_fails_every_case(credentials: dict[str, Path]) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]

    code, lines = run_cli(credentials, port, LIFECYCLE)

    assert lines[0].startswith("FAIL SKLC-M-1-14: cannot connect")
    assert lines[-1] == "0 passed, 1 failed"
    assert code == 1
