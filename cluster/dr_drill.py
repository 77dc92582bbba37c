"""A DR failover drill against running clusters: ``keyquorum drill dr``.

What it does, in order, through the clusters' own interfaces only:

1. checks that one cluster is a primary and the other its DR secondary;
2. writes keys on the primary over KMIP (Create), remembering each one acknowledged;
3. *cuts* the primary: it seals every primary node named (``POST /v1/sys/seal``). A
   drill runs from an operator's desk and cannot kill processes in another
   datacenter; a sealed node refuses all KMIP, which is what vCenter sees of a lost
   primary. Unlike a real loss, a sealed primary still streams what it committed, so
   the drill lets the DR secondary drain the stream before promoting and reports the
   lag it found at the cut: with a real loss, that many changes would be gone;
4. makes a DR operation token from the unseal shares given (cluster/dr_token.py),
   unless one was given, and promotes the DR secondary;
5. writes through the promoted cluster until a Create succeeds: the unavailability
   window runs from the cut to that first acknowledged write;
6. reads back every key acknowledged before the cut (Get) from the promoted cluster.

The old primary is left sealed (and, with ``demote_primary``, demoted): before it
serves again it must follow the new primary (``keyquorum replication dr
update-primary``), or two primaries would take writes.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from keyquorum.kmip import ResponseMessage, decode_message
from keyquorum.kmip.loadgen import create_request, failure_reason, get_request

from .dr_token import DrTokenError, decode_token

REQUEST_TIMEOUT_SECONDS = 15.0
# How long the DR secondary may take to drain what the sealed primary still streams.
DRAIN_SECONDS = 30.0
POLL_SECONDS = 0.05


class DrillError(Exception):
    """The drill cannot go on; the message says what to fix."""


@dataclass(frozen=True)
class Side:
    """One cluster as the drill reaches it: its nodes' API URLs and KMIP addresses."""

    api: tuple[str, ...]
    token: str
    cacert: Path | None
    kmip: tuple[str, ...]


@dataclass(frozen=True)
class KmipCredentials:
    """A client certificate both clusters accept (the secondary has the primary's CA)."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class DrillOptions:
    primary: Side
    dr: Side
    credentials: KmipCredentials
    keys: int = 20
    unseal_keys: tuple[str, ...] = ()
    dr_operation_token: str | None = None
    demote_primary: bool = False
    timeout: float = 120.0


@dataclass(frozen=True)
class DrillReport:
    keys_acknowledged: int
    keys_present: int
    missing: list[str] = field(default_factory=list)
    # Changes the DR secondary lacked at the cut: lost, had the primary really gone.
    lag_at_cut_sequences: int = 0
    drain_seconds: float = 0.0
    promote_seconds: float = 0.0
    unavailable_seconds: float = 0.0
    failed_writes_during_cut: int = 0
    primary_demoted: bool = False

    @property
    def passed(self) -> bool:
        return not self.missing and self.keys_present == self.keys_acknowledged

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


class _Api:
    def __init__(self, side: Side) -> None:
        self.side = side
        try:
            self.context = ssl.create_default_context(
                cafile=str(side.cacert) if side.cacert else None)
        except (OSError, ssl.SSLError) as error:
            raise DrillError(f"cannot read the API CA file {side.cacert}: {error}") from None

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             address: str | None = None) -> dict[str, Any]:
        """One call to ``address`` or, by default, the first node that answers."""
        last_error = ""
        for base in [address] if address else list(self.side.api):
            request = urllib.request.Request(
                base.rstrip("/") + path, method=method,
                data=None if body is None else json.dumps(body).encode(),
                headers={"X-Keyquorum-Token": self.side.token,
                         "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, context=self.context,
                                            timeout=REQUEST_TIMEOUT_SECONDS) as response:
                    answer: dict[str, Any] = json.loads(response.read() or b"{}")
                    return answer
            except urllib.error.HTTPError as error:
                with error:
                    last_error = f"{base}{path}: {error.code} {error.read()[:300]!r}"
                if error.code < 500:
                    break
            except OSError as error:
                last_error = f"{base}: {getattr(error, 'reason', error)}"
        raise DrillError(f"the API call failed: {last_error}")

    def status(self) -> dict[str, Any]:
        return self.call("GET", "/v1/sys/replication/status")


class _Kmip:
    """One request per TLS connection, to the addresses in turn (vCenter's way)."""

    def __init__(self, credentials: KmipCredentials) -> None:
        try:
            self.context = ssl.create_default_context(cafile=str(credentials.ca))
            self.context.load_cert_chain(str(credentials.cert), str(credentials.key))
        except (OSError, ssl.SSLError) as error:
            raise DrillError(f"cannot load the KMIP CA, certificate or key ({error}); check "
                             "--kmip-ca, --kmip-cert and --kmip-key") from None

    def exchange(self, address: str, request: bytes) -> ResponseMessage:
        host, port = address.rsplit(":", 1)
        with socket.create_connection((host, int(port)),
                                      timeout=REQUEST_TIMEOUT_SECONDS) as raw:
            with self.context.wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(request)
                data = b""
                while len(data) < 8 or len(data) < 8 + int.from_bytes(data[4:8], "big"):
                    chunk = tls.recv(65536)
                    if not chunk:
                        raise ConnectionError("the server closed the connection")
                    data += chunk
        reason = failure_reason(data)
        if reason is not None:
            raise _Refused(reason)
        message = decode_message(data)
        assert isinstance(message, ResponseMessage)
        return message

    def create(self, addresses: tuple[str, ...]) -> str:
        """A new key through the first address that takes it; its identifier."""
        last = ""
        for address in addresses:
            try:
                response = self.exchange(address, create_request())
            except (_Refused, OSError) as error:
                last = f"{address}: {error}"
                continue
            return str(response.batch_items[0].payload.unique_identifier)
        raise _Refused(last)

    def present(self, addresses: tuple[str, ...], uid: str) -> bool:
        for address in addresses:
            try:
                self.exchange(address, get_request(uid))
                return True
            except _Refused as error:
                if str(error) == "item_not_found":
                    return False
            except OSError:
                continue
        return False


class _Refused(Exception):
    """A KMIP error response or no server that took the request."""


def run_drill(options: DrillOptions, say: Callable[[str], None]) -> DrillReport:
    primary_api, dr_api = _Api(options.primary), _Api(options.dr)
    kmip = _Kmip(options.credentials)

    # First the roles: a primary, and a DR secondary following it.
    primary_status, dr_status = primary_api.status(), dr_api.status()
    if primary_status["mode"] != "primary":
        raise DrillError(f"the --primary cluster is {primary_status['mode']}, not a primary")
    if dr_status["mode"] != "dr":
        raise DrillError(f"the --dr cluster is {dr_status['mode']}, not a DR secondary")
    if not options.unseal_keys and not options.dr_operation_token:
        raise DrillError("give the unseal shares (--unseal-key, repeat to the threshold) or a "
                         "DR operation token (--dr-operation-token) to promote with")

    # Then keys, each acknowledged by the primary.
    acknowledged = [kmip.create(options.primary.kmip) for _ in range(options.keys)]
    say(f"wrote {len(acknowledged)} keys on the primary")

    # The cut: every primary node sealed, and the lag the DR secondary had then.
    cut_at = time.monotonic()
    for address in options.primary.api:
        primary_api.call("POST", "/v1/sys/seal", {}, address=address)
    at_cut = primary_api.status()["sequence"]
    lag_at_cut = max(0, at_cut - dr_api.status()["sequence"])
    say(f"sealed {len(options.primary.api)} primary node(s); the DR secondary lacked "
        f"{lag_at_cut} change(s) at the cut")

    # The DR secondary drains what the sealed primary still streams, then is promoted.
    drained_at = _wait(lambda: dr_api.status()["sequence"] >= at_cut, DRAIN_SECONDS,
                       "the DR secondary to apply the primary's last changes")
    token = options.dr_operation_token or _generate_token(dr_api, options.unseal_keys)
    dr_api.call("POST", "/v1/sys/replication/dr/secondary/promote",
                {"dr_operation_token": token})
    promoted_at = time.monotonic()
    say(f"promoted the DR secondary {promoted_at - cut_at:.2f} s after the cut")

    # The window: from the cut until the promoted cluster acknowledges a write.
    failed = 0
    deadline = cut_at + options.timeout
    while True:
        try:
            kmip.create(options.dr.kmip)
            break
        except _Refused:
            failed += 1
            if time.monotonic() > deadline:
                raise DrillError("the promoted cluster took no write within --timeout") from None
            time.sleep(POLL_SECONDS)
    serving_at = time.monotonic()

    # Every key acknowledged before the cut must be there.
    missing = [uid for uid in acknowledged if not kmip.present(options.dr.kmip, uid)]
    demoted = False
    if options.demote_primary:
        primary_api.call("POST", "/v1/sys/replication/primary/demote")
        demoted = True
    return DrillReport(
        keys_acknowledged=len(acknowledged), keys_present=len(acknowledged) - len(missing),
        missing=missing, lag_at_cut_sequences=lag_at_cut,
        drain_seconds=round(drained_at - cut_at, 3),
        promote_seconds=round(promoted_at - cut_at, 3),
        unavailable_seconds=round(serving_at - cut_at, 3),
        failed_writes_during_cut=failed, primary_demoted=demoted)


def _generate_token(dr_api: _Api, unseal_keys: tuple[str, ...]) -> str:
    """A DR operation token from the shares given, decoded with this attempt's pad."""
    base = "/v1/sys/replication/dr/operation-token/"
    started = dr_api.call("POST", base + "attempt", {"ttl_seconds": 600})
    answer: dict[str, Any] = started
    for key in unseal_keys:
        answer = dr_api.call("POST", base + "update", {"nonce": started["nonce"], "key": key})
        if answer["complete"]:
            break
    if not answer["complete"]:
        dr_api.call("DELETE", base + "attempt")
        raise DrillError(f"{len(unseal_keys)} share(s) given, {answer['required']} needed")
    try:
        return decode_token(answer["encoded_token"], started["otp"])
    except DrTokenError as error:
        raise DrillError(str(error)) from None


def _wait(check: Callable[[], bool], timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise DrillError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL_SECONDS)
    return time.monotonic()
