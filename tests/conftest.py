"""Fixtures shared by every test folder.

`pki` writes one cluster CA and certificates for 127.0.0.1 once per test session:
an RSA and an EC node certificate (an RSA one is needed for static-RSA suites such
as vCenter's AES128-SHA256) and a client credential, all signed by that CA.

`cluster` is a real 3-node cluster (tests/harness.py) shared by the tests of one
module; a module that needs another kind (an HSM seal, a spare node) defines its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from harness import Cluster

from keyquorum.cluster.pki import KeyType, create_ca, issue_certificate

CERTIFICATE_TTL = timedelta(days=1)


@dataclass(frozen=True)
class PkiFiles:
    """Paths of the session's CA, node and client files; keys are mode 0600."""

    directory: Path
    ca_file: Path
    ca_key_file: Path
    rsa_cert_file: Path
    rsa_key_file: Path
    ec_cert_file: Path
    ec_key_file: Path
    client_cert_file: Path
    client_key_file: Path
    client_serial: int
    client_common_name: str


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiFiles:
    directory = tmp_path_factory.mktemp("pki")
    ca = create_ca("keyquorum test CA")
    ca.write(directory / "ca.pem", directory / "ca.key")

    # Node certificates name both the address and the host name the tests dial.
    node_sans = ["127.0.0.1", "localhost"]
    rsa_node = issue_certificate(
        ca, "node-rsa", sans=node_sans, key_type=KeyType.RSA_2048, ttl=CERTIFICATE_TTL
    )
    rsa_node.write(directory / "node-rsa.pem", directory / "node-rsa.key")
    ec_node = issue_certificate(
        ca, "node-ec", sans=node_sans, key_type=KeyType.EC_P256, ttl=CERTIFICATE_TTL
    )
    ec_node.write(directory / "node-ec.pem", directory / "node-ec.key")

    client = issue_certificate(ca, "test-client", sans=[], ttl=CERTIFICATE_TTL)
    client.write(directory / "client.pem", directory / "client.key")

    return PkiFiles(
        directory=directory,
        ca_file=directory / "ca.pem",
        ca_key_file=directory / "ca.key",
        rsa_cert_file=directory / "node-rsa.pem",
        rsa_key_file=directory / "node-rsa.key",
        ec_cert_file=directory / "node-ec.pem",
        ec_key_file=directory / "node-ec.key",
        client_cert_file=directory / "client.pem",
        client_key_file=directory / "client.key",
        client_serial=client.serial,
        client_common_name="test-client",
    )


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # Named for the module, so that its node logs are found beside its other files.
    module = request.module.__name__.rsplit(".", 1)[-1]
    running = Cluster(tmp_path_factory.mktemp(module) / "cluster")
    running.start()
    yield running
    running.stop()
