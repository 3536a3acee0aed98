"""Delivery end to end: real Azurite for state and outbox, the real webhook sink, real HTTP."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sandbox.sink import WebhookSink
from shared.compare import compare
from shared.config import Settings
from shared.findings import Finding
from shared.notify import DeliveryReport, Notifier, install_log_redaction, judge
from shared.render import ClusterMeta
from shared.state import OutboxMessage, StateStore

pytestmark = pytest.mark.sandbox

PROD = "/subscriptions/22222222-2222-2222-2222-222222222222/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks-prod"
DEV = "/subscriptions/22222222-2222-2222-2222-222222222222/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks-dev"
CANARY = "canary-pull-secret-Zq81x"
TENANT = "11111111-1111-1111-1111-111111111111"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.Y2FuYXJ5LXNpZ25hdHVyZQ"


def broken(cluster: str = PROD) -> list[Finding]:
    return [
        Finding(
            code="ROLE_MISSING",
            cluster=cluster,
            registry="contosoacr.azurecr.io",
            message="The kubelet identity has no role that allows pulls from contosoacr.",
            remediation="az role assignment create --role AcrPull --assignee-object-id 0000 --scope /x",
        ),
        Finding(
            code="PODS_IMAGE_PULL_FAILING",
            cluster=cluster,
            registry="contosoacr.azurecr.io",
            image="contosoacr.azurecr.io/web:1.4.2",
            namespace="shop",
            workload="Deployment/web",
            cause="auth_unauthorized",
            evidence={"pods": 3},
            message=f"3 pods cannot pull (a check echoed password={CANARY} and token {JWT})",
        ),
    ]


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class World:
    """One test's parts: a sink, a state table, settings pointing at both, and a run() helper."""

    def __init__(self, azurite: Any, sink: WebhookSink, routes: list[Any] | None = None, **env: str) -> None:
        self.sink = sink
        self.env = {
            "AzureWebJobsStorage": azurite.connection_string,
            "PULLWATCH_STATE_TABLE": f"t{uuid.uuid4().hex[:20]}",
            "PULLWATCH_SLACK_WEBHOOK_URL": sink.url("slack"),
            "PULLWATCH_TEAMS_WEBHOOK_URL": sink.url("teams"),
            "PULLWATCH_ROUTES": json.dumps(routes or []),
            "PULLWATCH_HTTP_TIMEOUT_SECONDS": "5",
            "PULLWATCH_RETRY_BASE_SECONDS": "0.5",
            "AZURE_TENANT_ID": TENANT,
            **env,
        }
        self.settings = Settings.from_env(self.env)
        self.store = StateStore.from_settings(self.settings)
        self.sleeps = Sleeps()
        install_log_redaction()  # as the composition root does (function_app.py, the CLI)
        self.notifier = Notifier(self.settings, self.store, sleep=self.sleeps)

    def run(
        self,
        findings_by_target: dict[str, list[Finding]],
        *,
        reminder: bool = False,
        tags: dict[str, dict[str, str]] | None = None,
    ) -> DeliveryReport:
        """What the audit worker does: compare, then deliver (which also saves the open findings)."""
        changes = {t: compare(self.store.open_findings(t), fs) for t, fs in findings_by_target.items()}
        meta = {
            t: ClusterMeta.from_id(t, tenant=TENANT, tags=(tags or {}).get(t)) for t in findings_by_target
        }
        return self.notifier.deliver(changes, meta, reminder=reminder)

    def accepted(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [
            r for r in self.sink.records if r["status"] in (200, 202) and (kind is None or r["sink"] == kind)
        ]


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    server = WebhookSink({})
    try:
        yield server
    finally:
        server.stop()


def slack_text(record: dict[str, Any]) -> str:
    return json.dumps(record["payload"])


def test_break_reaudit_fix(azurite: Any, sink: WebhookSink) -> None:
    world = World(azurite, sink)
    report = world.run({PROD: broken()})
    assert sorted(r.channel for r in report.sent) == [
        "slack:PULLWATCH_SLACK_WEBHOOK_URL",
        "teams:PULLWATCH_TEAMS_WEBHOOK_URL",
    ]
    assert [r["sink"] for r in sink.records] == ["slack", "teams"]  # one message per channel
    assert "2 new" in sink.records[0]["payload"]["text"]
    assert "ROLE_MISSING" in slack_text(sink.records[0])

    report = world.run({PROD: broken()})  # re-audit: nothing changed
    assert report.results == [] and len(sink.records) == 2

    report = world.run({PROD: []})  # fixed
    assert [r.outcome for r in report.results] == ["sent", "sent"]
    resolved = sink.records[2:]
    assert [r["sink"] for r in resolved] == ["slack", "teams"]
    assert "2 resolved" in resolved[0]["payload"]["text"] and "new" not in resolved[0]["payload"]["text"]
    assert world.store.outbox() == []
    assert [m["status"] for m in world.store.sent_messages()] == ["sent"] * 4


def test_rate_limits_and_server_errors_are_retried_then_delivered_once(azurite: Any) -> None:
    with WebhookSink({"slack": {"fail": [429, 429, 500]}}) as sink:
        world = World(azurite, sink, PULLWATCH_TEAMS_WEBHOOK_URL="")
        report = world.run({PROD: broken()})
        assert [(r.outcome, r.attempts) for r in report.results] == [("sent", 4)]
        assert [r["status"] for r in sink.records] == [429, 429, 500, 200]
        assert world.sleeps == [1.0, 1.0, 2.0]  # Retry-After honoured, then exponential backoff
        assert len(world.accepted()) == 1 and world.store.outbox() == []


def test_retry_after_is_bounded() -> None:
    answer = judge("slack", 429, "", "86400")
    assert answer.retry and answer.retry_after == 86400.0
    # the notifier caps it (MAX_RETRY_AFTER); the run does not sleep for a day
    from shared.notify import MAX_RETRY_AFTER

    assert MAX_RETRY_AFTER <= 60


def test_sink_down_for_a_whole_run_is_delivered_by_the_next_run(azurite: Any) -> None:
    with WebhookSink({"slack": {"down": True}}) as sink:
        world = World(azurite, sink)
        report = world.run({PROD: broken()})
        outcomes = {r.channel: r.outcome for r in report.results}
        assert outcomes == {
            "slack:PULLWATCH_SLACK_WEBHOOK_URL": "queued",
            "teams:PULLWATCH_TEAMS_WEBHOOK_URL": "sent",
        }
        queued = report.queued[0]
        assert queued.error == "connection reset" and queued.attempts == 4
        assert sink.refused["slack"] == 4
        assert [m.channel for m in world.store.outbox()] == ["slack:PULLWATCH_SLACK_WEBHOOK_URL"]

        sink.set_down("slack", False)
        report = world.run({PROD: broken()})  # nothing new, but the outbox is flushed
        assert [(r.channel, r.outcome, r.from_outbox) for r in report.results] == [
            ("slack:PULLWATCH_SLACK_WEBHOOK_URL", "sent", True)
        ]
        assert [r["sink"] for r in world.accepted()] == ["teams", "slack"]
        assert "2 new" in world.accepted("slack")[0]["payload"]["text"]
        assert world.store.outbox() == []
        assert world.run({PROD: broken()}).results == []  # and never again


def test_queued_message_goes_before_the_next_one_and_a_down_channel_is_not_hammered(azurite: Any) -> None:
    with WebhookSink({"slack": {"down": True}}) as sink:
        world = World(azurite, sink, PULLWATCH_TEAMS_WEBHOOK_URL="")
        world.run({PROD: broken()})
        report = world.run({PROD: broken(), DEV: broken(DEV)})  # still down: both kept, no second retry loop
        assert [(r.outcome, r.attempts) for r in report.results] == [("queued", 4), ("queued", 0)]
        assert sink.refused["slack"] == 8
        sink.set_down("slack", False)
        world.run({PROD: broken(), DEV: broken(DEV)})
        texts = [r["payload"]["text"] for r in world.accepted("slack")]
        assert len(texts) == 2 and "aks-prod" in texts[0] and "aks-dev" in texts[1]  # in order


def test_archived_channel_is_reported_not_retried(azurite: Any, caplog: pytest.LogCaptureFixture) -> None:
    with WebhookSink({"slack": {"fail": ["channel_is_archived"]}}) as sink:
        world = World(azurite, sink, PULLWATCH_TEAMS_WEBHOOK_URL="")
        with caplog.at_level(logging.INFO):
            report = world.run({PROD: broken()})
        (failed,) = report.failed
        assert (failed.status, failed.error, failed.attempts) == (410, "channel_is_archived", 1)
        assert report.to_dict()["failed"] == 1
        assert any(
            "channel_is_archived" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records
        )
        assert world.store.outbox() == []
        assert world.run({PROD: broken()}).results == []
        assert len(sink.records) == 1


def test_payload_the_service_rejects_is_a_permanent_failure(azurite: Any) -> None:
    with WebhookSink({"teams": {"fail": ["InvalidRequestContent"]}}) as sink:
        world = World(azurite, sink, PULLWATCH_SLACK_WEBHOOK_URL="")
        (failed,) = world.run({PROD: broken()}).failed
        assert failed.status == 400 and "InvalidRequestContent" in (failed.error or "")


def test_crash_between_send_and_record_repeats_never_drops(azurite: Any, sink: WebhookSink) -> None:
    class CrashingStore(StateStore):
        crash = True

        def record_sent(self, message: OutboxMessage, *, status: int, now: Any = None) -> None:
            if self.crash:
                self.crash = False
                raise RuntimeError("process killed")
            super().record_sent(message, status=status, now=now)

    world = World(azurite, sink, PULLWATCH_TEAMS_WEBHOOK_URL="")
    world.store = CrashingStore.from_settings(world.settings)
    world.notifier = Notifier(world.settings, world.store, sleep=world.sleeps)
    with pytest.raises(RuntimeError):
        world.run({PROD: broken()})  # the webhook took it, the record did not happen
    assert len(world.accepted()) == 1 and len(world.store.outbox()) == 1
    world.run({PROD: broken()})
    assert len(world.accepted()) == 1, "the dead worker's claim still holds: nobody else posts it"
    later = datetime.now(UTC) + timedelta(seconds=world.notifier.claim_seconds + 1)
    world.notifier = Notifier(world.settings, world.store, sleep=world.sleeps, clock=lambda: later)
    world.run({PROD: broken()})
    assert len(world.accepted()) == 2  # its claim ran out: repeated once, not lost
    assert world.store.outbox() == []


def test_routes_send_each_cluster_to_its_channels(azurite: Any) -> None:
    with WebhookSink({}) as sink, WebhookSink({}) as payments:
        routes = [{"match": {"tag": "team=payments"}, "slack": "PAYMENTS_SLACK", "min_severity": "error"}]
        world = World(azurite, sink, routes, PAYMENTS_SLACK=payments.url("slack"))
        warning = Finding(
            code="DOCKERHUB_ANONYMOUS_PULLS",
            cluster=PROD,
            registry="docker.io",
            image="docker.io/library/nginx:1",
            namespace="edge",
            workload="Deployment/proxy",
            message="anonymous pulls",
        )
        report = world.run({PROD: [*broken(), warning], DEV: broken(DEV)}, tags={PROD: {"team": "payments"}})
        assert sorted(r.channel for r in report.sent) == [
            "slack:PAYMENTS_SLACK",
            "slack:PULLWATCH_SLACK_WEBHOOK_URL",
            "teams:PULLWATCH_TEAMS_WEBHOOK_URL",
        ]
        (to_payments,) = payments.records
        assert (
            "aks-prod" in to_payments["payload"]["text"] and "aks-dev" not in to_payments["payload"]["text"]
        )
        assert "DOCKERHUB_ANONYMOUS_PULLS" not in json.dumps(to_payments["payload"])  # below its min severity
        default = [r for r in sink.records if r["sink"] == "slack"]
        assert len(default) == 1 and "aks-dev" in default[0]["payload"]["text"]
        assert "aks-prod" not in default[0]["payload"]["text"]


def test_reminder_repeats_still_open_at_most_every_n_hours(azurite: Any, sink: WebhookSink) -> None:
    world = World(azurite, sink, PULLWATCH_TEAMS_WEBHOOK_URL="", PULLWATCH_REMINDER_HOURS="0")
    world.run({PROD: broken()})
    report = world.run({PROD: broken()}, reminder=True)
    assert len(report.sent) == 1
    assert "2 still open" in sink.records[-1]["payload"]["text"]
    hourly = World(azurite, sink, PULLWATCH_TEAMS_WEBHOOK_URL="", PULLWATCH_REMINDER_HOURS="24")
    hourly.run({PROD: broken()})
    assert hourly.run({PROD: broken()}, reminder=True).results == []  # first seen just now: not due


def test_no_secret_in_payloads_logs_or_reports(azurite: Any, caplog: pytest.LogCaptureFixture) -> None:
    with WebhookSink({"slack": {"fail": [429, 503, "channel_not_found"]}, "teams": {"down": True}}) as sink:
        world = World(
            azurite,
            sink,
            [{"slack": "CANARY_SLACK"}, {"teams": "PULLWATCH_TEAMS_WEBHOOK_URL"}],
            CANARY_SLACK=sink.url("slack"),
        )
        caplog.set_level(logging.DEBUG)
        report = world.run({PROD: broken()})
        sink.set_down("teams", False)
        report2 = world.run({PROD: []})
    secrets = [
        sink.url("slack"),
        sink.url("teams"),
        sink.url("slack").rsplit("/", 1)[1],
        sink.url("teams").split("sig=")[1],
        sink.url("teams").split("/workflows/")[1].split("?")[0],
        CANARY,
        JWT,
    ]
    haystacks = {
        "payloads": json.dumps([r["payload"] for r in sink.records]),
        "logs": "\n".join(r.getMessage() for r in caplog.records),
        "reports": json.dumps([report.to_dict(), report2.to_dict()]),
        "outbox": json.dumps([m.payload for m in world.store.outbox()]),
    }
    assert haystacks["payloads"] != "[]" and "notify:" in haystacks["logs"]
    for where, text in haystacks.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {where}"
