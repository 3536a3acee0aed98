"""The one seam to a cluster's Kubernetes API (the official ``kubernetes`` client, 37.x).

Connect from the kubeconfig that ARM's ``listClusterUserCredential`` returns. For Entra-enabled
(AAD) clusters that kubeconfig's user runs the ``kubelogin`` exec plugin; pullwatch never runs it:
it builds the ``kubernetes.client.Configuration`` itself from the kubeconfig's server and CA and
sends a bearer token for the AKS server application (:data:`AKS_SCOPE`) from the function's own
credential. The CLI may use a local kubeconfig context (``from_context``), where the user's own
exec plugins run as kubectl would run them.

Every call has a timeout and counts in :attr:`KubeClient.api_calls`. Requests go through the
client's own request layer (``ApiClient.param_serialize`` / ``call_api``: its Configuration, auth
hook, TLS and connection pool) and answers are read as raw JSON with orjson: the generated API
methods validate every argument with pydantic and build their models on first use (about a second
per process), and deserialising 20,000 pods into models costs seconds and hundreds of MB. Lists
are paged (``limit``/``continue``); :func:`collect` reduces each page to
:class:`shared.workloads.Snapshot` facts as it arrives.

Errors: :class:`KubeUnreachable` (connection refused / timed out / TLS: private clusters),
:class:`KubeAccessDenied` (401 / 403), :class:`KubeError` (any other answer).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from shared.errors import InputError, UpstreamError, reason_of
from shared.snapshot_builder import SnapshotBuilder
from shared.workloads import DOCKER_CFG, DOCKER_CONFIG_JSON, PULL_EVENT_REASONS, Snapshot

log = logging.getLogger("pullwatch.kube")

#: The AKS Entra server application (the same for every AKS cluster) and its token scope.
AKS_SERVER_APP_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"
AKS_SCOPE = f"{AKS_SERVER_APP_ID}/.default"
#: Metadata-only lists, falling back to full objects where a server cannot (as kubectl asks).
METADATA_ONLY_ACCEPT = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"


class KubeError(UpstreamError):
    """The Kubernetes API answered with an error."""


class KubeUnreachable(UpstreamError):
    """The API server cannot be reached (private cluster, network, TLS): the cluster check is
    incomplete."""


class KubeAccessDenied(UpstreamError):
    """The API server refused pullwatch's credential (401) or its RBAC rights (403)."""


#: The cluster-wide list path of every kind pullwatch reads.
LIST_PATHS: Mapping[str, str] = {
    "nodes": "/api/v1/nodes",
    "pods": "/api/v1/pods",
    "serviceaccounts": "/api/v1/serviceaccounts",
    "events": "/api/v1/events",
    "secrets": "/api/v1/secrets",
    "deployments": "/apis/apps/v1/deployments",
    "replicasets": "/apis/apps/v1/replicasets",
    "statefulsets": "/apis/apps/v1/statefulsets",
    "daemonsets": "/apis/apps/v1/daemonsets",
    "jobs": "/apis/batch/v1/jobs",
    "cronjobs": "/apis/batch/v1/cronjobs",
}


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"kubeconfig: {what} is not base64") from None


def _named(items: Any, name: str | None, what: str) -> Mapping[str, Any]:
    for item in items or []:
        if isinstance(item, Mapping) and (name is None or item.get("name") == name):
            body = item.get(what)
            if isinstance(body, Mapping):
                return body
    raise InputError(f"kubeconfig: no {what} named {name!r}")


class KubeClient:
    """``KubeClient(configuration, timeout=…)``; usually built with :meth:`from_kubeconfig`."""

    def __init__(self, configuration: k8s.Configuration, *, timeout: float, name: str = "") -> None:
        if timeout <= 0:
            raise InputError("KubeClient: timeout must be positive")
        self.timeout = timeout
        self.name = name or configuration.host
        self.host = configuration.host
        self.api_calls = 0
        self._api = k8s.ApiClient(configuration)
        self._tempdir: str | None = None

    # construction -----------------------------------------------------------------------------
    @classmethod
    def from_kubeconfig(
        cls,
        kubeconfig: bytes | str,
        *,
        bearer_token: Callable[[], str] | None = None,
        timeout: float,
        context: str | None = None,
    ) -> KubeClient:
        """From a kubeconfig's text (the decoded ``listClusterUserCredential`` value).

        ``bearer_token`` returns an Entra access token for :data:`AKS_SCOPE`; it is asked for on each
        request (the credential caches) and replaces the user's exec / auth-provider plugin, or any
        token in the kubeconfig. Client certificates (local-account clusters) and static tokens are
        used as given.
        """
        try:
            doc = yaml.safe_load(kubeconfig)
        except yaml.YAMLError:
            raise InputError("kubeconfig: not YAML") from None
        if not isinstance(doc, Mapping):
            raise InputError("kubeconfig: not a kubeconfig document")
        ctx_name = context or doc.get("current-context")
        ctx = (
            _named(doc.get("contexts"), ctx_name, "context")
            if ctx_name
            else _named(doc.get("contexts"), None, "context")
        )
        cluster = _named(doc.get("clusters"), ctx.get("cluster"), "cluster")
        user = _named(doc.get("users"), ctx.get("user"), "user") if ctx.get("user") else {}
        server = cluster.get("server")
        if not isinstance(server, str) or not server.startswith("https://"):
            raise InputError("kubeconfig: the cluster's server must be an https:// URL")
        config = k8s.Configuration(host=server.rstrip("/"))
        config.retries = 0  # an unreachable server fails at once; the caller decides about retries
        if cluster.get("insecure-skip-tls-verify"):
            config.verify_ssl = False
        if cluster.get("certificate-authority-data"):
            config.ssl_ca_cert = None
            config.ca_cert_data = _b64(
                str(cluster["certificate-authority-data"]), "certificate-authority-data"
            ).decode("ascii", "replace")
        elif cluster.get("certificate-authority"):
            config.ssl_ca_cert = str(cluster["certificate-authority"])
        tempdir = None
        if bearer_token is not None:

            def refresh(cfg: k8s.Configuration) -> None:
                cfg.api_key["BearerToken"] = bearer_token()

            config.api_key_prefix["BearerToken"] = "Bearer"
            config.api_key["BearerToken"] = ""  # present, so the client asks the hook on each request
            config.refresh_api_key_hook = refresh  # type: ignore[assignment]
        elif user.get("token"):
            config.api_key["BearerToken"] = str(user["token"])
            config.api_key_prefix["BearerToken"] = "Bearer"
        elif user.get("client-certificate-data") and user.get("client-key-data"):
            tempdir = tempfile.mkdtemp(prefix="pullwatch-kube-")
            cert, key = Path(tempdir) / "client.crt", Path(tempdir) / "client.key"
            for path, field_name in ((cert, "client-certificate-data"), (key, "client-key-data")):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(_b64(str(user[field_name]), field_name))
            config.cert_file, config.key_file = str(cert), str(key)
        elif user.get("exec") or user.get("auth-provider"):
            raise InputError(
                "kubeconfig: the user authenticates with an exec/auth-provider plugin "
                "(kubelogin); pass bearer_token for Entra-enabled clusters"
            )
        out = cls(config, timeout=timeout, name=str(ctx_name or server))
        if tempdir is not None:
            out._tempdir = tempdir
            weakref.finalize(out, shutil.rmtree, tempdir, True)
        return out

    @classmethod
    def from_context(
        cls, path: str | Path | None = None, context: str | None = None, *, timeout: float = 10.0
    ) -> KubeClient:
        """From a local kubeconfig (default ``$KUBECONFIG`` / ``~/.kube/config``) and context, for
        the CLI: the kubernetes package's loader runs the user's exec plugins as kubectl would."""
        from kubernetes import config as k8s_config
        from kubernetes.config.config_exception import ConfigException

        config = k8s.Configuration()
        try:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(path) if path else None,
                context=context,
                client_configuration=config,
                persist_config=False,
            )
        except (ConfigException, OSError) as exc:
            raise InputError(f"kubeconfig {path or '~/.kube/config'}: {exc}") from None
        config.retries = 0
        return cls(config, timeout=timeout, name=context or str(config.host))

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]
        if self._tempdir:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # calls ------------------------------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        query: Sequence[tuple[str, Any]] = (),
        body: Mapping[str, Any] | None = None,
        accept: str = "application/json",
    ) -> Any:
        """One API call through the official client's request layer (its Configuration, auth,
        TLS and pool), with the timeout; the body is read as raw JSON (orjson), not as models."""
        self.api_calls += 1
        headers = {"Accept": accept, "User-Agent": "pullwatch"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            request = self._api.param_serialize(
                method=method,
                resource_path=path,
                query_params=list(query),
                header_params=headers,
                body=dict(body) if body is not None else None,
                auth_settings=["BearerToken"],
            )
            response = self._api.call_api(*request, _request_timeout=(self.timeout, self.timeout))
            data = response.read()  # type: ignore[no-untyped-call]
        except ApiException:  # the client's TLS failures come as status 0
            raise KubeUnreachable(
                f"Kubernetes API server of {self.name} unreachable ({what}): "
                "TLS handshake or certificate verification failed",
                code="tls",
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeUnreachable(
                f"Kubernetes API server of {self.name} unreachable ({what}): {reason_of(exc)}",
                code="unreachable",
            ) from None
        status = int(response.status)
        if not 200 <= status < 300:
            reason = _status_reason(data, str(response.reason or "error"))
            if status in (401, 403):
                raise KubeAccessDenied(
                    f"Kubernetes API of {self.name} refused {what}: {status} {reason}",
                    status=status,
                    code=reason,
                )
            raise KubeError(
                f"Kubernetes API of {self.name} failed {what}: {status} {reason}", status=status, code=reason
            )
        if not data:
            return None
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            raise KubeError(
                f"Kubernetes API of {self.name} answered {what} with a body that is not JSON"
            ) from None

    def list_objects(
        self,
        kind: str,
        *,
        field_selector: str | None = None,
        label_selector: str | None = None,
        page_size: int = 500,
        metadata_only: bool = False,
        namespace: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every object of ``kind`` (see :data:`LIST_PATHS`) cluster-wide, or in ``namespace``
        only (its namespaced path: a namespace-scoped RBAC role is enough), page by page."""
        if kind not in LIST_PATHS:
            raise InputError(f"unknown kind {kind!r} (expected one of: {', '.join(LIST_PATHS)})")
        path = LIST_PATHS[kind]
        if namespace is not None:
            if kind == "nodes":
                raise InputError("nodes are not namespaced")
            base, _, plural = path.rpartition("/")
            path = f"{base}/namespaces/{_q(namespace)}/{plural}"
        if page_size <= 0:
            raise InputError("page_size must be positive")
        token: str | None = None
        accept = METADATA_ONLY_ACCEPT if metadata_only else "application/json"
        seen: set[str] = set()
        restarts = 0
        while True:
            query: list[tuple[str, Any]] = [("limit", page_size)]
            if token:
                query.append(("continue", token))
            if field_selector:
                query.append(("fieldSelector", field_selector))
            if label_selector:
                query.append(("labelSelector", label_selector))
            try:
                page = self._request("GET", path, f"list {kind}", query=query, accept=accept) or {}
            except KubeError as exc:
                # 410 Expired: the continue token outlived the server's compaction window. As
                # client-go's pager does, list again from the start; objects already yielded (by
                # uid) are skipped, so a caller never sees one twice.
                if exc.status != 410 or not token or restarts >= 2:
                    raise
                restarts += 1
                token = None
                continue
            for item in page.get("items") or []:
                if not isinstance(item, dict):
                    continue
                uid = (item.get("metadata") or {}).get("uid")
                if uid:
                    if uid in seen:
                        continue
                    seen.add(uid)
                yield item
            token = (page.get("metadata") or {}).get("continue") or None
            if not token:
                return

    def _get_or_none(self, path: str, what: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] | None = self._request("GET", path, what)
            return found
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def _create(
        self, path: str, what: str, body: Mapping[str, Any], *, exist_ok: bool = False
    ) -> dict[str, Any]:
        try:
            created: dict[str, Any] = self._request("POST", path, what, body=body) or {}
            return created
        except KubeError as exc:
            if exist_ok and exc.status == 409:
                return {}
            raise

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_or_none(
            f"/api/v1/namespaces/{_q(namespace)}/secrets/{_q(name)}", f"read secret {namespace}/{name}"
        )

    def ensure_namespace(self, name: str, labels: Mapping[str, str]) -> None:
        if self._get_or_none(f"/api/v1/namespaces/{_q(name)}", f"read namespace {name}") is None:
            body = {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": dict(labels)},
            }
            self._create("/api/v1/namespaces", f"create namespace {name}", body, exist_ok=True)

    def ensure_service_account(self, namespace: str, name: str, labels: Mapping[str, str]) -> None:
        """A service account that mounts no token by default (created if missing)."""
        base = f"/api/v1/namespaces/{_q(namespace)}/serviceaccounts"
        if self._get_or_none(f"{base}/{_q(name)}", f"read service account {namespace}/{name}") is None:
            body = {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "automountServiceAccountToken": False,
                "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            }
            self._create(base, f"create service account {namespace}/{name}", body, exist_ok=True)

    def create_pod(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._create(f"/api/v1/namespaces/{_q(namespace)}/pods", f"create pod in {namespace}", body)

    def read_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_or_none(
            f"/api/v1/namespaces/{_q(namespace)}/pods/{_q(name)}", f"read pod {namespace}/{name}"
        )

    def delete_pod(self, namespace: str, name: str) -> bool:
        """Delete now (grace period 0); False when it was already gone."""
        try:
            self._request(
                "DELETE",
                f"/api/v1/namespaces/{_q(namespace)}/pods/{_q(name)}",
                f"delete pod {namespace}/{name}",
                query=[("gracePeriodSeconds", 0)],
                body={"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0},
            )
            return True
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise

    def pod_events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        page = (
            self._request(
                "GET",
                f"/api/v1/namespaces/{_q(namespace)}/events",
                f"list events of pod {namespace}/{name}",
                query=[("fieldSelector", f"involvedObject.kind=Pod,involvedObject.name={name}")],
            )
            or {}
        )
        return [e for e in page.get("items") or [] if isinstance(e, dict)]


def _q(segment: str) -> str:
    return quote(segment, safe="")


def _status_reason(data: bytes | None, default: str) -> str:
    """The ``reason`` of a Kubernetes ``Status`` body (never its message: it may echo input)."""
    if data:
        try:
            status = orjson.loads(data)
        except orjson.JSONDecodeError:
            return default
        if isinstance(status, dict) and status.get("reason"):
            return str(status["reason"])
    return default


def collect(
    client: KubeClient,
    cluster_id: str,
    *,
    read_secrets: bool,
    page_size: int = 500,
    now: Callable[[], datetime] | None = None,
) -> Snapshot:
    """Everything the cluster-side checks read, in a constant number of cluster-wide list calls
    (each paged): nodes, controllers, pods, service accounts, pull-related pod events (one list
    per reason, with a field selector), and secrets — names only (metadata-only list) plus the
    pull-secret types (two type field selectors; content only when ``read_secrets``)."""
    started = client.api_calls
    b = SnapshotBuilder(cluster_id, read_secrets=read_secrets)
    for kind, add in (
        ("nodes", b.add_node),
        ("deployments", b.add_deployment),
        ("replicasets", b.add_replicaset),
        ("statefulsets", b.add_statefulset),
        ("daemonsets", b.add_daemonset),
        ("jobs", b.add_job),
        ("cronjobs", b.add_cronjob),
        ("pods", b.add_pod),
        ("serviceaccounts", b.add_service_account),
    ):
        for obj in client.list_objects(kind, page_size=page_size):
            add(obj)
    # Reading events and secrets may be refused by a narrower RBAC role (AKS "RBAC Reader" has no
    # secrets): the snapshot then says so, and the checks that need them report CHECK_INCOMPLETE
    # instead of calling every named secret missing.
    try:
        for reason in PULL_EVENT_REASONS:
            for obj in client.list_objects(
                "events", page_size=page_size, field_selector=f"involvedObject.kind=Pod,reason={reason}"
            ):
                b.add_event(obj)
    except KubeAccessDenied as exc:
        b.unreadable["events"] = str(exc)
    # Pull-secret types first (content only with read_secrets), then every secret's name so that
    # a secret of another type that a pod names is told apart from a missing one.
    try:
        for stype in (DOCKER_CONFIG_JSON, DOCKER_CFG):
            for obj in client.list_objects(
                "secrets", page_size=page_size, field_selector=f"type={stype}", metadata_only=not read_secrets
            ):
                b.add_secret(obj, known_type=stype)
        for obj in client.list_objects("secrets", page_size=page_size, metadata_only=True):
            obj.pop("data", None)  # a server that ignores the metadata-only Accept still sends no content on
            b.add_secret(obj)
    except KubeAccessDenied as exc:
        b.forget_secrets()
        b.unreadable["secrets"] = str(exc)
    clock = now or (lambda: datetime.now(UTC))
    return b.build(api_calls=client.api_calls - started, collected_at=clock())
