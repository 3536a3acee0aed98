"""The Azure cloud pullwatch runs in (``PULLWATCH_CLOUD``): every endpoint, token audience and
host-name suffix that differs between Azure, Azure Government and Azure China, in one place.

The names are the ones Azure itself uses (Bicep ``environment().name``, ``az cloud list``). The
Bicep sets ``PULLWATCH_CLOUD`` from the deployment's ``environment().name``; without it pullwatch
reads the Azure SDK's own cloud setting (``AZURE_SDK_CLOUD_CONF``: ``AZURE_PUBLIC_CLOUD`` |
``AZURE_US_GOVERNMENT`` | ``AZURE_CHINA_CLOUD``), else Azure public cloud.

Values: Bicep's ``environment()`` per cloud, ``azure.identity.AzureAuthorityHosts``, Microsoft
Graph national-cloud deployments, ACR login-server suffixes (``.azurecr.io`` / ``.azurecr.us`` /
``.azurecr.cn``) and the Azure portal of each cloud.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.errors import InputError


@dataclass(frozen=True)
class Cloud:
    name: str
    arm_endpoint: str  # Resource Manager, also the audience of ARM tokens
    authority_host: str  # Entra ID: azure.identity.AzureAuthorityHosts (not imported: cold start)
    graph_endpoint: str
    storage_suffix: str  # <account>.table.<suffix>, <account>.queue.<suffix>
    acr_suffix: str  # ACR login servers: <name><acr_suffix>
    portal: str

    @property
    def arm_scope(self) -> str:
        return f"{self.arm_endpoint}/.default"

    @property
    def graph_scope(self) -> str:
        return f"{self.graph_endpoint}/.default"

    #: ACR's own token audience (registries with authenticationAsArm disabled), the same in every cloud.
    acr_scope: str = "https://containerregistry.azure.net/.default"

    def is_acr_host(self, host: str) -> bool:
        """``host`` (port allowed) is an ACR login server of this cloud."""
        name = host.lower().split(":")[0]
        return name.endswith(self.acr_suffix) and len(name) > len(self.acr_suffix)

    def acr_login_server(self, registry_name: str) -> str:
        return f"{registry_name.lower()}{self.acr_suffix}"

    def portal_link(self, resource_id: str, tenant: str | None = None) -> str:
        return f"{self.portal}/#{'@' + tenant + '/' if tenant else ''}resource{resource_id}"


AZURE_PUBLIC = Cloud(
    name="AzureCloud",
    arm_endpoint="https://management.azure.com",
    authority_host="login.microsoftonline.com",
    graph_endpoint="https://graph.microsoft.com",
    storage_suffix="core.windows.net",
    acr_suffix=".azurecr.io",
    portal="https://portal.azure.com",
)
AZURE_US_GOVERNMENT = Cloud(
    name="AzureUSGovernment",
    arm_endpoint="https://management.usgovcloudapi.net",
    authority_host="login.microsoftonline.us",
    graph_endpoint="https://graph.microsoft.us",
    storage_suffix="core.usgovcloudapi.net",
    acr_suffix=".azurecr.us",
    portal="https://portal.azure.us",
)
AZURE_CHINA = Cloud(
    name="AzureChinaCloud",
    arm_endpoint="https://management.chinacloudapi.cn",
    authority_host="login.chinacloudapi.cn",
    graph_endpoint="https://microsoftgraph.chinacloudapi.cn",
    storage_suffix="core.chinacloudapi.cn",
    acr_suffix=".azurecr.cn",
    portal="https://portal.azure.cn",
)

CLOUDS: Mapping[str, Cloud] = {c.name: c for c in (AZURE_PUBLIC, AZURE_US_GOVERNMENT, AZURE_CHINA)}
_SDK_NAMES = {
    "AZURE_PUBLIC_CLOUD": AZURE_PUBLIC,
    "AZURE_US_GOVERNMENT": AZURE_US_GOVERNMENT,
    "AZURE_CHINA_CLOUD": AZURE_CHINA,
}


def cloud_named(name: str) -> Cloud:
    """The cloud of a ``PULLWATCH_CLOUD`` value (case-insensitive); InputError names the choices."""
    for key, cloud in CLOUDS.items():
        if key.lower() == name.strip().lower():
            return cloud
    raise InputError(f"{name!r} is not a cloud (expected one of: {', '.join(CLOUDS)})")


def cloud_from_env(env: Mapping[str, str] | None = None) -> Cloud:
    """``PULLWATCH_CLOUD``, else the Azure SDK's ``AZURE_SDK_CLOUD_CONF``, else Azure public cloud."""
    env = os.environ if env is None else env
    explicit = (env.get("PULLWATCH_CLOUD") or "").strip()
    if explicit:
        return cloud_named(explicit)
    sdk = (env.get("AZURE_SDK_CLOUD_CONF") or "").strip().upper()
    return _SDK_NAMES.get(sdk, AZURE_PUBLIC)


def cloud_of_login_server(host: str) -> Cloud | None:
    """The cloud whose ACR suffix ``host`` carries (pure: from the name alone), else None."""
    return next((c for c in CLOUDS.values() if c.is_acr_host(host)), None)


def active_cloud() -> Cloud:
    """The cloud of this process's environment (read on each call: the sandbox switches it per world)."""
    return cloud_from_env()
