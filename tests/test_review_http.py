"""Review: the on-demand HTTP check (``POST /api/check``, reachable with a function key) answers
400 for every malformed body, never an unhandled exception (a 500 with a traceback in the logs).

Through the registered Functions entry point with a real ``azure.functions.HttpRequest``; Azure
endpoints point at a closed local port so nothing leaves the machine."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import azure.functions as func
import pytest

from sandbox.host import load_function_app

CLUSTER = (
    "/subscriptions/22222222-2222-2222-2222-222222222222/resourceGroups/rg-prod"
    "/providers/Microsoft.ContainerService/managedClusters/aks-prod"
)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def check(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[bytes], Any]]:
    dead = _closed_port()
    for name, value in {
        "IDENTITY_ENDPOINT": f"http://127.0.0.1:{dead}/msi/token",
        "IDENTITY_HEADER": "review",
        "PULLWATCH_ARM_ENDPOINT": f"https://127.0.0.1:{dead}",
        "PULLWATCH_GRAPH_ENDPOINT": f"https://127.0.0.1:{dead}",
        "PULLWATCH_HTTP_TIMEOUT_SECONDS": "2",
        "PULLWATCH_RETRIES": "0",
    }.items():
        monkeypatch.setenv(name, value)
    module = load_function_app()
    functions = {f.get_function_name(): f.get_user_function() for f in module.app.get_functions()}
    yield lambda body: functions["on_demand_check"](func.HttpRequest("POST", "/api/check", body=body))
    module.process_app.close()


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,  # nesting deeper than the JSON parser's recursion limit
        b'{"clusters": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
    ids=["deep-array", "deep-clusters"],
)
def test_deeply_nested_json_is_a_400_not_an_exception(check: Callable[[bytes], Any], body: bytes) -> None:
    response = check(body)
    assert response.status_code == 400
    assert "JSON" in json.loads(response.get_body())["error"]


def test_a_good_body_is_still_accepted(check: Callable[[bytes], Any]) -> None:
    response = check(json.dumps({"clusters": [CLUSTER]}).encode())
    assert response.status_code == 200  # Azure unreachable: CHECK_INCOMPLETE, but the body was fine
