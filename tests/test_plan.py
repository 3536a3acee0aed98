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


def _cluster_write(uri: str, event_id: str) -> dict[str, Any]:
    event = copy.deepcopy(
        load("resources.write-delete-action.eventgrid-schema.resourcegroup-topic.docs.json")[0]
    )
    event.update(id=event_id, subject=uri)
    event["data"].update(resourceUri=uri, operationName="Microsoft.ContainerService/managedClusters/write")
    return event


def test_events_for_one_cluster_id_in_different_casing_coalesce_into_one_audit() -> None:
    events = [
        parse_event(_cluster_write(CLUSTER + "/agentPools/np1", "first")),
        parse_event(_cluster_write(CLUSTER.lower().replace("{cluster}", "{CLUSTER}"), "second")),
    ]
    plan = plan_events(events, inventory(), Scope())
    assert len(plan.audits) == 1
    audit = plan.audits[0]
    assert audit.cluster == CLUSTER  # the first event's spelling
    assert audit.event_ids == ("first", "second")
    assert audit.reasons == ("cluster {cluster} changed (agentPools/np1)", "cluster {CLUSTER} changed")


@pytest.mark.parametrize(
    "event_type",
    [
        "Microsoft.Resources.ResourceWriteFailure",
        "Microsoft.Resources.ResourceWriteCancel",
        "Microsoft.Resources.ResourceDeleteFailure",
        "Microsoft.Storage.BlobCreated",
    ],
)
def test_azure_system_events_pullwatch_does_not_act_on_are_ignored_not_rejected(event_type: str) -> None:
    write = load("resources.write-delete-action.eventgrid-schema.resourcegroup-topic.docs.json")[0]
    item = {**write, "eventType": event_type, "id": "quiet-1"}
    delivery = parse_delivery([item])
    assert delivery.rejected == () and delivery.events == ()
    assert [(i.id, i.type) for i in delivery.ignored] == [("quiet-1", event_type)]


def test_an_envelope_field_of_the_wrong_type_is_rejected_although_the_sdk_would_coerce_it() -> None:
    write = load("resources.write-delete-action.eventgrid-schema.resourcegroup-topic.docs.json")[0]
    delivery = parse_delivery([{**write, "id": 5}, {**write, "topic": ["x"]}, write])
    assert [r.reason for r in delivery.rejected] == [
        "field 'id' must be a string, not int",
        "field 'topic' must be a string, not list",
    ]
    assert [e.id for e in delivery.events] == [write["id"]]


def test_a_cloudevent_without_source_is_rejected_alone() -> None:
    item = load("acr.cloudevents-schema.docs.json")[0]
    broken = {k: v for k, v in item.items() if k != "source"}
    delivery = parse_delivery([broken, item])
    assert [r.reason for r in delivery.rejected] == ["missing field 'source'"]
    assert [e.id for e in delivery.events] == [item["id"]]


def _container_delete(resource_id: str) -> dict[str, Any]:
    gone = copy.deepcopy(
        load("resources.write-delete-action.eventgrid-schema.resourcegroup-topic.docs.json")[1]
    )
    gone["subject"] = gone["data"]["resourceUri"] = resource_id
    operation = "resourceGroups/delete" if "/resourceGroups/" in resource_id else "delete"
    gone["data"]["operationName"] = gone["data"]["authorization"]["action"] = (
        f"Microsoft.Resources/subscriptions/{operation}"
    )
    return gone


def test_a_deleted_resource_group_holding_a_registry_rechecks_the_clusters_that_pulled_from_it() -> None:
    event = parse_event(_container_delete(f"/subscriptions/{SUB}/resourceGroups/<resource-group-name>"))
    plan = plan_events([event], inventory(), Scope())
    assert [a.cluster for a in plan.audits] == [CLUSTER]
    assert plan.audits[0].hints == ({"kind": "registry_changed", "registry_id": REGISTRY_ID.lower()},)
    assert "resource group <resource-group-name> deleted" in plan.audits[0].reasons[0]
    assert plan.forget == ()


def test_a_deleted_resource_group_holding_clusters_forgets_them() -> None:
    group = "/subscriptions/{subscription-id}/resourceGroups/{resource-group}"
    plan = plan_events([parse_event(_container_delete(group))], inventory(), Scope())
    assert plan.forget == (CLUSTER, OTHER) and plan.audits == ()


def test_a_deleted_subscription_forgets_its_clusters_and_rechecks_users_of_its_registries() -> None:
    plan = plan_events([parse_event(_container_delete(f"/subscriptions/{SUB}"))], inventory(), Scope())
    assert [a.cluster for a in plan.audits] == [CLUSTER] and plan.forget == ()
    plan = plan_events(
        [parse_event(_container_delete("/subscriptions/{subscription-id}"))], inventory(), Scope()
    )
    assert plan.forget == (CLUSTER, OTHER)


def test_a_deleted_resource_group_with_nothing_watched_is_ignored_with_the_reason() -> None:
    plan = plan_events(
        [parse_event(_container_delete(f"/subscriptions/{SUB}/resourceGroups/rg-x"))], inventory(), Scope()
    )
    assert plan.audits == () and plan.forget == ()
    assert [why for _, why in plan.ignored] == ["no watched cluster or registry in resource group rg-x"]


def test_a_deleted_resource_group_forgets_its_clusters_and_rechecks_the_others_naming_the_registry() -> None:
    group = "/subscriptions/{subscription-id}/resourceGroups/{resource-group}"
    registry = f"{group}/providers/Microsoft.ContainerRegistry/registries/hubacr".lower()
    elsewhere = (
        "/subscriptions/s2/resourceGroups/rg2/providers/Microsoft.ContainerService/managedClusters/far"
    )
    known = [
        KnownCluster(id=CLUSTER, registry_ids=frozenset({registry})),  # held by the group: forgotten
        KnownCluster(id=elsewhere, registry_ids=frozenset({registry})),  # pulled from it: rechecked
    ]
    plan = plan_events([parse_event(_container_delete(group))], known, Scope())
    assert plan.forget == (CLUSTER,)
    assert [(a.cluster, a.reasons) for a in plan.audits] == [
        (elsewhere, ("resource group {resource-group} deleted, with registry hubacr",))
    ]
    assert plan.ignored == ()


def test_a_deleted_resource_group_holding_only_clusters_is_not_reported_as_ignored() -> None:
    group = "/subscriptions/{subscription-id}/resourceGroups/{resource-group}"
    plan = plan_events([parse_event(_container_delete(group))], inventory(), Scope())
    assert plan.forget == (CLUSTER, OTHER) and plan.ignored == ()


def test_a_deleted_subscription_is_named_as_a_subscription_in_the_reason() -> None:
    plan = plan_events([parse_event(_container_delete(f"/subscriptions/{SUB}"))], inventory(), Scope())
    assert [a.reasons for a in plan.audits] == [(f"subscription {SUB} deleted, with registry <name>",)]
