"""Resource ids and bodies as ARM returns them: subscriptions, managed clusters, registries (with
replications and private endpoint connections), public IPs, private endpoints, role definitions and
role assignments.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from sandbox.rbac import ScopedAssignment, abac_condition
from sandbox.roles import RoleDefinition
from sandbox.world import Cluster, Registry, RoleAssignment, World

ASSIGNMENT_NAMESPACE = uuid.UUID("3f6a2c1e-9d7b-4e58-8c2a-5b1d0e7f4a93")

CREATED = "2026-01-15T09:30:00.0000000Z"


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


class ResourceBodies:
    """Ids and JSON bodies of the world's resources (mixed into ``Arm``)."""

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
