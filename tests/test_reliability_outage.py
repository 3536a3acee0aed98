"""An outage of a source of facts never makes a finding look resolved: a cluster's Kubernetes API
stops answering for one nightly run of a sandbox world (real parts), then comes back."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from sandbox.kube import KubeCluster
from sandbox.runner import Sandbox
from sandbox.world import parse

pytestmark = [pytest.mark.sandbox, pytest.mark.reliability]

WORLD = """
name: kube-api-outage
description: aks-prod misses an image and holds a stale pull secret; its API server stops for a night.
registries:
  contosoacr:
    resourceGroup: rg-shared
    location: westeurope
    repositories:
      shop/api: {"2.0.0": [linux/amd64]}
  registry.example.com:
    anonymous: false
    users: {ci-bot: rotated-canary-4474}
    repositories:
      tools/agent: {"3.1": [linux/amd64]}
clusters:
  aks-prod:
    resourceGroup: rg-prod
    location: westeurope
    namespaces:
      shop:
        secrets:
          regcred:
            type: kubernetes.io/dockerconfigjson
            auths: {registry.example.com: {username: ci-bot, password: stale-canary-4475}}
        workloads:
          - {kind: Deployment, name: api, image: contosoacr.azurecr.io/shop/api:2.1.0}
          - {kind: Deployment, name: agent, image: registry.example.com/tools/agent:3.1,
             imagePullSecrets: [regcred]}
roleAssignments:
  - {principal: kubelet:aks-prod, role: AcrPull, scope: registry:contosoacr}
"""


@contextmanager
def api_down(cluster: KubeCluster) -> Iterator[None]:
    """The cluster's API server address refuses every connection (an outage: ARM still answers
    and hands out the kubeconfig, which names this address)."""
    refusing = socket.socket()
    refusing.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    cluster._reserved = refusing
    try:
        yield
    finally:
        cluster._reserved = None
        refusing.close()


def _texts(records: list[dict[str, Any]]) -> str:
    return json.dumps([r["payload"] for r in records])


def _codes(box: Sandbox) -> set[str]:
    return {f["code"] for f in box.open_findings()}


def test_a_kubernetes_api_outage_resolves_nothing_and_its_end_announces_nothing_new() -> None:
    with Sandbox(parse(WORLD, "kube-api-outage")) as box:
        box.nightly()
        before = _codes(box)
        assert {"IMAGE_NOT_FOUND", "PULL_SECRET_REJECTED"} <= before, before
        sent = len(box.sink.records)

        with api_down(box.clusters["aks-prod"]):  # for one night
            box.nightly()
        during = box.sink.records[sent:]
        assert "resolved" not in _texts(during), _texts(during)
        assert before <= _codes(box) and "CHECK_INCOMPLETE" in _codes(box)
        sent = len(box.sink.records)

        box.nightly()
        after = box.sink.records[sent:]
        for finding in ("IMAGE_NOT_FOUND", "PULL_SECRET_REJECTED"):
            assert finding not in _texts(after), f"{finding} announced again after the outage"
        assert _codes(box) == before


def test_each_source_covers_the_groups_it_feeds() -> None:
    from shared.compare import compare
    from shared.findings import Finding
    from shared.pipeline import incomplete

    aks = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks"
    acr = "contosoacr.azurecr.io"
    image = Finding(code="IMAGE_NOT_FOUND", cluster=aks, registry=acr, image=f"{acr}/a:1", message="m")
    secret = Finding(
        code="PULL_SECRET_REJECTED", cluster=aks, registry=acr, workload="Deployment/a", message="m"
    )
    role = Finding(code="ROLE_MISSING", cluster=aks, registry=acr, message="m")
    outage = incomplete(aks, "kubernetes", "cannot read the cluster's API server: refused")
    changes = compare([image, secret, role], [outage])
    assert {f.code for f in changes.still_open} == {"IMAGE_NOT_FOUND", "PULL_SECRET_REJECTED"}
    assert [f.code for f in changes.resolved] == ["ROLE_MISSING"]  # ARM still answered: it was checked
    arm = compare([image, role], [incomplete(aks, "arm", "ARM unavailable")])
    assert [f.code for f in arm.still_open] == ["ROLE_MISSING"] and [f.code for f in arm.resolved] == [
        "IMAGE_NOT_FOUND"
    ]
    stored = compare([image, secret, role], [incomplete(aks, "storage", "table unavailable")])
    assert stored.resolved == ()


@pytest.mark.parametrize(
    "failure",
    [
        "REGISTRY_DNS_FAILURE",
        "REGISTRY_UNREACHABLE",
        "REGISTRY_TLS_ERROR",
        "REGISTRY_FIREWALL_DENIED",
        "REGISTRY_AUTH_REJECTED",
        "REGISTRY_RATE_LIMITED",
        "REGISTRY_SERVER_ERROR",
    ],
)
def test_a_registry_that_cannot_be_read_resolves_none_of_its_image_findings(failure: str) -> None:
    """A registry-wide failure hides every image behind it: its image, secret and latency findings
    are unconfirmed (kept open), another registry's are not."""
    from shared.compare import compare
    from shared.findings import Finding

    aks = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks"
    acr, hub = "contosoacr.azurecr.io", "docker.io"
    missing = Finding(code="IMAGE_NOT_FOUND", cluster=aks, registry=acr, image=f"{acr}/a:1", message="m")
    secret = Finding(
        code="PULL_SECRET_REJECTED", cluster=aks, registry=acr, workload="Deployment/a", message="m"
    )
    slow = Finding(code="REGISTRY_SLOW", cluster=aks, registry=acr, message="m")
    elsewhere = Finding(code="IMAGE_NOT_FOUND", cluster=aks, registry=hub, image=f"{hub}/b:1", message="m")
    down = Finding(
        code=failure, cluster=aks, registry=acr, message="cannot be read", evidence={"identity": "pullwatch"}
    )
    changes = compare([missing, secret, slow, elsewhere], [down])
    assert {f.code for f in changes.still_open} == {
        "IMAGE_NOT_FOUND",
        "PULL_SECRET_REJECTED",
        "REGISTRY_SLOW",
    }
    assert [f.registry for f in changes.resolved] == [hub]
    assert [f.code for f in changes.new] == [failure]


def test_a_firewall_finding_from_arm_alone_hides_nothing() -> None:
    from shared.compare import compare
    from shared.findings import Finding

    aks = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks"
    acr = "contosoacr.azurecr.io"
    missing = Finding(code="IMAGE_NOT_FOUND", cluster=aks, registry=acr, image=f"{acr}/a:1", message="m")
    arm = Finding(
        code="REGISTRY_FIREWALL_DENIED", cluster=aks, registry=acr, message="the cluster's IP is refused"
    )
    assert [f.code for f in compare([missing], [arm]).resolved] == ["IMAGE_NOT_FOUND"]
