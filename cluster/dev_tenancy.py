"""The dev cluster's first tenant: scope ``default``, role ``admin``, and its credential.

Once the dev nodes serve, ``keyquorum dev`` makes the first user's credential a
real tenancy credential, through the admin API as an operator would:

1. the dev CA (DIR/ca.pem, which clients already trust and which signed the node
   certificates) becomes the cluster CA, so that one file is still all a client
   needs to trust;
2. scope ``default`` and role ``admin`` with ``operation_all`` are created;
3. DIR/client.pem and DIR/client.key are issued from that role, unless the files
   there already are a live credential of it (a second run with the same folder).

Every step is idempotent, so a restart of the dev cluster changes nothing.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cryptography import x509

from .pki import write_pem_pair

DEV_SCOPE = "default"
DEV_ROLE = "admin"
REQUEST_TIMEOUT_SECONDS = 15.0


class BootstrapError(Exception):
    """The admin API refused a step; the message says which and why."""


class NoAdminApi(BootstrapError):
    """The nodes serve no tenancy API (a build without it): keep the file credential."""


def bootstrap_tenancy(api_url: str, token: str, ca_file: Path, ca_key_file: Path,
                      client_cert_file: Path, client_key_file: Path) -> bool:
    """Run the three steps; True when a new client credential was written."""
    api = _Api(api_url, token, ca_file)

    # First the CA: the dev CA, unless the cluster already has one.
    current = api.call("GET", "/v1/kmip/ca")
    if current.get("certificate") is None:
        api.call("POST", "/v1/kmip/ca/cluster", {
            "certificate": ca_file.read_text(encoding="ascii"),
            "private_key": ca_key_file.read_text(encoding="ascii"),
        }, accept=(409,))

    # Then the tenant and its role.
    api.call("POST", f"/v1/kmip/scope/{DEV_SCOPE}", accept=(409,))
    api.call("POST", f"/v1/kmip/scope/{DEV_SCOPE}/role/{DEV_ROLE}", {"operation_all": True})

    # Then the credential, unless the one on disk is still good.
    if client_cert_file.exists() and client_key_file.exists():
        serial = x509.load_pem_x509_certificate(client_cert_file.read_bytes()).serial_number
        found = api.call("GET", f"/v1/kmip/scope/{DEV_SCOPE}/role/{DEV_ROLE}/credential/lookup"
                                f"?serial_number={serial:x}", accept=(404,))
        if found.get("serial_number") and not found.get("revoked"):
            return False
    issued = api.call("POST", f"/v1/kmip/scope/{DEV_SCOPE}/role/{DEV_ROLE}/credential/generate",
                      {"format": "pem", "common_name": "dev-client"})
    write_pem_pair(issued["certificate"].encode(), issued["private_key"].encode(),
                   client_cert_file, client_key_file)
    return True


class _Api:
    def __init__(self, url: str, token: str, ca_file: Path) -> None:
        self._url = url
        self._token = token
        self._context = ssl.create_default_context(cafile=str(ca_file))

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             accept: tuple[int, ...] = ()) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self._url + path, data=data, method=method,
            headers={"X-Keyquorum-Token": self._token, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, context=self._context,
                                        timeout=REQUEST_TIMEOUT_SECONDS) as response:
                answer: dict[str, Any] = json.loads(response.read() or b"{}")
                return answer
        except urllib.error.HTTPError as error:
            with error:
                text = error.read().decode("utf-8", errors="replace")
            if error.code in accept:
                return {}
            if error.code == 404 and path == "/v1/kmip/ca":
                raise NoAdminApi("the nodes serve no /v1/kmip API") from None
            raise BootstrapError(f"{method} {path} answered {error.code}: {text}") from None
        except (OSError, ValueError) as error:
            raise BootstrapError(f"{method} {path} failed: {error}") from None
