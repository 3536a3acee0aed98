"""Where pullwatch may connect: the name map, the address policy, and a pinned-address HTTP adapter.

Every registry connection goes through :class:`NetGuard`:

1. **Resolve** the host: a name in ``Settings.hosts`` (``PULLWATCH_HOSTS``) maps to the given
   ``ip:port`` (``null`` = the name does not resolve); any other name goes to the system resolver.
2. **Check** every address the name resolved to. Refused unless inside ``Settings.allow_addresses``:
   loopback, link-local (169.254.0.0/16, fe80::/10, which holds the cloud metadata service),
   private (RFC 1918, ULA fc00::/7, CGNAT 100.64.0.0/10), unspecified, multicast, reserved, and the
   metadata addresses themselves. An IPv6 address carrying an IPv4 one (IPv4-mapped/compatible,
   6to4, Teredo, NAT64 64:ff9b::/96) is judged by the IPv4 policy for the address it carries. A name mapped in ``Settings.hosts`` is trusted as configured (the
   operator chose the address), so the sandbox can map ``contosoacr.azurecr.io`` to 127.0.0.1
   while ``localhost`` or ``127.0.0.1`` in an image reference is still refused.
3. **Connect** to the checked address, never to the name again (no DNS rebinding), with TLS
   verified against the original host name (SNI and hostname check) and the system CAs plus
   ``Settings.ca_bundle``.

Public interface::

    NetGuard(settings)
        .resolve(host: str, port: int) -> Endpoint            # NameNotResolved / AddressRefused
        .address_allowed(address: str) -> bool
        .refusal(address: str) -> str | None                   # why not, naming an embedded IPv4
        .ssl_context() -> ssl.SSLContext                      # TLS sockets bounded by request_deadline
    request_deadline(seconds)   # context manager: this thread's TLS I/O ends within ``seconds``
    deadline_remaining() -> float | None
    PinnedAdapter(guard, pool_maxsize=8, retries=0)   # requests HTTPAdapter: https only, pinned addresses
    Endpoint(host, port, address, connect_port)
    NameNotResolved, AddressRefused, PlainHttpRefused   (requests.ConnectionError subclasses)
    DeadlinePassed   (TimeoutError)
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.util.retry import Retry

from shared.config import Settings
from shared.errors import SafeMessage

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Cloud metadata / wire-server addresses, refused even if an allow-list would admit their range.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # Azure IMDS, AWS, GCP
        ipaddress.ip_address("168.63.129.16"),  # Azure wire server
        ipaddress.ip_address("fd00:ec2::254"),  # AWS IMDS over IPv6
    }
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class NameNotResolved(SafeMessage, requests.exceptions.ConnectionError):
    """The host name does not resolve (or is mapped to null in PULLWATCH_HOSTS)."""


class AddressRefused(SafeMessage, requests.exceptions.ConnectionError):
    """The host resolves to an address pullwatch must not connect to."""


class PlainHttpRefused(SafeMessage, requests.exceptions.ConnectionError):
    """A plain-HTTP URL: registries are only spoken to over TLS."""


@dataclass(frozen=True)
class Endpoint:
    host: str  # the name asked for (lower-case)
    port: int  # the port asked for
    address: str  # the checked address to connect to
    connect_port: int  # the port to connect to (the mapped one, or ``port``)
    mapped: bool = False  # True when it came from Settings.hosts


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix: the last 32 bits are IPv4
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated IPv4-compatible form (RFC 4291 2.5.5.1)


def embedded_ipv4(address: IPAddress) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address carries, and the form's name, or None.

    IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible (``::a.b.c.d``), 6to4 (``2002:AABB:CCDD::/48``),
    Teredo (``2001::/32``, the client address stored inverted) and NAT64 (``64:ff9b::a.b.c.d``) all
    reach, or name, an IPv4 host: that host is what the address policy has to judge.
    """
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, "an IPv4-mapped"
    if address.sixtofour is not None:
        return address.sixtofour, "a 6to4"
    if address.teredo is not None:
        return address.teredo[1], "a Teredo"
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "a NAT64"
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: nor ::1
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "an IPv4-compatible"
    return None


#: Embedded forms whose traffic goes to the IPv4 host itself: the IPv4 policy alone decides.
_ROUTED_TO_IPV4 = frozenset({"an IPv4-mapped", "a 6to4", "a NAT64"})


def address_refusal(address: IPAddress) -> str | None:
    """Why an address is not a public unicast address, or None when it is (no allow-list applied)."""
    embedded = embedded_ipv4(address)
    if embedded is not None:
        ipv4, form = embedded
        why = address_refusal(ipv4)
        if why is not None:
            return f"{why} ({ipv4} inside {form} address)"
        if form in _ROUTED_TO_IPV4:
            return None
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a shared (CGNAT) address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved address"
    return None


class NetGuard:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._hosts: Mapping[str, tuple[str, int] | None] = {k.lower(): v for k, v in settings.hosts.items()}
        self._context: ssl.SSLContext | None = None
        self._lock = threading.Lock()

    def address_allowed(self, address: str) -> bool:
        return self.refusal(address) is None

    def refusal(self, address: str) -> str | None:
        """Why pullwatch must not connect to ``address`` under this policy, or None when it may.

        An IPv6 address carrying an IPv4 address (see :func:`embedded_ipv4`) gets the IPv4 policy
        for the address it carries (metadata, ranges, the IPv4 allow-list); an IPv6 allow range
        never admits it on its own, so ``::/0`` cannot admit ``::ffff:169.254.169.254``.
        """
        ip = ipaddress.ip_address(address)
        embedded = embedded_ipv4(ip)
        if embedded is not None:
            ipv4, form = embedded
            why = self._plain_refusal(ipv4)
            if why is not None:
                return f"{why} ({ipv4} inside {form} address)"
            if form in _ROUTED_TO_IPV4:
                return None
        return self._plain_refusal(ip)

    def _plain_refusal(self, ip: IPAddress) -> str | None:
        if ip in METADATA_ADDRESSES:
            return "a cloud metadata address"
        if any(ip.version == net.version and ip in net for net in self.settings.allow_addresses):
            return None
        return address_refusal(ip)

    def resolve(self, host: str, port: int) -> Endpoint:
        """Resolve and check ``host``; raise NameNotResolved or AddressRefused with a clear message."""
        name = host.strip("[]").lower()
        if name in self._hosts:
            target = self._hosts[name]
            if target is None:
                raise NameNotResolved(f"{name} does not resolve (mapped to null in PULLWATCH_HOSTS)")
            return Endpoint(name, port, target[0], target[1], mapped=True)
        try:
            literal: IPAddress | None = ipaddress.ip_address(name)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                raise NameNotResolved(f"{name} does not resolve ({exc})") from None
            addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
            if not addresses:
                raise NameNotResolved(f"{name} does not resolve (no addresses)")
        for address in addresses:
            why = self.refusal(address)
            if why is not None:
                raise AddressRefused(
                    f"{name} resolves to {address}, {why}; refused "
                    "(PULLWATCH_ALLOW_ADDRESSES can admit a range)"
                )
        return Endpoint(name, port, addresses[0], port)

    def ssl_context(self) -> ssl.SSLContext:
        """System CAs plus ``Settings.ca_bundle``; hostname checked; TLS 1.2 or later (shared by every
        guard with the same bundle: loading the system CAs costs about 20 ms of CPU each time)."""
        with self._lock:
            if self._context is None:
                self._context = _shared_ssl_context(
                    self.settings.ca_bundle, _file_stamp(self.settings.ca_bundle)
                )
            return self._context


def _file_stamp(path: str | None) -> tuple[int, int] | None:
    """(mtime_ns, size) of ``path``: a rewritten CA bundle gets a new context."""
    if not path:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=8)
def _shared_ssl_context(ca_bundle: str | None, stamp: tuple[int, int] | None) -> ssl.SSLContext:
    """One verifying TLS context per CA bundle (and its stamp). An ``SSLContext`` may be shared by
    threads; nothing changes it after this function returns."""
    del stamp  # part of the cache key only
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.sslsocket_class = DeadlineSSLSocket
    if ca_bundle:
        ctx.load_verify_locations(cafile=ca_bundle)
    return ctx


# -- the deadline of one request -------------------------------------------------------------------

_deadline = threading.local()


class DeadlinePassed(TimeoutError):
    """The deadline of the request this thread is making passed before the answer was complete."""


@contextmanager
def request_deadline(seconds: float) -> Iterator[None]:
    """Within this block, every TLS handshake, read and write on this thread ends ``seconds`` from now.

    A socket timeout bounds one read; a server sending one byte a second never trips it. With a
    deadline, each read waits at most what is left, and none starts once it is spent, so a request
    (connect, TLS, headers, body, and any retries and redirects inside the block) costs at most
    ``seconds`` however the other side trickles. Nested blocks keep the earlier deadline.
    """
    previous: float | None = getattr(_deadline, "at", None)
    at = time.monotonic() + seconds
    _deadline.at = at if previous is None else min(at, previous)
    try:
        yield
    finally:
        _deadline.at = previous


def deadline_remaining() -> float | None:
    """Seconds left of this thread's request deadline, or None outside :func:`request_deadline`."""
    at: float | None = getattr(_deadline, "at", None)
    return None if at is None else at - time.monotonic()


class DeadlineSSLSocket(ssl.SSLSocket):
    """A TLS socket whose every handshake, read and write is bounded by the thread's request deadline.

    CPython's TLS calls treat the socket timeout as a deadline for the whole call, so setting the
    timeout to what is left before each call makes the deadline hard.
    """

    def settimeout(self, value: float | None) -> None:
        self._asked = value  # the timeout of one operation, as urllib3 sets it
        super().settimeout(value)

    def _arm(self) -> None:
        if not hasattr(self, "_asked"):
            self._asked = self.gettimeout()
        asked: float | None = self._asked
        left = deadline_remaining()
        if left is not None and left <= 0:
            raise DeadlinePassed("the request deadline passed")
        wanted = asked if left is None else (left if asked is None else min(asked, left))
        if self.gettimeout() != wanted:
            super().settimeout(wanted)  # a pooled connection does not keep an earlier request's deadline

    def do_handshake(self, block: bool = False) -> None:
        self._arm()
        super().do_handshake(block)

    def read(self, len: int = 1024, buffer: Any = None) -> Any:  # same names as ssl.SSLSocket.read
        self._arm()
        return super().read(len, buffer)

    def send(self, data: Any, flags: int = 0) -> int:
        self._arm()
        return super().send(data, flags)


def _host_header(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == 443 else f"{shown}:{port}"


class PinnedAdapter(HTTPAdapter):
    """A requests adapter that connects only over HTTPS, to the address :class:`NetGuard` checked.

    One urllib3 pool per (host, port), created on first use: the name is resolved and checked once,
    the pool connects to that address, sends SNI and checks the certificate for the real host name.
    Proxies from the environment are ignored (the session should set ``trust_env = False``).
    """

    def __init__(self, guard: NetGuard, pool_maxsize: int = 8, retries: Retry | int = 0) -> None:
        self.guard = guard
        self._maxsize = pool_maxsize
        self._pools: dict[tuple[str, int], HTTPSConnectionPool] = {}
        self._pools_lock = threading.Lock()
        super().__init__(pool_connections=1, pool_maxsize=pool_maxsize, max_retries=retries)

    @staticmethod
    def _target(url: str) -> tuple[str, int]:
        parts = urlsplit(url)
        if parts.scheme != "https":
            raise PlainHttpRefused(
                f"refusing plain-HTTP URL for {parts.hostname}: registries are spoken to over TLS"
            )
        if not parts.hostname:
            raise NameNotResolved("URL has no host")
        try:
            port = parts.port or 443
        except ValueError:
            raise NameNotResolved(f"{parts.netloc} has no valid port") from None
        return parts.hostname.lower(), port

    def pool_for(self, host: str, port: int) -> HTTPSConnectionPool:
        key = (host, port)
        with self._pools_lock:
            pool = self._pools.get(key)
        if pool is not None:
            return pool
        endpoint = self.guard.resolve(host, port)
        pool = HTTPSConnectionPool(
            host=endpoint.address,
            port=endpoint.connect_port,
            maxsize=self._maxsize,
            block=False,
            ssl_context=self.guard.ssl_context(),
            server_hostname=host,
            assert_hostname=host,
            cert_reqs="CERT_REQUIRED",
        )
        with self._pools_lock:
            existing = self._pools.setdefault(key, pool)
        if existing is not pool:
            pool.close()
        return existing

    def get_connection_with_tls_context(
        self, request: requests.PreparedRequest, verify: Any, proxies: Any = None, cert: Any = None
    ) -> HTTPSConnectionPool:
        host, port = self._target(request.url or "")
        return self.pool_for(host, port)

    def request_url(self, request: requests.PreparedRequest, proxies: Any) -> str:
        """The path and query: a pinned pool never goes through a proxy (``send`` drops them), so
        requests' proxy lookup for every request has nothing to find."""
        return request.path_url

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """Verification is fixed by the pool's SSL context; nothing per request can weaken it."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        host, port = self._target(request.url or "")
        request.headers["Host"] = _host_header(host, port)
        kwargs["proxies"] = {}
        return super().send(request, *args, **kwargs)

    def close(self) -> None:
        with self._pools_lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.close()
        super().close()
