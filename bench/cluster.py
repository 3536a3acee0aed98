"""Cluster rows: audit a cluster of 20,000 and of 50,000 pods through the real Kubernetes client.

The sandbox's Kubernetes API stand-in (HTTPS, paging) serves 50 Deployments x 10 replicas in each
of 40 (100) namespaces; 5 % of the pods wait in ErrImagePull / ImagePullBackOff with the kubelet's events.
The audit — ``collect`` (every list, paged by 500) and the cluster checks (failing pods, pull
secrets, node pools per image) — runs in a child process, so its peak memory (``VmHWM``) is
pullwatch's alone, not the stand-in's. Goals: under 10 s and 300 MB, and Kubernetes calls that grow
with the pages of the lists (500 items a page), not with pods, workloads or namespaces.

``python bench/cluster.py --audit KUBECONFIG`` is that child: it prints one JSON line.
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEPLOYMENTS, REPLICAS = 50, 10  # per namespace: 500 pods
PAGE = 500
TARGET_SECONDS, TARGET_MB = 10.0, 300.0
CLUSTER_ID = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks-bench"
)


def _peak_rss_mb() -> float:
    """This process's own peak resident set (``VmHWM``). Not ``ru_maxrss``: Linux carries it across
    ``execve``, and a child spawned with vfork inherits the parent's peak — here the bench process
    holding the whole stand-in cluster, which is what the row used to report."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _audit(kubeconfig: str) -> dict[str, float | int]:
    from shared.checks.pods import exec_format_crashes, pod_findings
    from shared.checks.scheduling import platform_needs
    from shared.checks.secrets import secret_findings
    from shared.clients.kube import KubeClient, collect
    from shared.correlate import correlate

    start = time.perf_counter()
    with KubeClient.from_kubeconfig(Path(kubeconfig).read_bytes(), timeout=30) as client:
        snap = collect(client, CLUSTER_ID, read_secrets=True, page_size=PAGE)
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
        "peak_mb": _peak_rss_mb(),
        "api_calls": snap.api_calls,
        "pods": len(snap.pods),
        "workloads": len(snap.workloads),
        "findings": len(findings),
        "image_needs": len(needs),
    }


def _world(namespaces_count: int) -> object:
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
        for n in range(namespaces_count)
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
    return _cluster_row(40)


def cluster_50000() -> object:
    return _cluster_row(100)


def _cluster_row(namespaces_count: int) -> object:
    """Audit ``namespaces_count`` x 500 pods; goals: time, peak memory, Kubernetes calls O(pages)."""
    from bench.__main__ import Row
    from sandbox.kube import KubeCluster
    from sandbox.metrics import RequestLog
    from sandbox.pki import Pki

    with tempfile.TemporaryDirectory(prefix="pullwatch-bench-kube-") as tmp:
        log = RequestLog()
        t0 = time.perf_counter()
        kube = KubeCluster(_world(namespaces_count), "aks-bench", Pki(Path(tmp)), None, log).start()  # type: ignore[arg-type]
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
    pods = int(result["pods"])
    # The lists pullwatch pages through: pods, events, workloads (by kind), secrets, service accounts,
    # nodes, namespaces — each ceil(items / PAGE) pages; O(pages) means at most a handful of lists
    # of the largest size plus a constant, never a call per pod, workload or namespace.
    pages = math.ceil(pods / PAGE)
    calls_bound = 6 * pages + 20
    notes = [
        f"{pods} pods, {result['workloads']} workloads, {failing} pods failing to pull; "
        f"stand-in built in {built:.1f}s",
        f"API calls: {result['api_calls']} counted by pullwatch, {served} served by the stand-in "
        f"({pages} pages of pods at {PAGE}; bound 6 x pages + 20 = {calls_bound})",
        f"collect {result['collect_seconds']:.2f}s + checks {result['check_seconds']:.2f}s; "
        f"{result['findings']} findings, {result['image_needs']} image/pool needs",
        f"peak memory (VmHWM of the audit process) {result['peak_mb']:.0f} MB",
    ]
    for note in notes:
        print(f"[bench.cluster] {note}", file=sys.stderr)
    return Row(
        f"cluster audit, {pods:,} pods",
        float(result["seconds"]),
        None,
        baseline="",
        notes=notes,
        goals=[
            (f"< {TARGET_SECONDS:.0f} s", float(result["seconds"]) < TARGET_SECONDS),
            (f"< {TARGET_MB:.0f} MB", float(result["peak_mb"]) < TARGET_MB),
            ("calls O(pages)", int(served) <= calls_bound),
        ],
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--audit":
        print(json.dumps(_audit(sys.argv[2])))
    else:
        print(cluster_50000() if "--50000" in sys.argv else cluster_20000())
