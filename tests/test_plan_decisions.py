"""plan_events(): the exact plan for each kind of event — audits with their reasons and hints,
ignored events with why, clusters to forget, subscriptions to discover."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from shared.events import AzureEvent
from shared.plan import (
    AuditRequest,
    KnownCluster,
    Plan,
    Scope,
    known_cluster_from_dict,
    known_cluster_to_dict,
    plan_events,
    plan_nightly,
)

SUB = "11111111-1111-1111-1111-111111111111"
ELSEWHERE = "99999999-9999-9999-9999-999999999999"
AKS = f"/subscriptions/{SUB}/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/aks-prod"
DEV = (
    f"/subscriptions/{SUB}/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/aks-dev"
)
ACR = (
    f"/subscriptions/{SUB}/resourceGroups/rg-acr/providers/Microsoft.ContainerRegistry/registries/contosoacr"
)
OTHER_ACR = (
    f"/subscriptions/{SUB}/resourceGroups/rg-acr/providers/Microsoft.ContainerRegistry/registries/otheracr"
)
STORAGE = f"/subscriptions/{SUB}/resourceGroups/rg-acr/providers/Microsoft.Storage/storageAccounts/logs"
HOST = "contosoacr.azurecr.io"

INVENTORY = [
    KnownCluster(
        id=AKS,
        registries=frozenset({"ContosoACR.azurecr.io"}),
        registry_ids=frozenset({ACR.lower()}),
        images=frozenset(
            {
                f"{HOST}/team-a/web:1.0",
                f"{HOST}/api@sha256:abc",
                f"{HOST}/db:2@sha256:def",
                "docker.io/library/nginx:1.27",
            }
        ),
        failing_images=frozenset({f"{HOST}/Team-A/web:1.0"}),
    ),
    KnownCluster(
        id=DEV, registries=frozenset({"docker.io"}), images=frozenset({"docker.io/library/nginx:1.27"})
    ),
]


def event(kind: str, source: str = "", subject: str = "", event_id: str = "e1", **data: Any) -> AzureEvent:
    return AzureEvent(event_id, kind, source, subject, None, data)


def acr(kind: str, subject: str = "", **data: Any) -> AzureEvent:
    return event(f"Microsoft.ContainerRegistry.{kind}", ACR, subject, **data)


def arm(kind: str, uri: str, operation: str = "", **data: Any) -> AzureEvent:
    if operation:
        data["operationName"] = operation
    return event(
        f"Microsoft.Resources.Resource{kind}Success", f"/subscriptions/{SUB}", uri, resourceUri=uri, **data
    )


def role(kind: str, scope: str) -> AzureEvent:
    verb = "write" if kind == "Write" else "delete"
    return arm(
        kind,
        f"{scope}/providers/Microsoft.Authorization/roleAssignments/ra1",
        f"Microsoft.Authorization/roleAssignments/{verb}",
    )


def audit(
    cluster: str, reason: str, hint: dict[str, str] | None = None, event_id: str = "e1"
) -> AuditRequest:
    return AuditRequest(cluster, (reason,), (event_id,), (hint,) if hint else ())


def ignored(why: str, event_id: str = "e1") -> Plan:
    return Plan(ignored=((event_id, why),))


PUSHED = {"kind": "image_pushed", "registry": HOST, "repository": "team-a/web", "tag": "1.0"}

CASES: list[tuple[str, AzureEvent, Plan]] = [
    # --- registry events ----------------------------------------------------------------------
    (
        "push-of-a-failing-image",
        acr(
            "ImagePushed",
            "team-a/web:1.0",
            target={"repository": "Team-A/web", "tag": "1.0"},
            request={"host": HOST},
        ),
        Plan(audits=(audit(AKS, f"{HOST}/team-a/web:1.0 was pushed; pulls of it were failing", PUSHED),)),
    ),
    (
        "push-read-from-subject-and-topic",
        acr("ImagePushed", "team-a/web:1.0"),
        Plan(audits=(audit(AKS, f"{HOST}/team-a/web:1.0 was pushed; pulls of it were failing", PUSHED),)),
    ),
    (
        "push-with-an-empty-request-host-uses-the-topic",
        acr("ImagePushed", "team-a/web:1.0", request={"host": ""}),
        Plan(audits=(audit(AKS, f"{HOST}/team-a/web:1.0 was pushed; pulls of it were failing", PUSHED),)),
    ),
    (
        "push-of-a-tag-that-was-not-failing",
        acr("ImagePushed", "team-a/web:2.0"),
        ignored(f"no watched cluster was failing on {HOST}/team-a/web:2.0"),
    ),
    (
        "push-without-a-tag",
        acr("ImagePushed", "team-a/web", target={"repository": "team-a/web", "digest": "sha256:1"}),
        ignored(f"no watched cluster was failing on {HOST}/team-a/web"),
    ),
    (
        "push-to-another-registry",
        acr("ImagePushed", "team-a/web:1.0", request={"host": "other.azurecr.io"}),
        ignored("no watched cluster was failing on other.azurecr.io/team-a/web:1.0"),
    ),
    (
        "delete-of-a-used-repository",
        acr("ImageDeleted", "", target={"repository": "API", "digest": "sha256:abc"}),
        Plan(
            audits=(
                audit(
                    AKS,
                    f"image deleted from {HOST}/api",
                    {"kind": "image_deleted", "registry": HOST, "repository": "api", "digest": "sha256:abc"},
                ),
            )
        ),
    ),
    (
        "delete-of-a-repository-used-by-tag-and-digest",
        acr("ImageDeleted", "db:2"),
        Plan(
            audits=(
                audit(
                    AKS,
                    f"image deleted from {HOST}/db",
                    {"kind": "image_deleted", "registry": HOST, "repository": "db", "digest": ""},
                ),
            )
        ),
    ),
    (
        "delete-of-an-unused-repository",
        acr("ImageDeleted", "other:3"),
        ignored(f"no watched cluster uses {HOST}/other:3"),
    ),
    (
        "chart-events",
        acr("ChartPushed", "charts/web:1.0"),
        ignored("Helm chart events do not change what kubelet pulls"),
    ),
    (
        "registry-event-from-another-topic",
        event("Microsoft.ContainerRegistry.ImagePushed", STORAGE, "web:1"),
        ignored(f"topic {STORAGE!r} is not a container registry"),
    ),
    (
        "image-event-without-repository",
        acr("ImageDeleted"),
        ignored("image event without registry or repository"),
    ),
    # --- cluster events -----------------------------------------------------------------------
    (
        "node-pool-rolled",
        event("Microsoft.ContainerService.NodePoolRollingSucceeded", AKS, nodePoolName="np1"),
        Plan(audits=(audit(AKS, "node pool np1 rolled (succeeded)"),)),
    ),
    (
        "node-pool-roll-failed-without-a-name",
        event("Microsoft.ContainerService.NodePoolRollingFailed", AKS + "/agentPools/np1"),
        Plan(audits=(audit(AKS, "node pool ? rolled (failed)"),)),
    ),
    (
        "cluster-support-event",
        event("Microsoft.ContainerService.ClusterSupportEnded", AKS),
        ignored("ClusterSupportEnded does not change what the cluster can pull"),
    ),
    (
        "cluster-event-from-another-topic",
        event("Microsoft.ContainerService.NodePoolRollingStarted", ACR),
        ignored(f"topic {ACR!r} is not a managedCluster"),
    ),
    # --- resource manager events --------------------------------------------------------------
    (
        "role-assignment-written-at-the-registry",
        role("Write", ACR),
        Plan(
            audits=(
                audit(AKS, f"role assignment written at {ACR}", {"kind": "role_assignment", "scope": ACR}),
            )
        ),
    ),
    (
        "role-assignment-deleted-at-the-subscription",
        role("Delete", f"/subscriptions/{SUB}"),
        Plan(
            audits=(
                audit(
                    AKS,
                    f"role assignment deleted at /subscriptions/{SUB}",
                    {"kind": "role_assignment", "scope": f"/subscriptions/{SUB}"},
                ),
            )
        ),
    ),
    (
        "role-assignment-named-only-by-its-operation",
        arm("Write", ACR, "Microsoft.Authorization/roleAssignments/write"),
        Plan(
            audits=(
                audit(AKS, f"role assignment written at {ACR}", {"kind": "role_assignment", "scope": ACR}),
            )
        ),
    ),
    (
        "role-assignment-under-an-unrelated-resource-group",
        role("Write", f"/subscriptions/{SUB}/resourceGroups/rg-share"),
        ignored(
            f"no watched cluster pulls from a registry under /subscriptions/{SUB}/resourceGroups/rg-share"
        ),
    ),
    (
        "role-assignment-outside-the-configured-subscriptions",
        role("Write", f"/subscriptions/{ELSEWHERE}"),
        ignored("role assignment outside the configured subscriptions"),
    ),
    (
        "registry-written",
        arm("Write", ACR, "Microsoft.ContainerRegistry/registries/write"),
        Plan(
            audits=(
                audit(AKS, "registry contosoacr changed", {"kind": "registry_changed", "registry_id": ACR}),
            )
        ),
    ),
    (
        "registry-deleted",
        arm("Delete", ACR, "Microsoft.ContainerRegistry/registries/delete"),
        Plan(
            audits=(
                audit(AKS, "registry contosoacr deleted", {"kind": "registry_changed", "registry_id": ACR}),
            )
        ),
    ),
    (
        "registry-replication-deleted",
        arm(
            "Delete",
            ACR + "/replications/westus/",
            "Microsoft.ContainerRegistry/registries/replications/delete",
        ),
        Plan(
            audits=(
                audit(
                    AKS,
                    "registry contosoacr changed (replications/westus)",
                    {"kind": "registry_changed", "registry_id": ACR},
                ),
            )
        ),
    ),
    (
        "unused-registry-written",
        arm("Write", OTHER_ACR, "Microsoft.ContainerRegistry/registries/write"),
        ignored("no watched cluster uses registry otheracr"),
    ),
    (
        "resource-outside-the-configured-subscriptions",
        arm("Write", ACR.replace(SUB, ELSEWHERE)),
        ignored("resource outside the configured subscriptions"),
    ),
    ("not-a-resource-id", arm("Write", "nonsense"), ignored("resource 'nonsense' is not a resource ID")),
    (
        "resource-named-by-the-subject-only",
        event("Microsoft.Resources.ResourceWriteSuccess", f"/subscriptions/{SUB}", STORAGE),
        ignored("microsoft.storage/storageaccounts changes do not affect image pulls"),
    ),
    (
        "subscription-itself",
        arm("Write", f"/subscriptions/{SUB}"),
        ignored("resource changes do not affect image pulls"),
    ),
    ("cluster-deleted", arm("Delete", AKS), Plan(forget=(AKS,))),
    ("cluster-written", arm("Write", AKS), Plan(audits=(audit(AKS, "cluster aks-prod changed"),))),
    (
        "agent-pool-deleted",
        arm("Delete", AKS + "/agentPools/np1"),
        Plan(audits=(audit(AKS, "cluster aks-prod changed (agentPools/np1)"),)),
    ),
    (
        "cluster-action",
        event(
            "Microsoft.Resources.ResourceActionSuccess",
            "",
            AKS,
            resourceUri=AKS,
            operationName="Microsoft.ContainerService/managedClusters/listClusterUserCredential/action",
        ),
        ignored(
            "action microsoft.containerservice/managedclusters/listclusterusercredential/action "
            "does not change what the cluster can pull"
        ),
    ),
    (
        "cluster-action-without-operation",
        event("Microsoft.Resources.ResourceActionSuccess", "", AKS, resourceUri=AKS),
        ignored("action ? does not change what the cluster can pull"),
    ),
]


@pytest.mark.parametrize(("name", "incoming", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_kind_of_event_plans_exactly(name: str, incoming: AzureEvent, expected: Plan) -> None:
    assert plan_events([incoming], INVENTORY, Scope.of([SUB], [])) == expected


def test_outside_a_scope_of_clusters_nothing_is_audited() -> None:
    scope = Scope.of([SUB.upper()], [DEV.upper() + "/"])
    assert scope.clusters == frozenset({DEV.lower()}) and scope.subscriptions == frozenset({SUB})
    plan = plan_events(
        [
            event(
                "Microsoft.ContainerService.NodePoolRollingSucceeded",
                AKS,
                event_id="roll",
                nodePoolName="np1",
            ),
            arm("Write", AKS),
            acr("ImagePushed", "team-a/web:1.0"),
        ],
        INVENTORY,
        scope,
    )
    assert plan.audits == ()
    assert plan.ignored == (
        ("roll", "cluster outside the configured scope"),
        ("e1", "cluster outside the configured scope"),
        ("e1", f"no watched cluster was failing on {HOST}/team-a/web:1.0"),
    )
    assert not Scope.of([], [DEV]).covers_cluster("not an id")
    assert not Scope.of([ELSEWHERE], []).covers_cluster(DEV)
    assert Scope().covers_cluster(DEV) and Scope.of([], [DEV]).covers_cluster(DEV.upper())


def test_without_an_inventory_a_role_assignment_fans_out_to_its_subscription_once() -> None:
    plan = plan_events([role("Write", ACR), role("Delete", f"/subscriptions/{SUB}")], [], Scope())
    assert plan == Plan(discover=(SUB,))
    management = plan_events(
        [role("Write", "/providers/Microsoft.Management/managementGroups/corp")], [], Scope()
    )
    assert management == ignored(
        "no watched cluster pulls from a registry under /providers/Microsoft.Management/managementGroups/corp"
    )


def test_deleting_one_cluster_twice_forgets_it_once() -> None:
    plan = plan_events([arm("Delete", AKS), arm("Delete", AKS)], INVENTORY, Scope())
    assert plan == Plan(forget=(AKS,))


def test_several_events_for_one_cluster_merge_reasons_events_and_hints_without_repeats() -> None:
    events = [
        acr("ImagePushed", "team-a/web:1.0"),
        event("Microsoft.ContainerRegistry.ImagePushed", ACR, "team-a/web:1.0", event_id="e2"),
        role("Write", ACR),
    ]
    plan = plan_events(events, INVENTORY, Scope())
    assert plan.audits == (
        AuditRequest(
            AKS,
            (
                f"{HOST}/team-a/web:1.0 was pushed; pulls of it were failing",
                f"role assignment written at {ACR}",
            ),
            ("e1", "e2"),
            (PUSHED, {"kind": "role_assignment", "scope": ACR}),
        ),
    )


def test_nightly_requests_and_their_merge() -> None:
    nightly = plan_nightly([AKS, DEV])
    assert nightly == [
        AuditRequest(AKS, ("nightly audit",), nightly=True),
        AuditRequest(DEV, ("nightly audit",), nightly=True),
    ]
    merged = AuditRequest(AKS, ("x",), ("e",)).merged(nightly[0])
    assert merged == AuditRequest(AKS, ("x", "nightly audit"), ("e",), (), nightly=True)
    assert AuditRequest(AKS).merged(AuditRequest(AKS)).nightly is False


def test_audit_message_json_is_exact() -> None:
    request = AuditRequest(AKS, ("r",), ("e",), ({"kind": "k"},), nightly=True)
    assert request.to_json() == (
        f'{{"cluster": "{AKS}", "event_ids": ["e"], "hints": [{{"kind": "k"}}], "nightly": true, "reasons": ["r"]}}'
    )
    assert AuditRequest.from_json(f'{{"cluster": "{AKS}"}}') == AuditRequest(AKS)
    assert AuditRequest.from_json(f'{{"cluster": "{AKS}", "hints": [{{"n": 1}}]}}').hints == ({"n": "1"},)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "audit message is not JSON: Expecting value: line 1 column 1 (char 0)"),
        (b"\xff", "audit message is not JSON: "),
        ("[]", "audit message needs a 'cluster' resource ID"),
        ('{"cluster": 3}', "audit message needs a 'cluster' resource ID"),
        ('{"cluster": "aks-prod"}', "audit message: 'aks-prod' is not a managedCluster resource ID"),
        (f'{{"cluster": "{AKS}", "reasons": "r"}}', "audit message: 'reasons' must be a list of strings"),
        (f'{{"cluster": "{AKS}", "event_ids": [1]}}', "audit message: 'event_ids' must be a list of strings"),
        (
            f'{{"cluster": "{AKS}", "hints": {{"kind": "k"}}}}',
            "audit message: 'hints' must be a list of objects",
        ),
        (f'{{"cluster": "{AKS}", "hints": [1]}}', "audit message: 'hints' must be a list of objects"),
    ],
)
def test_bad_audit_messages_say_what_is_wrong(text: str | bytes, message: str) -> None:
    from shared.errors import InputError

    with pytest.raises(InputError) as bad:
        AuditRequest.from_json(text)
    assert str(bad.value).startswith(message)


def test_known_cluster_round_trips_through_its_stored_form() -> None:
    stored = {
        "id": AKS,
        "registries": [HOST, "docker.io"],
        "registry_ids": [ACR],
        "images": [f"{HOST}/team-a/web:1.0"],
        "failing_images": [f"{HOST}/team-a/web:1.0"],
        "registry_modes": {HOST: "AbacRepositoryPermissions"},
    }
    cluster = known_cluster_from_dict(stored)
    assert cluster == KnownCluster(
        id=AKS,
        registries=frozenset({HOST, "docker.io"}),
        registry_ids=frozenset({ACR.lower()}),
        images=frozenset({f"{HOST}/team-a/web:1.0"}),
        failing_images=frozenset({f"{HOST}/team-a/web:1.0"}),
        registry_modes={HOST: "AbacRepositoryPermissions"},
    )
    assert known_cluster_to_dict(cluster) == {
        **stored,
        "registry_ids": [ACR.lower()],
    }
    assert known_cluster_from_dict({"id": DEV}) == KnownCluster(id=DEV)
    assert known_cluster_to_dict(KnownCluster(id=DEV)) == {
        "id": DEV,
        "registries": [],
        "registry_ids": [],
        "images": [],
        "failing_images": [],
        "registry_modes": {},
    }


def test_repositories_of_a_registry_from_tags_and_digests() -> None:
    assert INVENTORY[0].repositories("ContosoACR.azurecr.io") == {"team-a/web", "api", "db"}
    assert INVENTORY[0].repositories("docker.io") == {"library/nginx"}
    assert INVENTORY[0].subscription == SUB
    assert KnownCluster(id="not an id").subscription == ""


def test_an_ignored_event_is_logged_at_debug_with_its_id_type_and_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="pullwatch.plan"):
        plan_events([acr("ChartPushed", "charts/web:1.0")], INVENTORY, Scope())
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            "pullwatch.plan",
            logging.DEBUG,
            "event e1 (Microsoft.ContainerRegistry.ChartPushed) ignored: "
            "Helm chart events do not change what kubelet pulls",
        )
    ]


def test_events_for_two_clusters_make_two_audits() -> None:
    plan = plan_events(
        [
            arm("Write", AKS),
            event("Microsoft.Resources.ResourceWriteSuccess", "", DEV, "e2", resourceUri=DEV),
        ],
        INVENTORY,
        Scope(),
    )
    assert [a.cluster for a in plan.audits] == [AKS, DEV]


def test_subscriptions_in_a_scope_compare_case_insensitively() -> None:
    sub = "aBcDeF00-0000-0000-0000-00000000000a"
    scope = Scope.of([sub], [])
    assert scope.subscriptions == frozenset({sub.lower()})
    assert scope.covers_subscription(sub.upper()) and scope.covers_subscription(sub.lower())
    assert not scope.covers_subscription(ELSEWHERE)


def test_clusters_that_do_not_use_the_registry_or_repository_do_not_stop_the_search() -> None:
    other_repo = KnownCluster(id=DEV, registries=frozenset({HOST}), images=frozenset({f"{HOST}/other:1"}))
    inventory = [KnownCluster(id=DEV.replace("aks-dev", "aks-hub")), other_repo, INVENTORY[0]]
    plan = plan_events([acr("ImageDeleted", "api:1")], inventory, Scope())
    assert [a.cluster for a in plan.audits] == [AKS]


def test_image_event_read_from_its_target_alone() -> None:
    pushed = acr("ImagePushed", "", target={"repository": "team-a/web", "tag": "1.0"})
    plan = plan_events([pushed], INVENTORY, Scope())
    assert plan.audits == (audit(AKS, f"{HOST}/team-a/web:1.0 was pushed; pulls of it were failing", PUSHED),)


def test_the_resource_uri_decides_over_the_subject() -> None:
    written = event("Microsoft.Resources.ResourceWriteSuccess", "", STORAGE, resourceUri=ACR)
    assert plan_events([written], INVENTORY, Scope()).audits == (
        audit(AKS, "registry contosoacr changed", {"kind": "registry_changed", "registry_id": ACR}),
    )
    nothing = event("Microsoft.Resources.ResourceWriteSuccess", "", "")
    assert plan_events([nothing], INVENTORY, Scope()) == ignored("resource '' is not a resource ID")


def test_a_role_assignment_known_only_by_its_id_or_at_the_root() -> None:
    by_id = event(
        "Microsoft.Resources.ResourceWriteSuccess",
        "",
        f"{ACR}/providers/Microsoft.Authorization/roleAssignments/ra1",
    )
    assert plan_events([by_id], INVENTORY, Scope()).audits == (
        audit(AKS, f"role assignment written at {ACR}", {"kind": "role_assignment", "scope": ACR}),
    )
    root = arm(
        "Write",
        "/providers/Microsoft.Authorization/roleAssignments/ra1",
        "Microsoft.Authorization/roleAssignments/write",
    )
    [at_root] = plan_events([root], INVENTORY, Scope()).audits  # a tenant-root assignment reaches every ACR
    assert at_root.cluster == AKS and at_root.hints[0]["kind"] == "role_assignment"
    assert plan_events([root], INVENTORY[1:], Scope()) == ignored(
        "no watched cluster pulls from a registry under that scope"
    )


def test_child_names_ending_in_capital_x_are_kept_whole() -> None:
    pool = plan_events([arm("Write", AKS + "/agentPools/poolX")], INVENTORY, Scope())
    assert pool.audits[0].reasons == ("cluster aks-prod changed (agentPools/poolX)",)
    replica = plan_events([arm("Write", ACR + "/replications/regionX")], INVENTORY, Scope())
    assert replica.audits[0].reasons == ("registry contosoacr changed (replications/regionX)",)


def test_a_storms_reasons_and_event_ids_keep_the_first_that_fit_in_8000_characters() -> None:
    # each item costs its length + 4: forty of 196 characters fill 8,000 exactly, the 41st is left out
    request = AuditRequest(AKS, reasons=("r" * 196,) * 41, event_ids=("e" * 196,) * 41)
    assert request.reasons == ("r" * 196,) * 40
    assert request.event_ids == ("e" * 196,) * 40


def test_a_long_reason_is_cut_to_256_and_a_long_event_id_to_512_characters() -> None:
    request = AuditRequest(AKS, reasons=("r" * 300,), event_ids=("e" * 600,))
    assert request.reasons == ("r" * 256,)
    assert request.event_ids == ("e" * 512,)


def test_a_storms_hints_keep_the_first_that_fit_in_8000_characters_each_value_cut_to_256() -> None:
    hint = {"k": "v" * 191}  # 200 characters of JSON: forty fill 8,000 exactly
    request = AuditRequest(AKS, hints=(hint,) * 41)
    assert request.hints == (hint,) * 40
    assert AuditRequest(AKS, hints=({"k" * 300: "v" * 300},)).hints == ({"k" * 256: "v" * 256},)


def test_an_audit_message_of_exactly_64_kib_is_read_and_one_byte_more_is_refused() -> None:
    from shared.errors import InputError

    head = f'{{"cluster": "{AKS}", "nightly": false, "pad": "'
    exact = head + "x" * (64 * 1024 - len(head) - 2) + '"}'
    assert len(exact) == 64 * 1024
    assert AuditRequest.from_json(exact).cluster == AKS
    with pytest.raises(InputError) as bad:
        AuditRequest.from_json(exact[:-2] + 'x"}')
    assert str(bad.value) == "audit message is larger than 65536 bytes (65537)"


def test_an_audit_message_nested_too_deeply_says_so() -> None:
    from shared.errors import InputError

    with pytest.raises(InputError) as bad:
        AuditRequest.from_json("[" * 30_000)
    assert str(bad.value) == "audit message is not usable JSON: nested too deeply"


@pytest.mark.parametrize(
    "cluster",
    [
        f"{AKS}/agentPools/pool1",  # a child of the cluster
        f"{AKS}/X",  # anything after the cluster's name
        ACR,  # another kind with nothing after it
    ],
)
def test_an_audit_message_for_anything_but_a_cluster_is_refused(cluster: str) -> None:
    from shared.errors import InputError

    with pytest.raises(InputError, match="is not a managedCluster resource ID"):
        AuditRequest.from_json(f'{{"cluster": "{cluster}"}}')


def test_a_cluster_id_with_a_trailing_slash_is_read() -> None:
    assert AuditRequest.from_json(f'{{"cluster": "{AKS}/"}}').cluster.rstrip("/") == AKS


def test_a_refused_cluster_id_is_shown_cut_to_200_characters() -> None:
    from shared.errors import InputError

    long_id = "/x" * 150
    with pytest.raises(InputError) as bad:
        AuditRequest.from_json(f'{{"cluster": "{long_id}"}}')
    assert str(bad.value) == f"audit message: {long_id[:200]!r} is not a managedCluster resource ID"
