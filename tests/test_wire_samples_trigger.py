"""Every real Event Grid sample (tests/data/wire/eventgrid, provenance in tests/data/wire/SOURCES.md),
in both schemas, through the real trigger path — the Functions host splits the delivery, the Python
worker's converter (``azure.functions``) decodes each event, ``event_handler`` plans and enqueues —
plans exactly the audits that ``parse_delivery`` + ``plan_events`` plan on the same JSON, and no
event the app understands is acknowledged unplanned. Azurite holds the state table and the queue."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.azurite import Azurite
from sandbox.host import FunctionsHost, decode_event_grid_item, load_function_app
from shared.app import App
from shared.events import KNOWN_TYPES, parse_delivery, parse_event
from shared.plan import KnownCluster, Scope, plan_events

pytestmark = pytest.mark.sandbox

WIRE = Path(__file__).resolve().parent / "data" / "wire" / "eventgrid"
SAMPLES = sorted(p.name for p in WIRE.glob("*.json") if "response" not in p.name)

# The estate the samples speak of (their placeholders are kept verbatim as IDs).
REGISTRY = (
    "/subscriptions/<subscription-id>/resourceGroups/<resource-group-name>"
    "/providers/Microsoft.ContainerRegistry/registries/<name>"
)
CLUSTER = (
    "/subscriptions/{subscription-id}/resourceGroups/{resource-group}"
    "/providers/Microsoft.ContainerService/managedClusters/{cluster}"
)
INVENTORY = [
    KnownCluster(
        id=CLUSTER,
        registries=frozenset({"demo.azurecr.io"}),
        registry_ids=frozenset({REGISTRY.lower()}),
        images=frozenset({"demo.azurecr.io/aci-helloworld:v1", "demo.azurecr.io/mychart:1.0.0"}),
        failing_images=frozenset({"demo.azurecr.io/aci-helloworld:v1"}),
    )
]


@pytest.fixture
def host(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[FunctionsHost]:
    suffix = uuid.uuid4().hex[:10]
    for name, value in {
        "AzureWebJobsStorage": azurite.connection_string,
        "PULLWATCH_AUDIT_QUEUE": f"audit-{suffix}",
        "PULLWATCH_STATE_TABLE": f"state{suffix}",
        "PULLWATCH_DEBOUNCE_SECONDS": "30",
        "PULLWATCH_SUBSCRIPTIONS": "",  # the samples' placeholder subscriptions are all in scope
    }.items():
        monkeypatch.setenv(name, value)
    functions = FunctionsHost(azurite.connection_string, f"audit-{suffix}", module=load_function_app())
    for cluster in INVENTORY:
        _app(functions).inventory.save(cluster)
    yield functions
    functions.close()
    functions.module.process_app.close()


def _app(host: FunctionsHost) -> App:
    """The App the loaded function_app module built from the app settings (its composition root)."""
    app: App = host.module.process_app.get()
    return app


def _sample(name: str) -> list[dict[str, Any]]:
    body = json.loads((WIRE / name).read_text())
    items: list[dict[str, Any]] = body if isinstance(body, list) else [body]
    # The Go SDK's fixtures reuse one id for five different events; Event Grid ids are unique, and
    # the app (rightly) skips a repeated id as a redelivery. Only those repeats get a suffix.
    seen: set[str] = set()
    out = []
    for index, item in enumerate(items):
        if item["id"] in seen:
            item = {**item, "id": f"{item['id']}-{index}"}
        seen.add(item["id"])
        out.append(item)
    return out


def _decodes(item: dict[str, Any]) -> bool:
    try:
        decode_event_grid_item(item)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("name", SAMPLES)
def test_a_real_sample_plans_the_same_audits_through_the_trigger_as_through_parse_delivery(
    host: FunctionsHost, name: str
) -> None:
    items = _sample(name)
    outcome = host.deliver_event_grid(items)

    through_trigger = {}
    for cluster in INVENTORY:
        pending = _app(host).queue.clear_pending(cluster.id)
        if pending is not None:
            through_trigger[cluster.id] = set(pending.event_ids)
    # The worker's converter refuses an unreadable time: that invocation fails, so Event Grid
    # retries it (it is not acknowledged). pullwatch plans the same JSON only for what decodes.
    decoded = [item for item in items if _decodes(item)]
    plan = plan_events(parse_delivery(decoded).events, INVENTORY, Scope())
    direct = {a.cluster: set(a.event_ids) for a in plan.audits}
    assert through_trigger == direct

    validations = sum(1 for i in items if (i.get("eventType") or i.get("type")).endswith("ValidationEvent"))
    assert outcome == {
        "invoked": len(decoded) - validations,
        "validation": validations,
        "failed": len(items) - len(decoded),
    }
    # Nothing pullwatch understands is acknowledged unplanned: every event the planner would act
    # on (or explains ignoring) was read with its type, none fell to "unknown type".
    assert not parse_delivery(decoded).rejected
    ignored = {event_id for event_id, _ in plan.ignored}
    planned = set().union(*direct.values()) if direct else set()
    for item in decoded:
        event = parse_event(item)
        if event.type in KNOWN_TYPES and not event.type.endswith("ValidationEvent"):
            assert event.id in planned | ignored, f"{event.type} {event.id} neither planned nor explained"


@pytest.mark.parametrize("schema", ["eventgrid-schema", "cloudevents-schema"])
def test_the_samples_plan_image_and_node_pool_audits_through_the_trigger(
    host: FunctionsHost, schema: str
) -> None:
    """The comparison above is not vacuous: in each schema the samples plan real audits."""
    names = [name for name in SAMPLES if schema in name]
    planned: set[str] = set()
    for name in names:
        host.deliver_event_grid(_sample(name))
        pending = _app(host).queue.clear_pending(CLUSTER)
        planned |= set(pending.event_ids) if pending else set()
    kinds = {
        (item.get("eventType") or item.get("type")).rsplit(".", 1)[-1]
        for name in names
        for item in _sample(name)
        if item["id"] in planned
    }
    assert kinds == {"ImagePushed", "ImageDeleted", "NodePoolRollingFailed", "NodePoolRollingSucceeded"}
