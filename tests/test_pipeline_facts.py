"""The audit's shape: checks are pure functions of plain ClusterFacts values, and an Auditor given
fake seams collects facts, runs the registered checks and links symptoms to root causes."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from shared.checks.facts import ClusterFacts
from shared.checks.images import ImageUsage
from shared.checks.registered import (
    abac_mode_switched,
    coverage,
    image_deleted_in_use,
    images,
)
from shared.clients.registry import ImageResult, Step
from shared.config import Settings
from shared.errors import UpstreamError
from shared.model import ABAC_MODE, LEGACY_MODE, ClusterInfo, NodePool, RegistryInfo
from shared.pipeline import AuditOptions, Auditor, AuditResult
from shared.plan import KnownCluster
from shared.reference import parse_reference

SUB = "22222222-2222-2222-2222-222222222222"
CLUSTER = ClusterInfo(
    id=f"/subscriptions/{SUB}/resourceGroups/rg-prod/providers/Microsoft.ContainerService/managedClusters/aks-prod",
    name="aks-prod",
    subscription_id=SUB,
    resource_group="rg-prod",
    location="westeurope",
    tenant_id="11111111-1111-1111-1111-111111111111",
    kubelet_object_id="aaaaaaaa-0000-0000-0000-000000000001",
    node_pools=(NodePool("nodepool1"),),
)
ACR = RegistryInfo(
    id=f"/subscriptions/{SUB}/resourceGroups/rg-shared/providers/Microsoft.ContainerRegistry/registries/contosoacr",
    name="contosoacr",
    login_server="contosoacr.azurecr.io",
    subscription_id=SUB,
    resource_group="rg-shared",
    location="westeurope",
    tenant_id=CLUSTER.tenant_id,
)
REF = parse_reference("contosoacr.azurecr.io/shop/web:1.4.1")
USAGE = ImageUsage("shop", "Deployment/web", REF, (("nodepool1", "linux", "amd64"),))
GONE = ImageResult(
    REF,
    "pullwatch",
    (Step("manifest", False, 3.0, status=404, error_code="MANIFEST_UNKNOWN"),),
)


def previous(mode: str) -> KnownCluster:
    return KnownCluster(
        id=CLUSTER.id,
        registries=frozenset({ACR.login_server}),
        registry_ids=frozenset({ACR.id.lower()}),
        images=frozenset(),
        failing_images=frozenset(),
        registry_modes={ACR.login_server: mode},
    )


def test_a_registry_switched_to_abac_since_the_last_audit_is_reported_from_facts_alone() -> None:
    abac = ClusterFacts(
        CLUSTER.id,
        cluster=CLUSTER,
        previous=previous(LEGACY_MODE),
        used_acrs=(ACR.__class__(**{**ACR.__dict__, "role_assignment_mode": ABAC_MODE}),),
    )
    [f] = abac_mode_switched(abac)
    assert f.code == "ABAC_MODE_SWITCHED" and f.registry == "contosoacr.azurecr.io"
    assert f.evidence == {"before": LEGACY_MODE, "now": ABAC_MODE}
    assert abac_mode_switched(ClusterFacts(CLUSTER.id, cluster=CLUSTER, used_acrs=abac.used_acrs)) == []
    assert abac_mode_switched(ClusterFacts(CLUSTER.id, cluster=CLUSTER, previous=previous(ABAC_MODE))) == []


def test_a_missing_image_that_pods_still_run_is_deleted_in_use_not_not_found() -> None:
    facts = ClusterFacts(CLUSTER.id, cluster=CLUSTER, usages=(USAGE,), image_results={GONE.key: GONE})
    assert [f.code for f in images(facts)] == ["IMAGE_NOT_FOUND"]
    assert image_deleted_in_use(facts) == []
    running = ClusterFacts(**{**facts.__dict__, "running_images": frozenset({str(REF)})})
    assert images(running) == []
    [deleted] = image_deleted_in_use(running)
    assert deleted.code == "IMAGE_DELETED_IN_USE" and deleted.level.value == "warning"
    assert deleted.workload == "Deployment/web" and "still runs it" in deleted.message


def test_what_could_not_be_read_is_incomplete_never_a_pass() -> None:
    facts = ClusterFacts(
        CLUSTER.id,
        cluster=CLUSTER,
        snapshot_unreadable="cannot read the cluster's API server: refused",
        hosts=frozenset({"contosoacr.azurecr.io", "ghcr.io"}),
        acrs_unlisted="cannot list the container registries of subscription s: 403",
    )
    found = coverage(facts)
    assert [(f.evidence["check"], f.registry) for f in found] == [
        ("kubernetes", None),
        ("roles", "contosoacr.azurecr.io"),
    ]


# --- an Auditor over fake seams -------------------------------------------------------------------


class FakeArm:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def get_cluster(self, cluster_id: str) -> ClusterInfo:
        self.calls.append("get_cluster")
        return CLUSTER

    def cluster_user_kubeconfig(self, cluster_id: str) -> bytes:
        return b"kubeconfig"

    def list_subscriptions(self) -> list[Any]:
        return []

    def list_registries(self, subscription: str) -> list[RegistryInfo]:
        self.calls.append(f"list_registries {subscription}")
        return [ACR]

    def list_role_assignments(self, subscription: str) -> list[Any]:
        return []  # the kubelet identity holds no role

    def service_principal_object_id(self, client_id: str) -> str | None:
        return None

    def member_groups(self, object_id: str) -> tuple[str, ...]:
        return ()

    def definitions_for(self, assignments: Any, scope: str) -> dict[str, Any]:
        return {}

    def public_ip_addresses(self, ids: Any) -> tuple[str, ...]:
        return ("20.50.1.10",)

    def private_endpoint_vnets(self, ids: Any) -> tuple[str, ...]:
        return ()

    def request_counts(self) -> dict[str, int]:
        return {"arm": len(self.calls)}


class FakeRegistry:
    def __init__(self) -> None:
        self.checked: list[str] = []

    def check_images(self, targets: Any) -> list[ImageResult]:
        self.checked.extend(str(t.ref) for t in targets)
        return [ImageResult(t.ref, t.identity, (Step("manifest", True, 2.0, status=200),)) for t in targets]

    def request_counts(self) -> dict[str, int]:
        return {}


def unreachable_kube(cluster: ClusterInfo, kubeconfig: bytes) -> Any:
    raise UpstreamError("Kubernetes API of aks-prod unreachable: connection refused")


def audit_with_api_server_down(arm: FakeArm, registry: FakeRegistry) -> AuditResult:
    """An audit of CLUSTER over the fake seams, its API server unreachable, the last audit having
    seen REF on the legacy-mode ACR."""
    auditor = Auditor(
        Settings.from_env({}),
        arm=arm,  # type: ignore[arg-type]
        kube_connect=unreachable_kube,
        registry=registry,  # type: ignore[arg-type]
    )
    seen_before = KnownCluster(**{**previous(LEGACY_MODE).__dict__, "images": frozenset({str(REF)})})
    return auditor.audit_clusters([CLUSTER.id], AuditOptions(), {CLUSTER.id.lower(): seen_before})


def test_an_auditor_over_fake_seams_collects_checks_and_correlates() -> None:
    registry = FakeRegistry()
    result = audit_with_api_server_down(FakeArm(), registry)
    codes = sorted((f.code, f.evidence.get("check")) for f in result.findings)
    assert codes == [("CHECK_INCOMPLETE", "kubernetes"), ("ROLE_MISSING", None)]
    assert all(f.id.startswith(f.code + ":") for f in result.findings)
    # the API server was unreachable: the images the last audit saw are still checked, once
    assert registry.checked == [str(REF)]
    assert result.clusters[0].inventory is not None
    assert result.clusters[0].inventory.registry_modes == {ACR.login_server: LEGACY_MODE}


class MeetingArm(FakeArm):
    """Its four reads that depend on nothing but the cluster wait for one another at a barrier:
    read one after another, the first waits alone and the barrier breaks."""

    def __init__(self) -> None:
        super().__init__()
        self.meeting = threading.Barrier(4, timeout=5)

    def cluster_user_kubeconfig(self, cluster_id: str) -> bytes:
        self.meeting.wait()
        return super().cluster_user_kubeconfig(cluster_id)

    def list_registries(self, subscription: str) -> list[RegistryInfo]:
        self.meeting.wait()
        return super().list_registries(subscription)

    def list_role_assignments(self, subscription: str) -> list[Any]:
        self.meeting.wait()
        return super().list_role_assignments(subscription)

    def public_ip_addresses(self, ids: Any) -> tuple[str, ...]:
        self.meeting.wait()
        return super().public_ip_addresses(ids)


def test_the_reads_that_depend_only_on_the_cluster_are_made_at_once() -> None:
    arm = MeetingArm()
    result = audit_with_api_server_down(arm, FakeRegistry())
    assert not arm.meeting.broken
    codes = sorted((f.code, f.evidence.get("check")) for f in result.findings)
    assert codes == [("CHECK_INCOMPLETE", "kubernetes"), ("ROLE_MISSING", None)]
    assert arm.calls.count(f"list_registries {SUB}") == 1  # read once, kept for the later steps


@pytest.mark.sandbox
def test_the_platform_world_counts_the_pods_that_crash_with_exec_format_error() -> None:
    from pathlib import Path

    from sandbox.runner import run_world

    world = Path(__file__).resolve().parent.parent / "sandbox" / "worlds" / "image-platform-missing.yaml"
    report, differences = run_world(world, quiet=True)
    assert differences == []
    [platform] = [f for f in report["findings"] if f["code"] == "IMAGE_PLATFORM_MISSING"]
    assert platform["node_pool"] == "armpool" and platform["evidence"]["crashing_pods"] >= 1
    assert "pull it, then crash with exec format error" in platform["message"]  # a single-platform image
    assert "in CrashLoopBackOff there" in platform["message"]
