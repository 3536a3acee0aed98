"""A Kubernetes API server per sandbox cluster, holding the objects the world describes.

Enough of the real API (core v1, apps/v1, batch/v1, discovery) for the official ``kubernetes``
client to work unmodified: list responses shaped as the API server shapes them (items without
``kind``/``apiVersion``), paging with ``limit``/``continue``, label and field selectors, metadata-only
lists (``as=PartialObjectMetadataList``), ``Status`` error bodies, bearer-token authentication (Entra
tokens with the AKS server audience on ``aad`` clusters). Objects are stored as dicts; each object's
JSON is cached so that a list of 20,000 pods costs one join per page.

``KubeCluster`` (this module) holds one cluster's store and lifecycle; it builds the world's nodes, namespaces, service accounts, secrets and workloads
(Deployment → ReplicaSet → pods, StatefulSet, DaemonSet, Job, CronJob → Job → pod, Pod), and lets the
simulated kubelet (``sandbox/kubelet/``) write pod statuses and events.

The jobs live in their own modules: ``store`` (objects), ``api`` (HTTP), ``seeding`` (the world's
objects), ``controllers`` (scheduler and workload controllers), ``pod_events`` (statuses and events).
"""

from __future__ import annotations

import base64
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

import yaml

from sandbox.httpserver import Server
from sandbox.kube.api import ApiServer
from sandbox.kube.controllers import Controllers
from sandbox.kube.pod_events import EventWriter
from sandbox.kube.resources import AKS_CLIENT_ID, AKS_SERVER_ID, EntraLike, PkiLike, safe_suffix
from sandbox.kube.seeding import NodeInfo, WorldSeeding
from sandbox.kube.store import ObjectStore
from sandbox.metrics import RequestLog
from sandbox.world import Cluster, World

# --- the cluster -----------------------------------------------------------------------------

PodCallback = Callable[["KubeCluster", dict[str, Any]], None]


class KubeCluster(ApiServer, Controllers, EventWriter, WorldSeeding):
    """One AKS cluster's Kubernetes API (HTTPS) and objects."""

    def __init__(
        self,
        world: World,
        name: str,
        pki: PkiLike,
        entra: EntraLike | None,
        log: RequestLog,
        *,
        build: bool = True,
        continue_ttl: float = 300.0,
    ) -> None:
        self.world = world
        self.name = name
        self.cluster: Cluster = world.clusters[name]
        self.pki = pki
        self.entra = entra
        self.log = log
        self.token = secrets.token_hex(32)
        self.store = ObjectStore()
        self.continue_ttl = continue_ttl
        self.nodes: list[NodeInfo] = []
        self._on_create: list[PodCallback] = []
        self._on_delete: list[PodCallback] = []
        self._rr = 0
        self._pod_ip = 0
        self._rv_times: dict[int, float] = {}
        self._event_index: dict[tuple[str, str, str, str | None], str] = {}
        self._event_seq = 0
        self._pool_shape: tuple[tuple[str, str, str, int], ...] = ()
        self._eligible: dict[tuple[tuple[str, str], ...], list[NodeInfo]] = {}
        self._nodes_by_name: dict[str, NodeInfo] = {}
        self._server: Server | None = None
        self._reserved: socket.socket | None = None
        self.fqdn = f"{name}-dns-{safe_suffix(name, 8)}.hcp.{self.cluster.location}.azmk8s.io"
        self.built_at = time.time()
        if build:
            self.build()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> KubeCluster:
        cert = self.pki.issue([self.fqdn, "127.0.0.1"])
        self._server = Server(self._handle, cert=cert, name=f"kube-{self.name}").start()
        if self.cluster.private:
            # A private API server: its address answers nothing from where the app runs.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            self._reserved = sock
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None

    def __enter__(self) -> KubeCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def internal_url(self) -> str:
        """The listening API server (reachable even for private clusters; sandbox use only)."""
        if self._server is None:
            raise RuntimeError(f"cluster {self.name} is not started")
        return self._server.url

    @property
    def url(self) -> str:
        """The API server address the kubeconfig names (unreachable for private clusters)."""
        if self._reserved is not None:
            return f"https://127.0.0.1:{self._reserved.getsockname()[1]}"
        return self.internal_url

    @property
    def ca_pem(self) -> bytes:
        return self.pki.ca_pem

    def kubeconfig(self) -> str:
        """The kubeconfig ``listClusterUserCredential`` returns for this cluster (YAML text)."""
        c = self.cluster
        user_name = f"clusterUser_{c.resource_group}_{c.name}"
        user: dict[str, Any]
        if c.aad:
            user = {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1beta1",
                    "args": [
                        "get-token",
                        "--environment",
                        "AzurePublicCloud",
                        "--server-id",
                        AKS_SERVER_ID,
                        "--client-id",
                        AKS_CLIENT_ID,
                        "--tenant-id",
                        self.world.tenant,
                        "--login",
                        "devicecode",
                    ],
                    "command": "kubelogin",
                    "env": None,
                    "installHint": "\nkubelogin is not installed which is required to connect to AAD enabled "
                    "cluster.\n\nTo learn more, please go to https://aka.ms/aks/kubelogin\n",
                    "provideClusterInfo": False,
                }
            }
        else:
            user = {"token": self.token}
        doc = {
            "apiVersion": "v1",
            "clusters": [
                {
                    "cluster": {
                        "certificate-authority-data": base64.b64encode(self.ca_pem).decode(),
                        "server": self.url,
                    },
                    "name": c.name,
                }
            ],
            "contexts": [{"context": {"cluster": c.name, "user": user_name}, "name": c.name}],
            "current-context": c.name,
            "kind": "Config",
            "preferences": {},
            "users": [{"name": user_name, "user": user}],
        }
        return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)

    def on_pod_created(self, callback: PodCallback) -> None:
        self._on_create.append(callback)

    def on_pod_deleted(self, callback: PodCallback) -> None:
        self._on_delete.append(callback)

    def node(self, name: str) -> NodeInfo | None:
        return self._nodes_by_name.get(name)

    # -- used by the kubelet and world changes -----------------------------------------------

    def pods(self) -> list[dict[str, Any]]:
        return self.store.values("pods")
