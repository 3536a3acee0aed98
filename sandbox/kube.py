"""A Kubernetes API server per sandbox cluster, holding the objects the world describes.

Enough of the real API (core v1, apps/v1, batch/v1, discovery) for the official ``kubernetes``
client to work unmodified: list responses shaped as the API server shapes them (items without
``kind``/``apiVersion``), paging with ``limit``/``continue``, label and field selectors, metadata-only
lists (``as=PartialObjectMetadataList``), ``Status`` error bodies, bearer-token authentication (Entra
tokens with the AKS server audience on ``aad`` clusters). Objects are stored as dicts; each object's
JSON is cached so that a list of 20,000 pods costs one join per page.

``KubeCluster`` also builds the world's nodes, namespaces, service accounts, secrets and workloads
(Deployment → ReplicaSet → pods, StatefulSet, DaemonSet, Job, CronJob → Job → pod, Pod), and lets the
simulated kubelet (``sandbox/kubelet.py``) write pod statuses and events.
"""

from __future__ import annotations

import base64
import bisect
import copy
import functools
import hashlib
import json
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

import orjson
import yaml

from sandbox.httpserver import Request, Response, Server
from sandbox.metrics import RequestLog
from sandbox.world import Cluster, Namespace, NodePool, Workload, World

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


# --- selectors -------------------------------------------------------------------------------


class SelectorError(ValueError):
    pass


_LABEL_KEY = r"(?:[a-z0-9A-Z.\-_]+/)?[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?"
_SET_RE = re.compile(rf"^\s*({_LABEL_KEY})\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_RE = re.compile(rf"^\s*({_LABEL_KEY})\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")
_EXISTS_RE = re.compile(rf"^\s*(!?)\s*({_LABEL_KEY})\s*$")

LabelTest = Callable[[dict[str, str]], bool]


def _split_terms(text: str) -> list[str]:
    terms, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    terms.append(cur)
    return [t for t in terms if t.strip()]


def _set_test(key: str, values: set[str], inside: bool) -> LabelTest:
    return lambda labels: (labels.get(key) in values) == inside


def _equality_test(key: str, value: str, equal: bool) -> LabelTest:
    return lambda labels: (labels.get(key) == value) == equal


def _exists_test(key: str, present: bool) -> LabelTest:
    return lambda labels: (key in labels) == present


def parse_label_selector(text: str) -> list[LabelTest]:
    tests: list[LabelTest] = []
    for term in _split_terms(text):
        if m := _SET_RE.match(term):
            key, op = m.group(1), m.group(3)
            values = {v.strip() for v in m.group(4).split(",") if v.strip()}
            tests.append(_set_test(key, values, op == "in"))
        elif m := _EQ_RE.match(term):
            key, op, value = m.group(1), m.group(3), m.group(4)
            tests.append(_equality_test(key, value, op != "!="))
        elif m := _EXISTS_RE.match(term):
            neg, key = m.group(1) == "!", m.group(2)
            tests.append(_exists_test(key, not neg))
        else:
            raise SelectorError(f"unable to parse requirement: {term.strip()!r}")
    return tests


def parse_field_selector(text: str, resource: Resource) -> list[tuple[str, bool, str]]:
    out: list[tuple[str, bool, str]] = []
    allowed = ("metadata.name", "metadata.namespace", *resource.fields)
    for term in _split_terms(text):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not m:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        label, op, value = m.group(1), m.group(2), m.group(3)
        if label not in allowed:
            raise SelectorError(f"field label not supported: {label}")
        out.append((label, op == "!=", value))
    return out


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


# --- the store -------------------------------------------------------------------------------


class ObjectStore:
    """Objects by resource and ``ns/name`` key, in etcd key order, with cached JSON per object."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._objects: dict[str, dict[str, dict[str, Any]]] = {p: {} for p in RESOURCES}
        self._sorted: dict[str, list[str] | None] = {p: None for p in RESOURCES}
        self._json: dict[str, dict[str, bytes]] = {p: {} for p in RESOURCES}
        self._rv = 1000
        self.compacted_rv = 0

    @staticmethod
    def key(namespace: str | None, name: str) -> str:
        return f"{namespace}/{name}" if namespace else name

    def next_rv(self) -> str:
        with self.lock:
            self._rv += 1
            return str(self._rv)

    @property
    def rv(self) -> int:
        return self._rv

    def put(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        k = self.key(meta.get("namespace"), meta["name"])
        with self.lock:
            meta["resourceVersion"] = self.next_rv()
            table = self._objects[plural]
            if k not in table:
                self._sorted[plural] = None
            table[k] = obj
            self._json[plural].pop(k, None)
        return obj

    def touch(self, plural: str, obj: dict[str, Any]) -> None:
        """``obj`` (already stored) was changed in place: new resourceVersion, drop cached JSON."""
        self.put(plural, obj)

    def get(self, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._objects[plural].get(self.key(namespace, name))

    def delete(self, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        k = self.key(namespace, name)
        with self.lock:
            obj = self._objects[plural].pop(k, None)
            if obj is not None:
                self._sorted[plural] = None
                self._json[plural].pop(k, None)
                self.next_rv()
        return obj

    def values(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            if namespace is None:
                return list(self._objects[plural].values())
            return [o for o in self._objects[plural].values() if o["metadata"].get("namespace") == namespace]

    def sorted_keys(self, plural: str) -> list[str]:
        with self.lock:
            keys = self._sorted[plural]
            if keys is None:
                keys = sorted(self._objects[plural])
                self._sorted[plural] = keys
            return keys

    def object_json(self, plural: str, k: str) -> bytes:
        cached = self._json[plural].get(k)
        if cached is None:
            with self.lock:  # kubelet threads replace parts of objects in place
                cached = orjson.dumps(self._objects[plural][k])
            self._json[plural][k] = cached
        return cached

    def raw(self, plural: str, k: str) -> dict[str, Any] | None:
        return self._objects[plural].get(k)


# --- the cluster -----------------------------------------------------------------------------

PodCallback = Callable[["KubeCluster", dict[str, Any]], None]


@dataclass
class NodeInfo:
    name: str
    pool: NodePool
    ip: str
    labels: dict[str, str] = field(default_factory=dict)


class KubeCluster:
    """One AKS cluster's Kubernetes API (HTTPS) and objects."""

    def __init__(
        self,
        world: World,
        name: str,
        pki: PkiLike,
        entra: EntraLike | None,
        log: RequestLog,
        *,
        build: bool = True,
        continue_ttl: float = 300.0,
    ) -> None:
        self.world = world
        self.name = name
        self.cluster: Cluster = world.clusters[name]
        self.pki = pki
        self.entra = entra
        self.log = log
        self.token = secrets.token_hex(32)
        self.store = ObjectStore()
        self.continue_ttl = continue_ttl
        self.nodes: list[NodeInfo] = []
        self._on_create: list[PodCallback] = []
        self._on_delete: list[PodCallback] = []
        self._rr = 0
        self._pod_ip = 0
        self._rv_times: dict[int, float] = {}
        self._event_index: dict[tuple[str, str, str, str | None], str] = {}
        self._event_seq = 0
        self._pool_shape: tuple[tuple[str, str, str, int], ...] = ()
        self._eligible: dict[tuple[tuple[str, str], ...], list[NodeInfo]] = {}
        self._nodes_by_name: dict[str, NodeInfo] = {}
        self._server: Server | None = None
        self._reserved: socket.socket | None = None
        self.fqdn = f"{name}-dns-{safe_suffix(name, 8)}.hcp.{self.cluster.location}.azmk8s.io"
        self.built_at = time.time()
        if build:
            self.build()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> KubeCluster:
        cert = self.pki.issue([self.fqdn, "127.0.0.1"])
        self._server = Server(self._handle, cert=cert, name=f"kube-{self.name}").start()
        if self.cluster.private:
            # A private API server: its address answers nothing from where the app runs.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            self._reserved = sock
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None

    def __enter__(self) -> KubeCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def internal_url(self) -> str:
        """The listening API server (reachable even for private clusters; sandbox use only)."""
        if self._server is None:
            raise RuntimeError(f"cluster {self.name} is not started")
        return self._server.url

    @property
    def url(self) -> str:
        """The API server address the kubeconfig names (unreachable for private clusters)."""
        if self._reserved is not None:
            return f"https://127.0.0.1:{self._reserved.getsockname()[1]}"
        return self.internal_url

    @property
    def ca_pem(self) -> bytes:
        return self.pki.ca_pem

    def kubeconfig(self) -> str:
        """The kubeconfig ``listClusterUserCredential`` returns for this cluster (YAML text)."""
        c = self.cluster
        user_name = f"clusterUser_{c.resource_group}_{c.name}"
        user: dict[str, Any]
        if c.aad:
            user = {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1beta1",
                    "args": [
                        "get-token",
                        "--environment",
                        "AzurePublicCloud",
                        "--server-id",
                        AKS_SERVER_ID,
                        "--client-id",
                        AKS_CLIENT_ID,
                        "--tenant-id",
                        self.world.tenant,
                        "--login",
                        "devicecode",
                    ],
                    "command": "kubelogin",
                    "env": None,
                    "installHint": "\nkubelogin is not installed which is required to connect to AAD enabled "
                    "cluster.\n\nTo learn more, please go to https://aka.ms/aks/kubelogin\n",
                    "provideClusterInfo": False,
                }
            }
        else:
            user = {"token": self.token}
        doc = {
            "apiVersion": "v1",
            "clusters": [
                {
                    "cluster": {
                        "certificate-authority-data": base64.b64encode(self.ca_pem).decode(),
                        "server": self.url,
                    },
                    "name": c.name,
                }
            ],
            "contexts": [{"context": {"cluster": c.name, "user": user_name}, "name": c.name}],
            "current-context": c.name,
            "kind": "Config",
            "preferences": {},
            "users": [{"name": user_name, "user": user}],
        }
        return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)

    def on_pod_created(self, callback: PodCallback) -> None:
        self._on_create.append(callback)

    def on_pod_deleted(self, callback: PodCallback) -> None:
        self._on_delete.append(callback)

    # -- building the world's objects -------------------------------------------------------

    def build(self) -> None:
        created = self.built_at - AGE_AT_BUILD
        c = self.cluster
        self.sync_nodes(created - 86400)
        namespaces = dict(c.namespaces)
        for system in SYSTEM_NAMESPACES:
            namespaces.setdefault(system, Namespace(name=system))
        for namespace in namespaces.values():
            self._build_namespace(namespace, created)
        self.refresh_workload_status()

    def sync_nodes(self, created: float | None = None) -> None:
        """Nodes follow the world's node pools (a ``setCluster`` change may add, resize or drop pools).

        Pods stay where they are; a pool's new nodes are created now.
        """
        c = self.cluster
        shape = tuple((p.name, p.os, p.arch, p.count) for p in c.node_pools)
        if shape == self._pool_shape:
            return
        with self.store.lock:
            self._pool_shape = shape
            when = time.time() if created is None else created
            digits = int(hashlib.sha256(c.name.encode()).hexdigest(), 16) % 90000000 + 10000000
            wanted: list[NodeInfo] = []
            for pool in c.node_pools:
                for i in range(pool.count):
                    if pool.os == "windows":
                        name = f"aks{pool.name[:6]}{i:06d}"
                    else:
                        name = f"aks-{pool.name}-{digits}-vmss{_base36(i):0>6}"
                    known = next((n for n in self.nodes if n.name == name), None)
                    if known is not None and (known.pool.os, known.pool.arch) == (pool.os, pool.arch):
                        known.pool = pool
                        wanted.append(known)
                        continue
                    wanted.append(NodeInfo(name, pool, f"10.224.0.{4 + len(wanted)}"))
            keep = {n.name for n in wanted}
            for gone in [n for n in self.nodes if n.name not in keep]:
                self.store.delete("nodes", None, gone.name)
            old = {n.name for n in self.nodes}
            self.nodes = wanted
            self._nodes_by_name = {n.name: n for n in wanted}
            self._eligible.clear()
            for info in wanted:
                if info.name not in old or self.store.get("nodes", None, info.name) is None:
                    self._put_node(info, when)

    def _put_node(self, info: NodeInfo, created: float) -> None:
        pool, c = info.pool, self.cluster
        labels = {
            "agentpool": pool.name,
            "beta.kubernetes.io/arch": pool.arch,
            "beta.kubernetes.io/os": pool.os,
            "kubernetes.azure.com/agentpool": pool.name,
            "kubernetes.azure.com/cluster": f"MC_{c.resource_group}_{c.name}_{c.location}",
            "kubernetes.azure.com/mode": "system" if pool is c.node_pools[0] else "user",
            "kubernetes.azure.com/role": "agent",
            "kubernetes.io/arch": pool.arch,
            "kubernetes.io/hostname": info.name,
            "kubernetes.io/os": pool.os,
            "kubernetes.io/role": "agent",
            "node.kubernetes.io/instance-type": "Standard_D4ds_v5"
            if pool.arch == "amd64"
            else "Standard_D4pds_v5",
            "topology.kubernetes.io/region": c.location,
            "topology.kubernetes.io/zone": "0",
        }
        info.labels = labels
        version = c.kubernetes_version
        windows = pool.os == "windows"
        node = {
            "metadata": {
                "name": info.name,
                "uid": self._uid("node", info.name),
                "creationTimestamp": iso(created),
                "labels": labels,
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {
                "podCIDR": f"10.244.{self.nodes.index(info)}.0/24",
                "providerID": f"azure:///subscriptions/{c.subscription}/resourceGroups/mc_{c.resource_group}_{c.name}_{c.location}"
                f"/providers/Microsoft.Compute/virtualMachineScaleSets/aks-{pool.name}-vmss/virtualMachines/0",
            },
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": info.ip},
                    {"type": "Hostname", "address": info.name},
                ],
                "allocatable": {"cpu": "3860m", "memory": "12880Mi", "pods": "110"},
                "capacity": {"cpu": "4", "memory": "16365Mi", "pods": "110"},
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "kubelet is posting ready status",
                        "lastHeartbeatTime": iso(time.time()),
                        "lastTransitionTime": iso(created),
                    }
                ],
                "nodeInfo": {
                    "architecture": pool.arch,
                    "bootID": self._uid("boot", info.name),
                    "containerRuntimeVersion": "containerd://1.7.27-1"
                    if not windows
                    else "containerd://1.7.20+azure",
                    "kernelVersion": "5.15.0-1079-azure" if not windows else "10.0.20348.2966",
                    "kubeProxyVersion": f"v{version}",
                    "kubeletVersion": f"v{version}",
                    "machineID": self._uid("machine", info.name).replace("-", ""),
                    "operatingSystem": pool.os,
                    "osImage": "Ubuntu 22.04.5 LTS" if not windows else "Windows Server 2022 Datacenter",
                    "systemUUID": self._uid("system", info.name),
                },
            },
        }
        self.store.put("nodes", node)

    def _uid(self, *parts: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join((self.world.name, self.name, *parts))))

    def _meta(self, kind: str, ns: str | None, name: str, created: float, **extra: Any) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name}
        if ns:
            meta["namespace"] = ns
        meta["uid"] = self._uid(kind, ns or "", name)
        meta["creationTimestamp"] = iso(created)
        meta.update(extra)
        return meta

    def _build_namespace(self, ns: Namespace, created: float) -> None:
        self.store.put(
            "namespaces",
            {
                "metadata": self._meta(
                    "Namespace",
                    None,
                    ns.name,
                    created - 3600,
                    labels={"kubernetes.io/metadata.name": ns.name},
                ),
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            },
        )
        for sa, pulls in ns.service_accounts.items():
            obj: dict[str, Any] = {"metadata": self._meta("ServiceAccount", ns.name, sa, created - 3600)}
            if pulls:
                obj["imagePullSecrets"] = [{"name": p} for p in pulls]
            self.store.put("serviceaccounts", obj)
        if "default" not in ns.service_accounts:
            self.store.put(
                "serviceaccounts",
                {"metadata": self._meta("ServiceAccount", ns.name, "default", created - 3600)},
            )
        for secret in ns.secrets.values():
            data: dict[str, str] = {}
            if secret.auths is not None:
                auths: dict[str, dict[str, str]] = {}
                for host, entry in secret.auths.items():
                    e = dict(entry)
                    if "auth" not in e and "username" in e and "password" in e:
                        e["auth"] = base64.b64encode(f"{e['username']}:{e['password']}".encode()).decode()
                    auths[host] = e
                if secret.type == "kubernetes.io/dockercfg":
                    data[".dockercfg"] = _b64json(auths)
                else:
                    data[".dockerconfigjson"] = _b64json({"auths": auths})
            if secret.data:
                data.update(secret.data)
            self.store.put(
                "secrets",
                {
                    "metadata": self._meta("Secret", ns.name, secret.name, created - 3600),
                    "type": secret.type,
                    "data": data,
                },
            )
        for w in ns.workloads:
            self._build_workload(ns, w, created)

    # -- workloads ----------------------------------------------------------------------------

    def _pod_spec(self, ns: str, w: Workload, restart: str) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        if w.init_images:
            spec["initContainers"] = [
                _container(f"init-{i + 1}" if len(w.init_images) > 1 else "init", img)
                for i, img in enumerate(w.init_images)
            ]
        spec["containers"] = [_container(w.name, w.image)]
        spec["restartPolicy"] = restart
        spec["terminationGracePeriodSeconds"] = 30
        spec["dnsPolicy"] = "ClusterFirst"
        spec["serviceAccountName"] = w.service_account
        spec["serviceAccount"] = w.service_account
        spec["securityContext"] = {}
        spec["schedulerName"] = "default-scheduler"
        if w.image_pull_secrets is not None:
            spec["imagePullSecrets"] = [{"name": s} for s in w.image_pull_secrets]
        if w.node_pool:
            spec["nodeSelector"] = {"kubernetes.azure.com/agentpool": w.node_pool}
        return spec

    def _workload_object(
        self,
        kind: str,
        ns: str,
        name: str,
        created: float,
        labels: dict[str, str],
        spec: dict[str, Any],
        owner: dict[str, Any] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        meta = self._meta(kind, ns, name, created, labels=labels)
        if annotations:
            meta["annotations"] = annotations
        if owner:
            meta["ownerReferences"] = [owner]
        meta["generation"] = 1
        return {"metadata": meta, "spec": spec, "status": {}}

    def _build_workload(self, ns: Namespace, w: Workload, created: float) -> None:
        labels = {"app": w.name}
        template_spec = self._pod_spec(ns.name, w, "OnFailure" if w.kind in ("Job", "CronJob") else "Always")
        template = {"metadata": {"labels": dict(labels)}, "spec": template_spec}
        if w.kind == "Pod":
            self._create_pod_from(ns.name, w.name, labels, template_spec, None, created)
            return
        if w.kind == "Deployment":
            dep = self._workload_object(
                "Deployment",
                ns.name,
                w.name,
                created,
                labels,
                {
                    "replicas": w.replicas,
                    "selector": {"matchLabels": labels},
                    "template": template,
                    "strategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                    },
                    "revisionHistoryLimit": 10,
                    "progressDeadlineSeconds": 600,
                },
                annotations={"deployment.kubernetes.io/revision": "1"},
            )
            dep = self._put_workload("deployments", dep)
            self._new_replicaset(ns.name, w, dep, template, created)
            return
        if w.kind == "StatefulSet":
            sts = self._workload_object(
                "StatefulSet",
                ns.name,
                w.name,
                created,
                labels,
                {
                    "replicas": w.replicas,
                    "selector": {"matchLabels": labels},
                    "serviceName": w.name,
                    "template": template,
                    "podManagementPolicy": "OrderedReady",
                    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                },
            )
            sts = self._put_workload("statefulsets", sts)
            rev = f"{w.name}-{safe_suffix('sts' + ns.name + w.name + str(created), 10)}"
            for i in range(w.replicas):
                pod_labels = {
                    **labels,
                    "apps.kubernetes.io/pod-index": str(i),
                    "controller-revision-hash": rev,
                    "statefulset.kubernetes.io/pod-name": f"{w.name}-{i}",
                }
                self._create_pod_from(
                    ns.name,
                    f"{w.name}-{i}",
                    pod_labels,
                    template_spec,
                    _owner("apps/v1", "StatefulSet", sts),
                    created,
                )
            return
        if w.kind == "DaemonSet":
            ds = self._workload_object(
                "DaemonSet",
                ns.name,
                w.name,
                created,
                labels,
                {
                    "selector": {"matchLabels": labels},
                    "template": template,
                    "updateStrategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
                    },
                },
            )
            ds = self._put_workload("daemonsets", ds)
            for node in self._eligible_nodes(template_spec.get("nodeSelector"), linux_only=True):
                pod_labels = {
                    **labels,
                    "controller-revision-hash": safe_suffix("ds" + w.name + str(created), 10),
                    "pod-template-generation": "1",
                }
                name = self._generate_name(
                    "pods", ns.name, f"{w.name}-", ns.name + w.name + node.name + str(created)
                )
                self._create_pod_from(
                    ns.name,
                    name,
                    pod_labels,
                    template_spec,
                    _owner("apps/v1", "DaemonSet", ds),
                    created,
                    node=node,
                )
            return
        if w.kind == "Job":
            self._new_job(ns.name, w.name, w, template, created, None)
            return
        # CronJob: it has run once, so its Job (and the Job's pod) exists.
        cj = self._workload_object(
            "CronJob",
            ns.name,
            w.name,
            created - 3600,
            labels,
            {
                "schedule": "0 * * * *",
                "concurrencyPolicy": "Allow",
                "suspend": False,
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 1,
                "jobTemplate": {"metadata": {}, "spec": {"backoffLimit": 6, "template": template}},
            },
        )
        scheduled = int(created // 60)
        cj["status"] = {"lastScheduleTime": iso(scheduled * 60)}
        cj = self._put_workload("cronjobs", cj)
        self._new_job(
            ns.name, f"{w.name}-{scheduled}", w, template, scheduled * 60, _owner("batch/v1", "CronJob", cj)
        )

    def _put_workload(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a controller object; on a restart the existing one keeps its identity and age and
        gets a new generation with ``kubectl.kubernetes.io/restartedAt`` on its pod template."""
        meta = obj["metadata"]
        existing = self.store.get(plural, meta.get("namespace"), meta["name"])
        if existing is not None:
            meta["uid"] = existing["metadata"]["uid"]
            meta["creationTimestamp"] = existing["metadata"]["creationTimestamp"]
            meta["generation"] = int(existing["metadata"].get("generation", 1)) + 1
            template = obj["spec"].get("template") or obj["spec"].get("jobTemplate", {}).get("spec", {}).get(
                "template"
            )
            if isinstance(template, dict):
                template.setdefault("metadata", {}).setdefault("annotations", {})[
                    "kubectl.kubernetes.io/restartedAt"
                ] = iso(time.time())
            if plural == "deployments":
                revision = int(
                    existing["metadata"].get("annotations", {}).get("deployment.kubernetes.io/revision", "1")
                )
                meta.setdefault("annotations", {})["deployment.kubernetes.io/revision"] = str(revision + 1)
        return self.store.put(plural, obj)

    def _new_replicaset(
        self, ns: str, w: Workload, dep: dict[str, Any], template: dict[str, Any], created: float
    ) -> None:
        pth = safe_suffix(f"rs/{ns}/{w.name}/{created}", 10)
        rs_labels = {"app": w.name, "pod-template-hash": pth}
        rs_template = {"metadata": {"labels": dict(rs_labels)}, "spec": template["spec"]}
        rs = self._workload_object(
            "ReplicaSet",
            ns,
            f"{w.name}-{pth}",
            created,
            rs_labels,
            {"replicas": w.replicas, "selector": {"matchLabels": rs_labels}, "template": rs_template},
            owner=_owner("apps/v1", "Deployment", dep),
            annotations={
                "deployment.kubernetes.io/desired-replicas": str(w.replicas),
                "deployment.kubernetes.io/max-replicas": str(w.replicas + max(1, (w.replicas + 3) // 4)),
                "deployment.kubernetes.io/revision": "1",
            },
        )
        self.store.put("replicasets", rs)
        for i in range(w.replicas):
            name = self._generate_name("pods", ns, f"{w.name}-{pth}-", f"{ns}/{w.name}/{pth}/{i}/{created}")
            self._create_pod_from(
                ns, name, dict(rs_labels), template["spec"], _owner("apps/v1", "ReplicaSet", rs), created
            )

    def _new_job(
        self,
        ns: str,
        name: str,
        w: Workload,
        template: dict[str, Any],
        created: float,
        owner: dict[str, Any] | None,
    ) -> None:
        job = self._workload_object(
            "Job",
            ns,
            name,
            created,
            {"app": w.name},
            {
                "parallelism": 1,
                "completions": 1,
                "backoffLimit": 6,
                "completionMode": "NonIndexed",
                "suspend": False,
                "template": template,
            },
            owner=owner,
        )
        uid = job["metadata"]["uid"]
        job_labels = {
            "app": w.name,
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        }
        job["metadata"]["labels"] = job_labels
        job["spec"]["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        job["status"] = {"startTime": iso(created), "active": 1}
        self.store.put("jobs", job)
        pod_name = self._generate_name("pods", ns, f"{name}-", f"{ns}/{name}/{created}")
        self._create_pod_from(
            ns, pod_name, dict(job_labels), template["spec"], _owner("batch/v1", "Job", job), created
        )

    def _generate_name(self, plural: str, ns: str | None, prefix: str, seed: str) -> str:
        """``generateName``: prefix + 5 random-looking characters, retried on a clash as the API server does."""
        for attempt in range(100):
            name = prefix + safe_suffix(f"{seed}/{attempt}" if attempt else seed, 5)
            if self.store.get(plural, ns, name) is None:
                return name
        raise RuntimeError(f"cannot generate a free name for {prefix}")

    def _eligible_nodes(self, selector: dict[str, str] | None, linux_only: bool = False) -> list[NodeInfo]:
        key = tuple(sorted((selector or {}).items()))
        nodes = self._eligible.get(key)
        if nodes is None:
            if selector:
                nodes = [n for n in self.nodes if all(n.labels.get(k) == v for k, v in selector.items())]
            else:
                nodes = [n for n in self.nodes if n.pool.os == "linux"]
            self._eligible[key] = nodes
        return nodes

    def _schedule(self, spec: dict[str, Any]) -> NodeInfo | None:
        self.sync_nodes()
        nodes = self._eligible_nodes(spec.get("nodeSelector"))
        if not nodes:
            return None
        with self.store.lock:
            node = nodes[self._rr % len(nodes)]
            self._rr += 1
        return node

    def _create_pod_from(
        self,
        ns: str,
        name: str,
        labels: dict[str, str],
        spec: dict[str, Any],
        owner: dict[str, Any] | None,
        created: float,
        node: NodeInfo | None = None,
        uid: str | None = None,
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": name,
            "namespace": ns,
            "uid": uid or self._uid("Pod", ns, name, str(created)),
            "creationTimestamp": iso(created),
            "labels": labels,
        }
        if owner:
            meta["ownerReferences"] = [owner]
        pod = {"metadata": meta, "spec": clone(spec), "status": {}}
        self._admit_and_schedule(pod, created, node)
        self.store.put("pods", pod)
        self._scheduling_event(pod, created)
        return pod

    def _admit_and_schedule(self, pod: dict[str, Any], created: float, node: NodeInfo | None = None) -> None:
        """ServiceAccount admission (pull secrets), scheduling, and the Pending status kubelet starts from."""
        spec = pod["spec"]
        ns = pod["metadata"]["namespace"]
        sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        spec["serviceAccountName"] = sa_name
        spec["serviceAccount"] = sa_name
        sa = self.store.get("serviceaccounts", ns, sa_name)
        if not spec.get("imagePullSecrets") and sa and sa.get("imagePullSecrets"):
            spec["imagePullSecrets"] = clone(sa["imagePullSecrets"])
        for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
            c.setdefault(
                "imagePullPolicy",
                "Always" if _tag_of(c.get("image", "")) in (None, "latest") else "IfNotPresent",
            )
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("resources", {})
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault(
            "tolerations",  # DefaultTolerationSeconds admission
            [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
        )
        target = None
        if spec.get("nodeName"):
            target = self.node(spec["nodeName"])
        else:
            target = node or self._schedule(spec)
        status: dict[str, Any] = {"phase": "Pending", "qosClass": "BestEffort"}
        if target is None and spec.get("nodeName"):
            pass  # bound to a node that does not exist: no kubelet ever reports on it
        elif target is None:
            status["conditions"] = [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": f"0/{len(self.nodes)} nodes are available: {len(self.nodes)} node(s) didn't "
                    f"match Pod's node affinity/selector. preemption: 0/{len(self.nodes)} nodes are available: "
                    f"{len(self.nodes)} Preemption is not helpful for scheduling.",
                    "lastProbeTime": None,
                    "lastTransitionTime": iso(created),
                }
            ]
        else:
            spec["nodeName"] = target.name
            with self.store.lock:
                self._pod_ip += 1
                n = self._pod_ip
            status.update(
                {
                    "hostIP": target.ip,
                    "hostIPs": [{"ip": target.ip}],
                    "podIP": f"10.244.{n // 250}.{n % 250 + 2}",
                    "podIPs": [{"ip": f"10.244.{n // 250}.{n % 250 + 2}"}],
                    "startTime": iso(created + 1),
                    "conditions": [
                        {
                            "type": "PodScheduled",
                            "status": "True",
                            "lastProbeTime": None,
                            "lastTransitionTime": iso(created),
                        }
                    ],
                }
            )
        pod["status"] = status

    def refresh_workload_status(self) -> None:
        """Controllers' view: workload statuses from their pods (ready = Running and every container ready)."""
        with self.store.lock:
            by_owner: dict[str, list[dict[str, Any]]] = {}
            for pod in self.store.values("pods"):
                for ref in pod["metadata"].get("ownerReferences") or []:
                    by_owner.setdefault(ref["uid"], []).append(pod)
            counts: dict[str, tuple[int, int, int]] = {}  # uid -> (pods, ready, succeeded)
            for uid, pods in by_owner.items():
                ready = sum(1 for p in pods if _pod_ready(p))
                done = sum(1 for p in pods if p["status"].get("phase") == "Succeeded")
                counts[uid] = (len(pods), ready, done)
            for rs in self.store.values("replicasets"):
                n, ready, _ = counts.get(rs["metadata"]["uid"], (0, 0, 0))
                rs["status"] = {
                    "replicas": n,
                    "fullyLabeledReplicas": n,
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                    "observedGeneration": 1,
                }
                if not ready:
                    rs["status"].pop("readyReplicas")
                    rs["status"].pop("availableReplicas")
                self.store.touch("replicasets", rs)
            rs_by_owner: dict[str, list[dict[str, Any]]] = {}
            for rs in self.store.values("replicasets"):
                for ref in rs["metadata"].get("ownerReferences") or []:
                    rs_by_owner.setdefault(ref["uid"], []).append(rs)
            for dep in self.store.values("deployments"):
                sets = rs_by_owner.get(dep["metadata"]["uid"], [])
                live = [r for r in sets if r["spec"].get("replicas", 0)] or sets
                owned = live[-1] if live else None  # the current ReplicaSet
                n = sum(counts.get(r["metadata"]["uid"], (0, 0, 0))[0] for r in sets)
                ready = sum(counts.get(r["metadata"]["uid"], (0, 0, 0))[1] for r in sets)
                want = dep["spec"].get("replicas", 1)
                created = dep["metadata"]["creationTimestamp"]
                available = ready >= want
                dep["status"] = {
                    "observedGeneration": dep["metadata"].get("generation", 1),
                    "replicas": n,
                    "updatedReplicas": n,
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                    "unavailableReplicas": max(0, want - ready),
                    "conditions": [
                        {
                            "type": "Available",
                            "status": "True" if available else "False",
                            "reason": "MinimumReplicasAvailable"
                            if available
                            else "MinimumReplicasUnavailable",
                            "message": "Deployment has minimum availability."
                            if available
                            else "Deployment does not have minimum availability.",
                            "lastUpdateTime": created,
                            "lastTransitionTime": created,
                        },
                        {
                            "type": "Progressing",
                            "status": "True",
                            "reason": "NewReplicaSetAvailable" if available else "ReplicaSetUpdated",
                            "message": f'ReplicaSet "{owned["metadata"]["name"] if owned else ""}" has '
                            + ("successfully progressed." if available else "is progressing."),
                            "lastUpdateTime": created,
                            "lastTransitionTime": created,
                        },
                    ],
                }
                for k in ("readyReplicas", "availableReplicas", "unavailableReplicas"):
                    if not dep["status"][k]:
                        dep["status"].pop(k)
                self.store.touch("deployments", dep)
            for sts in self.store.values("statefulsets"):
                n, ready, _ = counts.get(sts["metadata"]["uid"], (0, 0, 0))
                rev = f"{sts['metadata']['name']}-{safe_suffix('rev' + sts['metadata']['uid'], 10)}"
                sts["status"] = {
                    "observedGeneration": 1,
                    "replicas": n,
                    "readyReplicas": ready,
                    "currentReplicas": n,
                    "updatedReplicas": n,
                    "availableReplicas": ready,
                    "currentRevision": rev,
                    "updateRevision": rev,
                    "collisionCount": 0,
                }
                self.store.touch("statefulsets", sts)
            for ds in self.store.values("daemonsets"):
                n, ready, _ = counts.get(ds["metadata"]["uid"], (0, 0, 0))
                ds["status"] = {
                    "currentNumberScheduled": n,
                    "desiredNumberScheduled": n,
                    "numberMisscheduled": 0,
                    "numberReady": ready,
                    "numberAvailable": ready,
                    "numberUnavailable": n - ready,
                    "observedGeneration": 1,
                    "updatedNumberScheduled": n,
                }
                if not ready:
                    ds["status"].pop("numberAvailable")
                if n == ready:
                    ds["status"].pop("numberUnavailable")
                self.store.touch("daemonsets", ds)
            for job in self.store.values("jobs"):
                n, ready, done = counts.get(job["metadata"]["uid"], (0, 0, 0))
                status = {"startTime": job["status"].get("startTime") or job["metadata"]["creationTimestamp"]}
                if done:
                    status.update(
                        {
                            "succeeded": done,
                            "completionTime": iso(time.time()),
                            "conditions": [
                                {
                                    "type": "Complete",
                                    "status": "True",
                                    "lastProbeTime": iso(time.time()),
                                    "lastTransitionTime": iso(time.time()),
                                }
                            ],
                        }
                    )
                else:
                    status.update(
                        {"active": n - done, "ready": ready, "terminating": 0, "uncountedTerminatedPods": {}}
                    )
                job["status"] = status
                self.store.touch("jobs", job)

    def _scheduling_event(self, pod: dict[str, Any], created: float) -> None:
        """default-scheduler's FailedScheduling for a pod no node fits (kept fresh by its retries)."""
        if pod["spec"].get("nodeName"):
            return
        message = next(c["message"] for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
        self.record_event(
            pod,
            reason="FailedScheduling",
            message=message,
            type_="Warning",
            component="default-scheduler",
            first=created,
            last=max(created, time.time() - 30),
        )

    def node(self, name: str) -> NodeInfo | None:
        return self._nodes_by_name.get(name)

    # -- used by the kubelet and world changes -----------------------------------------------

    def pods(self) -> list[dict[str, Any]]:
        return self.store.values("pods")

    def set_pod_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        with self.store.lock:
            current = self.store.get("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
            if current is None or current["metadata"]["uid"] != pod["metadata"]["uid"]:
                return  # deleted meanwhile
            current["status"] = status
            self.store.touch("pods", current)

    def record_event(
        self,
        pod: dict[str, Any],
        *,
        reason: str,
        message: str,
        type_: str = "Normal",
        container: str | None = None,
        count: int = 1,
        first: float | None = None,
        last: float | None = None,
        component: str = "kubelet",
    ) -> dict[str, Any] | None:
        """An event about ``pod`` as kubelet (or the scheduler) writes it; same reason+message aggregate."""
        now = time.time()
        first = now if first is None else first
        last = now if last is None else last
        if now - last > EVENT_TTL:
            return None  # expired (kube-apiserver --event-ttl)
        meta = pod["metadata"]
        ns = meta["namespace"]
        involved: dict[str, Any] = {
            "kind": "Pod",
            "namespace": ns,
            "name": meta["name"],
            "uid": meta["uid"],
            "apiVersion": "v1",
            "resourceVersion": meta.get("resourceVersion", ""),
        }
        if container is not None:
            involved["fieldPath"] = container
        node = pod["spec"].get("nodeName", "")
        index_key = (meta["uid"], reason, message, container)
        with self.store.lock:
            known = self._event_index.get(index_key)
            ev = self.store.get("events", ns, known) if known else None
            if ev is not None:
                ev["count"] += count
                ev["lastTimestamp"] = iso(last)
                self.store.touch("events", ev)
                return ev
            self._event_seq += 1
            ev = {
                "metadata": {
                    "name": f"{meta['name']}.{int(first * 1e9) + self._event_seq:x}"[:253],
                    "namespace": ns,
                    "uid": str(uuid.uuid4()),
                    "creationTimestamp": iso(first),
                },
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "source": {
                    "component": component,
                    **({"host": node} if component == "kubelet" and node else {}),
                },
                "firstTimestamp": iso(first),
                "lastTimestamp": iso(last),
                "count": count,
                "type": type_,
                "eventTime": None,
                "reportingComponent": component,
                "reportingInstance": node if component == "kubelet" else "",
            }
            self.store.put("events", ev)
            self._event_index[index_key] = ev["metadata"]["name"]
            return ev

    def restart_workload(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """Recreate a workload's pods (``kubectl rollout restart``): new names, created now."""
        now = time.time()
        ns = self.cluster.namespaces.get(namespace)
        if ns is None:
            raise KeyError(f"cluster {self.name} has no namespace {namespace!r}")
        workload = next((w for w in ns.workloads if w.name == name), None)
        if workload is None:
            raise KeyError(f"namespace {namespace} of cluster {self.name} has no workload {name!r}")
        old = [p for p in self.store.values("pods", namespace) if self._belongs(p, workload)]
        for pod in old:
            self._delete_pod(namespace, pod["metadata"]["name"])
        for rs in self.store.values("replicasets", namespace):
            if self._owned_by_workload(rs, workload):
                rs["spec"]["replicas"] = 0  # the old ReplicaSet stays, scaled down
                rs["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/desired-replicas"] = (
                    "0"
                )
                self.store.touch("replicasets", rs)
        for job in self.store.values("jobs", namespace):
            if self._owned_by_workload(job, workload):
                self.store.delete("jobs", namespace, job["metadata"]["name"])
        before = {p["metadata"]["uid"] for p in self.store.values("pods", namespace)}
        self._build_workload(ns, workload, now)
        new = [p for p in self.store.values("pods", namespace) if p["metadata"]["uid"] not in before]
        for pod in new:
            self._fire(self._on_create, pod)
        return new

    def _belongs(self, pod: dict[str, Any], w: Workload) -> bool:
        return bool(pod["metadata"].get("labels", {}).get("app") == w.name) and (
            w.kind != "Pod" or pod["metadata"]["name"] == w.name
        )

    def _owned_by_workload(self, obj: dict[str, Any], w: Workload) -> bool:
        return bool(obj["metadata"].get("labels", {}).get("app") == w.name)

    def _delete_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        pod = self.store.delete("pods", namespace, name)
        if pod is not None:
            # Its events stay until they expire (--event-ttl), as on a real API server.
            self._fire(self._on_delete, pod)
        return pod

    def _fire(self, callbacks: list[PodCallback], pod: dict[str, Any]) -> None:
        for cb in callbacks:
            cb(self, pod)

    def expire_continue_tokens(self) -> None:
        """Compact: every continue token issued so far is now too old (410 Expired)."""
        self.store.compacted_rv = self.store.rv + 1
        self.store.next_rv()

    # -- the HTTP API -------------------------------------------------------------------------

    def _handle(self, req: Request) -> Response:
        self.log.count("kubernetes", self.name)
        self.sync_nodes()
        if not self._authenticated(req):
            return status_response(401, "Unauthorized", "Unauthorized")
        path = req.path.rstrip("/") or "/"
        try:
            if path in ("/version", "/version/"):
                return _json(200, self._version())
            if path == "/api":
                return _json(
                    200,
                    {
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [
                            {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.fqdn}:443"}
                        ],
                    },
                )
            if path == "/apis":
                return _json(200, self._group_list())
            if path in ("/api/v1", "/apis/apps/v1", "/apis/batch/v1"):
                return _json(200, self._resource_list(path.removeprefix("/api/").removeprefix("/apis/")))
            if path in ("/apis/apps", "/apis/batch"):
                group = next(g for g in self._group_list()["groups"] if g["name"] == path.rsplit("/", 1)[1])
                return _json(200, {"kind": "APIGroup", "apiVersion": "v1", **group})
            if path in ("/healthz", "/livez", "/readyz"):
                return Response(200, b"ok", content_type="text/plain; charset=utf-8")
            return self._resource_request(req, path)
        except SelectorError as exc:
            return status_response(400, "BadRequest", str(exc))

    def _authenticated(self, req: Request) -> bool:
        header = req.header("Authorization") or ""
        if not header.lower().startswith("bearer "):
            return False
        token = header[7:].strip()
        if not self.cluster.aad:
            return secrets.compare_digest(token, self.token)
        if self.entra is None:
            return False
        try:
            claims = self.entra.verify(token)
        except Exception:  # an invalid/expired token: 401, whatever the verifier raised
            return False
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        return (AKS_SERVER_ID in auds or f"api://{AKS_SERVER_ID}" in auds) and claims.get(
            "tid"
        ) == self.world.tenant

    def _version(self) -> dict[str, Any]:
        v = self.cluster.kubernetes_version
        major, minor = [*v.split("."), "0", "0"][:2]
        return {
            "major": major,
            "minor": minor,
            "gitVersion": f"v{v}",
            "gitCommit": "0" * 40,
            "gitTreeState": "clean",
            "buildDate": "2025-07-15T18:20:42Z",
            "goVersion": "go1.23.10",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    def _group_list(self) -> dict[str, Any]:
        groups = []
        for gv in ("apps/v1", "batch/v1"):
            g, v = gv.split("/")
            groups.append(
                {
                    "name": g,
                    "versions": [{"groupVersion": gv, "version": v}],
                    "preferredVersion": {"groupVersion": gv, "version": v},
                }
            )
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def _resource_list(self, gv: str) -> dict[str, Any]:
        resources = []
        for r in GROUPS[gv]:
            resources.append(
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": list(r.verbs),
                    **({"shortNames": list(r.short)} if r.short else {}),
                }
            )
            if r.plural in (
                "pods",
                "deployments",
                "replicasets",
                "statefulsets",
                "daemonsets",
                "jobs",
                "cronjobs",
                "namespaces",
                "nodes",
            ):
                resources.append(
                    {
                        "name": f"{r.plural}/status",
                        "singularName": "",
                        "namespaced": r.namespaced,
                        "kind": r.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}

    _PATH = re.compile(
        r"^/(?:api/(?P<cv>v1)|apis/(?P<g>[a-z.]+)/(?P<gv>v1))"
        r"(?:/namespaces/(?P<ns>[^/]+)(?=/[a-z]+(?:/|$)))?"
        r"/(?P<res>[a-z]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[a-z]+))?)?$"
    )

    def _resource_request(self, req: Request, path: str) -> Response:
        m = self._PATH.match(path)
        if not m:
            return status_response(404, "NotFound", "the server could not find the requested resource", {})
        gv = "v1" if m.group("cv") else f"{m.group('g')}/{m.group('gv')}"
        ns, plural = m.group("ns"), m.group("res")
        name, sub = m.group("name"), m.group("sub")
        if (
            ns is not None
            and plural not in RESOURCES
            and plural in ("status", "finalize")
            and gv == "v1"
            and name is None
        ):
            # /api/v1/namespaces/<name>/status and the like
            ns, plural, name, sub = None, "namespaces", ns, plural
        resource = RESOURCES.get(plural)
        if resource is None or resource.api_version != gv or (ns is not None and not resource.namespaced):
            return status_response(404, "NotFound", "the server could not find the requested resource", {})
        ns = unquote(ns) if ns else None
        name = unquote(name) if name else None
        if sub is not None and sub != "status":
            return status_response(404, "NotFound", "the server could not find the requested resource", {})
        method = req.method.upper()
        if name is None:
            if method == "GET":
                if (req.arg("watch") or "").lower() in ("1", "true"):
                    return self._watch(req, resource, ns)
                return self._list(req, resource, ns)
            if method == "POST":
                return self._create(req, resource, ns)
            if method == "DELETE":
                return status_response(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            return status_response(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        if method == "GET":
            return self._get(req, resource, ns, name)
        if method == "DELETE":
            return self._delete(resource, ns, name)
        if method in ("PUT", "PATCH"):
            return self._update(req, resource, ns, name, sub, method)
        return status_response(
            405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )

    def _partial(self, req: Request, kind: str) -> bool:
        accept = req.header("Accept") or ""
        return any(
            f"as={kind}" in part.replace(" ", "") and "g=meta.k8s.io" in part for part in accept.split(",")
        )

    def _get(self, req: Request, resource: Resource, ns: str | None, name: str) -> Response:
        obj = self.store.get(resource.plural, ns, name)
        if obj is None:
            return not_found(resource, name)
        if self._partial(req, "PartialObjectMetadata"):
            return _json(
                200,
                {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                },
            )
        k = self.store.key(ns, name)
        head = json.dumps({"kind": resource.kind, "apiVersion": resource.api_version}, separators=(",", ":"))
        body = head[:-1].encode() + b"," + self.store.object_json(resource.plural, k)[1:]
        return Response(200, body, content_type="application/json")

    def _continue_start(self, token: str) -> tuple[str | None, Response | None]:
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            rv, start = int(data["rv"]), str(data["start"])
            if data.get("v") != "meta.k8s.io/v1":
                raise ValueError("bad version")
        except (ValueError, KeyError, TypeError):
            return None, status_response(
                400, "BadRequest", "invalid continue token: continue key is not valid: could not decode it"
            )
        issued = self._rv_times.get(rv)
        if rv < self.store.compacted_rv or (issued is not None and time.time() - issued > self.continue_ttl):
            return None, status_response(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. You can start "
                "a new list without the continue parameter, or use the continue token in this response to "
                "retrieve the remainder of the results. Continuing with the provided token results in an "
                "inconsistent list - objects that were created, modified, or deleted between the time the first "
                "chunk was returned and now may show up in the list.",
            )
        return start, None

    def _list(self, req: Request, resource: Resource, ns: str | None) -> Response:
        labels = parse_label_selector(req.arg("labelSelector") or "")
        fields = parse_field_selector(req.arg("fieldSelector") or "", resource)
        try:
            limit = int(req.arg("limit") or 0)
        except ValueError:
            return status_response(400, "BadRequest", f"invalid limit: {req.arg('limit')!r}")
        cont = req.arg("continue") or ""
        partial = self._partial(req, PARTIAL_LIST)
        with self.store.lock:
            keys = self.store.sorted_keys(resource.plural)
            lo, hi = 0, len(keys)
            if ns is not None:
                lo = bisect.bisect_left(keys, f"{ns}/")
                hi = bisect.bisect_left(keys, f"{ns}0")  # '0' follows '/'
            if cont:
                start, error = self._continue_start(cont)
                if error is not None:
                    return error
                assert start is not None
                lo = max(lo, bisect.bisect_left(keys, start))
            chosen: list[str] = []
            i = lo
            while i < hi and (limit <= 0 or len(chosen) < limit):
                k = keys[i]
                i += 1
                obj = self.store.raw(resource.plural, k)
                if obj is None:
                    continue
                if labels:
                    lb = obj["metadata"].get("labels") or {}
                    if not all(t(lb) for t in labels):
                        continue
                if fields and not all((_field_value(obj, f) == v) != neg for f, neg, v in fields):
                    continue
                chosen.append(k)
            rv = self.store.rv
            meta: dict[str, Any] = {"resourceVersion": str(rv)}
            if limit > 0 and i < hi and chosen:
                self._rv_times.setdefault(rv, time.time())
                token = {"v": "meta.k8s.io/v1", "rv": rv, "start": chosen[-1] + "\x00"}
                meta["continue"] = (
                    base64.urlsafe_b64encode(json.dumps(token, separators=(",", ":")).encode())
                    .decode()
                    .rstrip("=")
                )
                if not labels and not fields:
                    meta["remainingItemCount"] = hi - i
            if partial:
                items = [
                    orjson.dumps(
                        {
                            "kind": "PartialObjectMetadata",
                            "apiVersion": "meta.k8s.io/v1",
                            "metadata": (self.store.raw(resource.plural, k) or {}).get("metadata"),
                        }
                    )
                    for k in chosen
                ]
                head = {"kind": PARTIAL_LIST, "apiVersion": "meta.k8s.io/v1", "metadata": meta}
            else:
                items = [self.store.object_json(resource.plural, k) for k in chosen]
                head = {"kind": f"{resource.kind}List", "apiVersion": resource.api_version, "metadata": meta}
        prefix = json.dumps(head, separators=(",", ":"))[:-1].encode()
        body = prefix + b',"items":[' + b",".join(items) + b"]}"
        return Response(200, body, content_type="application/json")

    def _watch(self, req: Request, resource: Resource, ns: str | None) -> Response:
        """A watch answered in one piece: the changes after ``resourceVersion`` (all objects as ADDED
        without one), waiting up to a second for some, then the stream ends as when ``timeoutSeconds``
        elapses. Deletions are not replayed."""
        labels = parse_label_selector(req.arg("labelSelector") or "")
        fields = parse_field_selector(req.arg("fieldSelector") or "", resource)
        try:
            since = int(req.arg("resourceVersion") or 0)
        except ValueError:
            return status_response(
                400, "BadRequest", f"invalid resourceVersion: {req.arg('resourceVersion')!r}"
            )
        try:
            wait = min(1.0, float(req.arg("timeoutSeconds") or 1.0))
        except ValueError:
            wait = 1.0
        deadline = time.monotonic() + wait
        while True:
            lines = []
            for obj in self.store.values(resource.plural, ns):
                if int(obj["metadata"].get("resourceVersion") or 0) <= since:
                    continue
                if labels and not all(t(obj["metadata"].get("labels") or {}) for t in labels):
                    continue
                if fields and not all((_field_value(obj, f) == v) != neg for f, neg, v in fields):
                    continue
                full = {"kind": resource.kind, "apiVersion": resource.api_version, **obj}
                lines.append(json.dumps({"type": "ADDED" if since == 0 else "MODIFIED", "object": full}))
            if lines or since == 0 or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        return Response(200, "".join(line + "\n" for line in lines).encode(), content_type="application/json")

    def _create(self, req: Request, resource: Resource, ns: str | None) -> Response:
        try:
            obj = req.json()
        except ValueError:
            return status_response(
                400, "BadRequest", "the object provided is unrecognized (body is not JSON)"
            )
        if not isinstance(obj, dict):
            return status_response(400, "BadRequest", "the object provided is unrecognized")
        obj.pop("kind", None)
        obj.pop("apiVersion", None)
        meta = obj.setdefault("metadata", {}) or {}
        obj["metadata"] = meta
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = self._generate_name(
                resource.plural, ns, str(meta["generateName"]), str(uuid.uuid4())
            )
        name = meta.get("name")
        kind_name = resource.plural if not resource.group else f"{resource.plural}.{resource.group}"
        if not name:
            return status_response(
                422,
                "Invalid",
                f'{resource.kind} "" is invalid: metadata.name: Required value: '
                "name or generateName is required",
                {
                    "kind": resource.kind,
                    "causes": [
                        {
                            "reason": "FieldValueRequired",
                            "message": "Required value: name or generateName is required",
                            "field": "metadata.name",
                        }
                    ],
                },
            )
        if resource.namespaced:
            if meta.get("namespace") not in (None, ns):
                return status_response(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = ns
            if self.store.get("namespaces", None, ns or "") is None:
                return status_response(
                    404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"}
                )
        with self.store.lock:
            if self.store.get(resource.plural, ns, name) is not None:
                return status_response(
                    409,
                    "AlreadyExists",
                    f'{kind_name} "{name}" already exists',
                    {
                        "name": name,
                        "kind": resource.plural,
                        **({"group": resource.group} if resource.group else {}),
                    },
                )
            now = time.time()
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = iso(now)
            if resource.plural == "pods":
                spec = obj.setdefault("spec", {})
                sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
                if self.store.get("serviceaccounts", ns, sa_name) is None:
                    return status_response(
                        403,
                        "Forbidden",
                        f'pods "{name}" is forbidden: error looking up service account '
                        f'{ns}/{sa_name}: serviceaccount "{sa_name}" not found',
                        {"name": name, "kind": "pods"},
                    )
                self._admit_and_schedule(obj, now)
            elif resource.plural == "namespaces":
                obj.setdefault("spec", {"finalizers": ["kubernetes"]})
                obj["status"] = {"phase": "Active"}
                meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
            elif resource.plural == "serviceaccounts" or resource.plural == "secrets":
                if resource.plural == "secrets":
                    obj.setdefault("type", "Opaque")
                    if "stringData" in obj:
                        data = obj.setdefault("data", {})
                        for k, v in (obj.pop("stringData") or {}).items():
                            data[k] = base64.b64encode(str(v).encode()).decode()
            else:
                obj.setdefault("status", {})
            if resource.plural not in ("secrets", "serviceaccounts", "events"):
                meta.setdefault("generation", 1)
            self.store.put(resource.plural, obj)
        if resource.plural == "pods":
            self._scheduling_event(obj, time.time())
            self._fire(self._on_create, obj)
        created = self._get(req, resource, ns, name)
        created.status = 201
        return created

    def _delete(self, resource: Resource, ns: str | None, name: str) -> Response:
        obj = self.store.get(resource.plural, ns, name)
        if obj is None:
            return not_found(resource, name)
        if resource.plural == "pods":
            self._delete_pod(ns or "", name)
        elif resource.plural == "namespaces":
            if name in SYSTEM_NAMESPACES:
                return status_response(
                    403,
                    "Forbidden",
                    f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                    {"name": name, "kind": "namespaces"},
                )
            for plural, r in RESOURCES.items():
                if r.namespaced:
                    for o in self.store.values(plural, name):
                        if plural == "pods":
                            self._delete_pod(name, o["metadata"]["name"])
                        else:
                            self.store.delete(plural, name, o["metadata"]["name"])
            self.store.delete("namespaces", None, name)
            gone = copy.deepcopy(obj)
            gone["metadata"]["deletionTimestamp"] = iso(time.time())
            gone["status"] = {"phase": "Terminating"}
            return _json(200, {"kind": resource.kind, "apiVersion": resource.api_version, **gone})
        else:
            self.store.delete(resource.plural, ns, name)
        if resource.plural == "pods":
            gone = copy.deepcopy(obj)
            gone["metadata"]["deletionTimestamp"] = iso(time.time())
            gone["metadata"]["deletionGracePeriodSeconds"] = 0
            return _json(200, {"kind": resource.kind, "apiVersion": resource.api_version, **gone})
        details: dict[str, Any] = {"name": name, "kind": resource.plural, "uid": obj["metadata"].get("uid")}
        if resource.group:
            details["group"] = resource.group
        return _json(
            200,
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details},
        )

    def _update(
        self, req: Request, resource: Resource, ns: str | None, name: str, sub: str | None, method: str
    ) -> Response:
        with self.store.lock:
            current = self.store.get(resource.plural, ns, name)
            if current is None:
                return not_found(resource, name)
            try:
                body = req.json()
            except ValueError:
                return status_response(400, "BadRequest", "the body of the request is not valid JSON")
            if not isinstance(body, dict):
                return status_response(400, "BadRequest", "the body of the request must be an object")
            if method == "PUT":
                body.pop("kind", None)
                body.pop("apiVersion", None)
                if sub == "status":
                    current["status"] = body.get("status", {})
                else:
                    keep = current["metadata"]
                    new_meta = body.get("metadata") or {}
                    for k in ("uid", "creationTimestamp", "namespace", "name"):
                        new_meta[k] = keep.get(k)
                    body["metadata"] = new_meta
                    body.setdefault("status", current.get("status", {}))
                    current.clear()
                    current.update(body)
            else:
                if sub == "status":
                    body = {"status": body.get("status", {})}
                body.pop("kind", None)
                body.pop("apiVersion", None)
                _merge_patch(current, body)
            self.store.touch(resource.plural, current)
        return self._get(req, resource, ns, name)


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


def iter_pods(clusters: dict[str, KubeCluster]) -> Iterator[tuple[KubeCluster, dict[str, Any]]]:
    for cluster in clusters.values():
        for pod in cluster.pods():
            yield cluster, pod
