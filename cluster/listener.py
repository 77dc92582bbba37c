"""The KMIP listener's TLS settings, rebuilt whenever the replicated settings change.

What a handshake offers and accepts comes from two places: the node config
(certificate files, the CA file, the cipher list) and the tenancy state (the cluster
CA, imported CAs, extra server names, the minimum TLS version, a cipher list for the
whole cluster). ``ListenerTls.watch`` notices a change to the latter by its
``tls_generation`` counter and hands the front end a new SSLContext; handshakes from
then on use it, connections already open keep the one they were made with, and no
restart is needed.

Once the cluster CA exists, each node serves KMIP with a server certificate it
issues itself from that CA, so that a client trusting the CA (what a credential
bundle carries) trusts every node. Its names are those of the configured
certificate (tls.cert_file) plus the extra hostnames and IPs of the listener
settings; its key is RSA-2048, because vCenter negotiates a static-RSA suite (see
cluster/tls.py), and is drawn on the node and never replicated. OpenSSL reads a
certificate chain only from a file, so the key touches disk for the moment of
loading, in a private temporary folder under the node's data folder. The
certificate lives as long as the CA allows, up to a year, and is issued again when
the node restarts or the settings change; a node that runs for a year without
either would serve an expired certificate (renewal on a timer is still to do).

The CA key is stored sealed, so a sealed node cannot issue its certificate: until it
is unsealed it serves the configured one (it answers no KMIP request meanwhile), and
the watcher rebuilds the context once the seal opens.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from cryptography import x509

from .admin_api import CA_KEY_CONTEXT
from .config import NodeConfig
from .pki import CertificateAuthority, KeyType, issue_certificate, write_pem_pair
from .seal import Seal
from .tenancy import TenancyState

log = logging.getLogger("keyquorum.listener")

# How often a node looks at the generation counter: one integer compare. A change
# applied on this node is in force within this long (plus the rebuild).
WATCH_SECONDS = 0.2
SERVER_KEY_TYPE = KeyType.RSA_2048
SERVER_CERTIFICATE_TTL = timedelta(days=365)

_TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class TlsListener(Protocol):
    """A listener whose handshakes use a context it can be handed afresh."""

    def use_ssl_context(self, ssl_context: ssl.SSLContext) -> None: ...


class ListenerTls:
    """Builds the KMIP listener's SSLContext and keeps the front end's up to date."""

    def __init__(self, config: NodeConfig, tenancy: TenancyState, seal: Seal) -> None:
        self._config = config
        self._tenancy = tenancy
        self._seal = seal
        self.generation = -1
        # Whether the context in force was built while sealed (the configured
        # certificate stood in for the node's own).
        self.built_sealed = False

    def build(self) -> ssl.SSLContext:
        """A context from the config and the tenancy state as they are now."""
        generation = self._tenancy.tls_generation
        settings = self._tenancy.listener()
        cluster_ca = self._tenancy.cluster_ca()
        sealed = self._seal.sealed

        # First the protocol versions and suites.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = _TLS_VERSIONS[settings.tls_min_version]
        context.maximum_version = ssl.TLSVersion.TLSv1_3
        context.set_ciphers(settings.tls_cipher_suites or self._config.kmip.ciphers)
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE

        # Then who we are: the configured certificate until the cluster CA exists.
        tls = self._config.tls
        if cluster_ca is None or sealed:
            context.load_cert_chain(tls.cert_file, tls.key_file)
        else:
            ca_key_pem = self._seal.decrypt(cluster_ca.sealed_key, CA_KEY_CONTEXT)
            self._load_own_certificate(context, cluster_ca.cert_pem, ca_key_pem,
                                       settings.server_hostnames, settings.server_ips)

        # Then whom we trust. The handshake only proves a chain; which certificates
        # get in is decided by cluster/kmip_access.py.
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=tls.ca_file)
        trusted = [] if cluster_ca is None else [cluster_ca.cert_pem]
        trusted += [imported.cert_pem for imported in self._tenancy.imported_cas()]
        if trusted:
            context.load_verify_locations(cadata=b"".join(trusted).decode("ascii"))
        self.generation = generation
        self.built_sealed = sealed
        return context

    def _load_own_certificate(
        self,
        context: ssl.SSLContext,
        ca_cert_pem: bytes,
        ca_key_pem: bytes,
        hostnames: tuple[str, ...],
        ips: tuple[str, ...],
    ) -> None:
        configured = x509.load_pem_x509_certificate(self._config.tls.cert_file.read_bytes())
        names = _san_names(configured) + [n for n in (*hostnames, *ips)]
        names = list(dict.fromkeys(names))
        ca = CertificateAuthority(cert_pem=ca_cert_pem, key_pem=ca_key_pem)
        issued = issue_certificate(ca, str(self._config.node.id), sans=names,
                                   key_type=SERVER_KEY_TYPE, ttl=SERVER_CERTIFICATE_TTL)

        data_dir = self._config.node.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=data_dir, prefix=".tls-") as folder:
            cert_file, key_file = Path(folder) / "server.pem", Path(folder) / "server.key"
            write_pem_pair(issued.cert_pem + ca_cert_pem, issued.key_pem, cert_file, key_file)
            context.load_cert_chain(cert_file, key_file)
        log.info("server_certificate_issued serial=%x names=%d", issued.serial, len(names))

    async def watch(self, *frontends: TlsListener) -> None:
        """Rebuild the listeners' context whenever the tenancy's TLS state changes.

        The binary KMIP port and KMIP over HTTPS share one context: the same server
        certificate and the same trusted CAs.
        """
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            unsealed_since = self.built_sealed and not self._seal.sealed
            if self._tenancy.tls_generation == self.generation and not unsealed_since:
                continue
            try:
                context = await asyncio.to_thread(self.build)
            except (ssl.SSLError, ValueError, OSError) as error:
                # The admin API checks settings before they are committed; this is a
                # last line, and the node keeps serving with what it had.
                log.error("listener_tls_rebuild_failed error=%s", type(error).__name__)
                self.generation = self._tenancy.tls_generation
                continue
            for frontend in frontends:
                frontend.use_ssl_context(context)
            log.info("listener_tls_updated generation=%d", self.generation)


def _san_names(certificate: x509.Certificate) -> list[str]:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    names: list[str] = list(extension.value.get_values_for_type(x509.DNSName))
    addresses = extension.value.get_values_for_type(x509.IPAddress)
    names += [str(address) for address in addresses if isinstance(
        address, ipaddress.IPv4Address | ipaddress.IPv6Address)]
    return names
