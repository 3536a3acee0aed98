"""Kubernetes API objects (dicts, as the API server sends them) → the cluster-side facts of
:mod:`shared.workloads` (pure): owner resolution, pod templates, nodes, events, pull secrets.

Public interface::

    SnapshotBuilder(cluster, *, read_secrets)  .add_<kind>(obj) ... .build(api_calls) -> Snapshot
    snapshot_from_objects(cluster, objects) -> Snapshot
    workload_from_template(...), node_from_object(obj), event_from_object(obj), secret_from_object(...)
    parse_docker_config(secret_type, content) -> {key: (username, password)}   raises ValueError (quoting no content)
    secret_content(obj) -> (type, content | None, error | None)
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from shared.workloads import (
    ARCH_LABEL,
    DOCKER_CONFIG_JSON,
    OS_LABEL,
    POOL_LABELS,
    PULL_EVENT_REASONS,
    PULL_SECRET_KEYS,
    PULL_SECRET_TYPES,
    AuthEntry,
    ContainerFacts,
    ContainerKind,
    ContainerWaiting,
    EventFacts,
    NodeFacts,
    PodFacts,
    Requirement,
    SecretFacts,
    ServiceAccountFacts,
    Snapshot,
    Taint,
    Toleration,
    WorkloadFacts,
    parse_time,
)


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _controller(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """The (kind, name) of the object's controller owner (the one with controller: true, else
    the first owner reference)."""
    refs = _meta(obj).get("ownerReferences") or []
    chosen = None
    for ref in refs:
        if not isinstance(ref, Mapping):
            continue
        if ref.get("controller"):
            chosen = ref
            break
        chosen = chosen or ref
    if chosen is None or not chosen.get("kind") or not chosen.get("name"):
        return None
    return str(chosen["kind"]), str(chosen["name"])


def _names(items: Any) -> tuple[str, ...]:
    out = []
    for item in items or []:
        if isinstance(item, Mapping) and item.get("name"):
            out.append(str(item["name"]))
    return tuple(dict.fromkeys(out))


_SPEC_KEYS: tuple[tuple[str, ContainerKind], ...] = (
    ("initContainers", "init"),
    ("containers", "container"),
    ("ephemeralContainers", "ephemeral"),
)
_STATUS_KEYS: tuple[tuple[str, ContainerKind], ...] = (
    ("initContainerStatuses", "init"),
    ("containerStatuses", "container"),
    ("ephemeralContainerStatuses", "ephemeral"),
)


def _containers(spec: Mapping[str, Any]) -> tuple[ContainerFacts, ...]:
    out: list[ContainerFacts] = []
    for key, kind in _SPEC_KEYS:
        for c in spec.get(key) or []:
            if isinstance(c, Mapping):
                out.append(ContainerFacts(str(c.get("name") or ""), str(c.get("image") or ""), kind))
    return tuple(out)


def _requirements(term: Mapping[str, Any]) -> tuple[Requirement, ...]:
    reqs: list[Requirement] = []
    for expr in term.get("matchExpressions") or []:
        if isinstance(expr, Mapping):
            reqs.append(
                (
                    str(expr.get("key") or ""),
                    str(expr.get("operator") or ""),
                    tuple(str(v) for v in expr.get("values") or []),
                )
            )
    for expr in term.get("matchFields") or []:
        if isinstance(expr, Mapping):  # matchFields supports metadata.name only
            reqs.append(
                (
                    "field:" + str(expr.get("key") or ""),
                    str(expr.get("operator") or ""),
                    tuple(str(v) for v in expr.get("values") or []),
                )
            )
    return tuple(reqs)


def workload_from_template(
    namespace: str, kind: str, name: str, pod_spec: Mapping[str, Any]
) -> WorkloadFacts:
    """A workload's facts from its pod template's spec (or a bare pod's spec)."""
    affinity = (pod_spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = tuple(_requirements(t) for t in required.get("nodeSelectorTerms") or [] if isinstance(t, Mapping))
    tolerations = tuple(
        Toleration(
            str(t.get("key") or ""),
            str(t.get("operator") or "Equal"),
            str(t.get("value") or ""),
            str(t.get("effect") or ""),
        )
        for t in pod_spec.get("tolerations") or []
        if isinstance(t, Mapping)
    )
    selector = pod_spec.get("nodeSelector") or {}
    return WorkloadFacts(
        namespace=namespace,
        kind=kind,
        name=name,
        containers=_containers(pod_spec),
        image_pull_secrets=_names(pod_spec.get("imagePullSecrets")),
        service_account=str(
            pod_spec.get("serviceAccountName") or pod_spec.get("serviceAccount") or "default"
        ),
        node_selector={str(k): str(v) for k, v in selector.items()} if isinstance(selector, Mapping) else {},
        node_affinity=terms,
        tolerations=tolerations,
    )


def node_from_object(obj: Mapping[str, Any]) -> NodeFacts:
    meta = _meta(obj)
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    spec = obj.get("spec") or {}
    info = (obj.get("status") or {}).get("nodeInfo") or {}
    pool = next((labels[k] for k in POOL_LABELS if labels.get(k)), "") or str(meta.get("name") or "")
    taints = tuple(
        Taint(str(t.get("key") or ""), str(t.get("value") or ""), str(t.get("effect") or ""))
        for t in spec.get("taints") or []
        if isinstance(t, Mapping)
    )
    return NodeFacts(
        name=str(meta.get("name") or ""),
        os=labels.get(OS_LABEL) or str(info.get("operatingSystem") or "linux"),
        arch=labels.get(ARCH_LABEL) or str(info.get("architecture") or "amd64"),
        pool=pool,
        labels=labels,
        taints=taints,
        unschedulable=bool(spec.get("unschedulable")),
    )


def event_from_object(obj: Mapping[str, Any]) -> EventFacts | None:
    involved = obj.get("involvedObject") or {}
    if involved.get("kind") != "Pod" or obj.get("reason") not in PULL_EVENT_REASONS:
        return None
    first = parse_time(obj.get("firstTimestamp")) or parse_time(obj.get("eventTime"))
    last = (
        parse_time(obj.get("lastTimestamp"))
        or parse_time((obj.get("series") or {}).get("lastObservedTime"))
        or first
    )
    count = obj.get("count") or (obj.get("series") or {}).get("count") or 1
    return EventFacts(
        namespace=str(involved.get("namespace") or _meta(obj).get("namespace") or ""),
        pod=str(involved.get("name") or ""),
        reason=str(obj.get("reason")),
        message=str(obj.get("message") or ""),
        type=str(obj.get("type") or "Warning"),
        count=int(count) if isinstance(count, int) else 1,
        first_seen=first,
        last_seen=last,
    )


def parse_docker_config(secret_type: str, content: bytes) -> dict[str, tuple[str | None, str | None]]:
    """The ``auths`` of a pull secret's decoded content: key -> (username, password).

    ``kubernetes.io/dockerconfigjson`` holds ``{"auths": {…}}``; ``kubernetes.io/dockercfg`` holds
    the map itself. Raises ValueError with a reason that quotes no content.
    """
    try:
        data = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("content is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("content is not a JSON object")
    if secret_type == DOCKER_CONFIG_JSON:
        if "auths" not in data:
            raise ValueError("no 'auths' object")
        data = data["auths"]
        if not isinstance(data, dict):
            raise ValueError("'auths' is not an object")
    if not data:
        raise ValueError("'auths' has no entries")
    out: dict[str, tuple[str | None, str | None]] = {}
    for key, entry in data.items():
        if not isinstance(entry, dict):
            raise ValueError(f"entry {key!r} is not an object")
        username = entry.get("username") if isinstance(entry.get("username"), str) else None
        password = entry.get("password") if isinstance(entry.get("password"), str) else None
        if "auth" in entry and (username is None or password is None):
            raw = entry.get("auth")
            try:
                decoded = base64.b64decode(raw or "", validate=True).decode("utf-8")
            except (binascii.Error, ValueError, TypeError):
                raise ValueError(f"entry {key!r}: 'auth' is not base64 of user:password") from None
            user, sep, pw = decoded.partition(":")
            if not sep:
                raise ValueError(f"entry {key!r}: 'auth' is not base64 of user:password")
            username, password = username or user, password or pw
        out[str(key)] = (username, password or None)
    return out


def secret_content(obj: Mapping[str, Any]) -> tuple[str, bytes | None, str | None]:
    """(type, decoded content, error) of a secret object as the API returns it (data base64)."""
    stype = str(obj.get("type") or "Opaque")
    key = PULL_SECRET_KEYS.get(stype)
    if key is None:
        return stype, None, None
    raw = (obj.get("data") or {}).get(key)
    if not raw:
        return stype, None, f"no {key} key in data"
    try:
        return stype, base64.b64decode(raw, validate=True), None
    except (binascii.Error, ValueError):
        return stype, None, f"{key} is not base64"


def secret_from_object(
    obj: Mapping[str, Any], *, read_content: bool, known_type: str | None = None
) -> SecretFacts:
    meta = _meta(obj)
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    stype = str(obj["type"]) if obj.get("type") else known_type
    if not read_content or stype not in PULL_SECRET_TYPES or "data" not in obj:
        return SecretFacts(namespace, name, stype)
    stype, content, error = secret_content(obj)
    if error is not None or content is None:
        return SecretFacts(namespace, name, stype, auths=(), content_error=error or "empty content")
    try:
        parsed = parse_docker_config(stype, content)
    except ValueError as exc:
        return SecretFacts(namespace, name, stype, auths=(), content_error=str(exc))
    auths = tuple(AuthEntry(key, user, bool(pw)) for key, (user, pw) in parsed.items())
    return SecretFacts(namespace, name, stype, auths=auths)


class SnapshotBuilder:
    """Collects raw API objects, page by page, into a :class:`Snapshot`.

    Feed controllers before pods (owner resolution needs the ReplicaSet → Deployment and
    Job → CronJob maps). Objects are reduced to facts as they arrive; nothing raw is kept.
    """

    def __init__(self, cluster: str, *, read_secrets: bool = False) -> None:
        self.cluster = cluster
        self.read_secrets = read_secrets
        self.nodes: list[NodeFacts] = []
        self._workloads: dict[tuple[str, str], WorkloadFacts] = {}
        self._extra_containers: dict[tuple[str, str], list[ContainerFacts]] = defaultdict(list)
        #: (namespace, ReplicaSet or Job name) -> the workload ref that owns it
        self._owners: dict[tuple[str, str, str], str] = {}
        self.pods: list[PodFacts] = []
        self.events: list[EventFacts] = []
        self.service_accounts: list[ServiceAccountFacts] = []
        self._secrets: dict[tuple[str, str], SecretFacts] = {}
        self.unreadable: dict[str, str] = {}

    # controllers ------------------------------------------------------------------------------
    def _template_workload(self, obj: Mapping[str, Any], kind: str, template_path: tuple[str, ...]) -> None:
        meta = _meta(obj)
        node: Any = obj
        for key in template_path:
            node = (node or {}).get(key) if isinstance(node, Mapping) else None
        spec = node if isinstance(node, Mapping) else {}
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        w = workload_from_template(ns, kind, name, spec)
        self._workloads[(ns, w.ref)] = w

    def add_deployment(self, obj: Mapping[str, Any]) -> None:
        self._template_workload(obj, "Deployment", ("spec", "template", "spec"))

    def add_statefulset(self, obj: Mapping[str, Any]) -> None:
        self._template_workload(obj, "StatefulSet", ("spec", "template", "spec"))

    def add_daemonset(self, obj: Mapping[str, Any]) -> None:
        self._template_workload(obj, "DaemonSet", ("spec", "template", "spec"))

    def add_cronjob(self, obj: Mapping[str, Any]) -> None:
        self._template_workload(obj, "CronJob", ("spec", "jobTemplate", "spec", "template", "spec"))

    def add_replicaset(self, obj: Mapping[str, Any]) -> None:
        meta = _meta(obj)
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        owner = _controller(obj)
        if owner is not None:
            self._owners[(ns, "ReplicaSet", name)] = f"{owner[0]}/{owner[1]}"
        else:  # a bare ReplicaSet is a workload of its own
            self._template_workload(obj, "ReplicaSet", ("spec", "template", "spec"))
            self._owners[(ns, "ReplicaSet", name)] = f"ReplicaSet/{name}"

    def add_job(self, obj: Mapping[str, Any]) -> None:
        meta = _meta(obj)
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        owner = _controller(obj)
        if owner is not None and owner[0] == "CronJob":
            self._owners[(ns, "Job", name)] = f"CronJob/{owner[1]}"
        else:
            self._template_workload(obj, "Job", ("spec", "template", "spec"))
            self._owners[(ns, "Job", name)] = f"Job/{name}"

    # pods -------------------------------------------------------------------------------------
    def owner_ref(self, namespace: str, pod_name: str, controller: tuple[str, str] | None) -> str:
        """The workload a pod belongs to: through its ReplicaSet to the Deployment, through its
        Job to the CronJob; a pod owned by nothing is its own workload (``Pod/<name>``)."""
        if controller is None:
            return f"Pod/{pod_name}"
        kind, name = controller
        if kind in ("ReplicaSet", "Job"):
            return self._owners.get((namespace, kind, name), f"{kind}/{name}")
        return f"{kind}/{name}"

    def add_pod(self, obj: Mapping[str, Any]) -> None:
        meta = _meta(obj)
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        owner = self.owner_ref(ns, name, _controller(obj))
        key = (ns, owner)
        if key not in self._workloads:
            # a bare pod, or a pod of a controller we do not list (an operator's custom resource,
            # a ReplicaSet whose Deployment is gone): the pod's own spec describes the workload
            kind, _, wname = owner.partition("/")
            self._workloads[key] = workload_from_template(ns, kind, wname, spec)
        else:
            for c in spec.get("ephemeralContainers") or []:
                if isinstance(c, Mapping) and c.get("image"):
                    self._extra_containers[key].append(
                        ContainerFacts(str(c.get("name") or ""), str(c["image"]), "ephemeral")
                    )
        images: dict[tuple[str, str], str] = {}
        for c in _containers(spec):
            images[(c.kind, c.name)] = c.image
        waiting: list[ContainerWaiting] = []
        for skey, kind in _STATUS_KEYS:
            for cs in status.get(skey) or []:
                state = (cs.get("state") or {}).get("waiting") if isinstance(cs, Mapping) else None
                if not isinstance(state, Mapping) or not state.get("reason"):
                    continue
                cname = str(cs.get("name") or "")
                last = (cs.get("lastState") or {}).get("terminated")
                last = last if isinstance(last, Mapping) else {}
                exit_code = last.get("exitCode")
                waiting.append(
                    ContainerWaiting(
                        container=cname,
                        image=images.get((kind, cname)) or str(cs.get("image") or ""),
                        reason=str(state["reason"]),
                        message=str(state.get("message") or ""),
                        kind=kind,
                        last_exit_code=exit_code if isinstance(exit_code, int) else None,
                        last_message=str(last.get("message") or "")[:1000],
                    )
                )
        self.pods.append(
            PodFacts(
                namespace=ns,
                name=name,
                owner=owner,
                created=parse_time(meta.get("creationTimestamp")),
                node=str(spec["nodeName"]) if spec.get("nodeName") else None,
                phase=str(status.get("phase") or "Unknown"),
                waiting=tuple(waiting),
            )
        )

    # the rest ---------------------------------------------------------------------------------
    def add_node(self, obj: Mapping[str, Any]) -> None:
        self.nodes.append(node_from_object(obj))

    def add_event(self, obj: Mapping[str, Any]) -> None:
        event = event_from_object(obj)
        if event is not None:
            self.events.append(event)

    def add_service_account(self, obj: Mapping[str, Any]) -> None:
        meta = _meta(obj)
        self.service_accounts.append(
            ServiceAccountFacts(
                str(meta.get("namespace") or ""),
                str(meta.get("name") or ""),
                _names(obj.get("imagePullSecrets")),
            )
        )

    def add_secret(self, obj: Mapping[str, Any], *, known_type: str | None = None) -> None:
        """A secret, from a full object or a metadata-only item. A pull-secret-typed item replaces
        a name-only item of the same secret."""
        facts = secret_from_object(obj, read_content=self.read_secrets, known_type=known_type)
        key = (facts.namespace, facts.name)
        old = self._secrets.get(key)
        if (
            old is None
            or (old.type is None and facts.type is not None)
            or (old.auths is None and facts.auths is not None)
        ):
            self._secrets[key] = facts

    def forget_secrets(self) -> None:
        """Drop what a secret list that failed half-way delivered."""
        self._secrets.clear()

    def build(self, api_calls: int = 0, collected_at: datetime | None = None) -> Snapshot:
        workloads = []
        for key, w in self._workloads.items():
            extra = self._extra_containers.get(key)
            if extra:
                have = set(w.containers)
                added = tuple(dict.fromkeys(c for c in extra if c not in have))
                w = WorkloadFacts(
                    w.namespace,
                    w.kind,
                    w.name,
                    w.containers + added,
                    w.image_pull_secrets,
                    w.service_account,
                    w.node_selector,
                    w.node_affinity,
                    w.tolerations,
                )
            workloads.append(w)
        return Snapshot(
            cluster=self.cluster,
            nodes=tuple(self.nodes),
            workloads=tuple(workloads),
            pods=tuple(self.pods),
            events=tuple(self.events),
            service_accounts=tuple(self.service_accounts),
            secrets=tuple(self._secrets.values()),
            collected_at=collected_at or datetime.now(UTC),
            api_calls=api_calls,
            secrets_read=self.read_secrets and "secrets" not in self.unreadable,
            unreadable=dict(self.unreadable),
        )


def snapshot_from_objects(
    cluster: str,
    objects: Mapping[str, Iterable[Mapping[str, Any]]],
    *,
    read_secrets: bool = False,
    collected_at: datetime | None = None,
) -> Snapshot:
    """A snapshot from plain API objects by kind (``{"pods": [...], "deployments": [...]}``):
    for tests and for callers that already hold the objects."""
    b = SnapshotBuilder(cluster, read_secrets=read_secrets)
    order = (
        "nodes",
        "deployments",
        "replicasets",
        "statefulsets",
        "daemonsets",
        "jobs",
        "cronjobs",
        "pods",
        "serviceaccounts",
        "events",
        "secrets",
    )
    adders = {
        "nodes": b.add_node,
        "deployments": b.add_deployment,
        "replicasets": b.add_replicaset,
        "statefulsets": b.add_statefulset,
        "daemonsets": b.add_daemonset,
        "jobs": b.add_job,
        "cronjobs": b.add_cronjob,
        "pods": b.add_pod,
        "serviceaccounts": b.add_service_account,
        "events": b.add_event,
        "secrets": b.add_secret,
    }
    unknown = set(objects) - set(order)
    if unknown:
        raise ValueError(f"unknown object kind(s): {', '.join(sorted(unknown))}")
    for kind in order:
        for obj in objects.get(kind, ()):
            adders[kind](obj)
    return b.build(collected_at=collected_at)
