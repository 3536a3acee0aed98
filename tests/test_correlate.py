"""correlate(): each pod pull failure linked to the finding of the same audit that explains it,
from plain findings; and the links it must not make."""

from __future__ import annotations

import pytest

from shared.correlate import CrashFacts, correlate
from shared.findings import Finding

PROD = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks-prod"
DEV = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks-dev"
ACR = "contosoacr.azurecr.io"
OTHER_ACR = "fabrikamacr.azurecr.io"
IMAGE = f"{ACR}/shop/web:1.4.2"


def pod(
    cause: str = "auth_or_not_found",
    *,
    cluster: str = PROD,
    registry: str = ACR,
    image: str = IMAGE,
    workload: str = "Deployment/web",
) -> Finding:
    return Finding(
        "PODS_IMAGE_PULL_FAILING",
        f"2 pods of {workload} in shop cannot pull {image}: denied.",
        cluster=cluster,
        registry=registry,
        image=image,
        namespace="shop",
        workload=workload,
        cause=cause,
        evidence={"pods": 2},
        remediation="Check the image name first, then the pod's imagePullSecrets.",
    )


def root(code: str, **fields: object) -> Finding:
    values: dict[str, object] = {"cluster": PROD, "registry": ACR, "remediation": f"fix {code}"}
    values.update(fields)
    return Finding(code, f"{code} says why.", **values)  # type: ignore[arg-type]


def linked(*findings: Finding) -> dict[str, Finding]:
    return {f.code: f for f in correlate(list(findings))}


@pytest.mark.parametrize("code", ["ROLE_MISSING", "ROLE_NOT_HONORED_ABAC", "REGISTRY_OTHER_TENANT"])
def test_a_pull_identity_without_the_right_is_the_root_cause_of_that_acrs_pull_failures(code: str) -> None:
    out = linked(pod(), root(code))
    symptom, cause = out["PODS_IMAGE_PULL_FAILING"], out[code]
    assert symptom.cause == "auth_failed"
    assert symptom.root_cause == cause.id
    assert symptom.remediation == f"fix {code}"
    assert symptom.evidence["kubelet_cause"] == "auth_or_not_found"
    assert f"({code})" in symptom.message and symptom.message.startswith("2 pods of Deployment/web in shop")
    assert cause.symptoms == (symptom.id,)
    assert cause.root_cause is None


def test_an_unresolved_identity_explains_failures_on_every_acr_of_its_cluster_only() -> None:
    unresolved = root("IDENTITY_UNRESOLVED", registry=None)
    out = correlate(
        [pod(), pod(registry="ghcr.io", image="ghcr.io/acme/tool:1", workload="Deployment/tool"), unresolved]
    )
    assert out[0].root_cause == unresolved.id and out[0].cause == "auth_failed"
    assert out[1].root_cause is None and out[1].cause == "auth_or_not_found"


def test_a_condition_explains_only_the_repositories_it_leaves_out() -> None:
    excludes = root("ROLE_CONDITION_EXCLUDES_REPOSITORY", evidence={"repositories_excluded": ["shop/web"]})
    other = pod(image=f"{ACR}/shop/api:2.0", workload="Deployment/api")
    out = correlate([pod(), other, excludes])
    assert out[0].root_cause == excludes.id and out[0].cause == "auth_failed"
    assert out[1].root_cause is None and out[1].cause == "auth_or_not_found"
    assert out[2].symptoms == (out[0].id,)


def test_a_role_missing_on_another_registry_or_cluster_explains_nothing() -> None:
    elsewhere = [root("ROLE_MISSING", registry=OTHER_ACR), root("ROLE_NOT_HONORED_ABAC", cluster=DEV)]
    out = correlate([pod(), *elsewhere])
    assert out[0] == pod()
    assert all(f.symptoms == () for f in out[1:])


def test_a_role_does_not_explain_a_failure_the_kubelet_saw_as_a_network_error() -> None:
    out = correlate([pod("dns"), root("ROLE_MISSING")])
    assert out[0].root_cause is None and out[0].cause == "dns"


def test_a_missing_image_is_the_root_cause_of_its_pods_not_found() -> None:
    missing = root("IMAGE_NOT_FOUND", image=IMAGE, namespace="shop", workload="Deployment/web")
    deleted = root("IMAGE_DELETED_IN_USE", image=f"{ACR}/shop/old:1", workload="Deployment/old")
    out = correlate(
        [pod("not_found"), pod(image=f"{ACR}/shop/old:1", workload="Deployment/old"), missing, deleted]
    )
    assert (out[0].cause, out[0].root_cause) == ("not_found", missing.id)
    assert (out[1].cause, out[1].root_cause) == ("not_found", deleted.id)
    assert out[2].symptoms == (out[0].id,) and out[3].symptoms == (out[1].id,)


def test_another_image_of_the_registry_being_missing_explains_nothing() -> None:
    missing = root("IMAGE_NOT_FOUND", image=f"{ACR}/shop/web:9.9", workload="Deployment/web")
    assert correlate([pod("not_found"), missing])[0].root_cause is None


@pytest.mark.parametrize(
    "code",
    [
        "PULL_SECRET_MISSING",
        "PULL_SECRET_MALFORMED",
        "PULL_SECRET_NO_ENTRY_FOR_REGISTRY",
        "PULL_SECRET_REJECTED",
        "PULL_AUTH_REQUIRED",
    ],
)
def test_a_pull_secret_problem_is_the_root_cause_of_that_workloads_failures(code: str) -> None:
    secret = root(code, registry=None, namespace="shop", workload="Deployment/web")
    out = correlate([pod("auth_failed"), pod(workload="Deployment/api"), secret])
    assert (out[0].cause, out[0].root_cause) == ("auth_failed", secret.id)
    assert out[1].root_cause is None


def test_a_pull_secret_for_another_host_explains_nothing() -> None:
    secret = root("PULL_SECRET_REJECTED", registry="ghcr.io", namespace="shop", workload="Deployment/web")
    assert correlate([pod("auth_failed"), secret])[0].root_cause is None


@pytest.mark.parametrize(
    "code, cause",
    [
        ("REGISTRY_FIREWALL_DENIED", "forbidden"),
        ("REGISTRY_PUBLIC_ACCESS_DISABLED", "forbidden"),
        ("REGISTRY_DNS_FAILURE", "dns"),
        ("REGISTRY_TLS_ERROR", "tls"),
        ("REGISTRY_UNREACHABLE", "network"),
    ],
)
def test_the_registry_unreachable_from_the_cluster_is_the_root_cause(code: str, cause: str) -> None:
    blocked = root(code)
    out = correlate([pod(cause), pod(cause, cluster=DEV), blocked])
    assert (out[0].cause, out[0].root_cause) == (cause, blocked.id)
    assert out[1].root_cause is None  # another cluster's view of the registry


def test_the_network_comes_before_the_role_when_both_apply() -> None:
    firewall, role = root("REGISTRY_FIREWALL_DENIED"), root("ROLE_MISSING")
    out = correlate([pod(), role, firewall])
    assert out[0].root_cause == firewall.id
    assert out[1].symptoms == () and out[2].symptoms == (out[0].id,)


def test_a_pod_failure_with_no_root_cause_keeps_the_kubelets_cause() -> None:
    out = correlate([pod("rate_limited"), root("DOCKERHUB_ANONYMOUS_PULLS", registry="docker.io")])
    assert out[0] == pod("rate_limited")


def test_a_missing_platform_counts_the_pods_that_crash_with_exec_format_error() -> None:
    platform = root(
        "IMAGE_PLATFORM_MISSING", image=IMAGE, namespace="shop", workload="Deployment/web", node_pool="arm"
    )
    crashes = [
        CrashFacts("shop", "Deployment/web", IMAGE, "arm", 3),
        CrashFacts("shop", "Deployment/web", IMAGE, "amd", 2),  # another pool: another reason
        CrashFacts("shop", "Deployment/x", IMAGE, "arm", 1),
    ]
    out = correlate([platform, pod("platform_mismatch")], crashes)
    assert out[0].evidence["crashing_pods"] == 3
    assert out[0].message.endswith(" 3 pods are in CrashLoopBackOff there with exec format error.")
    assert out[1].root_cause == platform.id and out[1].cause == "platform_mismatch"


def test_ids_are_stable_and_differ_by_target() -> None:
    assert root("ROLE_MISSING").id == root("ROLE_MISSING", remediation="other").id
    assert root("ROLE_MISSING").id != root("ROLE_MISSING", registry=OTHER_ACR).id
    assert root("ROLE_MISSING").id.startswith("ROLE_MISSING:")
    assert root("ROLE_MISSING", registry=ACR.upper()).id == root("ROLE_MISSING").id


def test_a_root_cause_lists_at_most_500_symptoms_and_counts_the_rest() -> None:
    pods = [pod(workload=f"Deployment/w{i}") for i in range(503)]
    out = correlate([*pods, root("ROLE_MISSING")])
    role = out[-1]
    assert len(role.symptoms) == 500 and role.evidence["symptoms_total"] == 503
    assert all(p.root_cause == role.id for p in out[:-1])
