"""The world's plain data: the dataclasses every sandbox part reads, and the spec's defaults.

A world is built by :mod:`sandbox.world.loader` and updated in place by the ``change`` steps of
:mod:`sandbox.world.timeline`; nothing here reads YAML.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_TENANT = "11111111-1111-1111-1111-111111111111"
DEFAULT_SUBSCRIPTION = "22222222-2222-2222-2222-222222222222"
PRINCIPAL_NAMESPACE = uuid.UUID("5a5d8d4e-6c1f-4c6a-9f7e-2b0b7f1f0a11")

FAULTS = ("dns", "timeout", "refused", "tls", "rate_limit", "server_error", "firewall")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod")
SECRET_TYPES_WITH_AUTHS = ("kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg")
ROLE_MODES = ("LegacyRegistryPermissions", "AbacRepositoryPermissions")
MAX_REPLICAS = 1000  # pods of one workload (the sandbox's kubelet really pulls for each)
MAX_POOL_NODES = 1000


class WorldError(ValueError):
    """A world that does not parse or validate; the message says where and what."""


@dataclass(frozen=True)
class Platform:
    os: str
    arch: str
    variant: str | None = None

    def __str__(self) -> str:
        return f"{self.os}/{self.arch}" + (f"/{self.variant}" if self.variant else "")


@dataclass
class Registry:
    key: str  # as written in the world
    kind: str  # "acr" | "generic" | "dockerhub"
    host: str  # login server / host
    name: str  # ACR name, or the host for others
    repositories: dict[str, dict[str, list[Platform]]]
    subscription: str = DEFAULT_SUBSCRIPTION
    resource_group: str = "rg-registries"
    location: str = "westeurope"
    sku: str = "Premium"
    tenant: str = DEFAULT_TENANT
    public_network_access: str = "Enabled"
    default_action: str = "Allow"
    ip_rules: list[str] = field(default_factory=list)
    private_endpoints: list[str] = field(default_factory=list)
    role_assignment_mode: str = "LegacyRegistryPermissions"
    anonymous_pull_enabled: bool = False
    authentication_as_arm: bool = True
    replications: list[str] = field(default_factory=list)
    anonymous: bool = False  # generic / Docker Hub: anonymous pulls allowed
    users: dict[str, str] = field(default_factory=dict)
    anonymous_rate_limit: int | None = None
    line: int = 0

    @property
    def is_acr(self) -> bool:
        return self.kind == "acr"

    @property
    def resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ContainerRegistry/registries/{self.name}"
        )


@dataclass
class Secret:
    name: str
    type: str
    auths: dict[str, dict[str, str]] | None = None
    data: dict[str, str] | None = None


@dataclass
class Workload:
    kind: str
    name: str
    image: str
    init_images: list[str] = field(default_factory=list)
    replicas: int = 1
    service_account: str = "default"
    image_pull_secrets: list[str] | None = None  # None: not set on the pod
    node_pool: str | None = None
    line: int = 0


@dataclass
class Namespace:
    name: str
    service_accounts: dict[str, list[str]] = field(default_factory=dict)  # name -> imagePullSecrets
    secrets: dict[str, Secret] = field(default_factory=dict)
    workloads: list[Workload] = field(default_factory=list)


@dataclass
class NodePool:
    name: str
    os: str = "linux"
    arch: str = "amd64"
    count: int = 1


@dataclass
class Cluster:
    name: str
    subscription: str = DEFAULT_SUBSCRIPTION
    resource_group: str = "rg-aks"
    location: str = "westeurope"
    identity: str = "managed"
    service_principal_secret_expired: bool = False
    service_principal_deleted: bool = False  # servicePrincipal only (extension): the app was deleted
    egress_ips: list[str] = field(default_factory=list)
    vnet: str | None = None
    node_pools: list[NodePool] = field(default_factory=lambda: [NodePool("system")])
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    aad: bool = False  # Entra-enabled API server (extension; default off)
    private: bool = False  # private API server unreachable from the app (extension)
    tags: dict[str, str] = field(default_factory=dict)
    kubernetes_version: str = "1.32.7"
    line: int = 0

    @property
    def resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ContainerService/managedClusters/{self.name}"
        )


@dataclass
class RoleAssignment:
    principal: str  # kubelet:<cluster> | sp:<cluster> | group:<name> | app
    role: str
    scope: str  # registry:<n> | resourceGroup:<n> | subscription[:<id>] | managementGroup:<n>
    repositories: list[str] | None = None
    line: int = 0


@dataclass
class Fault:
    host: str
    fault: str
    from_cluster: str | None = None


@dataclass
class Latency:
    host: str
    rtt: float  # seconds
    from_cluster: str | None = None


@dataclass
class Step:
    kind: str  # audit | change | event | wait
    raw: dict[str, Any]  # the entry as written
    value: Any  # audit: str; change: (name, args); event: Path; wait: seconds
    line: int = 0


@dataclass
class World:
    name: str
    path: Path | None
    description: str = ""
    tenant: str = DEFAULT_TENANT
    subscriptions: list[str] = field(default_factory=lambda: [DEFAULT_SUBSCRIPTION])
    registries: dict[str, Registry] = field(default_factory=dict)  # by host
    clusters: dict[str, Cluster] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    custom_roles: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    role_assignments: list[RoleAssignment] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    latency: list[Latency] = field(default_factory=list)
    webhooks: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"slack": {"fail": []}, "teams": {"fail": []}}
    )
    timeline: list[Step] = field(default_factory=list)
    expect: list[dict[str, Any]] | None = None
    event_schema: str = "EventGridSchema"  # how Event Grid delivers every change's events
    cloud: str = "AzureCloud"  # the Azure cloud the estate lives in (PULLWATCH_CLOUD of the product)

    @property
    def azure(self) -> SandboxCloud:
        return CLOUDS[self.cloud]

    def registry(self, name_or_host: str) -> Registry:
        """A registry by world key, ACR name or host (Docker Hub aliases included)."""
        wanted = name_or_host.lower()
        if wanted in DOCKERHUB_ALIASES:
            wanted = "docker.io"
        for reg in self.registries.values():
            if wanted in (reg.key.lower(), reg.host, reg.name.lower()):
                return reg
        raise KeyError(name_or_host)

    def principal_id(self, principal: str) -> str:
        """The object ID the sandbox gives a principal (stable for a world)."""
        return str(uuid.uuid5(PRINCIPAL_NAMESPACE, f"{self.tenant}/{principal}"))


EVENT_SCHEMAS = ("EventGridSchema", "CloudEventSchemaV1_0")  # Event Grid's deliverySchema values


@dataclass(frozen=True)
class SandboxCloud:
    """What the stand-ins of an Azure cloud answer to (the sandbox's own table, not the product's)."""

    name: str
    arm_audience: str  # ARM tokens' aud; ACR's /oauth2/exchange accepts it too
    graph_audience: str
    acr_suffix: str  # login server of an ACR named in the world without a dot


CLOUDS = {
    c.name: c
    for c in (
        SandboxCloud(
            "AzureCloud", "https://management.azure.com", "https://graph.microsoft.com", ".azurecr.io"
        ),
        SandboxCloud(
            "AzureUSGovernment",
            "https://management.usgovcloudapi.net",
            "https://graph.microsoft.us",
            ".azurecr.us",
        ),
        SandboxCloud(
            "AzureChinaCloud",
            "https://management.chinacloudapi.cn",
            "https://microsoftgraph.chinacloudapi.cn",
            ".azurecr.cn",
        ),
    )
}
DOCKERHUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")
