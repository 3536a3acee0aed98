"""HTTP as a node of a sandbox cluster sees it: the registry host resolves through the sandbox network
from the cluster's viewpoint, TLS is verified against the real host name, and every failure reads as
the socket or the TLS stack reported it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import ssl
from typing import Any, Protocol
from urllib.parse import urlsplit

from sandbox.kube import KubeCluster
from sandbox.kubelet.reference import ACR_SUFFIXES
from sandbox.world import World

VIEWPOINT_HEADER = "X-Sandbox-Viewpoint"

CLUSTER_DNS = "10.0.0.10:53"

# --- HTTP as a node sees it ---------------------------------------------------------------------


class NetworkLike(Protocol):
    def resolve(self, host: str, viewpoint: str | None = None) -> tuple[str, int] | None: ...


class NodeSide(Protocol):
    """What a node's HTTP needs from its kubelet: the world, the network, TLS trust, the deadline, and
    the memo of recent dial failures that the node's pulls share."""

    world: World
    network: NetworkLike
    ssl_context: ssl.SSLContext
    timeout: float

    def dial_memo(self, viewpoint: str, address: tuple[str, int]) -> str | None: ...

    def remember_dial(self, viewpoint: str, address: tuple[str, int], message: str) -> NetError: ...


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

    def __init__(self, kubelet: NodeSide, cluster: KubeCluster) -> None:
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
