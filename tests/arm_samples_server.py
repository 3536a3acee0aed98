"""A tiny real HTTPS server answering ARM and Graph requests with the wire samples in
tests/data/wire/arm (bodies exactly as the REST specs / docs give them), for testing the
ARM seam with the real Azure SDK clients. It pages lists with ``nextLink``, answers the observed
403/404 envelopes, checks the bearer token and records every request.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

from sandbox.httpserver import Request, Response, Server, json_response
from sandbox.pki import Pki

WIRE = Path(__file__).resolve().parent / "data" / "wire" / "arm"
SUB = "00000000-0000-0000-0000-000000000000"
DENIED_SUB = "44444444-4444-4444-4444-444444444444"
TENANT = "11111111-1111-1111-1111-111111111111"
TOKEN = "sample-arm-token-4f1c"
KUBELET_OBJECT_ID = "5a1e5a1e-0000-4000-8000-00000000beef"
SP_APP_ID = "0a0a0a0a-1111-2222-3333-444444444444"
SP_OBJECT_ID = "0b0b0b0b-1111-2222-3333-444444444444"
GROUPS = ["9f000000-0000-0000-0000-000000000001", "9f000000-0000-0000-0000-000000000002"]


def sample(name: str) -> Any:
    data = json.loads((WIRE / name).read_text())
    if isinstance(data, dict) and "responses" in data:
        return data["responses"]["200"]["body"]
    return data


def cluster_body() -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(sample("aks.managedClusters.get.2025-05-01.json"))
    snippet = sample("aks.identityProfile.snippet.docs.json")
    kubelet = dict(
        snippet["identityProfile"]["kubeletidentity"],
        objectId=KUBELET_OBJECT_ID,
        clientId="kubelet-client-id",
    )
    body["properties"]["identityProfile"] = {"kubeletidentity": kubelet}
    body["properties"]["servicePrincipalProfile"] = {"clientId": "msi"}
    return body


def sp_cluster_body() -> dict[str, Any]:
    """The private-cluster sample: a service principal, no kubelet identity."""
    body: dict[str, Any] = copy.deepcopy(sample("aks.managedClusters.put.privateCluster.2025-05-01.json"))
    body["name"] = "clustername2"
    body["id"] = body["id"].replace("clustername1", "clustername2")
    body["properties"]["servicePrincipalProfile"] = {"clientId": SP_APP_ID}
    return body


def registry_bodies() -> list[dict[str, Any]]:
    new = sample("acr.registries.get.2025-11-01.json")
    old = copy.deepcopy(sample("acr.registries.get.2025-04-01.json"))  # no roleAssignmentMode
    old["name"] = "oldRegistry"
    old["id"] = old["id"].replace("myRegistry", "oldRegistry")
    old["properties"]["loginServer"] = "oldregistry.azurecr.io"
    abac = copy.deepcopy(new)
    abac["name"] = "abacRegistry"
    abac["id"] = abac["id"].replace("myRegistry", "abacRegistry")
    abac["sku"] = {"name": "Premium", "tier": "Premium"}
    abac["properties"].update(
        loginServer="abacregistry.azurecr.io",
        roleAssignmentMode="AbacRepositoryPermissions",
        publicNetworkAccess="Disabled",
        networkRuleSet={"defaultAction": "Deny", "ipRules": [{"action": "Allow", "value": "20.50.1.10"}]},
        privateEndpointConnections=sample("acr.privateEndpointConnections.list.2025-04-01.json")["value"],
    )
    abac["properties"]["policies"]["azureADAuthenticationAsArmPolicy"] = {"status": "disabled"}
    return [new, old, abac]


def assignment_pages() -> list[list[dict[str, Any]]]:
    """Page 1: the listForScope/listForResourceGroup samples; page 2: the docs' conditional
    shape plus a management-group AcrPull for the kubelet identity."""
    page1 = sample("authz.roleAssignments.listForResourceGroup.2022-04-01.json")["value"]
    mg = {
        "properties": {
            "roleDefinitionId": "/providers/Microsoft.Authorization/roleDefinitions/7f951dda-4ed3-4680-a7ca-43fe172d538d",
            "principalId": KUBELET_OBJECT_ID,
            "principalType": "ServicePrincipal",
            "scope": "/providers/Microsoft.Management/managementGroups/contoso",
            "condition": None,
            "conditionVersion": None,
        },
        "id": "/providers/Microsoft.Management/managementGroups/contoso/providers/Microsoft.Authorization/"
        "roleAssignments/11111111-aaaa-bbbb-cccc-000000000001",
        "type": "Microsoft.Authorization/roleAssignments",
        "name": "11111111-aaaa-bbbb-cccc-000000000001",
    }
    cond = {
        "properties": {
            "roleDefinitionId": f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/"
            "b93aa761-3e63-49ed-ac28-beffa264f7ac",
            "principalId": GROUPS[1],
            "principalType": "Group",
            "scope": f"/subscriptions/{SUB}/resourceGroups/myResourceGroup/providers/"
            "Microsoft.ContainerRegistry/registries/abacRegistry",
            "condition": "((!(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/content/read'}))"
            " OR (@Request[Microsoft.ContainerRegistry/registries/repositories:name] "
            "StringStartsWithIgnoreCase 'team-a/'))",
            "conditionVersion": "2.0",
        },
        "id": f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleAssignments/"
        "22222222-aaaa-bbbb-cccc-000000000002",
        "type": "Microsoft.Authorization/roleAssignments",
        "name": "22222222-aaaa-bbbb-cccc-000000000002",
    }
    return [page1, [mg, cond]]


def role_definitions() -> list[dict[str, Any]]:
    """The built-in-roles doc's flat AcrPull/AcrPush, wrapped as ARM returns them, plus the
    2022-04-01 GET sample (a custom role)."""
    out = []
    for name in (
        "authz.roleDefinition.AcrPull.builtin-roles-doc.json",
        "authz.roleDefinition.AcrPush.builtin-roles-doc.json",
    ):
        flat = sample(name)
        out.append(
            {
                "id": flat["id"],
                "name": flat["name"],
                "type": flat["type"],
                "properties": {
                    "roleName": flat["roleName"],
                    "type": flat["roleType"],
                    "description": flat["description"],
                    "assignableScopes": flat["assignableScopes"],
                    "permissions": flat["permissions"],
                },
            }
        )
    out.append(sample("authz.roleDefinitions.get.2022-04-01.json"))
    return out


class ArmSamples:
    """``with ArmSamples(tmp_path) as arm:`` → ``arm.url``, ``arm.ca_bundle``, ``arm.requests``."""

    def __init__(self, workdir: Path) -> None:
        self.pki = Pki(workdir)
        self.ca_bundle = str(self.pki.ca_bundle)
        self.requests: list[tuple[str, str]] = []  # (method, path?query)
        self.tokens: list[str] = []
        self.fail_next: list[int] = []  # statuses to answer before serving normally (e.g. 500, 429)
        self.stall_seconds = 0.0
        self._lock = threading.Lock()
        self.server = Server(self.handle, cert=self.pki.issue(["localhost"]), name="arm-samples")

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> ArmSamples:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def paths(self, contains: str = "") -> list[str]:
        return [p for _m, p in self.requests if contains.lower() in p.lower()]

    def _page(self, req: Request, pages: list[list[dict[str, Any]]]) -> Response:
        n = int(req.arg("page", "0") or 0)
        body: dict[str, Any] = {"value": pages[n]}
        if n + 1 < len(pages):
            api = req.arg("api-version", "")
            body["nextLink"] = f"{self.url}{req.path}?api-version={api}&page={n + 1}"
        return json_response(200, body)

    def handle(self, req: Request) -> Response:
        query = "&".join(f"{k}={v[0]}" for k, v in req.query.items())
        with self._lock:
            self.requests.append((req.method, req.path + ("?" + query if query else "")))
        auth = req.header("Authorization") or ""
        if not auth.startswith("Bearer "):
            return json_response(
                401, {"error": {"code": "AuthenticationFailed", "message": "no bearer token"}}
            )
        self.tokens.append(auth.removeprefix("Bearer "))
        if self.fail_next:
            status = self.fail_next.pop(0)
            return json_response(
                status, {"error": {"code": "ServerBusy", "message": "try again"}}, {"Retry-After": "0"}
            )
        if self.stall_seconds:
            time.sleep(self.stall_seconds)
        path = req.path
        low = path.lower()
        if low.startswith("/v1.0/"):
            return self.graph(req)
        if DENIED_SUB in low:
            return json_response(403, sample("arm.error.403-AuthorizationFailed.observed.json"))
        if low == "/subscriptions":
            return json_response(
                200,
                {
                    "value": [
                        {
                            "id": f"/subscriptions/{SUB}",
                            "subscriptionId": SUB,
                            "tenantId": TENANT,
                            "displayName": "Samples",
                            "state": "Enabled",
                        }
                    ]
                },
            )
        if re.fullmatch(r"/subscriptions/[^/]+", low):
            sub = path.rsplit("/", 1)[-1]
            return json_response(
                200,
                {
                    "id": f"/subscriptions/{sub}",
                    "subscriptionId": sub,
                    "tenantId": TENANT,
                    "displayName": "Samples",
                    "state": "Enabled",
                },
            )
        if low.endswith("/providers/microsoft.containerservice/managedclusters"):
            return json_response(200, {"value": [cluster_body(), sp_cluster_body()]})
        if low.endswith("/managedclusters/clustername1/listclusterusercredential"):
            return json_response(
                200, sample("aks.managedClusters.listClusterUserCredential.2025-07-02-preview.json")
            )
        if low.endswith("/managedclusters/clustername1"):
            return json_response(200, cluster_body())
        if "/managedclusters/" in low:
            return json_response(404, sample("arm.error.404-ResourceNotFound.observed.json"))
        if low.endswith("/providers/microsoft.containerregistry/registries"):
            regs = registry_bodies()
            return self._page(req, [regs[:2], regs[2:]])
        if low.endswith("/registries/abacregistry/replications"):
            return json_response(
                200,
                {
                    "value": [
                        {
                            "id": path + "/westeurope",
                            "name": "westeurope",
                            "location": "westeurope",
                            "type": "Microsoft.ContainerRegistry/registries/replications",
                            "properties": {},
                        },
                        {
                            "id": path + "/westus",
                            "name": "westus",
                            "location": "westus",
                            "type": "Microsoft.ContainerRegistry/registries/replications",
                            "properties": {},
                        },
                    ]
                },
            )
        if low.endswith("/providers/microsoft.authorization/roleassignments"):
            return self._page(req, assignment_pages())
        if low.endswith("/providers/microsoft.authorization/roledefinitions"):
            return json_response(200, {"value": role_definitions()})
        if "/providers/microsoft.authorization/roledefinitions/" in low:
            guid = low.rsplit("/", 1)[-1]
            for d in role_definitions():
                if d["name"].lower() == guid:
                    return json_response(200, d)
            return json_response(404, {"error": {"code": "RoleDefinitionDoesNotExist", "message": "gone"}})
        return json_response(404, sample("arm.error.404-ResourceNotFound.observed.json"))

    def graph(self, req: Request) -> Response:
        low = req.path.lower()
        m = re.fullmatch(r"/v1\.0/serviceprincipals\(appid='([^']*)'\)", low.replace("%27", "'"))
        if m:
            if m.group(1) == SP_APP_ID.lower():
                return json_response(200, {"id": SP_OBJECT_ID, "appId": SP_APP_ID})
            return json_response(404, {"error": {"code": "Request_ResourceNotFound", "message": "not found"}})
        m = re.fullmatch(r"/v1\.0/serviceprincipals/([^/]+)/transitivememberof", low)
        if m:
            page = int(req.arg("page", "0") or 0)
            items = [
                [
                    {"@odata.type": "#microsoft.graph.group", "id": GROUPS[0]},
                    {"@odata.type": "#microsoft.graph.directoryRole", "id": "role-not-a-group"},
                ],
                [{"@odata.type": "#microsoft.graph.group", "id": GROUPS[1]}],
            ]
            body: dict[str, Any] = {"value": items[page]}
            if page == 0:
                body["@odata.nextLink"] = f"{self.url}{req.path}?$select=id&page=1"
            return json_response(200, body)
        return json_response(404, {"error": {"code": "Request_ResourceNotFound", "message": "not found"}})


class SyntheticEstate:
    """An ARM + Graph stand-in for an estate of ``subs`` subscriptions, each with ``registries``
    ACRs and ``clusters`` AKS clusters (bodies shaped like the samples), to measure how the
    number of requests grows. Every kubelet identity holds AcrPull on the first registry only."""

    def __init__(self, workdir: Path, subs: int, registries: int, clusters: int) -> None:
        self.pki = Pki(workdir)
        self.ca_bundle = str(self.pki.ca_bundle)
        self.subs = [f"{n:08d}-0000-4000-8000-000000000000" for n in range(1, subs + 1)]
        self.registries = registries
        self.clusters = clusters
        self.requests = 0
        self._lock = threading.Lock()
        self.server = Server(self.handle, cert=self.pki.issue(["localhost"]), name="arm-estate")

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> SyntheticEstate:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @staticmethod
    def kubelet(sub: str, n: int) -> str:
        return f"{sub[:8]}-{n:04d}-4000-8000-00000000beef"

    def handle(self, req: Request) -> Response:
        with self._lock:
            self.requests += 1
        low = req.path.lower()
        if low.startswith("/v1.0/"):
            return json_response(200, {"value": []})
        if low == "/subscriptions":
            return json_response(
                200,
                {
                    "value": [
                        {
                            "id": f"/subscriptions/{s}",
                            "subscriptionId": s,
                            "tenantId": TENANT,
                            "state": "Enabled",
                        }
                        for s in self.subs
                    ]
                },
            )
        sub = low.split("/")[2]
        rg = f"/subscriptions/{sub}/resourceGroups/rg"
        if low.endswith("/managedclusters"):
            out = []
            for n in range(self.clusters):
                body = cluster_body()
                body["name"] = f"aks{n}"
                body["id"] = f"{rg}/providers/Microsoft.ContainerService/managedClusters/aks{n}"
                body["properties"]["identityProfile"]["kubeletidentity"]["objectId"] = self.kubelet(sub, n)
                out.append(body)
            return json_response(200, {"value": out})
        if low.endswith("/registries"):
            out = []
            for n in range(self.registries):
                body = copy.deepcopy(sample("acr.registries.get.2025-11-01.json"))
                body["name"] = f"acr{sub[:8]}x{n}"
                body["id"] = f"{rg}/providers/Microsoft.ContainerRegistry/registries/{body['name']}"
                body["properties"]["loginServer"] = f"{body['name']}.azurecr.io"
                out.append(body)
            return json_response(200, {"value": out})
        if low.endswith("/roleassignments"):
            first = f"{rg}/providers/Microsoft.ContainerRegistry/registries/acr{sub[:8]}x0"
            return json_response(
                200,
                {
                    "value": [
                        {
                            "id": f"{first}/providers/Microsoft.Authorization/roleAssignments/{n:08d}-0000-0000-0000-000000000000",
                            "name": f"{n:08d}",
                            "type": "Microsoft.Authorization/roleAssignments",
                            "properties": {
                                "scope": first,
                                "principalId": self.kubelet(sub, n),
                                "principalType": "ServicePrincipal",
                                "roleDefinitionId": f"/subscriptions/{sub}/providers/Microsoft.Authorization/"
                                "roleDefinitions/7f951dda-4ed3-4680-a7ca-43fe172d538d",
                            },
                        }
                        for n in range(self.clusters)
                    ]
                },
            )
        if low.endswith("/roledefinitions"):
            return json_response(200, {"value": role_definitions()})
        return json_response(404, sample("arm.error.404-ResourceNotFound.observed.json"))
