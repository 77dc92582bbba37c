"""A handful of OASIS test cases through a real 3-node cluster, in the normal suite.

`make conformance` runs all 168; these few keep the everyday suite honest about the
paths they cross: a key lifecycle in 1.4 and 2.1 through a follower (writes
forwarded through Raft, reads after a barrier), encryption with a generated key,
a multi-part GCM operation, Create Key Pair with Sign and Signature Verify, a
batch with Undo rolled back through the log, Usage Limits spent through the log,
Fresh cleared by a Get, a whole attribute listing, ChaCha20-Poly1305 with a
truncated tag, an RNG seed mixed into the node's kernel pool, a key refused because
it cannot be Quantum Safe, Queries that offer Templates (1.4) and the Quantum Safe
profile's operations (2.1), PKCS#11's C_Initialize, C_GetInfo and C_Finalize, and
keys got wrapped under a key the batch created.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import Cluster

from keyquorum.kmip.conformance import TlsTransport, client_context, run_case

CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"
CASES = [
    "kmip-1.4/mandatory/SKLC-M-1-14.xml",
    "kmip-2.1/mandatory/SKLC-M-1-21.xml",
    "kmip-1.4/mandatory/TL-M-2-14.xml",
    "kmip-1.4/mandatory/CS-BC-M-3-14.xml",
    "kmip-1.4/mandatory/CS-BC-M-GCM-3-14.xml",
    "kmip-1.4/mandatory/AKLC-M-2-14.xml",
    "kmip-2.1/mandatory/BL-M-2-21.xml",
    "kmip-1.4/mandatory/CS-BC-M-7-14.xml",
    "kmip-2.1/mandatory/BL-M-13-21.xml",
    "kmip-2.1/mandatory/SKFF-M-9-21.xml",
    "kmip-2.1/mandatory/CS-BC-M-CHACHA20POLY1305-1-21.xml",
    "kmip-2.1/optional/CS-RNG-O-1-21.xml",
    "kmip-2.1/mandatory/QS-M-1-21.xml",
    "kmip-2.1/mandatory/QS-M-2-21.xml",
    "kmip-1.4/mandatory/TL-M-1-14.xml",
    "kmip-2.1/mandatory/PKCS11-M-1-21.xml",
    "kmip-1.4/mandatory/AX-M-2-14.xml",
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: Path(case).stem)
def test_case_passes_through_a_follower(cluster: Cluster, case: str) -> None:
    follower = cluster.nodes[cluster.followers(cluster.leader())[0]]
    context = client_context(cluster.ca, cluster.client_cert, cluster.client_key)

    result = run_case(CONFORMANCE / case,
                      lambda: TlsTransport(follower.kmip_host, follower.kmip_port, context))

    assert result.passed, result.difference
