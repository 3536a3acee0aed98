"""The one seam to Azure Resource Manager and Microsoft Graph.

Built on the Azure SDK clients (azure-mgmt-containerservice, -containerregistry, -authorization,
-network, -resource-subscriptions) and ``azure.core.PipelineClient`` for Graph; the caller hands in a
``TokenCredential`` (azure-identity) and the endpoints. Every request has a connect and read
timeout; every SDK error becomes a project error (:class:`ArmAccessDenied`, :class:`ArmNotFound`,
:class:`ArmUnavailable`, or :class:`~shared.errors.UpstreamError`) whose message carries no token.

Call budget of an audit (S subscriptions, R registries, C clusters, I service-principal
identities, G identities): 1 subscription list; per subscription one cluster list, one registry
list and ONE unfiltered role-assignment list (at, above and below the subscription); role
definitions once per scope (cached); one replication list per Premium registry; one Graph lookup
per service principal and one group listing per identity (cached) — never per cluster×registry.
Network facts: one read per egress public IP and per registry private endpoint (cached).
Pages (``nextLink`` / ``@odata.nextLink``) add requests only for large lists.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any, TypeVar

from azure.core import PipelineClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import (
    BearerTokenCredentialPolicy,
    ContentDecodePolicy,
    HeadersPolicy,
    RetryPolicy,
    SansIOHTTPPolicy,
    UserAgentPolicy,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest
from azure.mgmt.core.tools import parse_resource_id

from shared.clients.arm_bodies import (
    as_dict,
    assignment_from_arm,
    cluster_from_arm,
    definition_from_arm,
    field_at,
    registry_from_arm,
)
from shared.cloud import AZURE_PUBLIC, Cloud
from shared.config import Settings
from shared.errors import UpstreamError
from shared.model import (
    ClusterInfo,
    RegistryInfo,
    RoleAssignment,
    RoleDefinition,
    Subscription,
)
from shared.rbac import BUILTIN_ROLES

_DEFAULTS = Settings()
T = TypeVar("T")


class ArmAccessDenied(UpstreamError):
    """403 AuthorizationFailed: pullwatch's identity may not read this."""


class ArmNotFound(UpstreamError):
    """404: the resource (or subscription) does not exist."""


class ArmUnavailable(UpstreamError):
    """No answer: connection refused, timed out, TLS failure, DNS."""


MAX_RETRY_AFTER = 60.0  # longest Retry-After (seconds) worth waiting for within one audit


class BoundedRetryPolicy(RetryPolicy[Any, Any]):
    """azure-core's RetryPolicy, except that an answer asking to wait longer than
    :data:`MAX_RETRY_AFTER` is not retried (azure-core would sleep for as long as it says: an hour,
    a day): the call fails now and the check is reported incomplete."""

    def is_retry(self, settings: dict[str, Any], response: Any) -> bool:
        retry_after = self.get_retry_after(response)
        if retry_after is not None and retry_after > MAX_RETRY_AFTER:
            return False
        return bool(super().is_retry(settings, response))


class RequestCounter(SansIOHTTPPolicy[Any, Any]):
    """Counts every request a pipeline sends (each retry too)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def on_request(self, request: PipelineRequest[Any]) -> None:
        with self._lock:
            self.count += 1


def _short(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turn SDK exceptions into project errors naming ``what`` was being read."""
    try:
        yield
    except HttpResponseError as exc:
        status = exc.status_code
        if status is None and isinstance(exc, ClientAuthenticationError):
            # token acquisition failed (not an HTTP answer); ClientAuthenticationError is an
            # HttpResponseError, so it must be told apart here
            raise UpstreamError(
                f"{what}: could not get a token: {_short(exc.message or str(exc))}",
                code="AuthenticationFailed",
            ) from None
        code = getattr(getattr(exc, "error", None), "code", None)
        detail = getattr(getattr(exc, "error", None), "message", None) or exc.reason or ""
        message = (
            f"{what}: HTTP {status}"
            + (f" {code}" if code else "")
            + (f": {_short(detail)}" if detail else "")
        )
        if status == 403:
            raise ArmAccessDenied(message, status=status, code=code or "AuthorizationFailed") from None
        if status == 404:
            raise ArmNotFound(message, status=status, code=code or "NotFound") from None
        raise UpstreamError(message, status=status, code=code) from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise ArmUnavailable(
            f"{what}: no answer: {_short(exc.message or str(exc))}", code="Unavailable"
        ) from None
    except AzureError as exc:
        raise UpstreamError(f"{what}: {_short(exc.message or str(exc))}") from None


class ArmClient:
    """ARM + Graph reads for one audit. Not shared across audits: its caches live as long as it."""

    def __init__(
        self,
        credential: TokenCredential,
        *,
        endpoint: str = _DEFAULTS.arm_endpoint,
        graph_endpoint: str = _DEFAULTS.graph_endpoint,
        ca_bundle: str | None = None,
        timeout: float = _DEFAULTS.http_timeout,
        retries: int = _DEFAULTS.retries,
        cloud: Cloud = AZURE_PUBLIC,
    ) -> None:
        self._credential = credential
        self.endpoint = endpoint.rstrip("/")
        self.graph_endpoint = graph_endpoint.rstrip("/")
        self._arm_counter = RequestCounter()
        self._graph_counter = RequestCounter()
        self._kwargs: dict[str, Any] = {
            "base_url": self.endpoint,
            "connection_verify": ca_bundle or True,
            "credential_scopes": [cloud.arm_scope],
            "connection_timeout": timeout,
            "read_timeout": timeout,
            "retry_policy": BoundedRetryPolicy(retry_total=retries),
            "per_retry_policies": [self._arm_counter],
        }
        self._timeout = timeout
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}
        self._tenants: dict[str, str | None] = {}
        self._definitions: dict[str, dict[str, RoleDefinition]] = {}
        self._definition_by_id: dict[str, RoleDefinition | None] = {}
        self._sp_ids: dict[str, str | None] = {}
        self._groups: dict[str, tuple[str, ...]] = {}
        self._public_ips: dict[str, str | None] = {}
        self._endpoint_vnets: dict[str, str | None] = {}
        self._graph: PipelineClient[Any, Any] = PipelineClient(
            base_url=self.graph_endpoint,
            policies=[
                HeadersPolicy({"Accept": "application/json"}),
                UserAgentPolicy(sdk_moniker="pullwatch"),
                ContentDecodePolicy(),
                BoundedRetryPolicy(retry_total=retries),
                self._graph_counter,
                BearerTokenCredentialPolicy(credential, cloud.graph_scope),
            ],
            transport=RequestsTransport(
                connection_verify=ca_bundle or True, connection_timeout=timeout, read_timeout=timeout
            ),
        )

    @classmethod
    def from_settings(cls, credential: TokenCredential, settings: Settings) -> ArmClient:
        return cls(
            credential,
            endpoint=settings.arm_endpoint,
            graph_endpoint=settings.graph_endpoint,
            ca_bundle=settings.ca_bundle,
            timeout=settings.http_timeout,
            retries=settings.retries,
            cloud=settings.cloud,
        )

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._graph.close()

    def __enter__(self) -> ArmClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    def request_counts(self) -> dict[str, int]:
        """Requests sent so far: ``{"arm": n, "graph": n}`` (retries and pages included)."""
        return {"arm": self._arm_counter.count, "graph": self._graph_counter.count}

    def _client(self, kind: str, subscription_id: str) -> Any:
        key = (kind, subscription_id.lower())
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                factory: Callable[..., Any] = _management_client(kind)
                client = factory(self._credential, subscription_id, **self._kwargs)
                self._clients[key] = client
            return client

    def _subscriptions_client(self) -> Any:
        with self._lock:
            client = self._clients.get(("subs", ""))
            if client is None:
                client = _management_client("subs")(self._credential, **self._kwargs)
                self._clients[("subs", "")] = client
            return client

    @staticmethod
    def _parts(resource_id: str, kind: str) -> tuple[str, str, str]:
        parts = parse_resource_id(resource_id)
        sub, rg, name = parts.get("subscription"), parts.get("resource_group"), parts.get("name")
        if not (sub and rg and name):
            raise UpstreamError(f"not a {kind} resource ID: {resource_id!r}", code="InvalidResourceId")
        return str(sub), str(rg), str(name)

    # ------------------------------------------------------------------ subscriptions

    def list_subscriptions(self) -> list[Subscription]:
        with _translated("listing subscriptions"):
            subs = [
                Subscription(
                    id=str(s.id or f"/subscriptions/{s.subscription_id}"),
                    subscription_id=str(s.subscription_id or ""),
                    tenant_id=s.tenant_id,
                    display_name=s.display_name,
                    state=_enum_value(s.state),
                )
                for s in self._subscriptions_client().subscriptions.list()
            ]
        for s in subs:
            self._tenants[s.subscription_id.lower()] = s.tenant_id
        return subs

    def subscription_tenant(self, subscription_id: str) -> str | None:
        """The subscription's tenant (from :meth:`list_subscriptions`, else one GET, cached)."""
        key = subscription_id.lower()
        if key not in self._tenants:
            with _translated(f"reading subscription {subscription_id}"):
                sub = self._subscriptions_client().subscriptions.get(subscription_id)
            self._tenants[key] = sub.tenant_id
        return self._tenants[key]

    # ------------------------------------------------------------------ clusters

    def list_clusters(self, subscription_id: str) -> list[ClusterInfo]:
        tenant = self._tenants.get(subscription_id.lower())
        with _translated(f"listing AKS clusters in subscription {subscription_id}"):
            bodies = [as_dict(c) for c in self._client("aks", subscription_id).managed_clusters.list()]
        return [cluster_from_arm(b, tenant) for b in bodies]

    def get_cluster(self, resource_id: str) -> ClusterInfo:
        sub, rg, name = self._parts(resource_id, "managedCluster")
        with _translated(f"reading AKS cluster {resource_id}"):
            body = as_dict(self._client("aks", sub).managed_clusters.get(rg, name))
        return cluster_from_arm(body, self._tenants.get(sub.lower()))

    def cluster_user_kubeconfig(self, resource_id: str) -> bytes:
        """The clusterUser kubeconfig (``listClusterUserCredential``). Secret: never log it."""
        sub, rg, name = self._parts(resource_id, "managedCluster")
        with _translated(f"reading the user kubeconfig of {resource_id}"):
            result = self._client("aks", sub).managed_clusters.list_cluster_user_credentials(rg, name)
        for kubeconfig in result.kubeconfigs or []:
            if kubeconfig.value:
                return bytes(kubeconfig.value)
        raise UpstreamError(
            f"reading the user kubeconfig of {resource_id}: the answer holds no kubeconfig",
            code="NoKubeconfig",
        )

    # ------------------------------------------------------------------ network facts

    def public_ip_addresses(self, public_ip_ids: Iterable[str]) -> tuple[str, ...]:
        """The IP addresses of the given public IP resources (a cluster's egress), each read once."""
        out = []
        for pid in public_ip_ids:
            key = pid.lower()
            if key not in self._public_ips:
                sub, rg, name = self._parts(pid, "public IP")
                with _translated(f"reading public IP {name}"):
                    ip = self._client("network", sub).public_ip_addresses.get(rg, name)
                self._public_ips[key] = getattr(ip, "ip_address", None)
            if self._public_ips[key]:
                out.append(str(self._public_ips[key]))
        return tuple(out)

    def private_endpoint_vnets(self, private_endpoint_ids: Iterable[str]) -> tuple[str, ...]:
        """The virtual network IDs the given private endpoints sit in, each endpoint read once."""
        out = []
        for pid in private_endpoint_ids:
            key = pid.lower()
            if key not in self._endpoint_vnets:
                sub, rg, name = self._parts(pid, "private endpoint")
                with _translated(f"reading private endpoint {name}"):
                    endpoint = self._client("network", sub).private_endpoints.get(rg, name)
                subnet_id = getattr(getattr(endpoint, "subnet", None), "id", None) or ""
                self._endpoint_vnets[key] = (
                    subnet_id[: subnet_id.lower().index("/subnets/")]
                    if "/subnets/" in subnet_id.lower()
                    else None
                )
            vnet = self._endpoint_vnets[key]
            if vnet:
                out.append(vnet)
        return tuple(out)

    # ------------------------------------------------------------------ registries

    def list_registries(self, subscription_id: str) -> list[RegistryInfo]:
        """Every ACR in the subscription, with ``roleAssignmentMode`` (api-version 2025-11-01) and,
        for Premium registries, their replication locations (one more call each)."""
        tenant = self.subscription_tenant(subscription_id)
        acr = self._client("acr", subscription_id)
        out = []
        with _translated(f"listing container registries in subscription {subscription_id}"):
            bodies = [as_dict(r) for r in acr.registries.list()]
        for body in bodies:
            locations: tuple[str, ...] = ()
            if str(field_at(body, "sku", "name") or "").lower() == "premium":
                info = registry_from_arm(body)
                try:
                    with _translated(f"listing replications of {info.id}"):
                        locations = tuple(
                            str(as_dict(r).get("location") or "")
                            for r in acr.replications.list(info.resource_group, info.name)
                        )
                except ArmAccessDenied:
                    locations = ()
            out.append(registry_from_arm(body, tenant, tuple(loc for loc in locations if loc)))
        return out

    # ------------------------------------------------------------------ roles

    def list_role_assignments(self, subscription_id: str) -> list[RoleAssignment]:
        """ONE unfiltered list: assignments at, above (management groups, root) and below the
        subscription, all pages. Raises :class:`ArmAccessDenied` without read permission."""
        client = self._client("authz", subscription_id)
        with _translated(f"listing role assignments of subscription {subscription_id}"):
            return [
                assignment_from_arm(a, subscription_id)
                for a in client.role_assignments.list_for_subscription()
            ]

    def list_role_definitions(self, scope: str) -> dict[str, RoleDefinition]:
        """Role definitions usable at ``scope`` (built-in and custom), keyed by lower-case GUID;
        cached per scope, so one request per audit and scope."""
        key = "/" + scope.strip("/").lower()
        if key in self._definitions:
            return self._definitions[key]
        sub = parse_resource_id(scope).get("subscription") if "/subscriptions/" in key else None
        client = self._client("authz", str(sub or "00000000-0000-0000-0000-000000000000"))
        with _translated(f"listing role definitions at {scope}"):
            defs = [definition_from_arm(d) for d in client.role_definitions.list("/" + scope.strip("/"))]
        result = {d.guid: d for d in defs}
        self._definitions[key] = result
        return result

    def role_definition(self, role_definition_id: str) -> RoleDefinition | None:
        """One role definition by its full ID (a custom role defined elsewhere); cached; None if gone."""
        key = role_definition_id.lower()
        for defs in self._definitions.values():
            guid = key.rstrip("/").rsplit("/", 1)[-1]
            if guid in defs:
                return defs[guid]
        if key not in self._definition_by_id:
            client = self._client("authz", "00000000-0000-0000-0000-000000000000")
            try:
                with _translated(f"reading role definition {role_definition_id}"):
                    self._definition_by_id[key] = definition_from_arm(
                        client.role_definitions.get_by_id(role_definition_id)
                    )
            except ArmNotFound:
                self._definition_by_id[key] = None
        return self._definition_by_id[key]

    def definitions_for(self, assignments: list[RoleAssignment], scope: str) -> dict[str, RoleDefinition]:
        """Definitions at ``scope`` (one list, cached) plus any other non-built-in role the
        assignments name (one GET each, cached: custom roles defined elsewhere)."""
        defs = dict(self.list_role_definitions(scope))
        for a in assignments:
            # Built-in roles are the same everywhere: shared.rbac knows the ones that matter.
            if a.role_guid not in defs and a.role_guid not in BUILTIN_ROLES:
                d = self.role_definition(a.role_definition_id)
                if d is not None:
                    defs[d.guid] = d
        return defs

    # ------------------------------------------------------------------ Microsoft Graph

    def _graph_get(self, url: str, what: str) -> dict[str, Any]:
        request = HttpRequest("GET", url)
        with _translated(what):
            response = self._graph.send_request(
                request, connection_timeout=self._timeout, read_timeout=self._timeout
            )
            if response.status_code >= 400:
                code: str | None = None
                message = ""
                try:
                    err = response.json().get("error") or {}
                    code, message = err.get("code"), err.get("message") or ""
                except (ValueError, AttributeError):
                    message = ""
                text = (
                    f"{what}: HTTP {response.status_code}"
                    + (f" {code}" if code else "")
                    + (f": {_short(message)}" if message else "")
                )
                if response.status_code == 403:
                    raise ArmAccessDenied(text, status=403, code=code or "Authorization_RequestDenied")
                if response.status_code == 404:
                    raise ArmNotFound(text, status=404, code=code or "Request_ResourceNotFound")
                raise UpstreamError(text, status=response.status_code, code=code)
            try:
                data = response.json()
            except ValueError:
                raise UpstreamError(f"{what}: the answer is not JSON", status=response.status_code) from None
        if not isinstance(data, dict):
            raise UpstreamError(f"{what}: the answer is not a JSON object", status=response.status_code)
        return data

    def service_principal_object_id(self, app_id: str) -> str | None:
        """The object id of the service principal with this appId (client id); None if none."""
        key = app_id.strip().lower()
        if key not in self._sp_ids:
            quoted = urllib.parse.quote(app_id.strip().replace("'", "''"), safe="")
            url = f"{self.graph_endpoint}/v1.0/servicePrincipals(appId='{quoted}')?$select=id,appId"
            try:
                data = self._graph_get(url, f"looking up service principal {app_id}")
                oid = data.get("id")
                self._sp_ids[key] = str(oid) if oid else None
            except ArmNotFound:
                self._sp_ids[key] = None
        return self._sp_ids[key]

    def member_groups(self, object_id: str) -> tuple[str, ...]:
        """Object ids of the groups the service principal belongs to, directly or through other
        groups (``transitiveMemberOf``, every page); cached per identity."""
        key = object_id.lower()
        if key in self._groups:
            return self._groups[key]
        quoted = urllib.parse.quote(object_id.strip(), safe="")
        url: str | None = (
            f"{self.graph_endpoint}/v1.0/servicePrincipals/{quoted}/transitiveMemberOf?$select=id"
        )
        groups: list[str] = []
        pages = 0
        while url and pages < 1000:
            data = self._graph_get(url, f"listing the groups of {object_id}")
            for item in data.get("value") or []:
                kind = str(item.get("@odata.type") or "#microsoft.graph.group")
                if kind.lower() == "#microsoft.graph.group" and item.get("id"):
                    groups.append(str(item["id"]))
            next_link = data.get("@odata.nextLink")
            url = str(next_link) if next_link else None
            if url and not url.lower().startswith(self.graph_endpoint.lower() + "/"):
                # The bearer token goes with the request: follow links to Graph only.
                raise UpstreamError(
                    f"listing the groups of {object_id}: nextLink leaves {self.graph_endpoint}"
                )
            pages += 1
        self._groups[key] = tuple(groups)
        return self._groups[key]


def _enum_value(value: object) -> str | None:
    """An SDK enum (``SubscriptionState.ENABLED``) or plain string as ARM spells it (``Enabled``)."""
    if value is None:
        return None
    return str(value.value) if isinstance(value, Enum) else str(value)


def _management_client(kind: str) -> Callable[..., Any]:
    """The Azure SDK management client class for ``kind``, imported when first needed: together the
    five packages are most of a cold start, and a trigger that reads no ARM (the event handler)
    never pays for them."""
    if kind == "aks":
        from azure.mgmt.containerservice import ContainerServiceClient

        return ContainerServiceClient
    if kind == "acr":
        from azure.mgmt.containerregistry import ContainerRegistryManagementClient

        return ContainerRegistryManagementClient
    if kind == "authz":
        from azure.mgmt.authorization import AuthorizationManagementClient

        return AuthorizationManagementClient
    if kind == "network":
        from azure.mgmt.network import NetworkManagementClient

        return NetworkManagementClient
    from azure.mgmt.resource.subscriptions import SubscriptionClient

    return SubscriptionClient
