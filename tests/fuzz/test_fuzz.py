"""A short, fixed-seed atheris run of each fuzz target, as part of `make test`.

A finding makes libFuzzer exit non-zero with the crashing input saved; the test
fails and prints the tail of libFuzzer's report. `make fuzz` runs longer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).with_name("fuzz_kmip.py")

# Enough for libFuzzer to grow a corpus from the seeds and mutate it thousands of
# times, within seconds on this machine; the long runs are `make fuzz`'s.
CI_RUNS = 20_000


@pytest.mark.parametrize("target", ["decoder", "service"])
def test_a_short_fuzz_run_finds_nothing(target: str, tmp_path: Path) -> None:
    sys.path.insert(0, str(HARNESS.parent))
    try:
        from fuzz_kmip import write_seed_corpus
    finally:
        sys.path.pop(0)
    corpus = tmp_path / "corpus"
    write_seed_corpus(corpus)
    seeds = len(list(corpus.iterdir()))

    run = subprocess.run(
        [sys.executable, str(HARNESS), target, f"-runs={CI_RUNS}", "-seed=1",
         f"-artifact_prefix={tmp_path}/", "-max_len=4096", str(corpus)],
        capture_output=True, text=True, timeout=600,
    )

    assert run.returncode == 0, run.stderr[-3000:]
    assert f"Done {CI_RUNS} runs" in run.stderr
    # libFuzzer kept what raised coverage: the corpus grew beyond the seeds.
    assert len(list(corpus.iterdir())) > seeds
