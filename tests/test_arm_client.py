"""The ARM seam with the real Azure SDK clients over HTTPS, against the wire samples served by
tests/arm_samples_server.py (and, further down, against the sandbox's ARM + Entra stand-ins)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from arm_samples_server import (
    DENIED_SUB,
    GROUPS,
    KUBELET_OBJECT_ID,
    SP_APP_ID,
    SP_OBJECT_ID,
    SUB,
    TENANT,
    TOKEN,
    ArmSamples,
    SyntheticEstate,
)
from azure.core.credentials import AccessToken

from shared.checks.roles import resolve_pull_identity, role_findings
from shared.clients.arm import ArmAccessDenied, ArmClient, ArmNotFound, ArmUnavailable
from shared.errors import UpstreamError

CLUSTER_ID = f"/subscriptions/{SUB}/resourcegroups/rg1/providers/Microsoft.ContainerService/managedClusters/clustername1"


class StaticCredential:
    """A TokenCredential issuing one fixed token, remembering the scopes asked for."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture
def samples(tmp_path: Path) -> Iterator[ArmSamples]:
    with ArmSamples(tmp_path) as server:
        yield server


@pytest.fixture
def arm(samples: ArmSamples) -> Iterator[ArmClient]:
    client = ArmClient(
        StaticCredential(),
        endpoint=samples.url,
        graph_endpoint=samples.url,
        ca_bundle=samples.ca_bundle,
        timeout=5,
        retries=1,
    )
    with client:
        yield client


def test_subscriptions_and_clusters(arm: ArmClient, samples: ArmSamples) -> None:
    [sub] = arm.list_subscriptions()
    assert sub.subscription_id == SUB and sub.tenant_id == TENANT
    assert sub.state == "Enabled", "ARM's value, not the SDK enum's Python name"
    clusters = arm.list_clusters(SUB)
    assert [c.name for c in clusters] == ["clustername1", "clustername2"]
    c = clusters[0]
    assert c.kubelet_object_id == KUBELET_OBJECT_ID and c.kubelet_client_id == "kubelet-client-id"
    assert c.subscription_id == SUB and c.resource_group == "rg1" and c.location == "location1"
    assert c.tenant_id == TENANT
    assert c.fqdn == "dnsprefix1-abcd1234.hcp.eastus.azmk8s.io" and not c.private_cluster
    assert [(p.name, p.os, p.arch, p.count) for p in c.node_pools] == [("nodepool1", "linux", "amd64", 3)]
    assert [i.rsplit("/", 1)[-1] for i in c.outbound_ip_ids] == ["mgdoutboundip1", "mgdoutboundip2"]
    assert c.tags == {"archv2": "", "tier": "production"}
    sp = clusters[1]
    assert sp.private_cluster and sp.fqdn == "domain1.privatelink.location1.azmk8s.io"
    assert sp.kubelet_object_id is None and sp.service_principal_client_id == SP_APP_ID
    assert all(p.startswith("/subscriptions") for p in samples.paths())
    assert "api-version=" in samples.paths("managedClusters")[0]


def test_get_cluster_and_kubeconfig(arm: ArmClient) -> None:
    cluster = arm.get_cluster(CLUSTER_ID)
    assert cluster.id == CLUSTER_ID and cluster.name == "clustername1"
    assert arm.cluster_user_kubeconfig(CLUSTER_ID) == b"credentialValue1"  # base64 decoded by the SDK


def test_not_found_and_bad_ids(arm: ArmClient) -> None:
    with pytest.raises(ArmNotFound) as err:
        arm.get_cluster(CLUSTER_ID.replace("clustername1", "nope"))
    assert err.value.status == 404 and err.value.code == "ResourceNotFound"
    assert "nope" in str(err.value)
    with pytest.raises(UpstreamError, match="not a managedCluster resource ID"):
        arm.get_cluster("/subscriptions/x")


def test_registries_with_role_assignment_mode(arm: ArmClient, samples: ArmSamples) -> None:
    arm.list_subscriptions()
    regs = {r.name: r for r in arm.list_registries(SUB)}  # two pages (nextLink)
    assert set(regs) == {"myRegistry", "oldRegistry", "abacRegistry"}
    assert regs["myRegistry"].role_assignment_mode == "LegacyRegistryPermissions"
    assert regs["myRegistry"].login_server == "myregistry.azurecr.io"
    assert regs["oldRegistry"].role_assignment_mode == "LegacyRegistryPermissions"  # absent = classic
    abac = regs["abacRegistry"]
    assert abac.abac and abac.tenant_id == TENANT
    assert abac.public_network_access == "Disabled" and abac.network_default_action == "Deny"
    assert abac.ip_rules == ("20.50.1.10",)
    assert abac.private_endpoint_ids[0].endswith("/privateEndpoints/peexample01")
    assert not abac.authentication_as_arm and regs["myRegistry"].authentication_as_arm
    assert abac.replication_locations == ("westeurope", "westus")
    assert len(samples.paths("/replications")) == 1  # Premium only
    assert any("api-version=2025-11-01" in p for p in samples.paths("/registries"))


def test_role_assignments_one_list_all_pages(arm: ArmClient, samples: ArmSamples) -> None:
    assignments = arm.list_role_assignments(SUB)
    assert len(assignments) == 4
    assert len(samples.paths("roleAssignments")) == 2  # one list, two pages
    assert all("$filter" not in p for p in samples.paths("roleAssignments"))  # unfiltered
    mg = next(a for a in assignments if "managementGroups" in a.scope)
    assert (
        mg.principal_id == KUBELET_OBJECT_ID and mg.listed_for == SUB and mg.role_guid.startswith("7f951dda")
    )
    cond = next(a for a in assignments if a.condition)
    assert cond.condition_version == "2.0" and "team-a/" in (cond.condition or "")


def test_role_definitions_cached(arm: ArmClient, samples: ArmSamples) -> None:
    defs = arm.list_role_definitions(f"/subscriptions/{SUB}")
    again = arm.list_role_definitions(f"/subscriptions/{SUB}/")
    assert defs is again and len(samples.paths("roleDefinitions")) == 1
    acr_pull = defs["7f951dda-4ed3-4680-a7ca-43fe172d538d"]
    assert acr_pull.role_name == "AcrPull" and acr_pull.actions == (
        "Microsoft.ContainerRegistry/registries/pull/read",
    )
    assert defs["roledefinitionid"].data_actions == ("dataAction",)
    extra = arm.role_definition(
        "/subscriptions/x/providers/Microsoft.Authorization/roleDefinitions/8311e382-0749-4cb8-b61a-304f252e45ec"
    )
    assert extra is not None and extra.role_name == "AcrPush"
    assert len(samples.paths("roleDefinitions")) == 1  # served from the cached list


def test_graph_lookups(arm: ArmClient, samples: ArmSamples) -> None:
    assert arm.service_principal_object_id(SP_APP_ID) == SP_OBJECT_ID
    assert arm.service_principal_object_id("ffffffff-0000-0000-0000-000000000000") is None
    assert arm.member_groups(SP_OBJECT_ID) == tuple(GROUPS)  # two pages, directory roles left out
    assert arm.member_groups(SP_OBJECT_ID.upper()) == tuple(GROUPS)  # cached
    graph_paths = samples.paths("/v1.0/")
    assert sum("transitiveMemberOf" in p for p in graph_paths) == 2
    assert arm.request_counts() == {"arm": 0, "graph": 4}


def test_scopes_and_token_sent(samples: ArmSamples) -> None:
    cred = StaticCredential()
    with ArmClient(
        cred, endpoint=samples.url, graph_endpoint=samples.url, ca_bundle=samples.ca_bundle
    ) as arm:
        arm.list_subscriptions()
        arm.member_groups(SP_OBJECT_ID)
    assert ("https://management.azure.com/.default",) in cred.scopes
    assert ("https://graph.microsoft.com/.default",) in cred.scopes
    assert set(samples.tokens) == {TOKEN}


def test_access_denied_is_a_project_error_without_token(arm: ArmClient) -> None:
    with pytest.raises(ArmAccessDenied) as err:
        arm.list_role_assignments(DENIED_SUB)
    assert err.value.status == 403 and err.value.code == "AuthorizationFailed"
    assert TOKEN not in str(err.value)
    assert isinstance(err.value, UpstreamError)


def test_untrusted_certificate_fails_cleanly(samples: ArmSamples) -> None:
    with (
        ArmClient(
            StaticCredential(),
            endpoint=samples.url,
            graph_endpoint=samples.url,
            ca_bundle=None,
            timeout=5,
            retries=0,
        ) as arm,
        pytest.raises(ArmUnavailable, match="listing subscriptions"),
    ):
        arm.list_subscriptions()


def test_timeout_on_a_silent_server(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the TCP connection, never answers the TLS handshake
    try:
        url = f"https://127.0.0.1:{silent.getsockname()[1]}"
        with ArmClient(StaticCredential(), endpoint=url, graph_endpoint=url, timeout=0.5, retries=0) as arm:
            started = time.monotonic()
            with pytest.raises(ArmUnavailable):
                arm.list_clusters(SUB)
            with pytest.raises(ArmUnavailable):
                arm.member_groups(SP_OBJECT_ID)
            assert time.monotonic() - started < 10
    finally:
        silent.close()


def test_retries_are_bounded_and_counted(arm: ArmClient, samples: ArmSamples) -> None:
    samples.fail_next = [503]
    assert len(arm.list_subscriptions()) == 1  # one retry
    assert arm.request_counts()["arm"] == 2
    samples.fail_next = [503, 503, 503]
    with pytest.raises(UpstreamError) as err:
        arm.list_clusters(SUB)
    assert err.value.status == 503


def test_audit_call_budget_and_role_findings(arm: ArmClient, samples: ArmSamples) -> None:
    """A whole role audit of one subscription: the call count is S + R(premium) + a constant."""
    subs = arm.list_subscriptions()
    assignments = []
    registries = []
    clusters = []
    for s in subs:
        clusters += arm.list_clusters(s.subscription_id)
        registries += arm.list_registries(s.subscription_id)
        assignments += arm.list_role_assignments(s.subscription_id)
    defs = arm.definitions_for(assignments, f"/subscriptions/{subs[0].subscription_id}")
    findings = []
    for cluster in clusters:
        identity = resolve_pull_identity(cluster, arm.service_principal_object_id)
        assert identity is not None
        groups = arm.member_groups(identity.object_id)
        repos = {r.login_server: {"web", "team-a/api"} for r in registries}
        findings += role_findings(cluster, identity, registries, repos, assignments, defs, groups)
    counts = arm.request_counts()
    # 1 subscriptions + 1 clusters + 2 registry pages + 1 replications + 2 assignment pages + 1 definitions
    # (+1 GET for the role the 2022-04-01 sample assigns: 0b5fe924…, not in the list: 404)
    assert counts["arm"] == 9, "\n".join(samples.paths())
    # 1 service principal lookup + 2 identities × 2 group pages
    assert counts["graph"] == 5
    by = {(f.cluster.rsplit("/", 1)[-1] if f.cluster else "", f.registry, f.code) for f in findings}
    # The samples' Graph puts both identities in both groups; one group holds Repository Reader on
    # abacRegistry with a 'team-a/' condition. The kubelet identity also holds AcrPull at the
    # management group (classic registries pass; ABAC mode ignores it); the service principal
    # holds no classic role.
    assert by == {
        ("clustername1", "abacregistry.azurecr.io", "ROLE_CONDITION_EXCLUDES_REPOSITORY"),
        ("clustername2", "abacregistry.azurecr.io", "ROLE_CONDITION_EXCLUDES_REPOSITORY"),
        ("clustername2", "myregistry.azurecr.io", "ROLE_MISSING"),
        ("clustername2", "oldregistry.azurecr.io", "ROLE_MISSING"),
    }
    excluded = next(f for f in findings if f.code == "ROLE_CONDITION_EXCLUDES_REPOSITORY")
    assert excluded.evidence["repositories_excluded"] == ["web"]


@pytest.mark.parametrize(("subs", "registries", "clusters"), [(1, 1, 1), (2, 3, 4), (3, 5, 6)])
def test_requests_grow_with_s_plus_r_plus_c(
    tmp_path: Path, subs: int, registries: int, clusters: int
) -> None:
    """A full role audit (every cluster against every registry in the estate) costs
    1 + 3·S + 1 ARM requests and one Graph request per identity — not S·R·C."""
    with (
        SyntheticEstate(tmp_path, subs, registries, clusters) as estate,
        ArmClient(
            StaticCredential(), endpoint=estate.url, graph_endpoint=estate.url, ca_bundle=estate.ca_bundle
        ) as arm,
    ):
        all_clusters, all_registries, assignments = [], [], []
        subscriptions = arm.list_subscriptions()
        for s in subscriptions:
            all_clusters += arm.list_clusters(s.subscription_id)
            all_registries += arm.list_registries(s.subscription_id)
            assignments += arm.list_role_assignments(s.subscription_id)
        defs = arm.definitions_for(assignments, subscriptions[0].id)
        findings = []
        for cluster in all_clusters:
            identity = resolve_pull_identity(cluster, arm.service_principal_object_id)
            assert identity is not None
            groups = arm.member_groups(identity.object_id)
            findings += role_findings(cluster, identity, all_registries, {}, assignments, defs, groups)
        counts = arm.request_counts()
    assert counts == {"arm": 1 + 3 * subs + 1, "graph": subs * clusters}
    assert estate.requests == counts["arm"] + counts["graph"]
    # every cluster lacks a role on every registry but the first of its own subscription
    total_registries = subs * registries
    assert len(findings) == subs * clusters * (total_registries - 1)
    assert all(f.code == "ROLE_MISSING" for f in findings)


# --------------------------------------------------------------------------- against the sandbox

SANDBOX_WORLD = """
name: roles-against-sandbox
subscriptions: [22222222-2222-2222-2222-222222222222, 33333333-3333-3333-3333-333333333333]
registries:
  contosoacr:
    resourceGroup: rg-shared
    privateEndpoints: [vnet-prod]
    repositories: {web: {"1.0": [linux/amd64]}}
  abacacr:
    resourceGroup: rg-shared
    sku: Premium
    replications: [northeurope]
    roleAssignmentMode: AbacRepositoryPermissions
    repositories:
      web: {"1.0": [linux/amd64]}
      team-a/api: {"1.0": [linux/amd64]}
  inheritacr:
    resourceGroup: rg-other
    subscription: 33333333-3333-3333-3333-333333333333
    repositories: {tools: {"1.0": [linux/amd64]}}
clusters:
  aks-prod:
    resourceGroup: rg-prod
    nodePools:
      - {name: system, os: linux, arch: amd64}
      - {name: armpool, os: linux, arch: arm64}
  aks-legacy:
    resourceGroup: rg-prod
    identity: servicePrincipal
    egressIPs: [20.61.0.7, 20.61.0.8]
groups:
  platform-pullers: [kubelet:aks-prod]
customRoles:
  ImagePuller: {actions: ["Microsoft.ContainerRegistry/registries/*/read"], notActions: []}
roleAssignments:
  - {principal: kubelet:aks-prod, role: AcrPull, scope: registry:contosoacr}
  - {principal: group:platform-pullers, role: "Container Registry Repository Reader",
     scope: registry:abacacr, repositories: ["team-a/"]}
  - {principal: sp:aks-legacy, role: ImagePuller, scope: "subscription:33333333-3333-3333-3333-333333333333"}
"""


@pytest.fixture
def sandbox_azure(tmp_path: Path) -> Iterator[Any]:
    from sandbox.arm import Arm
    from sandbox.entra import Entra
    from sandbox.metrics import RequestLog
    from sandbox.pki import Pki
    from sandbox.rbac import Rbac
    from sandbox.world import parse

    world = parse(SANDBOX_WORLD)
    pki = Pki(tmp_path)
    log = RequestLog()
    entra = Entra(world, log, pki).start()
    rbac = Rbac(world)
    arm = Arm(world, entra, rbac, log, pki, kubeconfig_for=lambda name: f"kubeconfig-of-{name}").start()
    try:
        yield world, entra, arm, rbac, log, pki
    finally:
        arm.stop()
        entra.stop()


@pytest.mark.sandbox
def test_role_audit_against_the_sandbox(sandbox_azure: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """ManagedIdentityCredential (IDENTITY_ENDPOINT, as in Azure Functions) → the sandbox's
    Entra; the real SDK clients → its ARM + Graph. The product's verdicts must agree with the
    sandbox's independent RBAC model for every cluster × registry × repository."""
    from azure.identity import ManagedIdentityCredential

    world, entra, sandbox_arm, rbac, log, pki = sandbox_azure
    for key, value in entra.env_for_app().items():
        monkeypatch.setenv(key, value)
    credential = ManagedIdentityCredential()
    with ArmClient(
        credential,
        endpoint=sandbox_arm.url,
        graph_endpoint=sandbox_arm.graph_url,
        ca_bundle=str(pki.ca_bundle),
        timeout=5,
        retries=1,
    ) as arm:
        subs = arm.list_subscriptions()
        assert {s.subscription_id for s in subs} == set(world.subscriptions)
        clusters, registries, assignments = [], [], []
        for s in subs:
            clusters += arm.list_clusters(s.subscription_id)
            registries += arm.list_registries(s.subscription_id)
            assignments += arm.list_role_assignments(s.subscription_id)
        defs = arm.definitions_for(assignments, subs[0].id)
        by_name = {c.name: c for c in clusters}
        assert set(by_name) == {"aks-prod", "aks-legacy"}
        prod = by_name["aks-prod"]
        assert prod.kubelet_object_id == world.principal_id("kubelet:aks-prod")
        assert [(p.name, p.arch) for p in prod.node_pools] == [("system", "amd64"), ("armpool", "arm64")]
        regs = {r.name: r for r in registries}
        assert regs["abacacr"].abac and not regs["contosoacr"].abac
        assert set(regs["abacacr"].replication_locations) >= {"northeurope"}
        repos = {r.login_server: set(world.registry(r.name).repositories) for r in registries}
        findings = []
        verdicts: dict[tuple[str, str, str], bool] = {}
        for cluster in clusters:
            identity = resolve_pull_identity(cluster, arm.service_principal_object_id)
            assert identity is not None, cluster.name
            groups = arm.member_groups(identity.object_id)
            found = role_findings(cluster, identity, registries, repos, assignments, defs, groups)
            findings += found
            for reg in registries:
                for repo in repos[reg.login_server]:
                    blocked = any(
                        f.registry == reg.login_server
                        and (
                            f.code != "ROLE_CONDITION_EXCLUDES_REPOSITORY"
                            or repo in f.evidence["repositories_excluded"]
                        )
                        for f in found
                    )
                    verdicts[(cluster.name, reg.name, repo)] = not blocked
            if cluster.name == "aks-legacy":
                assert identity.kind == "servicePrincipal"
                assert identity.object_id == world.principal_id("sp:aks-legacy")
            else:
                assert world.principal_id("group:platform-pullers") in {g.lower() for g in groups} | set(
                    groups
                )
        counts = arm.request_counts()

    # the sandbox's own model of Azure RBAC decides the same for every pull
    for (cluster_name, reg_name, repo), allowed in verdicts.items():
        principal = f"kubelet:{cluster_name}" if cluster_name == "aks-prod" else f"sp:{cluster_name}"
        decision = rbac.decide_pull(
            world.principal_id(principal), world.tenant, world.registry(reg_name), repo
        )
        assert decision.allowed == allowed, (cluster_name, reg_name, repo, decision.reason)

    codes = {(f.cluster.rsplit("/", 1)[-1] if f.cluster else "", f.registry, f.code) for f in findings}
    assert codes == {
        ("aks-prod", "abacacr.azurecr.io", "ROLE_CONDITION_EXCLUDES_REPOSITORY"),
        ("aks-prod", "inheritacr.azurecr.io", "ROLE_MISSING"),
        ("aks-legacy", "contosoacr.azurecr.io", "ROLE_MISSING"),
        ("aks-legacy", "abacacr.azurecr.io", "ROLE_NOT_HONORED_ABAC"),
    }
    # requests: ARM grows with subscriptions (+1 replication list per Premium registry), Graph with identities
    premium = sum(1 for r in world.registries.values() if r.is_acr and r.sku == "Premium")  # all three here
    assert counts["arm"] == 1 + 3 * len(world.subscriptions) + premium + 1
    assert log.snapshot()["arm"] == counts["arm"]
    assert log.snapshot()["graph"] == counts["graph"]


@pytest.mark.sandbox
def test_kubeconfig_and_denied_reads_against_the_sandbox(sandbox_azure: Any) -> None:
    world, entra, sandbox_arm, _rbac, _log, pki = sandbox_azure

    class EntraToken:
        """A credential whose tokens the sandbox's Entra signs, for a chosen principal."""

        def __init__(self, principal: str) -> None:
            self.principal = principal

        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            return AccessToken(entra.issue(self.principal, scopes[0]), int(time.time()) + 3600)

    cluster_id = world.clusters["aks-prod"].resource_id
    with ArmClient(
        EntraToken("app"),
        endpoint=sandbox_arm.url,
        graph_endpoint=sandbox_arm.url,
        ca_bundle=str(pki.ca_bundle),
    ) as arm:
        assert arm.cluster_user_kubeconfig(cluster_id)  # the stand-in's kubeconfig bytes
        assert arm.get_cluster(cluster_id).name == "aks-prod"
        with pytest.raises(ArmNotFound):
            arm.get_cluster(cluster_id.replace("aks-prod", "aks-gone"))
    # a principal without Reader: role assignments cannot be read → ArmAccessDenied (→ CHECK_INCOMPLETE)
    with ArmClient(
        EntraToken("kubelet:aks-legacy"),
        endpoint=sandbox_arm.url,
        graph_endpoint=sandbox_arm.url,
        ca_bundle=str(pki.ca_bundle),
        retries=0,
    ) as arm:
        with pytest.raises(ArmAccessDenied) as err:
            arm.list_role_assignments(world.subscriptions[0])
        assert err.value.code == "AuthorizationFailed"


@pytest.mark.sandbox
def test_network_facts_go_through_the_arm_seam(sandbox_azure: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Egress public IPs and private-endpoint VNets are read by the ArmClient itself: its pipeline
    (counted, bounded retries, timeouts, project errors), each resource once per audit."""
    from azure.identity import ManagedIdentityCredential

    from sandbox.arm import cluster_egress_ips

    world, entra, sandbox_arm, _, _, pki = sandbox_azure
    for key, value in entra.env_for_app().items():
        monkeypatch.setenv(key, value)
    with ArmClient(
        ManagedIdentityCredential(),
        endpoint=sandbox_arm.url,
        graph_endpoint=sandbox_arm.graph_url,
        ca_bundle=str(pki.ca_bundle),
        timeout=5,
        retries=1,
    ) as arm:
        legacy = arm.get_cluster(world.clusters["aks-legacy"].resource_id)
        [contoso] = [r for r in arm.list_registries(legacy.subscription_id) if r.name == "contosoacr"]
        before = arm.request_counts()["arm"]
        assert arm.public_ip_addresses(legacy.outbound_ip_ids) == ("20.61.0.7", "20.61.0.8")
        assert list(arm.public_ip_addresses(legacy.outbound_ip_ids)) == cluster_egress_ips(
            world, world.clusters["aks-legacy"]
        )
        [vnet] = arm.private_endpoint_vnets(contoso.private_endpoint_ids)
        assert vnet.lower().endswith("/virtualnetworks/vnet-prod")
        assert arm.private_endpoint_vnets(contoso.private_endpoint_ids) == (vnet,)
        reads = len(legacy.outbound_ip_ids) + len(contoso.private_endpoint_ids)
        assert arm.request_counts()["arm"] - before == reads == 3  # counted, and each read once
        with pytest.raises(UpstreamError, match="not a public IP resource ID"):
            arm.public_ip_addresses(["not-an-id"])
