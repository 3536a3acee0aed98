"""The Microsoft Graph routes pullwatch reads (``servicePrincipals(appId='…')``, a service principal,
``transitiveMemberOf``), with Graph's audience, paging and error envelopes.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from sandbox.arm.envelope import GRAPH_APP_ID, ArmError
from sandbox.httpserver import Request, Response, json_response

GRAPH_PAGE_SIZE = 5

_GRAPH_SP_BY_APPID = re.compile(r"^/v1\.0/servicePrincipals\(appId='([^']+)'\)$", re.IGNORECASE)
_GRAPH_MEMBER_OF = re.compile(
    r"^/v1\.0/servicePrincipals/([^/]+)/(transitiveMemberOf|memberOf)$", re.IGNORECASE
)
_GRAPH_SP = re.compile(r"^/v1\.0/servicePrincipals/([^/(]+)$", re.IGNORECASE)


class GraphRoutes:
    """Answers ``/v1.0/`` paths (mixed into ``Arm``)."""

    # --- Microsoft Graph ----------------------------------------------------------------------

    def _graph_service_principal(self, object_id: str) -> str | None:
        """The service principal (or managed identity) Graph knows by this object id; None for a
        group, an unknown id, or a cluster app that was deleted."""
        principal = self.entra.principal_of(object_id)
        if principal is None or principal.startswith("group:") or self.entra.deleted(principal):
            return None
        return principal

    def _graph_not_found(self, object_id: str) -> Response:
        return self._graph_error(
            404,
            "Request_ResourceNotFound",
            f"Resource '{object_id}' does not exist or one of its queried reference-property objects are not present.",
        )

    def _graph_error(self, status: int, code: str, message: str) -> Response:
        return json_response(
            status,
            {
                "error": {
                    "code": code,
                    "message": message,
                    "innerError": {
                        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                        "request-id": str(uuid.uuid4()),
                        "client-request-id": str(uuid.uuid4()),
                    },
                }
            },
        )

    def _graph(self, req: Request, path: str) -> Response:
        try:
            caller = self._caller(req, (self.world.azure.graph_audience, GRAPH_APP_ID))
        except ArmError as err:
            code = "InvalidAuthenticationToken"
            message = (
                "Access token is empty." if "missing" in err.message else "Access token validation failure."
            )
            return self._graph_error(401, code, message)
        del caller  # application permissions (Application.Read.All) are assumed granted to the app
        if req.method != "GET":
            return self._graph_error(
                405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target."
            )
        if m := _GRAPH_SP_BY_APPID.match(path):
            principal = self.entra.principal_of_client(m.group(1))
            if principal is None or self.entra.deleted(principal):
                return self._graph_error(
                    404,
                    "Request_ResourceNotFound",
                    f"Resource 'servicePrincipals(appId='{m.group(1)}')' does not exist or one "
                    "of its queried reference-property objects are not present.",
                )
            return json_response(
                200,
                {
                    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#servicePrincipals/$entity",
                    **self._selected(req, self._sp_body(principal)),
                },
            )
        if m := _GRAPH_MEMBER_OF.match(path):
            principal = self._graph_service_principal(m.group(1))
            if principal is None:
                return self._graph_not_found(m.group(1))
            groups = (
                self.rbac.groups_of(principal)
                if m.group(2).lower() == "transitivememberof"
                else [f"group:{g}" for g, members in self.world.groups.items() if principal in members]
            )
            items: list[dict[str, Any]] = [
                {
                    "@odata.type": "#microsoft.graph.group",
                    "id": self.world.principal_id(g),
                    "displayName": g.split(":", 1)[1],
                    "securityEnabled": True,
                    "mailEnabled": False,
                    "groupTypes": [],
                    "description": None,
                }
                for g in groups
            ]
            return json_response(200, self._graph_page(req, path, [self._selected(req, i) for i in items]))
        if m := _GRAPH_SP.match(path):
            principal = self._graph_service_principal(m.group(1))
            if principal is None:
                return self._graph_not_found(m.group(1))
            return json_response(
                200,
                {
                    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#servicePrincipals/$entity",
                    **self._selected(req, self._sp_body(principal)),
                },
            )
        return self._graph_error(
            400, "BadRequest", f"Resource not found for the segment '{path.split('/')[-1]}'."
        )

    @staticmethod
    def _selected(req: Request, obj: dict[str, Any]) -> dict[str, Any]:
        """Graph's ``$select``: only the named properties (and the ``@odata.*`` annotations)."""
        select = req.arg("$select")
        if not select:
            return obj
        wanted = {name.strip().lower() for name in select.split(",") if name.strip()}
        return {k: v for k, v in obj.items() if k.startswith("@odata.") or k.lower() in wanted}

    def _sp_body(self, principal: str) -> dict[str, Any]:
        return {
            "id": self.world.principal_id(principal),
            "appId": self.entra.client_id(principal),
            "displayName": self.entra.display_name(principal),
            "accountEnabled": True,
            "servicePrincipalType": "Application" if principal.startswith("sp:") else "ManagedIdentity",
            "appOwnerOrganizationId": self.world.tenant if principal.startswith("sp:") else None,
        }

    def _graph_page(self, req: Request, path: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            top = max(1, min(999, int(req.arg("$top") or GRAPH_PAGE_SIZE)))
            start = int(req.arg("$skiptoken") or 0)
        except ValueError:
            top, start = GRAPH_PAGE_SIZE, 0
        body: dict[str, Any] = {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#directoryObjects",
            "value": items[start : start + top],
        }
        if start + top < len(items):
            body["@odata.nextLink"] = self.next_link(req, start + top)
        return body
