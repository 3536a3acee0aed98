"""Retries against ARM and Graph are bounded in time, whatever Retry-After says.

azure-core's RetryPolicy on its own sleeps for a 429/503's Retry-After as long as it says (an hour,
a day), outside every connect/read timeout; pullwatch's bounded policy does not, yet still honours a
short Retry-After. Real Azure SDK clients over HTTPS against a real local server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from sandbox.httpserver import Request, Response, Server
from sandbox.pki import Pki
from shared.clients.arm import ArmClient
from shared.errors import UpstreamError

SUB = "22222222-2222-2222-2222-222222222222"
PIP = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/publicIPAddresses/egress"


class _Token:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("test-token", int(time.time()) + 3600)


class _Throttling:
    """Answers 429 with the given Retry-After the first ``times`` requests, then 200."""

    def __init__(self, retry_after: str, times: int) -> None:
        self.retry_after = retry_after
        self.times = times
        self.requests = 0

    def __call__(self, request: Request) -> Response:
        self.requests += 1
        if self.requests <= self.times:
            return Response(
                429,
                {"error": {"code": "TooManyRequests", "message": "throttled"}},
                {"Retry-After": self.retry_after},
            )
        if "publicIPAddresses" in request.path:
            return Response(200, {"id": PIP, "name": "egress", "properties": {"ipAddress": "203.0.113.9"}})
        if "transitiveMemberOf" in request.path:
            return Response(200, {"value": []})
        return Response(200, {"value": [{"id": f"/subscriptions/{SUB}", "subscriptionId": SUB}]})


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


@pytest.fixture
def throttled(pki: Pki) -> Iterator[tuple[Server, _Throttling]]:
    handler = _Throttling("3600", times=1000)
    server = Server(handler, cert=pki.issue(["127.0.0.1", "localhost"]), name="arm").start()
    try:
        yield server, handler
    finally:
        server.stop()


def _finishes_within(seconds: float, call: Any) -> BaseException | None:
    """Run ``call`` in a thread; fail the test if it is still running after ``seconds``."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the call still waits after {seconds} s (Retry-After: 3600 obeyed)"
    return outcome[0]


def _arm(server: Server, pki: Pki) -> ArmClient:
    """The ARM seam against ``server`` for both ARM and Graph: 2 s timeouts, 2 retries."""
    return ArmClient(
        _Token(),
        endpoint=server.url,
        graph_endpoint=server.url,
        ca_bundle=str(pki.ca_bundle),
        timeout=2,
        retries=2,
    )


def test_arm_call_does_not_sleep_an_hour_on_retry_after(
    throttled: tuple[Server, _Throttling], pki: Pki
) -> None:
    server, handler = throttled
    arm = _arm(server, pki)
    try:
        error = _finishes_within(20, arm.list_subscriptions)
        assert isinstance(error, UpstreamError) and "429" in str(error), error
        error = _finishes_within(20, lambda: arm.member_groups("11111111-1111-1111-1111-111111111111"))
        assert isinstance(error, UpstreamError) and "429" in str(error), error
        assert handler.requests == 2  # one request each: an hour's wait is not worth a retry
    finally:
        arm.close()


def test_network_read_does_not_sleep_an_hour_on_retry_after(
    throttled: tuple[Server, _Throttling], pki: Pki
) -> None:
    server, handler = throttled
    arm = _arm(server, pki)
    try:
        error = _finishes_within(20, lambda: arm.public_ip_addresses([PIP]))
        assert isinstance(error, UpstreamError) and "429" in str(error), error
        assert handler.requests == 1 and arm.request_counts()["arm"] == 1  # through the ARM seam's counter
    finally:
        arm.close()


def test_a_short_retry_after_is_still_honoured(pki: Pki) -> None:
    # The bound must not turn retries off: a 429 asking for 1 s is retried and then succeeds.
    handler = _Throttling("1", times=1)
    with Server(handler, cert=pki.issue(["127.0.0.1"]), name="arm") as server:
        arm = _arm(server, pki)
        try:
            started = time.monotonic()
            assert [s.subscription_id for s in arm.list_subscriptions()] == [SUB]
            assert time.monotonic() - started >= 0.9  # it waited as asked
            assert handler.requests == 2
        finally:
            arm.close()
