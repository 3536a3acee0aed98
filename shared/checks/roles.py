"""Role checks: can the cluster's pull identity pull from each registry it uses? (pure)

Inputs are the facts the ARM seam read once per subscription (assignments, definitions) and once
per identity (groups); this module never calls anything. Codes: ROLE_MISSING,
ROLE_NOT_HONORED_ABAC, ROLE_CONDITION_EXCLUDES_REPOSITORY, IDENTITY_UNRESOLVED,
REGISTRY_OTHER_TENANT, CHECK_INCOMPLETE (evidence ``{"check": "roles", "reason": …}``).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from shared.conditions import repository_condition
from shared.findings import Finding
from shared.model import ClusterInfo, PullIdentity, RegistryInfo, RoleAssignment, RoleDefinition, same_id
from shared.rbac import assignments_for, pull_access, scope_is_within

CHECK = "roles"
ACR_PULL_ROLE = "AcrPull"
REPOSITORY_READER_ROLE = "Container Registry Repository Reader"


def needs_service_principal_lookup(cluster: ClusterInfo) -> bool:
    """True when the pull identity is a service principal whose object id Graph must give."""
    return cluster.kubelet_object_id is None and _sp_client_id(cluster) is not None


def _sp_client_id(cluster: ClusterInfo) -> str | None:
    cid = (cluster.service_principal_client_id or "").strip()
    return cid if cid and cid.lower() != "msi" else None


def pull_identity(
    cluster: ClusterInfo, service_principal_object_id: str | None = None
) -> PullIdentity | None:
    """The identity kubelet pulls with: the kubelet managed identity, else the cluster's service
    principal (its object id resolved through Graph by the caller); None when neither resolves."""
    if cluster.kubelet_object_id:
        return PullIdentity(cluster.kubelet_object_id, "kubelet", cluster.kubelet_client_id)
    client_id = _sp_client_id(cluster)
    if client_id and service_principal_object_id:
        return PullIdentity(service_principal_object_id, "servicePrincipal", client_id)
    return None


def resolve_pull_identity(
    cluster: ClusterInfo, service_principal_object_id: Callable[[str], str | None]
) -> PullIdentity | None:
    """:func:`pull_identity`, asking ``service_principal_object_id(app_id)`` (e.g.
    ``ArmClient.service_principal_object_id``) only for service-principal clusters."""
    client_id = _sp_client_id(cluster)
    if cluster.kubelet_object_id or client_id is None:
        return pull_identity(cluster)
    return pull_identity(cluster, service_principal_object_id(client_id))


def registries_with_identity_role(
    identity: PullIdentity,
    registries: Sequence[RegistryInfo],
    assignments: Sequence[RoleAssignment],
    groups: Sequence[str] = (),
) -> list[RegistryInfo]:
    """ACRs where the identity (or a group of it) holds any role assigned at the registry itself:
    they count as used by the cluster. Assignments at resource group or subscription scope do not
    single out a registry and are left out."""
    out = []
    for registry in registries:
        mine = assignments_for(identity, groups, registry, assignments)
        if any(scope_is_within(a.scope, registry.id) for a in mine):
            out.append(registry)
    return out


def _lookup(repositories_by_registry: Mapping[str, set[str]], registry: RegistryInfo) -> set[str]:
    wanted = {registry.login_server.lower(), registry.id.lower(), registry.name.lower()}
    repos: set[str] = set()
    for key, value in repositories_by_registry.items():
        if key.lower() in wanted:
            repos |= set(value)
    return repos


def role_assignment_command(
    identity: PullIdentity, registry: RegistryInfo, role: str, condition: str | None = None
) -> str:
    parts = [
        "az",
        "role",
        "assignment",
        "create",
        "--assignee-object-id",
        identity.object_id,
        "--assignee-principal-type",
        "ServicePrincipal",
        "--role",
        role,
        "--scope",
        registry.id,
    ]
    if not condition:
        return shlex.join(parts)
    # The condition quotes its own strings: a quoted here-document keeps it exactly as Azure shows
    # it, in a block of its own, instead of shell quoting inside shell quoting.
    return (
        f"condition=$(cat <<'EOF'\n{condition}\nEOF\n)\n\n"
        f'{shlex.join(parts)} --condition "$condition" --condition-version 2.0'
    )


def _who(identity: PullIdentity, cluster: ClusterInfo) -> str:
    return f"The {identity.label} of {cluster.name}"


def role_findings(
    cluster: ClusterInfo,
    identity: PullIdentity | None,
    registries: Sequence[RegistryInfo],
    repositories_by_registry: Mapping[str, set[str]],
    assignments: Sequence[RoleAssignment],
    definitions: Mapping[str, RoleDefinition],
    groups: Sequence[str],
    *,
    assignments_unreadable: str | Mapping[str, str] | None = None,
    groups_unreadable: str | None = None,
    identity_unreadable: str | None = None,
    subscriptions_read: Collection[str] | None = None,
) -> list[Finding]:
    """Findings for one cluster against the ACRs it uses.

    ``registries``: the ACRs the cluster uses (from its workloads, plus
    :func:`registries_with_identity_role`). ``repositories_by_registry``: login server (or registry
    ID) -> repositories the workloads pull. ``assignments``: the per-subscription lists
    concatenated (not deduplicated). ``assignments_unreadable`` / ``groups_unreadable``: why the
    assignments / the identity's groups could not be read (e.g. a 403), which makes the check
    incomplete rather than a pass or a miss (``assignments_unreadable`` may map subscription id ->
    reason, so that only registries in those subscriptions are affected); ``identity_unreadable``: why the service principal
    lookup failed (Graph 403/5xx), giving CHECK_INCOMPLETE instead of IDENTITY_UNRESOLVED.
    ``subscriptions_read``: the subscriptions whose assignment lists are in ``assignments``; a
    registry in any other subscription gets CHECK_INCOMPLETE rather than a false ROLE_MISSING.
    """
    findings: list[Finding] = []
    if identity is None and identity_unreadable:
        reason = f"the pull identity could not be looked up: {identity_unreadable}"
        return [
            Finding(
                code="CHECK_INCOMPLETE",
                cluster=cluster.id,
                message=f"Could not check the pull roles of {cluster.name}: {reason}.",
                evidence={"check": CHECK, "reason": reason},
            )
        ]
    if identity is None:
        cid = _sp_client_id(cluster)
        reason = (
            f"service principal {cid} was not found in Microsoft Graph"
            if cid
            else "the cluster has no kubelet identity and no service principal"
        )
        return [
            Finding(
                code="IDENTITY_UNRESOLVED",
                cluster=cluster.id,
                message=f"The pull identity of {cluster.name} cannot be determined: {reason}.",
                evidence={"kubelet_object_id": cluster.kubelet_object_id, "service_principal_client_id": cid},
                remediation=(
                    "az aks show --ids "
                    + shlex.quote(cluster.id)
                    + " --query '{identityProfile: identityProfile, servicePrincipalProfile: "
                    "servicePrincipalProfile}'"
                ),
            )
        ]
    seen: set[str] = set()
    for registry in registries:
        if registry.id.lower() in seen:
            continue
        seen.add(registry.id.lower())
        unread: str | None
        if isinstance(assignments_unreadable, Mapping):  # subscription id -> why its list failed
            unread = next(
                (
                    why
                    for sub, why in assignments_unreadable.items()
                    if same_id(sub, registry.subscription_id)
                ),
                None,
            )
        else:
            unread = assignments_unreadable
        if (
            unread is None
            and subscriptions_read is not None
            and not any(same_id(registry.subscription_id, s) for s in subscriptions_read)
        ):
            unread = f"the role assignments of subscription {registry.subscription_id} were not read"
        findings.extend(
            _registry_findings(
                cluster,
                identity,
                registry,
                sorted(_lookup(repositories_by_registry, registry)),
                assignments,
                definitions,
                groups,
                unread,
                groups_unreadable,
            )
        )
    return findings


def _incomplete(cluster: ClusterInfo, registry: RegistryInfo, reason: str, **extra: Any) -> Finding:
    return Finding(
        code="CHECK_INCOMPLETE",
        cluster=cluster.id,
        registry=registry.login_server,
        message=f"Could not check whether {cluster.name} may pull from {registry.name}: {reason}.",
        evidence={"check": CHECK, "reason": reason, "registry": registry.login_server, **extra},
    )


def _registry_findings(
    cluster: ClusterInfo,
    identity: PullIdentity,
    registry: RegistryInfo,
    repositories: list[str],
    assignments: Sequence[RoleAssignment],
    definitions: Mapping[str, RoleDefinition],
    groups: Sequence[str],
    assignments_unreadable: str | None,
    groups_unreadable: str | None,
) -> Iterable[Finding]:
    who = _who(identity, cluster)
    if registry.tenant_id and cluster.tenant_id and not same_id(registry.tenant_id, cluster.tenant_id):
        yield Finding(
            code="REGISTRY_OTHER_TENANT",
            cluster=cluster.id,
            registry=registry.login_server,
            message=(
                f"{registry.name} belongs to tenant {registry.tenant_id}, {cluster.name} to tenant "
                f"{cluster.tenant_id}: {who[0].lower() + who[1:]} cannot authenticate to it."
            ),
            evidence={
                "registry_tenant": registry.tenant_id,
                "cluster_tenant": cluster.tenant_id,
                "principal_id": identity.object_id,
            },
            remediation=(
                f"kubectl create secret docker-registry <name> --docker-server={registry.login_server} "
                "--docker-username=<app id of a multitenant application> --docker-password=<its secret>"
                "   # then name it in the workload's imagePullSecrets"
            ),
        )
        return
    if assignments_unreadable:
        yield _incomplete(
            cluster,
            registry,
            f"role assignments could not be read: {assignments_unreadable}",
            principal_id=identity.object_id,
        )
        return
    access = pull_access(identity, groups, registry, assignments, definitions, repositories)
    evidence: dict[str, Any] = {
        "principal_id": identity.object_id,
        "principal_kind": identity.kind,
        "assignments_checked": len(access.assignments),
        "roles": list(access.roles),
        "mode": access.mode,
        "groups_checked": len(groups),
    }
    if access.granted:
        return
    reasons = list(access.unknown)
    if groups_unreadable:
        reasons.append(f"group memberships could not be read: {groups_unreadable}")
    if reasons:
        yield _incomplete(cluster, registry, "; ".join(reasons), **evidence)
        return
    if not registry.abac:
        yield Finding(
            code="ROLE_MISSING",
            cluster=cluster.id,
            registry=registry.login_server,
            message=f"{who} has no role that allows pulls from {registry.name}.",
            evidence=evidence,
            remediation=role_assignment_command(identity, registry, ACR_PULL_ROLE),
        )
        return
    if not access.honored:
        held = ", ".join(access.roles) if access.roles else "no role"
        condition = repository_condition(repositories) if repositories else None
        yield Finding(
            code="ROLE_NOT_HONORED_ABAC",
            cluster=cluster.id,
            registry=registry.login_server,
            message=(
                f"{registry.name} uses ABAC repository permissions, which ignore what {who[0].lower()}"
                f"{who[1:]} holds there ({held}); it needs {REPOSITORY_READER_ROLE}."
            ),
            evidence={**evidence, "repositories": repositories},
            remediation=role_assignment_command(identity, registry, REPOSITORY_READER_ROLE, condition),
        )
        return
    excluded = list(access.excluded)
    yield Finding(
        code="ROLE_CONDITION_EXCLUDES_REPOSITORY",
        cluster=cluster.id,
        registry=registry.login_server,
        message=(
            f"{who}'s role conditions on {registry.name} leave out "
            f"{', '.join(excluded)}, which the cluster's workloads pull."
        ),
        evidence={
            **evidence,
            "repositories_excluded": excluded,
            "repositories": repositories,
            "conditions": [a.condition for a in access.assignments if a.condition],
        },
        remediation=role_assignment_command(
            identity, registry, REPOSITORY_READER_ROLE, repository_condition(excluded)
        ),
    )
