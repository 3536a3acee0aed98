"""The small estate the Event Grid tests and the event-storm bench speak of: the cluster aks-prod,
whose last audit saw it pull ``contosoacr.azurecr.io/web:1.4.2``, and role-assignment deletes under
the registry contosoacr, built from Microsoft's documented Event Grid sample
(``tests/data/wire/eventgrid/``, sources in ``tests/data/wire/SOURCES.md``)."""

from __future__ import annotations

import copy
import functools
import json
import uuid
from pathlib import Path
from typing import Any

from shared.plan import KnownCluster

SUB = "22222222-2222-2222-2222-222222222222"
REGISTRY = f"/subscriptions/{SUB}/resourceGroups/rg-shared/providers/Microsoft.ContainerRegistry/registries/contosoacr"
CLUSTER = f"/subscriptions/{SUB}/resourceGroups/rg-prod/providers/Microsoft.ContainerService/managedClusters/aks-prod"
WIRE = Path(__file__).resolve().parent / "data" / "wire" / "eventgrid"
ROLE_SAMPLE = WIRE / "resources.write-delete-action.eventgrid-schema.resourcegroup-topic.docs.json"

#: What the last audit of aks-prod saw: the inventory an event about contosoacr is planned against.
KNOWN_CLUSTER = KnownCluster(
    id=CLUSTER,
    registries=frozenset({"contosoacr.azurecr.io"}),
    registry_ids=frozenset({REGISTRY.lower()}),
    images=frozenset({"contosoacr.azurecr.io/web:1.4.2"}),
)


@functools.cache
def _sample() -> dict[str, Any]:
    event: dict[str, Any] = json.loads(ROLE_SAMPLE.read_text())[1]
    return event


def role_assignment_deleted(event_id: str | None = None) -> dict[str, Any]:
    """A real Resource Manager role-assignment delete (the docs sample), under contosoacr; a new
    assignment id each time, and ``event_id`` (a new GUID when None)."""
    event = copy.deepcopy(_sample())
    uri = f"{REGISTRY}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
    event.update(id=event_id or str(uuid.uuid4()), subject=uri, topic=f"/subscriptions/{SUB}")
    event["data"].update(resourceUri=uri, operationName="Microsoft.Authorization/roleAssignments/delete")
    return event
