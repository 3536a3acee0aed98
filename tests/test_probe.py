"""The in-cluster probe: hardened pods, one per node pool and registry, watched and always deleted.

The sandbox test runs real parts: docker-registry processes behind the sandbox's fronts, the
Kubernetes API stand-in, and the simulated kubelet that pulls with the node's identity.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.clients.kube import KubeClient, collect
from shared.probe import PROBE_LABELS, Prober, ProbeTarget, probe_pod, probe_targets
from shared.snapshot_builder import snapshot_from_objects
from shared.workloads import Taint

WORLD = {
    "name": "probe",
    "registries": {
        "contosoacr": {
            "resourceGroup": "rg",
            "location": "westeurope",
            "repositories": {"web": {"1.4.2": ["linux/amd64", "linux/arm64"]}},
        },
        "registry.example.com": {
            "anonymous": False,
            "users": {"ci-bot": "s3cret"},
            "repositories": {"tools/agent": {"3.1": ["linux/amd64", "linux/arm64"]}},
        },
        "mirror.example.com": {
            "anonymous": True,
            "repositories": {"app": {"1": ["linux/amd64", "linux/arm64"]}},
        },
    },
    "clusters": {
        "aks-probe": {
            "resourceGroup": "rg-prod",
            "nodePools": [
                {"name": "system", "os": "linux", "arch": "amd64"},
                {"name": "armpool", "os": "linux", "arch": "arm64"},
            ],
            "namespaces": {
                "shop": {
                    "workloads": [
                        {"kind": "Deployment", "name": "web", "image": "contosoacr.azurecr.io/web:1.4.2"},
                        {
                            "kind": "Deployment",
                            "name": "agent",
                            "image": "registry.example.com/tools/agent:3.1",
                        },
                        {"kind": "Deployment", "name": "app", "image": "mirror.example.com/app:1"},
                    ]
                }
            },
        }
    },
    "roleAssignments": [
        {"principal": "kubelet:aks-probe", "role": "AcrPull", "scope": "registry:contosoacr"}
    ],
    "faults": [{"host": "mirror.example.com", "fault": "dns", "from": "aks-probe"}],
}
CLUSTER_ID = (
    "/subscriptions/s/resourceGroups/rg-prod/providers/Microsoft.ContainerService/managedClusters/aks-probe"
)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    from sandbox.entra import Entra
    from sandbox.kube import KubeCluster
    from sandbox.kubelet import Kubelet
    from sandbox.metrics import RequestLog
    from sandbox.network import Network
    from sandbox.pki import Pki
    from sandbox.rbac import Rbac
    from sandbox.registry import RegistryFarm
    from sandbox.world import parse

    world = parse(yaml.safe_dump(WORLD), source="probe.yaml")
    workdir = Path(tempfile.mkdtemp(prefix="pullwatch-probe-test-"))
    log = RequestLog()
    stack: list[Any] = []
    try:
        pki = Pki(workdir)
        entra = Entra(world, log, pki).start()
        stack.append(entra)
        network = Network(world, pki).start()
        stack.append(network)
        farm = RegistryFarm(world, pki, network, entra, Rbac(world), log, workdir).start()
        stack.append(farm)
        kube = KubeCluster(world, "aks-probe", pki, entra, log).start()
        stack.append(kube)
        kubelet = Kubelet(world, {"aks-probe": kube}, network, entra, pki, farm, backoff_delay=0.2)
        stack.append(kubelet)
        kubelet.pull_all()
        yield kube
    finally:
        for part in reversed(stack):
            part.stop()
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


def probe_pods(client: KubeClient, namespace: str) -> list[dict[str, Any]]:
    return [p for p in client.list_objects("pods") if p["metadata"]["namespace"] == namespace]


@pytest.mark.sandbox
def test_probe_pulls_per_pool_and_registry_and_deletes_its_pods(sandbox: Any) -> None:
    with KubeClient.from_kubeconfig(sandbox.kubeconfig(), timeout=5) as client:
        snap = collect(client, CLUSTER_ID, read_secrets=False)
        targets = probe_targets(snap)
        assert {(t.pool, t.registry, t.image) for t in targets} == {
            (pool, registry, image)
            for pool in ("system", "armpool")
            for registry, image in (
                ("contosoacr.azurecr.io", "contosoacr.azurecr.io/web:1.4.2"),
                ("registry.example.com", "registry.example.com/tools/agent:3.1"),
                ("mirror.example.com", "mirror.example.com/app:1"),
            )
        }
        prober = Prober(
            client, CLUSTER_ID, namespace="pullwatch-probe", deadline_seconds=30, poll_seconds=0.2
        )
        findings = prober.run(targets)

        got = sorted((f.code, f.node_pool, f.registry, f.cause) for f in findings)
        assert got == [
            ("PROBE_PULL_FAILED", "armpool", "mirror.example.com", "dns"),
            ("PROBE_PULL_FAILED", "armpool", "registry.example.com", "auth_failed"),
            ("PROBE_PULL_FAILED", "system", "mirror.example.com", "dns"),
            ("PROBE_PULL_FAILED", "system", "registry.example.com", "auth_failed"),
        ]
        assert all(f.evidence["kubelet_message"] for f in findings)
        # the namespace exists, labelled; every probe pod was deleted
        ns = client._request("GET", "/api/v1/namespaces/pullwatch-probe", "read namespace")
        assert PROBE_LABELS.items() <= ns["metadata"]["labels"].items()
        assert len(prober.created) == 6
        assert probe_pods(client, "pullwatch-probe") == []


@pytest.mark.sandbox
def test_unschedulable_probe_times_out_as_incomplete_and_is_deleted(sandbox: Any) -> None:
    with KubeClient.from_kubeconfig(sandbox.kubeconfig(), timeout=5) as client:
        target = ProbeTarget(
            "ghost", "linux", "amd64", "contosoacr.azurecr.io", "contosoacr.azurecr.io/web:1.4.2"
        )
        prober = Prober(
            client, CLUSTER_ID, namespace="pullwatch-probe-2", deadline_seconds=1.0, poll_seconds=0.2
        )
        findings = prober.run([target])
        assert [(f.code, f.evidence["check"]) for f in findings] == [("CHECK_INCOMPLETE", "cluster")]
        assert "ghost" in findings[0].evidence["reason"]
        assert len(prober.created) == 1
        assert probe_pods(client, "pullwatch-probe-2") == []


@pytest.mark.sandbox
def test_refused_namespace_is_incomplete_not_a_crash(sandbox: Any) -> None:
    doc = yaml.safe_load(sandbox.kubeconfig())
    doc["users"][0]["user"]["token"] = "wrong"
    with KubeClient.from_kubeconfig(yaml.safe_dump(doc), timeout=5) as client:
        findings = Prober(client, CLUSTER_ID, namespace="pullwatch-probe").run(
            [
                ProbeTarget(
                    "system", "linux", "amd64", "contosoacr.azurecr.io", "contosoacr.azurecr.io/web:1.4.2"
                )
            ]
        )
    assert [f.code for f in findings] == ["CHECK_INCOMPLETE"]
    assert "wrong" not in findings[0].message


def test_probe_pod_is_hardened_and_pinned() -> None:
    target = ProbeTarget(
        "gpu",
        "linux",
        "arm64",
        "registry.example.com",
        "registry.example.com/a:1",
        "kubernetes.azure.com/agentpool",
        (Taint("sku", "gpu", "NoSchedule"),),
    )
    pod = probe_pod(target, "p", 90)
    spec = pod["spec"]
    c = spec["containers"][0]
    assert spec["automountServiceAccountToken"] is False and spec["hostNetwork"] is False
    assert spec["restartPolicy"] == "Never" and spec["activeDeadlineSeconds"] == 90
    assert spec["nodeSelector"] == {"kubernetes.azure.com/agentpool": "gpu", "kubernetes.io/os": "linux"}
    assert spec["tolerations"] == [
        {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
    ]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["imagePullPolicy"] == "Always"
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["resources"]["limits"] == {"cpu": "50m", "memory": "32Mi"}
    win = probe_pod(ProbeTarget("win", "windows", "amd64", "r.io", "r.io/a:1"), "w")["spec"]
    assert win["securityContext"]["windowsOptions"] == {"runAsUserName": "ContainerUser"}
    assert "seccompProfile" not in win["securityContext"]


def test_probe_targets_pick_the_image_most_workloads_use_on_that_pool() -> None:
    def deploy(name: str, image: str, selector: dict[str, str] | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {"containers": [{"name": "c", "image": image}]}
        if selector:
            spec["nodeSelector"] = selector
        return {"metadata": {"namespace": "ns", "name": name}, "spec": {"template": {"spec": spec}}}

    def node(name: str, pool: str, os: str, arch: str) -> dict[str, Any]:
        return {
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/os": os, "kubernetes.io/arch": arch, "agentpool": pool},
            }
        }

    snap = snapshot_from_objects(
        "aks",
        {
            "nodes": [node("n1", "linuxpool", "linux", "amd64"), node("n2", "winpool", "windows", "amd64")],
            "deployments": [
                deploy("a", "r.io/small:1"),
                deploy("b", "r.io/small:1"),
                deploy("c", "r.io/big:2"),
                deploy("w1", "r.io/win:1", {"kubernetes.io/os": "windows"}),
                deploy("l1", "r.io/big:2", {"kubernetes.io/os": "linux"}),
                deploy("l2", "r.io/big:2", {"kubernetes.io/os": "linux"}),
            ],
        },
    )
    targets = {t.pool: t for t in probe_targets(snap)}
    assert targets["linuxpool"].image == "r.io/big:2"  # 3 workloads on that pool
    assert targets["winpool"].image == "r.io/small:1"  # 2 (a, b) beat win:1 and big:2 (c)
    assert targets["winpool"].pool_label == "agentpool"
    configured = probe_targets(snap, {"r.io": "r.io/pause:3"})
    assert {t.image for t in configured} == {"r.io/pause:3"}


def test_run_probes_without_nodes_creates_nothing() -> None:
    from shared.config import Settings
    from shared.model import ClusterInfo
    from shared.probe import run_probes

    snap = snapshot_from_objects("aks", {"deployments": []})
    cluster = ClusterInfo(
        id=CLUSTER_ID, name="aks-probe", subscription_id="s", resource_group="rg", location="x"
    )
    client = KubeClient.from_kubeconfig(
        yaml.safe_dump(
            {
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "current-context": "c",
            }
        ),
        timeout=1,
    )
    assert run_probes(client, cluster, snap, Settings()) == []
    assert client.api_calls == 0
