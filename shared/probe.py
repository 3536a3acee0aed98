"""The opt-in in-cluster pull probe (``--probe`` / ``PULLWATCH_PROBE=true``).

Per node pool (Linux and Windows, amd64 and arm64) and per registry the cluster's workloads use,
one short-lived pod in a dedicated namespace (``Settings.probe_namespace``, created if missing,
labelled as pullwatch's, with its own token-less service account) pulls a small image from that registry with ``imagePullPolicy: Always``:
the real kubelet path, with the node's network, DNS and identity. The image is
``Settings.probe_images[registry]`` when configured, else the image of that registry used by the
most workloads that can run on the pool (then by the most workloads at all).

The pod is hardened: no host namespaces, no service-account token, non-root, read-only root
filesystem, no privilege escalation, every capability dropped, seccomp ``RuntimeDefault`` (Linux),
small requests and limits, ``activeDeadlineSeconds``, ``restartPolicy: Never``, and a command that
is no file of any image (``/pullwatch-probe-pulled``): the runtime fails the start at once, after the
pull, so no code from the image ever runs — the probe only needs the pull. It is pinned to its pool
by ``nodeSelector`` and tolerates the pool's taints. Pods are watched by polling with a deadline
and always deleted (``finally``).

Outcomes: the pull failed → PROBE_PULL_FAILED (node_pool, registry, cause from the kubelet's
messages through :func:`shared.explain.explain`); the image itself lacks the pool's platform or
does not exist → nothing here (the image checks report it); the probe pod could not be created,
scheduled, or did not finish before the deadline → CHECK_INCOMPLETE (check ``cluster``).

Public interface::

    probe_targets(snapshot, probe_images={}, registries=None) -> list[ProbeTarget]
    Prober(client, cluster_id, *, namespace, deadline_seconds=120.0, poll_seconds=1.0,
           clock=time.monotonic, sleep=time.sleep)
        .run(targets) -> list[Finding]
    probe_pod(target, name) -> dict            # the pod manifest
    run_probes(client, cluster, snapshot, settings) -> list[Finding]   # the pipeline's entry
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.checks.pods import incomplete_finding
from shared.checks.scheduling import AUTOSCALER_DELETE_TAINT, TRANSIENT_TAINT_PREFIXES, pools_for
from shared.clients.kube import KubeClient, KubeError, KubeUnreachable
from shared.config import Settings
from shared.errors import UpstreamError
from shared.explain import explain
from shared.findings import Finding
from shared.model import ClusterInfo
from shared.reference import ReferenceError, parse_reference
from shared.workloads import OS_LABEL, POOL_LABELS, NodeFacts, Snapshot, Taint

log = logging.getLogger("pullwatch.probe")

PROBE_LABELS = {"app.kubernetes.io/managed-by": "pullwatch", "pullwatch.io/probe": "true"}
PROBE_COMMAND = ["/pullwatch-probe-pulled"]
#: The probe pods' own service account (automountServiceAccountToken: false), so they never wait
#: for the namespace's default account to appear and never carry a token.
PROBE_SERVICE_ACCOUNT = "pullwatch-probe"
PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
#: Causes that speak about the chosen image, not about the pull path: the image checks report them.
IMAGE_CAUSES = frozenset({"platform_mismatch", "not_found", "invalid_reference"})
_NAME_SAFE = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class ProbeTarget:
    pool: str
    os: str
    arch: str
    registry: str
    image: str
    pool_label: str = POOL_LABELS[0]
    taints: tuple[Taint, ...] = ()


def _pools(nodes: Sequence[NodeFacts]) -> dict[str, tuple[NodeFacts, set[Taint]]]:
    out: dict[str, tuple[NodeFacts, set[Taint]]] = {}
    for n in nodes:
        _, taints = out.setdefault(n.pool, (n, set()))
        taints.update(
            t
            for t in n.taints
            if not t.key.startswith(TRANSIENT_TAINT_PREFIXES) and t.key != AUTOSCALER_DELETE_TAINT
        )  # never tolerate a sick or leaving node
    return out


def probe_targets(
    snapshot: Snapshot,
    probe_images: Mapping[str, str] | None = None,
    registries: Collection[str] | None = None,
) -> list[ProbeTarget]:
    """One target per (node pool, registry): the registries the workloads use (or ``registries``)."""
    configured = {k.lower(): v for k, v in (probe_images or {}).items()}
    uses: dict[str, Counter[str]] = {}
    by_pool: dict[tuple[str, str], Counter[str]] = {}
    for w in snapshot.workloads:
        pools = {p.pool for p in pools_for(w, snapshot.nodes)}
        for image in w.images:
            try:
                registry = parse_reference(image).registry
            except ReferenceError:
                continue
            uses.setdefault(registry, Counter())[image] += 1
            for pool in pools:
                by_pool.setdefault((pool, registry), Counter())[image] += 1
    wanted = sorted(
        {r.lower() for r in registries} if registries is not None else set(uses) | set(configured)
    )
    out: list[ProbeTarget] = []
    for pool, (node, taints) in sorted(_pools(snapshot.nodes).items()):
        label = next((k for k in POOL_LABELS if node.labels.get(k) == pool), POOL_LABELS[0])
        for registry in wanted:
            chosen = configured.get(registry)
            if chosen is None:
                counts = by_pool.get((pool, registry)) or uses.get(registry)
                if not counts:
                    continue
                chosen = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
            out.append(
                ProbeTarget(
                    pool,
                    node.os,
                    node.arch,
                    registry,
                    chosen,
                    label,
                    tuple(sorted(taints, key=lambda t: (t.key, t.value, t.effect))),
                )
            )
    return out


def probe_pod(target: ProbeTarget, name: str, deadline_seconds: int = 120) -> dict[str, Any]:
    """The hardened pod that pulls ``target.image`` on ``target.pool``."""
    windows = target.os == "windows"
    container_security: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    pod_security: dict[str, Any] = {"runAsNonRoot": True}
    if windows:
        pod_security["windowsOptions"] = {"runAsUserName": "ContainerUser"}
        container_security.pop("privileged")
        container_security.pop("capabilities")
        container_security.pop("readOnlyRootFilesystem")
        container_security.pop("allowPrivilegeEscalation")
    else:
        pod_security.update(
            {"runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}}
        )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": dict(PROBE_LABELS),
            "annotations": {"pullwatch.io/registry": target.registry, "pullwatch.io/node-pool": target.pool},
        },
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": PROBE_SERVICE_ACCOUNT,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "hostNetwork": False,
            "hostPID": False,
            "hostIPC": False,
            "terminationGracePeriodSeconds": 0,
            "activeDeadlineSeconds": int(deadline_seconds),
            "nodeSelector": {target.pool_label: target.pool, OS_LABEL: target.os},
            "tolerations": [
                {"key": t.key, "operator": "Equal", "value": t.value, "effect": t.effect}
                if t.value
                else {"key": t.key, "operator": "Exists", "effect": t.effect}
                for t in target.taints
            ],
            "securityContext": pod_security,
            "containers": [
                {
                    "name": "probe",
                    "image": target.image,
                    "imagePullPolicy": "Always",
                    "command": list(PROBE_COMMAND),
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "16Mi"},
                        "limits": {"cpu": "50m", "memory": "32Mi"},
                    },
                    "securityContext": container_security,
                }
            ],
        },
    }


def _pod_name(target: ProbeTarget) -> str:
    digest = hashlib.sha256(target.registry.encode()).hexdigest()[:6]
    pool = _NAME_SAFE.sub("-", target.pool.lower()).strip("-")[:20]
    return f"pullwatch-probe-{pool}-{digest}-{secrets.token_hex(3)}"


@dataclass
class _Running:
    target: ProbeTarget
    name: str
    outcome: str | None = None  # pulled | failed | incomplete
    text: str = ""
    reason: str = ""


class Prober:
    def __init__(
        self,
        client: KubeClient,
        cluster_id: str,
        *,
        namespace: str,
        deadline_seconds: float = 120.0,
        poll_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.cluster_id = cluster_id
        self.namespace = namespace
        self.deadline_seconds = deadline_seconds
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.sleep = sleep
        #: every probe pod name created by the last run (all deleted when run returns)
        self.created: list[str] = []

    def run(self, targets: Sequence[ProbeTarget]) -> list[Finding]:
        if not targets:
            return []
        self.created = []
        try:
            self.client.ensure_namespace(self.namespace, PROBE_LABELS)
            self.client.ensure_service_account(self.namespace, PROBE_SERVICE_ACCOUNT, PROBE_LABELS)
        except UpstreamError as exc:
            return [incomplete_finding(self.cluster_id, f"probe namespace {self.namespace}: {exc}")]
        running: list[_Running] = []
        out: list[Finding] = []
        try:
            for target in targets:
                name = _pod_name(target)
                try:
                    self.client.create_pod(
                        self.namespace, probe_pod(target, name, int(self.deadline_seconds) + 30)
                    )
                except UpstreamError as exc:
                    out.append(
                        incomplete_finding(
                            self.cluster_id,
                            f"probe pod for node pool {target.pool} and {target.registry} "
                            f"could not be created: {exc}",
                        )
                    )
                    continue
                self.created.append(name)
                running.append(_Running(target, name))
            self._watch(running)
        finally:
            for name in self.created:
                try:
                    self.client.delete_pod(self.namespace, name)
                except UpstreamError as exc:
                    log.warning("probe pod %s/%s not deleted: %s", self.namespace, name, exc)
        for r in running:
            out.extend(self._findings(r))
        return out

    def _watch(self, running: list[_Running]) -> None:
        deadline = self.clock() + self.deadline_seconds
        while True:
            for r in running:
                if r.outcome is None:
                    self._poll(r)
            if all(r.outcome for r in running) or self.clock() >= deadline:
                break
            self.sleep(min(self.poll_seconds, max(0.0, deadline - self.clock())))
        for r in running:
            if r.outcome is None:
                r.outcome = "incomplete"
                r.reason = r.reason or f"probe pod did not pull within {self.deadline_seconds:g} s"

    def _poll(self, r: _Running) -> None:
        try:
            pod = self.client.read_pod(self.namespace, r.name)
        except (KubeError, KubeUnreachable) as exc:
            r.reason = f"reading probe pod failed: {exc}"
            return
        if pod is None:
            r.outcome, r.reason = "incomplete", "probe pod disappeared before it pulled"
            return
        status = pod.get("status") or {}
        for cs in status.get("containerStatuses") or []:
            state = cs.get("state") or {}
            waiting = state.get("waiting") or {}
            if waiting.get("reason") in PULL_REASONS:
                r.outcome, r.reason = "failed", str(waiting["reason"])
                r.text = self._failure_text(r, str(waiting.get("message") or ""))
                return
            if (
                cs.get("imageID")
                or state.get("running")
                or state.get("terminated")
                or (waiting.get("reason") and waiting.get("reason") != "ContainerCreating")
            ):
                r.outcome = "pulled"
                return
        if status.get("phase") in ("Succeeded", "Failed") and status.get("reason") == "DeadlineExceeded":
            r.outcome, r.reason = "incomplete", "probe pod hit its activeDeadlineSeconds before pulling"
            return
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                r.reason = (
                    f"probe pod not scheduled: {cond.get('message') or cond.get('reason') or 'unschedulable'}"
                )

    def _failure_text(self, r: _Running, waiting_message: str) -> str:
        """The most informative text: the kubelet's Failed event, else the waiting message."""
        try:
            events = self.client.pod_events(self.namespace, r.name)
        except UpstreamError:
            events = []
        texts = [
            str(e.get("message") or "") for e in events if e.get("reason") in ("Failed", "InspectFailed")
        ]
        texts.append(waiting_message)
        best = ""
        for text in texts:
            if not text:
                continue
            if explain(text).cause not in ("no_detail", "unknown"):
                return text
            best = best or text
        return best

    def _findings(self, r: _Running) -> list[Finding]:
        t = r.target
        if r.outcome == "pulled":
            return []
        if r.outcome == "incomplete":
            return [
                incomplete_finding(
                    self.cluster_id, f"probe on node pool {t.pool} for {t.registry}: {r.reason}"
                )
            ]
        exp = explain(r.text)
        if exp.cause in IMAGE_CAUSES:
            return []
        return [
            Finding(
                code="PROBE_PULL_FAILED",
                cluster=self.cluster_id,
                registry=t.registry,
                image=t.image,
                node_pool=t.pool,
                cause=exp.cause,
                message=f"A probe pod on node pool {t.pool} ({t.os}/{t.arch}) could not pull {t.image}: {exp.summary}.",
                evidence={
                    "pod": f"{self.namespace}/{r.name}",
                    "reason": r.reason,
                    "os": t.os,
                    "arch": t.arch,
                    "kubelet_message": r.text[:1000] or None,
                },
                remediation=exp.remediation,
            )
        ]


def run_probes(
    client: KubeClient, cluster: ClusterInfo, snapshot: Snapshot, settings: Settings
) -> list[Finding]:
    """Probe every node pool x registry of ``snapshot`` with ``settings.probe_images`` and
    ``settings.probe_namespace``. The watch deadline is 12 network timeouts (120 s by default),
    at least 30 s: a pull of a small image takes seconds, an image-pull back-off minutes."""
    prober = Prober(
        client,
        cluster.id,
        namespace=settings.probe_namespace,
        deadline_seconds=max(30.0, 12 * settings.http_timeout),
    )
    return prober.run(probe_targets(snapshot, settings.probe_images))
