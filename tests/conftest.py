"""Shared fixtures: real parts started once per test session and always stopped."""

from __future__ import annotations

import socket
import uuid
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


def isolated_app_settings(azurite: Azurite, subscription: str, **overrides: str) -> dict[str, str]:
    """App settings for a function_app under test: its own queue and table on Azurite, and every
    Azure endpoint on a closed local port, so nothing a test does can leave this machine."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = int(s.getsockname()[1])
    suffix = uuid.uuid4().hex[:10]
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "PULLWATCH_AUDIT_QUEUE": f"audit-{suffix}",
        "PULLWATCH_STATE_TABLE": f"state{suffix}",
        "PULLWATCH_DEBOUNCE_SECONDS": "30",
        "PULLWATCH_SUBSCRIPTIONS": subscription,
        "IDENTITY_ENDPOINT": f"http://127.0.0.1:{dead}/msi/token",
        "IDENTITY_HEADER": "test",
        "PULLWATCH_ARM_ENDPOINT": f"https://127.0.0.1:{dead}",
        "PULLWATCH_GRAPH_ENDPOINT": f"https://127.0.0.1:{dead}",
        "PULLWATCH_HTTP_TIMEOUT_SECONDS": "2",
        "PULLWATCH_RETRIES": "0",
        **overrides,
    }
