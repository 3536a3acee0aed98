"""The sandbox's own model of Azure RBAC (and ACR's ABAC repository permissions).

Written from Azure's documentation, independently of the product's checks (it must never import
``shared``), so that tests comparing the two can catch either being wrong. It reads the world live:
``change`` steps that add or remove role assignments take effect at once.

- A principal holds the assignments made to its object id and to every group that contains it.
- An assignment applies to everything under its scope: a registry; a resource group; a
  subscription; a management group (every subscription of the world sits under any management
  group named in it).
- ``LegacyRegistryPermissions`` registries: pulling needs the control-plane action
  ``Microsoft.ContainerRegistry/registries/pull/read`` (AcrPull, AcrPush, Reader's ``*/read``,
  Owner/Contributor's ``*``, custom roles with matching wildcards and no matching notActions).
  ABAC conditions only constrain the data actions they name, so they do not change this.
- ``AbacRepositoryPermissions`` registries: only roles whose dataActions include
  ``…/registries/repositories/content/read`` grant pulls; AcrPull/AcrPush/AcrDelete, Owner,
  Contributor and Reader give no data access. An assignment's condition (``repositories``) limits
  the repositories it grants: exact names, or prefixes ending in ``/`` (case-insensitive).
- A token from another tenant than the registry's is refused.
- ``app`` (pullwatch's own identity) holds :data:`APP_IMPLICIT_ROLES` on every subscription when
  the world lists no assignment for ``app`` at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.roles import (
    CONTENT_READ_DATA_ACTION,
    PULL_ACTION,
    RoleDefinition,
    builtin_role,
    custom_role,
)
from sandbox.world import Registry, RoleAssignment, World

# What the infrastructure gives pullwatch's identity on each subscription: Reader (read ARM and role
# assignments), AcrPull (check manifests) and the AKS Cluster User Role (listClusterUserCredential,
# which Reader's */read does not cover).
APP_IMPLICIT_ROLES = ("Reader", "AcrPull", "Azure Kubernetes Service Cluster User Role")
MANAGEMENT_GROUP_PREFIX = "/providers/Microsoft.Management/managementGroups/"


@dataclass(frozen=True)
class PullDecision:
    allowed: bool
    reason: str


@dataclass(frozen=True)
class ScopedAssignment:
    """A role assignment with its ARM scope and role resolved."""

    assignment: RoleAssignment
    scope: str  # ARM scope id, e.g. /subscriptions/…/resourceGroups/rg
    role: RoleDefinition
    implicit: bool = False


class Rbac:
    def __init__(self, world: World) -> None:
        self.world = world

    # --- principals --------------------------------------------------------------------------

    def principals(self) -> list[str]:
        """Every principal of the world (app, kubelet/sp of each cluster, groups)."""
        out = ["app"]
        for name in self.world.clusters:
            out += [f"kubelet:{name}", f"sp:{name}"]
        out += [f"group:{g}" for g in self.world.groups]
        return out

    def principal_of(self, object_id: str) -> str | None:
        wanted = object_id.lower()
        for principal in self.principals():
            if self.world.principal_id(principal) == wanted:
                return principal
        return None

    def groups_of(self, principal: str) -> list[str]:
        """The groups (``group:<name>``) that contain ``principal``, transitively."""
        found: list[str] = []
        frontier = [principal]
        while frontier:
            member = frontier.pop()
            for group, members in self.world.groups.items():
                key = f"group:{group}"
                if member in members and key not in found and key != principal:
                    found.append(key)
                    frontier.append(key)
        return found

    # --- roles and scopes ---------------------------------------------------------------------

    def role(self, name: str) -> RoleDefinition | None:
        if name in self.world.custom_roles:
            return custom_role(self.world.tenant, name, self.world.custom_roles[name])
        return builtin_role(name)

    def custom_roles(self) -> list[RoleDefinition]:
        return [custom_role(self.world.tenant, n, p) for n, p in self.world.custom_roles.items()]

    def scope_id(self, scope: str) -> str:
        """The ARM scope id of a world scope (registry:<n> | resourceGroup:<n> | subscription[:<id>] |
        managementGroup:<n>)."""
        kind, _, value = scope.partition(":")
        if kind == "registry":
            return self.world.registry(value).resource_id
        if kind == "subscription":
            return f"/subscriptions/{value or self.world.subscriptions[0]}"
        if kind == "managementGroup":
            return f"{MANAGEMENT_GROUP_PREFIX}{value}"
        if kind == "resourceGroup":
            return f"/subscriptions/{self.resource_group_subscription(value)}/resourceGroups/{value}"
        raise ValueError(f"unknown scope {scope!r}")

    def resource_group_subscription(self, group: str) -> str:
        """The subscription holding resource group ``group``: the first one where a registry or cluster
        of the world lives in a group of that name, else the default subscription."""
        for reg in self.world.registries.values():
            if reg.is_acr and reg.resource_group.lower() == group.lower():
                return reg.subscription
        for cluster in self.world.clusters.values():
            if cluster.resource_group.lower() == group.lower():
                return cluster.subscription
        return self.world.subscriptions[0]

    def covers(self, scope_id: str, resource_id: str) -> bool:
        """Whether an assignment at ``scope_id`` applies to ``resource_id`` (at or below it)."""
        scope, target = scope_id.rstrip("/").lower(), resource_id.rstrip("/").lower()
        if scope == "":
            return True
        if scope.startswith(MANAGEMENT_GROUP_PREFIX.lower()):
            if target == scope or target.startswith(scope + "/"):
                return True
            # Every subscription of the world sits under any management group named in it.
            return any(
                target == f"/subscriptions/{s}".lower() or target.startswith(f"/subscriptions/{s}/".lower())
                for s in self.world.subscriptions
            )
        return target == scope or target.startswith(scope + "/")

    def assignments(self) -> list[ScopedAssignment]:
        """Every role assignment in force: the world's, plus the app's implicit ones when it has none."""
        out: list[ScopedAssignment] = []
        for a in self.world.role_assignments:
            role = self.role(a.role)
            if role is None:
                continue
            try:
                scope = self.scope_id(a.scope)
            except (KeyError, ValueError):
                continue
            out.append(ScopedAssignment(a, scope, role))
        if not any(a.principal == "app" for a in self.world.role_assignments):
            for sub in self.world.subscriptions:
                for name in APP_IMPLICIT_ROLES:
                    role = builtin_role(name)
                    assert role is not None
                    a = RoleAssignment(principal="app", role=name, scope=f"subscription:{sub}")
                    out.append(ScopedAssignment(a, f"/subscriptions/{sub}", role, implicit=True))
        return out

    def assignments_of(self, principal: str, *, with_groups: bool = True) -> list[ScopedAssignment]:
        holders = {principal, *(self.groups_of(principal) if with_groups else [])}
        return [sa for sa in self.assignments() if sa.assignment.principal in holders]

    # --- decisions ----------------------------------------------------------------------------

    def decide_pull(self, object_id: str, tenant: str, registry: Registry, repository: str) -> PullDecision:
        """Whether ``object_id`` (token tenant ``tenant``) may pull ``repository`` from ``registry``."""
        if tenant.lower() != registry.tenant.lower():
            return PullDecision(
                False, f"token tenant {tenant} is not the registry's tenant {registry.tenant}"
            )
        principal = self.principal_of(object_id)
        if principal is None:
            return PullDecision(False, f"no principal with object id {object_id}")
        held = [sa for sa in self.assignments_of(principal) if self.covers(sa.scope, registry.resource_id)]
        if registry.role_assignment_mode == "AbacRepositoryPermissions":
            for sa in held:
                if not sa.role.permits_data(CONTENT_READ_DATA_ACTION):
                    continue
                if repository_condition_allows(sa.assignment.repositories, repository):
                    return PullDecision(
                        True,
                        f"{sa.role.name} at {sa.scope} ({sa.assignment.principal})"
                        + (" with a repository condition" if sa.assignment.repositories else ""),
                    )
            ignored = sorted(
                {sa.role.name for sa in held if not sa.role.permits_data(CONTENT_READ_DATA_ACTION)}
            )
            limited = [sa for sa in held if sa.role.permits_data(CONTENT_READ_DATA_ACTION)]
            if limited:
                return PullDecision(
                    False,
                    f"ABAC conditions of {len(limited)} assignment(s) exclude repository {repository!r}",
                )
            if ignored:
                return PullDecision(
                    False,
                    "ABAC-mode registry ignores "
                    + ", ".join(ignored)
                    + " for data access; no role grants "
                    + CONTENT_READ_DATA_ACTION,
                )
            return PullDecision(False, f"no role assignment grants {CONTENT_READ_DATA_ACTION}")
        for sa in held:
            if sa.role.permits(PULL_ACTION):
                return PullDecision(True, f"{sa.role.name} at {sa.scope} ({sa.assignment.principal})")
        return PullDecision(False, f"no role assignment grants {PULL_ACTION} on {registry.resource_id}")

    def can(self, object_id: str, action: str, resource_id: str) -> bool:
        """Control-plane authorization: does ``object_id`` hold ``action`` at ``resource_id``?"""
        principal = self.principal_of(object_id)
        if principal is None:
            return False
        return any(
            sa.role.permits(action) and self.covers(sa.scope, resource_id)
            for sa in self.assignments_of(principal)
        )


def repository_condition_allows(repositories: list[str] | None, repository: str) -> bool:
    """An ABAC repository condition: no condition allows every repository; otherwise an exact name
    (StringEqualsIgnoreCase) or a prefix ending in ``/`` (StringStartsWithIgnoreCase) must match."""
    if not repositories:
        return True
    name = repository.lower()
    for entry in repositories:
        wanted = entry.lower()
        if wanted.endswith("/") and name.startswith(wanted):
            return True
        if name == wanted:
            return True
    return False


def abac_condition(repositories: list[str]) -> str:
    """The condition text the Azure portal writes for an assignment limited to ``repositories``."""
    tests = []
    for entry in repositories:
        op = "StringStartsWithIgnoreCase" if entry.endswith("/") else "StringEqualsIgnoreCase"
        tests.append(f"@Request[Microsoft.ContainerRegistry/registries/repositories:name] {op} '{entry}'")
    return (
        "(\n (\n  !(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/content/read'})\n"
        "  AND\n  !(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/metadata/read'})\n"
        " )\n OR \n (\n  " + "\n  OR\n  ".join(tests) + "\n )\n)"
    )
