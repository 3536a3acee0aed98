"""The simulated kubelet + containerd of every sandbox cluster.

For each pod it pulls the images (init containers first) from the real sandbox registries, as a node
of the pod's pool would: the registry host resolves through ``network.resolve(host, viewpoint=<cluster>)``,
TLS is verified against the real host name with the sandbox CA, and every request carries
``X-Sandbox-Viewpoint: <cluster>``. Credentials follow kubelet: the pod's pull secrets (kubelet's
keyring matching), the ACR credential provider (kubelet identity or service principal → Entra token →
``GET /v2/`` challenge → ``POST /oauth2/exchange``; refresh tokens cached per registry until the
kubelet restarts), then containerd's resolver (HEAD manifest → 401 challenge → token, with
``grant_type=password`` and the GET fallback, or anonymously) and fetcher (index → the node's
platform → manifest → config → layers).

The pod status and events are written with the messages kubelet 1.32 and containerd 1.7 produce;
every error text is built from what was observed on the socket or in the HTTP answer.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import logging
import re
import socket
import ssl
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

from sandbox.kube import KubeCluster, iso
from sandbox.world import World

log = logging.getLogger("sandbox.kubelet")

VIEWPOINT_HEADER = "X-Sandbox-Viewpoint"
ACR_REFRESH_TOKEN_USER = "00000000-0000-0000-0000-000000000000"
ACR_SUFFIXES = (".azurecr.io", ".azurecr.cn", ".azurecr.de", ".azurecr.us")
CLUSTER_DNS = "10.0.0.10:53"
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "*/*",
    )
)
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
DOCKERHUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")
# What an hour of image-pull back-off produces (10s, 20s, … capped at 300s; kubelet re-syncs in between).
HOUR_PULLS = 17
HOUR_BACKOFFS = 262


class NetworkLike(Protocol):
    def resolve(self, host: str, viewpoint: str | None = None) -> tuple[str, int] | None: ...


class EntraIssuer(Protocol):
    def issue(self, principal: str, audience: str, tenant: str | None = None) -> str: ...


class PkiLike(Protocol):
    @property
    def ca_pem(self) -> bytes: ...


# --- image references (github.com/distribution/reference) --------------------------------------

_ALNUM = r"[a-z0-9]+"
_SEP = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEP}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^((?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)(?::({_TAG}))?(?:@({_DIGEST}))?$"
)
_IDENTIFIER = re.compile(r"^[a-f0-9]{64}$")


class ReferenceError_(ValueError):
    pass


@dataclass(frozen=True)
class ImageRef:
    written: str  # as in the pod spec
    with_tag: str  # kubelet's applyDefaultImageTag result (what events quote)
    domain: str  # docker.io for Docker Hub
    path: str  # library/nginx
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    @property
    def normalized(self) -> str:
        """containerd's name for it: docker.io/library/nginx:1.27"""
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"

    @property
    def api_host(self) -> str:
        return "registry-1.docker.io" if self.domain == "docker.io" else self.domain


def parse_image(image: str) -> ImageRef:
    """distribution's ParseNormalizedNamed + kubelet's default tag; ReferenceError_ with kubelet's text."""

    def fail(reason: str) -> ReferenceError_:
        return ReferenceError_(f"couldn't parse image reference {json.dumps(image)}: {reason}")

    if _IDENTIFIER.match(image):
        raise fail(f"invalid repository name ({image}), cannot specify 64-byte hexadecimal strings")
    i = image.find("/")
    if i == -1 or (
        not any(ch in image[:i] for ch in ".:")
        and image[:i] != "localhost"
        and image[:i].lower() == image[:i]
    ):
        domain, remainder = "docker.io", image
    else:
        domain, remainder = image[:i], image[i + 1 :]
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in remainder:
        remainder = "library/" + remainder
    remote = remainder.split(":", 1)[0] if ":" in remainder.split("@", 1)[0] else remainder.split("@", 1)[0]
    if remote.lower() != remote:
        raise fail("invalid reference format: repository name must be lowercase")
    m = _REFERENCE.match(f"{domain}/{remainder}")
    if not m:
        raise fail("invalid reference format")
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    if len(name) > 255:
        raise fail("invalid reference format: repository name must not be more than 255 characters")
    if not tag and not digest:
        tag = "latest"
    with_tag = image if digest or image.endswith(f":{tag}") else f"{image}:{tag}"
    return ImageRef(image, with_tag, domain, name.split("/", 1)[1], tag, digest)


# --- kubelet's credential keyring --------------------------------------------------------------


@dataclass(frozen=True)
class Credential:
    username: str
    password: str
    source: str  # "secret:<name>" | "provider"

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.username}\0{self.password}".encode()).hexdigest()[:16]


def _keyring_key(key: str) -> str:
    value = key if key.startswith(("http://", "https://")) else "https://" + key
    parts = urlsplit(value)
    path = parts.path
    if path.startswith(("/v2/", "/v1/")):
        path = path[3:]
    host = parts.netloc
    return host + path if path and path != "/" else host


def _url_match(key: str, image_name: str) -> bool:
    """kubelet credentialprovider URLsMatchStr: glob host parts, equal ports, key path a prefix."""
    k_host, _, k_path = key.partition("/")
    i_host, _, i_path = image_name.partition("/")
    k_h, _, k_port = k_host.partition(":")
    i_h, _, i_port = i_host.partition(":")
    if k_port != i_port:
        return False
    k_parts, i_parts = k_h.lower().split("."), i_h.lower().split(".")
    if len(k_parts) != len(i_parts):
        return False
    for kp, ip in zip(k_parts, i_parts, strict=True):
        pattern = "^" + re.escape(kp).replace(r"\*", "[^.]*") + "$"
        if not re.match(pattern, ip):
            return False
    return i_path.startswith(k_path)


def docker_config_auths(secret: dict[str, Any]) -> dict[str, dict[str, str]] | None:
    """The auths of a pull secret (dockerconfigjson or dockercfg); None when it holds none."""
    data = secret.get("data") or {}
    try:
        if secret.get("type") == "kubernetes.io/dockerconfigjson" and ".dockerconfigjson" in data:
            doc = json.loads(base64.b64decode(data[".dockerconfigjson"]))
            auths = doc.get("auths") if isinstance(doc, dict) else None
        elif secret.get("type") == "kubernetes.io/dockercfg" and ".dockercfg" in data:
            auths = json.loads(base64.b64decode(data[".dockercfg"]))
        else:
            return None
    except (ValueError, TypeError):
        return None
    if not isinstance(auths, dict):
        return None
    out: dict[str, dict[str, str]] = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        user, password = str(entry.get("username", "")), str(entry.get("password", ""))
        if (not user or not password) and entry.get("auth"):
            try:
                user, _, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                continue
        out[str(key)] = {"username": user, "password": password}
    return out


def keyring_lookup(
    auths: list[tuple[str, dict[str, str]]], ref: ImageRef
) -> list[tuple[str, dict[str, str]]]:
    """kubelet BasicDockerKeyring.Lookup over (source, entry) pairs in order."""
    image_name = ref.name
    matched, default = [], []
    for source, entry in auths:
        key = _keyring_key(entry["key"])
        if key in ("index.docker.io", "docker.io") and ref.domain == "docker.io":
            if key == "docker.io":
                matched.append((source, entry))
            else:
                default.append((source, entry))
        elif _url_match(key, image_name):
            matched.append((source, entry))
    return matched or default


# --- HTTP as a node sees it ---------------------------------------------------------------------


class NetError(Exception):
    """A transport failure, with Go's net/http wording in ``str()``."""


class Answer:
    def __init__(
        self, status: int, reason: str, headers: http.client.HTTPMessage, body: bytes, url: str, method: str
    ) -> None:
        self.status, self.reason, self.headers, self.body, self.url, self.method = (
            status,
            reason,
            headers,
            body,
            url,
            method,
        )

    @property
    def status_text(self) -> str:
        return f"{self.status} {http.client.responses.get(self.status, self.reason)}"

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


def public_ip(host: str, cluster: KubeCluster | None = None, world: World | None = None) -> str:
    """The address a node 'dialled' for ``host`` (shown in Go's dial errors)."""
    if world is not None and cluster is not None and cluster.cluster.vnet:
        try:
            reg = world.registry(host)
        except KeyError:
            reg = None
        if reg is not None and cluster.cluster.vnet in reg.private_endpoints:
            h = hashlib.sha256(host.encode()).digest()
            return f"10.224.{h[0] % 8 + 1}.{h[1] % 250 + 4}"
    h = hashlib.sha256(host.encode()).digest()
    first = 20 if host.endswith(ACR_SUFFIXES) else 104
    return f"{first}.{h[0] % 200 + 20}.{h[1]}.{h[2] % 250 + 1}"


class NodeHttp:
    """HTTPS from a cluster's node: names resolve through the sandbox network for that viewpoint."""

    def __init__(self, kubelet: Kubelet, cluster: KubeCluster) -> None:
        self.kubelet = kubelet
        self.cluster = cluster
        self.viewpoint = cluster.name
        self._conns: dict[str, http.client.HTTPSConnection] = {}

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    def _connect(self, host: str) -> http.client.HTTPSConnection:
        conn = self._conns.get(host)
        if conn is not None and conn.sock is not None:
            return conn
        k = self.kubelet
        address = k.network.resolve(host, viewpoint=self.viewpoint)
        if address is None:
            raise NetError(f"dial tcp: lookup {host} on {CLUSTER_DNS}: no such host")
        ip = public_ip(host, self.cluster, k.world)
        memo = k.dial_memo(self.viewpoint, address)
        if memo is not None:
            raise NetError(memo)
        try:
            raw = socket.create_connection(address, timeout=k.timeout)
        except TimeoutError:
            raise k.remember_dial(self.viewpoint, address, f"dial tcp {ip}:443: i/o timeout") from None
        except ConnectionRefusedError:
            raise NetError(f"dial tcp {ip}:443: connect: connection refused") from None
        except OSError as exc:
            raise NetError(f"dial tcp {ip}:443: connect: {exc.strerror or exc}") from None
        try:
            tls = k.ssl_context.wrap_socket(raw, server_hostname=host)
        except ssl.SSLCertVerificationError as exc:
            raw.close()
            raise NetError("tls: failed to verify certificate: " + _x509_text(exc, host)) from None
        except TimeoutError:
            raw.close()
            raise k.remember_dial(self.viewpoint, address, "net/http: TLS handshake timeout") from None
        except (ssl.SSLError, ConnectionResetError) as exc:
            raw.close()
            if isinstance(exc, ConnectionResetError):
                raise NetError(
                    f"read tcp 10.224.0.4:{40000 + address[1] % 20000}->{ip}:443: read: connection reset by peer"
                ) from None
            raise NetError(
                f"remote error: tls: {getattr(exc, 'reason', None) or 'handshake failure'}".lower()
            ) from None
        except OSError:
            raw.close()
            raise NetError("EOF") from None
        tls.settimeout(k.timeout)
        conn = http.client.HTTPSConnection(host, 443, timeout=k.timeout)
        conn.sock = tls
        self._conns[host] = conn
        return conn

    def request(
        self, method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None
    ) -> Answer:
        parts = urlsplit(url)
        host = parts.hostname or ""
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        send = {
            "User-Agent": "containerd/v1.7.27",
            VIEWPOINT_HEADER: self.viewpoint,
            "Host": host,
            **(headers or {}),
        }
        for attempt in range(2):
            conn = self._connect(host)
            try:
                conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for k, v in send.items():
                    conn.putheader(k, v)
                if body is not None:
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                resp = conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    self._conns.pop(host, None)
                return Answer(resp.status, resp.reason, resp.headers, data, url, method)
            except TimeoutError:
                conn.close()
                self._conns.pop(host, None)
                raise NetError("net/http: timeout awaiting response headers") from None
            except (
                http.client.RemoteDisconnected,
                ConnectionResetError,
                BrokenPipeError,
                ssl.SSLError,
                http.client.BadStatusLine,
            ):
                conn.close()
                self._conns.pop(host, None)
                if attempt == 0:
                    continue  # a kept-alive connection the server closed: retry once on a new one
                raise NetError("EOF") from None
        raise NetError("EOF")


def _x509_text(exc: ssl.SSLCertVerificationError, host: str) -> str:
    code = getattr(exc, "verify_code", 0)
    if code in (10, 9):
        return "x509: certificate has expired or is not yet valid"
    if code == 62:
        return f"x509: certificate is valid for other names, not {host}"
    return "x509: certificate signed by unknown authority"


def _challenge(answer: Answer) -> tuple[str, dict[str, str]] | None:
    value = answer.headers.get("WWW-Authenticate") or answer.headers.get("Www-Authenticate")
    if not value:
        return None
    scheme, _, rest = value.partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


def _server_message(answer: Answer) -> str | None:
    doc = answer.json()
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not errors or not isinstance(errors, list):
        return None
    parts = []
    for e in errors:
        if isinstance(e, dict):
            code = str(e.get("code", "unknown")).lower().replace("_", " ")
            parts.append(f"{code}: {e.get('message', '')}" if e.get("message") else code)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"


# --- pull results ------------------------------------------------------------------------------


@dataclass
class PullResult:
    ok: bool
    error: str = ""  # the CRI error text (rpc error: … or an aggregate)
    digest: str = ""
    size: int = 0
    seconds: float = 0.0
    platform_ok: bool = True  # a single-platform image for another architecture (exec format error)
    repo_digest: str = ""


class _PullFailure(Exception):
    def __init__(self, message: str, code: str = "Unknown") -> None:
        super().__init__(message)
        self.code = code


# --- the kubelet -------------------------------------------------------------------------------


class Kubelet:
    """Every cluster's kubelet: ``pull_all()`` once, then pods created later pull as they appear."""

    def __init__(
        self,
        world: World,
        clusters: dict[str, KubeCluster],
        network: NetworkLike,
        entra: EntraIssuer,
        pki: PkiLike,
        registries: Any = None,
        *,
        timeout: float = 2.0,
        workers: int = 8,
        backoff_delay: float = 1.0,
    ) -> None:
        self.world = world
        self.clusters = clusters
        self.network = network
        self.entra = entra
        self.pki = pki
        self.registries = registries
        self.timeout = timeout
        self.backoff_delay = backoff_delay
        self.ssl_context = ssl.create_default_context(cadata=pki.ca_pem.decode())
        # Pulls and pod work run on separate pools: pod tasks wait on pulls, pulls never wait.
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox-kubelet-pull")
        self._pod_executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox-kubelet-pod")
        self._lock = threading.Lock()
        self._refresh: dict[tuple[str, str], str] = {}  # (cluster, login server) -> refresh token
        self._dials: dict[tuple[str, tuple[str, int]], tuple[float, str]] = {}
        self._inflight: dict[tuple[Any, ...], Future[PullResult]] = {}
        self._pending: set[Future[None]] = set()
        self._stopped = threading.Event()
        self.pulls = 0  # image pulls actually performed (cache misses)
        for cluster in clusters.values():
            cluster.on_pod_created(self._pod_created)

    # -- public -------------------------------------------------------------------------------

    def pull_all(self) -> None:
        """Pull every existing pod's images and write statuses/events as an hour of kubelet would."""
        cache: dict[tuple[Any, ...], Future[PullResult]] = {}
        jobs: list[tuple[KubeCluster, dict[str, Any], dict[str, Future[PullResult] | Exception]]] = []
        for cluster in self.clusters.values():
            for pod in cluster.pods():
                if cluster.node(pod["spec"].get("nodeName") or "") is None:  # unscheduled: no kubelet
                    continue
                jobs.append((cluster, pod, self._start_pulls(cluster, pod, cache)))
        for cluster, pod, pulls in jobs:
            self._write_aged(cluster, pod, pulls)
        for cluster in self.clusters.values():
            cluster.refresh_workload_status()

    def retry_failing(self, cluster: str | None = None) -> int:
        """kubelet's image-pull back-off elapsing: every pod waiting on a failed pull pulls again, now.

        A pod whose pull now works starts (as on a node, without a restart); one that still fails gets
        its counts bumped. Running pods are left alone (their images are on the node). Returns how many
        pods pulled again.
        """
        cache: dict[tuple[Any, ...], Future[PullResult]] = {}
        jobs = []
        for c in self.clusters.values():
            if cluster is not None and c.name != cluster:
                continue
            for pod in c.pods():
                if c.node(pod["spec"].get("nodeName") or "") is not None and _waiting_on_pull(pod):
                    jobs.append((c, pod, self._start_pulls(c, pod, cache)))
        for c, pod, pulls in jobs:
            results = {img: (p if isinstance(p, Exception) else p.result()) for img, p in pulls.items()}
            if self._write(c, pod, results, aged=False):
                self._write(c, pod, results, aged=False, backoff=True)
        for c in self.clusters.values():
            c.refresh_workload_status()
        return len(jobs)

    def restart_workload(
        self, cluster: str, namespace: str, name: str, wait: float = 30.0
    ) -> list[dict[str, Any]]:
        """``kubectl rollout restart`` (and the kubelet's cached ACR credentials are dropped)."""
        self.reset_credentials(cluster)
        pods = self.clusters[cluster].restart_workload(namespace, name)
        self.wait_idle(wait)
        return pods

    def reset_credentials(self, cluster: str | None = None) -> None:
        """Node reimage / kubelet restart: cached ACR refresh tokens are forgotten."""
        with self._lock:
            for key in list(self._refresh):
                if cluster is None or key[0] == cluster:
                    del self._refresh[key]

    def wait_idle(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                pending = [f for f in self._pending if not f.done()]
            if not pending:
                return True
            pending[0].result(timeout=max(0.0, deadline - time.monotonic()))
        return False

    def stop(self) -> None:
        self._stopped.set()
        self._pod_executor.shutdown(wait=True, cancel_futures=True)
        self._executor.shutdown(wait=True, cancel_futures=True)

    # -- hooks --------------------------------------------------------------------------------

    def _pod_created(self, cluster: KubeCluster, pod: dict[str, Any]) -> None:
        if self._stopped.is_set() or cluster.node(pod["spec"].get("nodeName") or "") is None:
            return
        future = self._pod_executor.submit(self._run_fresh, cluster, pod)
        with self._lock:
            self._pending = {f for f in self._pending if not f.done()}
            self._pending.add(future)

    # -- pulling ------------------------------------------------------------------------------

    def dial_memo(self, viewpoint: str, address: tuple[str, int]) -> str | None:
        with self._lock:
            hit = self._dials.get((viewpoint, address))
        if hit and time.monotonic() - hit[0] < 30:
            return hit[1]
        return None

    def remember_dial(self, viewpoint: str, address: tuple[str, int], message: str) -> NetError:
        with self._lock:
            self._dials[(viewpoint, address)] = (time.monotonic(), message)
        return NetError(message)

    def _containers(self, pod: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        spec = pod["spec"]
        return [("init", c) for c in spec.get("initContainers") or []] + [
            ("main", c) for c in spec.get("containers") or []
        ]

    def _pod_credentials(
        self, cluster: KubeCluster, pod: dict[str, Any]
    ) -> tuple[list[tuple[str, dict[str, str]]], list[str]]:
        ns = pod["metadata"]["namespace"]
        auths: list[tuple[str, dict[str, str]]] = []
        missing: list[str] = []
        for ref in pod["spec"].get("imagePullSecrets") or []:
            name = ref.get("name", "")
            secret = cluster.store.get("secrets", ns, name)
            if secret is None:
                missing.append(name)
                continue
            for key, entry in (docker_config_auths(secret) or {}).items():
                auths.append((f"secret:{name}", {"key": key, **entry}))
        return auths, missing

    def _start_pulls(
        self, cluster: KubeCluster, pod: dict[str, Any], cache: dict[tuple[Any, ...], Future[PullResult]]
    ) -> dict[str, Future[PullResult] | Exception]:
        node = cluster.node(pod["spec"]["nodeName"])
        assert node is not None
        auths, _ = self._pod_credentials(cluster, pod)
        out: dict[str, Future[PullResult] | Exception] = {}
        for _, c in self._containers(pod):
            image = c.get("image", "")
            if image in out:
                continue
            try:
                ref = parse_image(image)
            except ReferenceError_ as exc:
                out[image] = exc
                continue
            if c.get("imagePullPolicy") == "Never":
                continue
            secret_creds = [
                Credential(e["username"], e["password"], s) for s, e in keyring_lookup(auths, ref)
            ]
            key = (cluster.name, node.pool.name, ref.normalized, tuple(c.fingerprint() for c in secret_creds))
            future = cache.get(key)
            if future is None:
                future = self._executor.submit(
                    self._pull, cluster, node.pool.os, node.pool.arch, ref, secret_creds
                )
                cache[key] = future
            out[image] = future
        return out

    def _pull(
        self, cluster: KubeCluster, os_: str, arch: str, ref: ImageRef, secret_creds: list[Credential]
    ) -> PullResult:
        """kubelet's PullImage: each matching credential in turn, then (AKS) anonymously."""
        with self._lock:
            self.pulls += 1
        started = time.monotonic()
        http = NodeHttp(self, cluster)
        try:
            creds = list(secret_creds)
            acr = ref.domain.endswith(ACR_SUFFIXES)
            if acr:
                provided = self._provider_credential(http, cluster, ref)
                if provided is not None:
                    creds.append(provided)
            attempts: list[Credential | None] = list(creds) or [None]
            if acr and creds:
                attempts.append(None)  # AKS: the identity, then anonymously
            errors: list[str] = []
            for cred in attempts:
                try:
                    result = self._containerd_pull(http, ref, cred, os_, arch)
                except _PullFailure as failure:
                    errors.append(
                        f"rpc error: code = {failure.code} desc = failed to pull and unpack image "
                        f"{json.dumps(ref.normalized)}: {failure}"
                    )
                    continue
                result.seconds = time.monotonic() - started
                return result
            unique = list(dict.fromkeys(errors))
            text = unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"
            return PullResult(False, error=text, seconds=time.monotonic() - started)
        finally:
            http.close()

    def _provider_credential(self, http: NodeHttp, cluster: KubeCluster, ref: ImageRef) -> Credential | None:
        """The ACR credential provider: Entra token → /v2/ challenge → /oauth2/exchange (cached)."""
        login = ref.domain.lower()
        with self._lock:
            cached = self._refresh.get((cluster.name, login))
        if cached:
            return Credential(ACR_REFRESH_TOKEN_USER, cached, "provider")
        c = cluster.cluster
        principal = f"kubelet:{c.name}" if c.identity == "managed" else f"sp:{c.name}"
        if c.identity != "managed" and c.service_principal_secret_expired:
            log.debug("credential provider on %s: service principal secret expired", c.name)
            return None
        # A managed identity (or single-tenant service principal) gets tokens in its home tenant only;
        # a registry in another tenant then refuses the exchange, as ACR does.
        try:
            aad_token = self.entra.issue(principal, self.world.azure.arm_audience, self.world.tenant)
        except Exception as exc:  # Entra refused (expired secret, unknown principal)
            log.debug("credential provider on %s: no Entra token (%s)", c.name, type(exc).__name__)
            return None
        try:
            ping = http.request("GET", f"https://{login}/v2/")
            challenge = _challenge(ping)
            if ping.status != 401 or challenge is None or challenge[0] != "bearer":
                return None
            realm = challenge[1].get("realm", f"https://{login}/oauth2/token")
            exchange_url = realm.replace("/oauth2/token", "/oauth2/exchange")
            if urlsplit(exchange_url).hostname != login:
                return None
            form = urlencode(
                {
                    "grant_type": "access_token",
                    "service": challenge[1].get("service", login),
                    "tenant": self.world.tenant,
                    "access_token": aad_token,
                }
            ).encode()
            answer = http.request(
                "POST", exchange_url, {"Content-Type": "application/x-www-form-urlencoded"}, form
            )
        except NetError as exc:
            log.debug("credential provider on %s for %s: %s", c.name, login, exc)
            return None
        doc = answer.json()
        if answer.status != 200 or not isinstance(doc, dict) or not doc.get("refresh_token"):
            return None
        refresh = str(doc["refresh_token"])
        with self._lock:
            self._refresh[(cluster.name, login)] = refresh
        return Credential(ACR_REFRESH_TOKEN_USER, refresh, "provider")

    def _containerd_pull(
        self, http: NodeHttp, ref: ImageRef, cred: Credential | None, os_: str, arch: str
    ) -> PullResult:
        host = ref.api_host
        base = f"https://{host}/v2/{ref.path}"
        quoted = json.dumps(ref.normalized)
        token: str | None = None
        basic: str | None = None

        def auth_headers(extra: dict[str, str]) -> dict[str, str]:
            if token:
                return {**extra, "Authorization": f"Bearer {token}"}
            if basic:
                return {**extra, "Authorization": f"Basic {basic}"}
            return extra

        def resolve_failure(text: str, code: str = "Unknown") -> _PullFailure:
            return _PullFailure(f"failed to resolve reference {quoted}: {text}", code)

        # resolve: HEAD the manifest; on 401 authorize and retry
        url = f"{base}/manifests/{ref.reference}"
        head_headers = {"Accept": MANIFEST_TYPES}
        answer: Answer | None = None
        authorized = False
        for _ in range(3):
            try:
                answer = http.request("HEAD", url, auth_headers(head_headers))
            except NetError as exc:
                raise resolve_failure(f'failed to do request: Head "{url}": {exc}') from None
            if answer.status != 401:
                break
            challenge = _challenge(answer)
            if challenge is None:
                break
            scheme, params = challenge
            if authorized:
                if params.get("error"):
                    raise resolve_failure(
                        "pull access denied, repository does not exist or may require "
                        f"authorization: server message: {params['error']}: authorization failed"
                    )
                break
            authorized = True
            if scheme == "basic":
                if cred is None:
                    break
                basic = base64.b64encode(f"{cred.username}:{cred.password}".encode()).decode()
                continue
            try:
                token = self._fetch_token(http, params, ref, cred)
            except _PullFailure as failure:
                raise resolve_failure(f"failed to authorize: {failure}") from None
        assert answer is not None
        if answer.status == 404:
            raise resolve_failure(f"{ref.normalized}: not found", "NotFound")
        if answer.status >= 400 or answer.status < 200:
            raise resolve_failure(f"unexpected status from HEAD request to {url}: {answer.status_text}")
        digest = answer.headers.get("Docker-Content-Digest") or ""
        media = (answer.headers.get("Content-Type") or "").split(";")[0].strip()

        def fetch(kind: str, reference: str, accept: str | None = None) -> Answer:
            target = f"{base}/{kind}/{reference}"
            try:
                got = http.request("GET", target, auth_headers({"Accept": accept} if accept else {}))
            except NetError as exc:
                raise _PullFailure(
                    f'failed to copy: httpReadSeeker: failed open: failed to do request: Get "{target}": {exc}'
                ) from None
            if got.status == 404:
                raise _PullFailure(
                    f"failed to copy: httpReadSeeker: failed open: content at {target} not found: not found",
                    "NotFound",
                )
            if got.status >= 300:
                message = _server_message(got)
                detail = f" - Server message: {message}" if message else ""
                raise _PullFailure(
                    f"failed to copy: httpReadSeeker: failed open: unexpected status code {target}: "
                    f"{got.status_text}{detail}"
                )
            return got

        top = fetch("manifests", digest or ref.reference, MANIFEST_TYPES)
        manifest_doc = top.json() or {}
        media = manifest_doc.get("mediaType") or media
        size = len(top.body)
        platform_ok = True
        if media in INDEX_TYPES or "manifests" in manifest_doc:
            chosen = _match_platform(manifest_doc.get("manifests") or [], os_, arch)
            if chosen is None:
                raise _PullFailure("no match for platform in manifest: not found", "NotFound")
            child = fetch("manifests", chosen["digest"], chosen.get("mediaType") or MANIFEST_TYPES)
            manifest_doc = child.json() or {}
            size += len(child.body)
        config = manifest_doc.get("config") or {}
        if config.get("digest"):
            blob = fetch("blobs", config["digest"])
            size += len(blob.body)
            cfg = json.loads(blob.body or b"{}") if blob.body else {}
            if (
                isinstance(cfg, dict)
                and cfg.get("architecture")
                and (cfg.get("architecture") != arch or cfg.get("os", os_) != os_)
            ):
                platform_ok = False
        for layer in manifest_doc.get("layers") or []:
            if layer.get("digest"):
                size += len(fetch("blobs", layer["digest"]).body)
        repo_digest = f"{ref.name}@{digest}" if digest else ""
        return PullResult(True, digest=digest, size=size, platform_ok=platform_ok, repo_digest=repo_digest)

    def _fetch_token(
        self, http: NodeHttp, params: dict[str, str], ref: ImageRef, cred: Credential | None
    ) -> str:
        """containerd's doBearerAuth: OAuth POST with credentials (GET fallback), else anonymous GET."""
        realm = params.get("realm", "")
        service = params.get("service", "")
        scope = params.get("scope") or f"repository:{ref.path}:pull"
        query = urlencode([("scope", scope), ("service", service)])
        get_url = f"{realm}?{query}"
        try:
            if cred is not None:
                try:
                    form = urlencode(
                        {
                            "client_id": "containerd-client",
                            "grant_type": "password",
                            "password": cred.password,
                            "scope": scope,
                            "service": service,
                            "username": cred.username,
                        }
                    ).encode()
                    posted = http.request(
                        "POST",
                        realm,
                        {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
                        form,
                    )
                    if 200 <= posted.status < 300:
                        token = (posted.json() or {}).get("access_token")
                        if token:
                            return str(token)
                        raise _PullFailure("failed to fetch oauth token: no access token in the answer")
                    if not (posted.status in (400, 401, 404) or (posted.status == 405 and cred.username)):
                        raise _PullFailure(
                            f"failed to fetch oauth token: unexpected status from POST request to "
                            f"{realm}: {posted.status_text}"
                        )
                    basic = base64.b64encode(f"{cred.username}:{cred.password}".encode()).decode()
                    got = http.request("GET", get_url, {"Authorization": f"Basic {basic}"})
                    if not 200 <= got.status < 300:
                        raise _PullFailure(
                            f"failed to fetch oauth token: unexpected status from GET request to "
                            f"{get_url}: {got.status_text}"
                        )
                    doc = got.json() or {}
                    return str(doc.get("token") or doc.get("access_token") or "")
                except NetError as exc:
                    raise _PullFailure(
                        f'failed to fetch oauth token: failed to do request: Post "{realm}": {exc}'
                    ) from None
            try:
                got = http.request("GET", get_url)
            except NetError as exc:
                raise _PullFailure(
                    f'failed to fetch anonymous token: failed to do request: Get "{get_url}": {exc}'
                ) from None
            if not 200 <= got.status < 300:
                raise _PullFailure(
                    f"failed to fetch anonymous token: unexpected status from GET request to "
                    f"{get_url}: {got.status_text}"
                )
            doc = got.json() or {}
            return str(doc.get("token") or doc.get("access_token") or "")
        except _PullFailure:
            raise

    # -- writing statuses and events ----------------------------------------------------------

    def _write_aged(
        self, cluster: KubeCluster, pod: dict[str, Any], pulls: dict[str, Future[PullResult] | Exception]
    ) -> None:
        """The pod as it looks after an hour of kubelet work (pods present when the world was built)."""
        results = {img: (p if isinstance(p, Exception) else p.result()) for img, p in pulls.items()}
        self._write(cluster, pod, results, aged=True)

    def _run_fresh(self, cluster: KubeCluster, pod: dict[str, Any]) -> None:
        try:
            created = time.time()
            cluster.record_event(
                pod,
                reason="Scheduled",
                component="default-scheduler",
                message=f"Successfully assigned {pod['metadata']['namespace']}/{pod['metadata']['name']} "
                f"to {pod['spec']['nodeName']}",
                first=created,
                last=created,
            )
            with self._lock:
                inflight = self._inflight
            pulls = self._start_pulls(cluster, pod, inflight)  # pods created together share pulls
            results = {img: (p if isinstance(p, Exception) else p.result()) for img, p in pulls.items()}
            with self._lock:
                for key, fut in list(self._inflight.items()):
                    if fut.done():
                        del self._inflight[key]
            failed = self._write(cluster, pod, results, aged=False)
            cluster.refresh_workload_status()
            if failed and not self._stopped.wait(self.backoff_delay):
                self._write(cluster, pod, results, aged=False, backoff=True)
                cluster.refresh_workload_status()
        except Exception:
            log.exception("kubelet on %s failed for pod %s", cluster.name, pod["metadata"].get("name"))

    def _write(
        self,
        cluster: KubeCluster,
        pod: dict[str, Any],
        results: dict[str, PullResult | Exception],
        aged: bool,
        backoff: bool = False,
    ) -> bool:
        now = time.time()
        created = _parse_ts(pod["metadata"]["creationTimestamp"])
        start = created + 1
        _, missing = self._pod_credentials(cluster, pod)
        if missing and not backoff:
            cluster.record_event(
                pod,
                reason="FailedToRetrieveImagePullSecret",
                type_="Warning",
                message=f"Unable to retrieve some image pull secrets ({', '.join(missing)}); "
                "attempting to pull the image may not succeed.",
                count=HOUR_PULLS if aged else 1,
                first=start,
                last=now - 30 if aged else now,
            )
        restart = pod["spec"].get("restartPolicy", "Always")
        init_statuses: list[dict[str, Any]] = []
        main_statuses: list[dict[str, Any]] = []
        blocked = False  # an init container failed: later containers wait
        failing: list[str] = []
        crashed: list[str] = []
        for kind, c in self._containers(pod):
            name, image = c["name"], c.get("image", "")
            field_path = f"spec.initContainers{{{name}}}" if kind == "init" else f"spec.containers{{{name}}}"
            target = init_statuses if kind == "init" else main_statuses
            base = {
                "name": name,
                "image": image,
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "lastState": {},
            }
            if blocked:
                target.append({**base, "state": {"waiting": {"reason": "PodInitializing"}}})
                continue
            result = results.get(image)
            if isinstance(result, Exception):
                message = f"Failed to apply default image tag {json.dumps(image)}: {result}"
                if not backoff:
                    self._events_invalid(cluster, pod, field_path, message, aged, start, now)
                target.append(
                    {**base, "state": {"waiting": {"reason": "InvalidImageName", "message": message}}}
                )
                failing.append(name)
                blocked = blocked or kind == "init"
                continue
            ref = parse_image(image)
            if c.get("imagePullPolicy") == "Never":
                # Never pulled, so never present on a sandbox node.
                message = (
                    f"Container image {json.dumps(ref.with_tag)} is not present with pull policy of Never"
                )
                if not backoff:
                    count = HOUR_BACKOFFS if aged else 1
                    first = start + 1 if aged else now
                    for reason, text in (
                        ("ErrImageNeverPull", message),
                        ("Failed", "Error: ErrImageNeverPull"),
                    ):
                        cluster.record_event(
                            pod,
                            reason=reason,
                            message=text,
                            type_="Warning",
                            container=field_path,
                            count=count,
                            first=first,
                            last=now,
                        )
                target.append(
                    {**base, "state": {"waiting": {"reason": "ErrImageNeverPull", "message": message}}}
                )
                failing.append(name)
                blocked = blocked or kind == "init"
                continue
            if result is None:  # not pulled (cannot happen: every image was pulled or refused)
                target.append({**base, "state": {"waiting": {"reason": "ContainerCreating"}}})
                continue
            if not result.ok:
                if aged or backoff:
                    waiting = {
                        "reason": "ImagePullBackOff",
                        "message": self._backoff_message(cluster, ref, result),
                    }
                else:
                    waiting = {"reason": "ErrImagePull", "message": result.error}
                self._events_failed(cluster, pod, field_path, ref, result, aged, backoff, start, now)
                target.append({**base, "state": {"waiting": waiting}})
                failing.append(name)
                blocked = blocked or kind == "init"
                continue
            # pulled
            if not aged and not backoff:
                cluster.record_event(
                    pod,
                    reason="Pulling",
                    message=f"Pulling image {json.dumps(ref.with_tag)}",
                    container=field_path,
                    first=now,
                    last=now,
                )
                cluster.record_event(
                    pod,
                    reason="Pulled",
                    container=field_path,
                    first=now,
                    last=now,
                    message=f"Successfully pulled image {json.dumps(ref.with_tag)} in "
                    f"{_go_duration(result.seconds)} ({_go_duration(result.seconds)} "
                    f"including waiting). Image size: {result.size} bytes.",
                )
                cluster.record_event(
                    pod,
                    reason="Created",
                    message=f"Created container: {name}",
                    container=field_path,
                    first=now,
                    last=now,
                )
                cluster.record_event(
                    pod,
                    reason="Started",
                    message=f"Started container {name}",
                    container=field_path,
                    first=now,
                    last=now,
                )
            cid = "containerd://" + hashlib.sha256(f"{pod['metadata']['uid']}/{name}".encode()).hexdigest()
            pulled = {**base, "image": ref.normalized, "imageID": result.repo_digest, "containerID": cid}
            ran = iso(start + 3 if aged else now)
            if not result.platform_ok:
                # exec format error: the binary is for another architecture
                crashed.append(name)
                restarts = 13 if aged else 1
                target.append(
                    {
                        **pulled,
                        "restartCount": restarts,
                        "state": {
                            "waiting": {
                                "reason": "CrashLoopBackOff",
                                "message": f"back-off 5m0s restarting failed container={name} pod={pod['metadata']['name']}"
                                f"_{pod['metadata']['namespace']}({pod['metadata']['uid']})",
                            }
                        },
                        "lastState": {
                            "terminated": {
                                "exitCode": 255,
                                "reason": "Error",
                                "startedAt": iso(now - 20),
                                "finishedAt": iso(now - 20),
                                "containerID": cid,
                            }
                        },
                    }
                )
                if not backoff:
                    cluster.record_event(
                        pod,
                        reason="BackOff",
                        type_="Warning",
                        container=field_path,
                        message=f"Back-off restarting failed container {name} in pod "
                        f"{pod['metadata']['name']}_{pod['metadata']['namespace']}"
                        f"({pod['metadata']['uid']})",
                        count=HOUR_BACKOFFS if aged else 1,
                        first=start + 5,
                        last=now,
                    )
                blocked = blocked or kind == "init"
                continue
            if kind == "init" or restart != "Always":
                target.append(
                    {
                        **pulled,
                        "state": {
                            "terminated": {
                                "exitCode": 0,
                                "reason": "Completed",
                                "startedAt": ran,
                                "finishedAt": iso(start + 4 if aged else now),
                                "containerID": cid,
                            }
                        },
                    }
                )
            else:
                target.append(
                    {**pulled, "ready": True, "started": True, "state": {"running": {"startedAt": ran}}}
                )
        status = dict(pod.get("status") or {})
        status.pop("containerStatuses", None)
        status.pop("initContainerStatuses", None)
        main_names = [c["name"] for c in pod["spec"].get("containers") or []]
        init_failing = any(
            s["state"].get("waiting") and s["state"]["waiting"].get("reason") != "PodInitializing"
            for s in init_statuses
        )
        all_done = (
            not failing
            and not crashed
            and restart != "Always"
            and all("terminated" in s["state"] for s in main_statuses)
        )
        running = not failing and not crashed and not all_done
        transition = iso(start + 4 if aged else now)
        if all_done:
            phase = "Succeeded"
        elif failing or (crashed and not main_statuses):
            phase = "Pending"
        else:
            phase = "Running"
        if crashed and any(s["name"] in crashed for s in init_statuses):
            phase = "Pending"
        unready = [s["name"] for s in main_statuses if not s["ready"]]
        ready = running and not unready
        not_ready: dict[str, Any] = {}
        if not ready:  # the Ready and ContainersReady conditions say the same, as kubelet writes them
            not_ready["reason"] = "PodCompleted" if all_done else "ContainersNotReady"
            if not all_done:
                not_ready["message"] = f"containers with unready status: [{' '.join(unready or main_names)}]"
        conditions = [
            {
                "type": "PodReadyToStartContainers",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": iso(start),
            },
            {
                "type": "Initialized",
                "status": "False" if init_failing else "True",
                "lastProbeTime": None,
                "lastTransitionTime": iso(start),
                **(
                    {
                        "reason": "ContainersNotInitialized",
                        "message": "containers with incomplete status: ["
                        + " ".join(s["name"] for s in init_statuses if "waiting" in s["state"])
                        + "]",
                    }
                    if init_failing
                    else {}
                ),
            },
            *(
                {
                    "type": kind,
                    "status": "True" if ready else "False",
                    "lastProbeTime": None,
                    "lastTransitionTime": transition,
                    **not_ready,
                }
                for kind in ("Ready", "ContainersReady")
            ),
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": pod["metadata"]["creationTimestamp"],
            },
        ]
        status.update({"phase": phase, "conditions": conditions, "containerStatuses": main_statuses})
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        cluster.set_pod_status(pod, status)
        return bool(failing)

    def _backoff_message(self, cluster: KubeCluster, ref: ImageRef, result: PullResult) -> str:
        text = f"Back-off pulling image {json.dumps(ref.with_tag)}"
        major, minor = (int(x) for x in ([*cluster.cluster.kubernetes_version.split("."), "0"][:2]))
        if (major, minor) >= (1, 32):
            text += f": ErrImagePull: {result.error}"
        return text

    def _events_failed(
        self,
        cluster: KubeCluster,
        pod: dict[str, Any],
        field_path: str,
        ref: ImageRef,
        result: PullResult,
        aged: bool,
        backoff: bool,
        start: float,
        now: float,
    ) -> None:
        quoted = json.dumps(ref.with_tag)
        pull_failed = f"Failed to pull image {quoted}: {result.error}"
        if aged:
            last_pull = now - 75
            pulls, backoffs = HOUR_PULLS, HOUR_BACKOFFS
            for reason, message, type_, count, last in (
                ("Pulling", f"Pulling image {quoted}", "Normal", pulls, last_pull),
                ("Failed", pull_failed, "Warning", pulls, last_pull),
                ("Failed", "Error: ErrImagePull", "Warning", pulls, last_pull),
                ("BackOff", f"Back-off pulling image {quoted}", "Normal", backoffs, now - 4),
                ("Failed", "Error: ImagePullBackOff", "Warning", backoffs, now - 4),
            ):
                cluster.record_event(
                    pod,
                    reason=reason,
                    message=message,
                    type_=type_,
                    container=field_path,
                    count=count,
                    first=start + 1,
                    last=last,
                )
            return
        if backoff:
            fresh = [
                ("BackOff", f"Back-off pulling image {quoted}", "Normal"),
                ("Failed", "Error: ImagePullBackOff", "Warning"),
            ]
        else:
            fresh = [
                ("Pulling", f"Pulling image {quoted}", "Normal"),
                ("Failed", pull_failed, "Warning"),
                ("Failed", "Error: ErrImagePull", "Warning"),
            ]
        for reason, message, type_ in fresh:
            cluster.record_event(
                pod, reason=reason, message=message, type_=type_, container=field_path, first=now, last=now
            )

    def _events_invalid(
        self,
        cluster: KubeCluster,
        pod: dict[str, Any],
        field_path: str,
        message: str,
        aged: bool,
        start: float,
        now: float,
    ) -> None:
        count = HOUR_BACKOFFS if aged else 1
        first = start + 1 if aged else now
        cluster.record_event(
            pod,
            reason="InspectFailed",
            message=message,
            type_="Warning",
            container=field_path,
            count=count,
            first=first,
            last=now,
        )
        cluster.record_event(
            pod,
            reason="Failed",
            message="Error: InvalidImageName",
            type_="Warning",
            container=field_path,
            count=count,
            first=first,
            last=now,
        )


def _waiting_on_pull(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    for s in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if (s.get("state") or {}).get("waiting", {}).get("reason") in ("ErrImagePull", "ImagePullBackOff"):
            return True
    return False


def _match_platform(manifests: list[dict[str, Any]], os_: str, arch: str) -> dict[str, Any] | None:
    """containerd's platforms.Default() on the node: os/arch (arm64 also runs arm/v8…v5)."""

    def accepts(p: dict[str, Any]) -> int:
        if p.get("os") != os_:
            return 0
        a, v = p.get("architecture"), p.get("variant") or ""
        if a == arch and (arch != "arm64" or v in ("", "v8")):
            return 3
        if arch == "arm64" and a == "arm" and v in ("v8", "v7", "v6", "v5", ""):
            return {"v8": 2, "v7": 2, "v6": 1, "v5": 1, "": 1}[v]
        return 0

    best, score = None, 0
    for m in manifests:
        s = accepts(m.get("platform") or {})
        if s > score:
            best, score = m, s
    return best


def _parse_ts(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _go_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.3f}".rstrip("0").rstrip(".") + "ms"
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
