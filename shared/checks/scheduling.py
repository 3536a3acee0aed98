"""Which node pools each workload can land on, and so which platforms its images need (pure).

The scheduler's rules, applied per node and gathered per pool:

- ``nodeSelector``: every key must be a node label with that value;
- required node affinity (``requiredDuringSchedulingIgnoredDuringExecution``): the terms are ORed,
  each term's requirements ANDed; operators ``In``, ``NotIn``, ``Exists``, ``DoesNotExist``, ``Gt``,
  ``Lt`` on labels, ``matchFields`` on ``metadata.name``; a term without requirements matches
  nothing;
- taints with effect ``NoSchedule`` or ``NoExecute`` must be tolerated (``PreferNoSchedule`` only
  steers); the node lifecycle's passing taints (``node.kubernetes.io/not-ready``, ``…/unreachable``,
  ``…/unschedulable``, pressure, the autoscaler's scale-down mark) are ignored, since they say
  nothing about which pods the pool takes once the node is healthy.

A workload without any of these can land on every pool it tolerates — including Windows pools, as
Kubernetes would schedule it there (AKS recommends a ``kubernetes.io/os`` nodeSelector for exactly
this reason), so an image without a Windows manifest is reported for them.

Public interface::

    pools_for(workload, nodes, extra_pools=()) -> tuple[PoolPlatform, ...]
    platform_needs(snapshot, extra_pools=()) -> list[ImagePlatformNeed]
    image_usages(snapshot, extra_pools=()) -> list[ImageUsage | Finding]
    pool_triples(snapshot, extra_pools=()) -> list[(pool, os, arch)]   # image_findings' pools
    PoolPlatform(pool, os, arch);  ImagePlatformNeed(image, namespace, workload, pools)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.findings import Finding
from shared.model import NodePool
from shared.workloads import (
    ARCH_LABEL,
    OS_LABEL,
    POOL_LABELS,
    NodeFacts,
    Requirement,
    Snapshot,
    WorkloadFacts,
)

if TYPE_CHECKING:
    from shared.checks.images import ImageUsage

HARD_EFFECTS = ("NoSchedule", "NoExecute")
#: Taints the node lifecycle puts on a node for a while (not-ready, unreachable, pressure,
#: cordoned, being scaled down): they say nothing about which pods the pool takes.
TRANSIENT_TAINT_PREFIXES = ("node.kubernetes.io/", "node.cloudprovider.kubernetes.io/")
AUTOSCALER_DELETE_TAINT = "ToBeDeletedByClusterAutoscaler"


@dataclass(frozen=True, order=True)
class PoolPlatform:
    pool: str
    os: str
    arch: str

    @property
    def platform(self) -> str:
        return f"{self.os}/{self.arch}"


@dataclass(frozen=True)
class ImagePlatformNeed:
    """An image one workload runs, and the pools (with their platform) where it can run."""

    image: str
    namespace: str
    workload: str  # "Deployment/web"
    pools: tuple[PoolPlatform, ...]


def _requirement_matches(req: Requirement, labels: Mapping[str, str], node_name: str) -> bool:
    key, op, values = req
    if key.startswith("field:"):
        value: str | None = node_name if key == "field:metadata.name" else None
    else:
        value = labels.get(key)
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        if value is None or len(values) != 1:
            return False
        try:
            have, want = int(value), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False  # an unknown operator never matches (the API server rejects it anyway)


def node_matches(workload: WorkloadFacts, node: NodeFacts) -> bool:
    """Would the scheduler's filters (selector, required affinity, taints) admit the workload?"""
    labels = node.labels or {
        OS_LABEL: node.os,
        ARCH_LABEL: node.arch,
        POOL_LABELS[0]: node.pool,
        POOL_LABELS[1]: node.pool,
    }
    for key, value in workload.node_selector.items():
        if labels.get(key) != value:
            return False
    if workload.node_affinity and not any(
        term and all(_requirement_matches(r, labels, node.name) for r in term)
        for term in workload.node_affinity
    ):
        return False
    for taint in node.taints:
        if taint.key.startswith(TRANSIENT_TAINT_PREFIXES) or taint.key == AUTOSCALER_DELETE_TAINT:
            continue
        if taint.effect in HARD_EFFECTS and not any(t.tolerates(taint) for t in workload.tolerations):
            return False
    return True


def _pool_nodes(nodes: Iterable[NodeFacts], extra_pools: Iterable[NodePool]) -> list[NodeFacts]:
    """The nodes, plus one untainted stand-in node for each pool that has none listed (a pool
    scaled to zero still receives pods once the autoscaler adds a node)."""
    out = list(nodes)
    seen = {n.pool for n in out}
    for pool in extra_pools:
        if pool.name not in seen:
            labels = {
                OS_LABEL: pool.os,
                ARCH_LABEL: pool.arch,
                POOL_LABELS[0]: pool.name,
                POOL_LABELS[1]: pool.name,
            }
            out.append(
                NodeFacts(
                    name=f"{pool.name}-<no-nodes>", os=pool.os, arch=pool.arch, pool=pool.name, labels=labels
                )
            )
            seen.add(pool.name)
    return out


def pools_for(
    workload: WorkloadFacts, nodes: Sequence[NodeFacts], extra_pools: Iterable[NodePool] = ()
) -> tuple[PoolPlatform, ...]:
    """The (pool, os, arch) sets where the workload's pods can be scheduled, sorted."""
    found = {
        PoolPlatform(n.pool, n.os, n.arch)
        for n in _pool_nodes(nodes, extra_pools)
        if node_matches(workload, n)
    }
    return tuple(sorted(found))


def platform_needs(snapshot: Snapshot, extra_pools: Iterable[NodePool] = ()) -> list[ImagePlatformNeed]:
    """For every image of every workload: the pools where it can run. Workloads that fit no
    pool (a selector nobody matches) need no platform and are left out."""
    nodes = _pool_nodes(snapshot.nodes, extra_pools)
    out: list[ImagePlatformNeed] = []
    for w in snapshot.workloads:
        pools = pools_for(w, nodes)
        if not pools:
            continue
        for image in w.images:
            out.append(ImagePlatformNeed(image, w.namespace, w.ref, pools))
    return out


#: The pool name given to :class:`ImageUsage` for a workload no pool admits (an empty tuple
#: would mean "every pool" there): no platform is needed, so no platform finding follows.
NO_POOL = "<no pool admits the workload>"


def pool_triples(snapshot: Snapshot, extra_pools: Iterable[NodePool] = ()) -> list[tuple[str, str, str]]:
    """Every pool of the cluster as (name, os, arch): ``image_findings``' ``pools``."""
    return sorted({(n.pool, n.os, n.arch) for n in _pool_nodes(snapshot.nodes, extra_pools)})


def image_usages(
    snapshot: Snapshot,
    extra_pools: Iterable[NodePool] = (),
) -> list[ImageUsage | Finding]:
    """The registry check's input (:class:`shared.checks.images.ImageUsage`): one usage per image
    of every workload, with the (pool, os, arch) triples where it can run; an unparsable image
    becomes IMAGE_REFERENCE_INVALID. Every usage is read as pullwatch's own identity."""
    from shared.checks.images import usage_or_finding

    nodes = _pool_nodes(snapshot.nodes, extra_pools)
    out: list[ImageUsage | Finding] = []
    for w in snapshot.workloads:
        pools = pools_for(w, nodes)
        names: tuple[object, ...] = tuple((p.pool, p.os, p.arch) for p in pools) if pools else (NO_POOL,)
        for image in w.images:
            out.append(usage_or_finding(snapshot.cluster, w.namespace, w.ref, image, names))
    return out
