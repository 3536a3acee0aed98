"""Shared fixtures: real parts started once per test session and always stopped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.azurite import Azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """A real Azurite (queues, tables, blobs) for the session; tests use unique table/queue names."""
    server = Azurite().start()
    try:
        yield server
    finally:
        server.stop()
