"""Effective Azure RBAC permissions, evaluated the way Azure does it (pure: values in, values out).

- Action patterns: ``*`` matches any run of characters (``*``, ``*/read``,
  ``Microsoft.ContainerRegistry/*``), compared case-insensitively. A permission block grants an
  operation when one of its actions matches and none of its notActions does; a role grants it when
  one of its blocks does; roles add up (notActions are not a deny).
- Scopes: an assignment applies to a resource when its scope is the resource or an ancestor of it
  (prefix match on path segments, case-insensitive), the root ``/``, or a management group above
  the resource's subscription.
- Conditions (ABAC) are ``shared/conditions.py``'s: parsed and evaluated there, applied here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from shared.actions import CONTENT_READ, METADATA_READ, PULL_ACTION, action_matches
from shared.conditions import ConditionError, evaluate_condition, parse_condition, repository_attributes
from shared.model import PullIdentity, RegistryInfo, RoleAssignment, RoleDefinition, same_id

ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
ACR_PUSH = "8311e382-0749-4cb8-b61a-304f252e45ec"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
REPOSITORY_READER = "b93aa761-3e63-49ed-ac28-beffa264f7ac"
REPOSITORY_WRITER = "2a1e307c-b015-4ebd-883e-5b7698a07328"
REPOSITORY_CONTRIBUTOR = "2efddaa5-3f1f-4df3-97df-af3f13818f4c"
DATA_IMPORTER_READER = "577a9874-89fd-4f24-9dbd-b5034d0ad23a"

#: Roles whose classic pull action ACR honours in ABAC mode as well (FACTS: "Container Registry
#: Data Importer and Data Reader" pulls in both modes).
ABAC_HONORED_CONTROL_PLANE_ROLES = frozenset({DATA_IMPORTER_READER})


def _builtin(
    guid: str,
    name: str,
    actions: Sequence[str] = (),
    not_actions: Sequence[str] = (),
    data_actions: Sequence[str] = (),
) -> RoleDefinition:
    return RoleDefinition(
        id=f"/providers/Microsoft.Authorization/roleDefinitions/{guid}",
        name=guid,
        role_name=name,
        role_type="BuiltInRole",
        actions=tuple(actions),
        not_actions=tuple(not_actions),
        data_actions=tuple(data_actions),
    )


#: Built-in roles that matter for pulls, used when the listed definitions lack one (they are the
#: same in every subscription). Listed definitions always win.
BUILTIN_ROLES: Mapping[str, RoleDefinition] = {
    r.guid: r
    for r in (
        _builtin(ACR_PULL, "AcrPull", [PULL_ACTION]),
        _builtin(ACR_PUSH, "AcrPush", [PULL_ACTION, "Microsoft.ContainerRegistry/registries/push/write"]),
        _builtin(OWNER, "Owner", ["*"]),
        _builtin(
            CONTRIBUTOR,
            "Contributor",
            ["*"],
            [
                "Microsoft.Authorization/*/Delete",
                "Microsoft.Authorization/*/Write",
                "Microsoft.Authorization/elevateAccess/Action",
                "Microsoft.Blueprint/blueprintAssignments/write",
                "Microsoft.Blueprint/blueprintAssignments/delete",
                "Microsoft.Compute/galleries/share/action",
                "Microsoft.Purview/consents/write",
                "Microsoft.Purview/consents/delete",
            ],
        ),
        _builtin(READER, "Reader", ["*/read"]),
        _builtin(
            REPOSITORY_READER,
            "Container Registry Repository Reader",
            (),
            data_actions=[CONTENT_READ, METADATA_READ],
        ),
        _builtin(
            REPOSITORY_WRITER,
            "Container Registry Repository Writer",
            (),
            data_actions=[
                CONTENT_READ,
                METADATA_READ,
                "Microsoft.ContainerRegistry/registries/repositories/content/write",
                "Microsoft.ContainerRegistry/registries/repositories/metadata/write",
            ],
        ),
        _builtin(
            REPOSITORY_CONTRIBUTOR,
            "Container Registry Repository Contributor",
            (),
            data_actions=[
                CONTENT_READ,
                METADATA_READ,
                "Microsoft.ContainerRegistry/registries/repositories/content/write",
                "Microsoft.ContainerRegistry/registries/repositories/content/delete",
                "Microsoft.ContainerRegistry/registries/repositories/metadata/write",
                "Microsoft.ContainerRegistry/registries/repositories/metadata/delete",
            ],
        ),
        _builtin(
            DATA_IMPORTER_READER,
            "Container Registry Data Importer and Data Reader",
            [
                "Microsoft.ContainerRegistry/registries/importImage/action",
                PULL_ACTION,
                "Microsoft.ContainerRegistry/registries/read",
            ],
        ),
    )
}


# --------------------------------------------------------------------------- actions and roles


def _block_grants(allowed: Iterable[str], denied: Iterable[str], operation: str) -> bool:
    return any(action_matches(p, operation) for p in allowed) and not any(
        action_matches(p, operation) for p in denied
    )


def role_grants_action(role: RoleDefinition, action: str) -> bool:
    """Control-plane: actions minus notActions, in any permission block."""
    return any(_block_grants(a, na, action) for a, na, _d, _nd in role.permission_blocks())


def role_grants_data_action(role: RoleDefinition, data_action: str) -> bool:
    """Data plane: dataActions minus notDataActions. ``*`` in actions grants no data action."""
    return any(_block_grants(d, nd, data_action) for _a, _na, d, nd in role.permission_blocks())


def definition_for(
    assignment: RoleAssignment, definitions: Mapping[str, RoleDefinition]
) -> RoleDefinition | None:
    """The assignment's role: from the listed definitions (keyed by GUID or full ID), else built-in."""
    guid = assignment.role_guid
    for key in (guid, assignment.role_definition_id, assignment.role_definition_id.lower()):
        if key in definitions:
            return definitions[key]
    return BUILTIN_ROLES.get(guid)


# --------------------------------------------------------------------------- scopes and principals

_MG_PREFIX = "/providers/microsoft.management/managementgroups/"


def scope_covers(
    scope: str, resource_id: str, resource_subscription: str | None = None, listed_for: str | None = None
) -> bool:
    """True when an assignment at ``scope`` applies to ``resource_id`` (at or above it)."""
    s = "/" + scope.strip().strip("/").lower()
    if s == "/":
        return True
    if s.startswith(_MG_PREFIX):
        # A management group is above a subscription when that subscription's unfiltered list
        # returned the assignment (ARM lists assignments at, above and below the scope).
        return (
            listed_for is None or resource_subscription is None or same_id(listed_for, resource_subscription)
        )
    rid = "/" + resource_id.strip().strip("/").lower()
    return rid == s or rid.startswith(s + "/")


def scope_is_within(scope: str, resource_id: str) -> bool:
    """True when the assignment sits at the resource itself or below it."""
    s = "/" + scope.strip().strip("/").lower()
    rid = "/" + resource_id.strip().strip("/").lower()
    return s == rid or s.startswith(rid + "/")


def principal_ids(identity: PullIdentity, groups: Iterable[str]) -> frozenset[str]:
    return frozenset([identity.object_id.lower(), *(g.lower() for g in groups)])


def assignments_for(
    identity: PullIdentity,
    groups: Iterable[str],
    registry: RegistryInfo,
    assignments: Iterable[RoleAssignment],
) -> list[RoleAssignment]:
    """The assignments of the identity or its groups that apply at the registry (deduplicated)."""
    ids = principal_ids(identity, groups)
    seen: dict[str, RoleAssignment] = {}
    mg_ok: set[str] = set()
    candidates = [a for a in assignments if a.principal_id.lower() in ids]
    for a in candidates:
        if scope_covers(a.scope, registry.id, registry.subscription_id, a.listed_for):
            mg_ok.add(a.id.lower())
    for a in candidates:
        if a.id.lower() in mg_ok:
            seen.setdefault(a.id.lower(), a)
    return list(seen.values())


# --------------------------------------------------------------------------- effective pull right


@dataclass(frozen=True)
class PullAccess:
    """What the identity's assignments give it at one registry."""

    mode: str
    assignments: tuple[RoleAssignment, ...]  # the identity's (and its groups') applicable ones
    roles: tuple[str, ...]  # role names found, sorted
    granted: bool  # can pull (every repository when ABAC conditions are evaluated)
    honored: bool  # ABAC: some role carries the data action (classic: == granted)
    excluded: tuple[str, ...] = ()  # ABAC: repositories in use that no condition lets through
    conditional: bool = False  # ABAC: every honoured role carries a condition
    unknown: tuple[str, ...] = field(default_factory=tuple)  # reasons the answer may be wrong


def pull_access(
    identity: PullIdentity,
    groups: Sequence[str],
    registry: RegistryInfo,
    assignments: Sequence[RoleAssignment],
    definitions: Mapping[str, RoleDefinition],
    repositories: Iterable[str] = (),
) -> PullAccess:
    """Evaluate the identity's effective right to pull from ``registry``."""
    mine = assignments_for(identity, groups, registry, assignments)
    repos = sorted(set(repositories))
    roles: set[str] = set()
    unknown: list[str] = []
    resolved: list[tuple[RoleAssignment, RoleDefinition]] = []
    for a in mine:
        d = definition_for(a, definitions)
        if d is None:
            unknown.append(f"role definition {a.role_guid} of assignment {a.id} could not be read")
            roles.add(a.role_guid)
            continue
        roles.add(d.role_name or d.guid)
        resolved.append((a, d))
    mode = registry.role_assignment_mode or "LegacyRegistryPermissions"
    if not registry.abac:
        granted = False
        for a, d in resolved:
            if not role_grants_action(d, PULL_ACTION):
                continue
            if not a.condition:
                granted = True
                continue
            try:
                if evaluate_condition(parse_condition(a.condition), PULL_ACTION, {}):
                    granted = True
            except ConditionError as exc:
                unknown.append(f"condition of assignment {a.id} not understood: {exc}")
        return PullAccess(
            mode, tuple(mine), tuple(sorted(roles)), granted, granted, (), False, tuple(unknown)
        )
    honoured = [
        (a, d)
        for a, d in resolved
        if role_grants_data_action(d, CONTENT_READ)
        or (d.guid in ABAC_HONORED_CONTROL_PLANE_ROLES and role_grants_action(d, PULL_ACTION))
    ]
    unconditional = any(not a.condition for a, _d in honoured)
    covered: set[str] = set()
    if not unconditional:
        for a, _d in honoured:
            assert a.condition is not None
            try:
                expr = parse_condition(a.condition)
                for r in repos:
                    if r not in covered and evaluate_condition(expr, CONTENT_READ, repository_attributes(r)):
                        covered.add(r)
            except ConditionError as exc:
                unknown.append(f"condition of assignment {a.id} not understood: {exc}")
    excluded = () if unconditional else tuple(r for r in repos if r not in covered)
    granted = bool(honoured) and not excluded
    return PullAccess(
        mode,
        tuple(mine),
        tuple(sorted(roles)),
        granted,
        bool(honoured),
        excluded,
        bool(honoured) and not unconditional,
        tuple(unknown),
    )
