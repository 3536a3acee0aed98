"""Event Grid parsing and event → plan, on the real wire samples in tests/data/wire/eventgrid."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest

from shared.errors import InputError
from shared.events import parse_delivery, parse_event, parse_resource_id
from shared.plan import AuditRequest, KnownCluster, Scope, plan_events, plan_nightly
from shared.rbac import scope_covers

WIRE = Path(__file__).resolve().parent / "data" / "wire" / "eventgrid"
SUB = "<subscription-id>"
REGISTRY_ID = f"/subscriptions/{SUB}/resourceGroups/<resource-group-name>/providers/Microsoft.ContainerRegistry/registries/<name>"
CLUSTER = "/subscriptions/{subscription-id}/resourceGroups/{resource-group}/providers/Microsoft.ContainerService/managedClusters/{cluster}"
OTHER = "/subscriptions/{subscription-id}/resourceGroups/{resource-group}/providers/Microsoft.ContainerService/managedClusters/other"


def load(name: str) -> Any:
    return json.loads((WIRE / name).read_text())


def inventory(failing: bool = True) -> list[KnownCluster]:
    return [
        KnownCluster(
            id=CLUSTER,
            registries=frozenset({"demo.azurecr.io"}),
            registry_ids=frozenset({REGISTRY_ID.lower()}),
            images=frozenset({"demo.azurecr.io/aci-helloworld:v1", "demo.azurecr.io/team-a/api:2"}),
            failing_images=frozenset({"demo.azurecr.io/aci-helloworld:v1"} if failing else set()),
        ),
        KnownCluster(
            id=OTHER, registries=frozenset({"docker.io"}), images=frozenset({"docker.io/library/nginx:1.27"})
        ),
    ]


SAMPLES = sorted(p.name for p in WIRE.glob("*.json") if "response" not in p.name)


@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_parses_in_its_schema(name: str) -> None:
    delivery = parse_delivery(load(name))
    assert not delivery.rejected, delivery.rejected
    if "validation" in name:
        assert delivery.validation_code == "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"
        assert delivery.events == ()
    else:
        assert delivery.events
        schema = "cloudevents" if "cloudevents" in name else "eventgrid"
        assert {e.schema for e in delivery.events} == {schema}
        assert all(e.type.startswith("Microsoft.") for e in delivery.events)


@pytest.mark.parametrize("name", ["acr.eventgrid-schema.docs-2021.json", "acr.cloudevents-schema.docs.json"])
def test_acr_samples_plan_only_what_they_touch(name: str) -> None:
    events = parse_delivery(load(name)).events
    plan = plan_events(events, inventory(), Scope())
    assert [a.cluster for a in plan.audits] == [CLUSTER]
    audit = plan.audits[0]
    kinds = {h["kind"] for h in audit.hints}
    assert kinds == {"image_pushed", "image_deleted"}  # push of a failing tag + delete of a used repository
    deleted = next(h for h in audit.hints if h["kind"] == "image_deleted")
    assert deleted["digest"].startswith("sha256:213bbc") and deleted["repository"] == "aci-helloworld"
    # Chart events never touch kubelet pulls.
    assert sum("Helm chart" in why for _, why in plan.ignored) == 2


def test_image_pushed_for_a_tag_that_was_not_failing_is_ignored() -> None:
    events = parse_delivery(load("acr.eventgrid-schema.current-docs.json")).events
    plan = plan_events(events, inventory(failing=False), Scope())
    assert plan.audits == ()
    assert plan.ignored and "was failing" in plan.ignored[0][1]


def test_short_legacy_event_type_names_are_understood() -> None:
    event = parse_event(load("acr.eventgrid-schema.docs-2021.json")[0])
    assert event.type == "Microsoft.ContainerRegistry.ImagePushed"


@pytest.mark.parametrize(
    "name",
    [
        "aks.support-and-nodepool.eventgrid-schema.sdk-go-tests.json",
        "aks.support-and-nodepool.cloudevents-schema.sdk-go-tests.json",
    ],
)
def test_aks_node_pool_rolls_recheck_the_cluster_and_support_events_do_not(name: str) -> None:
    events = parse_delivery(load(name)).events
    plan = plan_events(events, inventory(), Scope())
    rolled = [e for e in events if e.short_type in ("NodePoolRollingSucceeded", "NodePoolRollingFailed")]
    assert rolled, "the sample has rolling events"
    assert [a.cluster for a in plan.audits] == [CLUSTER]
    assert len(plan.audits[0].event_ids) == len({e.id for e in rolled})
    assert len(plan.ignored) == len(events) - len(rolled)


def _role_event(verb: str, scope: str, event_id: str = "e1") -> dict[str, Any]:
    sample = copy.deepcopy(
        load("resources.write-delete-action.eventgrid-schema.resourcegroup-topic.docs.json")[
            0 if verb == "write" else 1
        ]
    )
    uri = f"{scope}/providers/Microsoft.Authorization/roleAssignments/0b6b0f5e-1d5b-4b5f-8a35-0ff1a3c2b0aa"
    sample.update(id=event_id, subject=uri)
    sample["data"].update(
        resourceUri=uri,
        operationName=f"Microsoft.Authorization/roleAssignments/{verb}",
        resourceProvider="Microsoft.Authorization",
    )
    return sample


@pytest.mark.parametrize(
    "scope, expected",
    [
        (REGISTRY_ID, [CLUSTER]),  # the registry itself
        (f"/subscriptions/{SUB}/resourceGroups/<resource-group-name>", [CLUSTER]),  # its resource group
        (f"/subscriptions/{SUB}", [CLUSTER]),  # its subscription
        ("/providers/Microsoft.Management/managementGroups/corp", [CLUSTER]),  # a management group above
        (f"/subscriptions/{SUB}/resourceGroups/rg-other", []),  # unrelated resource group
    ],
)
def test_role_assignment_deleted_rechecks_every_cluster_that_could_draw_a_pull_right(
    scope: str, expected: list[str]
) -> None:
    plan = plan_events([parse_event(_role_event("delete", scope))], inventory(), Scope())
    assert [a.cluster for a in plan.audits] == expected
    if expected:
        assert plan.audits[0].hints[0] == {"kind": "role_assignment", "scope": scope}


def test_registry_write_and_cluster_lifecycle_events() -> None:
    write = copy.deepcopy(
        load("resources.write-delete-action.eventgrid-schema.resourcegroup-topic.docs.json")[0]
    )
    write["subject"] = write["data"]["resourceUri"] = REGISTRY_ID
    write["data"]["operationName"] = "Microsoft.ContainerRegistry/registries/write"
    pool = copy.deepcopy(write)
    pool["id"] = "pool"
    pool["subject"] = pool["data"]["resourceUri"] = CLUSTER + "/agentPools/np1"
    gone = copy.deepcopy(
        load("resources.write-delete-action.eventgrid-schema.resourcegroup-topic.docs.json")[1]
    )
    gone["subject"] = gone["data"]["resourceUri"] = OTHER
    storage = load("resources.write-delete-action.eventgrid-schema.resourcegroup-topic.docs.json")[0]
    plan = plan_events([parse_event(e) for e in (write, pool, gone, storage)], inventory(), Scope())
    assert [a.cluster for a in plan.audits] == [CLUSTER]
    assert any(h.get("kind") == "registry_changed" for h in plan.audits[0].hints)
    assert any("agentPools/np1" in r for r in plan.audits[0].reasons)
    assert plan.forget == (OTHER,)
    assert any("storageaccounts" in why for _, why in plan.ignored)


def test_events_outside_the_configured_scope_are_ignored() -> None:
    scope = Scope.of(["33333333-3333-3333-3333-333333333333"], [])
    plan = plan_events(parse_delivery(load("acr.eventgrid-schema.docs-2021.json")).events, inventory(), scope)
    assert plan.audits == ()


def test_a_batch_of_500_with_duplicates_reordering_and_malformed_events_never_raises() -> None:
    rng = random.Random(7)
    good = [_role_event("delete", REGISTRY_ID, f"ra-{i}") for i in range(40)]
    good += load("acr.eventgrid-schema.docs-2021.json") + load(
        "aks.support-and-nodepool.eventgrid-schema.sdk-go-tests.json"
    )
    batch: list[Any] = []
    while len(batch) < 450:
        batch.append(copy.deepcopy(rng.choice(good)))
    malformed: list[Any] = [
        None,
        3,
        "x",
        [],
        {"id": 5},
        {"id": "m", "eventType": 7},
        {"id": "m2"},
        {"id": "m3", "eventType": "Microsoft.Unknown.Thing", "subject": "", "data": {}},
        {"id": "m4", "eventType": "Microsoft.Resources.ResourceWriteSuccess", "data": "nope"},
        {"specversion": "1.0", "id": "m5", "type": "Microsoft.ContainerRegistry.ImagePushed"},
    ]
    while len(batch) < 500:
        batch.append(copy.deepcopy(rng.choice(malformed)))
    rng.shuffle(batch)
    delivery = parse_delivery(batch)
    assert len(delivery.events) + len(delivery.rejected) == 500
    assert len(delivery.rejected) == sum(1 for item in batch if item in malformed)
    plan = plan_events(delivery.events, inventory(), Scope())
    assert [a.cluster for a in plan.audits] == [CLUSTER], (
        "every event for one cluster coalesces into one audit"
    )
    assert len(set(plan.audits[0].event_ids)) == len(plan.audits[0].event_ids)


def test_audit_message_round_trip_and_bad_messages() -> None:
    request = plan_nightly([CLUSTER])[0].merged(AuditRequest(CLUSTER, ("x",), ("e",), ({"kind": "k"},)))
    assert AuditRequest.from_json(request.to_json()) == request
    for bad in (
        "not json",
        "[]",
        '{"cluster": 3}',
        '{"cluster": "aks-prod"}',
        json.dumps({"cluster": CLUSTER, "hints": [1]}),
    ):
        with pytest.raises(InputError):
            AuditRequest.from_json(bad)


def test_resource_ids_and_scopes_compare_case_insensitively() -> None:
    rid = parse_resource_id(
        "/subscriptions/S/resourcegroups/RG/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/np"
    )
    assert rid is not None and rid.top.endswith("managedClusters/aks") and rid.rest == "/agentPools/np"
    assert scope_covers("/subscriptions/s/resourceGroups/rg", rid.top)
    assert not scope_covers("/subscriptions/s/resourceGroups/rg2", rid.top)
    assert not scope_covers("/subscriptions/s/resourceGroups/r", rid.top)  # no prefix confusion


def test_every_handled_event_type_and_operation_leads_to_an_audit() -> None:
    from shared.plan import HANDLED_EVENT_TYPES, HANDLED_OPERATIONS

    sample = load("resources.write-delete-action.eventgrid-schema.resourcegroup-topic.docs.json")
    for operation in HANDLED_OPERATIONS:
        kind = "Delete" if operation.endswith("/delete") else "Write"
        event = copy.deepcopy(sample[0 if kind == "Write" else 1])
        provider, rest = operation.split("/", 1)
        if provider == "Microsoft.Authorization":
            uri = f"{REGISTRY_ID}/providers/Microsoft.Authorization/roleAssignments/x"
        elif provider == "Microsoft.ContainerRegistry":
            child = rest.split("/")[1:-1]
            uri = REGISTRY_ID + ("/" + child[0] + "/c" if child else "")
        else:
            child = rest.split("/")[1:-1]
            uri = CLUSTER + ("/" + child[0] + "/np" if child else "")
        event.update(subject=uri, eventType=f"Microsoft.Resources.Resource{kind}Success")
        event["data"].update(resourceUri=uri, operationName=operation)
        plan = plan_events([parse_event(event)], inventory(), Scope())
        assert plan.audits or plan.forget, operation
    assert {e.type for e in parse_delivery(load("acr.eventgrid-schema.docs-2021.json")).events} >= {
        t for t in HANDLED_EVENT_TYPES if t.startswith("Microsoft.ContainerRegistry.")
    }
