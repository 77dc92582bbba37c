"""The CI fault run: one seed, every fault kind, about two minutes; nothing may be lost.

`make chaos` (tests/chaos/run_chaos.py) runs longer with several seeds and writes
docs/reliability.md. KEYQUORUM_CHAOS_SEEDS="7" replays a seed here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from chaos.fault_run import FAULT_KINDS, RunConfig, run_faults, seeds_from_environment
from chaos.netns_cluster import NetnsCluster

# Six faults of about 8 s each (calm, hold, recovery) fit in 75 s.
CI_DURATION_SECONDS = 75.0


@pytest.mark.parametrize("seed", seeds_from_environment((1,)))
def test_a_seeded_fault_run_loses_nothing_and_reads_nothing_stale(tmp_path: Path,
                                                                  seed: int) -> None:
    cluster = NetnsCluster(tmp_path / "cluster")
    cluster.start()
    try:
        result = run_faults(cluster, RunConfig(seed=seed, duration_seconds=CI_DURATION_SECONDS))
    finally:
        cluster.stop()

    assert result.violations == [], "\n\n".join(result.violations[:5])
    assert {fault.kind for fault in result.faults} == set(FAULT_KINDS)
    # Enough happened for the checks to mean something.
    assert result.objects >= 20
    assert result.outcomes["ok"] >= 200
    assert sum(result.operations[kind] for kind in ("get", "get_attributes", "locate")) >= 200
