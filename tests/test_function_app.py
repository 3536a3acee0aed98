"""The Functions entry points, invoked through their registered functions (``get_user_function()``)
with real ``azure.functions`` objects and Azurite for queues and tables."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient
from estate import CLUSTER, KNOWN_CLUSTER, REGISTRY, SUB, WIRE, role_assignment_deleted

from sandbox.azurite import Azurite
from sandbox.events import as_delivered
from sandbox.host import FunctionsHost, decode_event_grid_item, isolated_app_settings, load_function_app
from shared.app import App
from shared.config import SETTINGS
from shared.plan import KnownCluster

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.sandbox


@pytest.fixture
def function_app(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """function_app.py loaded as the Functions host loads it, with app settings pointing at Azurite."""
    env = isolated_app_settings(azurite.connection_string, SUB)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    module = load_function_app()
    yield module
    module.process_app.close()


@pytest.fixture
def functions(function_app: ModuleType) -> dict[str, Callable[..., Any]]:
    return {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}


@pytest.fixture
def app(function_app: ModuleType) -> App:
    """The loaded module's App (its composition root builds it from the app settings)."""
    return function_app.process_app.get()  # type: ignore[no-any-return]


def _queue(azurite: Azurite, app: App) -> QueueClient:
    return QueueClient.from_connection_string(azurite.connection_string, app.settings.audit_queue)


def _grid_event(item: dict[str, Any]) -> Any:
    """The event as the Python worker hands it to the function: through azure.functions' converter."""
    return decode_event_grid_item(item)


def test_every_function_is_registered_with_its_trigger(functions: dict[str, Callable[..., Any]]) -> None:
    module = load_function_app()
    triggers = {f.get_function_name(): f.get_trigger().get_binding_name() for f in module.app.get_functions()}
    assert triggers == {
        "event_handler": "eventGridTrigger",
        "nightly_audit": "timerTrigger",
        "audit_worker": "queueTrigger",
        "audit_poison": "queueTrigger",
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
        # nesting deeper than the JSON parser's recursion limit: a 400, never an unhandled exception
        (b"[" * 100_000, "JSON"),
        (b'{"clusters": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "JSON"),
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
    functions: dict[str, Callable[..., Any]], app: App, azurite: Azurite
) -> None:
    app.inventory.save(KNOWN_CLUSTER)
    first, second = role_assignment_deleted("ev-1"), role_assignment_deleted("ev-2")
    for item in (first, first, second, first):  # a duplicate delivery, then another change in the window
        functions["event_handler"](_grid_event(item))
    queue = _queue(azurite, app)
    assert queue.get_queue_properties().approximate_message_count == 1
    assert list(queue.receive_messages()) == [], "the audit waits out the debounce window (invisible)"
    merged = app.queue.clear_pending(CLUSTER)
    assert merged is not None and set(merged.event_ids) == {"ev-1", "ev-2"}


def test_a_cloudevent_reaches_the_planner_with_its_type_and_source_through_the_trigger(
    functions: dict[str, Callable[..., Any]], app: App, azurite: Azurite
) -> None:
    app.inventory.save(KNOWN_CLUSTER)
    [cloud_event] = as_delivered([role_assignment_deleted("ce-1")], "CloudEventSchemaV1_0")
    event = _grid_event(cloud_event)
    assert isinstance(event, func.CloudEvent), "the worker's converter keeps a CloudEvent a CloudEvent"
    functions["event_handler"](event)
    merged = app.queue.clear_pending(CLUSTER)
    assert merged is not None and merged.event_ids == ("ce-1",)


def test_malformed_and_unknown_events_are_skipped_without_failing(
    functions: dict[str, Callable[..., Any]], app: App, azurite: Azurite
) -> None:
    bad = {"id": "m1", "data": {"x": 1}, "topic": "", "subject": "", "eventType": "Microsoft.Unknown.Thing"}
    functions["event_handler"](_grid_event(bad))  # no exception
    for name in (
        "subscription-validation.eventgrid-schema.docs.json",
        "subscription-validation.cloudevents-schema.sdk-go-tests.json",
    ):
        validation = json.loads((WIRE / name).read_text())[0]
        functions["event_handler"](_grid_event(validation))
    assert app.queue.depth() == 0


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
    app: App,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    why: str,
) -> None:
    """Acknowledged (the function returns, so the host deletes it), never audited, one clear line."""
    audits: list[Any] = []
    monkeypatch.setattr(app, "audit_and_notify", lambda *a, **k: audits.append(a) or {})
    with caplog.at_level(logging.INFO, "pullwatch"):
        functions["audit_worker"](QueueMessage(id="q1", body=body, dequeue_count=1))  # returns, no raise
    assert audits == []
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "q1 dropped" in lines[0].getMessage() and why in lines[0].getMessage()
    assert len(lines[0].getMessage()) < 400


def test_audit_worker_stores_check_incomplete_when_azure_cannot_be_read(
    functions: dict[str, Callable[..., Any]],
    app: App,
) -> None:
    body = json.dumps({"cluster": CLUSTER, "reasons": ["test"]}).encode()
    functions["audit_worker"](QueueMessage(id="q2", body=body, dequeue_count=1))
    stored = app.store.open_findings(CLUSTER)
    assert [f.code for f in stored] == ["CHECK_INCOMPLETE"]


def test_a_message_failing_max_dequeue_count_times_lands_in_poison_and_becomes_check_incomplete(
    function_app: ModuleType, app: App, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host's own limit (host.json maxDequeueCount) is the only one: every failed attempt raises,
    the host moves the message to <queue>-poison, and audit_poison reports the cluster."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("storage hiccup")

    monkeypatch.setattr(app, "audit_and_notify", broken)
    host = FunctionsHost(
        azurite.connection_string, app.settings.audit_queue, module=function_app, visibility_retry=0.1
    )
    try:
        host.queue.send_message(json.dumps({"cluster": CLUSTER}))
        host.drain(timeout=60)
        limit = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]["maxDequeueCount"]
        assert host.invocations["audit_worker"] == limit, "retried until the host's limit, never past it"
        assert host.invocations["audit_poison"] == 1
    finally:
        host.close()
    stored = app.store.open_findings(CLUSTER)
    assert [f.code for f in stored] == ["CHECK_INCOMPLETE"]
    assert "maxDequeueCount" in stored[0].evidence["reason"]


def test_500_deliveries_with_duplicates_reordering_and_malformed_events_give_the_right_audits(
    functions: dict[str, Callable[..., Any]], app: App, azurite: Azurite
) -> None:
    """Through the Event Grid entry point, as the host invokes it: one call per event."""
    import random

    other = CLUSTER.replace("aks-prod", "aks-dev")
    app.inventory.save(KNOWN_CLUSTER)
    app.inventory.save(
        KnownCluster(
            id=other, registries=frozenset({"docker.io"}), images=frozenset({"docker.io/library/nginx:1.27"})
        )
    )
    rng = random.Random(11)
    good = [role_assignment_deleted(f"ev-{i}") for i in range(40)]
    batch: list[Any] = []
    for _ in range(450):
        batch.append(_grid_event(rng.choice(good)))  # duplicates of 40 distinct events
    for i in range(50):  # 10% malformed: wrong types, unknown types, missing fields
        kind = ["Microsoft.Unknown.Thing", "Microsoft.Resources.ResourceWriteSuccess", ""][i % 3]
        batch.append(
            _grid_event(
                {
                    "id": f"bad-{i}",
                    "data": {"resourceUri": 5} if i % 2 else None,
                    "topic": "",
                    "subject": "",
                    "eventType": kind,
                }
            )
        )
    rng.shuffle(batch)
    for event in batch:
        functions["event_handler"](event)  # no exception escapes
    queue = _queue(azurite, app)
    assert queue.get_queue_properties().approximate_message_count == 1, (
        "one debounced audit, for aks-prod only"
    )
    merged = app.queue.clear_pending(CLUSTER)
    assert merged is not None and set(merged.event_ids) <= {f"ev-{i}" for i in range(40)}
    assert len(merged.event_ids) == len({e.id for e in batch if e.id.startswith("ev-")})
    assert app.queue.clear_pending(other) is None


def test_loading_the_function_app_redacts_webhook_paths_in_urllib3s_request_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("urllib3.connectionpool")
    installed = list(logger.filters)
    for f in installed:
        logger.removeFilter(f)
    try:
        load_function_app()
        with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
            logger.debug(
                '%s://%s:%s "%s %s %s" %s %s',
                "https",
                "hooks.slack.com",
                443,
                "POST",
                "/services/T0000/B0000/webhook-secret",
                "HTTP/1.1",
                200,
                2,
            )
        assert "hooks.slack.com" in caplog.text and "/services/[redacted]" in caplog.text
        assert "webhook-secret" not in caplog.text
    finally:
        for f in list(logger.filters):
            logger.removeFilter(f)
        for f in installed:
            logger.addFilter(f)


def test_a_failed_or_cancelled_resource_write_is_ignored_without_a_warning(
    functions: dict[str, Callable[..., Any]], app: App, caplog: pytest.LogCaptureFixture
) -> None:
    for kind in ("ResourceWriteFailure", "ResourceWriteCancel", "ResourceActionFailure"):
        item = role_assignment_deleted(f"quiet-{kind}")
        item["eventType"] = f"Microsoft.Resources.{kind}"
        with caplog.at_level("DEBUG", logger="pullwatch"):
            functions["event_handler"](_grid_event(item))
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert app.queue.depth() == 0
