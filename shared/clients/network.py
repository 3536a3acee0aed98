"""Network facts from ARM (the official azure-mgmt-network client): the public IPs a cluster's
egress uses, and the virtual networks a registry's private endpoints sit in."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError
from azure.mgmt.network import NetworkManagementClient

from shared.clients.arm import BoundedRetryPolicy
from shared.cloud import AZURE_PUBLIC, Cloud
from shared.config import Settings
from shared.errors import UpstreamError
from shared.events import parse_resource_id


class NetworkReader:
    def __init__(
        self,
        credential: TokenCredential,
        *,
        endpoint: str,
        ca_bundle: str | None,
        timeout: float,
        cloud: Cloud = AZURE_PUBLIC,
    ) -> None:
        self._credential = credential
        self._kwargs: dict[str, Any] = {
            "base_url": endpoint,
            "connection_verify": ca_bundle or True,
            "credential_scopes": [cloud.arm_scope],
            "connection_timeout": timeout,
            "read_timeout": timeout,
            "retry_policy": BoundedRetryPolicy(retry_total=2),
        }
        self._clients: dict[str, NetworkManagementClient] = {}
        self._ips: dict[str, str | None] = {}
        self._vnets: dict[str, str | None] = {}

    @classmethod
    def from_settings(cls, credential: TokenCredential, settings: Settings) -> NetworkReader:
        return cls(
            credential,
            endpoint=settings.arm_endpoint,
            ca_bundle=settings.ca_bundle,
            timeout=settings.http_timeout,
            cloud=settings.cloud,
        )

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def _client(self, subscription: str) -> NetworkManagementClient:
        key = subscription.lower()
        if key not in self._clients:
            self._clients[key] = NetworkManagementClient(self._credential, subscription, **self._kwargs)
        return self._clients[key]

    def _read(self, resource_id: str, kind: str) -> Any:
        rid = parse_resource_id(resource_id)
        if rid is None or not rid.resource_group or not rid.name:
            raise UpstreamError(f"not a {kind} resource ID: {resource_id!r}")
        client = self._client(rid.subscription)
        try:
            if kind == "public IP":
                return client.public_ip_addresses.get(rid.resource_group, rid.name)
            return client.private_endpoints.get(rid.resource_group, rid.name)
        except HttpResponseError as exc:
            raise UpstreamError(
                f"cannot read {kind} {rid.name}: HTTP {exc.status_code}", status=exc.status_code
            ) from None
        except AzureError as exc:
            raise UpstreamError(f"cannot read {kind} {rid.name}: {type(exc).__name__}") from None

    def addresses(self, public_ip_ids: Iterable[str]) -> tuple[str, ...]:
        """The IP addresses of the given public IP resources (the cluster's egress)."""
        out = []
        for pid in public_ip_ids:
            key = pid.lower()
            if key not in self._ips:
                self._ips[key] = getattr(self._read(pid, "public IP"), "ip_address", None)
            if self._ips[key]:
                out.append(str(self._ips[key]))
        return tuple(out)

    def endpoint_vnets(self, private_endpoint_ids: Iterable[str]) -> tuple[str, ...]:
        """The virtual network IDs the given private endpoints sit in."""
        out = []
        for pid in private_endpoint_ids:
            key = pid.lower()
            if key not in self._vnets:
                subnet = getattr(self._read(pid, "private endpoint"), "subnet", None)
                subnet_id = getattr(subnet, "id", None) or ""
                self._vnets[key] = (
                    subnet_id[: subnet_id.lower().index("/subnets/")]
                    if "/subnets/" in subnet_id.lower()
                    else None
                )
            vnet = self._vnets[key]
            if vnet:
                out.append(vnet)
        return tuple(out)
