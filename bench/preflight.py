"""Preflight row: 200 manifests with 300 unique images checked against a sandbox cluster, side by
side with the audit of the same workloads running on that cluster.

The world (:func:`preflight_world_yaml`): one cluster with an amd64 and an arm64 pool, two ACRs
(the kubelet holds AcrPull on both), 300 images (30 repositories x 10 tags; one repository in ten
amd64-only), deployed as 200 Deployments (the first 100 with an init container), so every image is
used once. The 200 manifests (:func:`write_manifests`, one file per Deployment) describe exactly
those workloads.

Measured in-process with the product's own settings pointing at the sandbox, each with fresh
clients (no cache shared between the two), after one untimed audit (so neither pays the lazy
import of the management SDKs):

- **preflight**: :func:`shared.preflight.check.preflight_cluster` on the 200 files (reading them
  included);
- **audit** (the baseline column): :meth:`shared.pipeline.Auditor.audit_clusters` of the same
  cluster, listing its 200 Deployments, their ReplicaSets and 200 pods.

Both check each unique image once, concurrently per registry. The notes give the requests each
sent to every stand-in and the findings each found (the same codes, the same counts: the
amd64-only images on the arm64 pool). The target is parity with the audit (ratio >= 1): preflight
reads less of the cluster (the namespace's service accounts and secrets, not every object).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.__main__ import Row  # noqa: E402

WORKLOADS, REPOS, TAGS = 200, 30, 10  # 300 unique images
NAMESPACE = "apps"
CLUSTER = "aks-bench"


def _images() -> list[tuple[str, str, list[str]]]:
    """(registry, repository:tag, platforms) of the 300 images."""
    out = []
    for r in range(REPOS):
        acr = "benchacr" if r % 2 == 0 else "benchacr2"
        platforms = ["linux/amd64"] if r % 10 == 9 else ["linux/amd64", "linux/arm64"]
        for t in range(TAGS):
            out.append((acr, f"svc/r{r:02d}:1.{t}", platforms))
    return out


def _workloads() -> list[tuple[str, str, str | None]]:
    """(name, image, init image or None) of the 200 Deployments: every image used once."""
    refs = [f"{acr}.azurecr.io/{image}" for acr, image, _ in _images()]
    out = []
    for w in range(WORKLOADS):
        init = refs[WORKLOADS + w] if WORKLOADS + w < len(refs) else None
        out.append((f"svc-{w:03d}", refs[w], init))
    return out


def preflight_world_yaml() -> str:
    registries: dict[str, Any] = {}
    for acr, image, platforms in _images():
        repo, tag = image.rsplit(":", 1)
        reg = registries.setdefault(
            acr, {"resourceGroup": "rg-shared", "location": "westeurope", "repositories": {}}
        )
        reg["repositories"].setdefault(repo, {})[tag] = platforms
    workloads = []
    for name, image, init in _workloads():
        spec: dict[str, Any] = {"kind": "Deployment", "name": name, "image": image}
        if init:
            spec["initImages"] = [init]
        workloads.append(spec)
    doc = {
        "name": "bench-preflight",
        "description": "200 Deployments, 300 unique images on two ACRs, an amd64 and an arm64 pool.",
        "registries": registries,
        "clusters": {
            CLUSTER: {
                "resourceGroup": "rg-bench",
                "location": "westeurope",
                "nodePools": [
                    {"name": "system", "os": "linux", "arch": "amd64"},
                    {"name": "armpool", "os": "linux", "arch": "arm64"},
                ],
                "namespaces": {NAMESPACE: {"workloads": workloads}},
            }
        },
        "roleAssignments": [
            {"principal": f"kubelet:{CLUSTER}", "role": "AcrPull", "scope": "registry:benchacr"},
            {"principal": f"kubelet:{CLUSTER}", "role": "AcrPull", "scope": "registry:benchacr2"},
        ],
    }
    return yaml.dump(doc, Dumper=_NoAliases, sort_keys=False, default_flow_style=None, width=120)


class _NoAliases(yaml.SafeDumper):
    """Writes a shared platform list out in full each time: the world loader refuses YAML aliases
    beyond a small number (a guard against alias bombs)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def write_manifests(folder: Path) -> None:
    """One Deployment manifest per workload of the world, as a chart would render it."""
    for name, image, init in _workloads():
        spec: dict[str, Any] = {"containers": [{"name": "main", "image": image}]}
        if init:
            spec["initContainers"] = [{"name": "init", "image": init}]
        doc = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": {"spec": spec}},
        }
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def _codes(findings: Any) -> str:
    counts = Counter(f.code for f in findings)
    return ", ".join(f"{code} x{n}" for code, n in sorted(counts.items())) or "none"


def _requests(snapshot: dict[str, Any]) -> str:
    return (
        f"ARM {snapshot['arm']}, Graph {snapshot['graph']}, Entra {snapshot['entra']}, "
        f"Kubernetes {sum(snapshot['kubernetes'].values())}, registry {sum(snapshot['registry'].values())}"
    )


def preflight_200() -> Row:
    from azure.identity import DefaultAzureCredential

    from sandbox.runner import Sandbox
    from sandbox.world import parse
    from shared.config import Settings
    from shared.pipeline import AuditOptions, connect_auditor
    from shared.preflight.check import preflight_cluster
    from shared.preflight.manifests import read_manifests

    world = parse(preflight_world_yaml(), source="bench world")
    cluster_id = world.clusters[CLUSTER].resource_id
    with tempfile.TemporaryDirectory(prefix="pullwatch-bench-preflight-") as tmp, Sandbox(world) as box:
        folder = Path(tmp)
        write_manifests(folder)
        settings = Settings.from_env()

        def audit_once() -> Any:
            auditor = connect_auditor(settings, DefaultAzureCredential())
            try:
                return auditor.audit_clusters([cluster_id], AuditOptions(clusters=(cluster_id,)))
            finally:
                auditor.close()

        # One untimed audit first: the management SDKs are imported on first use (cold start), and
        # whichever of the two ran first would pay for that import alone.
        audit_once()
        box.log.reset()
        start = time.monotonic()
        audit = audit_once()
        audit_s = time.monotonic() - start
        audit_requests = box.log.snapshot()

        box.log.reset()
        start = time.monotonic()
        manifests = read_manifests([str(folder)], cwd=folder)
        read_s = time.monotonic() - start
        result = preflight_cluster(settings, DefaultAzureCredential(), manifests, cluster_id)
        preflight_s = time.monotonic() - start
        preflight_requests = box.log.snapshot()

    found = [f.finding for f in result.findings]
    if len(manifests.workloads) != WORKLOADS or result.images != REPOS * TAGS:
        raise RuntimeError(f"read {len(manifests.workloads)} workloads and {result.images} images")
    if Counter(f.code for f in found) != Counter(f.code for f in audit.findings):
        raise RuntimeError(f"preflight found {_codes(found)}, the audit {_codes(audit.findings)}")
    return Row(
        f"preflight {WORKLOADS} manifests / {REPOS * TAGS} images",
        preflight_s,
        audit_s,
        "audit of the same 200 workloads on the cluster",
        target_ratio=1.0,
        notes=[
            f"preflight requests: {_requests(preflight_requests)}",
            f"audit requests:     {_requests(audit_requests)}",
            f"findings, both: {_codes(found)}; sandbox build {box.build_seconds:.1f}s",
            f"preflight's reading of the {WORKLOADS} manifest files: {read_s:.2f}s of its time",
        ],
    )
