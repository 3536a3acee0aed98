"""The sandbox's Azure Resource Manager (and the Microsoft Graph routes pullwatch reads).

An HTTPS ``Server`` shaped like the real REST API for what pullwatch reads: subscriptions, AKS
managed clusters (+ ``listClusterUserCredential``), ACR registries (+ replications, private
endpoint connections), public IP addresses, private endpoints, role assignments (with
``$filter=atScope()`` / ``assignedTo('…')`` / ``principalId eq '…'`` and ``nextLink`` paging) and role
definitions. Every call needs an Entra bearer token for ARM and is authorized by the sandbox's own
RBAC model, answering ARM's real ``AuthorizationFailed`` / ``ResourceNotFound`` envelopes. Any
api-version is accepted: the SDKs send their own.

Microsoft Graph lives on the same server under ``/v1.0/`` (``servicePrincipals(appId='…')`` and
``servicePrincipals/{id}/transitiveMemberOf``), with Graph's audience and error envelopes.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlencode

from sandbox.entra import Entra, EntraTokenError
from sandbox.httpserver import Request, Response, Server, json_response
from sandbox.metrics import RequestLog
from sandbox.pki import Pki
from sandbox.rbac import MANAGEMENT_GROUP_PREFIX, Rbac, ScopedAssignment, abac_condition
from sandbox.roles import BUILTIN_ROLES, RoleDefinition
from sandbox.world import Cluster, Registry, RoleAssignment, World

ASSIGNMENT_NAMESPACE = uuid.UUID("3f6a2c1e-9d7b-4e58-8c2a-5b1d0e7f4a93")
ARM_AUDIENCES = ("https://management.azure.com", "https://management.core.windows.net")
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"  # Microsoft Graph's application ID, an audience too
PAGE_SIZE = 20
GRAPH_PAGE_SIZE = 5
CREATED = "2026-01-15T09:30:00.0000000Z"
APP_RESOURCE_GROUP = "rg-pullwatch"

_AUTHZ = re.compile(
    r"^(?P<scope>.*?)/providers/microsoft\.authorization/(?P<kind>roleassignments|roledefinitions)"
    r"(?:/(?P<name>[^/]+))?/?$",
    re.IGNORECASE,
)
_FILTER_ASSIGNED = re.compile(r"^assignedTo\('([^']+)'\)$", re.IGNORECASE)
_FILTER_PRINCIPAL = re.compile(r"^principalId\s+eq\s+'([^']+)'$", re.IGNORECASE)
_FILTER_ATSCOPE = re.compile(r"^atScope\(\)$", re.IGNORECASE)
_GRAPH_SP_BY_APPID = re.compile(r"^/v1\.0/servicePrincipals\(appId='([^']+)'\)$", re.IGNORECASE)
_GRAPH_MEMBER_OF = re.compile(
    r"^/v1\.0/servicePrincipals/([^/]+)/(transitiveMemberOf|memberOf)$", re.IGNORECASE
)
_GRAPH_SP = re.compile(r"^/v1\.0/servicePrincipals/([^/(]+)$", re.IGNORECASE)


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


@dataclass
class Caller:
    object_id: str
    tenant: str


def cluster_egress_ips(world: World, cluster: Cluster) -> list[str]:
    """The public IPs a cluster's nodes leave from (the world's, else ``20.50.<n>.10``)."""
    if cluster.egress_ips:
        return list(cluster.egress_ips)
    index = list(world.clusters).index(cluster.name) + 1 if cluster.name in world.clusters else 1
    return [f"20.50.{index}.10"]


def _stable(*parts: str) -> str:
    return str(uuid.uuid5(ASSIGNMENT_NAMESPACE, "|".join(parts)))


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


class Arm:
    def __init__(
        self,
        world: World,
        entra: Entra,
        rbac: Rbac,
        log: RequestLog,
        pki: Pki,
        *,
        kubeconfig_for: Callable[[str], str],
    ) -> None:
        self.world = world
        self.entra = entra
        self.rbac = rbac
        self.log = log
        self.pki = pki
        self.kubeconfig_for = kubeconfig_for
        self._server: Server | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Arm:
        cert = self.pki.issue(["management.azure.com", "graph.microsoft.com", "localhost"])
        self._server = Server(self._handle, cert=cert, name="arm").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "Arm is not started"
        return self._server.url

    @property
    def graph_url(self) -> str:
        return self.url

    # --- ids ----------------------------------------------------------------------------------

    def assignment_name(self, sa: ScopedAssignment) -> str:
        return _stable(sa.assignment.principal, sa.role.guid, sa.scope.lower())

    def assignment_id(self, assignment: RoleAssignment) -> str:
        """The ARM id of a world role assignment (as Event Grid events and the list API show it)."""
        scope = self.rbac.scope_id(assignment.scope)
        role = self.rbac.role(assignment.role)
        if role is None:
            raise KeyError(f"unknown role {assignment.role!r}")
        name = _stable(assignment.principal, role.guid, scope.lower())
        return f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"

    def node_resource_group(self, cluster: Cluster) -> str:
        return f"MC_{cluster.resource_group}_{cluster.name}_{cluster.location}"

    def public_ip_ids(self, cluster: Cluster) -> list[tuple[str, str]]:
        """(resource id, address) of each outbound public IP of a cluster."""
        out = []
        for ip in cluster_egress_ips(self.world, cluster):
            name = _stable("pip", cluster.name, ip)
            out.append(
                (
                    f"/subscriptions/{cluster.subscription}/resourceGroups/{self.node_resource_group(cluster)}"
                    f"/providers/Microsoft.Network/publicIPAddresses/{name}",
                    ip,
                )
            )
        return out

    def vnet_id(self, vnet: str) -> str:
        for cluster in self.world.clusters.values():
            if cluster.vnet == vnet:
                return (
                    f"/subscriptions/{cluster.subscription}/resourceGroups/{cluster.resource_group}"
                    f"/providers/Microsoft.Network/virtualNetworks/{vnet}"
                )
        return (
            f"/subscriptions/{self.world.subscriptions[0]}/resourceGroups/rg-network"
            f"/providers/Microsoft.Network/virtualNetworks/{vnet}"
        )

    def private_endpoint_id(self, reg: Registry, vnet: str) -> str:
        return (
            f"/subscriptions/{reg.subscription}/resourceGroups/{reg.resource_group}"
            f"/providers/Microsoft.Network/privateEndpoints/pe-{reg.name.lower()}-{vnet}"
        )

    def kubelet_identity_resource_id(self, cluster: Cluster) -> str:
        return (
            f"/subscriptions/{cluster.subscription}/resourcegroups/{self.node_resource_group(cluster)}"
            f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{cluster.name}-agentpool"
        )

    # --- resource bodies ----------------------------------------------------------------------

    def cluster_body(self, c: Cluster) -> dict[str, Any]:
        dns_prefix = f"{c.name}-dns"
        fqdn = f"{dns_prefix}-{_short_hash(c.name)}.hcp.{c.location}.azmk8s.io"
        pools = []
        for i, pool in enumerate(c.node_pools):
            windows = pool.os == "windows"
            body: dict[str, Any] = {
                "name": pool.name,
                "count": pool.count,
                "vmSize": "Standard_D4ps_v5" if pool.arch == "arm64" else "Standard_D4s_v5",
                "osDiskSizeGB": 128,
                "osDiskType": "Managed",
                "kubeletDiskType": "OS",
                "maxPods": 110,
                "type": "VirtualMachineScaleSets",
                "enableAutoScaling": False,
                "provisioningState": "Succeeded",
                "powerState": {"code": "Running"},
                "orchestratorVersion": c.kubernetes_version,
                "currentOrchestratorVersion": c.kubernetes_version,
                "enableNodePublicIP": False,
                "mode": "System" if i == 0 else "User",
                "osType": "Windows" if windows else "Linux",
                "osSKU": "Windows2022" if windows else "Ubuntu",
                "nodeImageVersion": (
                    "AKSWindows-2022-containerd-20348.3932.250705"
                    if windows
                    else (
                        "AKSUbuntu-2204gen2arm64containerd-202507.21.0"
                        if pool.arch == "arm64"
                        else "AKSUbuntu-2204gen2containerd-202507.21.0"
                    )
                ),
                "upgradeSettings": {"maxSurge": "10%"},
                "enableFIPS": False,
            }
            if c.vnet:
                body["vnetSubnetID"] = f"{self.vnet_id(c.vnet)}/subnets/snet-{c.name}-nodes"
            pools.append(body)
        props: dict[str, Any] = {
            "provisioningState": "Succeeded",
            "powerState": {"code": "Running"},
            "kubernetesVersion": c.kubernetes_version,
            "currentKubernetesVersion": c.kubernetes_version,
            "dnsPrefix": dns_prefix,
            "fqdn": fqdn,
            "azurePortalFQDN": fqdn.replace(".hcp.", ".portal.hcp."),
            "agentPoolProfiles": pools,
            "nodeResourceGroup": self.node_resource_group(c),
            "enableRBAC": True,
            "supportPlan": "KubernetesOfficial",
            "networkProfile": {
                "networkPlugin": "azure",
                "networkPluginMode": "overlay",
                "networkPolicy": "none",
                "podCidr": "10.244.0.0/16",
                "serviceCidr": "10.0.0.0/16",
                "dnsServiceIP": "10.0.0.10",
                "outboundType": "loadBalancer",
                "loadBalancerSku": "standard",
                "loadBalancerProfile": {
                    "managedOutboundIPs": {"count": len(cluster_egress_ips(self.world, c))},
                    "effectiveOutboundIPs": [{"id": pid} for pid, _ in self.public_ip_ids(c)],
                    "backendPoolType": "nodeIPConfiguration",
                },
                "podCidrs": ["10.244.0.0/16"],
                "serviceCidrs": ["10.0.0.0/16"],
                "ipFamilies": ["IPv4"],
            },
            "maxAgentPools": 100,
            "apiServerAccessProfile": {"enablePrivateCluster": c.private},
            "disableLocalAccounts": False,
            "oidcIssuerProfile": {"enabled": False},
        }
        if c.private:
            props["apiServerAccessProfile"]["privateDNSZone"] = "system"
            props["privateFQDN"] = f"{dns_prefix}-{_short_hash(c.name)}.privatelink.{c.location}.azmk8s.io"
        body2: dict[str, Any] = {
            "id": c.resource_id,
            "location": c.location,
            "name": c.name,
            "tags": dict(c.tags),
            "type": "Microsoft.ContainerService/ManagedClusters",
            "sku": {"name": "Base", "tier": "Free"},
        }
        if c.identity == "managed":
            body2["identity"] = {
                "type": "SystemAssigned",
                "principalId": _stable("controlplane", c.name),
                "tenantId": self.world.tenant,
            }
            props["servicePrincipalProfile"] = {"clientId": "msi"}
            props["identityProfile"] = {
                "kubeletidentity": {
                    "resourceId": self.kubelet_identity_resource_id(c),
                    "clientId": self.entra.client_id(f"kubelet:{c.name}"),
                    "objectId": self.world.principal_id(f"kubelet:{c.name}"),
                }
            }
        else:
            props["servicePrincipalProfile"] = {"clientId": self.entra.client_id(f"sp:{c.name}")}
        if c.aad:
            props["aadProfile"] = {
                "managed": True,
                "enableAzureRBAC": False,
                "adminGroupObjectIDs": [],
                "tenantID": self.world.tenant,
            }
        body2["properties"] = props
        return body2

    def registry_body(self, r: Registry) -> dict[str, Any]:
        return {
            "id": r.resource_id,
            "name": r.name,
            "type": "Microsoft.ContainerRegistry/registries",
            "location": r.location,
            "tags": {},
            "systemData": {"createdBy": "sandbox", "createdByType": "User", "createdAt": CREATED[:-9] + "Z"},
            "sku": {"name": r.sku, "tier": r.sku},
            "properties": {
                "loginServer": r.host,
                "creationDate": CREATED[:-9] + "Z",
                "provisioningState": "Succeeded",
                "adminUserEnabled": False,
                "networkRuleSet": {
                    "defaultAction": r.default_action,
                    "ipRules": [{"action": "Allow", "value": v} for v in r.ip_rules],
                },
                "policies": {
                    "quarantinePolicy": {"status": "disabled"},
                    "trustPolicy": {"type": "Notary", "status": "disabled"},
                    "retentionPolicy": {
                        "days": 7,
                        "lastUpdatedTime": "2026-01-15T09:40:12.8506835+00:00",
                        "status": "disabled",
                    },
                    "exportPolicy": {"status": "enabled"},
                    "azureADAuthenticationAsArmPolicy": {
                        "status": "enabled" if r.authentication_as_arm else "disabled"
                    },
                },
                "encryption": {"status": "disabled"},
                "status": None,
                "dataEndpointEnabled": False,
                "dataEndpointHostNames": [],
                "privateEndpointConnections": self.private_endpoint_connections(r),
                "publicNetworkAccess": r.public_network_access,
                "networkRuleBypassOptions": "AzureServices",
                "networkRuleBypassAllowedForTasks": False,
                "zoneRedundancy": "Disabled",
                "anonymousPullEnabled": r.anonymous_pull_enabled,
                "roleAssignmentMode": r.role_assignment_mode,
            },
        }

    def private_endpoint_connections(self, r: Registry) -> list[dict[str, Any]]:
        out = []
        for vnet in r.private_endpoints:
            name = f"pe-{r.name.lower()}-{vnet}.{_stable('pec', r.name, vnet)}"
            out.append(
                {
                    "id": f"{r.resource_id}/privateEndpointConnections/{name}",
                    "name": name,
                    "type": "Microsoft.ContainerRegistry/registries/privateEndpointConnections",
                    "properties": {
                        "provisioningState": "Succeeded",
                        "privateEndpoint": {"id": self.private_endpoint_id(r, vnet)},
                        "privateLinkServiceConnectionState": {
                            "status": "Approved",
                            "description": "Auto-Approved",
                            "actionsRequired": "None",
                        },
                    },
                }
            )
        return out

    def replications(self, r: Registry) -> list[dict[str, Any]]:
        regions = [r.location, *[x for x in r.replications if x != r.location]] if r.replications else []
        return [
            {
                "id": f"{r.resource_id}/replications/{region}",
                "name": region,
                "type": "Microsoft.ContainerRegistry/registries/replications",
                "location": region,
                "tags": {},
                "properties": {
                    "provisioningState": "Succeeded",
                    "status": {"displayStatus": "Ready", "timestamp": "2026-01-15T09:35:00Z"},
                    "regionEndpointEnabled": True,
                    "zoneRedundancy": "Disabled",
                },
            }
            for region in regions
        ]

    def role_definition_body(self, role: RoleDefinition, prefix: str) -> dict[str, Any]:
        scopes = (
            list(role.assignable_scopes)
            if role.builtin
            else [f"/subscriptions/{s}" for s in self.world.subscriptions]
        )
        return {
            "properties": {
                "roleName": role.name,
                "type": "BuiltInRole" if role.builtin else "CustomRole",
                "description": role.description,
                "assignableScopes": scopes,
                "permissions": [
                    {
                        "actions": list(role.actions),
                        "notActions": list(role.not_actions),
                        "dataActions": list(role.data_actions),
                        "notDataActions": list(role.not_data_actions),
                    }
                ],
                "createdOn": "2018-02-01T10:20:00.0000000Z",
                "updatedOn": "2025-06-30T12:00:00.0000000Z",
                "createdBy": None,
                "updatedBy": None,
            },
            "id": f"{prefix}/providers/Microsoft.Authorization/roleDefinitions/{role.guid}",
            "type": "Microsoft.Authorization/roleDefinitions",
            "name": role.guid,
        }

    def assignment_body(self, sa: ScopedAssignment, prefix: str) -> dict[str, Any]:
        a = sa.assignment
        name = self.assignment_name(sa)
        principal_type = "Group" if a.principal.startswith("group:") else "ServicePrincipal"
        condition = abac_condition(a.repositories) if a.repositories else None
        return {
            "properties": {
                "roleDefinitionId": f"{prefix}/providers/Microsoft.Authorization/roleDefinitions/{sa.role.guid}",
                "principalId": self.world.principal_id(a.principal),
                "principalType": principal_type,
                "scope": sa.scope,
                "condition": condition,
                "conditionVersion": "2.0" if condition else None,
                "createdOn": CREATED,
                "updatedOn": CREATED,
                "createdBy": _stable("creator"),
                "updatedBy": _stable("creator"),
                "delegatedManagedIdentityResourceId": None,
                "description": None,
            },
            "id": f"{sa.scope}/providers/Microsoft.Authorization/roleAssignments/{name}",
            "type": "Microsoft.Authorization/roleAssignments",
            "name": name,
        }

    # --- HTTP plumbing ------------------------------------------------------------------------

    def _handle(self, req: Request) -> Response:
        path = unquote(req.path)
        if path.lower().startswith("/v1.0/"):
            self.log.count("graph")
            return self._graph(req, path)
        self.log.count("arm")
        headers = {"x-ms-request-id": str(uuid.uuid4()), "x-ms-correlation-request-id": str(uuid.uuid4())}
        try:
            status, body = self._arm(req, path)
        except ArmError as err:
            return json_response(
                err.status, {"error": {"code": err.code, "message": err.message}}, {**headers, **err.headers}
            )
        return json_response(status, body, headers)

    def _arm_audiences(self) -> tuple[str, ...]:
        """ARM accepts tokens for its own cloud's endpoint (and, in Azure, the classic one)."""
        own = self.world.azure.arm_audience
        return ARM_AUDIENCES if own == ARM_AUDIENCES[0] else (own,)

    def _caller(self, req: Request, audiences: tuple[str, ...]) -> Caller:
        auth = req.header("Authorization") or ""
        if not auth:
            raise ArmError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
                self._challenge(),
            )
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ArmError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is provided in an invalid format.",
                self._challenge(),
            )
        try:
            claims = self.entra.verify(token.strip())
        except EntraTokenError as exc:
            if "Expired" in str(exc):
                now = datetime.now(UTC).strftime("%m/%d/%Y %H:%M:%S")
                raise ArmError(
                    401,
                    "ExpiredAuthenticationToken",
                    f"The access token expiry UTC time is earlier than current UTC time '{now}'.",
                    self._challenge(),
                ) from None
            raise ArmError(
                401, "InvalidAuthenticationToken", "The access token is invalid.", self._challenge()
            ) from None
        aud = str(claims.get("aud", "")).rstrip("/")
        if aud not in audiences:
            raise ArmError(
                401,
                "InvalidAuthenticationTokenAudience",
                f"The access token has been obtained for wrong audience or resource '{aud}'. It should "
                "exactly match with one of the allowed audiences "
                + ",".join(f"'{a}/','{a}'" for a in audiences)
                + ".",
                self._challenge(),
            )
        if str(claims.get("tid", "")).lower() != self.world.tenant.lower():
            raise ArmError(
                401,
                "InvalidAuthenticationTokenTenant",
                f"The access token is from the wrong issuer '{claims.get('iss')}'. It must match the "
                f"tenant 'https://sts.windows.net/{self.world.tenant}/' associated with this "
                "subscription. Please use the authority (URL) "
                f"'https://login.windows.net/{self.world.tenant}' to get the token.",
                self._challenge(),
            )
        return Caller(object_id=str(claims["oid"]), tenant=str(claims["tid"]))

    def _challenge(self) -> dict[str, str]:
        return {
            "WWW-Authenticate": f'Bearer authorization_uri="https://login.windows.net/{self.world.tenant}", '
            'error="invalid_token", error_description="The authentication failed."'
        }

    def _authorize(self, caller: Caller, action: str, scope: str) -> None:
        if not self.rbac.can(caller.object_id, action, scope):
            raise ArmError(
                403,
                "AuthorizationFailed",
                f"The client '{caller.object_id}' with object id '{caller.object_id}' does not have "
                f"authorization to perform action '{action}' over scope '{scope}' or the scope is "
                "invalid. If access was recently granted, please refresh your credentials.",
            )

    def _subscription(self, sub: str) -> str:
        for s in self.world.subscriptions:
            if s.lower() == sub.lower():
                return s
        raise ArmError(404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found.")

    def _resource_groups(self, sub: str) -> set[str]:
        groups = {
            r.resource_group.lower()
            for r in self.world.registries.values()
            if r.is_acr and r.subscription.lower() == sub.lower()
        }
        for c in self.world.clusters.values():
            if c.subscription.lower() == sub.lower():
                groups |= {c.resource_group.lower(), self.node_resource_group(c).lower()}
        for sa in self.rbac.assignments():
            m = re.match(r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)", sa.scope, re.IGNORECASE)
            if m and m.group(1).lower() == sub.lower():
                groups.add(m.group(2).lower())
        return groups

    def _check_group(self, sub: str, rg: str) -> None:
        if rg.lower() not in self._resource_groups(sub):
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")

    @staticmethod
    def _not_found(type_name: str, name: str, rg: str) -> ArmError:
        return ArmError(
            404,
            "ResourceNotFound",
            f"The Resource '{type_name}/{name}' under resource group '{rg}' was not found. For more "
            "details please go to https://aka.ms/ARMResourceNotFoundFix",
        )

    def _page(self, req: Request, items: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            start = int(req.arg("$skiptoken") or 0)
        except ValueError:
            raise ArmError(400, "InvalidSkipToken", "The skip token is not valid.") from None
        page = items[start : start + PAGE_SIZE]
        body: dict[str, Any] = {"value": page}
        if start + PAGE_SIZE < len(items):
            query = {k: v[0] for k, v in req.query.items() if k != "$skiptoken"}
            query["$skiptoken"] = str(start + PAGE_SIZE)
            host = req.header("Host") or self.url.split("://", 1)[1]
            body["nextLink"] = f"https://{host}{req.path}?{urlencode(query, quote_via=quote)}"
        return body

    # --- ARM routes ---------------------------------------------------------------------------

    def _arm(self, req: Request, path: str) -> tuple[int, Any]:
        if not req.arg("api-version"):
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        caller = self._caller(req, self._arm_audiences())
        path = path.rstrip("/") or "/"
        m = _AUTHZ.match(path)
        if m:
            if req.method != "GET":
                raise ArmError(405, "MethodNotAllowed", "The sandbox Resource Manager is read-only.")
            scope = m.group("scope")
            if m.group("kind").lower() == "roleassignments":
                return self._role_assignments(req, caller, scope, m.group("name"))
            return self._role_definitions(req, caller, scope, m.group("name"))
        seg = [s for s in path.split("/") if s]
        low = [s.lower() for s in seg]
        if low == ["subscriptions"]:
            return 200, self._list_subscriptions(caller)
        if len(seg) < 2 or low[0] != "subscriptions":
            raise ArmError(404, "InvalidResourceType", f"The resource path '{path}' is not supported.")
        sub = self._subscription(seg[1])
        sub_id = f"/subscriptions/{sub}"
        if len(seg) == 2:
            self._authorize(caller, "Microsoft.Resources/subscriptions/read", sub_id)
            return 200, self._subscription_body(sub)
        if low[2] == "providers" and len(seg) == 5:
            return self._list_resources(req, caller, sub, None, f"{seg[3]}/{seg[4]}")
        if low[2] == "resourcegroups" and len(seg) >= 4:
            rg = seg[3]
            rg_id = f"{sub_id}/resourceGroups/{rg}"
            if len(seg) == 4:
                self._authorize(caller, "Microsoft.Resources/subscriptions/resourceGroups/read", rg_id)
                self._check_group(sub, rg)
                return 200, {
                    "id": rg_id,
                    "name": rg,
                    "type": "Microsoft.Resources/resourceGroups",
                    "location": "westeurope",
                    "properties": {"provisioningState": "Succeeded"},
                }
            if len(seg) == 7 and low[4] == "providers":
                return self._list_resources(req, caller, sub, rg, f"{seg[5]}/{seg[6]}")
            if len(seg) >= 8 and low[4] == "providers":
                return self._resource(req, caller, sub, rg, seg[5], seg[6], seg[7], seg[8:])
        raise ArmError(404, "InvalidResourceType", f"The resource path '{path}' is not supported.")

    def subscription_tenant(self, sub: str) -> str:
        """A subscription that holds only registries of one other tenant (and no cluster) belongs to
        that tenant: the app sees it delegated to its own tenant, as Azure Lighthouse shows it."""
        if any(c.subscription.lower() == sub.lower() for c in self.world.clusters.values()):
            return self.world.tenant
        tenants = {
            r.tenant.lower()
            for r in self.world.registries.values()
            if r.is_acr and r.subscription.lower() == sub.lower()
        }
        if len(tenants) == 1 and self.world.tenant.lower() not in tenants:
            return next(
                r.tenant
                for r in self.world.registries.values()
                if r.is_acr and r.subscription.lower() == sub.lower()
            )
        return self.world.tenant

    def _subscription_body(self, sub: str) -> dict[str, Any]:
        tenant = self.subscription_tenant(sub)
        return {
            "id": f"/subscriptions/{sub}",
            "authorizationSource": "RoleBased",
            "managedByTenants": [] if tenant == self.world.tenant else [{"tenantId": self.world.tenant}],
            "subscriptionId": sub,
            "tenantId": tenant,
            "displayName": f"sandbox-{sub[:8]}",
            "state": "Enabled",
            "subscriptionPolicies": {
                "locationPlacementId": "Public_2014-09-01",
                "quotaId": "PayAsYouGo_2014-09-01",
                "spendingLimit": "Off",
            },
        }

    def _list_subscriptions(self, caller: Caller) -> dict[str, Any]:
        principal = self.rbac.principal_of(caller.object_id)
        held = self.rbac.assignments_of(principal) if principal else []
        subs = [
            s
            for s in self.world.subscriptions
            if any(self.rbac.covers(sa.scope, f"/subscriptions/{s}") for sa in held)
        ]
        return {
            "value": [self._subscription_body(s) for s in subs],
            "count": {"type": "Total", "value": len(subs)},
        }

    def _clusters(self, sub: str, rg: str | None) -> list[Cluster]:
        return [
            c
            for c in self.world.clusters.values()
            if c.subscription.lower() == sub.lower()
            and (rg is None or c.resource_group.lower() == rg.lower())
        ]

    def _registries(self, sub: str, rg: str | None) -> list[Registry]:
        return [
            r
            for r in self.world.registries.values()
            if r.is_acr
            # another tenant's registry is visible only in a subscription of that tenant delegated to ours
            and r.tenant.lower() == self.subscription_tenant(r.subscription).lower()
            and r.subscription.lower() == sub.lower()
            and (rg is None or r.resource_group.lower() == rg.lower())
        ]

    def _list_resources(
        self, req: Request, caller: Caller, sub: str, rg: str | None, rtype: str
    ) -> tuple[int, Any]:
        scope = f"/subscriptions/{sub}" + (f"/resourceGroups/{rg}" if rg else "")
        kind = rtype.lower()
        if kind == "microsoft.containerservice/managedclusters":
            self._authorize(caller, "Microsoft.ContainerService/managedClusters/read", scope)
            if rg:
                self._check_group(sub, rg)
            return 200, self._page(req, [self.cluster_body(c) for c in self._clusters(sub, rg)])
        if kind == "microsoft.containerregistry/registries":
            self._authorize(caller, "Microsoft.ContainerRegistry/registries/read", scope)
            if rg:
                self._check_group(sub, rg)
            return 200, self._page(req, [self.registry_body(r) for r in self._registries(sub, rg)])
        raise ArmError(400, "InvalidResourceType", f"The resource type '{rtype}' is not supported here.")

    def _resource(
        self,
        req: Request,
        caller: Caller,
        sub: str,
        rg: str,
        namespace: str,
        rtype: str,
        name: str,
        rest: list[str],
    ) -> tuple[int, Any]:
        kind = f"{namespace}/{rtype}".lower()
        rid = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{namespace}/{rtype}/{name}"
        child = [s.lower() for s in rest]
        if kind == "microsoft.containerservice/managedclusters":
            if child == ["listclusterusercredential"]:
                if req.method != "POST":
                    raise ArmError(405, "MethodNotAllowed", "listClusterUserCredential is a POST action.")
                self._authorize(
                    caller, "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action", rid
                )
                cluster = self._find_cluster(sub, rg, name)
                kubeconfig = self.kubeconfig_for(cluster.name)
                value = base64.b64encode(kubeconfig.encode()).decode()
                return 200, {"kubeconfigs": [{"name": "clusterUser", "value": value}]}
            if child:
                raise ArmError(
                    404,
                    "InvalidResourceType",
                    f"The resource path '{rid}/{'/'.join(rest)}' is not supported.",
                )
            self._authorize(caller, "Microsoft.ContainerService/managedClusters/read", rid)
            return 200, self.cluster_body(self._find_cluster(sub, rg, name))
        if kind == "microsoft.containerregistry/registries":
            if not child:
                self._authorize(caller, "Microsoft.ContainerRegistry/registries/read", rid)
                return 200, self.registry_body(self._find_registry(sub, rg, name))
            if child == ["replications"]:
                self._authorize(caller, "Microsoft.ContainerRegistry/registries/replications/read", rid)
                return 200, self._page(req, self.replications(self._find_registry(sub, rg, name)))
            if child[0] == "privateendpointconnections" and len(child) <= 2:
                self._authorize(
                    caller, "Microsoft.ContainerRegistry/registries/privateEndpointConnections/read", rid
                )
                conns = self.private_endpoint_connections(self._find_registry(sub, rg, name))
                if len(child) == 1:
                    return 200, self._page(req, conns)
                for conn in conns:
                    if conn["name"].lower() == child[1]:
                        return 200, conn
                raise self._not_found(
                    "Microsoft.ContainerRegistry/registries/privateEndpointConnections",
                    f"{name}/{rest[1]}",
                    rg,
                )
            raise ArmError(404, "InvalidResourceType", "The resource path is not supported.")
        if kind == "microsoft.network/publicipaddresses" and not child:
            self._authorize(caller, "Microsoft.Network/publicIPAddresses/read", rid)
            self._check_group(sub, rg)
            for c in self._clusters(sub, None):
                for pid, ip in self.public_ip_ids(c):
                    if pid.lower() == rid.lower():
                        return 200, {
                            "name": pid.rsplit("/", 1)[1],
                            "id": pid,
                            "location": c.location,
                            "type": "Microsoft.Network/publicIPAddresses",
                            "tags": {"aks-managed-type": "aks-slb-managed-outbound-ip"},
                            "sku": {"name": "Standard", "tier": "Regional"},
                            "zones": ["1", "2", "3"],
                            "properties": {
                                "provisioningState": "Succeeded",
                                "ipAddress": ip,
                                "publicIPAddressVersion": "IPv4",
                                "publicIPAllocationMethod": "Static",
                                "idleTimeoutInMinutes": 4,
                                "ipTags": [],
                            },
                        }
            raise self._not_found("Microsoft.Network/publicIPAddresses", name, rg)
        if kind == "microsoft.network/privateendpoints" and not child:
            self._authorize(caller, "Microsoft.Network/privateEndpoints/read", rid)
            self._check_group(sub, rg)
            for reg in self.world.registries.values():
                for i, vnet in enumerate(reg.private_endpoints):
                    pe_id = self.private_endpoint_id(reg, vnet)
                    if reg.is_acr and pe_id.lower() == rid.lower():
                        return 200, self._private_endpoint_body(reg, vnet, pe_id, i)
            raise self._not_found("Microsoft.Network/privateEndpoints", name, rg)
        raise ArmError(
            400,
            "InvalidResourceType",
            f"The resource type '{namespace}/{rtype}' could not be found in the namespace "
            f"'{namespace}' for api version '{req.arg('api-version')}'.",
        )

    def _private_endpoint_body(self, reg: Registry, vnet: str, pe_id: str, index: int) -> dict[str, Any]:
        subnet = f"{self.vnet_id(vnet)}/subnets/snet-private-endpoints"
        ip = f"10.{200 + index % 50}.0.{4 + index}"
        return {
            "name": pe_id.rsplit("/", 1)[1],
            "id": pe_id,
            "type": "Microsoft.Network/privateEndpoints",
            "location": reg.location,
            "tags": {},
            "properties": {
                "provisioningState": "Succeeded",
                "subnet": {"id": subnet},
                "privateLinkServiceConnections": [
                    {
                        "name": pe_id.rsplit("/", 1)[1],
                        "id": f"{pe_id}/privateLinkServiceConnections/registry",
                        "properties": {
                            "provisioningState": "Succeeded",
                            "privateLinkServiceId": reg.resource_id,
                            "groupIds": ["registry"],
                            "privateLinkServiceConnectionState": {
                                "status": "Approved",
                                "description": "Auto-Approved",
                                "actionsRequired": "None",
                            },
                        },
                    }
                ],
                "manualPrivateLinkServiceConnections": [],
                "customDnsConfigs": [
                    {"fqdn": reg.host, "ipAddresses": [ip]},
                    {"fqdn": f"{reg.name.lower()}.{reg.location}.data.azurecr.io", "ipAddresses": [ip]},
                ],
                "networkInterfaces": [
                    {
                        "id": f"{pe_id.rsplit('/providers/', 1)[0]}/providers/"
                        f"Microsoft.Network/networkInterfaces/{pe_id.rsplit('/', 1)[1]}.nic"
                    }
                ],
            },
        }

    def _find_cluster(self, sub: str, rg: str, name: str) -> Cluster:
        self._check_group(sub, rg)
        for c in self._clusters(sub, rg):
            if c.name.lower() == name.lower():
                return c
        raise self._not_found("Microsoft.ContainerService/managedClusters", name, rg)

    def _find_registry(self, sub: str, rg: str, name: str) -> Registry:
        self._check_group(sub, rg)
        for r in self._registries(sub, rg):
            if r.name.lower() == name.lower():
                return r
        raise self._not_found("Microsoft.ContainerRegistry/registries", name, rg)

    # --- authorization routes -----------------------------------------------------------------

    def _scope_prefix(self, scope: str) -> str:
        """The prefix role definition ids carry when listed at ``scope`` (its subscription, if any)."""
        m = re.match(r"^/subscriptions/([^/]+)", scope, re.IGNORECASE)
        return f"/subscriptions/{m.group(1)}" if m else ""

    def _check_scope(self, scope: str) -> str:
        """Validate a request scope; returns it normalized (leading slash, no trailing one)."""
        scope = "/" + scope.strip("/") if scope.strip("/") else ""
        if not scope:
            return scope
        low = scope.lower()
        if low.startswith(MANAGEMENT_GROUP_PREFIX.lower()):
            return scope
        m = re.match(
            r"^/subscriptions/([^/]+)(?:/resourceGroups/([^/]+)(/providers/.+)?)?$", scope, re.IGNORECASE
        )
        if not m:
            raise ArmError(400, "InvalidScope", f"The scope '{scope}' is not valid.")
        self._subscription(m.group(1))
        if m.group(2):
            self._check_group(m.group(1), m.group(2))
        if m.group(3):
            known = [r.resource_id.lower() for r in self.world.registries.values() if r.is_acr]
            known += [c.resource_id.lower() for c in self.world.clusters.values()]
            if scope.lower() not in known:
                tail = m.group(3).split("/")
                raise self._not_found("/".join(tail[2:4]), tail[-1], m.group(2))
        return scope

    def _parse_filter(self, text: str | None) -> tuple[bool, str | None, str | None]:
        """(atScope, assignedTo object id, principalId object id) from a $filter."""
        at_scope, assigned, principal = False, None, None
        if not text:
            return at_scope, assigned, principal
        for clause in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
            clause = clause.strip()
            if _FILTER_ATSCOPE.match(clause):
                at_scope = True
            elif m := _FILTER_ASSIGNED.match(clause):
                assigned = m.group(1).lower()
            elif m := _FILTER_PRINCIPAL.match(clause):
                principal = m.group(1).lower()
            else:
                raise ArmError(
                    400,
                    "UnsupportedQuery",
                    f"The filter '{text}' is not supported. Supported filters "
                    "are either 'atScope()' or 'principalId eq {value} or "
                    "assignedTo('{value}')'.",
                )
        if assigned and principal:
            raise ArmError(400, "UnsupportedQuery", f"The filter '{text}' is not supported.")
        return at_scope, assigned, principal

    def _role_assignments(
        self, req: Request, caller: Caller, raw_scope: str, name: str | None
    ) -> tuple[int, Any]:
        scope = self._check_scope(raw_scope)
        if not scope:
            raise ArmError(400, "InvalidScope", "A role assignment scope is required.")
        self._authorize(caller, "Microsoft.Authorization/roleAssignments/read", scope)
        prefix = self._scope_prefix(scope)
        assignments = self.rbac.assignments()
        if name:
            for sa in assignments:
                if self.assignment_name(sa) == name.lower() and sa.scope.lower() == scope.lower():
                    return 200, self.assignment_body(sa, prefix or self._scope_prefix(sa.scope))
            raise ArmError(404, "RoleAssignmentNotFound", f"The role assignment '{name}' is not found.")
        at_scope, assigned, principal_id = self._parse_filter(req.arg("$filter"))
        holders: set[str] | None = None
        if assigned:
            who = self.rbac.principal_of(assigned)
            holders = {who, *self.rbac.groups_of(who)} if who else set()
        elif principal_id:
            who = self.rbac.principal_of(principal_id)
            holders = {who} if who else set()
        out = []
        for sa in assignments:
            above_or_at = self.rbac.covers(sa.scope, scope)
            below = self.rbac.covers(scope, sa.scope)
            if not (above_or_at or (below and not at_scope)):
                continue
            if holders is not None and sa.assignment.principal not in holders:
                continue
            out.append(self.assignment_body(sa, prefix or self._scope_prefix(sa.scope)))
        return 200, self._page(req, out)

    def _role_definitions(
        self, req: Request, caller: Caller, raw_scope: str, guid: str | None
    ) -> tuple[int, Any]:
        scope = self._check_scope(raw_scope)
        if scope:
            self._authorize(caller, "Microsoft.Authorization/roleDefinitions/read", scope)
        prefix = self._scope_prefix(scope)
        roles = [*BUILTIN_ROLES, *self.rbac.custom_roles()]
        if guid:
            for role in roles:
                if role.guid == guid.lower():
                    if not role.builtin and not prefix:
                        break
                    return 200, self.role_definition_body(role, prefix)
            raise ArmError(
                404,
                "RoleDefinitionDoesNotExist",
                f"The specified role definition with ID '{guid}' does not exist.",
            )
        text = (req.arg("$filter") or "").strip()
        if text:
            m = re.fullmatch(r"(type|roleName)\s+eq\s+'([^']*)'", text, re.IGNORECASE)
            if not m:
                raise ArmError(400, "UnsupportedQuery", f"The filter '{text}' is not supported.")
            if m.group(1).lower() == "type":
                want_builtin = m.group(2).lower() == "builtinrole"
                roles = [r for r in roles if r.builtin == want_builtin]
            else:
                roles = [r for r in roles if r.name.lower() == m.group(2).lower()]
        return 200, {"value": [self.role_definition_body(r, prefix) for r in roles]}

    # --- Microsoft Graph ----------------------------------------------------------------------

    def _graph_service_principal(self, object_id: str) -> str | None:
        """The service principal (or managed identity) Graph knows by this object id; None for a
        group, an unknown id, or a cluster app that was deleted."""
        principal = self.entra.principal_of(object_id)
        if principal is None or principal.startswith("group:") or self.entra.deleted(principal):
            return None
        return principal

    def _graph_not_found(self, object_id: str) -> Response:
        return self._graph_error(
            404,
            "Request_ResourceNotFound",
            f"Resource '{object_id}' does not exist or one of its queried reference-property objects are not present.",
        )

    def _graph_error(self, status: int, code: str, message: str) -> Response:
        return json_response(
            status,
            {
                "error": {
                    "code": code,
                    "message": message,
                    "innerError": {
                        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                        "request-id": str(uuid.uuid4()),
                        "client-request-id": str(uuid.uuid4()),
                    },
                }
            },
        )

    def _graph(self, req: Request, path: str) -> Response:
        try:
            caller = self._caller(req, (self.world.azure.graph_audience, GRAPH_APP_ID))
        except ArmError as err:
            code = "InvalidAuthenticationToken"
            message = (
                "Access token is empty." if "missing" in err.message else "Access token validation failure."
            )
            return self._graph_error(401, code, message)
        del caller  # application permissions (Application.Read.All) are assumed granted to the app
        if req.method != "GET":
            return self._graph_error(
                405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target."
            )
        if m := _GRAPH_SP_BY_APPID.match(path):
            principal = self.entra.principal_of_client(m.group(1))
            if principal is None or self.entra.deleted(principal):
                return self._graph_error(
                    404,
                    "Request_ResourceNotFound",
                    f"Resource 'servicePrincipals(appId='{m.group(1)}')' does not exist or one "
                    "of its queried reference-property objects are not present.",
                )
            return json_response(
                200,
                {
                    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#servicePrincipals/$entity",
                    **self._selected(req, self._sp_body(principal)),
                },
            )
        if m := _GRAPH_MEMBER_OF.match(path):
            principal = self._graph_service_principal(m.group(1))
            if principal is None:
                return self._graph_not_found(m.group(1))
            groups = (
                self.rbac.groups_of(principal)
                if m.group(2).lower() == "transitivememberof"
                else [f"group:{g}" for g, members in self.world.groups.items() if principal in members]
            )
            items: list[dict[str, Any]] = [
                {
                    "@odata.type": "#microsoft.graph.group",
                    "id": self.world.principal_id(g),
                    "displayName": g.split(":", 1)[1],
                    "securityEnabled": True,
                    "mailEnabled": False,
                    "groupTypes": [],
                    "description": None,
                }
                for g in groups
            ]
            return json_response(200, self._graph_page(req, path, [self._selected(req, i) for i in items]))
        if m := _GRAPH_SP.match(path):
            principal = self._graph_service_principal(m.group(1))
            if principal is None:
                return self._graph_not_found(m.group(1))
            return json_response(
                200,
                {
                    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#servicePrincipals/$entity",
                    **self._selected(req, self._sp_body(principal)),
                },
            )
        return self._graph_error(
            400, "BadRequest", f"Resource not found for the segment '{path.split('/')[-1]}'."
        )

    @staticmethod
    def _selected(req: Request, obj: dict[str, Any]) -> dict[str, Any]:
        """Graph's ``$select``: only the named properties (and the ``@odata.*`` annotations)."""
        select = req.arg("$select")
        if not select:
            return obj
        wanted = {name.strip().lower() for name in select.split(",") if name.strip()}
        return {k: v for k, v in obj.items() if k.startswith("@odata.") or k.lower() in wanted}

    def _sp_body(self, principal: str) -> dict[str, Any]:
        return {
            "id": self.world.principal_id(principal),
            "appId": self.entra.client_id(principal),
            "displayName": self.entra.display_name(principal),
            "accountEnabled": True,
            "servicePrincipalType": "Application" if principal.startswith("sp:") else "ManagedIdentity",
            "appOwnerOrganizationId": self.world.tenant if principal.startswith("sp:") else None,
        }

    def _graph_page(self, req: Request, path: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            top = max(1, min(999, int(req.arg("$top") or GRAPH_PAGE_SIZE)))
            start = int(req.arg("$skiptoken") or 0)
        except ValueError:
            top, start = GRAPH_PAGE_SIZE, 0
        body: dict[str, Any] = {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#directoryObjects",
            "value": items[start : start + top],
        }
        if start + top < len(items):
            query = {k: v[0] for k, v in req.query.items() if k != "$skiptoken"}
            query["$skiptoken"] = str(start + top)
            host = req.header("Host") or self.url.split("://", 1)[1]
            body["@odata.nextLink"] = f"https://{host}{req.path}?{urlencode(query, quote_via=quote)}"
        return body
