"""The Kubernetes API's vocabulary as the sandbox serves it: resource kinds, ``Status`` bodies, small
shared helpers (timestamps, generated-name suffixes, owner references).
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from sandbox.httpserver import Response

AKS_SERVER_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"  # AKS AAD server application (audience)
AKS_CLIENT_ID = "80faf920-1908-4b52-b5ef-a8e7bedfc67a"  # AKS AAD client application
AGE_AT_BUILD = 62 * 60  # pods present when the world is built look this old (seconds)
EVENT_TTL = 60 * 60  # kube-apiserver --event-ttl default
PARTIAL_LIST = "PartialObjectMetadataList"
SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
_SAFE = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand SafeEncodeString alphabet


class PkiLike(Protocol):
    @property
    def ca_pem(self) -> bytes: ...

    def issue(self, hosts: list[str]) -> tuple[Path, Path]: ...


class EntraLike(Protocol):
    def verify(self, token: str) -> dict[str, Any]: ...


def iso(ts: float) -> str:
    return _iso_second(int(ts))


@functools.lru_cache(maxsize=4096)
def _iso_second(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clone(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, scalars), much faster than copy.deepcopy."""
    return orjson.loads(orjson.dumps(value))


def safe_suffix(seed: str, length: int) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(_SAFE[b % len(_SAFE)] for b in digest[:length])


# --- resources ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    plural: str
    kind: str
    group: str  # "" for core
    version: str
    namespaced: bool
    short: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()  # field selector labels beyond metadata.name / metadata.namespace
    verbs: tuple[str, ...] = ("create", "delete", "get", "list", "patch", "update", "watch")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


RESOURCES: dict[str, Resource] = {
    r.plural: r
    for r in (
        Resource("namespaces", "Namespace", "", "v1", False, ("ns",), ("status.phase",)),
        Resource("nodes", "Node", "", "v1", False, ("no",), ("spec.unschedulable",)),
        Resource(
            "pods",
            "Pod",
            "",
            "v1",
            True,
            ("po",),
            (
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            ),
        ),
        Resource(
            "events",
            "Event",
            "",
            "v1",
            True,
            ("ev",),
            (
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ),
        ),
        Resource("serviceaccounts", "ServiceAccount", "", "v1", True, ("sa",)),
        Resource("secrets", "Secret", "", "v1", True, (), ("type",)),
        Resource("deployments", "Deployment", "apps", "v1", True, ("deploy",)),
        Resource("replicasets", "ReplicaSet", "apps", "v1", True, ("rs",), ("status.replicas",)),
        Resource("statefulsets", "StatefulSet", "apps", "v1", True, ("sts",)),
        Resource("daemonsets", "DaemonSet", "apps", "v1", True, ("ds",)),
        Resource("jobs", "Job", "batch", "v1", True, (), ("status.successful",)),
        Resource("cronjobs", "CronJob", "batch", "v1", True, ("cj",)),
    )
}
GROUPS: dict[str, list[Resource]] = {}
for _r in RESOURCES.values():
    GROUPS.setdefault(_r.api_version, []).append(_r)


def _field_value(obj: dict[str, Any], label: str) -> str:
    if label == "source":
        return str((obj.get("source") or {}).get("component", ""))
    cur: Any = obj
    for part in label.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


# --- status bodies ---------------------------------------------------------------------------


def status_body(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def status_response(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> Response:
    return Response(
        code,
        json.dumps(status_body(code, reason, message, details)).encode(),
        content_type="application/json",
    )


def not_found(resource: Resource, name: str) -> Response:
    kind = resource.plural if not resource.group else f"{resource.plural}.{resource.group}"
    details = {"name": name, "kind": resource.plural}
    if resource.group:
        details["group"] = resource.group
    return status_response(404, "NotFound", f'{kind} "{name}" not found', details)


# --- small pieces ----------------------------------------------------------------------------


def _pod_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and all(
        c.get("ready") for c in status.get("containerStatuses") or []
    )


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def _b64json(value: Any) -> str:
    return base64.b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()


def _container(name: str, image: str) -> dict[str, Any]:
    return {"name": name, "image": image, "resources": {}}


def _tag_of(image: str) -> str | None:
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "digest"
    return last.split(":", 1)[1] if ":" in last else None


def _owner(api_version: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _json(status: int, body: Any) -> Response:
    return Response(status, json.dumps(body, separators=(",", ":")).encode(), content_type="application/json")


def _merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict) and isinstance(target.get(k), dict):
            _merge_patch(target[k], v)
        else:
            target[k] = copy.deepcopy(v)
