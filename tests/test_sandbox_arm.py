"""The sandbox's Resource Manager and Graph through the real Azure SDK clients over HTTPS."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import ManagedIdentityCredential
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerservice import ContainerServiceClient

from sandbox.arm import Arm
from sandbox.entra import Entra
from sandbox.metrics import RequestLog
from sandbox.pki import Pki
from sandbox.rbac import Rbac
from sandbox.world import World, parse

pytestmark = pytest.mark.sandbox

TEAM_GROUPS = 25

WORLD = f"""
name: arm
registries:
  contosoacr:
    resourceGroup: rg-shared
    sku: Premium
    networkRuleSet: {{defaultAction: Deny, ipRules: [20.50.1.10/32]}}
    privateEndpoints: [vnet-prod]
    replications: [northeurope]
    roleAssignmentMode: AbacRepositoryPermissions
    authenticationAsArm: false
  fabrikamacr: {{resourceGroup: rg-shared, publicNetworkAccess: Disabled}}
  foreignacr: {{resourceGroup: rg-shared, tenant: 99999999-9999-9999-9999-999999999999}}
clusters:
  aks-prod:
    resourceGroup: rg-prod
    vnet: vnet-prod
    egressIPs: [20.50.1.10]
    tags: {{env: prod}}
    nodePools: [{{name: system}}, {{name: armpool, arch: arm64, count: 2}}, {{name: win, os: windows}}]
  aks-old: {{resourceGroup: rg-prod, identity: servicePrincipal, aad: true, private: true}}
groups:
  platform-pullers: [kubelet:aks-prod]
{"".join(f"  team-{i}: [kubelet:aks-prod]{chr(10)}" for i in range(7))}
customRoles:
  ImagePuller: {{actions: [Microsoft.ContainerRegistry/registries/pull/read]}}
roleAssignments:
  - {{principal: kubelet:aks-prod, role: AcrPull, scope: registry:contosoacr}}
  - {{principal: group:platform-pullers, role: "Container Registry Repository Reader", scope: registry:contosoacr,
     repositories: [web, "team-a/"]}}
  - {{principal: sp:aks-old, role: ImagePuller, scope: resourceGroup:rg-shared}}
  - {{principal: kubelet:aks-prod, role: Reader, scope: managementGroup:contoso}}
{
    "".join(
        f"  - {{principal: kubelet:aks-old, role: AcrPull, scope: resourceGroup:rg-team-{i}}}{chr(10)}"
        for i in range(TEAM_GROUPS)
    )
}
"""

RESTRICTED = """
name: arm-restricted
clusters:
  aks-prod: {resourceGroup: rg-prod}
  aks-dev: {resourceGroup: rg-dev}
roleAssignments:
  - {principal: app, role: Reader, scope: resourceGroup:rg-prod}
"""

KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: {name}
  cluster: {{server: "https://127.0.0.1:6443", certificate-authority-data: "LS0t"}}
users:
- name: clusterUser_{name}
  user: {{token: "sandbox"}}
contexts:
- name: {name}
  context: {{cluster: {name}, user: clusterUser_{name}}}
current-context: {name}
"""


@dataclass
class Azure:
    world: World
    entra: Entra
    arm: Arm
    pki: Pki
    log: RequestLog
    credential: ManagedIdentityCredential

    @property
    def sub(self) -> str:
        return self.world.subscriptions[0]

    def kwargs(self) -> dict[str, Any]:
        return {
            "base_url": self.arm.url,
            "connection_verify": str(self.pki.ca_bundle),
            "credential_scopes": ["https://management.azure.com/.default"],
        }

    def aks(self) -> ContainerServiceClient:
        return ContainerServiceClient(self.credential, self.sub, **self.kwargs())

    def acr(self) -> ContainerRegistryManagementClient:
        return ContainerRegistryManagementClient(self.credential, self.sub, **self.kwargs())

    def authz(self) -> AuthorizationManagementClient:
        return AuthorizationManagementClient(self.credential, self.sub, **self.kwargs())

    def get(
        self, path: str, audience: str = "https://management.azure.com", **params: str
    ) -> requests.Response:
        token = self.entra.issue("app", audience)
        return requests.get(
            f"{self.arm.url}{path}",
            params={"api-version": "2025-01-01", **params},
            headers={"Authorization": f"Bearer {token}"},
            verify=str(self.pki.ca_bundle),
            timeout=10,
        )


def _start(world_text: str, workdir: Path) -> Azure:
    world = parse(world_text)
    log = RequestLog()
    pki = Pki(workdir)
    entra = Entra(world, log, pki).start()
    arm = Arm(
        world, entra, Rbac(world), log, pki, kubeconfig_for=lambda name: KUBECONFIG.format(name=name)
    ).start()
    return Azure(world, entra, arm, pki, log, ManagedIdentityCredential())


@contextmanager
def running(world_text: str, workdir: Path) -> Iterator[Azure]:
    """Entra + ARM started, and the app's managed-identity settings in the environment (azure-identity
    reads IDENTITY_ENDPOINT when it asks for a token) for as long as they run."""
    with pytest.MonkeyPatch.context() as mp:
        parts = _start(world_text, workdir)
        for key, value in parts.entra.env_for_app().items():
            mp.setenv(key, value)
        try:
            yield parts
        finally:
            parts.arm.stop()
            parts.entra.stop()


@pytest.fixture(scope="module")
def azure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azure]:
    with running(WORLD, tmp_path_factory.mktemp("arm")) as parts:
        yield parts


@pytest.fixture(scope="module")
def restricted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azure]:
    with running(RESTRICTED, tmp_path_factory.mktemp("arm-restricted")) as parts:
        yield parts


def test_managed_clusters_deserialize_with_identities_pools_and_network(azure: Azure) -> None:
    clusters = {c.name: c for c in azure.aks().managed_clusters.list()}
    assert set(clusters) == {"aks-prod", "aks-old"}
    prod, old = clusters["aks-prod"], clusters["aks-old"]
    kubelet = prod.identity_profile["kubeletidentity"]
    assert kubelet.object_id == azure.world.principal_id("kubelet:aks-prod")
    assert kubelet.client_id == azure.entra.client_id("kubelet:aks-prod")
    assert "/Microsoft.ManagedIdentity/userAssignedIdentities/" in kubelet.resource_id
    assert prod.service_principal_profile.client_id == "msi"
    assert prod.tags == {"env": "prod"} and prod.location == "westeurope" and prod.fqdn.endswith(".azmk8s.io")
    pools = {p.name: p for p in prod.agent_pool_profiles}
    assert (pools["win"].os_type, pools["armpool"].count, pools["system"].mode) == ("Windows", 2, "System")
    assert all("/virtualNetworks/vnet-prod/subnets/" in p.vnet_subnet_id for p in pools.values())
    assert prod.api_server_access_profile.enable_private_cluster is False
    assert old.identity is None and old.identity_profile is None
    assert old.service_principal_profile.client_id == azure.entra.client_id("sp:aks-old")
    assert old.aad_profile.managed is True and old.api_server_access_profile.enable_private_cluster is True
    by_rg = list(azure.aks().managed_clusters.list_by_resource_group("rg-prod"))
    assert len(by_rg) == 2
    assert azure.aks().managed_clusters.get("rg-prod", "aks-prod").kubernetes_version == "1.32.7"


def test_egress_public_ip_resolves_to_the_world_address(azure: Azure) -> None:
    prod = azure.aks().managed_clusters.get("rg-prod", "aks-prod")
    ip_id = prod.network_profile.load_balancer_profile.effective_outbound_i_ps[0].id
    answer = azure.get(ip_id)
    assert answer.status_code == 200, answer.text
    assert answer.json()["properties"]["ipAddress"] == "20.50.1.10"
    default = azure.aks().managed_clusters.get("rg-prod", "aks-old")
    ip_id = default.network_profile.load_balancer_profile.effective_outbound_i_ps[0].id
    assert azure.get(ip_id).json()["properties"]["ipAddress"].startswith("20.50.")


def test_cluster_user_credential_is_a_parseable_kubeconfig(azure: Azure) -> None:
    result = azure.aks().managed_clusters.list_cluster_user_credentials("rg-prod", "aks-prod")
    assert result.kubeconfigs[0].name == "clusterUser"
    config = yaml.safe_load(bytes(result.kubeconfigs[0].value).decode())
    assert config["kind"] == "Config" and config["current-context"] == "aks-prod"


def test_registries_and_their_children_deserialize(azure: Azure) -> None:
    regs = {r.name: r for r in azure.acr().registries.list()}
    assert set(regs) == {"contosoacr", "fabrikamacr"}  # foreignacr lives in another tenant's ARM
    contoso = regs["contosoacr"]
    assert contoso.login_server == "contosoacr.azurecr.io" and contoso.sku.name == "Premium"
    assert contoso.network_rule_set.default_action == "Deny"
    assert contoso.network_rule_set.ip_rules[0].ip_address_or_range == "20.50.1.10/32"
    assert contoso.policies.azure_ad_authentication_as_arm_policy.status == "disabled"
    assert contoso.role_assignment_mode == "AbacRepositoryPermissions"
    assert regs["fabrikamacr"].public_network_access == "Disabled"
    assert azure.acr().registries.get("rg-shared", "contosoacr").anonymous_pull_enabled is False
    assert [r.location for r in azure.acr().replications.list("rg-shared", "contosoacr")] == [
        "westeurope",
        "northeurope",
    ]
    assert list(azure.acr().replications.list("rg-shared", "fabrikamacr")) == []
    conns = list(azure.acr().private_endpoint_connections.list("rg-shared", "contosoacr"))
    assert len(conns) == 1 and conns[0].private_link_service_connection_state.status == "Approved"
    endpoint = azure.get(conns[0].private_endpoint.id)
    assert endpoint.status_code == 200
    assert "/virtualNetworks/vnet-prod/subnets/" in endpoint.json()["properties"]["subnet"]["id"]


def test_role_assignment_paging_is_followed(azure: Azure) -> None:
    before = azure.log.snapshot()["arm"]
    assignments = list(azure.authz().role_assignments.list_for_subscription())
    pages = azure.log.snapshot()["arm"] - before
    # 29 listed + 3 implicit app assignments: two pages of 20.
    assert len(assignments) == 4 + TEAM_GROUPS + 3
    assert pages == 2
    assert len({a.id for a in assignments}) == len(assignments)
    raw = azure.get(f"/subscriptions/{azure.sub}/providers/Microsoft.Authorization/roleAssignments").json()
    assert len(raw["value"]) == 20 and raw["nextLink"].startswith("https://")


def test_role_assignment_filters(azure: Azure) -> None:
    authz = azure.authz()
    registry = azure.world.registry("contosoacr").resource_id
    kubelet = azure.world.principal_id("kubelet:aks-prod")
    at_scope = list(authz.role_assignments.list_for_scope(registry, filter="atScope()"))
    scopes = {a.scope for a in at_scope}
    assert registry in scopes and f"/subscriptions/{azure.sub}" in scopes
    assert "/providers/Microsoft.Management/managementGroups/contoso" in scopes
    assert not any("rg-team-" in s for s in scopes)
    assigned = list(authz.role_assignments.list_for_scope(registry, filter=f"assignedTo('{kubelet}')"))
    assert {a.principal_type for a in assigned} == {"ServicePrincipal", "Group"}
    group = next(a for a in assigned if a.principal_type == "Group")
    assert group.role_definition_id.endswith("/b93aa761-3e63-49ed-ac28-beffa264f7ac")
    assert group.condition_version == "2.0"
    assert "StringStartsWithIgnoreCase 'team-a/'" in group.condition
    assert "StringEqualsIgnoreCase 'web'" in group.condition
    direct = list(authz.role_assignments.list_for_scope(registry, filter=f"principalId eq '{kubelet}'"))
    assert {a.principal_type for a in direct} == {"ServicePrincipal"} and len(direct) == 2
    old = azure.world.principal_id("kubelet:aks-old")
    below = list(authz.role_assignments.list_for_subscription(filter=f"principalId eq '{old}'"))
    assert len(below) == TEAM_GROUPS
    rg = list(authz.role_assignments.list_for_resource_group("rg-shared"))
    assert any(a.scope.endswith("/resourceGroups/rg-shared") for a in rg)
    assert any(a.scope == registry for a in rg)
    assert not any("rg-team-" in a.scope for a in rg)
    # Reading at the management group needs rights there; the app's Reader sits on the subscription.
    with pytest.raises(HttpResponseError) as info:
        list(
            authz.role_assignments.list_for_scope(
                "providers/Microsoft.Management/managementGroups/contoso", filter="atScope()"
            )
        )
    assert info.value.status_code == 403


def test_assignment_ids_match_the_runner_helper(azure: Azure) -> None:
    ids = {a.id for a in azure.authz().role_assignments.list_for_subscription()}
    for assignment in azure.world.role_assignments:
        assert azure.arm.assignment_id(assignment) in ids


def test_role_definitions(azure: Azure) -> None:
    authz = azure.authz()
    scope = f"/subscriptions/{azure.sub}"
    everything = list(authz.role_definitions.list(scope))
    names = {d.role_name for d in everything}
    assert {"AcrPull", "Reader", "Container Registry Repository Reader", "ImagePuller"} <= names
    custom = list(authz.role_definitions.list(scope, filter="type eq 'CustomRole'"))
    assert [d.role_name for d in custom] == ["ImagePuller"]
    assert custom[0].permissions[0].actions == ["Microsoft.ContainerRegistry/registries/pull/read"]
    acrpull = authz.role_definitions.get_by_id(
        f"{scope}/providers/Microsoft.Authorization/roleDefinitions/7f951dda-4ed3-4680-a7ca-43fe172d538d"
    )
    assert acrpull.role_name == "AcrPull" and acrpull.role_type == "BuiltInRole"
    assert authz.role_definitions.get(scope, custom[0].name).role_name == "ImagePuller"
    root = azure.get(
        "/providers/Microsoft.Authorization/roleDefinitions/b93aa761-3e63-49ed-ac28-beffa264f7ac"
    )
    assert root.json()["properties"]["permissions"][0]["dataActions"] == [
        "Microsoft.ContainerRegistry/registries/repositories/metadata/read",
        "Microsoft.ContainerRegistry/registries/repositories/content/read",
    ]


def test_not_found_envelopes(azure: Azure) -> None:
    with pytest.raises(ResourceNotFoundError) as info:
        azure.aks().managed_clusters.get("rg-prod", "aks-nope")
    assert info.value.error.code == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError) as info:
        azure.acr().registries.get("rg-missing", "contosoacr")
    assert info.value.error.code == "ResourceGroupNotFound"
    answer = azure.get(
        "/subscriptions/44444444-4444-4444-4444-444444444444/providers/"
        "Microsoft.ContainerService/managedClusters"
    )
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "SubscriptionNotFound"


def test_authentication_is_required(azure: Azure) -> None:
    url = f"{azure.arm.url}/subscriptions/{azure.sub}/providers/Microsoft.ContainerService/managedClusters"
    bare = requests.get(url, params={"api-version": "2025-01-01"}, verify=str(azure.pki.ca_bundle), timeout=5)
    assert bare.status_code == 401 and bare.json()["error"]["code"] == "AuthenticationFailed"
    assert "WWW-Authenticate" in bare.headers
    graph_token = azure.get(url.replace(azure.arm.url, ""), audience="https://graph.microsoft.com")
    assert graph_token.status_code == 401
    assert graph_token.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"


def test_app_without_reader_on_the_subscription_gets_403(restricted: Azure) -> None:
    with pytest.raises(HttpResponseError) as info:
        list(restricted.authz().role_assignments.list_for_subscription())
    assert info.value.status_code == 403 and info.value.error.code == "AuthorizationFailed"
    assert restricted.world.principal_id("app") in info.value.error.message
    with pytest.raises(HttpResponseError) as info:
        list(restricted.aks().managed_clusters.list())
    assert info.value.status_code == 403
    assert [c.name for c in restricted.aks().managed_clusters.list_by_resource_group("rg-prod")] == [
        "aks-prod"
    ]
    with pytest.raises(HttpResponseError) as info:
        restricted.aks().managed_clusters.get("rg-dev", "aks-dev")
    assert info.value.status_code == 403
    with pytest.raises(HttpResponseError) as info:  # Reader does not cover listClusterUserCredential
        restricted.aks().managed_clusters.list_cluster_user_credentials("rg-prod", "aks-prod")
    assert info.value.status_code == 403
    assert "listClusterUserCredential/action" in info.value.error.message


def test_graph_service_principal_and_transitive_groups(azure: Azure) -> None:
    graph = "https://graph.microsoft.com"
    old = azure.get(f"/v1.0/servicePrincipals(appId='{azure.entra.client_id('sp:aks-old')}')", audience=graph)
    assert old.status_code == 200
    assert old.json()["id"] == azure.world.principal_id("sp:aks-old")
    assert old.json()["appId"] == azure.entra.client_id("sp:aks-old") and old.json()["displayName"]
    selected = azure.get(
        f"/v1.0/servicePrincipals(appId='{azure.entra.client_id('sp:aks-old')}')",
        audience=graph,
        **{"$select": "id,appId"},
    )
    assert {k for k in selected.json() if not k.startswith("@")} == {"id", "appId"}
    missing = azure.get(
        "/v1.0/servicePrincipals(appId='00000000-0000-0000-0000-00000000abcd')", audience=graph
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "Request_ResourceNotFound"
    before = azure.log.snapshot()["graph"]
    token = azure.entra.issue("app", graph)
    url: str | None = (
        f"{azure.arm.url}/v1.0/servicePrincipals/"
        f"{azure.world.principal_id('kubelet:aks-prod')}/transitiveMemberOf"
    )
    names: list[str] = []
    while url:
        page = requests.get(
            url, headers={"Authorization": f"Bearer {token}"}, verify=str(azure.pki.ca_bundle), timeout=10
        ).json()
        names += [g["displayName"] for g in page["value"]]
        assert all(g["@odata.type"] == "#microsoft.graph.group" for g in page["value"])
        url = page.get("@odata.nextLink")
    assert sorted(names) == sorted(["platform-pullers", *(f"team-{i}" for i in range(7))])
    assert azure.log.snapshot()["graph"] - before == 2
    wrong_audience = azure.get(f"/v1.0/servicePrincipals/{azure.world.principal_id('app')}")
    assert wrong_audience.status_code == 401


def test_role_changes_take_effect_at_once(azure: Azure) -> None:
    registry = azure.world.registry("fabrikamacr").resource_id
    assert list(azure.authz().role_assignments.list_for_scope(registry, filter="atScope()"))
    azure.world.role_assignments.append(
        parse("""
name: x
registries: {fabrikamacr: {}}
clusters: {aks-prod: {}}
roleAssignments: [{principal: kubelet:aks-prod, role: AcrPush, scope: registry:fabrikamacr}]
""").role_assignments[0]
    )
    try:
        found = list(azure.authz().role_assignments.list_for_scope(registry, filter="atScope()"))
        assert any(a.role_definition_id.endswith("8311e382-0749-4cb8-b61a-304f252e45ec") for a in found)
    finally:
        azure.world.role_assignments.pop()


def test_start_stop_leaves_nothing_behind(tmp_path: Path) -> None:
    threads = threading.active_count()
    with running(RESTRICTED, tmp_path) as parts:
        port = parts.arm.url.rsplit(":", 1)[1]
        assert [c.name for c in parts.aks().managed_clusters.list_by_resource_group("rg-prod")] == [
            "aks-prod"
        ]
    deadline = time.monotonic() + 5  # connection threads end once their sockets are closed
    while threading.active_count() > threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= threads
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"https://127.0.0.1:{port}/subscriptions", timeout=2, verify=str(parts.pki.ca_bundle))
