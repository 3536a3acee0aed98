"""The Kubernetes HTTP API: discovery, get/list/watch/create/update/patch/delete with paging, selectors,
metadata-only lists and bearer-token authentication, answering ``Status`` bodies as the API server does.
"""

from __future__ import annotations

import base64
import bisect
import copy
import json
import re
import secrets
import time
import uuid
from typing import Any
from urllib.parse import unquote

import orjson

from sandbox.httpserver import Request, Response
from sandbox.kube.resources import (
    AKS_SERVER_ID,
    GROUPS,
    PARTIAL_LIST,
    RESOURCES,
    SYSTEM_NAMESPACES,
    Resource,
    _field_value,
    _json,
    _merge_patch,
    iso,
    not_found,
    status_response,
)
from sandbox.kube.selectors import SelectorError, parse_field_selector, parse_label_selector


class ApiServer:
    """Serves ``self.store`` over HTTPS (mixed into ``KubeCluster``)."""

    def expire_continue_tokens(self) -> None:
        """Compact: every continue token issued so far is now too old (410 Expired)."""
        self.store.compacted_rv = self.store.rv + 1
        self.store.next_rv()

    # -- the HTTP API -------------------------------------------------------------------------

    def _handle(self, req: Request) -> Response:
        self.log.count("kubernetes", self.name)
        self.sync_nodes()
        if not self._authenticated(req):
            return status_response(401, "Unauthorized", "Unauthorized")
        path = req.path.rstrip("/") or "/"
        try:
            if path in ("/version", "/version/"):
                return _json(200, self._version())
            if path == "/api":
                return _json(
                    200,
                    {
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [
                            {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.fqdn}:443"}
                        ],
                    },
                )
            if path == "/apis":
                return _json(200, self._group_list())
            if path in ("/api/v1", "/apis/apps/v1", "/apis/batch/v1"):
                return _json(200, self._resource_list(path.removeprefix("/api/").removeprefix("/apis/")))
            if path in ("/apis/apps", "/apis/batch"):
                group = next(g for g in self._group_list()["groups"] if g["name"] == path.rsplit("/", 1)[1])
                return _json(200, {"kind": "APIGroup", "apiVersion": "v1", **group})
            if path in ("/healthz", "/livez", "/readyz"):
                return Response(200, b"ok", content_type="text/plain; charset=utf-8")
            return self._resource_request(req, path)
        except SelectorError as exc:
            return status_response(400, "BadRequest", str(exc))

    def _authenticated(self, req: Request) -> bool:
        header = req.header("Authorization") or ""
        if not header.lower().startswith("bearer "):
            return False
        token = header[7:].strip()
        if not self.cluster.aad:
            return secrets.compare_digest(token, self.token)
        if self.entra is None:
            return False
        try:
            claims = self.entra.verify(token)
        except Exception:  # an invalid/expired token: 401, whatever the verifier raised
            return False
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        return (AKS_SERVER_ID in auds or f"api://{AKS_SERVER_ID}" in auds) and claims.get(
            "tid"
        ) == self.world.tenant

    def _version(self) -> dict[str, Any]:
        v = self.cluster.kubernetes_version
        major, minor = [*v.split("."), "0", "0"][:2]
        return {
            "major": major,
            "minor": minor,
            "gitVersion": f"v{v}",
            "gitCommit": "0" * 40,
            "gitTreeState": "clean",
            "buildDate": "2025-07-15T18:20:42Z",
            "goVersion": "go1.23.10",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    def _group_list(self) -> dict[str, Any]:
        groups = []
        for gv in ("apps/v1", "batch/v1"):
            g, v = gv.split("/")
            groups.append(
                {
                    "name": g,
                    "versions": [{"groupVersion": gv, "version": v}],
                    "preferredVersion": {"groupVersion": gv, "version": v},
                }
            )
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def _resource_list(self, gv: str) -> dict[str, Any]:
        resources = []
        for r in GROUPS[gv]:
            resources.append(
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": list(r.verbs),
                    **({"shortNames": list(r.short)} if r.short else {}),
                }
            )
            if r.plural in (
                "pods",
                "deployments",
                "replicasets",
                "statefulsets",
                "daemonsets",
                "jobs",
                "cronjobs",
                "namespaces",
                "nodes",
            ):
                resources.append(
                    {
                        "name": f"{r.plural}/status",
                        "singularName": "",
                        "namespaced": r.namespaced,
                        "kind": r.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}

    _PATH = re.compile(
        r"^/(?:api/(?P<cv>v1)|apis/(?P<g>[a-z.]+)/(?P<gv>v1))"
        r"(?:/namespaces/(?P<ns>[^/]+)(?=/[a-z]+(?:/|$)))?"
        r"/(?P<res>[a-z]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[a-z]+))?)?$"
    )

    def _resource_request(self, req: Request, path: str) -> Response:
        m = self._PATH.match(path)
        if not m:
            return status_response(404, "NotFound", "the server could not find the requested resource", {})
        gv = "v1" if m.group("cv") else f"{m.group('g')}/{m.group('gv')}"
        ns, plural = m.group("ns"), m.group("res")
        name, sub = m.group("name"), m.group("sub")
        if (
            ns is not None
            and plural not in RESOURCES
            and plural in ("status", "finalize")
            and gv == "v1"
            and name is None
        ):
            # /api/v1/namespaces/<name>/status and the like
            ns, plural, name, sub = None, "namespaces", ns, plural
        resource = RESOURCES.get(plural)
        if resource is None or resource.api_version != gv or (ns is not None and not resource.namespaced):
            return status_response(404, "NotFound", "the server could not find the requested resource", {})
        ns = unquote(ns) if ns else None
        name = unquote(name) if name else None
        if sub is not None and sub != "status":
            return status_response(404, "NotFound", "the server could not find the requested resource", {})
        method = req.method.upper()
        if name is None:
            if method == "GET":
                if (req.arg("watch") or "").lower() in ("1", "true"):
                    return self._watch(req, resource, ns)
                return self._list(req, resource, ns)
            if method == "POST":
                return self._create(req, resource, ns)
            if method == "DELETE":
                return status_response(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            return status_response(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        if method == "GET":
            return self._get(req, resource, ns, name)
        if method == "DELETE":
            return self._delete(resource, ns, name)
        if method in ("PUT", "PATCH"):
            return self._update(req, resource, ns, name, sub, method)
        return status_response(
            405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )

    def _partial(self, req: Request, kind: str) -> bool:
        accept = req.header("Accept") or ""
        return any(
            f"as={kind}" in part.replace(" ", "") and "g=meta.k8s.io" in part for part in accept.split(",")
        )

    def _get(self, req: Request, resource: Resource, ns: str | None, name: str) -> Response:
        obj = self.store.get(resource.plural, ns, name)
        if obj is None:
            return not_found(resource, name)
        if self._partial(req, "PartialObjectMetadata"):
            return _json(
                200,
                {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                },
            )
        k = self.store.key(ns, name)
        head = json.dumps({"kind": resource.kind, "apiVersion": resource.api_version}, separators=(",", ":"))
        body = head[:-1].encode() + b"," + self.store.object_json(resource.plural, k)[1:]
        return Response(200, body, content_type="application/json")

    def _continue_start(self, token: str) -> tuple[str | None, Response | None]:
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            rv, start = int(data["rv"]), str(data["start"])
            if data.get("v") != "meta.k8s.io/v1":
                raise ValueError("bad version")
        except (ValueError, KeyError, TypeError):
            return None, status_response(
                400, "BadRequest", "invalid continue token: continue key is not valid: could not decode it"
            )
        issued = self._rv_times.get(rv)
        if rv < self.store.compacted_rv or (issued is not None and time.time() - issued > self.continue_ttl):
            return None, status_response(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. You can start "
                "a new list without the continue parameter, or use the continue token in this response to "
                "retrieve the remainder of the results. Continuing with the provided token results in an "
                "inconsistent list - objects that were created, modified, or deleted between the time the first "
                "chunk was returned and now may show up in the list.",
            )
        return start, None

    def _list(self, req: Request, resource: Resource, ns: str | None) -> Response:
        labels = parse_label_selector(req.arg("labelSelector") or "")
        fields = parse_field_selector(req.arg("fieldSelector") or "", resource)
        try:
            limit = int(req.arg("limit") or 0)
        except ValueError:
            return status_response(400, "BadRequest", f"invalid limit: {req.arg('limit')!r}")
        cont = req.arg("continue") or ""
        partial = self._partial(req, PARTIAL_LIST)
        with self.store.lock:
            keys = self.store.sorted_keys(resource.plural)
            lo, hi = 0, len(keys)
            if ns is not None:
                lo = bisect.bisect_left(keys, f"{ns}/")
                hi = bisect.bisect_left(keys, f"{ns}0")  # '0' follows '/'
            if cont:
                start, error = self._continue_start(cont)
                if error is not None:
                    return error
                assert start is not None
                lo = max(lo, bisect.bisect_left(keys, start))
            chosen: list[str] = []
            i = lo
            while i < hi and (limit <= 0 or len(chosen) < limit):
                k = keys[i]
                i += 1
                obj = self.store.raw(resource.plural, k)
                if obj is None:
                    continue
                if labels:
                    lb = obj["metadata"].get("labels") or {}
                    if not all(t(lb) for t in labels):
                        continue
                if fields and not all((_field_value(obj, f) == v) != neg for f, neg, v in fields):
                    continue
                chosen.append(k)
            rv = self.store.rv
            meta: dict[str, Any] = {"resourceVersion": str(rv)}
            if limit > 0 and i < hi and chosen:
                self._rv_times.setdefault(rv, time.time())
                token = {"v": "meta.k8s.io/v1", "rv": rv, "start": chosen[-1] + "\x00"}
                meta["continue"] = (
                    base64.urlsafe_b64encode(json.dumps(token, separators=(",", ":")).encode())
                    .decode()
                    .rstrip("=")
                )
                if not labels and not fields:
                    meta["remainingItemCount"] = hi - i
            if partial:
                items = [
                    orjson.dumps(
                        {
                            "kind": "PartialObjectMetadata",
                            "apiVersion": "meta.k8s.io/v1",
                            "metadata": (self.store.raw(resource.plural, k) or {}).get("metadata"),
                        }
                    )
                    for k in chosen
                ]
                head = {"kind": PARTIAL_LIST, "apiVersion": "meta.k8s.io/v1", "metadata": meta}
            else:
                items = [self.store.object_json(resource.plural, k) for k in chosen]
                head = {"kind": f"{resource.kind}List", "apiVersion": resource.api_version, "metadata": meta}
        prefix = json.dumps(head, separators=(",", ":"))[:-1].encode()
        body = prefix + b',"items":[' + b",".join(items) + b"]}"
        return Response(200, body, content_type="application/json")

    def _watch(self, req: Request, resource: Resource, ns: str | None) -> Response:
        """A watch answered in one piece: the changes after ``resourceVersion`` (all objects as ADDED
        without one), waiting up to a second for some, then the stream ends as when ``timeoutSeconds``
        elapses. Deletions are not replayed."""
        labels = parse_label_selector(req.arg("labelSelector") or "")
        fields = parse_field_selector(req.arg("fieldSelector") or "", resource)
        try:
            since = int(req.arg("resourceVersion") or 0)
        except ValueError:
            return status_response(
                400, "BadRequest", f"invalid resourceVersion: {req.arg('resourceVersion')!r}"
            )
        try:
            wait = min(1.0, float(req.arg("timeoutSeconds") or 1.0))
        except ValueError:
            wait = 1.0
        deadline = time.monotonic() + wait
        while True:
            lines = []
            for obj in self.store.values(resource.plural, ns):
                if int(obj["metadata"].get("resourceVersion") or 0) <= since:
                    continue
                if labels and not all(t(obj["metadata"].get("labels") or {}) for t in labels):
                    continue
                if fields and not all((_field_value(obj, f) == v) != neg for f, neg, v in fields):
                    continue
                full = {"kind": resource.kind, "apiVersion": resource.api_version, **obj}
                lines.append(json.dumps({"type": "ADDED" if since == 0 else "MODIFIED", "object": full}))
            if lines or since == 0 or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        return Response(200, "".join(line + "\n" for line in lines).encode(), content_type="application/json")

    def _create(self, req: Request, resource: Resource, ns: str | None) -> Response:
        try:
            obj = req.json()
        except ValueError:
            return status_response(
                400, "BadRequest", "the object provided is unrecognized (body is not JSON)"
            )
        if not isinstance(obj, dict):
            return status_response(400, "BadRequest", "the object provided is unrecognized")
        obj.pop("kind", None)
        obj.pop("apiVersion", None)
        meta = obj.setdefault("metadata", {}) or {}
        obj["metadata"] = meta
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = self._generate_name(
                resource.plural, ns, str(meta["generateName"]), str(uuid.uuid4())
            )
        name = meta.get("name")
        kind_name = resource.plural if not resource.group else f"{resource.plural}.{resource.group}"
        if not name:
            return status_response(
                422,
                "Invalid",
                f'{resource.kind} "" is invalid: metadata.name: Required value: '
                "name or generateName is required",
                {
                    "kind": resource.kind,
                    "causes": [
                        {
                            "reason": "FieldValueRequired",
                            "message": "Required value: name or generateName is required",
                            "field": "metadata.name",
                        }
                    ],
                },
            )
        if resource.namespaced:
            if meta.get("namespace") not in (None, ns):
                return status_response(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = ns
            if self.store.get("namespaces", None, ns or "") is None:
                return status_response(
                    404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"}
                )
        with self.store.lock:
            if self.store.get(resource.plural, ns, name) is not None:
                return status_response(
                    409,
                    "AlreadyExists",
                    f'{kind_name} "{name}" already exists',
                    {
                        "name": name,
                        "kind": resource.plural,
                        **({"group": resource.group} if resource.group else {}),
                    },
                )
            now = time.time()
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = iso(now)
            if resource.plural == "pods":
                spec = obj.setdefault("spec", {})
                sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
                if self.store.get("serviceaccounts", ns, sa_name) is None:
                    return status_response(
                        403,
                        "Forbidden",
                        f'pods "{name}" is forbidden: error looking up service account '
                        f'{ns}/{sa_name}: serviceaccount "{sa_name}" not found',
                        {"name": name, "kind": "pods"},
                    )
                self._admit_and_schedule(obj, now)
            elif resource.plural == "namespaces":
                obj.setdefault("spec", {"finalizers": ["kubernetes"]})
                obj["status"] = {"phase": "Active"}
                meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
            elif resource.plural == "serviceaccounts" or resource.plural == "secrets":
                if resource.plural == "secrets":
                    obj.setdefault("type", "Opaque")
                    if "stringData" in obj:
                        data = obj.setdefault("data", {})
                        for k, v in (obj.pop("stringData") or {}).items():
                            data[k] = base64.b64encode(str(v).encode()).decode()
            else:
                obj.setdefault("status", {})
            if resource.plural not in ("secrets", "serviceaccounts", "events"):
                meta.setdefault("generation", 1)
            self.store.put(resource.plural, obj)
        if resource.plural == "pods":
            self._scheduling_event(obj, time.time())
            self._fire(self._on_create, obj)
        created = self._get(req, resource, ns, name)
        created.status = 201
        return created

    def _delete(self, resource: Resource, ns: str | None, name: str) -> Response:
        obj = self.store.get(resource.plural, ns, name)
        if obj is None:
            return not_found(resource, name)
        if resource.plural == "pods":
            self._delete_pod(ns or "", name)
        elif resource.plural == "namespaces":
            if name in SYSTEM_NAMESPACES:
                return status_response(
                    403,
                    "Forbidden",
                    f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                    {"name": name, "kind": "namespaces"},
                )
            for plural, r in RESOURCES.items():
                if r.namespaced:
                    for o in self.store.values(plural, name):
                        if plural == "pods":
                            self._delete_pod(name, o["metadata"]["name"])
                        else:
                            self.store.delete(plural, name, o["metadata"]["name"])
            self.store.delete("namespaces", None, name)
            gone = copy.deepcopy(obj)
            gone["metadata"]["deletionTimestamp"] = iso(time.time())
            gone["status"] = {"phase": "Terminating"}
            return _json(200, {"kind": resource.kind, "apiVersion": resource.api_version, **gone})
        else:
            self.store.delete(resource.plural, ns, name)
        if resource.plural == "pods":
            gone = copy.deepcopy(obj)
            gone["metadata"]["deletionTimestamp"] = iso(time.time())
            gone["metadata"]["deletionGracePeriodSeconds"] = 0
            return _json(200, {"kind": resource.kind, "apiVersion": resource.api_version, **gone})
        details: dict[str, Any] = {"name": name, "kind": resource.plural, "uid": obj["metadata"].get("uid")}
        if resource.group:
            details["group"] = resource.group
        return _json(
            200,
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details},
        )

    def _update(
        self, req: Request, resource: Resource, ns: str | None, name: str, sub: str | None, method: str
    ) -> Response:
        with self.store.lock:
            current = self.store.get(resource.plural, ns, name)
            if current is None:
                return not_found(resource, name)
            try:
                body = req.json()
            except ValueError:
                return status_response(400, "BadRequest", "the body of the request is not valid JSON")
            if not isinstance(body, dict):
                return status_response(400, "BadRequest", "the body of the request must be an object")
            if method == "PUT":
                body.pop("kind", None)
                body.pop("apiVersion", None)
                if sub == "status":
                    current["status"] = body.get("status", {})
                else:
                    keep = current["metadata"]
                    new_meta = body.get("metadata") or {}
                    for k in ("uid", "creationTimestamp", "namespace", "name"):
                        new_meta[k] = keep.get(k)
                    body["metadata"] = new_meta
                    body.setdefault("status", current.get("status", {}))
                    current.clear()
                    current.update(body)
            else:
                if sub == "status":
                    body = {"status": body.get("status", {})}
                body.pop("kind", None)
                body.pop("apiVersion", None)
                _merge_patch(current, body)
            self.store.touch(resource.plural, current)
        return self._get(req, resource, ns, name)
