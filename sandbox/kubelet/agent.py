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

The jobs live in their own modules: ``reference`` (image names), ``keyring`` (pull secrets),
``node_http`` (the node's HTTP), ``containerd`` (pulls), ``status`` (pod statuses and events).
"""

from __future__ import annotations

import ssl
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from sandbox.kube import KubeCluster
from sandbox.kubelet.containerd import ImagePuller, PullResult
from sandbox.kubelet.keyring import Credential, docker_config_auths, keyring_lookup
from sandbox.kubelet.node_http import NetError, NetworkLike
from sandbox.kubelet.reference import ReferenceError_, parse_image
from sandbox.kubelet.status import StatusWriter, _waiting_on_pull
from sandbox.world import World


class EntraIssuer(Protocol):
    def issue(self, principal: str, audience: str, tenant: str | None = None) -> str: ...


class PkiLike(Protocol):
    @property
    def ca_pem(self) -> bytes: ...


# --- the kubelet -------------------------------------------------------------------------------


class Kubelet(ImagePuller, StatusWriter):
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
