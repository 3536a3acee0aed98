"""Effective permissions, wildcards and scope inheritance (cases from Azure's RBAC documentation)."""

from __future__ import annotations

import pytest

from shared.actions import CONTENT_READ, METADATA_READ, PULL_ACTION, action_matches
from shared.conditions import repository_condition
from shared.model import PullIdentity, RegistryInfo, RoleAssignment, RoleDefinition
from shared.rbac import (
    ACR_PULL,
    BUILTIN_ROLES,
    CONTRIBUTOR,
    DATA_IMPORTER_READER,
    OWNER,
    READER,
    REPOSITORY_READER,
    PullAccess,
    assignments_for,
    pull_access,
    role_grants_action,
    role_grants_data_action,
    scope_covers,
    scope_is_within,
)

SUB = "22222222-2222-2222-2222-222222222222"
RG = f"/subscriptions/{SUB}/resourceGroups/rg-shared"
REG_ID = f"{RG}/providers/Microsoft.ContainerRegistry/registries/contosoacr"
KUBELET = "aaaaaaaa-0000-0000-0000-000000000001"
GROUP = "bbbbbbbb-0000-0000-0000-000000000002"
OTHER = "cccccccc-0000-0000-0000-000000000003"
OTHER_SUB = "99999999-9999-9999-9999-999999999999"

REGISTRY = RegistryInfo(
    id=REG_ID,
    name="contosoacr",
    login_server="contosoacr.azurecr.io",
    subscription_id=SUB,
    resource_group="rg-shared",
    location="westeurope",
)
IDENTITY = PullIdentity(KUBELET, "kubelet")


def role_id(guid: str, sub: str = SUB) -> str:
    return f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def assign(scope: str, role: str, principal: str = KUBELET, n: int = 1, **kw: object) -> RoleAssignment:
    return RoleAssignment(
        id=f"{scope}/providers/Microsoft.Authorization/roleAssignments/{n:08d}",
        scope=scope,
        principal_id=principal,
        principal_type="ServicePrincipal",
        role_definition_id=role_id(role),
        **kw,
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pattern", "action", "expected"),
    [
        ("*", PULL_ACTION, True),
        ("*/read", PULL_ACTION, True),
        ("*/write", PULL_ACTION, False),
        ("Microsoft.ContainerRegistry/*", PULL_ACTION, True),
        ("microsoft.containerregistry/registries/PULL/READ", PULL_ACTION, True),
        ("Microsoft.ContainerRegistry/registries/*/read", PULL_ACTION, True),
        ("Microsoft.ContainerRegistry/registries/push/write", PULL_ACTION, False),
        ("Microsoft.ContainerRegistry/registries/pull", PULL_ACTION, False),  # no implicit suffix
        ("Microsoft.Storage/*", PULL_ACTION, False),
        ("Microsoft.Authorization/roleAssignments/*", "Microsoft.Authorization/roleAssignments/write", True),
        ("Microsoft.Authorization/roleDefinitions/*", "Microsoft.Authorization/roleAssignments/write", False),
        ("Microsoft.ContainerRegistry/registries.pull/read", PULL_ACTION, False),  # '.' is literal
    ],
)
def test_action_wildcards(pattern: str, action: str, expected: bool) -> None:
    assert action_matches(pattern, action) is expected


def test_not_actions_are_subtracted_within_the_role() -> None:
    custom = RoleDefinition(
        id="x",
        name="x",
        role_name="NoAcr",
        role_type="CustomRole",
        actions=("*",),
        not_actions=("Microsoft.ContainerRegistry/*",),
    )
    assert not role_grants_action(custom, PULL_ACTION)
    assert role_grants_action(custom, "Microsoft.Compute/virtualMachines/read")


def test_star_actions_grant_no_data_actions() -> None:
    owner = RoleDefinition(id="o", name=OWNER, role_name="Owner", actions=("*",))
    assert role_grants_action(owner, PULL_ACTION)
    assert not role_grants_data_action(owner, CONTENT_READ)
    data = RoleDefinition(
        id="d",
        name="d",
        role_name="AllData",
        data_actions=("Microsoft.ContainerRegistry/registries/repositories/*",),
        not_data_actions=("Microsoft.ContainerRegistry/registries/repositories/content/read",),
    )
    assert not role_grants_data_action(data, CONTENT_READ)


@pytest.mark.parametrize(
    ("scope", "listed_for", "expected"),
    [
        (REG_ID, None, True),
        (REG_ID.upper(), None, True),  # IDs compare case-insensitively
        (REG_ID.replace("resourceGroups", "resourcegroups"), None, True),
        (RG, None, True),
        (f"/subscriptions/{SUB}", None, True),
        ("/", None, True),
        ("/providers/Microsoft.Management/managementGroups/contoso", SUB, True),
        (
            "/providers/Microsoft.Management/managementGroups/contoso",
            "99999999-9999-9999-9999-999999999999",
            False,
        ),
        (f"{RG}2", None, False),  # "rg-shared2" is not an ancestor of "rg-shared"
        (f"/subscriptions/{SUB}/resourceGroups/rg-share", None, False),  # a string prefix, not an ancestor
        (f"{RG}/providers/Microsoft.ContainerRegistry/registries/contoso", None, False),  # nor "contoso"
        (f"/subscriptions/{SUB[:-1]}", None, False),
        (f"{REG_ID}/", None, True),  # a trailing slash is the same scope
        (f"/subscriptions/{SUB}/resourceGroups/rg-other", None, False),
        (f"{REG_ID}-dev", None, False),
        ("/subscriptions/99999999-9999-9999-9999-999999999999", None, False),
    ],
)
def test_scope_inheritance(scope: str, listed_for: str | None, expected: bool) -> None:
    assert scope_covers(scope, REG_ID, SUB, listed_for) is expected


@pytest.mark.parametrize(
    ("assignments", "groups", "granted"),
    [
        ([assign(REG_ID, ACR_PULL)], [], True),
        ([assign(RG, ACR_PULL)], [], True),
        ([assign(f"/subscriptions/{SUB}", ACR_PULL)], [], True),
        ([assign("/providers/Microsoft.Management/managementGroups/mg", ACR_PULL, listed_for=SUB)], [], True),
        ([assign(REG_ID, ACR_PULL, principal=GROUP)], [GROUP], True),
        ([assign(REG_ID, ACR_PULL, principal=GROUP)], [], False),  # not a member
        ([assign(REG_ID, ACR_PULL, principal=OTHER)], [], False),
        ([assign(REG_ID, READER)], [], True),  # Reader's */read includes pull/read
        ([assign(REG_ID, OWNER)], [], True),
        ([assign(REG_ID, CONTRIBUTOR)], [], True),
        ([assign(REG_ID, REPOSITORY_READER)], [], False),  # data actions only: not honoured in classic mode
        ([assign(f"{RG}/providers/Microsoft.ContainerRegistry/registries/otheracr", ACR_PULL)], [], False),
        ([], [], False),
    ],
)
def test_classic_pull_right(assignments: list[RoleAssignment], groups: list[str], granted: bool) -> None:
    access = pull_access(IDENTITY, groups, REGISTRY, assignments, {})
    assert access.granted is granted


def test_identity_matches_case_insensitively() -> None:
    a = assign(REG_ID, ACR_PULL, principal=KUBELET.upper())
    assert pull_access(IDENTITY, [], REGISTRY, [a], {}).granted


def test_custom_role_from_listed_definitions() -> None:
    guid = "dddddddd-0000-0000-0000-00000000000d"
    puller = RoleDefinition(
        id=role_id(guid),
        name=guid,
        role_name="ImagePuller",
        role_type="CustomRole",
        actions=("Microsoft.ContainerRegistry/registries/*/read",),
    )
    denier = RoleDefinition(
        id=role_id(guid),
        name=guid,
        role_name="AllButAcr",
        role_type="CustomRole",
        actions=("*",),
        not_actions=("Microsoft.ContainerRegistry/registries/pull/read",),
    )
    a = assign(REG_ID, guid)
    assert pull_access(IDENTITY, [], REGISTRY, [a], {guid: puller}).granted
    assert not pull_access(IDENTITY, [], REGISTRY, [a], {guid: denier}).granted
    unknown = pull_access(IDENTITY, [], REGISTRY, [a], {})
    assert not unknown.granted and unknown.unknown  # cannot say: definition missing


def test_listed_definition_wins_over_builtin_table() -> None:
    # If ARM says AcrPull lost its action, believe ARM.
    changed = RoleDefinition(id=role_id(ACR_PULL), name=ACR_PULL, role_name="AcrPull", actions=("x/read",))
    assert not pull_access(IDENTITY, [], REGISTRY, [assign(REG_ID, ACR_PULL)], {ACR_PULL: changed}).granted


def test_management_group_assignment_from_another_subscription_list_does_not_apply() -> None:
    mg = "/providers/Microsoft.Management/managementGroups/other"
    a = assign(mg, ACR_PULL, listed_for="99999999-9999-9999-9999-999999999999")
    assert assignments_for(IDENTITY, [], REGISTRY, [a]) == []
    same = assign(mg, ACR_PULL, listed_for=SUB)
    assert assignments_for(IDENTITY, [], REGISTRY, [a, same]) == [a]  # the same assignment, listed for SUB


def test_abac_mode_ignores_acrpull_and_honours_repository_reader() -> None:
    abac = RegistryInfo(**{**REGISTRY.__dict__, "role_assignment_mode": "AbacRepositoryPermissions"})
    legacy_only = pull_access(IDENTITY, [], abac, [assign(REG_ID, ACR_PULL), assign(REG_ID, OWNER, n=2)], {})
    assert not legacy_only.granted and not legacy_only.honored
    assert legacy_only.roles == ("AcrPull", "Owner")
    reader = pull_access(IDENTITY, [], abac, [assign(RG, REPOSITORY_READER)], {}, ["web"])
    assert reader.granted and reader.honored and not reader.conditional


ABAC = RegistryInfo(**{**REGISTRY.__dict__, "role_assignment_mode": "AbacRepositoryPermissions"})


def test_abac_mode_honours_the_data_importer_role_but_not_a_role_honoured_on_classic_registries_only() -> (
    None
):
    importer = pull_access(IDENTITY, [], ABAC, [assign(REG_ID, DATA_IMPORTER_READER)], {}, ["web"])
    assert importer.granted and importer.honored and not importer.conditional
    guid = "eeeeeeee-0000-0000-0000-00000000000e"
    classic_only = RoleDefinition(
        id=role_id(guid), name=guid, role_name="ClassicPuller", role_type="CustomRole", actions=(PULL_ACTION,)
    )
    access = pull_access(IDENTITY, [], ABAC, [assign(REG_ID, guid)], {guid: classic_only}, ["web"])
    assert not access.granted and not access.honored
    assert access.roles == ("ClassicPuller",)
    # the same role pulls from a classic registry
    assert pull_access(IDENTITY, [], REGISTRY, [assign(REG_ID, guid)], {guid: classic_only}, ["web"]).granted


def test_abac_unconditional_repository_reader_beside_a_conditional_one_grants_every_repository() -> None:
    only_web = assign(
        REG_ID, REPOSITORY_READER, condition=repository_condition(["web"]), condition_version="2.0"
    )
    everything = assign(RG, REPOSITORY_READER, n=2)
    access = pull_access(IDENTITY, [], ABAC, [only_web, everything], {}, ["web", "api"])
    assert access.granted and access.honored
    assert not access.conditional
    assert access.excluded == ()
    # without the unconditional one, "api" is excluded
    limited = pull_access(IDENTITY, [], ABAC, [only_web], {}, ["web", "api"])
    assert not limited.granted and limited.honored and limited.conditional
    assert limited.excluded == ("api",)


def test_abac_conditions_together_cover_the_repositories_each_lets_through() -> None:
    web = assign(REG_ID, REPOSITORY_READER, condition=repository_condition(["web"]), condition_version="2.0")
    api = assign(
        REG_ID, REPOSITORY_READER, n=2, condition=repository_condition(["api"]), condition_version="2.0"
    )
    access = pull_access(IDENTITY, [], ABAC, [web, api], {}, ["web", "api", "db"])
    assert access.excluded == ("db",)
    assert not access.granted and access.conditional
    both = pull_access(IDENTITY, [], ABAC, [web, api], {}, ["api", "web", "web"])
    assert both.granted and both.excluded == ()


def test_builtin_pull_roles_are_the_documented_definitions() -> None:
    assert BUILTIN_ROLES[ACR_PULL] == RoleDefinition(
        id=f"/providers/Microsoft.Authorization/roleDefinitions/{ACR_PULL}",
        name=ACR_PULL,
        role_name="AcrPull",
        role_type="BuiltInRole",
        actions=(PULL_ACTION,),
    )
    assert BUILTIN_ROLES[REPOSITORY_READER].data_actions == (CONTENT_READ, METADATA_READ)
    assert BUILTIN_ROLES[REPOSITORY_READER].actions == ()
    assert "Microsoft.Authorization/*/Write" in BUILTIN_ROLES[CONTRIBUTOR].not_actions


@pytest.mark.parametrize(
    ("scope", "inside"),
    [
        (REG_ID, True),
        (REG_ID.upper() + "/", True),
        (f"{REG_ID}/repositories/web", True),  # below the registry
        (f"{REG_ID}-dev/x", False),  # a string prefix is not below
        (RG, False),  # above the registry, not within it
        (f"{REG_ID}X", False),
    ],
)
def test_scope_is_within_the_registry(scope: str, inside: bool) -> None:
    assert scope_is_within(scope, REG_ID) is inside


def test_a_registry_whose_name_ends_in_capital_x_is_not_trimmed() -> None:
    assert not scope_is_within(REG_ID, REG_ID + "X")
    assert scope_is_within(REG_ID + "X", REG_ID + "X")


def test_scopes_ending_in_capital_x_are_not_trimmed() -> None:
    assert not scope_covers(f"{RG}/providers/Microsoft.ContainerRegistry/registries/contosoacrX", REG_ID)
    assert not scope_covers(RG, REG_ID.replace("rg-shared", "Xrg-shared"))
    assert not scope_covers(REG_ID, REG_ID + "X")


def test_management_group_scope_when_only_one_side_says_where_it_was_listed() -> None:
    mg = "/providers/Microsoft.Management/managementGroups/corp"
    assert scope_covers(mg, REG_ID, None, SUB)  # listed for SUB, registry subscription unknown
    assert scope_covers(mg, REG_ID, SUB, None)
    assert not scope_covers(mg, REG_ID, SUB, OTHER_SUB)


def test_a_definition_listed_under_its_lower_case_id_is_found() -> None:
    guid = "dddddddd-0000-0000-0000-00000000000d"
    puller = RoleDefinition(id=role_id(guid), name=guid, role_name="ImagePuller", actions=(PULL_ACTION,))
    a = assign(REG_ID, guid)
    access = pull_access(IDENTITY, [], REGISTRY, [a], {role_id(guid).lower(): puller})
    assert access.granted and access.roles == ("ImagePuller",)


def test_classic_access_is_exact_with_its_assignments_roles_and_reasons() -> None:
    missing = "eeeeeeee-0000-0000-0000-00000000000e"
    reader = assign(REG_ID, REPOSITORY_READER)  # no pull/read: skipped, the next one still counts
    unknown = assign(REG_ID, missing, n=2)
    puller = assign(RG, ACR_PULL, n=3)
    bad = assign(REG_ID, ACR_PULL, n=4, condition="@Request[x] StringSoundsLike 'a'", condition_version="2.0")
    access = pull_access(IDENTITY, [], REGISTRY, [reader, unknown, puller, bad], {})
    assert access == PullAccess(
        "LegacyRegistryPermissions",
        (reader, unknown, puller, bad),
        ("AcrPull", "Container Registry Repository Reader", missing),
        True,
        True,
        (),
        False,
        (
            f"role definition {missing} of assignment {unknown.id} could not be read",
            f"condition of assignment {bad.id} not understood: operator 'StringSoundsLike' at position 12 "
            "is not supported",
        ),
    )
    for unset in (None, ""):
        unknown_mode = RegistryInfo(**{**REGISTRY.__dict__, "role_assignment_mode": unset})
        assert pull_access(IDENTITY, [], unknown_mode, [puller], {}).mode == "LegacyRegistryPermissions"


def test_classic_conditions_are_evaluated_for_the_pull_action() -> None:
    only_repositories = assign(
        REG_ID, ACR_PULL, condition=repository_condition(["web"]), condition_version="2.0"
    )  # restricts data actions only: pull/read passes
    assert pull_access(IDENTITY, [], REGISTRY, [only_repositories], {}).granted
    no_pull = assign(
        REG_ID, ACR_PULL, n=2, condition=f"!(ActionMatches{{'{PULL_ACTION}'}})", condition_version="2.0"
    )
    assert not pull_access(IDENTITY, [], REGISTRY, [no_pull], {}).granted
    unreadable = assign(REG_ID, ACR_PULL, n=3, condition="@Request[x] StringEquals", condition_version="2.0")
    access = pull_access(IDENTITY, [], REGISTRY, [no_pull, unreadable], {})
    assert not access.granted
    assert access.unknown == (
        f"condition of assignment {unreadable.id} not understood: condition ends too early",
    )


def test_abac_conditions_that_cannot_be_read_are_reported() -> None:
    bad = assign(REG_ID, REPOSITORY_READER, condition="@Request[x] StringEquals", condition_version="2.0")
    access = pull_access(IDENTITY, [], ABAC, [bad], {}, ["web"])
    assert access == PullAccess(
        "AbacRepositoryPermissions",
        (bad,),
        ("Container Registry Repository Reader",),
        False,
        True,
        ("web",),
        True,
        (f"condition of assignment {bad.id} not understood: condition ends too early",),
    )
