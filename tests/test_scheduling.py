"""Which node pools a workload can land on: the scheduler's selector, affinity and taint rules."""

from __future__ import annotations

from typing import Any

import pytest

from shared.checks.scheduling import PoolPlatform, platform_needs, pools_for
from shared.model import NodePool
from shared.snapshot_builder import node_from_object, snapshot_from_objects, workload_from_template
from shared.workloads import NodeFacts


def node(
    name: str, pool: str, os: str = "linux", arch: str = "amd64", taints: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/os": os,
                "kubernetes.io/arch": arch,
                "kubernetes.azure.com/agentpool": pool,
                "agentpool": pool,
                "kubernetes.azure.com/mode": "user",
            },
        },
        "spec": {"taints": taints or []},
    }


NODES: list[NodeFacts] = [
    node_from_object(n)
    for n in (
        node("aks-system-1", "system"),
        node("aks-system-2", "system"),
        node("aks-armpool-1", "armpool", arch="arm64"),
        node("akswin000000", "winpool", os="windows"),
        node("aks-gpu-1", "gpu", taints=[{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]),
        node("aks-soft-1", "soft", taints=[{"key": "x", "value": "y", "effect": "PreferNoSchedule"}]),
    )
]
SYSTEM = PoolPlatform("system", "linux", "amd64")
ARM = PoolPlatform("armpool", "linux", "arm64")
WIN = PoolPlatform("winpool", "windows", "amd64")
GPU = PoolPlatform("gpu", "linux", "amd64")
SOFT = PoolPlatform("soft", "linux", "amd64")


def pools(spec: dict[str, Any]) -> set[PoolPlatform]:
    spec = {"containers": [{"name": "c", "image": "nginx"}], **spec}
    return set(pools_for(workload_from_template("ns", "Deployment", "w", spec), NODES))


def affinity(*terms: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": t} for t in terms]
                }
            }
        }
    }


def test_no_constraints_means_every_untainted_pool_windows_included() -> None:
    assert pools({}) == {SYSTEM, ARM, WIN, SOFT}


def test_node_selector_on_os_arch_and_agentpool() -> None:
    assert pools({"nodeSelector": {"kubernetes.io/os": "linux"}}) == {SYSTEM, ARM, SOFT}
    assert pools({"nodeSelector": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "arm64"}}) == {ARM}
    assert pools({"nodeSelector": {"kubernetes.azure.com/agentpool": "system"}}) == {SYSTEM}
    assert pools({"nodeSelector": {"agentpool": "gpu"}}) == set()  # tainted, not tolerated
    assert pools({"nodeSelector": {"no-such": "label"}}) == set()


def test_required_affinity_terms_are_ored_requirements_anded() -> None:
    amd = {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
    linux = {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}
    arm = {"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]}
    win = {"key": "kubernetes.io/os", "operator": "NotIn", "values": ["linux"]}
    assert pools(affinity([amd, linux])) == {SYSTEM, SOFT}
    assert pools(affinity([arm], [win])) == {ARM, WIN}
    assert pools(affinity([{"key": "agentpool", "operator": "Exists"}])) == {SYSTEM, ARM, WIN, SOFT}
    assert pools(affinity([{"key": "agentpool", "operator": "DoesNotExist"}])) == set()
    assert pools(affinity([])) == set()  # an empty term matches nothing


def test_gt_lt_and_match_fields() -> None:
    nodes = [node_from_object(node("n1", "p1")), node_from_object(node("n2", "p2"))]
    nodes[0].labels["cores"] = "8"  # type: ignore[index]
    w = workload_from_template(
        "ns",
        "Pod",
        "p",
        {"containers": [], **affinity([{"key": "cores", "operator": "Gt", "values": ["4"]}])},
    )
    assert {p.pool for p in pools_for(w, nodes)} == {"p1"}
    w = workload_from_template(
        "ns",
        "Pod",
        "p",
        {
            "containers": [],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}
                        ]
                    }
                }
            },
        },
    )
    assert {p.pool for p in pools_for(w, nodes)} == {"p2"}


@pytest.mark.parametrize(
    ("toleration", "lands_on_gpu"),
    [
        ({"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}, True),
        ({"key": "sku", "operator": "Exists"}, True),
        ({"operator": "Exists"}, True),
        ({"key": "sku", "operator": "Equal", "value": "cpu"}, False),
        ({"key": "sku", "operator": "Exists", "effect": "NoExecute"}, False),
    ],
)
def test_taints_need_a_matching_toleration(toleration: dict[str, str], lands_on_gpu: bool) -> None:
    assert (GPU in pools({"tolerations": [toleration]})) is lands_on_gpu


def test_pools_without_nodes_come_from_arm() -> None:
    w = workload_from_template(
        "ns", "Deployment", "w", {"containers": [], "nodeSelector": {"kubernetes.io/arch": "arm64"}}
    )
    assert pools_for(w, NODES, [NodePool("arm2", "linux", "arm64", count=0)]) == (
        PoolPlatform("arm2", "linux", "arm64"),
        ARM,
    )


def test_platform_needs_per_image_of_every_workload() -> None:
    snap = snapshot_from_objects(
        "aks",
        {
            "nodes": [node("aks-system-1", "system"), node("aks-armpool-1", "armpool", arch="arm64")],
            "deployments": [
                {
                    "metadata": {"namespace": "shop", "name": "web"},
                    "spec": {
                        "template": {
                            "spec": {
                                "initContainers": [{"name": "i", "image": "busybox:1.36"}],
                                "containers": [{"name": "c", "image": "contosoacr.azurecr.io/web:1.4.2"}],
                            }
                        }
                    },
                },
                {
                    "metadata": {"namespace": "shop", "name": "nowhere"},
                    "spec": {
                        "template": {
                            "spec": {
                                "nodeSelector": {"agentpool": "none"},
                                "containers": [{"name": "c", "image": "x:1"}],
                            }
                        }
                    },
                },
            ],
        },
    )
    needs = platform_needs(snap)
    assert [(n.image, n.workload, [p.pool for p in n.pools]) for n in needs] == [
        ("busybox:1.36", "Deployment/web", ["armpool", "system"]),
        ("contosoacr.azurecr.io/web:1.4.2", "Deployment/web", ["armpool", "system"]),
    ]


def test_image_usages_carry_pools_and_identity() -> None:
    from shared.checks.images import ImageUsage
    from shared.checks.scheduling import NO_POOL, image_usages, pool_triples

    snap = snapshot_from_objects(
        "aks",
        {
            "nodes": [node("aks-system-1", "system"), node("aks-armpool-1", "armpool", arch="arm64")],
            "deployments": [
                {
                    "metadata": {"namespace": "shop", "name": "web"},
                    "spec": {
                        "template": {
                            "spec": {
                                "nodeSelector": {"kubernetes.io/arch": "arm64"},
                                "containers": [
                                    {"name": "c", "image": "contosoacr.azurecr.io/web:1.4.2"},
                                    {"name": "bad", "image": "Not/Valid"},
                                ],
                            }
                        }
                    },
                },
                {
                    "metadata": {"namespace": "shop", "name": "nowhere"},
                    "spec": {
                        "template": {
                            "spec": {
                                "nodeSelector": {"agentpool": "none"},
                                "containers": [{"name": "c", "image": "x:1"}],
                            }
                        }
                    },
                },
            ],
        },
    )
    usages = image_usages(snap)
    assert pool_triples(snap) == [("armpool", "linux", "arm64"), ("system", "linux", "amd64")]
    good = [u for u in usages if isinstance(u, ImageUsage)]
    assert [(u.workload, str(u.ref), u.pools, u.identity) for u in good] == [
        ("Deployment/web", "contosoacr.azurecr.io/web:1.4.2", (("armpool", "linux", "arm64"),), "pullwatch"),
        ("Deployment/nowhere", "docker.io/library/x:1", (NO_POOL,), "pullwatch"),
    ]
    bad = [u for u in usages if not isinstance(u, ImageUsage)]
    assert [(f.code, f.image) for f in bad] == [("IMAGE_REFERENCE_INVALID", "Not/Valid")]


def test_passing_node_condition_taints_do_not_remove_a_pool() -> None:
    nodes = [
        node_from_object(
            node(
                "n1",
                "p1",
                taints=[
                    {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
                    {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                    {"key": "ToBeDeletedByClusterAutoscaler", "value": "1700000000", "effect": "NoSchedule"},
                ],
            )
        )
    ]
    w = workload_from_template("ns", "Deployment", "w", {"containers": []})
    assert [p.pool for p in pools_for(w, nodes)] == ["p1"]
