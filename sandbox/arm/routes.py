"""ARM's routes: subscriptions, resource groups, clusters (+ ``listClusterUserCredential``), registries,
network resources, role assignments (``$filter`` and ``nextLink`` paging) and role definitions, each
authorised by the sandbox's RBAC model.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from sandbox.arm.envelope import ArmError, Caller
from sandbox.httpserver import Request
from sandbox.rbac import MANAGEMENT_GROUP_PREFIX
from sandbox.roles import BUILTIN_ROLES
from sandbox.world import Cluster, Registry

_AUTHZ = re.compile(
    r"^(?P<scope>.*?)/providers/microsoft\.authorization/(?P<kind>roleassignments|roledefinitions)"
    r"(?:/(?P<name>[^/]+))?/?$",
    re.IGNORECASE,
)
_FILTER_ASSIGNED = re.compile(r"^assignedTo\('([^']+)'\)$", re.IGNORECASE)
_FILTER_PRINCIPAL = re.compile(r"^principalId\s+eq\s+'([^']+)'$", re.IGNORECASE)
_FILTER_ATSCOPE = re.compile(r"^atScope\(\)$", re.IGNORECASE)


class ArmRoutes:
    """Answers ARM paths (mixed into ``Arm``)."""

    # --- ARM routes ---------------------------------------------------------------------------

    def _arm(self, req: Request, path: str) -> tuple[int, Any]:
        if not req.arg("api-version"):
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        caller = self._caller(req, self._arm_audiences())
        path = path.rstrip("/") or "/"
        m = _AUTHZ.match(path)
        if m:
            if req.method != "GET":
                raise ArmError(405, "MethodNotAllowed", "The sandbox Resource Manager is read-only.")
            scope = m.group("scope")
            if m.group("kind").lower() == "roleassignments":
                return self._role_assignments(req, caller, scope, m.group("name"))
            return self._role_definitions(req, caller, scope, m.group("name"))
        seg = [s for s in path.split("/") if s]
        low = [s.lower() for s in seg]
        if low == ["subscriptions"]:
            return 200, self._list_subscriptions(caller)
        if len(seg) < 2 or low[0] != "subscriptions":
            raise ArmError(404, "InvalidResourceType", f"The resource path '{path}' is not supported.")
        sub = self._subscription(seg[1])
        sub_id = f"/subscriptions/{sub}"
        if len(seg) == 2:
            self._authorize(caller, "Microsoft.Resources/subscriptions/read", sub_id)
            return 200, self._subscription_body(sub)
        if low[2] == "providers" and len(seg) == 5:
            return self._list_resources(req, caller, sub, None, f"{seg[3]}/{seg[4]}")
        if low[2] == "resourcegroups" and len(seg) >= 4:
            rg = seg[3]
            rg_id = f"{sub_id}/resourceGroups/{rg}"
            if len(seg) == 4:
                self._authorize(caller, "Microsoft.Resources/subscriptions/resourceGroups/read", rg_id)
                self._check_group(sub, rg)
                return 200, {
                    "id": rg_id,
                    "name": rg,
                    "type": "Microsoft.Resources/resourceGroups",
                    "location": "westeurope",
                    "properties": {"provisioningState": "Succeeded"},
                }
            if len(seg) == 7 and low[4] == "providers":
                return self._list_resources(req, caller, sub, rg, f"{seg[5]}/{seg[6]}")
            if len(seg) >= 8 and low[4] == "providers":
                return self._resource(req, caller, sub, rg, seg[5], seg[6], seg[7], seg[8:])
        raise ArmError(404, "InvalidResourceType", f"The resource path '{path}' is not supported.")

    def subscription_tenant(self, sub: str) -> str:
        """A subscription that holds only registries of one other tenant (and no cluster) belongs to
        that tenant: the app sees it delegated to its own tenant, as Azure Lighthouse shows it."""
        if any(c.subscription.lower() == sub.lower() for c in self.world.clusters.values()):
            return self.world.tenant
        tenants = {
            r.tenant.lower()
            for r in self.world.registries.values()
            if r.is_acr and r.subscription.lower() == sub.lower()
        }
        if len(tenants) == 1 and self.world.tenant.lower() not in tenants:
            return next(
                r.tenant
                for r in self.world.registries.values()
                if r.is_acr and r.subscription.lower() == sub.lower()
            )
        return self.world.tenant

    def _list_subscriptions(self, caller: Caller) -> dict[str, Any]:
        principal = self.rbac.principal_of(caller.object_id)
        held = self.rbac.assignments_of(principal) if principal else []
        subs = [
            s
            for s in self.world.subscriptions
            if any(self.rbac.covers(sa.scope, f"/subscriptions/{s}") for sa in held)
        ]
        return {
            "value": [self._subscription_body(s) for s in subs],
            "count": {"type": "Total", "value": len(subs)},
        }

    def _clusters(self, sub: str, rg: str | None) -> list[Cluster]:
        return [
            c
            for c in self.world.clusters.values()
            if c.subscription.lower() == sub.lower()
            and (rg is None or c.resource_group.lower() == rg.lower())
        ]

    def _registries(self, sub: str, rg: str | None) -> list[Registry]:
        return [
            r
            for r in self.world.registries.values()
            if r.is_acr
            # another tenant's registry is visible only in a subscription of that tenant delegated to ours
            and r.tenant.lower() == self.subscription_tenant(r.subscription).lower()
            and r.subscription.lower() == sub.lower()
            and (rg is None or r.resource_group.lower() == rg.lower())
        ]

    def _list_resources(
        self, req: Request, caller: Caller, sub: str, rg: str | None, rtype: str
    ) -> tuple[int, Any]:
        scope = f"/subscriptions/{sub}" + (f"/resourceGroups/{rg}" if rg else "")
        kind = rtype.lower()
        if kind == "microsoft.containerservice/managedclusters":
            self._authorize(caller, "Microsoft.ContainerService/managedClusters/read", scope)
            if rg:
                self._check_group(sub, rg)
            return 200, self._page(req, [self.cluster_body(c) for c in self._clusters(sub, rg)])
        if kind == "microsoft.containerregistry/registries":
            self._authorize(caller, "Microsoft.ContainerRegistry/registries/read", scope)
            if rg:
                self._check_group(sub, rg)
            return 200, self._page(req, [self.registry_body(r) for r in self._registries(sub, rg)])
        raise ArmError(400, "InvalidResourceType", f"The resource type '{rtype}' is not supported here.")

    def _resource(
        self,
        req: Request,
        caller: Caller,
        sub: str,
        rg: str,
        namespace: str,
        rtype: str,
        name: str,
        rest: list[str],
    ) -> tuple[int, Any]:
        kind = f"{namespace}/{rtype}".lower()
        rid = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{namespace}/{rtype}/{name}"
        child = [s.lower() for s in rest]
        if kind == "microsoft.containerservice/managedclusters":
            if child == ["listclusterusercredential"]:
                if req.method != "POST":
                    raise ArmError(405, "MethodNotAllowed", "listClusterUserCredential is a POST action.")
                self._authorize(
                    caller, "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action", rid
                )
                cluster = self._find_cluster(sub, rg, name)
                kubeconfig = self.kubeconfig_for(cluster.name)
                value = base64.b64encode(kubeconfig.encode()).decode()
                return 200, {"kubeconfigs": [{"name": "clusterUser", "value": value}]}
            if child:
                raise ArmError(
                    404,
                    "InvalidResourceType",
                    f"The resource path '{rid}/{'/'.join(rest)}' is not supported.",
                )
            self._authorize(caller, "Microsoft.ContainerService/managedClusters/read", rid)
            return 200, self.cluster_body(self._find_cluster(sub, rg, name))
        if kind == "microsoft.containerregistry/registries":
            if not child:
                self._authorize(caller, "Microsoft.ContainerRegistry/registries/read", rid)
                return 200, self.registry_body(self._find_registry(sub, rg, name))
            if child == ["replications"]:
                self._authorize(caller, "Microsoft.ContainerRegistry/registries/replications/read", rid)
                return 200, self._page(req, self.replications(self._find_registry(sub, rg, name)))
            if child[0] == "privateendpointconnections" and len(child) <= 2:
                self._authorize(
                    caller, "Microsoft.ContainerRegistry/registries/privateEndpointConnections/read", rid
                )
                conns = self.private_endpoint_connections(self._find_registry(sub, rg, name))
                if len(child) == 1:
                    return 200, self._page(req, conns)
                for conn in conns:
                    if conn["name"].lower() == child[1]:
                        return 200, conn
                raise self._not_found(
                    "Microsoft.ContainerRegistry/registries/privateEndpointConnections",
                    f"{name}/{rest[1]}",
                    rg,
                )
            raise ArmError(404, "InvalidResourceType", "The resource path is not supported.")
        if kind == "microsoft.network/publicipaddresses" and not child:
            self._authorize(caller, "Microsoft.Network/publicIPAddresses/read", rid)
            self._check_group(sub, rg)
            for c in self._clusters(sub, None):
                for pid, ip in self.public_ip_ids(c):
                    if pid.lower() == rid.lower():
                        return 200, {
                            "name": pid.rsplit("/", 1)[1],
                            "id": pid,
                            "location": c.location,
                            "type": "Microsoft.Network/publicIPAddresses",
                            "tags": {"aks-managed-type": "aks-slb-managed-outbound-ip"},
                            "sku": {"name": "Standard", "tier": "Regional"},
                            "zones": ["1", "2", "3"],
                            "properties": {
                                "provisioningState": "Succeeded",
                                "ipAddress": ip,
                                "publicIPAddressVersion": "IPv4",
                                "publicIPAllocationMethod": "Static",
                                "idleTimeoutInMinutes": 4,
                                "ipTags": [],
                            },
                        }
            raise self._not_found("Microsoft.Network/publicIPAddresses", name, rg)
        if kind == "microsoft.network/privateendpoints" and not child:
            self._authorize(caller, "Microsoft.Network/privateEndpoints/read", rid)
            self._check_group(sub, rg)
            for reg in self.world.registries.values():
                for i, vnet in enumerate(reg.private_endpoints):
                    pe_id = self.private_endpoint_id(reg, vnet)
                    if reg.is_acr and pe_id.lower() == rid.lower():
                        return 200, self._private_endpoint_body(reg, vnet, pe_id, i)
            raise self._not_found("Microsoft.Network/privateEndpoints", name, rg)
        raise ArmError(
            400,
            "InvalidResourceType",
            f"The resource type '{namespace}/{rtype}' could not be found in the namespace "
            f"'{namespace}' for api version '{req.arg('api-version')}'.",
        )

    def _find_cluster(self, sub: str, rg: str, name: str) -> Cluster:
        self._check_group(sub, rg)
        for c in self._clusters(sub, rg):
            if c.name.lower() == name.lower():
                return c
        raise self._not_found("Microsoft.ContainerService/managedClusters", name, rg)

    def _find_registry(self, sub: str, rg: str, name: str) -> Registry:
        self._check_group(sub, rg)
        for r in self._registries(sub, rg):
            if r.name.lower() == name.lower():
                return r
        raise self._not_found("Microsoft.ContainerRegistry/registries", name, rg)

    # --- authorization routes -----------------------------------------------------------------

    def _scope_prefix(self, scope: str) -> str:
        """The prefix role definition ids carry when listed at ``scope`` (its subscription, if any)."""
        m = re.match(r"^/subscriptions/([^/]+)", scope, re.IGNORECASE)
        return f"/subscriptions/{m.group(1)}" if m else ""

    def _check_scope(self, scope: str) -> str:
        """Validate a request scope; returns it normalized (leading slash, no trailing one)."""
        scope = "/" + scope.strip("/") if scope.strip("/") else ""
        if not scope:
            return scope
        low = scope.lower()
        if low.startswith(MANAGEMENT_GROUP_PREFIX.lower()):
            return scope
        m = re.match(
            r"^/subscriptions/([^/]+)(?:/resourceGroups/([^/]+)(/providers/.+)?)?$", scope, re.IGNORECASE
        )
        if not m:
            raise ArmError(400, "InvalidScope", f"The scope '{scope}' is not valid.")
        self._subscription(m.group(1))
        if m.group(2):
            self._check_group(m.group(1), m.group(2))
        if m.group(3):
            known = [r.resource_id.lower() for r in self.world.registries.values() if r.is_acr]
            known += [c.resource_id.lower() for c in self.world.clusters.values()]
            if scope.lower() not in known:
                tail = m.group(3).split("/")
                raise self._not_found("/".join(tail[2:4]), tail[-1], m.group(2))
        return scope

    def _parse_filter(self, text: str | None) -> tuple[bool, str | None, str | None]:
        """(atScope, assignedTo object id, principalId object id) from a $filter."""
        at_scope, assigned, principal = False, None, None
        if not text:
            return at_scope, assigned, principal
        for clause in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
            clause = clause.strip()
            if _FILTER_ATSCOPE.match(clause):
                at_scope = True
            elif m := _FILTER_ASSIGNED.match(clause):
                assigned = m.group(1).lower()
            elif m := _FILTER_PRINCIPAL.match(clause):
                principal = m.group(1).lower()
            else:
                raise ArmError(
                    400,
                    "UnsupportedQuery",
                    f"The filter '{text}' is not supported. Supported filters "
                    "are either 'atScope()' or 'principalId eq {value} or "
                    "assignedTo('{value}')'.",
                )
        if assigned and principal:
            raise ArmError(400, "UnsupportedQuery", f"The filter '{text}' is not supported.")
        return at_scope, assigned, principal

    def _role_assignments(
        self, req: Request, caller: Caller, raw_scope: str, name: str | None
    ) -> tuple[int, Any]:
        scope = self._check_scope(raw_scope)
        if not scope:
            raise ArmError(400, "InvalidScope", "A role assignment scope is required.")
        self._authorize(caller, "Microsoft.Authorization/roleAssignments/read", scope)
        prefix = self._scope_prefix(scope)
        assignments = self.rbac.assignments()
        if name:
            for sa in assignments:
                if self.assignment_name(sa) == name.lower() and sa.scope.lower() == scope.lower():
                    return 200, self.assignment_body(sa, prefix or self._scope_prefix(sa.scope))
            raise ArmError(404, "RoleAssignmentNotFound", f"The role assignment '{name}' is not found.")
        at_scope, assigned, principal_id = self._parse_filter(req.arg("$filter"))
        holders: set[str] | None = None
        if assigned:
            who = self.rbac.principal_of(assigned)
            holders = {who, *self.rbac.groups_of(who)} if who else set()
        elif principal_id:
            who = self.rbac.principal_of(principal_id)
            holders = {who} if who else set()
        out = []
        for sa in assignments:
            above_or_at = self.rbac.covers(sa.scope, scope)
            below = self.rbac.covers(scope, sa.scope)
            if not (above_or_at or (below and not at_scope)):
                continue
            if holders is not None and sa.assignment.principal not in holders:
                continue
            out.append(self.assignment_body(sa, prefix or self._scope_prefix(sa.scope)))
        return 200, self._page(req, out)

    def _role_definitions(
        self, req: Request, caller: Caller, raw_scope: str, guid: str | None
    ) -> tuple[int, Any]:
        scope = self._check_scope(raw_scope)
        if scope:
            self._authorize(caller, "Microsoft.Authorization/roleDefinitions/read", scope)
        prefix = self._scope_prefix(scope)
        roles = [*BUILTIN_ROLES, *self.rbac.custom_roles()]
        if guid:
            for role in roles:
                if role.guid == guid.lower():
                    if not role.builtin and not prefix:
                        break
                    return 200, self.role_definition_body(role, prefix)
            raise ArmError(
                404,
                "RoleDefinitionDoesNotExist",
                f"The specified role definition with ID '{guid}' does not exist.",
            )
        text = (req.arg("$filter") or "").strip()
        if text:
            m = re.fullmatch(r"(type|roleName)\s+eq\s+'([^']*)'", text, re.IGNORECASE)
            if not m:
                raise ArmError(400, "UnsupportedQuery", f"The filter '{text}' is not supported.")
            if m.group(1).lower() == "type":
                want_builtin = m.group(2).lower() == "builtinrole"
                roles = [r for r in roles if r.builtin == want_builtin]
            else:
                roles = [r for r in roles if r.name.lower() == m.group(2).lower()]
        return 200, {"value": [self.role_definition_body(r, prefix) for r in roles]}
