"""What kube-controller-manager and the scheduler do: place pods on nodes, admit them, keep workload
statuses in step with their pods, and recreate a workload's pods on ``rollout restart``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sandbox.kube.resources import _pod_ready, _tag_of, clone, iso, safe_suffix
from sandbox.kube.seeding import NodeInfo
from sandbox.world import Workload

if TYPE_CHECKING:
    from sandbox.kube.cluster import PodCallback


PodCounts = tuple[int, int, int]  # an owner's pods: (all, ready, succeeded)


def _replicaset_status(counts: PodCounts) -> dict[str, Any]:
    n, ready, _ = counts
    status: dict[str, Any] = {
        "replicas": n,
        "fullyLabeledReplicas": n,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": 1,
    }
    if not ready:
        status.pop("readyReplicas")
        status.pop("availableReplicas")
    return status


def _deployment_status(
    dep: dict[str, Any], sets: list[dict[str, Any]], set_counts: list[PodCounts]
) -> dict[str, Any]:
    """From its ReplicaSets (``sets``) and their pods; the current one is the last still scaled up."""
    live = [r for r in sets if r["spec"].get("replicas", 0)] or sets
    owned = live[-1] if live else None  # the current ReplicaSet
    n = sum(c[0] for c in set_counts)
    ready = sum(c[1] for c in set_counts)
    want = dep["spec"].get("replicas", 1)
    created = dep["metadata"]["creationTimestamp"]
    available = ready >= want
    status: dict[str, Any] = {
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
                "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
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
        if not status[k]:
            status.pop(k)
    return status


def _statefulset_status(sts: dict[str, Any], counts: PodCounts) -> dict[str, Any]:
    n, ready, _ = counts
    rev = f"{sts['metadata']['name']}-{safe_suffix('rev' + sts['metadata']['uid'], 10)}"
    return {
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


def _daemonset_status(counts: PodCounts) -> dict[str, Any]:
    n, ready, _ = counts
    status: dict[str, Any] = {
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
        status.pop("numberAvailable")
    if n == ready:
        status.pop("numberUnavailable")
    return status


def _job_status(job: dict[str, Any], counts: PodCounts) -> dict[str, Any]:
    n, ready, done = counts
    status: dict[str, Any] = {
        "startTime": job["status"].get("startTime") or job["metadata"]["creationTimestamp"]
    }
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
        status.update({"active": n - done, "ready": ready, "terminating": 0, "uncountedTerminatedPods": {}})
    return status


class Controllers:
    """Scheduling, admission and workload controllers over ``self.store`` (mixed into ``KubeCluster``)."""

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
            counts: dict[str, PodCounts] = {}
            for uid, pods in by_owner.items():
                ready = sum(1 for p in pods if _pod_ready(p))
                done = sum(1 for p in pods if p["status"].get("phase") == "Succeeded")
                counts[uid] = (len(pods), ready, done)

            def of(obj: dict[str, Any]) -> PodCounts:
                return counts.get(obj["metadata"]["uid"], (0, 0, 0))

            for rs in self.store.values("replicasets"):
                rs["status"] = _replicaset_status(of(rs))
                self.store.touch("replicasets", rs)
            rs_by_owner: dict[str, list[dict[str, Any]]] = {}
            for rs in self.store.values("replicasets"):
                for ref in rs["metadata"].get("ownerReferences") or []:
                    rs_by_owner.setdefault(ref["uid"], []).append(rs)
            for dep in self.store.values("deployments"):
                sets = rs_by_owner.get(dep["metadata"]["uid"], [])
                dep["status"] = _deployment_status(dep, sets, [of(r) for r in sets])
                self.store.touch("deployments", dep)
            for sts in self.store.values("statefulsets"):
                sts["status"] = _statefulset_status(sts, of(sts))
                self.store.touch("statefulsets", sts)
            for ds in self.store.values("daemonsets"):
                ds["status"] = _daemonset_status(of(ds))
                self.store.touch("daemonsets", ds)
            for job in self.store.values("jobs"):
                job["status"] = _job_status(job, of(job))
                self.store.touch("jobs", job)

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
