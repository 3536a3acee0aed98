"""Role findings from plain facts: codes, evidence, remediation commands."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace

from shared.actions import CONTENT_READ
from shared.checks.roles import (
    needs_service_principal_lookup,
    pull_identity,
    registries_with_identity_role,
    resolve_pull_identity,
    role_findings,
)
from shared.conditions import condition_allows
from shared.findings import Finding
from shared.model import ClusterInfo, PullIdentity, RegistryInfo, RoleAssignment
from shared.rbac import ACR_PULL, OWNER, REPOSITORY_READER


def az_argv(remediation: str | None) -> list[str]:
    """The arguments ``az`` receives when bash runs the remediation as written."""
    script = "az() { printf '%s\\0' \"$@\"; }\n" + (remediation or "")
    out = subprocess.run(["bash", "-c", script], capture_output=True, check=True, timeout=10).stdout
    return out.decode().split("\0")[:-1]


TENANT = "11111111-1111-1111-1111-111111111111"
SUB = "22222222-2222-2222-2222-222222222222"
KUBELET = "aaaaaaaa-0000-0000-0000-000000000001"
GROUP = "bbbbbbbb-0000-0000-0000-000000000002"
CLUSTER = ClusterInfo(
    id=f"/subscriptions/{SUB}/resourceGroups/rg-prod/providers/Microsoft.ContainerService/managedClusters/aks-prod",
    name="aks-prod",
    subscription_id=SUB,
    resource_group="rg-prod",
    location="westeurope",
    tenant_id=TENANT,
    kubelet_object_id=KUBELET,
    kubelet_client_id="client-1",
    service_principal_client_id="msi",
)
REG_ID = f"/subscriptions/{SUB}/resourceGroups/rg-shared/providers/Microsoft.ContainerRegistry/registries/contosoacr"
REGISTRY = RegistryInfo(
    id=REG_ID,
    name="contosoacr",
    login_server="contosoacr.azurecr.io",
    subscription_id=SUB,
    resource_group="rg-shared",
    location="westeurope",
    tenant_id=TENANT,
)
ABAC = replace(REGISTRY, role_assignment_mode="AbacRepositoryPermissions")
IDENTITY = PullIdentity(KUBELET, "kubelet", "client-1")
ATTR = "@Request[Microsoft.ContainerRegistry/registries/repositories:name]"


def assign(
    role: str, scope: str = REG_ID, principal: str = KUBELET, n: int = 1, condition: str | None = None
) -> RoleAssignment:
    return RoleAssignment(
        id=f"{scope}/providers/Microsoft.Authorization/roleAssignments/0000000{n}",
        scope=scope,
        principal_id=principal,
        principal_type="ServicePrincipal",
        role_definition_id=f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role}",
        condition=condition,
        condition_version="2.0" if condition else None,
    )


def acr_condition(expression: str) -> str:
    return f"((!(ActionMatches{{'{CONTENT_READ}'}})) OR ({expression}))"


def run(
    registry: RegistryInfo,
    assignments: list[RoleAssignment],
    repos: set[str] | None = None,
    groups: tuple[str, ...] = (),
    identity: PullIdentity | None = IDENTITY,
    **kw: str,
) -> list[Finding]:
    return role_findings(
        CLUSTER,
        identity,
        [registry],
        {registry.login_server: repos or {"web"}},
        assignments,
        {},
        list(groups),
        **kw,
    )  # type: ignore[arg-type]


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def test_acrpull_at_registry_passes() -> None:
    assert run(REGISTRY, [assign(ACR_PULL)]) == []


def test_no_role_is_role_missing_with_exact_command() -> None:
    [f] = run(REGISTRY, [assign(ACR_PULL, principal="someone-else")])
    assert f.code == "ROLE_MISSING" and f.registry == "contosoacr.azurecr.io" and f.cluster == CLUSTER.id
    assert f.remediation == (
        f"az role assignment create --assignee-object-id {KUBELET} --assignee-principal-type ServicePrincipal "
        f"--role AcrPull --scope {REG_ID}"
    )
    assert f.evidence["principal_id"] == KUBELET
    assert f.evidence["assignments_checked"] == 0
    assert f.evidence["mode"] == "LegacyRegistryPermissions"
    json.dumps(f.to_dict())  # evidence is JSON


def test_group_membership_counts() -> None:
    assert run(REGISTRY, [assign(ACR_PULL, principal=GROUP)], groups=(GROUP,)) == []
    assert codes(run(REGISTRY, [assign(ACR_PULL, principal=GROUP)])) == ["ROLE_MISSING"]


def test_group_lookup_failure_is_incomplete_not_missing() -> None:
    [f] = run(REGISTRY, [], groups_unreadable="HTTP 403 Authorization_RequestDenied")
    assert f.code == "CHECK_INCOMPLETE"
    assert f.evidence["check"] == "roles" and "group" in f.evidence["reason"]
    assert f.evidence["registry"] == "contosoacr.azurecr.io"
    # a direct grant still answers the question
    assert run(REGISTRY, [assign(ACR_PULL)], groups_unreadable="403") == []


def test_assignments_unreadable_is_incomplete() -> None:
    [f] = run(REGISTRY, [], assignments_unreadable="HTTP 403 AuthorizationFailed")
    assert f.code == "CHECK_INCOMPLETE" and f.level.value == "unknown"
    assert f.evidence["check"] == "roles" and "AuthorizationFailed" in f.evidence["reason"]


def test_abac_registry_ignores_acrpull() -> None:
    [f] = run(ABAC, [assign(ACR_PULL), assign(OWNER, n=2)], repos={"web", "api"})
    assert f.code == "ROLE_NOT_HONORED_ABAC"
    assert f.evidence["roles"] == ["AcrPull", "Owner"]
    assert f.evidence["mode"] == "AbacRepositoryPermissions"
    argv = az_argv(f.remediation)
    assert argv[argv.index("--role") + 1] == "Container Registry Repository Reader"
    assert argv[argv.index("--scope") + 1] == REG_ID
    assert argv[argv.index("--condition-version") + 1] == "2.0"
    condition = argv[argv.index("--condition") + 1]
    assert condition_allows(condition, CONTENT_READ, "web") and condition_allows(
        condition, CONTENT_READ, "api"
    )
    assert not condition_allows(condition, CONTENT_READ, "other")


def test_abac_repository_reader_without_condition_passes() -> None:
    assert run(ABAC, [assign(REPOSITORY_READER)], repos={"web", "team-a/api"}) == []


def test_abac_condition_excludes_a_repository() -> None:
    cond = acr_condition(f"{ATTR} StringStartsWithIgnoreCase 'team-a/'")
    [f] = run(ABAC, [assign(REPOSITORY_READER, condition=cond)], repos={"team-a/api", "web", "db"})
    assert f.code == "ROLE_CONDITION_EXCLUDES_REPOSITORY"
    assert f.evidence["repositories_excluded"] == ["db", "web"]
    argv = az_argv(f.remediation)
    condition = argv[argv.index("--condition") + 1]
    assert condition_allows(condition, CONTENT_READ, "web") and condition_allows(
        condition, CONTENT_READ, "db"
    )
    assert not condition_allows(condition, CONTENT_READ, "team-a/api")


def test_abac_two_conditional_assignments_add_up() -> None:
    a = assign(REPOSITORY_READER, condition=acr_condition(f"{ATTR} StringEqualsIgnoreCase 'web'"))
    b = assign(
        REPOSITORY_READER,
        n=2,
        principal=GROUP,
        condition=acr_condition(f"{ATTR} ForAnyOfAnyValues:StringEqualsIgnoreCase {{'db','cache'}}"),
    )
    assert run(ABAC, [a, b], repos={"web", "db"}, groups=(GROUP,)) == []


def test_unreadable_condition_is_incomplete_never_a_pass() -> None:
    cond = acr_condition(f"{ATTR} StringSoundsLike 'web'")
    [f] = run(ABAC, [assign(REPOSITORY_READER, condition=cond)])
    assert f.code == "CHECK_INCOMPLETE"
    assert f.evidence["check"] == "roles" and "not understood" in f.evidence["reason"]


def test_other_tenant() -> None:
    other = replace(REGISTRY, tenant_id="99999999-0000-0000-0000-000000000000")
    [f] = run(other, [assign(ACR_PULL)])
    assert f.code == "REGISTRY_OTHER_TENANT"
    assert f.evidence["registry_tenant"] == other.tenant_id
    # tenant IDs compare case-insensitively
    assert run(replace(REGISTRY, tenant_id=TENANT.upper()), [assign(ACR_PULL)]) == []


def test_case_differences_in_ids() -> None:
    upper = assign(
        ACR_PULL, scope=REG_ID.upper().replace("RESOURCEGROUPS", "resourcegroups"), principal=KUBELET.upper()
    )
    assert run(REGISTRY, [upper]) == []


def test_inherited_from_resource_group_subscription_and_management_group() -> None:
    for scope in (
        f"/subscriptions/{SUB}/resourceGroups/rg-shared",
        f"/subscriptions/{SUB}",
        "/providers/Microsoft.Management/managementGroups/contoso",
    ):
        assert run(REGISTRY, [assign(ACR_PULL, scope=scope)]) == [], scope


def test_identity_unresolved() -> None:
    bare = replace(CLUSTER, kubelet_object_id=None, service_principal_client_id=None)
    [f] = role_findings(bare, None, [REGISTRY], {}, [], {}, [])
    assert f.code == "IDENTITY_UNRESOLVED" and f.registry is None
    sp = replace(CLUSTER, kubelet_object_id=None, service_principal_client_id="app-123")
    [g] = role_findings(sp, None, [REGISTRY], {}, [], {}, [])
    assert "app-123" in g.message


def test_pull_identity_resolution() -> None:
    assert pull_identity(CLUSTER) == IDENTITY
    sp = replace(CLUSTER, kubelet_object_id=None, service_principal_client_id="app-123")
    assert needs_service_principal_lookup(sp) and not needs_service_principal_lookup(CLUSTER)
    asked: list[str] = []

    def lookup(app_id: str) -> str | None:
        asked.append(app_id)
        return "sp-object"

    assert resolve_pull_identity(sp, lookup) == PullIdentity("sp-object", "servicePrincipal", "app-123")
    assert resolve_pull_identity(CLUSTER, lookup) == IDENTITY
    assert asked == ["app-123"]
    msi_without_kubelet = replace(CLUSTER, kubelet_object_id=None)
    assert resolve_pull_identity(msi_without_kubelet, lookup) is None  # "msi" is not an app id
    assert resolve_pull_identity(sp, lambda _a: None) is None


def test_registries_with_identity_role() -> None:
    other = replace(
        REGISTRY,
        id=REG_ID.replace("contosoacr", "otheracr"),
        name="otheracr",
        login_server="otheracr.azurecr.io",
    )
    found = registries_with_identity_role(
        IDENTITY,
        [REGISTRY, other],
        [assign(ACR_PULL, scope=other.id), assign(ACR_PULL, scope=f"/subscriptions/{SUB}")],
    )
    assert found == [other]  # a subscription-wide role does not single out a registry


def test_one_finding_per_registry_even_if_listed_twice() -> None:
    findings = role_findings(CLUSTER, IDENTITY, [REGISTRY, REGISTRY], {}, [], {}, [])
    assert codes(findings) == ["ROLE_MISSING"]


def test_repositories_keyed_by_registry_id_also_work() -> None:
    cond = acr_condition(f"{ATTR} StringEqualsIgnoreCase 'web'")
    findings = role_findings(
        CLUSTER,
        IDENTITY,
        [ABAC],
        {REG_ID.upper(): {"api"}},
        [assign(REPOSITORY_READER, condition=cond)],
        {},
        [],
    )
    assert codes(findings) == ["ROLE_CONDITION_EXCLUDES_REPOSITORY"]


def test_identity_lookup_failure_is_incomplete() -> None:
    sp = replace(CLUSTER, kubelet_object_id=None, service_principal_client_id="app-123")
    [f] = role_findings(sp, None, [REGISTRY], {}, [], {}, [], identity_unreadable="HTTP 403 from Graph")
    assert f.code == "CHECK_INCOMPLETE" and f.evidence == {
        "check": "roles",
        "reason": "the pull identity could not be looked up: HTTP 403 from Graph",
    }


def test_registry_in_a_subscription_whose_assignments_were_not_read() -> None:
    elsewhere = replace(REGISTRY, subscription_id="33333333-3333-3333-3333-333333333333")
    [f] = role_findings(CLUSTER, IDENTITY, [elsewhere], {}, [], {}, [], subscriptions_read=[SUB])
    assert f.code == "CHECK_INCOMPLETE" and "33333333" in f.evidence["reason"]
    [g] = role_findings(CLUSTER, IDENTITY, [REGISTRY], {}, [], {}, [], subscriptions_read=[SUB.upper()])
    assert g.code == "ROLE_MISSING"


def test_unreadable_assignments_per_subscription() -> None:
    other_sub = "33333333-3333-3333-3333-333333333333"
    elsewhere = replace(REGISTRY, id=REG_ID.replace(SUB, other_sub), subscription_id=other_sub)
    findings = role_findings(
        CLUSTER,
        IDENTITY,
        [REGISTRY, elsewhere],
        {},
        [assign(ACR_PULL)],
        {},
        [],
        assignments_unreadable={other_sub.upper(): "HTTP 403 AuthorizationFailed"},
    )
    [f] = findings
    assert f.code == "CHECK_INCOMPLETE" and f.evidence["reason"].endswith("HTTP 403 AuthorizationFailed")
