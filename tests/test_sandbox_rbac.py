"""The sandbox's own Azure RBAC / ACR ABAC model, on cases taken from Azure's documentation.

Sources: Microsoft Learn "Azure built-in roles for Containers" (role definitions), "Understand Azure
role definitions" (wildcards, case-insensitive, actions minus notActions), "Understand scope for
Azure RBAC" (inheritance from management group / subscription / resource group), "List Azure role
assignments using the REST API" (group membership, transitive), ACR "Azure ABAC repository
permissions" (AcrPull/AcrPush/AcrDelete not honoured, Owner/Contributor/Reader control plane only,
repository conditions with StringEqualsIgnoreCase / StringStartsWithIgnoreCase and the trailing `/`).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import pytest

from sandbox.rbac import Rbac, abac_condition, repository_condition_allows
from sandbox.roles import BUILTIN_ROLES, action_matches, builtin_role
from sandbox.world import World, parse

TENANT = "11111111-1111-1111-1111-111111111111"
OTHER_TENANT = "99999999-9999-9999-9999-999999999999"
SUB2 = "33333333-3333-3333-3333-333333333333"

BASE = f"""
name: rbac-cases
tenant: {TENANT}
subscriptions: [22222222-2222-2222-2222-222222222222, {SUB2}]
registries:
  contosoacr: {{resourceGroup: rg-shared, roleAssignmentMode: MODE}}
  otheracr: {{resourceGroup: rg-other}}
  farawayacr: {{resourceGroup: rg-far, subscription: {SUB2}}}
  foreignacr: {{resourceGroup: rg-shared, tenant: {OTHER_TENANT}}}
clusters:
  aks-prod: {{resourceGroup: rg-prod}}
  aks-dev: {{resourceGroup: rg-dev}}
"""


def world(mode: str = "LegacyRegistryPermissions", extra: str = "") -> World:
    return parse(BASE.replace("MODE", mode) + textwrap.dedent(extra))


@dataclass
class Case:
    id: str
    extra: str
    expected: bool
    principal: str = "kubelet:aks-prod"
    registry: str = "contosoacr"
    repository: str = "web"
    mode: str = "LegacyRegistryPermissions"
    tenant: str = TENANT


def ra(*lines: str) -> str:
    return "roleAssignments:\n" + "".join(f"  - {line}\n" for line in lines)


LEGACY = "LegacyRegistryPermissions"
ABAC = "AbacRepositoryPermissions"


def reader_limited_to(
    repositories: str, principal: str = "kubelet:aks-prod", scope: str = "registry:contosoacr"
) -> str:
    return f"{{principal: {principal}, role: {REPO_READER}, scope: {scope}, repositories: [{repositories}]}}"


def puller(role: str, scope: str) -> str:
    return f"{{principal: kubelet:aks-prod, role: {role}, scope: {scope}}}"


REPO_READER = '"Container Registry Repository Reader"'

CASES = [
    # --- classic mode: scopes inherit downwards -------------------------------------------------
    Case("acrpull-at-registry", ra(puller("AcrPull", "registry:contosoacr")), True),
    Case("acrpull-at-registry-rg", ra(puller("AcrPull", "resourceGroup:rg-shared")), True),
    Case("acrpull-at-other-rg", ra(puller("AcrPull", "resourceGroup:rg-prod")), False),
    Case("acrpull-at-default-subscription", ra(puller("AcrPull", "subscription")), True),
    Case("acrpull-at-other-subscription", ra(puller("AcrPull", f"subscription:{SUB2}")), False),
    Case(
        "acrpull-at-subscription-of-registry",
        ra(puller("AcrPull", f"subscription:{SUB2}")),
        True,
        registry="farawayacr",
    ),
    Case("acrpull-at-management-group", ra(puller("AcrPull", "managementGroup:contoso")), True),
    Case("acrpull-on-another-registry", ra(puller("AcrPull", "registry:otheracr")), False),
    Case(
        "acrpull-for-another-identity",
        ra("{principal: kubelet:aks-dev, role: AcrPull, scope: registry:contosoacr}"),
        False,
    ),
    Case("no-assignment", "", False),
    # --- classic mode: which roles hold registries/pull/read --------------------------------------
    Case("acrpush", ra(puller("AcrPush", "registry:contosoacr")), True),
    Case("reader-star-read", ra(puller("Reader", "registry:contosoacr")), True),
    Case("owner-star", ra(puller("Owner", "registry:contosoacr")), True),
    Case("contributor-star", ra(puller("Contributor", "registry:contosoacr")), True),
    Case("acrdelete-only", ra(puller("AcrDelete", "registry:contosoacr")), False),
    Case(
        "data-importer-classic",
        ra(puller('"Container Registry Data Importer and Data Reader"', "registry:contosoacr")),
        True,
    ),
    Case("repository-reader-classic-ignored", ra(puller(REPO_READER, "registry:contosoacr")), False),
    Case(
        "classic-condition-does-not-limit-pull-read",
        ra(
            '{principal: kubelet:aks-prod, role: "Container Registry Data Importer and Data Reader", '
            "scope: registry:contosoacr, repositories: [other]}"
        ),
        True,
    ),
    # --- groups --------------------------------------------------------------------------------
    Case(
        "group-member",
        "groups: {pullers: [kubelet:aks-prod]}\n"
        + ra("{principal: group:pullers, role: AcrPull, scope: registry:contosoacr}"),
        True,
    ),
    Case(
        "nested-group-member",
        "groups: {inner: [kubelet:aks-prod], outer: [group:inner]}\n"
        + ra("{principal: group:outer, role: AcrPull, scope: resourceGroup:rg-shared}"),
        True,
    ),
    Case(
        "group-without-the-identity",
        "groups: {pullers: [kubelet:aks-dev]}\n"
        + ra("{principal: group:pullers, role: AcrPull, scope: registry:contosoacr}"),
        False,
    ),
    # --- custom roles: wildcards, case, notActions ----------------------------------------------
    Case(
        "custom-exact",
        "customRoles: {Puller: {actions: [Microsoft.ContainerRegistry/registries/pull/read]}}\n"
        + ra(puller("Puller", "registry:contosoacr")),
        True,
    ),
    Case(
        "custom-wildcard",
        "customRoles: {Puller: {actions: ['Microsoft.ContainerRegistry/*/read']}}\n"
        + ra(puller("Puller", "registry:contosoacr")),
        True,
    ),
    Case(
        "custom-case-insensitive",
        "customRoles: {Puller: {actions: [microsoft.containerregistry/REGISTRIES/Pull/Read]}}\n"
        + ra(puller("Puller", "registry:contosoacr")),
        True,
    ),
    Case(
        "custom-notactions-subtract",
        "customRoles: {NoPull: {actions: ['Microsoft.ContainerRegistry/*'], "
        "notActions: ['Microsoft.ContainerRegistry/registries/pull/*']}}\n"
        + ra(puller("NoPull", "registry:contosoacr")),
        False,
    ),
    Case(
        "custom-other-action",
        "customRoles: {Pusher: {actions: [Microsoft.ContainerRegistry/registries/push/write]}}\n"
        + ra(puller("Pusher", "registry:contosoacr")),
        False,
    ),
    # --- ABAC mode ------------------------------------------------------------------------------
    Case("abac-acrpull-ignored", ra(puller("AcrPull", "registry:contosoacr")), False, mode=ABAC),
    Case("abac-acrpush-ignored", ra(puller("AcrPush", "registry:contosoacr")), False, mode=ABAC),
    Case("abac-owner-control-plane-only", ra(puller("Owner", "registry:contosoacr")), False, mode=ABAC),
    Case("abac-contributor-control-plane-only", ra(puller("Contributor", "subscription")), False, mode=ABAC),
    Case("abac-reader-control-plane-only", ra(puller("Reader", "registry:contosoacr")), False, mode=ABAC),
    Case(
        "abac-repository-reader-no-condition",
        ra(puller(REPO_READER, "registry:contosoacr")),
        True,
        mode=ABAC,
        repository="any/thing",
    ),
    Case("abac-repository-reader-at-rg", ra(puller(REPO_READER, "resourceGroup:rg-shared")), True, mode=ABAC),
    Case(
        "abac-repository-writer",
        ra(puller('"Container Registry Repository Writer"', "registry:contosoacr")),
        True,
        mode=ABAC,
    ),
    Case(
        "abac-repository-contributor",
        ra(puller('"Container Registry Repository Contributor"', "registry:contosoacr")),
        True,
        mode=ABAC,
    ),
    Case(
        "abac-data-importer",
        ra(puller('"Container Registry Data Importer and Data Reader"', "registry:contosoacr")),
        True,
        mode=ABAC,
    ),
    Case(
        "abac-catalog-lister-not-enough",
        ra(puller('"Container Registry Repository Catalog Lister"', "registry:contosoacr")),
        False,
        mode=ABAC,
    ),
    Case("abac-exact-name", ra(reader_limited_to("web")), True, mode=ABAC),
    Case("abac-exact-name-ignores-case", ra(reader_limited_to("WEB")), True, mode=ABAC),
    Case(
        "abac-exact-name-not-a-prefix", ra(reader_limited_to("web")), False, mode=ABAC, repository="web-api"
    ),
    Case(
        "abac-prefix-with-slash", ra(reader_limited_to("team-a/")), True, mode=ABAC, repository="team-a/api"
    ),
    Case(
        "abac-prefix-with-slash-not-sibling",
        ra(reader_limited_to("team-a/")),
        False,
        mode=ABAC,
        repository="team-a-legacy/api",
    ),
    Case(
        "abac-name-without-slash-is-exact",
        ra(reader_limited_to("team-a")),
        False,
        mode=ABAC,
        repository="team-a/api",
    ),
    Case(
        "abac-group-with-condition",
        "groups: {pullers: [kubelet:aks-prod]}\n"
        + ra(reader_limited_to("web, team-a/", principal="group:pullers")),
        True,
        mode=ABAC,
        repository="team-a/worker",
    ),
    Case(
        "abac-second-assignment-wins",
        ra(
            f"{{principal: kubelet:aks-prod, role: {REPO_READER}, scope: registry:contosoacr, repositories: [web]}}",
            f"{{principal: kubelet:aks-prod, role: {REPO_READER}, scope: subscription, repositories: [tools/]}}",
        ),
        True,
        mode=ABAC,
        repository="tools/agent",
    ),
    Case(
        "abac-custom-data-wildcard",
        "customRoles: {RepoRead: {dataActions: ['Microsoft.ContainerRegistry/registries/repositories/*/read']}}\n"
        + ra(puller("RepoRead", "registry:contosoacr")),
        True,
        mode=ABAC,
    ),
    Case(
        "abac-custom-notdataactions",
        "customRoles: {NoContent: {dataActions: ['Microsoft.ContainerRegistry/registries/repositories/*'], "
        "notDataActions: ['Microsoft.ContainerRegistry/registries/repositories/content/*']}}\n"
        + ra(puller("NoContent", "registry:contosoacr")),
        False,
        mode=ABAC,
    ),
    Case(
        "abac-custom-actions-only",
        "customRoles: {Puller: {actions: [Microsoft.ContainerRegistry/registries/pull/read]}}\n"
        + ra(puller("Puller", "registry:contosoacr")),
        False,
        mode=ABAC,
    ),
    # --- tenants -------------------------------------------------------------------------------
    Case("token-from-other-tenant", ra(puller("AcrPull", "registry:contosoacr")), False, tenant=OTHER_TENANT),
    Case("registry-in-other-tenant", ra(puller("AcrPull", "subscription")), False, registry="foreignacr"),
    # --- the app's implicit roles ---------------------------------------------------------------
    Case("app-implicit-acrpull", "", True, principal="app"),
    Case("app-implicit-acrpull-other-subscription", "", True, principal="app", registry="farawayacr"),
    Case("app-implicit-ignored-by-abac", "", False, principal="app", mode=ABAC),
    Case(
        "app-explicit-replaces-implicit",
        ra("{principal: app, role: Azure Kubernetes Service Cluster User Role, scope: subscription}"),
        False,
        principal="app",
    ),
    Case(
        "app-explicit-acrpull-elsewhere",
        ra("{principal: app, role: AcrPull, scope: resourceGroup:rg-other}"),
        False,
        principal="app",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decide_pull(case: Case) -> None:
    w = world(case.mode, case.extra)
    reg = w.registry(case.registry)
    decision = Rbac(w).decide_pull(w.principal_id(case.principal), case.tenant, reg, case.repository)
    assert decision.allowed is case.expected, decision.reason
    assert decision.reason


def test_the_cases_allow_and_deny_in_both_modes_with_distinct_ids() -> None:
    assert len({c.id for c in CASES}) == len(CASES)
    outcomes = {(c.mode, c.expected) for c in CASES}
    assert outcomes == {(m, e) for m in ("LegacyRegistryPermissions", ABAC) for e in (True, False)}
    for mode in ("LegacyRegistryPermissions", ABAC):  # several of each, not one token case
        assert sum(1 for c in CASES if c.mode == mode and c.expected) >= 5, mode
        assert sum(1 for c in CASES if c.mode == mode and not c.expected) >= 5, mode


def test_unknown_object_id_is_denied() -> None:
    w = world(extra=ra(puller("AcrPull", "subscription")))
    decision = Rbac(w).decide_pull(
        "00000000-0000-0000-0000-000000000001", TENANT, w.registry("contosoacr"), "web"
    )
    assert not decision.allowed


def test_reads_the_world_live() -> None:
    w = world(extra=ra(puller("AcrPull", "registry:contosoacr")))
    rbac = Rbac(w)
    oid, reg = w.principal_id("kubelet:aks-prod"), w.registry("contosoacr")
    assert rbac.decide_pull(oid, TENANT, reg, "web").allowed
    w.role_assignments.clear()
    assert not rbac.decide_pull(oid, TENANT, reg, "web").allowed
    w.role_assignments.extend(world(extra=ra(puller(REPO_READER, "registry:contosoacr"))).role_assignments)
    reg.role_assignment_mode = ABAC
    assert rbac.decide_pull(oid, TENANT, reg, "web").allowed


@pytest.mark.parametrize(
    ("extra", "principal", "action", "target", "expected"),
    [
        ("", "app", "Microsoft.ContainerService/managedClusters/read", "cluster:aks-prod", True),
        ("", "app", "Microsoft.Authorization/roleAssignments/read", "subscription", True),
        (
            "",
            "app",
            "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action",
            "cluster:aks-prod",
            True,
        ),
        (
            ra("{principal: app, role: Reader, scope: subscription}"),
            "app",
            "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action",
            "cluster:aks-prod",
            False,
        ),
        (
            ra(
                "{principal: app, role: Azure Kubernetes Service Cluster User Role, scope: resourceGroup:rg-prod}"
            ),
            "app",
            "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action",
            "cluster:aks-prod",
            True,
        ),
        (
            ra("{principal: app, role: Contributor, scope: subscription}"),
            "app",
            "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action",
            "cluster:aks-prod",
            True,
        ),
        (
            ra("{principal: app, role: Contributor, scope: subscription}"),
            "app",
            "Microsoft.Authorization/roleAssignments/write",
            "subscription",
            False,
        ),
        (
            ra("{principal: app, role: Owner, scope: managementGroup:root}"),
            "app",
            "Microsoft.Authorization/roleAssignments/write",
            "subscription",
            True,
        ),
        (
            ra("{principal: app, role: Reader, scope: resourceGroup:rg-prod}"),
            "app",
            "Microsoft.ContainerService/managedClusters/read",
            "cluster:aks-dev",
            False,
        ),
        (
            ra("{principal: app, role: AcrPull, scope: subscription}"),
            "app",
            "Microsoft.ContainerService/managedClusters/read",
            "cluster:aks-prod",
            False,
        ),
    ],
)
def test_can(extra: str, principal: str, action: str, target: str, expected: bool) -> None:
    w = world(extra=extra)
    resource = (
        w.clusters[target.split(":")[1]].resource_id
        if target.startswith("cluster:")
        else f"/subscriptions/{w.subscriptions[0]}"
    )
    assert Rbac(w).can(w.principal_id(principal), action, resource) is expected


def test_builtin_definitions_match_the_documented_guids() -> None:
    documented = {
        "AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
        "AcrPush": "8311e382-0749-4cb8-b61a-304f252e45ec",
        "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
        "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        "Container Registry Data Importer and Data Reader": "577a9874-89fd-4f24-9dbd-b5034d0ad23a",
        "Container Registry Repository Reader": "b93aa761-3e63-49ed-ac28-beffa264f7ac",
        "Container Registry Repository Writer": "2a1e307c-b015-4ebd-883e-5b7698a07328",
        "Container Registry Repository Contributor": "2efddaa5-3f1f-4df3-97df-af3f13818f4c",
        "Azure Kubernetes Service Cluster User Role": "4abbcc35-e782-43d8-92c5-2d3f1bd2253f",
    }
    for name, guid in documented.items():
        role = builtin_role(name)
        assert role is not None and role.guid == guid, name
    assert len({r.guid for r in BUILTIN_ROLES}) == len(BUILTIN_ROLES)


def test_wildcards_span_segments_and_ignore_case() -> None:
    assert action_matches("*/read", "Microsoft.ContainerRegistry/registries/pull/read")
    assert action_matches("Microsoft.ContainerRegistry/*", "microsoft.containerregistry/registries/pull/read")
    assert not action_matches(
        "*/read", "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action"
    )
    assert not action_matches(
        "Microsoft.ContainerRegistry/registries/pull/read", "Microsoft.ContainerRegistry/x"
    )


def test_condition_text_is_the_portal_format() -> None:
    text = abac_condition(["web", "team-a/"])
    assert "!(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/content/read'})" in text
    assert (
        "@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringEqualsIgnoreCase 'web'"
        in text
    )
    assert (
        "@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringStartsWithIgnoreCase 'team-a/'"
        in text
    )
    assert repository_condition_allows(None, "x") and not repository_condition_allows(["a/"], "a")
