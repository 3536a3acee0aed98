"""Cluster row: audit a cluster of 20,000 pods through the real Kubernetes client.

The sandbox's Kubernetes API stand-in (HTTPS, paging) serves 2,000 Deployments x 10 replicas in
40 namespaces; 5 % of the pods wait in ErrImagePull / ImagePullBackOff with the kubelet's events.
The audit — ``collect`` (every list, paged by 500) and the cluster checks (failing pods, pull
secrets, node pools per image) — runs in a child process, so its peak memory (``ru_maxrss``) is
pullwatch's alone, not the stand-in's. Targets: under 10 s and 300 MB.

``python bench/cluster.py --audit KUBECONFIG`` is that child: it prints one JSON line.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NAMESPACES, DEPLOYMENTS, REPLICAS = 40, 50, 10  # 20,000 pods
TARGET_SECONDS, TARGET_MB = 10.0, 300.0
CLUSTER_ID = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks-bench"
)


def _audit(kubeconfig: str) -> dict[str, float | int]:
    from shared.checks.pods import exec_format_crashes, pod_findings
    from shared.checks.scheduling import platform_needs
    from shared.checks.secrets import secret_findings
    from shared.clients.kube import KubeClient, collect
    from shared.correlate import correlate

    start = time.perf_counter()
    with KubeClient.from_kubeconfig(Path(kubeconfig).read_bytes(), timeout=30) as client:
        snap = collect(client, CLUSTER_ID, read_secrets=True, page_size=500)
    collected = time.perf_counter()
    findings = pod_findings(snap, grace_seconds=300)
    findings += secret_findings(snap, kubelet_registries={"contosoacr.azurecr.io"})
    needs = platform_needs(snap)
    findings = correlate(findings, exec_format_crashes(snap))
    done = time.perf_counter()
    return {
        "seconds": done - start,
        "collect_seconds": collected - start,
        "check_seconds": done - collected,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "api_calls": snap.api_calls,
        "pods": len(snap.pods),
        "workloads": len(snap.workloads),
        "findings": len(findings),
        "image_needs": len(needs),
    }


def _world() -> object:
    import yaml

    from sandbox.world import parse

    namespaces = {
        f"team-{n:02d}": {
            "workloads": [
                {
                    "kind": "Deployment",
                    "name": f"svc-{d:02d}",
                    "replicas": REPLICAS,
                    "image": f"contosoacr.azurecr.io/team{n}/svc{d}:1.0"
                    if d % 10
                    else "docker.io/library/nginx:1.27",
                }
                for d in range(DEPLOYMENTS)
            ]
        }
        for n in range(NAMESPACES)
    }
    doc = {
        "name": "bench",
        "registries": {"contosoacr": {"resourceGroup": "rg", "location": "westeurope"}},
        "clusters": {
            "aks-bench": {
                "nodePools": [
                    {"name": "system", "count": 20},
                    {"name": "armpool", "arch": "arm64", "count": 5},
                ],
                "namespaces": namespaces,
            }
        },
    }
    return parse(yaml.safe_dump(doc), source="bench.yaml")


def _fail_some(kube: object) -> int:
    """5 % of the pods wait in ErrImagePull / ImagePullBackOff, with kubelet's Failed events."""
    from sandbox.kube import KubeCluster

    assert isinstance(kube, KubeCluster)
    old = time.time() - 3600
    failing = 0
    for i, pod in enumerate(kube.pods()):
        if i % 20:
            continue
        image = pod["spec"]["containers"][0]["image"]
        reason = "ErrImagePull" if i % 40 else "ImagePullBackOff"
        error = (
            f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": '
            "failed to authorize: failed to fetch oauth token: unexpected status: 401 Unauthorized"
        )
        kube.set_pod_status(
            pod,
            {
                "phase": "Pending",
                "containerStatuses": [
                    {
                        "name": pod["spec"]["containers"][0]["name"],
                        "image": image,
                        "ready": False,
                        "restartCount": 0,
                        "state": {"waiting": {"reason": reason, "message": error}},
                    }
                ],
            },
        )
        kube.record_event(
            pod,
            reason="Failed",
            type_="Warning",
            message=f'Failed to pull image "{image}": {error}',
            first=old,
            last=old + 600,
            count=12,
        )
        failing += 1
    return failing


def cluster_20000() -> object:
    from bench.__main__ import Row
    from sandbox.kube import KubeCluster
    from sandbox.metrics import RequestLog
    from sandbox.pki import Pki

    with tempfile.TemporaryDirectory(prefix="pullwatch-bench-kube-") as tmp:
        log = RequestLog()
        t0 = time.perf_counter()
        kube = KubeCluster(_world(), "aks-bench", Pki(Path(tmp)), None, log).start()  # type: ignore[arg-type]
        try:
            failing = _fail_some(kube)
            built = time.perf_counter() - t0
            config = Path(tmp) / "kubeconfig"
            config.write_text(kube.kubeconfig())
            log.reset()
            child = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--audit", str(config)],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if child.returncode != 0:
                raise RuntimeError(f"audit child failed: {child.stderr[-2000:]}")
            result = json.loads(child.stdout.strip().splitlines()[-1])
            served = log.snapshot()["kubernetes"].get("aks-bench", 0)
        finally:
            kube.stop()
    notes = [
        f"{result['pods']} pods, {result['workloads']} workloads, {failing} pods failing to pull; "
        f"stand-in built in {built:.1f}s",
        f"API calls: {result['api_calls']} counted by pullwatch, {served} served by the stand-in",
        f"collect {result['collect_seconds']:.2f}s + checks {result['check_seconds']:.2f}s; "
        f"{result['findings']} findings, {result['image_needs']} image/pool needs",
        f"peak memory (ru_maxrss of the audit process) {result['peak_mb']:.0f} MB "
        f"(target < {TARGET_MB:.0f} MB); time target < {TARGET_SECONDS:.0f}s: "
        + ("met" if result["seconds"] < TARGET_SECONDS and result["peak_mb"] < TARGET_MB else "MISSED"),
    ]
    for note in notes:
        print(f"[bench.cluster] {note}", file=sys.stderr)
    return Row(
        "cluster audit, 20,000 pods",
        float(result["seconds"]),
        None,
        baseline="no baseline: targets 10 s / 300 MB",
        notes=notes,
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--audit":
        print(json.dumps(_audit(sys.argv[2])))
    else:
        print(cluster_20000())
