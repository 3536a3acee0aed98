"""The sandbox network: which address a host name reaches from each viewpoint, and real faults.

A viewpoint is ``None`` / ``"app"`` (pullwatch's own function) or a cluster name (that cluster's
nodes). Registry fronts ``register`` their address under their host names; a fault from the world
(``dns``, ``refused``, ``timeout``, ``tls``, ``rate_limit``, ``server_error``, ``firewall``) makes
the name resolve instead to a real endpoint with that socket behaviour — for every viewpoint, or
only for the cluster named in ``from``:

- ``dns``: the name does not resolve (``None``; ``null`` in ``PULLWATCH_HOSTS``).
- ``refused``: a port that is bound but not listening (connections are refused; the port stays
  reserved while the network runs so nothing else takes it).
- ``timeout``: a listener that accepts connections and never sends a byte.
- ``tls``: HTTPS with a certificate from a CA nobody trusts.
- ``rate_limit``: HTTPS answering 429 ``TOOMANYREQUESTS`` with ``Retry-After: 1``.
- ``server_error``: HTTPS answering 503 (``/v2/…``) or 500 (``/oauth2/…``, token realms).
- ``firewall``: HTTPS answering ACR's 403 ``DENIED`` body on every path, naming the client's IP.

A ``latency`` rule (``{host, rtt, from}``) puts the host ``rtt`` away — from every viewpoint or only
from the cluster named in ``from``: the name resolves to a relay (``sandbox/latency.py``) in front of
whatever the host would otherwise reach (its front or a fault endpoint), which delays every byte by
half the RTT each way and charges each new connection its TCP handshake (one RTT). A ``dns`` or
``refused`` host stays as it is (there is no path to delay).

Requests from a cluster's nodes carry ``X-Sandbox-Viewpoint: <cluster>``; the egress IP the
registries see is ``client_ip(viewpoint)``.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3

from sandbox.httpserver import Request, Response, Server
from sandbox.latency import Relay, Relays
from sandbox.pki import Pki
from sandbox.world import DOCKERHUB_ALIASES, Fault, World

log = logging.getLogger("sandbox.network")

APP_IP = "203.0.113.10"
VIEWPOINT_HEADER = "X-Sandbox-Viewpoint"
DOCKERHUB_AUTH_HOST = "auth.docker.io"


def canonical_host(host: str) -> str:
    host = host.lower().rstrip(".")
    return "docker.io" if host in DOCKERHUB_ALIASES else host


def firewall_denied(ip: str) -> Response:
    """ACR's answer to a client its network rules do not admit."""
    return Response(
        403,
        {
            "errors": [
                {
                    "code": "DENIED",
                    "message": f"client with IP '{ip}' is not allowed access. "
                    "Refer https://aka.ms/acr/firewall to grant access.",
                }
            ]
        },
    )


class NameNotResolved(OSError):
    """The host does not resolve from that viewpoint (a ``dns`` fault, or an unknown name)."""


class _SilentListener:
    """Accepts TCP connections and never answers (``timeout``)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.setblocking(False)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-fault-timeout", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                if selector.select(timeout=0.05):
                    try:
                        conn, _ = self._sock.accept()
                    except OSError:
                        continue
                    self._held.append(conn)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self._held.clear()
        self._sock.close()


class _ReservedPort:
    """A port bound but not listening (``refused``)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def stop(self) -> None:
        self._sock.close()


@dataclass
class FaultEndpoint:
    fault: Fault
    address: tuple[str, int] | None  # None: the name does not resolve
    closer: _SilentListener | _ReservedPort | Server | None = None

    def stop(self) -> None:
        if self.closer is not None:
            self.closer.stop()
            self.closer = None


class Network:
    """``Network(world, pki).start()``: the name map per viewpoint, with the world's faults."""

    def __init__(self, world: World, pki: Pki) -> None:
        self.world = world
        self.pki = pki
        self._addresses: dict[str, tuple[str, int]] = {}
        self._faults: list[FaultEndpoint] = []
        self._lock = threading.Lock()
        self._started = False
        self._pools: dict[tuple[str, tuple[str, int]], urllib3.HTTPSConnectionPool] = {}
        self._relays: Relays | None = None
        self._relay_for: dict[tuple[str, str | None], Relay] = {}
        self._relay_lock = threading.Lock()

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> Network:
        self._started = True
        for fault in list(self.world.faults):
            self._open(fault)
        return self

    def stop(self) -> None:
        with self._lock:
            endpoints, self._faults = self._faults, []
        for endpoint in endpoints:
            endpoint.stop()
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()
        with self._relay_lock:
            relays, self._relays = self._relays, None
            self._relay_for.clear()
        if relays is not None:
            relays.stop()
        self._started = False

    def __enter__(self) -> Network:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- names ---------------------------------------------------------------------------------

    def register(self, host: str, address: tuple[str, int]) -> None:
        """Where ``host`` goes when no fault applies (a registry front registers its names)."""
        with self._lock:
            self._addresses[host.lower()] = address

    def unregister(self, host: str) -> None:
        with self._lock:
            self._addresses.pop(host.lower(), None)

    def resolve(self, host: str, viewpoint: str | None = None) -> tuple[str, int] | None:
        """The address ``host`` reaches from ``viewpoint`` (None: the name does not resolve)."""
        host = host.lower().rstrip(".")
        viewpoint = None if viewpoint in (None, "app") else viewpoint
        address = self._resolve_near(host, viewpoint)
        rtt = self.rtt(host, viewpoint)
        if address is None or rtt is None:
            return address
        endpoint = self._fault_for(host, viewpoint)
        if endpoint is not None and endpoint.fault.fault == "refused":
            return address
        return self._relay(host, viewpoint, rtt).address

    def rtt(self, host: str, viewpoint: str | None = None) -> float | None:
        """The round-trip time to ``host`` from ``viewpoint`` in seconds (None: no latency rule)."""
        host = host.lower().rstrip(".")
        if host != DOCKERHUB_AUTH_HOST:
            host = canonical_host(host)
        viewpoint = None if viewpoint in (None, "app") else viewpoint
        rules = [r for r in self.world.latency if r.host == host and r.from_cluster in (None, viewpoint)]
        rules.sort(key=lambda r: r.from_cluster is not None)  # this cluster's rule wins
        return rules[-1].rtt if rules else None

    def relay_connections(self, host: str, viewpoint: str | None = None) -> int:
        """New connections made to ``host`` from ``viewpoint`` through its latency relay."""
        viewpoint = None if viewpoint in (None, "app") else viewpoint
        with self._relay_lock:
            relay = self._relay_for.get((host.lower().rstrip("."), viewpoint))
        return relay.connections if relay is not None else 0

    def _resolve_near(self, host: str, viewpoint: str | None) -> tuple[str, int] | None:
        """Where ``host`` is, latency aside: a fault endpoint or the registered front."""
        endpoint = self._fault_for(host, viewpoint)
        if endpoint is not None:
            return endpoint.address
        with self._lock:
            return self._addresses.get(host)

    def _relay(self, host: str, viewpoint: str | None, rtt: float) -> Relay:
        # Not self._lock: the relay thread takes it to resolve targets while open() waits for it.
        with self._relay_lock:
            relay = self._relay_for.get((host, viewpoint))
            if relay is None:
                if self._relays is None:
                    self._relays = Relays().start()
                relay = self._relays.open(lambda: self._resolve_near(host, viewpoint), rtt)
                self._relay_for[(host, viewpoint)] = relay
            relay.rtt = rtt
            return relay

    def hosts_setting(self, viewpoint: str | None = None) -> dict[str, str | None]:
        """``PULLWATCH_HOSTS`` for that viewpoint: every known host -> "127.0.0.1:port" or None.

        Known hosts: every registered name (registry fronts, Docker Hub aliases, ``auth.docker.io``)
        and every fault host.
        """
        with self._lock:
            hosts = set(self._addresses)
            hosts.update(endpoint.fault.host for endpoint in self._faults)
        # Docker Hub's names are always listed: without a docker.io registry in the world they do
        # not resolve (null), so nothing ever leaves the machine for the real Docker Hub.
        hosts.update([*DOCKERHUB_ALIASES, DOCKERHUB_AUTH_HOST])
        out: dict[str, str | None] = {}
        for host in sorted(hosts):
            address = self.resolve(host, viewpoint)
            out[host] = None if address is None else f"{address[0]}:{address[1]}"
        return out

    def client_ip(self, viewpoint: str | None) -> str:
        """The source IP registries see: a cluster's first egress IP, or the app's."""
        if viewpoint in (None, "", "app") or viewpoint not in self.world.clusters:
            return APP_IP
        cluster = self.world.clusters[viewpoint]
        if cluster.egress_ips:
            return cluster.egress_ips[0]
        n = list(self.world.clusters).index(viewpoint) + 1
        return f"20.50.{n}.10"

    @staticmethod
    def viewpoint_of(request: Request) -> str | None:
        """The cluster a request comes from (None: the product)."""
        value = request.header(VIEWPOINT_HEADER)
        return value.strip() if value and value.strip() else None

    # -- a client as seen from a viewpoint -----------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        viewpoint: str | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> urllib3.BaseHTTPResponse:
        """One HTTPS request to ``url`` as a node of ``viewpoint`` (None: as the app) would send it.

        The host is resolved through this network (faults included), TLS is verified against the
        host name with the sandbox CA, connections are pooled per (host, address), and a cluster
        viewpoint is announced with ``X-Sandbox-Viewpoint``. Raises :class:`NameNotResolved` or
        ``urllib3`` errors (timeouts, refused connections, TLS failures) as a real client would.
        """
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme != "https" or not host:
            raise ValueError(f"not an https URL: {url!r}")
        address = self.resolve(host, viewpoint)
        if address is None:
            raise NameNotResolved(f"{host}: no such host")
        key = (host, address)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = urllib3.HTTPSConnectionPool(
                    address[0],
                    address[1],
                    maxsize=8,
                    block=False,
                    ca_certs=str(self.pki.ca_bundle),
                    cert_reqs="CERT_REQUIRED",
                    server_hostname=host,
                    assert_hostname=host,
                    retries=False,
                )
                self._pools[key] = pool
        all_headers = {"Host": host, **(headers or {})}
        if viewpoint not in (None, "app"):
            all_headers[VIEWPOINT_HEADER] = str(viewpoint)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        return pool.urlopen(
            method,
            target,
            body=body,
            headers=all_headers,
            redirect=False,
            retries=False,
            assert_same_host=False,
            preload_content=True,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
        )

    # -- faults --------------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        fault.host = canonical_host(fault.host)
        if fault not in self.world.faults:
            self.world.faults.append(fault)
        if self._started:
            self._open(fault)

    def remove_fault(self, host: str, from_cluster: str | None = None) -> None:
        host = canonical_host(host)
        self.world.faults[:] = [
            f for f in self.world.faults if not (f.host == host and f.from_cluster == from_cluster)
        ]
        with self._lock:
            gone = [e for e in self._faults if e.fault.host == host and e.fault.from_cluster == from_cluster]
            self._faults = [e for e in self._faults if e not in gone]
        for endpoint in gone:
            endpoint.stop()

    def _fault_for(self, host: str, viewpoint: str | None) -> FaultEndpoint | None:
        if host != DOCKERHUB_AUTH_HOST:
            host = canonical_host(host)
        with self._lock:
            matching = [
                e for e in self._faults if e.fault.host == host and e.fault.from_cluster in (None, viewpoint)
            ]
        # A fault for this very cluster wins over a world-wide one; the latest added wins a tie.
        matching.sort(key=lambda e: e.fault.from_cluster is not None)
        return matching[-1] if matching else None

    def _names(self, host: str) -> list[str]:
        return [host, *DOCKERHUB_ALIASES] if host == "docker.io" else [host]

    def _open(self, fault: Fault) -> None:
        fault.host = canonical_host(fault.host)
        endpoint = FaultEndpoint(fault, None)
        kind = fault.fault
        if kind == "refused":
            reserved = _ReservedPort()
            endpoint.closer, endpoint.address = reserved, ("127.0.0.1", reserved.port)
        elif kind == "timeout":
            silent = _SilentListener()
            endpoint.closer, endpoint.address = silent, ("127.0.0.1", silent.port)
        elif kind in ("tls", "rate_limit", "server_error", "firewall"):
            names = self._names(fault.host)
            cert = self.pki.untrusted(names) if kind == "tls" else self.pki.issue(names)
            server = Server(self._fault_handler(kind), cert=cert, name=f"fault-{kind}-{fault.host}").start()
            endpoint.closer, endpoint.address = server, server.address
        elif kind != "dns":
            raise ValueError(f"unknown network fault {kind!r} for {fault.host}")
        with self._lock:
            self._faults.append(endpoint)

    def _fault_handler(self, kind: str) -> Callable[[Request], Response]:
        def answer(request: Request) -> Response:
            if kind == "rate_limit":
                return Response(
                    429,
                    {
                        "errors": [
                            {"code": "TOOMANYREQUESTS", "message": "too many requests, retry after 1 second"}
                        ]
                    },
                    headers={"Retry-After": "1"},
                )
            if kind == "server_error":
                if request.path.startswith("/v2"):
                    return Response(
                        503, {"errors": [{"code": "UNAVAILABLE", "message": "service unavailable"}]}
                    )
                return Response(
                    500, {"errors": [{"code": "INTERNAL_ERROR", "message": "internal server error"}]}
                )
            if kind == "firewall":
                return firewall_denied(self.client_ip(self.viewpoint_of(request)))
            return Response(200, {})  # "tls": the handshake already failed for a verifying client

        return answer
