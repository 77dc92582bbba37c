"""The evaluation cluster's one-shot setup steps, run inside the compose services.

``setup.py files DIR``: a CA, a certificate per node (valid for its compose name and
for localhost, so clients on the host can connect through the published ports),
the Raft secret, an admin token, a dev root key and each node's node.toml. Files
that exist are kept, so ``docker compose up`` again brings the same cluster back.

``setup.py tenant DIR``: once the nodes serve, make the CA the cluster CA, create
scope ``default`` with role ``admin`` and write ``client.pem``/``client.key``, the
way ``keyquorum dev`` does (cluster/dev_tenancy.py).

For evaluation only: the nodes unseal themselves from a root key in a plain file.
"""

from __future__ import annotations

import secrets
import sys
from datetime import timedelta
from pathlib import Path

from keyquorum.cluster.dev_tenancy import bootstrap_tenancy
from keyquorum.cluster.pki import CertificateAuthority, KeyType, create_ca, issue_certificate
from keyquorum.cluster.seal import write_dev_root_key

NODES = ("kq-1", "kq-2", "kq-3")
CERT_DAYS = 365


def node_config(node: str, root: Path) -> str:
    peers = ", ".join(f'"{peer}:7000"' for peer in NODES if peer != node)
    return f"""\
# Written by deploy/compose/setup.py for the evaluation cluster.

[node]
id = "{node}"
data_dir = "/data/{node}"

[kmip]
listen = "0.0.0.0:5696"

[tls]
ca_file = "{root}/ca.pem"
cert_file = "{root}/{node}/node.pem"
key_file = "{root}/{node}/node.key"

[raft]
listen = "{node}:7000"
peers = [{peers}]
password_file = "{root}/raft-password"

[api]
listen = "0.0.0.0:8696"
admin_token_file = "{root}/admin-token"

[seal]
# Evaluation only: the root key in a plain file. Production uses shares or an HSM.
type = "dev-file"
key_file = "{root}/root-key"
"""


def write_files(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    if (root / "ca.key").exists():
        ca = CertificateAuthority.load(root / "ca.pem", root / "ca.key")
    else:
        ca = create_ca("keyquorum evaluation CA")
        ca.write(root / "ca.pem", root / "ca.key")
    for name in ("raft-password", "admin-token"):
        secret = root / name
        if not secret.exists():
            secret.touch(mode=0o600)
            secret.write_text(secrets.token_urlsafe(32) + "\n")
    if not (root / "root-key").exists():
        write_dev_root_key(root / "root-key")

    for node in NODES:
        folder = root / node
        folder.mkdir(exist_ok=True)
        if not (folder / "node.pem").exists():
            # RSA, as in `keyquorum dev`: vCenter 7.0.3 needs a static-RSA suite.
            issued = issue_certificate(ca, node, sans=[node, "localhost", "127.0.0.1"],
                                       key_type=KeyType.RSA_2048,
                                       ttl=timedelta(days=CERT_DAYS))
            issued.write(folder / "node.pem", folder / "node.key")
        (folder / "node.toml").write_text(node_config(node, root))


def add_tenant(root: Path, api_url: str) -> None:
    token = (root / "admin-token").read_text().strip()
    bootstrap_tenancy(api_url, token, root / "ca.pem", root / "ca.key",
                      root / "client.pem", root / "client.key")


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] not in ("files", "tenant"):
        print("usage: setup.py files DIR | setup.py tenant DIR [API URL]", file=sys.stderr)
        return 2
    root = Path(argv[2])
    if argv[1] == "files":
        write_files(root)
    else:
        add_tenant(root, argv[3] if len(argv) > 3 else "https://kq-1:8696")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
