"""compare(): new / still open / resolved, and findings never resolved by an incomplete check."""

from __future__ import annotations

from typing import Any

from shared.compare import Changes, compare, covered_groups
from shared.findings import Finding

AKS = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks-prod"
OTHER = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks-dev"
ACR = "contosoacr.azurecr.io"


def finding(code: str, **kw: Any) -> Finding:
    kw.setdefault("cluster", AKS)
    return Finding(code=code, message=kw.pop("message", f"{code} happened"), **kw)


def incomplete(check: str, registry: str | None = None, cluster: str = AKS) -> Finding:
    return finding(
        "CHECK_INCOMPLETE",
        cluster=cluster,
        registry=registry,
        evidence={"check": check, "reason": "403 reading role assignments"},
    )


ROLE = finding("ROLE_MISSING", registry=ACR)
IMAGE = finding(
    "IMAGE_NOT_FOUND", registry=ACR, image=f"{ACR}/web:9", namespace="shop", workload="Deployment/web"
)
PODS = finding(
    "PODS_IMAGE_PULL_FAILING",
    registry=ACR,
    image=f"{ACR}/web:9",
    namespace="shop",
    workload="Deployment/web",
    cause="manifest_unknown",
)


def keys(findings: tuple[Finding, ...] | list[Finding]) -> set[tuple[str | None, ...]]:
    return {f.key for f in findings}


def test_new_still_open_resolved_by_identity() -> None:
    fresher = IMAGE.with_(message="still missing", evidence={"closest": ["1.4.2"]})
    changes = compare([ROLE, IMAGE], [fresher, PODS])
    assert changes.new == (PODS,)
    assert changes.still_open == (fresher,)  # the current finding, with its fresher text
    assert changes.resolved == (ROLE,)
    assert changes.changed
    assert keys(changes.open) == keys([PODS, fresher])
    assert fresher in changes.open


def test_nothing_changed_is_not_a_change() -> None:
    changes = compare([ROLE, IMAGE], [IMAGE, ROLE])
    assert changes == Changes(still_open=changes.still_open)
    assert not changes.changed
    assert changes.new == () and changes.resolved == ()


def test_identity_ignores_case_of_cluster_and_registry() -> None:
    upper = ROLE.with_(cluster=AKS.upper(), registry=ACR.upper())
    assert compare([ROLE], [upper]).still_open == (upper,)


def test_duplicates_count_once_and_the_first_one_seen_is_kept() -> None:
    other_text = ROLE.with_(message="other text")
    changes = compare([], [ROLE, ROLE, other_text])
    assert changes.new == (ROLE,)
    assert changes.new[0].message == ROLE.message


def test_duplicates_in_the_previous_state_resolve_once() -> None:
    changes = compare([ROLE, ROLE.with_(message="stored twice")], [])
    assert changes.resolved == (ROLE,)
    assert changes.resolved[0].message == ROLE.message
    assert changes.new == () and changes.still_open == ()


def test_a_finding_still_open_does_not_stop_later_ones_from_resolving() -> None:
    changes = compare([ROLE, IMAGE, PODS], [ROLE])
    assert changes.still_open == (ROLE,)
    assert keys(changes.resolved) == keys([IMAGE, PODS])


def test_incomplete_check_of_the_same_group_keeps_findings_open() -> None:
    gap = incomplete("roles")
    changes = compare([ROLE, IMAGE], [gap])
    assert ROLE in changes.still_open  # roles check did not run: not resolved by silence
    assert changes.resolved == (IMAGE,)  # the images check did run
    assert changes.new == (gap,)


def test_incomplete_all_keeps_every_group_open() -> None:
    changes = compare([ROLE, IMAGE, PODS], [incomplete("all")])
    assert keys(changes.still_open) == keys([ROLE, IMAGE, PODS])
    assert changes.resolved == ()


def test_incomplete_naming_several_groups_separated_by_commas_covers_each_of_them() -> None:
    network = finding("REGISTRY_UNREACHABLE", registry=ACR)
    changes = compare([ROLE, IMAGE, network], [incomplete("images,NETWORK")])
    assert keys(changes.still_open) == keys([IMAGE, network])
    assert changes.resolved == (ROLE,)


def test_incomplete_groups_may_have_spaces_after_the_commas() -> None:
    network = finding("REGISTRY_UNREACHABLE", registry=ACR)
    changes = compare([ROLE, IMAGE, network], [incomplete("roles, images")])
    assert keys(changes.still_open) == keys([ROLE, IMAGE])
    assert changes.resolved == (network,)


def test_incomplete_without_cluster_covers_findings_without_cluster() -> None:
    unplaced = finding("ROLE_MISSING", cluster=None, registry=ACR)
    gap = finding("CHECK_INCOMPLETE", cluster=None, evidence={"check": "roles", "reason": "timeout"})
    assert compare([unplaced], [gap]).still_open == (unplaced,)
    assert compare([ROLE], [gap]).resolved == (ROLE,)  # no cluster is not every cluster


def test_incomplete_for_one_registry_only_covers_that_registry() -> None:
    other_registry = finding("ROLE_MISSING", registry="other.azurecr.io")
    changes = compare([ROLE, other_registry], [incomplete("roles", registry="OTHER.azurecr.io")])
    assert changes.still_open == (other_registry,)
    assert changes.resolved == (ROLE,)


def test_incomplete_without_registry_covers_every_registry_of_the_group() -> None:
    other_registry = finding("ROLE_MISSING", registry="other.azurecr.io")
    changes = compare([ROLE, other_registry], [incomplete("roles")])
    assert keys(changes.still_open) == keys([ROLE, other_registry])


def test_incomplete_on_another_cluster_does_not_cover() -> None:
    changes = compare([ROLE], [incomplete("all", cluster=OTHER)])
    assert changes.resolved == (ROLE,)


def test_incomplete_itself_resolves_when_the_check_runs_again() -> None:
    gap = incomplete("roles")
    changes = compare([gap, ROLE], [ROLE])
    assert changes.resolved == (gap,)
    assert changes.still_open == (ROLE,)


def test_incomplete_without_check_name_is_treated_as_all() -> None:
    gap = finding("CHECK_INCOMPLETE", evidence={"reason": "timeout"})
    assert compare([IMAGE], [gap]).still_open == (IMAGE,)


def test_results_are_sorted_most_urgent_first() -> None:
    warning = finding("DOCKERHUB_ANONYMOUS_PULLS", registry="docker.io")
    changes = compare([], [warning, ROLE])
    assert changes.new == (ROLE, warning)


def test_a_registry_unreachable_on_the_pull_path_keeps_that_registrys_image_findings_open() -> None:
    unreachable = finding("REGISTRY_UNREACHABLE", registry=ACR, evidence={"identity": "kubelet"})
    other_image = finding("IMAGE_NOT_FOUND", registry="other.azurecr.io", image="other.azurecr.io/api:1")
    changes = compare([IMAGE, other_image, ROLE], [unreachable])
    assert changes.still_open == (IMAGE,)
    assert keys(changes.resolved) == keys([other_image, ROLE])


def test_a_registry_unreachable_seen_from_arm_alone_hides_nothing() -> None:
    unreachable = finding("REGISTRY_UNREACHABLE", registry=ACR, evidence={"reason": "private endpoint only"})
    changes = compare([IMAGE], [unreachable])
    assert changes.resolved == (IMAGE,)
    assert changes.still_open == ()


def test_a_finding_naming_an_identity_is_not_a_registry_failure() -> None:
    role = finding("ROLE_MISSING", registry=ACR, evidence={"identity": "kubelet"})
    changes = compare([IMAGE], [role])
    assert changes.resolved == (IMAGE,)


def test_an_incomplete_source_covers_every_group_it_feeds() -> None:
    changes = compare([ROLE, IMAGE], [incomplete("arm")])
    assert changes.still_open == (ROLE,)  # arm feeds roles, not images
    assert changes.resolved == (IMAGE,)
    assert covered_groups("arm") == frozenset({"roles", "network", "performance"})
    assert covered_groups("Kubernetes, roles") == frozenset(
        {"cluster", "images", "secrets", "network", "access", "performance", "roles"}
    )
