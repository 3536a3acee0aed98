"""shared/clients/retry.py: the one retry policy, against real HTTP servers on loopback."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import requests
import urllib3
from requests.adapters import HTTPAdapter

from sandbox.httpserver import Request, Response, Server
from shared.clients.retry import BoundedRetry, attempts

pytestmark = pytest.mark.reliability

Handler = Callable[[Request], Response]


class Recording:
    def __init__(self) -> None:
        self.seen: list[Request] = []
        self.answers: list[Response] = []
        self.server = Server(self.handle, name="retry-test")

    def handle(self, request: Request) -> Response:
        self.seen.append(request)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture
def servers() -> Iterator[tuple[Recording, Recording]]:
    a, b = Recording(), Recording()
    a.server.start()
    b.server.start()
    try:
        yield a, b
    finally:
        a.server.stop()
        b.server.stop()


def session(**kw: object) -> requests.Session:
    values: dict[str, object] = {"retries": 3, "backoff": 0.01, "max_retry_after": 5.0}
    values.update(kw)
    s = requests.Session()
    s.trust_env = False
    s.mount("http://", HTTPAdapter(max_retries=BoundedRetry.policy(**values)))  # type: ignore[arg-type]
    return s


def test_retry_after_beyond_the_cap_returns_the_answer_at_once(servers: tuple[Recording, Recording]) -> None:
    a, _ = servers
    a.answers = [Response(429, "slow down", {"Retry-After": "3600"})]
    started = time.monotonic()
    with session() as s:
        answer = s.get(f"{a.url}/x", timeout=5)
    assert answer.status_code == 429 and answer.text == "slow down"
    assert len(a.seen) == 1 and attempts(answer) == 1
    assert time.monotonic() - started < 1


def test_retry_after_within_the_cap_is_waited_for(servers: tuple[Recording, Recording]) -> None:
    a, _ = servers
    a.answers = [Response(503, "", {"Retry-After": "1"}), Response(200, "ok")]
    started = time.monotonic()
    with session() as s:
        answer = s.post(f"{a.url}/token", data={"grant_type": "x"}, timeout=5)  # POSTs are retried too
    assert answer.status_code == 200 and len(a.seen) == 2 and attempts(answer) == 2
    assert time.monotonic() - started >= 1.0
    assert a.seen[1].form() == {"grant_type": ["x"]}


def test_server_errors_are_retried_a_bounded_number_of_times(servers: tuple[Recording, Recording]) -> None:
    a, _ = servers
    a.answers = [Response(500, "boom")]
    with session(retries=2) as s:
        answer = s.get(f"{a.url}/x", timeout=5)
    assert answer.status_code == 500 and len(a.seen) == 3 and attempts(answer) == 3


def test_a_wait_past_the_deadline_is_not_taken(servers: tuple[Recording, Recording]) -> None:
    a, _ = servers
    a.answers = [Response(429, "", {"Retry-After": "2"})]
    started = time.monotonic()
    with session(remaining=lambda: 1.0) as s:
        answer = s.get(f"{a.url}/x", timeout=5)
    assert answer.status_code == 429 and len(a.seen) == 1
    assert time.monotonic() - started < 1


def test_backoff_doubles_from_the_first_retry() -> None:
    retry = BoundedRetry.policy(retries=3, backoff=0.5, max_retry_after=30)
    waits = []
    for _ in range(3):
        failed = urllib3.util.retry.RequestHistory("GET", "/x", None, 500, None)
        retry = retry.new(history=(*retry.history, failed))
        waits.append(retry.get_backoff_time())
    assert waits == [0.5, 1.0, 2.0]


def test_urllib3_redirects_drop_credentials_across_origins(servers: tuple[Recording, Recording]) -> None:
    a, b = servers
    a.answers = [Response(302, "", {"Location": "/same"}), Response(302, "", {"Location": f"{b.url}/other"})]
    b.answers = [Response(200, "there")]
    retry = BoundedRetry.policy(retries=1, backoff=0.01, max_retry_after=5, redirects=3)
    with urllib3.PoolManager(retries=retry) as http:
        answer = http.request("GET", f"{a.url}/start", headers={"Authorization": "Bearer secret-token"})
    assert answer.status == 200 and answer.data == b"there"
    assert [r.header("Authorization") for r in a.seen] == ["Bearer secret-token", "Bearer secret-token"]
    assert [r.header("Authorization") for r in b.seen] == [None]


def test_a_request_body_is_not_re_sent_to_another_origin(servers: tuple[Recording, Recording]) -> None:
    a, b = servers
    a.answers = [Response(307, "", {"Location": f"{b.url}/collect"})]
    b.answers = [Response(200, "got it")]
    retry = BoundedRetry.policy(retries=1, backoff=0.01, max_retry_after=5, redirects=3)
    with urllib3.PoolManager(retries=retry) as http:
        answer = http.request("POST", f"{a.url}/webhook", body=b'{"token": "secret"}')
    assert answer.status == 307 and b.seen == []
