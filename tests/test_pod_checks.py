"""PODS_IMAGE_PULL_FAILING from plain API objects: one finding per workload, the cause from the
most informative kubelet text, young pods left alone."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.checks.pods import incomplete_finding, pod_findings
from shared.snapshot_builder import snapshot_from_objects

REFERENCE = Path(__file__).resolve().parent / "data"
NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
OLD = (NOW - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
YOUNG = (NOW - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
CLUSTER = (
    "/subscriptions/s/resourceGroups/rg-prod/providers/Microsoft.ContainerService/managedClusters/aks-prod"
)
ACR_401 = (
    'Failed to pull image "contosoacr.azurecr.io/web:1.4.2": failed to pull and unpack image '
    '"contosoacr.azurecr.io/web:1.4.2": failed to resolve reference "contosoacr.azurecr.io/web:1.4.2": '
    "failed to authorize: failed to fetch oauth token: unexpected status: 401 Unauthorized"
)


def owner(kind: str, name: str) -> list[dict[str, Any]]:
    return [{"apiVersion": "apps/v1", "kind": kind, "name": name, "controller": True, "uid": "u"}]


def deployment(ns: str, name: str, image: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name},
        "spec": {"template": {"spec": {"containers": [{"name": name, "image": image}]}}},
    }


def replicaset(ns: str, name: str, deploy: str, image: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name, "ownerReferences": owner("Deployment", deploy)},
        "spec": {"template": {"spec": {"containers": [{"name": deploy, "image": image}]}}},
    }


def pod(
    ns: str,
    name: str,
    image: str,
    *,
    owner_kind: str | None = None,
    owner_name: str = "",
    waiting: str | None = None,
    message: str = "",
    created: str = OLD,
    container: str = "web",
    init: bool = False,
) -> dict[str, Any]:
    statuses = []
    if waiting:
        statuses.append(
            {"name": container, "image": image, "state": {"waiting": {"reason": waiting, "message": message}}}
        )
    key = "initContainers" if init else "containers"
    skey = "initContainerStatuses" if init else "containerStatuses"
    meta: dict[str, Any] = {"namespace": ns, "name": name, "creationTimestamp": created}
    if owner_kind:
        meta["ownerReferences"] = owner(owner_kind, owner_name)
    return {
        "metadata": meta,
        "spec": {key: [{"name": container, "image": image}], "nodeName": "aks-node-1"},
        "status": {"phase": "Pending", skey: statuses},
    }


def event(ns: str, pod_name: str, reason: str, message: str, *, first: str = OLD) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": f"{pod_name}.1"},
        "involvedObject": {"kind": "Pod", "namespace": ns, "name": pod_name},
        "reason": reason,
        "message": message,
        "type": "Warning",
        "count": 3,
        "firstTimestamp": first,
        "lastTimestamp": first,
    }


def web_objects(**pod_kwargs: Any) -> dict[str, list[dict[str, Any]]]:
    image = "contosoacr.azurecr.io/web:1.4.2"
    return {
        "deployments": [deployment("shop", "web", image)],
        "replicasets": [replicaset("shop", "web-5d4f", "web", image)],
        "pods": [
            pod(
                "shop",
                "web-5d4f-a",
                image,
                owner_kind="ReplicaSet",
                owner_name="web-5d4f",
                waiting="ErrImagePull",
                message="rpc error: code = Unknown desc = failed to pull and unpack image",
                **pod_kwargs,
            ),
            pod(
                "shop",
                "web-5d4f-b",
                image,
                owner_kind="ReplicaSet",
                owner_name="web-5d4f",
                waiting="ImagePullBackOff",
                message='Back-off pulling image "contosoacr.azurecr.io/web:1.4.2"',
                **pod_kwargs,
            ),
            pod("shop", "web-5d4f-c", image, owner_kind="ReplicaSet", owner_name="web-5d4f"),
        ],
        "events": [
            event("shop", "web-5d4f-a", "Failed", ACR_401),
            event("shop", "web-5d4f-a", "Failed", "Error: ErrImagePull"),
            event(
                "shop", "web-5d4f-b", "BackOff", 'Back-off pulling image "contosoacr.azurecr.io/web:1.4.2"'
            ),
        ],
    }


def test_one_finding_per_workload_with_cause_from_the_failed_event() -> None:
    snap = snapshot_from_objects(CLUSTER, web_objects(), collected_at=NOW)
    findings = pod_findings(snap, grace_seconds=300)
    assert len(findings) == 1
    f = findings[0]
    assert (f.code, f.namespace, f.workload) == ("PODS_IMAGE_PULL_FAILING", "shop", "Deployment/web")
    assert f.cause == "auth_failed"
    assert f.image == "contosoacr.azurecr.io/web:1.4.2"
    assert f.registry == "contosoacr.azurecr.io"
    assert f.evidence["pods"] == 2
    assert f.evidence["reasons"] == ["ErrImagePull", "ImagePullBackOff"]
    assert f.evidence["first_seen"] == OLD
    assert f.evidence["kubelet_message"] == ACR_401
    assert "--attach-acr contosoacr" in (f.remediation or "")
    assert "aks-prod" in (f.remediation or "")
    assert "2 pods of Deployment/web" in f.message


def test_young_pods_are_not_failing_yet() -> None:
    snap = snapshot_from_objects(CLUSTER, web_objects(created=YOUNG), collected_at=NOW)
    assert pod_findings(snap, grace_seconds=300) == []
    assert len(pod_findings(snap, grace_seconds=10)) == 1


def test_bare_back_off_is_no_detail_but_the_132_back_off_message_carries_the_cause() -> None:
    image = "docker.io/library/nginx:9.9"
    objects = {
        "pods": [
            pod(
                "web", "debug", image, waiting="ImagePullBackOff", message=f'Back-off pulling image "{image}"'
            )
        ]
    }
    f = pod_findings(snapshot_from_objects(CLUSTER, objects, collected_at=NOW), grace_seconds=0)[0]
    assert (f.workload, f.cause, f.registry) == ("Pod/debug", "no_detail", "docker.io")
    objects = {
        "pods": [
            pod(
                "web",
                "debug",
                image,
                waiting="ImagePullBackOff",
                message=(
                    f'Back-off pulling image "{image}": ErrImagePull: rpc error: code = NotFound desc = failed to pull and '
                    f'unpack image "{image}": failed to resolve reference "{image}": {image}: not found'
                ),
            )
        ]
    }
    f = pod_findings(snapshot_from_objects(CLUSTER, objects, collected_at=NOW), grace_seconds=0)[0]
    assert f.cause == "not_found"


def test_invalid_name_and_never_pull() -> None:
    objects = {
        "pods": [
            pod(
                "a",
                "bad",
                "Nginx",
                waiting="InvalidImageName",
                message='Failed to apply default image tag "Nginx": couldn\'t parse image reference "Nginx": '
                "invalid reference format: repository name must be lowercase",
            ),
            pod(
                "b",
                "never",
                "busybox:1.36",
                waiting="ErrImageNeverPull",
                message='Container image "busybox:1.36" is not present with pull policy of Never',
            ),
        ]
    }
    found = {
        f.workload: f
        for f in pod_findings(snapshot_from_objects(CLUSTER, objects, collected_at=NOW), grace_seconds=0)
    }
    assert found["Pod/bad"].cause == "invalid_reference"
    assert found["Pod/never"].cause == "never_pull"
    assert found["Pod/never"].registry == "docker.io"


def test_sandbox_image_pull_failure_shows_only_as_an_event() -> None:
    pause = "mcr.microsoft.com/oss/kubernetes/pause:3.6"
    message = (
        f'Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox image "{pause}": '
        f'failed to pull image "{pause}": failed to pull and unpack image "{pause}": failed to resolve '
        f'reference "{pause}": failed to do request: Head "https://mcr.microsoft.com/v2/oss/kubernetes/pause/'
        'manifests/3.6": dial tcp 20.61.99.68:443: i/o timeout'
    )
    objects = {
        "pods": [
            pod("shop", "api-0", "contosoacr.azurecr.io/api:1", owner_kind="StatefulSet", owner_name="api")
        ],
        "events": [
            event("shop", "api-0", "FailedCreatePodSandBox", message),
            event("shop", "other", "FailedCreatePodSandBox", "failed to setup network for sandbox"),
        ],
    }
    findings = pod_findings(snapshot_from_objects(CLUSTER, objects, collected_at=NOW), grace_seconds=0)
    assert len(findings) == 1
    f = findings[0]
    assert (f.workload, f.cause, f.image, f.registry) == (
        "StatefulSet/api",
        "network",
        pause,
        "mcr.microsoft.com",
    )
    assert f.evidence["reasons"] == ["FailedCreatePodSandBox"]


def test_cronjob_pods_and_init_containers_belong_to_the_cronjob() -> None:
    objects = {
        "cronjobs": [
            {
                "metadata": {"namespace": "ops", "name": "report"},
                "spec": {
                    "jobTemplate": {
                        "spec": {"template": {"spec": {"containers": [{"name": "r", "image": "nginx:1.27"}]}}}
                    }
                },
            }
        ],
        "jobs": [
            {
                "metadata": {
                    "namespace": "ops",
                    "name": "report-2911",
                    "ownerReferences": [{"kind": "CronJob", "name": "report", "controller": True}],
                },
                "spec": {},
            }
        ],
        "pods": [
            pod(
                "ops",
                "report-2911-x",
                "registry.example.com/init:1",
                owner_kind="Job",
                owner_name="report-2911",
                waiting="ErrImagePull",
                init=True,
                container="setup",
                message='failed to pull and unpack image "registry.example.com/init:1": failed to resolve '
                "reference: lookup registry.example.com on 10.0.0.10:53: no such host",
            )
        ],
    }
    f = pod_findings(snapshot_from_objects(CLUSTER, objects, collected_at=NOW), grace_seconds=0)[0]
    assert (f.workload, f.cause, f.registry) == ("CronJob/report", "dns", "registry.example.com")
    assert f.evidence["containers"] == [
        {
            "container": "setup",
            "kind": "init",
            "image": "registry.example.com/init:1",
            "reason": "ErrImagePull",
        }
    ]


@pytest.mark.parametrize("line", list(range(0, 40, 4)))
def test_real_kubelet_messages_from_the_reference_set(line: int) -> None:
    rows = [
        json.loads(r) for r in (REFERENCE / "pull_errors.dev.jsonl").read_text().splitlines() if r.strip()
    ]
    rows = [r for r in rows if r.get("kind") == "event" and r["message"].startswith("Failed to pull image")]
    if line >= len(rows):
        pytest.skip("fewer rows")
    row = rows[line]
    objects = {
        "pods": [pod("x", "p", "example.com/a:1", waiting="ErrImagePull", message="Error: ErrImagePull")],
        "events": [event("x", "p", "Failed", row["message"])],
    }
    f = pod_findings(snapshot_from_objects(CLUSTER, objects, collected_at=NOW), grace_seconds=0)[0]
    assert f.cause in row.get("accept", [row["cause"]])


def test_incomplete_finding_has_check_and_reason() -> None:
    f = incomplete_finding(CLUSTER, "Kubernetes API server unreachable: timed out")
    assert f.code == "CHECK_INCOMPLETE" and f.evidence == {
        "check": "cluster",
        "reason": "Kubernetes API server unreachable: timed out",
    }


def test_owner_resolution_with_plain_values() -> None:
    objects = {
        "deployments": [deployment("ns", "web", "web:1")],
        "replicasets": [
            replicaset("ns", "web-1", "web", "web:1"),
            {
                "metadata": {"namespace": "ns", "name": "bare-rs"},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "rs:1"}]}}},
            },
        ],
        "jobs": [
            {
                "metadata": {"namespace": "ns", "name": "once"},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "job:1"}]}}},
            }
        ],
        "pods": [
            pod("ns", "web-1-a", "web:1", owner_kind="ReplicaSet", owner_name="web-1"),
            pod("ns", "bare-rs-a", "rs:1", owner_kind="ReplicaSet", owner_name="bare-rs"),
            pod("ns", "once-a", "job:1", owner_kind="Job", owner_name="once"),
            pod("ns", "roll-a", "roll:1", owner_kind="Rollout", owner_name="canary"),  # a custom controller
            pod("ns", "orphan-rs-a", "old:1", owner_kind="ReplicaSet", owner_name="gone-rs"),
            pod("ns", "solo", "solo:1"),
        ],
    }
    objects["pods"][0]["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": "busybox:1.36"}]
    snap = snapshot_from_objects(CLUSTER, objects, collected_at=NOW)
    assert {p.name: p.owner for p in snap.pods} == {
        "web-1-a": "Deployment/web",
        "bare-rs-a": "ReplicaSet/bare-rs",
        "once-a": "Job/once",
        "roll-a": "Rollout/canary",
        "orphan-rs-a": "ReplicaSet/gone-rs",
        "solo": "Pod/solo",
    }
    refs = {w.ref for w in snap.workloads}
    assert refs == {
        "Deployment/web",
        "ReplicaSet/bare-rs",
        "Job/once",
        "Rollout/canary",
        "ReplicaSet/gone-rs",
        "Pod/solo",
    }
    web = snap.workload("ns", "Deployment/web")
    assert web is not None
    assert [(c.kind, c.image) for c in web.containers] == [
        ("container", "web:1"),
        ("ephemeral", "busybox:1.36"),
    ]
    rollout = snap.workload("ns", "Rollout/canary")
    assert rollout is not None and rollout.images == ("roll:1",)


def crashing_pod(name: str, node: str, terminated: dict[str, Any]) -> dict[str, Any]:
    obj = pod("shop", name, "contosoacr.azurecr.io/tools/batch:0.9", owner_kind="Job", owner_name="report-1")
    obj["spec"]["nodeName"] = node
    obj["status"]["containerStatuses"] = [
        {
            "name": "web",
            "image": "contosoacr.azurecr.io/tools/batch:0.9",
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting"}},
            "lastState": {"terminated": terminated},
        }
    ]
    return obj


def node(name: str, pool: str, arch: str) -> dict[str, Any]:
    labels = {"kubernetes.azure.com/agentpool": pool, "kubernetes.io/arch": arch, "kubernetes.io/os": "linux"}
    return {"metadata": {"name": name, "labels": labels}, "status": {"nodeInfo": {"architecture": arch}}}


def test_pods_crashing_as_a_binary_for_another_architecture_are_counted_per_pool() -> None:
    from shared.checks.pods import exec_format_crashes
    from shared.correlate import CrashFacts

    exec_format = {"exitCode": 1, "reason": "Error", "message": "exec /bin/batch: exec format error"}
    runc_exit = {"exitCode": 255, "reason": "Error"}
    app_bug = {"exitCode": 2, "reason": "Error", "message": "panic: nil map"}
    snapshot = snapshot_from_objects(
        CLUSTER,
        {
            "nodes": [node("arm-1", "armpool", "arm64"), node("amd-1", "nodepool1", "amd64")],
            "pods": [
                crashing_pod("report-1-a", "arm-1", exec_format),
                crashing_pod("report-1-b", "arm-1", runc_exit),
                crashing_pod("report-1-c", "amd-1", app_bug),
            ],
        },
        collected_at=NOW,
    )
    assert exec_format_crashes(snapshot) == [
        CrashFacts("shop", "Job/report-1", "contosoacr.azurecr.io/tools/batch:0.9", "armpool", 2)
    ]
