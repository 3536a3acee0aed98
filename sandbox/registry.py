"""The world's registries: one real ``docker-registry`` (distribution v2) per registry, behind a front.

``RegistryFarm(world, pki, network, entra, rbac, log, workdir).start()``:

- starts one ``docker-registry serve CONFIG.yml`` per registry of the world
  (:mod:`sandbox.registry_process`: its own config, ephemeral port on 127.0.0.1, storage in a temp dir under ``workdir``, deletes enabled, TLS from
  the sandbox CA, ``auth.token`` pointing at the registry's token realm and trusting the farm's
  :class:`~sandbox.tokens.TokenSigner` certificate);
- starts a **front** per registry (HTTPS, certificate for the registry's host names) that the
  network maps the host to. The front counts the product's requests, enforces ACR network rules
  per viewpoint (403 ``DENIED``), answers the token endpoints (ACR ``/oauth2/exchange`` and
  ``/oauth2/token``; ``/token`` for generic registries; ``https://auth.docker.io/token`` for the
  Docker Hub stand-in), applies Docker Hub's anonymous pull rate limit (429 ``TOOMANYREQUESTS``),
  and passes ``/v2/*`` to ``docker-registry`` unchanged (status, body and headers such as
  ``Docker-Content-Digest`` and ``WWW-Authenticate``);
- pushes every image of the world (tiny deterministic OCI images, see ``sandbox/images.py``).

``push_image`` / ``delete_image`` / ``digest`` change and read the registries while running.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import urllib3

from sandbox.httpserver import Request, Response, Server
from sandbox.metrics import RequestLog
from sandbox.network import DOCKERHUB_AUTH_HOST, Network, firewall_denied
from sandbox.pki import Pki
from sandbox.registry_process import RegistryError, RegistryProcess, _platforms
from sandbox.tokens import (
    AcrTokenService,
    DockerTokenService,
    EntraVerifier,
    PullDecider,
    TokenSigner,
)
from sandbox.world import DOCKERHUB_ALIASES, Platform, Registry, World

log = logging.getLogger("sandbox.registry")

DOCKERHUB_RATE_WINDOW = 21600  # seconds (Docker Hub's 6-hour window)
DOCKERHUB_RETRY_AFTER = "3600"
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
}
_MANIFEST_PATH = re.compile(r"^/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)$")


class RegistryFront:
    """What a registry host resolves to: network rules, token endpoints, rate limit, /v2 pass-through."""

    def __init__(
        self,
        registry: Registry,
        process: RegistryProcess,
        network: Network,
        log: RequestLog,
        pki: Pki,
        signer: TokenSigner,
        entra: EntraVerifier,
        rbac: PullDecider,
    ) -> None:
        self.registry = registry
        self.process = process
        self.network = network
        self.log = log
        self.signer = signer
        self.acr = AcrTokenService(registry, signer, entra, rbac) if registry.is_acr else None
        self.docker = None if registry.is_acr else DockerTokenService(registry, signer)
        self.names = [registry.host]
        if registry.kind == "dockerhub":
            self.names = [
                "docker.io",
                *[a for a in DOCKERHUB_ALIASES if a != "docker.io"],
                DOCKERHUB_AUTH_HOST,
            ]
        self._anonymous_pulls: dict[str, int] = {}
        self._lock = threading.Lock()
        self.server = Server(self.handle, cert=pki.issue(self.names), name=f"registry-{registry.host}")

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address

    def start(self) -> RegistryFront:
        self.server.start()
        for name in self.names:
            self.network.register(name, self.server.address)
        return self

    def stop(self) -> None:
        for name in self.names:
            self.network.unregister(name)
        self.server.stop()

    # -- request handling ----------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        viewpoint = self.network.viewpoint_of(request)
        if viewpoint is None:
            self.log.count("registry", self.registry.host)
        client_ip = self.network.client_ip(viewpoint)
        if self.registry.is_acr and not self.admits(viewpoint, client_ip):
            return firewall_denied(client_ip)
        if self.acr is not None:
            answer = self.acr.handle(request)
            if answer is not None:
                return answer
        elif self.docker is not None and request.path == "/token":
            return self.docker.handle(request)
        if request.path == "/v2" or request.path.startswith("/v2/"):
            limited = self._rate_limited(request, client_ip)
            if limited is not None:
                return limited
            return self.forward(request)
        return Response(404, "404 page not found\n")

    def admits(self, viewpoint: str | None, client_ip: str) -> bool:
        """ACR network rules: private endpoint in the cluster's vnet, public access, IP rules."""
        reg = self.registry
        cluster = self.network.world.clusters.get(viewpoint) if viewpoint else None
        if cluster is not None and cluster.vnet and cluster.vnet in reg.private_endpoints:
            return True
        if reg.public_network_access == "Disabled":
            return False
        if reg.default_action != "Deny":
            return True
        address = ipaddress.ip_address(client_ip)
        for rule in reg.ip_rules:
            try:
                if address in ipaddress.ip_network(rule, strict=False):
                    return True
            except ValueError:
                continue
        return False

    def _rate_limited(self, request: Request, client_ip: str) -> Response | None:
        limit = self.registry.anonymous_rate_limit
        if self.registry.kind != "dockerhub" or limit is None or request.method != "GET":
            return None
        if not _MANIFEST_PATH.match(request.path):
            return None
        auth = request.header("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer":
            return None
        claims = self.signer.claims_unverified(token.strip())
        if claims is None or claims.get("sub"):
            return None  # not one of our tokens (the registry refuses it) or an authenticated pull
        with self._lock:
            used = self._anonymous_pulls.get(client_ip, 0)
            if used >= limit:
                return Response(
                    429,
                    {
                        "errors": [
                            {
                                "code": "TOOMANYREQUESTS",
                                "message": "You have reached your pull rate limit. You may increase the limit by "
                                "authenticating and upgrading: https://www.docker.com/increase-rate-limit",
                            }
                        ]
                    },
                    headers={
                        "Retry-After": DOCKERHUB_RETRY_AFTER,
                        "RateLimit-Limit": f"{limit};w={DOCKERHUB_RATE_WINDOW}",
                        "RateLimit-Remaining": f"0;w={DOCKERHUB_RATE_WINDOW}",
                    },
                )
            self._anonymous_pulls[client_ip] = used + 1
        return None

    def forward(self, request: Request) -> Response:
        headers: dict[str, str] = {}
        for name in {key.lower(): key for key in request.headers}.values():
            lowered = name.lower()
            if lowered in _HOP_BY_HOP or lowered in (
                "host",
                "content-length",
                "expect",
                "x-sandbox-viewpoint",
            ):
                continue
            headers[name] = ", ".join(str(v) for v in request.headers.get_all(name) or [])
        headers["Host"] = request.header("Host") or self.registry.host
        target = request.path + ("?" + urlencode(request.query, doseq=True) if request.query else "")
        try:
            answer = self.process.request(
                request.method, target, body=request.body or None, headers=headers, admin=False
            )
        except urllib3.exceptions.HTTPError as exc:
            log.warning("registry %s unreachable behind its front: %s", self.registry.host, exc)
            return Response(502, "502 Bad Gateway\n")
        out: dict[str, str] = {}
        content_type = None
        for name in {key.lower(): key for key in answer.headers}.values():
            lowered = name.lower()
            if lowered in _HOP_BY_HOP or lowered in ("date", "server"):
                continue
            value = ", ".join(answer.headers.getlist(name))
            if lowered == "content-type":
                content_type = value
            elif lowered == "content-length":
                if request.method == "HEAD":
                    out[name] = value
            else:
                out[name] = value
        return Response(answer.status, answer.data, headers=out, content_type=content_type)


class RegistryFarm:
    """Every registry of the world, running; see the module docstring."""

    def __init__(
        self,
        world: World,
        pki: Pki,
        network: Network,
        entra: EntraVerifier,
        rbac: PullDecider,
        log: RequestLog,
        workdir: Path,
    ) -> None:
        self.world = world
        self.pki = pki
        self.network = network
        self.entra = entra
        self.rbac = rbac
        self.log = log
        self.workdir = Path(workdir)
        self.root: Path | None = None
        self.signer: TokenSigner | None = None
        self.processes: dict[str, RegistryProcess] = {}
        self.fronts: dict[str, RegistryFront] = {}
        self.startup_seconds = 0.0

    def start(self) -> RegistryFarm:
        began = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="registries-", dir=self.workdir))
        try:
            self.signer = TokenSigner(self.root)
            for host, registry in self.world.registries.items():
                process = RegistryProcess(registry, self.root / _dirname(host), self.pki, self.signer)
                self.processes[host] = process
                process.launch()
            for host, registry in self.world.registries.items():
                self.fronts[host] = RegistryFront(
                    registry,
                    self.processes[host],
                    self.network,
                    self.log,
                    self.pki,
                    self.signer,
                    self.entra,
                    self.rbac,
                ).start()
            for process in self.processes.values():
                self._ready(process)
            jobs = [
                (host, repo, tag, platforms)
                for host, registry in self.world.registries.items()
                for repo, tags in registry.repositories.items()
                for tag, platforms in tags.items()
            ]
            with ThreadPoolExecutor(max_workers=8, thread_name_prefix="sandbox-push") as pool:
                for future in [pool.submit(self.processes[h].push, r, t, p) for h, r, t, p in jobs]:
                    future.result()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _ready(self, process: RegistryProcess) -> None:
        for attempt in range(3):
            try:
                process.wait_ready()
                return
            except RegistryError:
                # The ephemeral port may have been taken between choosing and binding it: retry.
                if attempt == 2 or "address already in use" not in process.log_tail():
                    raise
                process.stop()
                process.launch()

    def stop(self) -> None:
        for front in self.fronts.values():
            front.stop()
        self.fronts.clear()
        for process in self.processes.values():
            process.stop()
        self.processes.clear()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> RegistryFarm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- public operations ---------------------------------------------------------------------

    def _process(self, registry: str) -> RegistryProcess:
        try:
            host = self.world.registry(registry).host
        except KeyError:
            raise RegistryError(f"no registry named {registry!r} in the world") from None
        process = self.processes.get(host)
        if process is None:
            raise RegistryError(f"registry {host} is not running")
        return process

    def push_image(
        self, registry: str, repository: str, tag: str, platforms: Iterable[Platform | str] = ("linux/amd64",)
    ) -> str:
        """Push ``repository:tag`` (an index when several platforms); returns the tag's digest."""
        process = self._process(registry)
        wanted = _platforms(platforms) or [Platform("linux", "amd64")]
        digest = process.push(repository, tag, wanted)
        process.registry.repositories.setdefault(repository, {})[tag] = wanted
        return digest

    def delete_image(self, registry: str, repository: str, tag: str) -> str:
        """Delete the manifest ``repository:tag`` names, by digest (the tag disappears); its digest."""
        process = self._process(registry)
        digest = process.delete(repository, tag)
        tags = process.registry.repositories.get(repository)
        if tags is not None:
            tags.pop(tag, None)
        return digest

    def digest(self, registry: str, repository: str, tag: str) -> str | None:
        return self._process(registry).digest(repository, tag)

    def front(self, host: str) -> tuple[str, int]:
        """The address of a registry's front (regardless of network faults)."""
        try:
            key = "docker.io" if host.lower() == DOCKERHUB_AUTH_HOST else self.world.registry(host).host
            return self.fronts[key].address
        except KeyError:
            raise RegistryError(f"no running registry for host {host!r}") from None

    def pids(self) -> list[int]:
        return [p.process.pid for p in self.processes.values() if p.process is not None]


def _dirname(host: str) -> str:
    return re.sub(r"[^a-z0-9.-]", "_", host.lower())
