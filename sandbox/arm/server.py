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

``Arm`` (this module) holds the server and its HTTP plumbing (authentication, authorisation, paging);
the jobs live in ``bodies`` (resource ids and bodies), ``routes`` (ARM paths), ``graph`` (Graph paths)
and ``envelope`` (caller and error shapes).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlencode

from sandbox.arm.bodies import ResourceBodies
from sandbox.arm.envelope import ARM_AUDIENCES, PAGE_SIZE, ArmError, Caller
from sandbox.arm.graph import GraphRoutes
from sandbox.arm.routes import ArmRoutes
from sandbox.entra import Entra, EntraTokenError
from sandbox.httpserver import Request, Response, Server, json_response
from sandbox.metrics import RequestLog
from sandbox.pki import Pki
from sandbox.rbac import Rbac
from sandbox.world import World


class Arm(ArmRoutes, GraphRoutes, ResourceBodies):
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
            body["nextLink"] = self.next_link(req, start + PAGE_SIZE)
        return body

    def next_link(self, req: Request, skip: int) -> str:
        """The request's own URL (as the caller addressed it) with ``$skiptoken`` set to ``skip``."""
        query = {k: v[0] for k, v in req.query.items() if k != "$skiptoken"}
        query["$skiptoken"] = str(skip)
        host = req.header("Host") or self.url.split("://", 1)[1]
        return f"https://{host}{req.path}?{urlencode(query, quote_via=quote)}"
