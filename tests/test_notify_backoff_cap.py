"""Webhook retries are bounded in time, not only in number.

The Notifier backs off ``retry_base_seconds * 2**attempt`` between attempts, each wait capped like a
Retry-After (60 s), so PULLWATCH_RETRIES=8 cannot spend minutes on one channel inside one Functions
invocation. Real webhook sink over HTTP, real Azurite; the Notifier's ``sleep`` seam records the
waits instead of sleeping them."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from sandbox.sink import WebhookSink
from shared.compare import compare
from shared.config import Settings
from shared.findings import Finding
from shared.notify import MAX_RETRY_AFTER, Notifier
from shared.render import ClusterMeta
from shared.state import StateStore

pytestmark = pytest.mark.sandbox

PROD = "/subscriptions/22222222-2222-2222-2222-222222222222/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks-prod"


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_backoff_between_webhook_attempts_never_exceeds_the_retry_after_cap(azurite: Any) -> None:
    with WebhookSink({"slack": {"fail": [503] * 9}}) as sink:
        settings = Settings.from_env(
            {
                "AzureWebJobsStorage": azurite.connection_string,
                "PULLWATCH_STATE_TABLE": f"t{uuid.uuid4().hex[:20]}",
                "PULLWATCH_SLACK_WEBHOOK_URL": sink.url("slack"),
                "PULLWATCH_RETRIES": "8",
                "PULLWATCH_RETRY_BASE_SECONDS": "1",
                "PULLWATCH_HTTP_TIMEOUT_SECONDS": "5",
            }
        )
        store = StateStore.from_settings(settings)
        sleeps = Sleeps()
        notifier = Notifier(settings, store, sleep=sleeps)
        try:
            finding = Finding(
                code="ROLE_MISSING", cluster=PROD, registry="contosoacr.azurecr.io", message="m"
            )
            report = notifier.deliver(
                {PROD: compare([], [finding])}, {PROD: ClusterMeta.from_id(PROD)}, reminder=False
            )
        finally:
            notifier.close()
            store.close()
        assert [(r.outcome, r.attempts) for r in report.results] == [("queued", 9)]
        assert len(sleeps) == 8 and sleeps[:3] == [1.0, 2.0, 4.0]  # still an exponential backoff
        assert max(sleeps) <= MAX_RETRY_AFTER, sleeps
