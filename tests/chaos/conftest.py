"""Network namespaces of the chaos tests never outlive the session that made them.

Each NetnsCluster deletes its own namespaces in ``stop``; this removes, before the
session, what dead sessions left, and after it, anything of this session's that a
crash between start and stop left behind.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chaos.netns_cluster import remove_stale_namespaces


@pytest.fixture(scope="session", autouse=True)
def namespaces_cleaned_up() -> Iterator[None]:
    remove_stale_namespaces()
    yield
    remove_stale_namespaces(include_own=True)
