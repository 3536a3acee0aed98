"""StateStore against a real Azurite: open findings, reminders, outbox, sent records, event ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.data.tables import TableClient

from shared.config import Settings
from shared.errors import UpstreamError
from shared.findings import Finding
from shared.state import StateStore, safe_key, target_partition

pytestmark = pytest.mark.sandbox

AKS = "/subscriptions/s1/resourceGroups/rg-prod/providers/Microsoft.ContainerService/managedClusters/aks-prod"
DEV = (
    "/subscriptions/s1/resourceGroups/rg(dev)#1/providers/Microsoft.ContainerService/managedClusters/aks-dev?"
)
T0 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)


def finding(code: str = "ROLE_MISSING", cluster: str = AKS, **kw: Any) -> Finding:
    return Finding(
        code=code,
        cluster=cluster,
        message=kw.pop("message", f"{code} on {cluster}"),
        registry=kw.pop("registry", "contosoacr.azurecr.io"),
        **kw,
    )


@pytest.fixture
def store(azurite: Any) -> StateStore:
    return StateStore(azurite.connection_string, table_name=f"t{uuid.uuid4().hex[:20]}")


def test_safe_keys() -> None:
    assert "/" not in target_partition(AKS) and "#" not in safe_key(DEV) and "?" not in safe_key(DEV)
    assert safe_key("a/b") != safe_key("a%2Fb")  # injective


def test_open_findings_round_trip_per_target(store: StateStore) -> None:
    role = finding(evidence={"principal_id": "p", "assignments_checked": 3}, remediation="az role ...")
    image = finding(
        "IMAGE_NOT_FOUND", image="contosoacr.azurecr.io/web:9", namespace="shop", workload="Deployment/web"
    )
    other = finding(cluster=DEV)
    store.save_open(AKS, [role, image], now=T0)
    store.save_open(DEV, [other], now=T0)
    assert sorted(f.key_text for f in store.open_findings(AKS)) == sorted([role.key_text, image.key_text])
    assert [f.to_dict() for f in store.open_findings(DEV)] == [other.to_dict()]
    assert store.open_findings(AKS.upper()) != []  # resource IDs compare case-insensitively
    # resolved ones are deleted, first-seen is kept for those still open
    store.save_open(AKS, [image.with_(message="fresher")], now=T0 + timedelta(hours=5))
    (entry,) = store.open_entries(AKS)
    assert entry.finding.message == "fresher"
    assert entry.first_seen == T0 and entry.last_reminded is None
    store.save_open(AKS, [])
    assert store.open_findings(AKS) == []
    assert len(store.open_findings(DEV)) == 1


def test_large_evidence_is_split_over_properties(store: StateStore) -> None:
    big = finding(evidence={"repositories": [f"repo-{i:05d}-" + "x" * 40 for i in range(2000)]})
    store.save_open(AKS, [big])
    (back,) = store.open_findings(AKS)
    assert back.to_dict() == big.to_dict()


def test_reminders_are_due_every_n_hours(store: StateStore) -> None:
    old, recent = finding(), finding("IMAGE_NOT_FOUND", image="x/y:1")
    store.save_open(AKS, [old], now=T0)
    store.save_open(AKS, [old, recent], now=T0 + timedelta(hours=20))
    now = T0 + timedelta(hours=25)
    assert [f.code for f in store.due_reminders(AKS, [old, recent], 24, now=now)] == ["ROLE_MISSING"]
    store.mark_reminded(AKS, [old], now=now)
    later = now + timedelta(hours=23)
    assert [f.code for f in store.due_reminders(AKS, [old, recent], 24, now=later)] == ["IMAGE_NOT_FOUND"]
    assert {f.code for f in store.due_reminders(AKS, [old, recent], 24, now=later + timedelta(hours=2))} == {
        "ROLE_MISSING",
        "IMAGE_NOT_FOUND",
    }


def test_outbox_keeps_order_and_large_payloads(store: StateStore) -> None:
    payload = {
        "text": "é" * 70_000,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}],
    }
    first = store.enqueue("slack:PULLWATCH_SLACK_WEBHOOK_URL", payload, now=T0)
    second = store.enqueue(
        "teams:PULLWATCH_TEAMS_WEBHOOK_URL", {"type": "message"}, now=T0 + timedelta(seconds=1)
    )
    queued = store.outbox()
    assert [m.message_id for m in queued] == [first.message_id, second.message_id]
    assert queued[0].payload == payload and queued[0].kind == "slack"
    assert queued[0].setting == "PULLWATCH_SLACK_WEBHOOK_URL" and queued[0].created == T0
    retried = store.note_attempt(queued[0], "HTTP 503")
    assert store.outbox()[0].attempts == 1 == retried.attempts and store.outbox()[0].last_error == "HTTP 503"
    store.record_sent(retried, status=200)
    store.record_failed(second, status=410, error="channel_is_archived")
    assert store.outbox() == []
    records = store.sent_messages()
    assert [(r["channel"], r["status"], r["http_status"]) for r in records] == [
        ("slack:PULLWATCH_SLACK_WEBHOOK_URL", "sent", 200),
        ("teams:PULLWATCH_TEAMS_WEBHOOK_URL", "failed", 410),
    ]
    assert records[0]["attempts"] == 2 and records[1]["error"] == "channel_is_archived"


def test_seen_event_records_and_tests(store: StateStore) -> None:
    assert store.seen_event("evt-1", 3600, now=T0) is False
    assert store.seen_event("evt-1", 3600, now=T0 + timedelta(minutes=10)) is True
    assert store.seen_event("evt-2", timedelta(hours=1), now=T0) is False
    assert store.seen_event("evt-1", 3600, now=T0 + timedelta(hours=2)) is False  # expired: new again
    assert store.seen_event("evt-1", 3600, now=T0 + timedelta(hours=2, minutes=1)) is True


def test_from_settings_uses_the_connection_string(azurite: Any) -> None:
    table = f"t{uuid.uuid4().hex[:20]}"
    settings = Settings.from_env(
        {"AzureWebJobsStorage": azurite.connection_string, "PULLWATCH_STATE_TABLE": table}
    )
    store = StateStore.from_settings(settings)
    store.save_open(AKS, [finding()])
    direct = StateStore(TableClient.from_connection_string(azurite.connection_string, table_name=table))
    assert len(direct.open_findings(AKS)) == 1


class _NoToken:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise AssertionError("no token is needed to build the client")


def test_from_settings_is_identity_based_with_an_account_name() -> None:
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage__accountName": "pullwatchst",
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        }
    )
    store = StateStore.from_settings(settings, credential=_NoToken())
    assert store._table.url.startswith("https://pullwatchst.table.core.windows.net")
    with pytest.raises(ValueError, match="credential"):
        StateStore.from_settings(settings)


def test_unconfigured_or_unreachable_storage_is_a_clear_error() -> None:
    with pytest.raises(UpstreamError, match="AzureWebJobsStorage"):
        StateStore.from_settings(Settings.from_env({}))
    dead = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )
    store = StateStore(
        TableClient.from_connection_string(dead, table_name="x", retry_total=0, connection_timeout=2)
    )
    with pytest.raises(UpstreamError, match="state storage") as caught:
        store.open_findings(AKS)
    assert "a2V5" not in str(caught.value)
