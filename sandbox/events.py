"""The Event Grid events Azure emits for a world change, in the schema the subscription delivers.

Shapes follow tests/data/wire/eventgrid/: Resource Manager events on the subscription
topic (``ResourceWriteSuccess`` / ``ResourceDeleteSuccess``, no resource body, subject = resource
ID), ACR ``ImagePushed`` / ``ImageDeleted`` on the registry's system topic. Ids are fresh GUIDs.
Events are built in the Event Grid schema; :func:`as_delivered` turns them into CloudEvents 1.0
as Event Grid does for a ``CloudEventSchemaV1_0`` subscription (``topic`` → ``source``,
``eventType`` → ``type``, ``eventTime`` → ``time``; no ``dataVersion`` / ``metadataVersion``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sandbox.world import Cluster, Registry, World


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _envelope(
    topic: str, subject: str, event_type: str, data: dict[str, Any], data_version: str
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "topic": topic,
        "subject": subject,
        "eventType": event_type,
        "eventTime": _now(),
        "data": data,
        "dataVersion": data_version,
        "metadataVersion": "1",
    }


def as_delivered(events: list[dict[str, Any]], schema: str) -> list[dict[str, Any]]:
    """Events (Event Grid schema) as a subscription with ``deliverySchema`` ``schema`` receives them."""
    if schema == "EventGridSchema":
        return events
    if schema != "CloudEventSchemaV1_0":
        raise ValueError(f"unknown event schema {schema!r}")
    return [
        {
            "id": e["id"],
            "source": e["topic"],
            "subject": e["subject"],
            "type": e["eventType"],
            "time": e["eventTime"],
            "data": e["data"],
            "specversion": "1.0",
        }
        for e in events
    ]


def resource_event(
    world: World, subscription: str, resource_id: str, operation: str, *, delete: bool = False
) -> dict[str, Any]:
    """A Resource Manager event on the subscription's system topic (Microsoft.Resources.Subscriptions)."""
    provider = operation.split("/", 1)[0]
    data: dict[str, Any] = {
        "authorization": {"scope": resource_id, "action": operation, "evidence": {"role": "Owner"}},
        "claims": {"appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46", "ipaddr": "203.0.113.50"},
        "correlationId": str(uuid.uuid4()),
        "resourceProvider": provider,
        "resourceUri": resource_id,
        "operationName": operation,
        "status": "Succeeded",
        "subscriptionId": subscription,
        "tenantId": world.tenant,
    }
    if delete:
        data["httpRequest"] = {
            "clientRequestId": str(uuid.uuid4()),
            "clientIpAddress": "203.0.113.50",
            "method": "DELETE",
            "url": f"{world.azure.arm_audience}{resource_id}?api-version=2022-04-01",
        }
    kind = "ResourceDeleteSuccess" if delete else "ResourceWriteSuccess"
    return _envelope(f"/subscriptions/{subscription}", resource_id, f"Microsoft.Resources.{kind}", data, "2")


def resource_group_delete_event(world: World, subscription: str, group: str) -> dict[str, Any]:
    """One ResourceDeleteSuccess for the group on the subscription topic (none per resource in it)."""
    return resource_event(
        world,
        subscription,
        f"/subscriptions/{subscription}/resourceGroups/{group}",
        "Microsoft.Resources/subscriptions/resourceGroups/delete",
        delete=True,
    )


def role_assignment_event(world: World, assignment_id: str, *, delete: bool) -> dict[str, Any]:
    subscription = (
        assignment_id.split("/")[2] if assignment_id.startswith("/subscriptions/") else world.subscriptions[0]
    )
    verb = "delete" if delete else "write"
    return resource_event(
        world, subscription, assignment_id, f"Microsoft.Authorization/roleAssignments/{verb}", delete=delete
    )


def registry_write_event(world: World, registry: Registry) -> dict[str, Any]:
    return resource_event(
        world, registry.subscription, registry.resource_id, "Microsoft.ContainerRegistry/registries/write"
    )


def cluster_write_events(world: World, cluster: Cluster, pools_changed: bool) -> list[dict[str, Any]]:
    events = [
        resource_event(
            world,
            cluster.subscription,
            cluster.resource_id,
            "Microsoft.ContainerService/managedClusters/write",
        )
    ]
    if pools_changed:
        events += [
            resource_event(
                world,
                cluster.subscription,
                f"{cluster.resource_id}/agentPools/{p.name}",
                "Microsoft.ContainerService/managedClusters/agentPools/write",
            )
            for p in cluster.node_pools
        ]
    return events


def image_event(
    registry: Registry, repository: str, tag: str | None, digest: str, *, delete: bool
) -> dict[str, Any]:
    """ACR ImagePushed (subject repo:tag) / ImageDeleted (subject repo, by digest: no tag)."""
    target: dict[str, Any] = {
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": digest,
        "repository": repository,
    }
    if not delete:
        target.update(size=1024, length=1024, tag=tag)
    data = {
        "id": str(uuid.uuid4()),
        "timestamp": _now(),
        "action": "delete" if delete else "push",
        "location": registry.location,
        "target": target,
        "request": {
            "id": str(uuid.uuid4()),
            "host": registry.host,
            "method": "DELETE" if delete else "PUT",
            "useragent": "sandbox-timeline",
        },
    }
    kind = "ImageDeleted" if delete else "ImagePushed"
    subject = repository if delete else f"{repository}:{tag}"
    return _envelope(registry.resource_id, subject, f"Microsoft.ContainerRegistry.{kind}", data, "2.0")
