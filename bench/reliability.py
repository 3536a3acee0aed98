"""Reliability rows: a 5,000-event Event Grid delivery, and four audit workers delivering at once.

- ``event_storm_5000``: 5,000 role-assignment deletes under one watched registry, delivered as one
  Event Grid delivery through the Functions host stand-in (one ``event_handler`` invocation per
  event) on a real Azurite, then redelivered whole. Target: 0 failed invocations both times, one
  debounced audit, 0 new audits from the redelivery.
- ``concurrent_delivery_4``: four workers (host.json's queue batch size) deliver at once over one
  outbox — one digest left by an earlier run plus one fresh digest each — to a loopback webhook
  answering in 300 ms. Target: every digest posted exactly once.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "tests"))

from estate import CLUSTER, KNOWN_CLUSTER, SUB, role_assignment_deleted  # noqa: E402

from bench.__main__ import Row  # noqa: E402

TENANT = "11111111-1111-1111-1111-111111111111"


def event_storm_5000(events: int = 5000) -> Row:
    from sandbox.azurite import Azurite
    from sandbox.host import FunctionsHost, isolated_app_settings

    delivery = [role_assignment_deleted() for _ in range(events)]
    with Azurite() as azurite:
        settings = isolated_app_settings(
            azurite.connection_string, SUB, PULLWATCH_DEBOUNCE_SECONDS="3600", IDENTITY_HEADER="bench"
        )
        with mock.patch.dict(os.environ, settings):
            host = FunctionsHost(azurite.connection_string, settings["PULLWATCH_AUDIT_QUEUE"])
            app = host.module.process_app.get()
            try:
                app.inventory.save(KNOWN_CLUSTER)
                start = time.perf_counter()
                first = host.deliver_event_grid(delivery)
                first_s = time.perf_counter() - start
                audits = app.queue.depth()
                start = time.perf_counter()
                again = host.deliver_event_grid(delivery)
                again_s = time.perf_counter() - start
                new_audits = app.queue.depth() - audits
            finally:
                host.close()
                host.module.process_app.close()
    return Row(
        f"event storm: {events:,} events in one delivery (Azurite)",
        first_s,
        None,
        notes=[
            f"failed invocations {first['failed']} of {first['invoked'] + first['failed']} (target 0); "
            f"audits enqueued {audits} (target 1)",
            f"redelivery {again_s:.1f} s: failed {again['failed']} (target 0), new audits {new_audits} (target 0)",
        ],
        goals=[
            (
                "0 failed, 1 audit; redelivery 0 failed, 0 new audits",
                first["failed"] == 0 and audits == 1 and again["failed"] == 0 and new_audits == 0,
            )
        ],
    )


class _Webhook:
    """Slack-like: ``200 ok`` after ``delay`` s; counts posts per payload text (one per digest)."""

    def __init__(self, delay: float) -> None:
        self.posts: Counter[str] = Counter()
        lock, posts = threading.Lock(), self.posts

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(delay)
                with lock:
                    posts[str(json.loads(body).get("text"))] += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/{uuid.uuid4().hex}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def concurrent_delivery_4() -> Row:
    from sandbox.azurite import Azurite
    from shared.compare import compare
    from shared.config import Settings
    from shared.findings import Finding
    from shared.notify import Notifier
    from shared.render import ClusterMeta
    from shared.state import StateStore

    workers = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]["batchSize"]
    hook = _Webhook(0.3)
    try:
        with Azurite() as azurite:
            config = Settings.from_env(
                {
                    "AzureWebJobsStorage": azurite.connection_string,
                    "PULLWATCH_STATE_TABLE": f"t{uuid.uuid4().hex[:20]}",
                    "PULLWATCH_SLACK_WEBHOOK_URL": hook.url,
                    "PULLWATCH_TEAMS_WEBHOOK_URL": "",
                    "AZURE_TENANT_ID": TENANT,
                }
            )
            StateStore.from_settings(config).enqueue(
                "slack:PULLWATCH_SLACK_WEBHOOK_URL", {"text": "left over"}
            )
            barrier = threading.Barrier(workers)

            def worker(index: int) -> None:
                store = StateStore.from_settings(config)
                notifier = Notifier(config, store)
                target = CLUSTER.replace("aks-prod", f"aks-{index}")
                finding = Finding(
                    code="ROLE_MISSING", cluster=target, registry="contosoacr.azurecr.io", message="m"
                )
                barrier.wait()
                notifier.deliver(
                    {target: compare([], [finding])}, {target: ClusterMeta.from_id(target)}, reminder=False
                )
                notifier.close()
                store.close()

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            elapsed = time.perf_counter() - start
    finally:
        hook.stop()
    counts = sorted(hook.posts.values())
    return Row(
        f"{workers} concurrent workers, webhook 300 ms: posts per digest",
        elapsed,
        None,
        notes=[
            f"{len(counts)} digests (target {workers + 1}), posts per digest min {counts[0] if counts else 0} "
            f"max {counts[-1] if counts else 0} (target exactly 1)"
        ],
        goals=[
            (
                "every digest posted exactly once",
                len(counts) == workers + 1 and bool(counts) and counts[0] == counts[-1] == 1,
            )
        ],
    )


def reliability() -> list[Row]:
    """Both rows (``make bench``)."""
    return [event_storm_5000(), concurrent_delivery_4()]
