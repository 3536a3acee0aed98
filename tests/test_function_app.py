"""The Functions entry points, invoked through their registered functions (``get_user_function()``)
with real ``azure.functions`` objects and Azurite for queues and tables."""

from __future__ import annotations

import copy
import json
import logging
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient

from sandbox.azurite import Azurite
from sandbox.host import load_function_app
from shared.app import App, app_for_process
from shared.config import SETTINGS
from shared.plan import KnownCluster

ROOT = Path(__file__).resolve().parent.parent
WIRE = ROOT / "tests" / "data" / "wire" / "eventgrid"
SUB = "22222222-2222-2222-2222-222222222222"
REGISTRY = f"/subscriptions/{SUB}/resourceGroups/rg-shared/providers/Microsoft.ContainerRegistry/registries/contosoacr"
CLUSTER = f"/subscriptions/{SUB}/resourceGroups/rg-prod/providers/Microsoft.ContainerService/managedClusters/aks-prod"

pytestmark = pytest.mark.sandbox


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def functions(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Callable[..., Any]]]:
    suffix = uuid.uuid4().hex[:10]
    dead = _closed_port()
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "PULLWATCH_AUDIT_QUEUE": f"audit-{suffix}",
        "PULLWATCH_STATE_TABLE": f"state{suffix}",
        "PULLWATCH_DEBOUNCE_SECONDS": "30",
        "PULLWATCH_SUBSCRIPTIONS": SUB,
        # Nothing in these tests may leave this machine: Azure endpoints point at a closed local port.
        "IDENTITY_ENDPOINT": f"http://127.0.0.1:{dead}/msi/token",
        "IDENTITY_HEADER": "test",
        "PULLWATCH_ARM_ENDPOINT": f"https://127.0.0.1:{dead}",
        "PULLWATCH_GRAPH_ENDPOINT": f"https://127.0.0.1:{dead}",
        "PULLWATCH_HTTP_TIMEOUT_SECONDS": "2",
        "PULLWATCH_RETRIES": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app_for_process(reset=True)
    module = load_function_app()
    yield {f.get_function_name(): f.get_user_function() for f in module.app.get_functions()}
    app_for_process(reset=True)


def _app() -> App:
    return app_for_process()


def _queue(azurite: Azurite) -> QueueClient:
    return QueueClient.from_connection_string(azurite.connection_string, _app().settings.audit_queue)


def _role_delete(event_id: str) -> dict[str, Any]:
    sample = json.loads(
        (WIRE / "resources.write-delete-action.eventgrid-schema.resourcegroup-topic.docs.json").read_text()
    )[1]
    uri = f"{REGISTRY}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
    sample = copy.deepcopy(sample)
    sample.update(id=event_id, subject=uri, topic=f"/subscriptions/{SUB}")
    sample["data"].update(resourceUri=uri, operationName="Microsoft.Authorization/roleAssignments/delete")
    return sample


def _grid_event(item: dict[str, Any]) -> func.EventGridEvent:
    return func.EventGridEvent(
        id=item["id"],
        data=item["data"],
        topic=item["topic"],
        subject=item["subject"],
        event_type=item["eventType"],
        event_time=None,
        data_version="2",
    )


def test_every_function_is_registered_with_its_trigger(functions: dict[str, Callable[..., Any]]) -> None:
    module = load_function_app()
    triggers = {f.get_function_name(): f.get_trigger().get_binding_name() for f in module.app.get_functions()}
    assert triggers == {
        "event_handler": "eventGridTrigger",
        "nightly_audit": "timerTrigger",
        "audit_worker": "queueTrigger",
        "on_demand_check": "httpTrigger",
    }
    # Settings the bindings name exist in the settings catalogue.
    names = {s.name for s in SETTINGS}
    assert {"PULLWATCH_AUDIT_SCHEDULE", "PULLWATCH_AUDIT_QUEUE", "AzureWebJobsStorage"} <= names


@pytest.mark.parametrize(
    "body, problem",
    [
        (b"not json", "not JSON"),
        (b"[]", "JSON object"),
        (b"{}", "'clusters'"),
        (b'{"clusters": ["aks-prod"]}', "not managedCluster"),
        (json.dumps({"clusters": [CLUSTER], "probe": "yes"}).encode(), "true or false"),
        (json.dumps({"clusters": [CLUSTER], "colour": 1}).encode(), "unknown field"),
    ],
)
def test_check_endpoint_answers_400_naming_what_is_wrong(
    functions: dict[str, Callable[..., Any]], body: bytes, problem: str
) -> None:
    response = functions["on_demand_check"](func.HttpRequest("POST", "/api/check", body=body))
    assert response.status_code == 400
    assert problem in json.loads(response.get_body())["error"]


def test_check_endpoint_reports_an_unreachable_azure_as_incomplete_not_as_clear(
    functions: dict[str, Callable[..., Any]],
) -> None:
    response = functions["on_demand_check"](
        func.HttpRequest("POST", "/api/check", body=json.dumps({"clusters": [CLUSTER]}).encode())
    )
    assert response.status_code == 200
    findings = json.loads(response.get_body())["findings"]
    assert [f["code"] for f in findings] == ["CHECK_INCOMPLETE"]
    assert findings[0]["severity"] == "unknown" and findings[0]["evidence"]["check"] == "all"


def test_events_are_deduplicated_and_coalesced_into_one_debounced_audit(
    functions: dict[str, Callable[..., Any]], azurite: Azurite
) -> None:
    _app().inventory.save(
        KnownCluster(
            id=CLUSTER,
            registries=frozenset({"contosoacr.azurecr.io"}),
            registry_ids=frozenset({REGISTRY.lower()}),
            images=frozenset({"contosoacr.azurecr.io/web:1.4.2"}),
        )
    )
    first, second = _role_delete("ev-1"), _role_delete("ev-2")
    for item in (first, first, second, first):  # a duplicate delivery, then another change in the window
        functions["event_handler"](_grid_event(item))
    queue = _queue(azurite)
    assert queue.get_queue_properties().approximate_message_count == 1
    assert list(queue.receive_messages()) == [], "the audit waits out the debounce window (invisible)"
    merged = _app().queue.clear_pending(CLUSTER)
    assert merged is not None and set(merged.event_ids) == {"ev-1", "ev-2"}


def test_malformed_and_unknown_events_are_skipped_without_failing(
    functions: dict[str, Callable[..., Any]], azurite: Azurite
) -> None:
    bad = func.EventGridEvent(
        id="m1",
        data={"x": 1},
        topic="",
        subject="",
        event_type="Microsoft.Unknown.Thing",
        event_time=None,
        data_version="1",
    )
    functions["event_handler"](bad)  # no exception
    validation = json.loads((WIRE / "subscription-validation.eventgrid-schema.docs.json").read_text())[0]
    functions["event_handler"](
        func.EventGridEvent(
            id=validation["id"],
            data=validation["data"],
            topic=validation["topic"],
            subject="",
            event_type=validation["eventType"],
            event_time=None,
            data_version="1",
        )
    )
    assert _app().queue.depth() == 0


RESOURCE_GROUP = f"/subscriptions/{SUB}/resourceGroups/rg-prod"


@pytest.mark.reliability
@pytest.mark.parametrize(
    "body, why",
    [
        (b"{not json", "not JSON"),
        (json.dumps({"cluster": RESOURCE_GROUP}).encode(), "not a managedCluster"),
        (json.dumps({"cluster": f"{REGISTRY}"}).encode(), "not a managedCluster"),
        (b"[" * 100_000 + b"]" * 100_000, "larger than"),
        (b'{"cluster": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", "nested too deeply"),
        (json.dumps({"cluster": CLUSTER, "reasons": ["x" * 70_000]}).encode(), "larger than"),
    ],
    ids=["not-json", "resource-group", "registry", "huge-array", "deep-json", "oversized"],
)
def test_unreadable_queue_message_is_dropped_not_retried(
    functions: dict[str, Callable[..., Any]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    why: str,
) -> None:
    """Acknowledged (the function returns, so the host deletes it), never audited, one clear line."""
    audits: list[Any] = []
    monkeypatch.setattr(_app(), "audit_and_notify", lambda *a, **k: audits.append(a) or {})
    with caplog.at_level(logging.INFO, "pullwatch"):
        functions["audit_worker"](QueueMessage(id="q1", body=body, dequeue_count=1))  # returns, no raise
    assert audits == []
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "q1 dropped" in lines[0].getMessage() and why in lines[0].getMessage()
    assert len(lines[0].getMessage()) < 400


def test_audit_worker_stores_check_incomplete_when_azure_cannot_be_read(
    functions: dict[str, Callable[..., Any]],
) -> None:
    body = json.dumps({"cluster": CLUSTER, "reasons": ["test"]}).encode()
    functions["audit_worker"](QueueMessage(id="q2", body=body, dequeue_count=1))
    stored = _app().store.open_findings(CLUSTER)
    assert [f.code for f in stored] == ["CHECK_INCOMPLETE"]


def test_poison_message_becomes_check_incomplete_instead_of_a_loop(
    functions: dict[str, Callable[..., Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _app()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("storage hiccup")

    monkeypatch.setattr(app, "audit_and_notify", broken)
    body = json.dumps({"cluster": CLUSTER}).encode()
    with pytest.raises(RuntimeError):  # early attempts fail: the host retries the message
        functions["audit_worker"](QueueMessage(id="q3", body=body, dequeue_count=1))
    functions["audit_worker"](QueueMessage(id="q3", body=body, dequeue_count=5))  # last attempt: no raise
    stored = app.store.open_findings(CLUSTER)
    assert [f.code for f in stored] == ["CHECK_INCOMPLETE"]
    assert "failed 5 times" in stored[0].evidence["reason"]


def test_500_deliveries_with_duplicates_reordering_and_malformed_events_give_the_right_audits(
    functions: dict[str, Callable[..., Any]], azurite: Azurite
) -> None:
    """Through the Event Grid entry point, as the host invokes it: one call per event."""
    import random

    other = CLUSTER.replace("aks-prod", "aks-dev")
    app = _app()
    app.inventory.save(
        KnownCluster(
            id=CLUSTER,
            registries=frozenset({"contosoacr.azurecr.io"}),
            registry_ids=frozenset({REGISTRY.lower()}),
            images=frozenset({"contosoacr.azurecr.io/web:1.4.2"}),
        )
    )
    app.inventory.save(
        KnownCluster(
            id=other, registries=frozenset({"docker.io"}), images=frozenset({"docker.io/library/nginx:1.27"})
        )
    )
    rng = random.Random(11)
    good = [_role_delete(f"ev-{i}") for i in range(40)]
    batch: list[func.EventGridEvent] = []
    for _ in range(450):
        batch.append(_grid_event(rng.choice(good)))  # duplicates of 40 distinct events
    for i in range(50):  # 10% malformed: wrong types, unknown types, missing fields
        kind = ["Microsoft.Unknown.Thing", "Microsoft.Resources.ResourceWriteSuccess", ""][i % 3]
        batch.append(
            func.EventGridEvent(
                id=f"bad-{i}",
                data={"resourceUri": 5} if i % 2 else None,  # type: ignore[arg-type]
                topic="",
                subject="",
                event_type=kind,
                event_time=None,
                data_version="",
            )
        )
    rng.shuffle(batch)
    for event in batch:
        functions["event_handler"](event)  # no exception escapes
    queue = _queue(azurite)
    assert queue.get_queue_properties().approximate_message_count == 1, (
        "one debounced audit, for aks-prod only"
    )
    merged = app.queue.clear_pending(CLUSTER)
    assert merged is not None and set(merged.event_ids) <= {f"ev-{i}" for i in range(40)}
    assert len(merged.event_ids) == len({e.id for e in batch if e.id.startswith("ev-")})
    assert app.queue.clear_pending(other) is None
