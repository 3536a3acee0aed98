"""The product and an independent RBAC model agree on who may pull what, and the sandbox's real
pull path enacts that model.

``sandbox/worlds/agreement-grid.yaml`` holds a grid of identity / role / scope / mode combinations
(managed and service-principal identities; classic and ABAC registries; registry, resource group,
subscription and management group scopes; direct, group and nested-group assignments; built-in and
custom roles with wildcards, notActions and data actions; ABAC conditions by name and by prefix).
For every (cluster, registry, repository) the test reads:

(a) the product: does it report ROLE_MISSING / ROLE_NOT_HONORED_ABAC for the pair, or
    ROLE_CONDITION_EXCLUDES_REPOSITORY listing the repository?
(b) the sandbox: ``Rbac(world).decide_pull(principal, tenant, registry, repository)`` (written from
    Azure's documentation, independently of the product);
(c) the kubelet: did the workload's pods start (Running) or wait in ErrImagePull / ImagePullBackOff
    after pulling from the real registry with the node's identity?

(a) and (b) are the two independent answers: their agreement is what this test proves about the
product. (c) is not a third opinion: the sandbox's ACR token service grants a pull scope where (b)'s
``decide_pull`` allows it (``sandbox/tokens.py``), so (c) proves that the sandbox enacts its model
through the real pull path (Entra token → ``/oauth2/exchange`` → ``/oauth2/token`` → docker-registry
→ pod status), i.e. that the worlds' pod failures mean what the model says. On failure it prints the
whole grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox.rbac import Rbac
from sandbox.runner import Sandbox
from sandbox.world import World, load

ROOT = Path(__file__).resolve().parent.parent
GRID = ROOT / "sandbox" / "worlds" / "agreement-grid.yaml"
ROLE_CODES = ("ROLE_MISSING", "ROLE_NOT_HONORED_ABAC", "ROLE_CONDITION_EXCLUDES_REPOSITORY")
PULL_WAITING = ("ErrImagePull", "ImagePullBackOff")


@dataclass
class Case:
    cluster: str
    registry: str
    repository: str
    workload: str
    mode: str
    product: str  # "allow" | "deny" | "unknown"
    product_codes: list[str]
    sandbox: str  # "allow" | "deny"
    sandbox_reason: str
    kubelet: str  # "allow" | "deny" | "?"
    kubelet_detail: str

    @property
    def agrees(self) -> bool:
        return self.product == self.sandbox == self.kubelet


def pull_principal(world: World, cluster: str) -> str:
    return f"kubelet:{cluster}" if world.clusters[cluster].identity == "managed" else f"sp:{cluster}"


def product_answer(
    findings: list[dict[str, Any]], cluster_id: str, host: str, repo: str
) -> tuple[str, list[str]]:
    codes = []
    for f in findings:
        if (f.get("cluster") or "").lower() != cluster_id.lower() or (
            f.get("registry") or ""
        ).lower() != host:
            continue
        if f["code"] in ("ROLE_MISSING", "ROLE_NOT_HONORED_ABAC"):
            codes.append(f["code"])
        elif f["code"] == "ROLE_CONDITION_EXCLUDES_REPOSITORY":
            if repo in (f.get("evidence") or {}).get("repositories_excluded", []):
                codes.append(f["code"])
        elif f["code"] == "CHECK_INCOMPLETE" and (f.get("evidence") or {}).get("check") == "roles":
            codes.append(f["code"])
    if "CHECK_INCOMPLETE" in codes:
        return "unknown", codes
    return ("deny" if codes else "allow"), codes


def kubelet_answer(pods: list[dict[str, Any]], namespace: str, workload: str) -> tuple[str, str]:
    mine = [
        p
        for p in pods
        if p["metadata"].get("namespace") == namespace
        and (p["metadata"].get("labels") or {}).get("app") == workload
    ]
    if not mine:
        return "?", "no pod"
    states = []
    for pod in mine:
        status = pod.get("status") or {}
        for cs in status.get("containerStatuses") or []:
            state = cs.get("state") or {}
            if "running" in state or "terminated" in state:
                states.append("Running")
            elif "waiting" in state:
                states.append(str(state["waiting"].get("reason")))
    if states and all(s == "Running" for s in states):
        return "allow", "Running"
    if states and all(s in PULL_WAITING for s in states):
        return "deny", "/".join(sorted(set(states)))
    return "?", ",".join(states) or str([(p.get("status") or {}).get("phase") for p in mine])


def table(cases: list[Case]) -> str:
    head = f"{'cluster':8} {'registry':16} {'repository':12} {'mode':5} {'product':8} {'sandbox':8} {'kubelet':8}  detail"
    lines = [head, "-" * len(head)]
    for c in cases:
        mark = "  " if c.agrees else "!!"
        lines.append(
            f"{c.cluster:8} {c.registry.split('.')[0]:16} {c.repository:12} {c.mode:5} {c.product:8} "
            f"{c.sandbox:8} {c.kubelet:8}{mark} product={','.join(c.product_codes) or '-'}; "
            f"sandbox={c.sandbox_reason}; kubelet={c.kubelet_detail}"
        )
    return "\n".join(lines)


def grid_cases(path: Path = GRID) -> list[Case]:
    """Build the grid world, run the product's audit, and read (a), (b) and (c) for every pull."""
    world = load(path)
    with Sandbox(world) as box:
        box.kubelet.wait_idle()
        box.nightly()
        findings = box.open_findings()
        failures = list(box.functions.failures)
        pods = {name: cluster.pods() for name, cluster in box.clusters.items()}
    assert failures == []

    rbac = Rbac(world)
    cases: list[Case] = []
    for cname, cluster in world.clusters.items():
        principal_id = world.principal_id(pull_principal(world, cname))
        for ns in cluster.namespaces.values():
            for workload in ns.workloads:
                host, _, rest = workload.image.partition("/")
                repo = rest.rsplit(":", 1)[0]
                registry = world.registry(host)
                product, codes = product_answer(findings, cluster.resource_id, host, repo)
                decision = rbac.decide_pull(principal_id, world.tenant, registry, repo)
                kubelet, detail = kubelet_answer(pods[cname], ns.name, workload.name)
                cases.append(
                    Case(
                        cluster=cname,
                        registry=host,
                        repository=repo,
                        workload=workload.name,
                        mode="abac"
                        if registry.role_assignment_mode == "AbacRepositoryPermissions"
                        else "rbac",
                        product=product,
                        product_codes=codes,
                        sandbox="allow" if decision.allowed else "deny",
                        sandbox_reason=decision.reason,
                        kubelet=kubelet,
                        kubelet_detail=detail,
                    )
                )
    return cases


@pytest.mark.sandbox
def test_product_agrees_with_the_independent_rbac_model_and_the_kubelet_enacts_it() -> None:
    cases = grid_cases()
    assert len(cases) >= 20
    # The grid must exercise both outcomes in both modes, or it proves little.
    assert {(c.mode, c.sandbox) for c in cases} == {
        ("rbac", "allow"),
        ("rbac", "deny"),
        ("abac", "allow"),
        ("abac", "deny"),
    }, table(cases)
    disagreements = [c for c in cases if not c.agrees]
    assert not disagreements, f"{len(disagreements)} of {len(cases)} cases disagree:\n" + table(cases)


@pytest.mark.sandbox
def test_the_kubelet_pull_from_another_tenants_registry_is_refused_as_the_model_says() -> None:
    cases = [
        c
        for c in grid_cases(ROOT / "sandbox" / "worlds" / "registry-other-tenant.yaml")
        if c.registry == "partneracr.azurecr.io"
    ]
    assert cases, "the world has no workload on partneracr"
    assert all(c.sandbox == "deny" for c in cases), table(cases)
    assert all(c.kubelet == c.sandbox for c in cases), table(cases)
