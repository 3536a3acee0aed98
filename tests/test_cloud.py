"""PULLWATCH_CLOUD: every endpoint, token audience and host suffix follows the cloud."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.identity import AzureAuthorityHosts

from shared.cloud import AZURE_CHINA, AZURE_PUBLIC, AZURE_US_GOVERNMENT, CLOUDS, cloud_from_env
from shared.config import ConfigError, Settings
from shared.events import parse_event
from shared.plan import KnownCluster, Scope, plan_events
from shared.render import ClusterMeta
from shared.state import StateStore


class _NoToken:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise AssertionError("no token is needed to build a client")


def test_the_cloud_comes_from_pullwatch_cloud_then_the_sdk_setting_then_azure() -> None:
    assert cloud_from_env({}) is AZURE_PUBLIC
    assert cloud_from_env({"PULLWATCH_CLOUD": "azureusgovernment"}) is AZURE_US_GOVERNMENT
    assert cloud_from_env({"AZURE_SDK_CLOUD_CONF": "AZURE_CHINA_CLOUD"}) is AZURE_CHINA
    both = {"PULLWATCH_CLOUD": "AzureCloud", "AZURE_SDK_CLOUD_CONF": "AZURE_CHINA_CLOUD"}
    assert cloud_from_env(both) is AZURE_PUBLIC


def test_an_unknown_cloud_is_a_config_error_naming_the_setting_and_the_choices() -> None:
    with pytest.raises(
        ConfigError, match=r"PULLWATCH_CLOUD: 'AzureGermanCloud' is not a cloud .*AzureUSGovernment"
    ):
        Settings.from_env({"PULLWATCH_CLOUD": "AzureGermanCloud"})


@pytest.mark.parametrize(
    "cloud, arm, graph, storage, acr, portal",
    [
        (
            "AzureCloud",
            "https://management.azure.com",
            "https://graph.microsoft.com",
            "core.windows.net",
            ".azurecr.io",
            "https://portal.azure.com",
        ),
        (
            "AzureUSGovernment",
            "https://management.usgovcloudapi.net",
            "https://graph.microsoft.us",
            "core.usgovcloudapi.net",
            ".azurecr.us",
            "https://portal.azure.us",
        ),
        (
            "AzureChinaCloud",
            "https://management.chinacloudapi.cn",
            "https://microsoftgraph.chinacloudapi.cn",
            "core.chinacloudapi.cn",
            ".azurecr.cn",
            "https://portal.azure.cn",
        ),
    ],
)
def test_every_endpoint_and_suffix_follows_the_cloud(
    cloud: str, arm: str, graph: str, storage: str, acr: str, portal: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULLWATCH_CLOUD", cloud)
    settings = Settings.from_env(
        {"PULLWATCH_CLOUD": cloud, "AzureWebJobsStorage__accountName": "pullwatchst"}
    )
    assert (settings.arm_endpoint, settings.graph_endpoint) == (arm, graph)
    assert settings.cloud.arm_scope == f"{arm}/.default"
    store = StateStore.from_settings(settings, credential=_NoToken())
    assert store._table.url.startswith(f"https://pullwatchst.table.{storage}")
    # The Entra-token destination rule: only this cloud's ACR login servers are ACR.
    assert settings.cloud.is_acr_host(f"contosoacr{acr}")
    assert not any(
        settings.cloud.is_acr_host(f"contosoacr{c.acr_suffix}")
        for c in CLOUDS.values()
        if c.acr_suffix != acr
    )
    assert not settings.cloud.is_acr_host(acr.lstrip("."))
    cluster = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks"
    assert ClusterMeta.from_id(cluster, tenant="t").portal_url == f"{portal}/#@t/resource{cluster}"
    # An ACR event without request.host names its registry by this cloud's login server.
    registry = (
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/contosoacr"
    )
    event = parse_event(
        {
            "id": "e1",
            "topic": registry,
            "subject": "web",
            "eventType": "Microsoft.ContainerRegistry.ImageDeleted",
            "data": {"target": {"repository": "web", "digest": "sha256:" + "0" * 64}},
        }
    )
    known = KnownCluster(
        id=cluster, registries=frozenset({f"contosoacr{acr}"}), images=frozenset({f"contosoacr{acr}/web:1"})
    )
    assert [a.cluster for a in plan_events([event], [known], Scope()).audits] == [cluster]


def test_explicit_endpoints_override_the_clouds() -> None:
    settings = Settings.from_env(
        {"PULLWATCH_CLOUD": "AzureUSGovernment", "PULLWATCH_ARM_ENDPOINT": "https://127.0.0.1:8443/"}
    )
    assert settings.arm_endpoint == "https://127.0.0.1:8443"
    assert settings.cloud.arm_scope == "https://management.usgovcloudapi.net/.default"  # the audience stays


def test_entra_authorities_are_azure_identitys() -> None:
    assert [c.authority_host for c in CLOUDS.values()] == [
        AzureAuthorityHosts.AZURE_PUBLIC_CLOUD,
        AzureAuthorityHosts.AZURE_GOVERNMENT,
        AzureAuthorityHosts.AZURE_CHINA,
    ]


@pytest.mark.parametrize(
    "suffix, storage", [(".azurecr.us", "core.usgovcloudapi.net"), (".azurecr.cn", "core.chinacloudapi.cn")]
)
def test_advice_about_a_sovereign_registry_names_its_clouds_hosts(suffix: str, storage: str) -> None:
    from shared.causes import remediation_for

    registry = f"contosoacr{suffix}"
    dns, network = remediation_for("dns", registry, None), remediation_for("network", registry, None)
    assert f"privatelink{suffix}" in dns and f"data{suffix}" in dns
    assert f"*.blob.{storage}" in network
    assert ".azurecr.io" not in dns + network and "core.windows.net" not in network
