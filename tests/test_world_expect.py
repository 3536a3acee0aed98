"""A world's ``expect`` names a pod failure's root cause by its code (or null), and --check tells a
pod failure with the wrong root cause, or none, from the expected one."""

from __future__ import annotations

from pathlib import Path

from sandbox.runner import differences
from sandbox.world import load

CLUSTER = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks-prod"


def world(tmp_path: Path, root: str) -> Path:
    path = tmp_path / "w.yaml"
    path.write_text(
        "name: w\n"
        "registries:\n"
        "  contosoacr: {repositories: {shop/web: {'1.0': [linux/amd64]}}}\n"
        "expect:\n"
        "  findings:\n"
        f"    - {{code: PODS_IMAGE_PULL_FAILING, cluster: aks-prod, cause: auth_failed, root_cause: {root}}}\n"
    )
    return path


def pod(root: str | None, cause: str = "auth_failed") -> dict[str, object]:
    return {"code": "PODS_IMAGE_PULL_FAILING", "cluster": CLUSTER, "cause": cause, "root_cause": root}


def test_root_cause_matches_by_the_root_findings_code(tmp_path: Path) -> None:
    w = load(world(tmp_path, "ROLE_MISSING"))
    assert differences(w, [pod("ROLE_MISSING:4d1161fca307")]) == []
    assert differences(w, [pod("ROLE_NOT_HONORED_ABAC:ae51638935f5")]) != []
    assert differences(w, [pod(None)]) != []
    assert differences(w, [pod("ROLE_MISSING:4d1161fca307", cause="auth_or_not_found")]) != []


def test_root_cause_null_means_nothing_explains_the_failure(tmp_path: Path) -> None:
    w = load(world(tmp_path, "null"))
    assert differences(w, [pod(None)]) == []
    assert differences(w, [pod("ROLE_MISSING:4d1161fca307")]) != []
