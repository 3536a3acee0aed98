"""Azure built-in role definitions the sandbox knows, as data.

Copied from Microsoft Learn "Azure built-in roles" (Containers and General categories,
MicrosoftDocs/azure-docs articles/role-based-access-control/built-in-roles/containers.md and
general.md): name, GUID, actions, notActions, dataActions, notDataActions.

Matching follows Azure RBAC: an action string may hold ``*`` wildcards (matching any characters,
``/`` included), comparison is case-insensitive, and a role permits an action when one of its
actions matches it and none of its notActions does (the same for data actions).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from functools import lru_cache

PULL_ACTION = "Microsoft.ContainerRegistry/registries/pull/read"
CONTENT_READ_DATA_ACTION = "Microsoft.ContainerRegistry/registries/repositories/content/read"
METADATA_READ_DATA_ACTION = "Microsoft.ContainerRegistry/registries/repositories/metadata/read"
CUSTOM_ROLE_NAMESPACE = uuid.UUID("0c3f5bde-8a43-4f57-a3c1-6b1b7c7f2e55")


@dataclass(frozen=True)
class RoleDefinition:
    name: str
    guid: str
    description: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    not_data_actions: tuple[str, ...] = ()
    builtin: bool = True
    assignable_scopes: tuple[str, ...] = field(default=("/",))

    def permits(self, action: str) -> bool:
        """A control-plane action (``actions`` minus ``notActions``)."""
        return _any_match(self.actions, action) and not _any_match(self.not_actions, action)

    def permits_data(self, data_action: str) -> bool:
        """A data action (``dataActions`` minus ``notDataActions``)."""
        return _any_match(self.data_actions, data_action) and not _any_match(
            self.not_data_actions, data_action
        )


@lru_cache(maxsize=4096)
def _pattern(action: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if ch == "*" else re.escape(ch) for ch in action), re.IGNORECASE)


def action_matches(pattern: str, action: str) -> bool:
    """Whether a role's action string (wildcards allowed) covers ``action``, case-insensitively."""
    return _pattern(pattern).fullmatch(action) is not None


def _any_match(patterns: tuple[str, ...], action: str) -> bool:
    return any(action_matches(p, action) for p in patterns)


def _role(
    name: str,
    guid: str,
    description: str,
    actions: list[str],
    not_actions: list[str] | None = None,
    data_actions: list[str] | None = None,
    not_data_actions: list[str] | None = None,
) -> RoleDefinition:
    return RoleDefinition(
        name=name,
        guid=guid,
        description=description,
        actions=tuple(actions),
        not_actions=tuple(not_actions or ()),
        data_actions=tuple(data_actions or ()),
        not_data_actions=tuple(not_data_actions or ()),
    )


_ACR = "Microsoft.ContainerRegistry/registries"

BUILTIN_ROLES: tuple[RoleDefinition, ...] = (
    _role(
        "Owner",
        "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
        ["*"],
    ),
    _role(
        "Contributor",
        "b24988ac-6180-42a0-ab88-20f7382dd24c",
        "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC, "
        "manage assignments in Azure Blueprints, or share image galleries.",
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
            "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
            "Microsoft.Subscription/cancel/action",
            "Microsoft.Subscription/enable/action",
        ],
    ),
    _role(
        "Reader",
        "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        "View all resources, but does not allow you to make any changes.",
        ["*/read"],
    ),
    _role("AcrPull", "7f951dda-4ed3-4680-a7ca-43fe172d538d", "acr pull", [PULL_ACTION]),
    _role("AcrPush", "8311e382-0749-4cb8-b61a-304f252e45ec", "acr push", [PULL_ACTION, f"{_ACR}/push/write"]),
    _role("AcrDelete", "c2f4ef07-c644-48eb-af81-4b1b4947fb11", "acr delete", [f"{_ACR}/artifacts/delete"]),
    _role(
        "AcrImageSigner",
        "6cef56e8-d556-48e5-a04f-b8e64114680f",
        "acr image signer",
        [f"{_ACR}/sign/write"],
        data_actions=[f"{_ACR}/trustedCollections/write"],
    ),
    _role(
        "AcrQuarantineReader",
        "cdda3590-29a3-44f6-95f2-9f980659eb04",
        "acr quarantine data reader",
        [f"{_ACR}/quarantine/read"],
        data_actions=[f"{_ACR}/quarantinedArtifacts/read"],
    ),
    _role(
        "Container Registry Data Importer and Data Reader",
        "577a9874-89fd-4f24-9dbd-b5034d0ad23a",
        "Provides the ability to import images into a registry through the registry import operation. "
        "Provides the ability to list repositories, view images and tags, get manifests, and pull images.",
        [f"{_ACR}/importImage/action", f"{_ACR}/read", PULL_ACTION],
        data_actions=[CONTENT_READ_DATA_ACTION, METADATA_READ_DATA_ACTION, f"{_ACR}/catalog/read"],
    ),
    _role(
        "Container Registry Repository Catalog Lister",
        "bfdb9389-c9a5-478a-bb2f-ba9ca092c3c7",
        "Allows for listing all repositories in an Azure Container Registry.",
        [],
        data_actions=[f"{_ACR}/catalog/read"],
    ),
    _role(
        "Container Registry Repository Reader",
        "b93aa761-3e63-49ed-ac28-beffa264f7ac",
        "Allows for read access to Azure Container Registry repositories, but excluding catalog listing.",
        [],
        data_actions=[METADATA_READ_DATA_ACTION, CONTENT_READ_DATA_ACTION],
    ),
    _role(
        "Container Registry Repository Writer",
        "2a1e307c-b015-4ebd-883e-5b7698a07328",
        "Allows for read and write access to Azure Container Registry repositories, but excluding catalog "
        "listing.",
        [],
        data_actions=[
            METADATA_READ_DATA_ACTION,
            CONTENT_READ_DATA_ACTION,
            f"{_ACR}/repositories/metadata/write",
            f"{_ACR}/repositories/content/write",
        ],
    ),
    _role(
        "Container Registry Repository Contributor",
        "2efddaa5-3f1f-4df3-97df-af3f13818f4c",
        "Allows for read, write, and delete access to Azure Container Registry repositories, but excluding "
        "catalog listing.",
        [],
        data_actions=[
            METADATA_READ_DATA_ACTION,
            CONTENT_READ_DATA_ACTION,
            f"{_ACR}/repositories/metadata/write",
            f"{_ACR}/repositories/content/write",
            f"{_ACR}/repositories/metadata/delete",
            f"{_ACR}/repositories/content/delete",
        ],
    ),
    _role(
        "Container Registry Configuration Reader and Data Access Configuration Reader",
        "69b07be0-09bf-439a-b9a6-e73de851bd59",
        "Provides permissions to list container registries and registry configuration properties.",
        [
            f"{_ACR}/operationStatuses/read",
            f"{_ACR}/read",
            f"{_ACR}/privateEndpointConnections/read",
            f"{_ACR}/listCredentials/action",
            f"{_ACR}/replications/read",
        ],
    ),
    _role(
        "Azure Kubernetes Service Cluster User Role",
        "4abbcc35-e782-43d8-92c5-2d3f1bd2253f",
        "List cluster user credential action.",
        [
            "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action",
            "Microsoft.ContainerService/managedClusters/read",
        ],
    ),
    _role(
        "Azure Kubernetes Service Cluster Admin Role",
        "0ab0b1a8-8aac-4efd-b8c2-3ee1fb270be8",
        "List cluster admin credential action.",
        [
            "Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action",
            "Microsoft.ContainerService/managedClusters/accessProfiles/listCredential/action",
            "Microsoft.ContainerService/managedClusters/read",
            "Microsoft.ContainerService/managedClusters/runcommand/action",
        ],
    ),
    _role(
        "Azure Kubernetes Service Cluster Monitoring User",
        "1afdec4b-e479-420e-99e7-f82237c7c5e6",
        "List cluster monitoring user credential action.",
        [
            "Microsoft.ContainerService/managedClusters/listClusterMonitoringUserCredential/action",
            "Microsoft.ContainerService/managedClusters/read",
        ],
    ),
    _role(
        "Azure Kubernetes Service Contributor Role",
        "ed7f3fbd-7b88-4dd4-9017-9adb7ce333f8",
        "Grants access to read and write Azure Kubernetes Service clusters",
        [
            "Microsoft.Authorization/*/read",
            "Microsoft.ContainerService/locations/*",
            "Microsoft.ContainerService/managedClusters/*",
            "Microsoft.ContainerService/managedclustersnapshots/*",
            "Microsoft.ContainerService/snapshots/*",
            "Microsoft.Insights/alertRules/*",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
        ],
    ),
    _role(
        "Azure Kubernetes Service RBAC Reader",  # dataActions abridged to what pullwatch reads
        "7f6c6a51-bcf8-42ba-9220-52d62157d7db",
        "Allows read-only access to see most objects in a namespace.",
        [
            "Microsoft.Authorization/*/read",
            "Microsoft.Resources/subscriptions/operationresults/read",
            "Microsoft.Resources/subscriptions/read",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
        ],
        data_actions=[
            "Microsoft.ContainerService/managedClusters/pods/read",
            "Microsoft.ContainerService/managedClusters/events/read",
            "Microsoft.ContainerService/managedClusters/apps/deployments/read",
        ],
    ),
    _role(
        "Azure Kubernetes Service RBAC Cluster Admin",
        "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b",
        "Lets you manage all resources in the cluster.",
        [
            "Microsoft.Authorization/*/read",
            "Microsoft.Resources/subscriptions/operationresults/read",
            "Microsoft.Resources/subscriptions/read",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action",
        ],
        data_actions=["Microsoft.ContainerService/managedClusters/*"],
    ),
)

_BY_NAME = {r.name.lower(): r for r in BUILTIN_ROLES}
_BY_GUID = {r.guid: r for r in BUILTIN_ROLES}


def builtin_role(name: str) -> RoleDefinition | None:
    """A built-in role by its name (case-insensitive)."""
    return _BY_NAME.get(name.lower())


def builtin_role_by_guid(guid: str) -> RoleDefinition | None:
    return _BY_GUID.get(guid.lower())


def custom_role(tenant: str, name: str, permissions: dict[str, list[str]]) -> RoleDefinition:
    """A world's custom role; its GUID is stable for the tenant and name."""
    return RoleDefinition(
        name=name,
        guid=str(uuid.uuid5(CUSTOM_ROLE_NAMESPACE, f"{tenant}/{name}")),
        description=f"Custom role {name}",
        actions=tuple(permissions.get("actions") or ()),
        not_actions=tuple(permissions.get("notActions") or ()),
        data_actions=tuple(permissions.get("dataActions") or ()),
        not_data_actions=tuple(permissions.get("notDataActions") or ()),
        builtin=False,
    )
