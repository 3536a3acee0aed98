"""Plan: which clusters to re-check, and why (pure: events or a schedule in, audit requests out).

An event says what changed, never what it affects: a role-assignment delete carries no principal,
an image delete no tag. The plan answers from the **inventory** — what the last audits saw each
cluster use — and re-checks every cluster the change could touch rather than guessing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.cloud import active_cloud
from shared.errors import InputError
from shared.events import AzureEvent, ResourceId, parse_resource_id
from shared.rbac import scope_covers

log = logging.getLogger("pullwatch.plan")

#: Event types the planner acts on (the Event Grid subscriptions in infra/ filter to exactly these).
HANDLED_EVENT_TYPES: tuple[str, ...] = (
    "Microsoft.ContainerRegistry.ImagePushed",
    "Microsoft.ContainerRegistry.ImageDeleted",
    "Microsoft.ContainerService.NodePoolRollingSucceeded",
    "Microsoft.ContainerService.NodePoolRollingFailed",
    "Microsoft.Resources.ResourceWriteSuccess",
    "Microsoft.Resources.ResourceDeleteSuccess",
)

#: Resource Manager operations (``data.operationName``) the planner acts on.
HANDLED_OPERATIONS: tuple[str, ...] = (
    "Microsoft.Authorization/roleAssignments/write",
    "Microsoft.Authorization/roleAssignments/delete",
    "Microsoft.ContainerRegistry/registries/write",
    "Microsoft.ContainerRegistry/registries/delete",
    "Microsoft.ContainerRegistry/registries/replications/write",
    "Microsoft.ContainerRegistry/registries/replications/delete",
    "Microsoft.ContainerRegistry/registries/privateEndpointConnections/write",
    "Microsoft.ContainerRegistry/registries/privateEndpointConnections/delete",
    "Microsoft.ContainerService/managedClusters/write",
    "Microsoft.ContainerService/managedClusters/delete",
    "Microsoft.ContainerService/managedClusters/agentPools/write",
    "Microsoft.ContainerService/managedClusters/agentPools/delete",
    "Microsoft.Resources/subscriptions/resourceGroups/delete",
)


@dataclass(frozen=True)
class KnownCluster:
    """What the last audit of a cluster saw it use (stored by the audit worker)."""

    id: str
    registries: frozenset[str] = frozenset()  # login-server hosts its workloads pull from
    registry_ids: frozenset[str] = frozenset()  # ARM IDs of the ACRs among them (lower-case)
    images: frozenset[str] = frozenset()  # "host/repo:tag" (and "host/repo@digest")
    failing_images: frozenset[str] = frozenset()  # images whose pulls were failing
    registry_modes: Mapping[str, str] = field(default_factory=dict)  # registry host -> roleAssignmentMode

    @property
    def subscription(self) -> str:
        rid = parse_resource_id(self.id)
        return rid.subscription.lower() if rid else ""

    def repositories(self, host: str) -> set[str]:
        """Repositories of ``host`` this cluster uses (from its images)."""
        prefix = host.lower() + "/"
        return {
            _repository_of(image[len(prefix) :]) for image in self.images if image.lower().startswith(prefix)
        }


def _repository_of(path: str) -> str:
    """``repo:tag``, ``repo@digest`` or ``repo:tag@digest`` → ``repo``."""
    name = path.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


@dataclass(frozen=True)
class Scope:
    """What pullwatch watches (settings): empty means everything the identity can read."""

    subscriptions: frozenset[str] = frozenset()
    clusters: frozenset[str] = frozenset()

    @classmethod
    def of(cls, subscriptions: Iterable[str], clusters: Iterable[str]) -> Scope:
        return cls(
            frozenset(s.lower() for s in subscriptions), frozenset(c.lower().rstrip("/") for c in clusters)
        )

    def covers_subscription(self, subscription: str) -> bool:
        return not self.subscriptions or subscription.lower() in self.subscriptions

    def covers_cluster(self, cluster_id: str) -> bool:
        rid = parse_resource_id(cluster_id)
        if rid is None or not self.covers_subscription(rid.subscription):
            return False
        return not self.clusters or rid.top.lower() in self.clusters


MAX_MESSAGE_BYTES = 64 * 1024  # a Storage queue message's own limit
MAX_EVENT_ID_CHARS = 512  # longer event ids are rejected when the delivery is parsed
MAX_ITEM_CHARS = 256  # a reason or a hint value, cut to this length
MAX_LIST_CHARS = 8_000  # reasons, event ids and hints of one request: at most this much of each


def _bounded(items: Sequence[str], item_chars: int) -> tuple[str, ...]:
    """The first items that fit in :data:`MAX_LIST_CHARS` (each cut to ``item_chars``): the reasons
    and event ids of a storm are samples for whoever reads the logs; the audit is the same."""
    kept: list[str] = []
    used = 0
    for item in items:
        item = item[:item_chars]
        used += len(item) + 4
        if used > MAX_LIST_CHARS:
            break
        kept.append(item)
    return tuple(kept)


@dataclass(frozen=True)
class AuditRequest:
    """One queue message: audit one cluster (checks: "all" or catalogue groups), with the reasons."""

    cluster: str
    reasons: tuple[str, ...] = ()
    event_ids: tuple[str, ...] = ()
    hints: tuple[Mapping[str, str], ...] = ()
    nightly: bool = False

    def __post_init__(self) -> None:
        # Bounded, however many events merge into it: the request is one Table property (at most
        # 32 K characters) while it waits out the debounce window, and one queue message (64 KiB).
        object.__setattr__(self, "reasons", _bounded(self.reasons, MAX_ITEM_CHARS))
        object.__setattr__(self, "event_ids", _bounded(self.event_ids, MAX_EVENT_ID_CHARS))
        hints = tuple({k[:MAX_ITEM_CHARS]: v[:MAX_ITEM_CHARS] for k, v in h.items()} for h in self.hints)
        kept, used = [], 0
        for hint in hints:
            used += len(json.dumps(hint))
            if used > MAX_LIST_CHARS:
                break
            kept.append(hint)
        object.__setattr__(self, "hints", tuple(kept))

    def to_json(self) -> str:
        return json.dumps(
            {
                "cluster": self.cluster,
                "reasons": list(self.reasons),
                "event_ids": list(self.event_ids),
                "hints": [dict(h) for h in self.hints],
                "nightly": self.nightly,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> AuditRequest:
        """Parse a queue message; InputError (one line naming what is wrong) for anything that is
        not a bounded JSON object naming a managedCluster."""
        if len(text) > MAX_MESSAGE_BYTES:
            raise InputError(f"audit message is larger than {MAX_MESSAGE_BYTES} bytes ({len(text)})")
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"audit message is not JSON: {exc}") from None
        except RecursionError:
            raise InputError("audit message is not usable JSON: nested too deeply") from None
        if not isinstance(data, dict) or not isinstance(data.get("cluster"), str):
            raise InputError("audit message needs a 'cluster' resource ID")
        rid = parse_resource_id(data["cluster"])
        if rid is None or rid.kind != "microsoft.containerservice/managedclusters" or rid.rest.strip("/"):
            shown = data["cluster"][:200]
            raise InputError(f"audit message: {shown!r} is not a managedCluster resource ID")

        def strings(name: str) -> tuple[str, ...]:
            value = data.get(name) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InputError(f"audit message: {name!r} must be a list of strings")
            return tuple(value)

        hints = data.get("hints") or []
        if not isinstance(hints, list) or not all(isinstance(h, dict) for h in hints):
            raise InputError("audit message: 'hints' must be a list of objects")
        return cls(
            cluster=data["cluster"],
            reasons=strings("reasons"),
            event_ids=strings("event_ids"),
            hints=tuple({str(k): str(v) for k, v in h.items()} for h in hints),
            nightly=bool(data.get("nightly", False)),
        )

    def merged(self, other: AuditRequest) -> AuditRequest:
        def union(a: Sequence[Any], b: Sequence[Any]) -> tuple[Any, ...]:
            out = list(a)
            for item in b:
                if item not in out:
                    out.append(item)
            return tuple(out)

        return AuditRequest(
            self.cluster,
            union(self.reasons, other.reasons),
            union(self.event_ids, other.event_ids),
            union(self.hints, other.hints),
            self.nightly or other.nightly,
        )


@dataclass(frozen=True)
class Plan:
    audits: tuple[AuditRequest, ...] = ()
    ignored: tuple[tuple[str, str], ...] = ()  # (event id, why)
    forget: tuple[str, ...] = ()  # clusters deleted: drop their state
    discover: tuple[str, ...] = ()  # subscriptions to fan out (inventory unknown)


def plan_nightly(clusters: Iterable[str]) -> list[AuditRequest]:
    return [AuditRequest(cluster=c, reasons=("nightly audit",), nightly=True) for c in clusters]


def plan_events(events: Iterable[AzureEvent], inventory: Sequence[KnownCluster], scope: Scope) -> Plan:
    audits: dict[str, AuditRequest] = {}
    ignored: list[tuple[str, str]] = []
    forget: list[str] = []
    discover: list[str] = []
    known = [c for c in inventory if scope.covers_cluster(c.id)]

    def add(cluster_id: str, reason: str, event: AzureEvent, hint: Mapping[str, str] | None = None) -> None:
        request = AuditRequest(
            cluster=cluster_id, reasons=(reason,), event_ids=(event.id,), hints=(dict(hint),) if hint else ()
        )
        key = cluster_id.lower()
        audits[key] = audits[key].merged(request) if key in audits else request

    def ignore(event: AzureEvent, why: str) -> None:
        log.debug("event %s (%s) ignored: %s", event.id, event.type, why)
        ignored.append((event.id, why))

    for event in events:
        kind = event.short_type
        if event.type.startswith("Microsoft.ContainerRegistry."):
            _plan_acr(event, kind, known, scope, add, ignore)
        elif event.type.startswith("Microsoft.ContainerService."):
            cluster = parse_resource_id(event.source)
            if cluster is None or cluster.kind != "microsoft.containerservice/managedclusters":
                ignore(event, f"topic {event.source!r} is not a managedCluster")
            elif not scope.covers_cluster(cluster.top):
                ignore(event, "cluster outside the configured scope")
            elif kind in ("NodePoolRollingSucceeded", "NodePoolRollingFailed"):
                pool = str(event.data.get("nodePoolName") or "?")
                add(
                    cluster.top,
                    f"node pool {pool} rolled ({kind.removeprefix('NodePoolRolling').lower()})",
                    event,
                )
            else:
                ignore(event, f"{kind} does not change what the cluster can pull")
        else:
            _plan_resource(event, known, scope, add, ignore, forget, discover)
    return Plan(
        tuple(audits.values()), tuple(ignored), tuple(dict.fromkeys(forget)), tuple(dict.fromkeys(discover))
    )


def _registry_host(event: AzureEvent) -> str | None:
    request = event.data.get("request")
    host = request.get("host") if isinstance(request, Mapping) else None
    if isinstance(host, str) and host:
        return host.lower()
    rid = parse_resource_id(event.source)
    if rid and rid.name and rid.kind == "microsoft.containerregistry/registries":
        return active_cloud().acr_login_server(rid.name)
    return None


def _plan_acr(
    event: AzureEvent, kind: str, known: Sequence[KnownCluster], scope: Scope, add: Any, ignore: Any
) -> None:
    rid = parse_resource_id(event.source)
    if rid is None or rid.kind != "microsoft.containerregistry/registries":
        ignore(event, f"topic {event.source!r} is not a container registry")
        return
    if kind.startswith("Chart"):
        ignore(event, "Helm chart events do not change what kubelet pulls")
        return
    host = _registry_host(event)
    target = event.data.get("target")
    target = target if isinstance(target, Mapping) else {}
    repository = str(target.get("repository") or event.subject.split(":", 1)[0]).lower()
    tag = target.get("tag") or (event.subject.split(":", 1)[1] if ":" in event.subject else None)
    digest = target.get("digest")
    if not host or not repository:
        ignore(event, "image event without registry or repository")
        return
    matched = False
    for cluster in known:
        if host not in {h.lower() for h in cluster.registries}:
            continue
        if repository not in {r.lower() for r in cluster.repositories(host)}:
            continue
        if kind == "ImageDeleted":
            matched = True
            add(
                cluster.id,
                f"image deleted from {host}/{repository}",
                event,
                {
                    "kind": "image_deleted",
                    "registry": host,
                    "repository": repository,
                    "digest": str(digest or ""),
                },
            )
        elif kind == "ImagePushed":
            ref = f"{host}/{repository}:{tag}" if tag else None
            failing = {i.lower() for i in cluster.failing_images}
            if ref and ref.lower() in failing:
                matched = True
                add(
                    cluster.id,
                    f"{ref} was pushed; pulls of it were failing",
                    event,
                    {"kind": "image_pushed", "registry": host, "repository": repository, "tag": str(tag)},
                )
    if not matched:
        ignore(
            event,
            f"no watched cluster {'uses' if kind == 'ImageDeleted' else 'was failing on'} "
            f"{host}/{repository}{':' + str(tag) if tag else ''}",
        )


_ROLE_OPS = (
    "microsoft.authorization/roleassignments/write",
    "microsoft.authorization/roleassignments/delete",
)


def _plan_resource(
    event: AzureEvent,
    known: Sequence[KnownCluster],
    scope: Scope,
    add: Any,
    ignore: Any,
    forget: list[str],
    discover: list[str],
) -> None:
    operation = str(event.data.get("operationName") or "").lower()
    uri = str(event.data.get("resourceUri") or event.subject or "")
    rid = parse_resource_id(uri) if uri.startswith("/subscriptions/") else None
    if operation in _ROLE_OPS or "/providers/microsoft.authorization/roleassignments/" in uri.lower():
        marker = uri.lower().find("/providers/microsoft.authorization/roleassignments/")
        assignment_scope = uri[:marker] if marker >= 0 else uri
        if assignment_scope.startswith("/subscriptions/"):
            sub = assignment_scope.split("/")[2]
            if not scope.covers_subscription(sub):
                ignore(event, "role assignment outside the configured subscriptions")
                return
        verb = "deleted" if event.short_type == "ResourceDeleteSuccess" else "written"
        affected = [c for c in known if any(scope_covers(assignment_scope or "/", r) for r in c.registry_ids)]
        if not known and assignment_scope.startswith("/subscriptions/"):
            discover.append(assignment_scope.split("/")[2])
            return
        if not affected:
            ignore(
                event, f"no watched cluster pulls from a registry under {assignment_scope or 'that scope'}"
            )
            return
        for cluster in affected:
            add(
                cluster.id,
                f"role assignment {verb} at {assignment_scope}",
                event,
                {"kind": "role_assignment", "scope": assignment_scope},
            )
        return
    if rid is None:
        ignore(event, f"resource {uri!r} is not a resource ID")
        return
    if not scope.covers_subscription(rid.subscription):
        ignore(event, "resource outside the configured subscriptions")
        return
    if rid.namespace is None and event.short_type == "ResourceDeleteSuccess":
        _plan_container_delete(event, rid, known, add, ignore, forget)
        return
    if rid.kind == "microsoft.containerregistry/registries":
        registry_id = rid.top.lower()
        affected = [c for c in known if registry_id in c.registry_ids]
        if not affected:
            ignore(event, f"no watched cluster uses registry {rid.name}")
            return
        what = "deleted" if event.short_type == "ResourceDeleteSuccess" and not rid.rest else "changed"
        for cluster in affected:
            add(
                cluster.id,
                f"registry {rid.name} {what}{' (' + rid.rest.strip('/') + ')' if rid.rest else ''}",
                event,
                {"kind": "registry_changed", "registry_id": rid.top},
            )
        return
    if rid.kind == "microsoft.containerservice/managedclusters":
        if not scope.covers_cluster(rid.top):
            ignore(event, "cluster outside the configured scope")
            return
        if event.short_type == "ResourceDeleteSuccess" and not rid.rest:
            forget.append(rid.top)
            return
        if event.short_type == "ResourceActionSuccess":
            ignore(event, f"action {operation or '?'} does not change what the cluster can pull")
            return
        child = rid.rest.strip("/")
        add(rid.top, f"cluster {rid.name} changed{' (' + child + ')' if child else ''}", event)
        return
    ignore(event, f"{rid.kind or 'resource'} changes do not affect image pulls")


def _plan_container_delete(
    event: AzureEvent,
    rid: ResourceId,
    known: Sequence[KnownCluster],
    add: Any,
    ignore: Any,
    forget: list[str],
) -> None:
    """A resource group or subscription was deleted, and everything in it: forget the clusters it
    held, re-check the clusters that pulled from a registry it held (ARM sends no event per child)."""
    container = rid.top
    what = (
        f"resource group {rid.resource_group}" if rid.resource_group else f"subscription {rid.subscription}"
    )
    removed = [c for c in known if scope_covers(container, c.id)]
    forget.extend(c.id for c in removed)
    matched = bool(removed)
    for cluster in known:
        if cluster in removed:
            continue
        for registry_id in sorted(r for r in cluster.registry_ids if scope_covers(container, r)):
            matched = True
            name = registry_id.rsplit("/", 1)[-1]
            add(
                cluster.id,
                f"{what} deleted, with registry {name}",
                event,
                {"kind": "registry_changed", "registry_id": registry_id},
            )
    if not matched:
        ignore(event, f"no watched cluster or registry in {what}")


def known_cluster_from_dict(data: Mapping[str, Any]) -> KnownCluster:
    return KnownCluster(
        id=str(data["id"]),
        registries=frozenset(data.get("registries", ())),
        registry_ids=frozenset(str(r).lower() for r in data.get("registry_ids", ())),
        images=frozenset(data.get("images", ())),
        failing_images=frozenset(data.get("failing_images", ())),
        registry_modes=dict(data.get("registry_modes", {})),
    )


def known_cluster_to_dict(cluster: KnownCluster) -> dict[str, Any]:
    return {
        "id": cluster.id,
        "registries": sorted(cluster.registries),
        "registry_ids": sorted(cluster.registry_ids),
        "images": sorted(cluster.images),
        "failing_images": sorted(cluster.failing_images),
        "registry_modes": dict(cluster.registry_modes),
    }
