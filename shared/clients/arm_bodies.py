"""ARM answers as the product's model values (pure): a managed cluster's body → ``ClusterInfo``, a
registry's → ``RegistryInfo``, role assignment and definition SDK models → ``RoleAssignment`` /
``RoleDefinition``. The reads themselves are ``ArmClient``'s (``shared/clients/arm.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from azure.mgmt.core.tools import parse_resource_id

from shared.cloud import active_cloud
from shared.model import (
    LEGACY_MODE,
    ClusterInfo,
    NodePool,
    RegistryInfo,
    RoleAssignment,
    RoleDefinition,
)


def field_at(data: Any, *path: str) -> Any:
    """``data[path[0]][path[1]]…``, or None where a step is missing or not a mapping."""
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def as_dict(model: Any) -> dict[str, Any]:
    """The wire JSON of a typespec SDK model (camelCase keys, as in reference/wire/arm)."""
    if isinstance(model, Mapping):
        return dict(model)
    result: dict[str, Any] = model.as_dict()
    return result


def _arch_of(vm_size: str | None, explicit: str | None) -> Literal["amd64", "arm64"]:
    if explicit and explicit.lower() in ("arm64", "aarch64"):
        return "arm64"
    if explicit and explicit.lower() in ("amd64", "x86_64", "x64"):
        return "amd64"
    # Azure Arm64 sizes carry a 'p' in the feature letters after the vCPU count: D4ps_v5, E8pds_v5.
    size = (vm_size or "").lower().removeprefix("standard_")
    head = size.split("_", 1)[0]
    letters = head.lstrip("abcdefghijklmnopqrstuvwxyz")
    suffix = letters.lstrip("0123456789")
    return "arm64" if "p" in suffix else "amd64"


def _vnet_of(subnet_id: str | None) -> str | None:
    if not subnet_id:
        return None
    lowered = subnet_id.lower()
    idx = lowered.find("/subnets/")
    return subnet_id[:idx] if idx >= 0 else subnet_id


def cluster_from_arm(body: Mapping[str, Any], tenant_id: str | None = None) -> ClusterInfo:
    """A ManagedCluster GET body (wire JSON) as :class:`ClusterInfo`."""
    rid = str(body.get("id") or "")
    parts = parse_resource_id(rid) if rid else {}
    props = body.get("properties") or {}
    kubelet = field_at(props, "identityProfile", "kubeletidentity") or {}
    pools = []
    vnets: list[str] = []
    for p in props.get("agentPoolProfiles") or []:
        os_type = str(p.get("osType") or "Linux").lower()
        pools.append(
            NodePool(
                name=str(p.get("name") or ""),
                os="windows" if os_type == "windows" else "linux",
                arch=_arch_of(p.get("vmSize"), p.get("arch") or p.get("architecture")),
                count=int(p.get("count") or 0),
            )
        )
        vnet = _vnet_of(p.get("vnetSubnetID"))
        if vnet and vnet.lower() not in (v.lower() for v in vnets):
            vnets.append(vnet)
    lb = field_at(props, "networkProfile", "loadBalancerProfile") or {}
    outbound = [ip.get("id") for ip in (lb.get("effectiveOutboundIPs") or []) if ip.get("id")]
    if not outbound:
        outbound = [ip.get("id") for ip in (field_at(lb, "outboundIPs", "publicIPs") or []) if ip.get("id")]
    aad = props.get("aadProfile")
    tenant = (
        (field_at(aad, "tenantID") if aad else None) or field_at(body, "identity", "tenantId") or tenant_id
    )
    return ClusterInfo(
        id=rid,
        name=str(body.get("name") or parts.get("name") or ""),
        subscription_id=str(parts.get("subscription") or ""),
        resource_group=str(parts.get("resource_group") or ""),
        location=str(body.get("location") or ""),
        tenant_id=tenant,
        kubelet_object_id=kubelet.get("objectId"),
        kubelet_client_id=kubelet.get("clientId"),
        service_principal_client_id=field_at(props, "servicePrincipalProfile", "clientId"),
        aad_enabled=bool(aad),
        private_cluster=bool(field_at(props, "apiServerAccessProfile", "enablePrivateCluster")),
        fqdn=props.get("fqdn") or props.get("privateFQDN"),
        node_pools=tuple(pools),
        vnet_ids=tuple(vnets),
        outbound_ip_ids=tuple(str(i) for i in outbound),
        tags=dict(body.get("tags") or {}),
    )


def registry_from_arm(
    body: Mapping[str, Any], tenant_id: str | None = None, replication_locations: tuple[str, ...] = ()
) -> RegistryInfo:
    """A Registry GET body (wire JSON, api-version 2025-11-01) as :class:`RegistryInfo`."""
    rid = str(body.get("id") or "")
    parts = parse_resource_id(rid) if rid else {}
    props = body.get("properties") or {}
    rules = props.get("networkRuleSet") or {}
    endpoints = [
        field_at(c, "properties", "privateEndpoint", "id")
        for c in props.get("privateEndpointConnections") or []
    ]
    arm_policy = field_at(props, "policies", "azureADAuthenticationAsArmPolicy", "status")
    name = str(body.get("name") or parts.get("name") or "")
    return RegistryInfo(
        id=rid,
        name=name,
        login_server=str(props.get("loginServer") or active_cloud().acr_login_server(name)).lower(),
        subscription_id=str(parts.get("subscription") or ""),
        resource_group=str(parts.get("resource_group") or ""),
        location=str(body.get("location") or ""),
        tenant_id=tenant_id,
        role_assignment_mode=str(props.get("roleAssignmentMode") or LEGACY_MODE),
        public_network_access=str(props.get("publicNetworkAccess") or "Enabled"),
        network_default_action=str(rules.get("defaultAction") or "Allow"),
        ip_rules=tuple(str(r.get("value")) for r in rules.get("ipRules") or [] if r.get("value")),
        private_endpoint_ids=tuple(str(e) for e in endpoints if e),
        anonymous_pull_enabled=bool(props.get("anonymousPullEnabled")),
        authentication_as_arm=str(arm_policy or "enabled").lower() != "disabled",
        replication_locations=replication_locations,
        data_endpoint_enabled=bool(props.get("dataEndpointEnabled")),
    )


def assignment_from_arm(model: Any, listed_for: str | None) -> RoleAssignment:
    return RoleAssignment(
        id=str(model.id or ""),
        scope=str(model.scope or ""),
        principal_id=str(model.principal_id or ""),
        principal_type=getattr(model, "principal_type", None),
        role_definition_id=str(model.role_definition_id or ""),
        condition=getattr(model, "condition", None),
        condition_version=getattr(model, "condition_version", None),
        listed_for=listed_for,
    )


def definition_from_arm(model: Any) -> RoleDefinition:
    blocks = tuple(
        (
            tuple(p.actions or ()),
            tuple(p.not_actions or ()),
            tuple(p.data_actions or ()),
            tuple(p.not_data_actions or ()),
        )
        for p in (model.permissions or [])
    )
    flat: list[tuple[str, ...]] = [tuple(x for b in blocks for x in b[i]) for i in range(4)]
    return RoleDefinition(
        id=str(model.id or ""),
        name=str(model.name or ""),
        role_name=str(model.role_name or ""),
        role_type=str(model.role_type or ""),
        actions=flat[0],
        not_actions=flat[1],
        data_actions=flat[2],
        not_data_actions=flat[3],
        blocks=blocks if len(blocks) > 1 else (),
    )
