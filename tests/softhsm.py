"""SoftHSM2 tokens of a test's own, for the PKCS#11 seal tests.

Importing this module fails the importing test module when Debian's softhsm2 is not
installed: an HSM test that cannot run must not pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LIBRARY = Path("/usr/lib/softhsm/libsofthsm2.so")

if not LIBRARY.exists() or shutil.which("softhsm2-util") is None:
    pytest.fail("SoftHSM2 is missing: apt-get install -y softhsm2 (.ci/run installs it)",
                pytrace=False)


def make_token(folder: Path, label: str, pin: str, so_pin: str, aes_keys: list[str]) -> None:
    """A fresh token in ``folder`` holding an AES-256 key under each of ``aes_keys``.

    SOFTHSM2_CONF is set in this process's environment, so node processes started after
    it use the same token. The keys are made in a child process: SoftHSM2 reads its
    config once per process, at the first C_Initialize, so a test process that had
    loaded it for an earlier module's token would never see this one.
    """
    (folder / "tokens").mkdir()
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    add_token(label, pin, so_pin, aes_keys)


def add_token(label: str, pin: str, so_pin: str, aes_keys: list[str]) -> None:
    """Another token beside the one ``make_token`` made, keys made as it makes them."""
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label,
                    "--pin", pin, "--so-pin", so_pin], check=True, capture_output=True)
    subprocess.run([sys.executable, "-c", _GENERATE_KEYS, str(LIBRARY), label, pin, *aes_keys],
                   check=True, capture_output=True)


_GENERATE_KEYS = """
import sys
import pkcs11

library, label, pin, *key_labels = sys.argv[1:]
with pkcs11.lib(library).get_token(token_label=label).open(user_pin=pin, rw=True) as session:
    for key_label in key_labels:
        session.generate_key(pkcs11.KeyType.AES, 256, label=key_label, store=True)
"""
