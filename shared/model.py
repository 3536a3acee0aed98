"""Facts read from Azure Resource Manager and Microsoft Graph, as plain frozen values.

The ARM seam (:mod:`shared.clients.arm`) builds these from the SDK models; the checks read them.
Resource IDs keep the case ARM returned; compare them case-insensitively (:func:`same_id`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

LEGACY_MODE = "LegacyRegistryPermissions"
ABAC_MODE = "AbacRepositoryPermissions"


def same_id(a: str | None, b: str | None) -> bool:
    """ARM resource IDs, object IDs and tenant IDs compare case-insensitively."""
    return a is not None and b is not None and a.lower() == b.lower()


@dataclass(frozen=True)
class Subscription:
    id: str  # /subscriptions/<guid>
    subscription_id: str
    tenant_id: str | None = None
    display_name: str | None = None
    state: str | None = None


@dataclass(frozen=True)
class NodePool:
    name: str
    os: Literal["linux", "windows"] = "linux"
    arch: Literal["amd64", "arm64"] = "amd64"
    count: int = 1


@dataclass(frozen=True)
class ClusterInfo:
    id: str
    name: str
    subscription_id: str
    resource_group: str
    location: str
    tenant_id: str | None = None
    kubelet_object_id: str | None = None
    kubelet_client_id: str | None = None
    service_principal_client_id: str | None = None  # "msi" means a managed-identity cluster
    aad_enabled: bool = False
    private_cluster: bool = False
    fqdn: str | None = None
    node_pools: tuple[NodePool, ...] = ()
    vnet_ids: tuple[str, ...] = ()
    outbound_ip_ids: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RegistryInfo:
    id: str
    name: str
    login_server: str
    subscription_id: str
    resource_group: str
    location: str
    tenant_id: str | None = None
    role_assignment_mode: str = LEGACY_MODE  # LegacyRegistryPermissions | AbacRepositoryPermissions
    public_network_access: str = "Enabled"
    network_default_action: str = "Allow"
    ip_rules: tuple[str, ...] = ()
    private_endpoint_ids: tuple[str, ...] = ()
    anonymous_pull_enabled: bool = False
    authentication_as_arm: bool = True
    replication_locations: tuple[str, ...] = ()
    data_endpoint_enabled: bool = False

    @property
    def abac(self) -> bool:
        return (self.role_assignment_mode or "").lower() == ABAC_MODE.lower()


@dataclass(frozen=True)
class RoleAssignment:
    id: str
    scope: str
    principal_id: str
    principal_type: str | None = None  # User | Group | ServicePrincipal | ForeignGroup | Device
    role_definition_id: str = ""
    condition: str | None = None
    condition_version: str | None = None
    #: the subscription whose role-assignment list returned this assignment. A management-group
    #: assignment in that list sits above that subscription. None: assume it applies everywhere.
    listed_for: str | None = None

    @property
    def role_guid(self) -> str:
        """The role definition's GUID (the last segment of the ID), lower-case."""
        return self.role_definition_id.rstrip("/").rsplit("/", 1)[-1].lower()


@dataclass(frozen=True)
class RoleDefinition:
    id: str
    name: str  # the GUID
    role_name: str
    role_type: str = "BuiltInRole"  # BuiltInRole | CustomRole
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    not_data_actions: tuple[str, ...] = ()
    #: permission blocks as (actions, notActions, dataActions, notDataActions) when a role has
    #: more than one; empty means the flat fields above are the only block.
    blocks: tuple[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = ()

    @property
    def guid(self) -> str:
        return (self.name or self.id.rstrip("/").rsplit("/", 1)[-1]).lower()

    def permission_blocks(
        self,
    ) -> tuple[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...]:
        if self.blocks:
            return self.blocks
        return ((self.actions, self.not_actions, self.data_actions, self.not_data_actions),)


@dataclass(frozen=True)
class PullIdentity:
    object_id: str
    kind: Literal["kubelet", "servicePrincipal"]
    client_id: str | None = None

    @property
    def label(self) -> str:
        return "kubelet identity" if self.kind == "kubelet" else "service principal"
