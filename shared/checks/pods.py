"""What the cluster reports: pods that cannot pull their images (pure).

PODS_IMAGE_PULL_FAILING, one finding per workload: the pod's owner is resolved to its workload
(ReplicaSet → Deployment, Job → CronJob; see :mod:`shared.workloads`), and ``ErrImagePull`` and
``ImagePullBackOff`` of the same pod are one problem. Also ``InvalidImageName``,
``ErrImageNeverPull``, and sandbox (pause) image pull failures, which show only as
``FailedCreatePodSandBox`` events. Pods younger than the grace period are not failing yet.

The cause comes from :func:`shared.explain.explain` on the most informative text: the kubelet's
``Failed`` event ("Failed to pull image …"), or the waiting message when it carries the error —
never a bare back-off or ``Error: ErrImagePull``.

Public interface::

    pod_findings(snapshot, *, grace_seconds, now=None) -> list[Finding]
    incomplete_finding(cluster, reason, check="cluster") -> Finding      # CHECK_INCOMPLETE
    exec_format_crashes(snapshot) -> list[CrashFacts]                    # for shared.correlate
    PULL_WAITING_REASONS
"""

from __future__ import annotations

import re
import shlex
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.causes import remediation_for
from shared.cloud import cloud_of_login_server
from shared.correlate import CrashFacts
from shared.explain import Explanation, explain
from shared.findings import Finding
from shared.reference import ReferenceError, parse_reference
from shared.workloads import ContainerWaiting, EventFacts, PodFacts, Snapshot

PULL_WAITING_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
_SANDBOX_PULL = re.compile(r"(?is)sandbox image|pull(?:ing)?\s+(?:and unpack\s+)?image\s+\"?[^\"\s]*pause")
_PULL_EVENT_TEXT = re.compile(
    r"(?i)fail(?:ed|ure)? to (?:pull|inspect|resolve)|pull access denied|"
    r"not present with pull policy|couldn't parse image|invalid reference|"
    r"ErrImagePull:|back-off pulling image"
)
_NO_CAUSE = ("no_detail",)
MESSAGE_LIMIT = 1000


def incomplete_finding(cluster: str, reason: str, check: str = "cluster") -> Finding:
    """CHECK_INCOMPLETE for a cluster whose checks could not run (evidence: check + reason)."""
    return Finding(
        code="CHECK_INCOMPLETE",
        cluster=cluster,
        message=f"The {check} checks of this cluster could not run: {reason}",
        evidence={"check": check, "reason": reason},
    )


def _sandbox_failure(event: EventFacts) -> bool:
    return event.reason == "FailedCreatePodSandBox" and bool(_SANDBOX_PULL.search(event.message))


@dataclass
class _Group:
    namespace: str
    workload: str
    pods: list[PodFacts] = field(default_factory=list)
    containers: dict[tuple[str, str, str], ContainerWaiting] = field(default_factory=dict)
    reasons: set[str] = field(default_factory=set)
    texts: list[tuple[int, datetime, str, str | None]] = field(
        default_factory=list
    )  # rank, time, text, image
    first_seen: datetime | None = None

    def seen(self, when: datetime | None) -> None:
        if when is not None and (self.first_seen is None or when < self.first_seen):
            self.first_seen = when


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _rank_event(event: EventFacts) -> int:
    """Lower is more informative: the kubelet's pull error first, the back-off last."""
    if event.reason == "Failed" and "Error: " not in event.message[:7]:
        return 0
    if event.reason in ("InspectFailed", "ErrImageNeverPull"):
        return 0
    if event.reason == "FailedCreatePodSandBox":
        return 1
    return 3


def _choose(group: _Group) -> tuple[Explanation, str, str | None]:
    """The explanation of the most informative text (a cause over no_detail, unknown last)."""
    best: tuple[int, Explanation, str, str | None] | None = None
    seen: set[str] = set()
    for rank, _when, text, image in sorted(group.texts, key=lambda t: (t[0], -t[1].timestamp())):
        if text in seen:
            continue
        seen.add(text)
        exp = explain(text)
        score = rank + (
            0 if exp.cause not in ("no_detail", "unknown") else 10 if exp.cause == "unknown" else 20
        )
        if best is None or score < best[0]:
            best = (score, exp, text, image)
        if score < 10:
            break
    assert best is not None
    return best[1], best[2], best[3]


def _cluster_parts(cluster: str) -> tuple[str | None, str | None]:
    parts = cluster.strip("/").split("/")
    lowered = [p.lower() for p in parts]
    rg = parts[lowered.index("resourcegroups") + 1] if "resourcegroups" in lowered[:-1] else None
    name = parts[lowered.index("managedclusters") + 1] if "managedclusters" in lowered[:-1] else None
    return rg, name


def _remediation(
    snapshot: Snapshot, exp: Explanation, registry: str | None, image: str | None, repository: str | None
) -> str:
    text = remediation_for(exp.cause, registry, image, repository)
    if exp.cause in ("auth_failed", "forbidden") and registry and cloud_of_login_server(registry):
        rg, name = _cluster_parts(snapshot.cluster)
        if rg and name:
            acr = registry.split(".", 1)[0]
            text = (
                f"{text} For the cluster's kubelet identity: az aks check-acr -g {shlex.quote(rg)} "
                f"-n {shlex.quote(name)} --acr {registry}; az aks update -g {shlex.quote(rg)} "
                f"-n {shlex.quote(name)} --attach-acr {acr}"
            )
    return text


def pod_findings(snapshot: Snapshot, *, grace_seconds: float, now: datetime | None = None) -> list[Finding]:
    """PODS_IMAGE_PULL_FAILING per workload whose pods (older than the grace period) cannot pull."""
    now = now or snapshot.collected_at
    grace = timedelta(seconds=grace_seconds)
    events: dict[tuple[str, str], list[EventFacts]] = defaultdict(list)
    for e in snapshot.events:
        events[(e.namespace, e.pod)].append(e)
    groups: dict[tuple[str, str], _Group] = {}
    for pod in snapshot.pods:
        if pod.created is not None and now - pod.created < grace:
            continue
        failing = [w for w in pod.waiting if w.reason in PULL_WAITING_REASONS]
        pod_events = events.get((pod.namespace, pod.name), [])
        sandbox = [e for e in pod_events if _sandbox_failure(e)]
        if not failing and not sandbox:
            continue
        g = groups.setdefault((pod.namespace, pod.owner), _Group(pod.namespace, pod.owner))
        g.pods.append(pod)
        for w in failing:
            g.containers.setdefault((w.kind, w.container, w.image), w)
            g.reasons.add(w.reason)
            if w.message:
                g.texts.append((2, now, w.message, w.image))
        if sandbox:
            g.reasons.add("FailedCreatePodSandBox")
        failing_images = {w.image for w in failing}
        for e in pod_events:
            if e in sandbox or (e.reason != "FailedCreatePodSandBox" and _PULL_EVENT_TEXT.search(e.message)):
                g.seen(e.first_seen)
                image = next((i for i in failing_images if i and i in e.message), None)
                g.texts.append((_rank_event(e), e.last_seen or e.first_seen or _EPOCH, e.message, image))
        if not pod_events:
            g.seen(pod.created)
    out = []
    for g in groups.values():
        out.append(_finding(snapshot, g))
    return out


def _finding(snapshot: Snapshot, g: _Group) -> Finding:
    if g.texts:
        exp, text, text_image = _choose(g)
        cause = exp.cause
    else:
        exp, text, text_image = explain(""), "", None
        cause = "no_detail"
    images = [w.image for w in g.containers.values() if w.image]
    image = (
        text_image
        or (exp.image if exp.image and any(exp.image in i or i in exp.image for i in images) else None)
        or (images[0] if images else exp.image)
    )
    registry, repository = exp.registry, None
    if image:
        try:
            ref = parse_reference(image)
            registry, repository = ref.registry, ref.repository
        except ReferenceError:
            pass
    pods = sorted(g.pods, key=lambda p: p.name)
    first = g.first_seen or min((p.created for p in pods if p.created), default=None)
    evidence: dict[str, Any] = {
        "pods": len(pods),
        "pod_names": [p.name for p in pods[:10]],
        "reasons": sorted(g.reasons),
        "containers": [
            {"container": w.container, "kind": w.kind, "image": w.image, "reason": w.reason}
            for w in list(g.containers.values())[:20]
        ],
        "first_seen": first.isoformat().replace("+00:00", "Z") if first else None,
        "kubelet_message": text[:MESSAGE_LIMIT] if text else None,
        "nodes": sorted({p.node for p in pods if p.node})[:10],
    }
    count = len(pods)
    subject = image or "its image"
    why = exp.summary if cause not in _NO_CAUSE else "the kubelet's messages do not say why"
    return Finding(
        code="PODS_IMAGE_PULL_FAILING",
        cluster=snapshot.cluster,
        registry=registry,
        image=image,
        namespace=g.namespace,
        workload=g.workload,
        cause=cause,
        message=f"{count} pod{'s' if count != 1 else ''} of {g.workload} in {g.namespace} cannot pull {subject}: {why}.",
        evidence=evidence,
        remediation=_remediation(snapshot, exp, registry, image, repository),
    )


def failing_workloads(findings: Iterable[Finding]) -> set[tuple[str | None, str | None]]:
    """(namespace, workload) of PODS_IMAGE_PULL_FAILING findings: for callers that correlate."""
    return {(f.namespace, f.workload) for f in findings if f.code == "PODS_IMAGE_PULL_FAILING"}


_EXEC_FORMAT = re.compile(r"(?i)exec format error")
RUNC_EXEC_FAILED = 255  # runc's exit code when the container's entrypoint cannot be executed


def exec_format_crashes(snapshot: Snapshot) -> list[CrashFacts]:
    """Pods in CrashLoopBackOff whose container's last run ended as a binary for another
    architecture does: ``exec format error`` in its termination message (FallbackToLogsOnError), or
    runc's exit code 255 without a message. Counted per workload, image and node pool: correlate
    counts only those on the pool an ``IMAGE_PLATFORM_MISSING`` names."""
    pools = {n.name: n.pool for n in snapshot.nodes}
    counts: dict[tuple[str, str, str, str | None], set[str]] = defaultdict(set)
    for pod in snapshot.pods:
        for w in pod.waiting:
            if w.reason != "CrashLoopBackOff":
                continue
            said = _EXEC_FORMAT.search(w.last_message) is not None
            if not said and not (w.last_exit_code == RUNC_EXEC_FAILED and not w.last_message):
                continue
            try:
                image = str(parse_reference(w.image))
            except ReferenceError:
                continue
            pool = pools.get(pod.node) if pod.node else None
            counts[(pod.namespace, pod.owner, image, pool)].add(pod.name)
    return [CrashFacts(ns, wl, image, pool, len(names)) for (ns, wl, image, pool), names in counts.items()]
