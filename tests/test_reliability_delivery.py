"""Delivery under concurrency and hostile webhooks: four audit workers at once (host.json's queue
batch size) over one real Azurite outbox, a real loopback webhook answering in 300 ms."""

from __future__ import annotations

import json
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
