"""Real TLS handshakes over 127.0.0.1 between the contexts tls.py builds."""

from __future__ import annotations

import socket
import ssl
import threading
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from keyquorum.cluster.pki import create_ca, issue_certificate
from keyquorum.cluster.tls import (
    ClientIdentity,
    check_ciphers,
    client_context,
    peer_identity,
    server_context,
)

TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class Handshake:
    """What each end saw of one connection."""

    cipher: str | None
    version: str | None
    identity: ClientIdentity | None
    server_error: BaseException | None
    session: ssl.SSLSession | None = None
    resumed: bool = False


def _handshake(
    server: ssl.SSLContext, client: ssl.SSLContext, session: ssl.SSLSession | None = None
) -> Handshake:
    """Connect `client` to `server` once, offering `session` for resumption; the server
    answers one byte, then hangs up."""
    seen: dict[str, Any] = {}
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        connection, _ = listener.accept()
        connection.settimeout(TIMEOUT_SECONDS)
        try:
            with server.wrap_socket(connection, server_side=True) as tls:
                seen["identity"] = peer_identity(tls)
                tls.sendall(b"k")
        except (ssl.SSLError, OSError) as error:
            seen["error"] = error

    thread = threading.Thread(target=serve)
    thread.start()
    cipher = version = new_session = None
    resumed = False
    try:
        with socket.create_connection(("127.0.0.1", port), TIMEOUT_SECONDS) as raw:
            with client.wrap_socket(
                raw, server_hostname="127.0.0.1", session=session
            ) as tls:
                # Under TLS 1.3 a refused client certificate shows only on the first read,
                # and the session tickets arrive before that byte.
                negotiated = tls.cipher()
                if tls.recv(1) == b"k" and negotiated is not None:
                    cipher, version = negotiated[0], tls.version()
                    new_session, resumed = tls.session, tls.session_reused
    except (ssl.SSLError, OSError):
        pass
    finally:
        thread.join(TIMEOUT_SECONDS)
        listener.close()
    return Handshake(
        cipher, version, seen.get("identity"), seen.get("error"), new_session, resumed
    )


def _tls12_client(pki: Any, ciphers: str) -> ssl.SSLContext:
    client = client_context(pki.ca_file, pki.client_cert_file, pki.client_key_file)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers(ciphers)
    return client


@pytest.mark.parametrize("node", ["rsa", "ec"])
def test_mutual_tls_names_the_client(pki: Any, node: str) -> None:
    cert_file = getattr(pki, f"{node}_cert_file")
    key_file = getattr(pki, f"{node}_key_file")
    server = server_context(cert_file, key_file, pki.ca_file)
    client = client_context(pki.ca_file, pki.client_cert_file, pki.client_key_file)

    result = _handshake(server, client)

    assert result.version == "TLSv1.3"
    assert result.identity is not None
    assert result.identity.serial == pki.client_serial
    assert result.identity.common_name == pki.client_common_name
    assert len(result.identity.fingerprint_sha256) == 64


def test_a_tls_1_3_client_gets_one_session_ticket_and_resumes_with_it(pki: Any) -> None:
    server = server_context(pki.rsa_cert_file, pki.rsa_key_file, pki.ca_file)
    client = client_context(pki.ca_file, pki.client_cert_file, pki.client_key_file)
    tickets: list[int] = []

    def count_tickets(_conn: Any, direction: str, _version: Any, content_type: Any,
                      message_type: Any, _data: bytes) -> None:
        # Python's hook onto OpenSSL's message callback: the only place a client can
        # see how many NewSessionTicket messages the server sent.
        if (direction, content_type, message_type) == (
            "read", ssl._TLSContentType.HANDSHAKE, ssl._TLSMessageType.NEWSESSION_TICKET
        ):
            tickets.append(1)

    client._msg_callback = count_tickets  # type: ignore[attr-defined]

    first = _handshake(server, client)
    tickets_on_first = len(tickets)
    again = _handshake(server, client, first.session)

    assert (first.version, tickets_on_first) == ("TLSv1.3", 1)
    assert (first.resumed, again.resumed) == (False, True)
    assert again.identity is not None
    assert again.identity.serial == pki.client_serial


def test_vcenter_static_rsa_suite_negotiates_with_an_rsa_certificate(pki: Any) -> None:
    server = server_context(pki.rsa_cert_file, pki.rsa_key_file, pki.ca_file)

    result = _handshake(server, _tls12_client(pki, "AES128-SHA256"))

    assert (result.version, result.cipher) == ("TLSv1.2", "AES128-SHA256")
    assert result.identity is not None


def test_static_rsa_suite_cannot_work_with_an_ec_certificate(pki: Any) -> None:
    server = server_context(pki.ec_cert_file, pki.ec_key_file, pki.ca_file)

    result = _handshake(server, _tls12_client(pki, "AES128-SHA256"))

    assert result.cipher is None
    assert "NO_SHARED_CIPHER" in str(result.server_error)


def test_server_prefers_forward_secret_aead_over_the_clients_order(pki: Any) -> None:
    server = server_context(pki.rsa_cert_file, pki.rsa_key_file, pki.ca_file)
    client = _tls12_client(pki, "AES128-SHA256:ECDHE-RSA-AES256-GCM-SHA384")

    assert _handshake(server, client).cipher == "ECDHE-RSA-AES256-GCM-SHA384"


def test_a_client_without_a_certificate_is_refused(pki: Any) -> None:
    server = server_context(pki.rsa_cert_file, pki.rsa_key_file, pki.ca_file)

    result = _handshake(server, client_context(pki.ca_file))

    assert result.cipher is None
    assert result.identity is None
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in str(result.server_error)


def test_a_certificate_from_another_ca_is_refused(pki: Any, tmp_path: Path) -> None:
    stranger_ca = create_ca("stranger CA")
    stranger = issue_certificate(stranger_ca, "intruder", sans=[], ttl=timedelta(days=1))
    stranger.write(tmp_path / "intruder.pem", tmp_path / "intruder.key")
    server = server_context(pki.rsa_cert_file, pki.rsa_key_file, pki.ca_file)
    client = client_context(pki.ca_file, tmp_path / "intruder.pem", tmp_path / "intruder.key")

    result = _handshake(server, client)

    assert result.identity is None
    assert "CERTIFICATE_VERIFY_FAILED" in str(result.server_error)


def test_tls_1_1_is_refused(pki: Any) -> None:
    server = server_context(pki.rsa_cert_file, pki.rsa_key_file, pki.ca_file)
    old_client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old_client.load_verify_locations(pki.ca_file)
    old_client.load_cert_chain(pki.client_cert_file, pki.client_key_file)
    # Security level 0 lets the client offer TLS 1.1 at all, so the server decides.
    old_client.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():
        # Python rightly warns about configuring TLS 1.1; here it is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        old_client.minimum_version = ssl.TLSVersion.TLSv1_1
        old_client.maximum_version = ssl.TLSVersion.TLSv1_1

    result = _handshake(server, old_client)

    assert result.cipher is None
    assert "UNSUPPORTED_PROTOCOL" in str(result.server_error)


def test_a_cipher_string_naming_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="no usable cipher suite"):
        check_ciphers("NOT-A-CIPHER")
