"""Building a cluster's objects from the world: nodes, namespaces, service accounts, secrets and
workloads (Deployment → ReplicaSet → pods, StatefulSet, DaemonSet, Job, CronJob → Job → pod, Pod).
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sandbox.kube.resources import (
    AGE_AT_BUILD,
    SYSTEM_NAMESPACES,
    _b64json,
    _base36,
    _container,
    _owner,
    iso,
    safe_suffix,
)
from sandbox.world import Namespace, NodePool, Workload


@dataclass
class NodeInfo:
    """A node as the scheduler sees it: its pool, address and labels."""

    name: str
    pool: NodePool
    ip: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Seed:
    """One workload being seeded: its namespace, its world entry, its labels and its pod template."""

    ns: Namespace
    w: Workload
    labels: dict[str, str]
    template: dict[str, Any]
    template_spec: dict[str, Any]
    created: float


class WorldSeeding:
    """Creates the world's objects in ``self.store`` (mixed into ``KubeCluster``)."""

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
        build = {
            "Pod": self._build_pod,
            "Deployment": self._build_deployment,
            "StatefulSet": self._build_statefulset,
            "DaemonSet": self._build_daemonset,
            "Job": self._build_job,
        }.get(w.kind, self._build_cronjob)
        build(_Seed(ns, w, labels, template, template_spec, created))

    def _build_pod(self, seed: _Seed) -> None:
        """A bare Pod."""
        self._create_pod_from(seed.ns.name, seed.w.name, seed.labels, seed.template_spec, None, seed.created)

    def _build_deployment(self, seed: _Seed) -> None:
        """Deployment → ReplicaSet → pods."""
        dep = self._workload_object(
            "Deployment",
            seed.ns.name,
            seed.w.name,
            seed.created,
            seed.labels,
            {
                "replicas": seed.w.replicas,
                "selector": {"matchLabels": seed.labels},
                "template": seed.template,
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
        self._new_replicaset(seed.ns.name, seed.w, dep, seed.template, seed.created)

    def _build_statefulset(self, seed: _Seed) -> None:
        """StatefulSet → pods named ``<name>-<index>``."""
        sts = self._workload_object(
            "StatefulSet",
            seed.ns.name,
            seed.w.name,
            seed.created,
            seed.labels,
            {
                "replicas": seed.w.replicas,
                "selector": {"matchLabels": seed.labels},
                "serviceName": seed.w.name,
                "template": seed.template,
                "podManagementPolicy": "OrderedReady",
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            },
        )
        sts = self._put_workload("statefulsets", sts)
        rev = f"{seed.w.name}-{safe_suffix('sts' + seed.ns.name + seed.w.name + str(seed.created), 10)}"
        for i in range(seed.w.replicas):
            pod_labels = {
                **seed.labels,
                "apps.kubernetes.io/pod-index": str(i),
                "controller-revision-hash": rev,
                "statefulset.kubernetes.io/pod-name": f"{seed.w.name}-{i}",
            }
            self._create_pod_from(
                seed.ns.name,
                f"{seed.w.name}-{i}",
                pod_labels,
                seed.template_spec,
                _owner("apps/v1", "StatefulSet", sts),
                seed.created,
            )

    def _build_daemonset(self, seed: _Seed) -> None:
        """DaemonSet → one pod per eligible Linux node."""
        ds = self._workload_object(
            "DaemonSet",
            seed.ns.name,
            seed.w.name,
            seed.created,
            seed.labels,
            {
                "selector": {"matchLabels": seed.labels},
                "template": seed.template,
                "updateStrategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
                },
            },
        )
        ds = self._put_workload("daemonsets", ds)
        for node in self._eligible_nodes(seed.template_spec.get("nodeSelector"), linux_only=True):
            pod_labels = {
                **seed.labels,
                "controller-revision-hash": safe_suffix("ds" + seed.w.name + str(seed.created), 10),
                "pod-template-generation": "1",
            }
            name = self._generate_name(
                "pods",
                seed.ns.name,
                f"{seed.w.name}-",
                seed.ns.name + seed.w.name + node.name + str(seed.created),
            )
            self._create_pod_from(
                seed.ns.name,
                name,
                pod_labels,
                seed.template_spec,
                _owner("apps/v1", "DaemonSet", ds),
                seed.created,
                node=node,
            )

    def _build_job(self, seed: _Seed) -> None:
        """Job → pod."""
        self._new_job(seed.ns.name, seed.w.name, seed.w, seed.template, seed.created, None)

    def _build_cronjob(self, seed: _Seed) -> None:
        """CronJob: it has run once, so its Job (and the Job's pod) exists."""
        cj = self._workload_object(
            "CronJob",
            seed.ns.name,
            seed.w.name,
            seed.created - 3600,
            seed.labels,
            {
                "schedule": "0 * * * *",
                "concurrencyPolicy": "Allow",
                "suspend": False,
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 1,
                "jobTemplate": {"metadata": {}, "spec": {"backoffLimit": 6, "template": seed.template}},
            },
        )
        scheduled = int(seed.created // 60)
        cj["status"] = {"lastScheduleTime": iso(scheduled * 60)}
        cj = self._put_workload("cronjobs", cj)
        self._new_job(
            seed.ns.name,
            f"{seed.w.name}-{scheduled}",
            seed.w,
            seed.template,
            scheduled * 60,
            _owner("batch/v1", "CronJob", cj),
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
