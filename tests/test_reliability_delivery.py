"""Delivery under concurrency and hostile webhooks: four audit workers at once (host.json's queue
batch size) over one real Azurite outbox, a real loopback webhook answering in 300 ms."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from shared.compare import compare
from shared.config import Settings
from shared.findings import Finding
from shared.notify import Notifier
from shared.render import ClusterMeta
from shared.state import StateStore

pytestmark = [pytest.mark.sandbox, pytest.mark.reliability]

ROOT = Path(__file__).resolve().parent.parent
TENANT = "11111111-1111-1111-1111-111111111111"
SLACK = "slack:PULLWATCH_SLACK_WEBHOOK_URL"
WORKERS = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]["batchSize"]


def cluster(name: str) -> str:
    return f"/subscriptions/22222222-2222-2222-2222-222222222222/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/{name}"


class SlowWebhook:
    """A Slack-like webhook on loopback that answers ``200 ok`` after ``delay`` seconds and counts
    the posts of each distinct payload text (one text per digest)."""

    def __init__(self, delay: float = 0.3, answers: list[tuple[int, dict[str, str], bytes]] | None = None):
        self.delay = delay
        self.answers = list(answers or [])
        self.posts: Counter[str] = Counter()
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(hook.delay)
                with hook.lock:
                    hook.posts[str(json.loads(body).get("text"))] += 1
                    status, headers, answer = hook.answers.pop(0) if hook.answers else (200, {}, b"ok")
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/{uuid.uuid4().hex}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[SlowWebhook]:
    hook = SlowWebhook()
    try:
        yield hook
    finally:
        hook.stop()


def settings(azurite: Any, url: str, table: str, **env: str) -> Settings:
    return Settings.from_env(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "PULLWATCH_STATE_TABLE": table,
            "PULLWATCH_SLACK_WEBHOOK_URL": url,
            "PULLWATCH_TEAMS_WEBHOOK_URL": "",
            "PULLWATCH_HTTP_TIMEOUT_SECONDS": "5",
            "PULLWATCH_RETRY_BASE_SECONDS": "0.1",
            "AZURE_TENANT_ID": TENANT,
            **env,
        }
    )


def broken(target: str) -> list[Finding]:
    return [
        Finding(
            code="ROLE_MISSING",
            cluster=target,
            registry="contosoacr.azurecr.io",
            message="The kubelet identity has no role that allows pulls from contosoacr.",
        )
    ]


def test_four_concurrent_workers_post_every_digest_exactly_once(azurite: Any, webhook: SlowWebhook) -> None:
    """A digest left in the outbox by an earlier run and each worker's fresh digest: one post each."""
    table = f"t{uuid.uuid4().hex[:20]}"
    config = settings(azurite, webhook.url, table)
    StateStore.from_settings(config).enqueue(SLACK, {"text": "left over from an earlier run"})
    barrier = threading.Barrier(WORKERS)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        store = StateStore.from_settings(config)  # each worker its own process-like seams
        notifier = Notifier(config, store)
        target = cluster(f"aks-{index}")
        try:
            barrier.wait()
            changes = {target: compare([], broken(target))}
            notifier.deliver(changes, {target: ClusterMeta.from_id(target, tenant=TENANT)}, reminder=False)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            notifier.close()
            store.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert webhook.posts["left over from an earlier run"] == 1
    fresh = {text: n for text, n in webhook.posts.items() if text.startswith("aks-") or "aks-" in text}
    assert len(fresh) == WORKERS, webhook.posts
    assert set(fresh.values()) == {1}, webhook.posts
    store = StateStore.from_settings(config)
    assert store.outbox() == []
    assert len(store.sent_messages()) == WORKERS + 1


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_a_retry_after_beyond_the_delivery_budget_keeps_the_message_for_the_next_run(
    azurite: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Slack and Teams both answer 429 ``Retry-After: 3600``: no waiting inside this invocation
    (functionTimeout in host.json); both digests stay in the outbox, and the log says why."""
    limited = [(429, {"Retry-After": "3600"}, b"rate_limited")] * 8
    slack, teams = SlowWebhook(0, list(limited)), SlowWebhook(0, list(limited))
    try:
        config = settings(
            azurite,
            slack.url,
            f"t{uuid.uuid4().hex[:20]}",
            PULLWATCH_TEAMS_WEBHOOK_URL=teams.url.replace("/services/T0/B0/", "/workflows/"),
        )
        store = StateStore.from_settings(config)
        sleeps = Sleeps()
        notifier = Notifier(config, store, sleep=sleeps)
        target = cluster("aks-prod")
        with caplog.at_level(logging.INFO, "pullwatch"):
            report = notifier.deliver(
                {target: compare([], broken(target))},
                {target: ClusterMeta.from_id(target, tenant=TENANT)},
                reminder=False,
            )
    finally:
        slack.stop()
        teams.stop()
    assert sleeps == [], "nothing sleeps past the run's delivery budget"
    assert [(r.outcome, r.attempts, r.status) for r in report.results] == [("queued", 1, 429)] * 2
    assert len(store.outbox()) == 2
    lines = [r.getMessage() for r in caplog.records if "budget" in r.getMessage()]
    assert len(lines) == 2 and all("3600" in line and "outbox" in line for line in lines), lines
    for line in lines:
        assert "127.0.0.1" not in line and "/services/" not in line and "/workflows/" not in line


def test_a_spent_budget_posts_nothing_more_in_this_run(azurite: Any) -> None:
    hook = SlowWebhook(0.5)
    try:
        config = settings(azurite, hook.url, f"t{uuid.uuid4().hex[:20]}")
        store = StateStore.from_settings(config)
        for i in range(3):
            store.enqueue(SLACK, {"text": f"left over {i}"})
        notifier = Notifier(config, store, budget=0.6)
        report = notifier.deliver({}, {}, reminder=False)
    finally:
        hook.stop()
    outcomes = [r.outcome for r in report.results]
    assert outcomes[0] == "sent" and outcomes[-1] == "queued" and len(outcomes) == 3, outcomes
    assert sum(hook.posts.values()) == outcomes.count("sent")
    assert len(store.outbox()) == outcomes.count("queued")


@pytest.mark.parametrize(
    "kind, answers, outcome",
    [
        # Workflows answer 202 and report a card error in the body: not posted, not worth repeating
        (
            "teams",
            [
                (
                    202,
                    {},
                    b'{"error":"The payload is too large. Please make sure the size is less than 28KB."}',
                )
            ],
            "failed",
        ),
        ("teams", [(200, {}, b'{"error": {"code": "InvalidTemplate", "message": "bad"}}')], "failed"),
        # legacy connectors answered 200 with the throttling text instead of a 429: retried
        ("teams", [(200, {}, b"Microsoft Teams endpoint returned HTTP error 429")] * 9, "queued"),
        ("teams", [(200, {}, b"1")], "sent"),
        ("teams", [(202, {}, b"")], "sent"),
        ("slack", [(200, {}, b"invalid_payload")], "failed"),
        ("slack", [(200, {}, b"no_text")], "failed"),
        ("slack", [(200, {}, b"rollup_error")] * 9, "queued"),
    ],
    ids=[
        "teams-too-large",
        "teams-error-object",
        "teams-429-text",
        "teams-1",
        "teams-202",
        "slack-invalid-payload",
        "slack-no-text",
        "slack-rollup-error",
    ],
)
def test_a_2xx_with_an_error_body_is_not_counted_as_sent(
    azurite: Any, kind: str, answers: list[tuple[int, dict[str, str], bytes]], outcome: str
) -> None:
    hook = SlowWebhook(0, answers)
    try:
        url = hook.url if kind == "slack" else hook.url.replace("/services/T0/B0/", "/workflows/")
        config = settings(
            azurite,
            url if kind == "slack" else "",
            f"t{uuid.uuid4().hex[:20]}",
            PULLWATCH_TEAMS_WEBHOOK_URL=url if kind == "teams" else "",
            PULLWATCH_RETRIES="1",
        )
        store = StateStore.from_settings(config)
        notifier = Notifier(config, store, sleep=Sleeps())
        target = cluster("aks-prod")
        report = notifier.deliver(
            {target: compare([], broken(target))},
            {target: ClusterMeta.from_id(target, tenant=TENANT)},
            reminder=False,
        )
    finally:
        hook.stop()
    assert [r.outcome for r in report.results] == [outcome], report.to_dict()
    assert len(store.outbox()) == (1 if outcome == "queued" else 0)
