"""shared/netguard.py: name map, address policy, pinned-address TLS connections (real sockets)."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sandbox.httpserver import Request, Response, Server
from sandbox.pki import Pki
from shared.config import Settings
from shared.netguard import (
    AddressRefused,
    DeadlinePassed,
    Endpoint,
    NameNotResolved,
    NetGuard,
    PinnedAdapter,
    PlainHttpRefused,
    _host_header,
    address_refusal,
    deadline_remaining,
    request_deadline,
)


def guard(**kw: object) -> NetGuard:
    return NetGuard(Settings(**kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("169.254.169.254", "a cloud metadata address"),
        ("169.254.1.1", "a link-local address"),
        ("168.63.129.16", "a cloud metadata address"),
        ("127.0.0.1", "a loopback address"),
        ("127.8.9.10", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("100.64.0.1", "a shared (CGNAT) address"),
        ("0.0.0.0", "the unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("240.0.0.1", "a private address"),  # Python's ipaddress lists 240/4 as private
        ("4000::1", "a reserved address"),
        ("fe00::1", "a reserved address"),
        ("192.0.2.1", "a private address"),  # TEST-NET-1, documentation only
        ("::1", "a loopback address"),
        ("fe80::1", "a link-local address"),
        ("fd00::1", "a private address"),
        ("fc00::5", "a private address"),
        ("::", "the unspecified address"),
        ("ff02::1", "a multicast address"),
        ("::ffff:127.0.0.1", "a loopback address (127.0.0.1 inside an IPv4-mapped address)"),
        (
            "::ffff:169.254.169.254",
            "a cloud metadata address (169.254.169.254 inside an IPv4-mapped address)",
        ),
        ("::ffff:10.1.2.3", "a private address (10.1.2.3 inside an IPv4-mapped address)"),
        ("fd00:ec2::254", "a cloud metadata address"),
    ],
)
def test_refused_addresses_name_the_reason(address: str, reason: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) == reason
    assert not guard().address_allowed(address)
    with pytest.raises(AddressRefused) as refused:
        guard().resolve(address, 443)
    shown = str(ipaddress.ip_address(address))
    assert str(refused.value) == (
        f"{address} resolves to {shown}, {reason}; refused (PULLWATCH_ALLOW_ADDRESSES can admit a range)"
    )


def test_refused_addresses_outside_every_named_range_are_reserved() -> None:
    assert address_refusal(ipaddress.ip_address("255.255.255.255")) in (
        "a private address",
        "a reserved address",
    )
    assert not guard().address_allowed("255.255.255.255")


@pytest.mark.parametrize(
    "address", ["20.62.1.1", "52.1.2.3", "2603:1030::1", "8.8.8.8", "::ffff:20.62.1.1", "::ffff:8.8.8.8"]
)
def test_public_addresses_allowed(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None
    assert guard().address_allowed(address)
    endpoint = guard().resolve(address, 8443)
    assert endpoint == Endpoint(address, 8443, str(ipaddress.ip_address(address)), 8443, mapped=False)


def test_bracketed_ipv6_literal_is_resolved_without_brackets() -> None:
    assert guard().resolve("[2603:1030::1]", 443) == Endpoint("2603:1030::1", 443, "2603:1030::1", 443)


def test_allow_list_admits_private_ranges_but_never_metadata() -> None:
    g = guard(allow_addresses=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("169.254.0.0/16")))
    assert g.address_allowed("10.1.2.3")
    assert not g.address_allowed("192.168.1.1")
    assert not g.address_allowed("169.254.169.254")
    assert g.address_allowed("169.254.1.1")


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        (
            "::ffff:169.254.169.254",
            "a cloud metadata address (169.254.169.254 inside an IPv4-mapped address)",
        ),
        ("2002:a9fe:a9fe::", "a cloud metadata address (169.254.169.254 inside a 6to4 address)"),
        ("2002:a9fe:a9fe:1:2:3:4:5", "a cloud metadata address (169.254.169.254 inside a 6to4 address)"),
        ("64:ff9b::a9fe:a9fe", "a cloud metadata address (169.254.169.254 inside a NAT64 address)"),
        ("64:ff9b::a83f:8110", "a cloud metadata address (168.63.129.16 inside a NAT64 address)"),
        ("::a9fe:a9fe", "a cloud metadata address (169.254.169.254 inside an IPv4-compatible address)"),
        # Teredo: the client address is stored inverted (RFC 4380); 0x5601_5601 ^ 0xFFFF_FFFF = 169.254.169.254
        (
            "2001:0:4136:e378:8000:63bf:5601:5601",
            "a cloud metadata address (169.254.169.254 inside a Teredo address)",
        ),
        ("2002:7f00:1::", "a loopback address (127.0.0.1 inside a 6to4 address)"),
        ("64:ff9b::a01:203", "a private address (10.1.2.3 inside a NAT64 address)"),
        ("::ffff:100.64.0.1", "a shared (CGNAT) address (100.64.0.1 inside an IPv4-mapped address)"),
        ("::2", "a private address (0.0.0.2 inside an IPv4-compatible address)"),  # the first past ::1
    ],
)
def test_embedded_ipv4_gets_the_ipv4_policy_and_its_reason(address: str, reason: str) -> None:
    g = guard()
    assert g.refusal(address) == reason
    assert not g.address_allowed(address)
    with pytest.raises(AddressRefused, match=re.escape(reason)):
        g.resolve(address, 443)


@pytest.mark.parametrize(
    "allowed_range", ["::/0", "::ffff:0:0/96", "2002::/16", "64:ff9b::/96", "2001::/32", "::/96"]
)
def test_an_ipv6_allow_range_never_admits_an_embedded_metadata_address(allowed_range: str) -> None:
    g = guard(allow_addresses=(ipaddress.ip_network(allowed_range),))
    for address in (
        "::ffff:169.254.169.254",
        "2002:a9fe:a9fe::",
        "64:ff9b::a9fe:a9fe",
        "2001:0:4136:e378:8000:63bf:5601:5601",
        "::a9fe:a9fe",
    ):
        assert not g.address_allowed(address), (allowed_range, address)
        assert (g.refusal(address) or "").startswith("a cloud metadata address (169.254.169.254 inside")


def test_an_ipv6_allow_range_does_not_admit_an_embedded_private_ipv4() -> None:
    g = guard(allow_addresses=(ipaddress.ip_network("::/0"),))
    assert g.refusal("::ffff:10.1.2.3") == "a private address (10.1.2.3 inside an IPv4-mapped address)"
    g4 = guard(allow_addresses=(ipaddress.ip_network("10.0.0.0/8"),))
    assert g4.address_allowed("::ffff:10.1.2.3")  # the IPv4 allow-list applies to the mapped form


@pytest.mark.parametrize(
    "address", ["::ffff:8.8.8.8", "::ffff:20.62.1.1", "2002:808:808::1", "64:ff9b::808:808"]
)
def test_embedded_public_ipv4_is_allowed(address: str) -> None:
    g = guard()
    assert g.refusal(address) is None
    assert g.address_allowed(address)
    assert g.resolve(address, 443).address == str(ipaddress.ip_address(address))


def test_localhost_name_is_refused_after_resolving() -> None:
    with pytest.raises(AddressRefused, match="loopback"):
        guard().resolve("localhost", 443)


def test_name_map() -> None:
    g = guard(hosts={"contosoacr.azurecr.io": ("127.0.0.1", 8443), "gone.azurecr.io": None, "xacr.io": None})
    e = g.resolve("ContosoACR.azurecr.io", 443)
    with pytest.raises(NameNotResolved, match="mapped to null"):
        g.resolve("XACR.io", 443)
    assert e == Endpoint("contosoacr.azurecr.io", 443, "127.0.0.1", 8443, mapped=True)
    with pytest.raises(NameNotResolved, match=r"^gone.azurecr.io does not resolve \(mapped to null"):
        g.resolve("gone.azurecr.io", 443)


def test_unresolvable_name() -> None:
    with pytest.raises(NameNotResolved, match=r"^no-such-host.invalid does not resolve \("):
        guard().resolve("no-such-host.invalid", 443)


@pytest.mark.parametrize(
    ("host", "port", "header"),
    [
        ("contosoacr.azurecr.io", 443, "contosoacr.azurecr.io"),
        ("contosoacr.azurecr.io", 8443, "contosoacr.azurecr.io:8443"),
        ("2603:1030::1", 443, "[2603:1030::1]"),
        ("2603:1030::1", 5000, "[2603:1030::1]:5000"),
    ],
)
def test_host_header_brackets_ipv6_and_names_a_port_other_than_443(host: str, port: int, header: str) -> None:
    assert _host_header(host, port) == header


@pytest.mark.parametrize(
    ("url", "error", "message"),
    [
        (
            "http://contosoacr.azurecr.io/v2/",
            PlainHttpRefused,
            "refusing plain-HTTP URL for contosoacr.azurecr.io",
        ),
        ("https:///v2/", NameNotResolved, "URL has no host"),
        (
            "https://contosoacr.azurecr.io:99999/v2/",
            NameNotResolved,
            "contosoacr.azurecr.io:99999 has no valid port",
        ),
    ],
)
def test_urls_that_cannot_be_connected_to_say_why(url: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as refused:
        PinnedAdapter(guard())._target(url)
    assert str(refused.value).startswith(message)


class CountingGuard(NetGuard):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.resolved: list[tuple[str, int]] = []

    def resolve(self, host: str, port: int) -> Endpoint:
        self.resolved.append((host, port))
        return super().resolve(host, port)


def test_one_pool_per_host_and_port_resolved_once() -> None:
    g = CountingGuard(Settings(hosts={"contosoacr.azurecr.io": ("127.0.0.1", 8443)}))
    adapter = PinnedAdapter(g)
    pool = adapter.pool_for("contosoacr.azurecr.io", 443)
    assert adapter.pool_for("contosoacr.azurecr.io", 443) is pool
    assert adapter.pool_for("contosoacr.azurecr.io", 5000) is not pool
    assert g.resolved == [("contosoacr.azurecr.io", 443), ("contosoacr.azurecr.io", 5000)]  # never again
    assert (pool.host, pool.port) == ("127.0.0.1", 8443)
    # up to 8 connections kept per host; a busy pool opens another rather than waiting
    assert pool.pool is not None and pool.pool.maxsize == 8 and pool.block is False
    assert PinnedAdapter(g, pool_maxsize=3).pool_for("contosoacr.azurecr.io", 443).pool.maxsize == 3  # type: ignore[union-attr]
    adapter.close()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[Pki, Server, list[Request]]]:
    pki = Pki(tmp_path)
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        return Response(200, {"host": request.header("Host")})

    server = Server(handler, cert=pki.issue(["contosoacr.azurecr.io"]), name="contoso").start()
    try:
        yield pki, server, seen
    finally:
        server.stop()


@pytest.mark.sandbox
def test_pinned_adapter_verifies_the_real_host_name(tls_server: tuple[Pki, Server, list[Request]]) -> None:
    pki, server, seen = tls_server
    hosts = {
        "contosoacr.azurecr.io": ("127.0.0.1", server.port),
        "other.azurecr.io": ("127.0.0.1", server.port),
    }
    g = guard(hosts=hosts, ca_bundle=str(pki.ca_bundle))
    with requests.Session() as s:
        s.trust_env = False
        s.mount("https://", PinnedAdapter(g))
        s.mount("http://", PinnedAdapter(g))
        r = s.get("https://contosoacr.azurecr.io/v2/", timeout=5)
        assert r.status_code == 200 and r.json() == {"host": "contosoacr.azurecr.io"}
        # the certificate is not for other.azurecr.io: the mapped address does not make it valid
        with pytest.raises(requests.exceptions.SSLError):
            s.get("https://other.azurecr.io/v2/", timeout=5)
        with pytest.raises(PlainHttpRefused):
            s.get("http://contosoacr.azurecr.io/v2/", timeout=5)
        with pytest.raises(AddressRefused):
            s.get(f"https://127.0.0.1:{server.port}/v2/", timeout=5)
    assert len(seen) == 1


@pytest.mark.sandbox
def test_without_the_ca_bundle_the_certificate_is_refused(
    tls_server: tuple[Pki, Server, list[Request]],
) -> None:
    _pki, server, seen = tls_server
    g = guard(hosts={"contosoacr.azurecr.io": ("127.0.0.1", server.port)})
    with requests.Session() as s:
        s.mount("https://", PinnedAdapter(g))
        with pytest.raises(requests.exceptions.SSLError):
            s.get(
                "https://contosoacr.azurecr.io/v2/", timeout=5, verify=False
            )  # verify=False cannot weaken it
    assert seen == []


@pytest.mark.sandbox
def test_an_allowed_literal_address_is_connected_on_its_own_port(
    tls_server: tuple[Pki, Server, list[Request]],
) -> None:
    pki, server, seen = tls_server
    g = guard(allow_addresses=(ipaddress.ip_network("127.0.0.0/8"),), ca_bundle=str(pki.ca_bundle))
    with requests.Session() as s:
        s.trust_env = False
        s.mount("https://", PinnedAdapter(g))
        r = s.get(f"https://127.0.0.1:{server.port}/v2/", timeout=5)
    assert r.status_code == 200 and r.json() == {"host": f"127.0.0.1:{server.port}"}
    assert len(seen) == 1


class RawTlsListener:
    """A TCP listener that records each connection: the TLS server name asked for (SNI) and whether
    it answered. ``mode``: "answer" (TLS, then a 200 with no body), "drop" (close at once), "silent"
    (accept and say nothing), "mute" (TLS, read the request, never answer), "trickle" (TLS, then the answer's headers a byte every 0.1 s for
    ``trickle_seconds``)."""

    def __init__(self, pki: Pki, mode: str, trickle_seconds: float = 0.0) -> None:
        self.mode = mode
        self.trickle_seconds = trickle_seconds
        self.server_names: list[str | None] = []
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(*(str(p) for p in pki.issue(["contosoacr.azurecr.io"])))
        self._context.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            if self.mode == "drop":
                conn.close()
            elif self.mode == "silent":
                self._held.append(conn)
            else:
                conn.settimeout(5)
                with contextlib.suppress(OSError), self._context.wrap_socket(conn, server_side=True) as tls:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = tls.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    if self.mode == "mute":  # the request read, no answer at all
                        self._stop.wait(10)
                    elif self.mode == "trickle":  # headers one byte every 0.1 s for trickle_seconds
                        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Slow: ")
                        for _ in range(int(self.trickle_seconds * 10)):
                            time.sleep(0.1)
                            tls.sendall(b"x")
                        tls.sendall(b"\r\nConnection: close\r\n\r\n")
                    else:
                        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self._sock.close()


@contextlib.contextmanager
def listener(
    tmp_path: Path, mode: str, trickle_seconds: float = 0.0
) -> Iterator[tuple[RawTlsListener, requests.Session]]:
    pki = Pki(tmp_path)
    raw = RawTlsListener(pki, mode, trickle_seconds)
    g = guard(hosts={"contosoacr.azurecr.io": ("127.0.0.1", raw.port)}, ca_bundle=str(pki.ca_bundle))
    try:
        with requests.Session() as s:
            s.trust_env = False
            s.mount("https://", PinnedAdapter(g))
            yield raw, s
    finally:
        raw.close()


@pytest.mark.sandbox
def test_the_tls_server_name_is_the_registry_host_not_the_pinned_address(tmp_path: Path) -> None:
    with listener(tmp_path, "answer") as (raw, s):
        assert s.get("https://contosoacr.azurecr.io/v2/", timeout=5).status_code == 200
    assert raw.server_names == ["contosoacr.azurecr.io"]


@pytest.mark.sandbox
def test_a_dropped_connection_is_not_retried_by_the_adapter(tmp_path: Path) -> None:
    with listener(tmp_path, "drop") as (raw, s):
        with pytest.raises(requests.exceptions.ConnectionError):
            s.get("https://contosoacr.azurecr.io/v2/", timeout=5)
        time.sleep(0.2)  # a retry would connect again within this
        assert raw.accepted == 1


@pytest.mark.sandbox
def test_retries_given_to_the_adapter_connect_again_after_a_dropped_connection(tmp_path: Path) -> None:
    with listener(tmp_path, "drop") as (raw, s):
        s.mount("https://", PinnedAdapter(s.get_adapter("https://x/").guard, retries=1))  # type: ignore[attr-defined]
        with pytest.raises(requests.exceptions.ConnectionError):
            s.get("https://contosoacr.azurecr.io/v2/", timeout=5)
        assert raw.accepted == 2


@pytest.mark.sandbox
def test_the_request_deadline_reaches_the_connection(tmp_path: Path) -> None:
    with listener(tmp_path, "silent") as (_raw, s):
        started = time.monotonic()
        with pytest.raises(requests.exceptions.RequestException):
            s.get("https://contosoacr.azurecr.io/v2/", timeout=0.3)
        assert time.monotonic() - started < 3


@pytest.mark.sandbox
def test_headers_trickled_past_the_request_deadline_end_the_request_at_the_deadline(tmp_path: Path) -> None:
    with listener(tmp_path, "trickle", trickle_seconds=4.0) as (_raw, s):
        started = time.monotonic()
        with request_deadline(1.0), pytest.raises(requests.exceptions.RequestException) as caught:
            s.get("https://contosoacr.azurecr.io/v2/", timeout=2)  # each byte comes well within 2 s
        elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 3.5, elapsed  # the trickle alone would take 4 s
    assert isinstance(caught.value, requests.exceptions.ReadTimeout), caught.value


@pytest.mark.sandbox
def test_a_server_that_never_answers_is_given_up_at_the_request_deadline(tmp_path: Path) -> None:
    with listener(tmp_path, "mute") as (_raw, s):
        started = time.monotonic()
        with request_deadline(1.0), pytest.raises(requests.exceptions.ReadTimeout):
            s.get("https://contosoacr.azurecr.io/v2/", timeout=8)  # the read timeout alone would wait 8 s
        assert time.monotonic() - started < 4


@pytest.mark.sandbox
def test_an_answer_trickled_inside_the_request_deadline_is_read_whole(tmp_path: Path) -> None:
    with listener(tmp_path, "trickle", trickle_seconds=1.5) as (_raw, s), request_deadline(3.0):
        assert s.get("https://contosoacr.azurecr.io/v2/", timeout=1).status_code == 200


@pytest.mark.sandbox
def test_a_spent_request_deadline_fails_the_request_instead_of_asking(tmp_path: Path) -> None:
    with (
        listener(tmp_path, "answer") as (_raw, s),
        request_deadline(0.0),
        pytest.raises(requests.exceptions.RequestException),
    ):
        s.get("https://contosoacr.azurecr.io/v2/", timeout=5)


def test_the_deadline_left_counts_down_and_is_none_outside_a_deadline() -> None:
    assert deadline_remaining() is None
    with request_deadline(5.0):
        left = deadline_remaining()
        assert left is not None and 4.0 < left <= 5.0
        time.sleep(0.05)
        later = deadline_remaining()
        assert later is not None and later < left
    assert deadline_remaining() is None


def test_a_name_that_resolves_to_no_address_is_not_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", lambda *_a, **_k: [])
    with pytest.raises(NameNotResolved) as error:
        guard().resolve("empty.example", 443)
    assert str(error.value) == "empty.example does not resolve (no addresses)"


@contextlib.contextmanager
def deadline_socket(tmp_path: Path) -> Iterator[ssl.SSLSocket]:
    """A TLS socket from the guard's context, connected to a listener that reads and never answers."""
    pki = Pki(tmp_path)
    raw = RawTlsListener(pki, "mute")
    g = guard(ca_bundle=str(pki.ca_bundle))
    try:
        plain = socket.create_connection(("127.0.0.1", raw.port), timeout=5)
        with g.ssl_context().wrap_socket(plain, server_hostname="contosoacr.azurecr.io") as tls:
            yield tls
    finally:
        raw.close()


@pytest.mark.sandbox
def test_a_reused_socket_gets_back_the_timeout_asked_for_once_the_deadline_block_ends(tmp_path: Path) -> None:
    with deadline_socket(tmp_path) as tls:
        tls.settimeout(7.0)  # what urllib3 asks for one read
        assert tls.gettimeout() == 7.0
        with request_deadline(2.0):
            tls.send(b"GET / HTTP/1.1\r\n")
            armed = tls.gettimeout()
            assert armed is not None and 1.0 < armed <= 2.0  # the deadline is shorter than the timeout
        tls.send(b"Host: x\r\n")
        assert tls.gettimeout() == 7.0  # outside the block the pooled socket waits as asked again
        with request_deadline(30.0):
            tls.send(b"X: y\r\n")
            assert tls.gettimeout() == 7.0  # a deadline further away than the timeout leaves it
        tls.settimeout(None)
        with request_deadline(2.0):
            tls.send(b"X: z\r\n")
            armed = tls.gettimeout()
            assert armed is not None and 1.0 < armed <= 2.0  # no timeout: the deadline alone bounds it


@pytest.mark.sandbox
def test_a_read_that_would_outlast_the_deadline_ends_at_the_deadline(tmp_path: Path) -> None:
    with deadline_socket(tmp_path) as tls:
        tls.settimeout(8.0)
        started = time.monotonic()
        with request_deadline(0.5), pytest.raises(TimeoutError):
            tls.recv(1024)
        assert time.monotonic() - started < 3


@pytest.mark.sandbox
def test_no_call_starts_with_exactly_nothing_left_of_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with deadline_socket(tmp_path) as tls:
        tls.settimeout(5.0)
        with monkeypatch.context() as frozen:
            frozen.setattr("shared.netguard.time.monotonic", lambda: 1000.0)  # the clock stands still
            with request_deadline(0.0):
                assert deadline_remaining() == 0.0
                with pytest.raises(DeadlinePassed, match=r"^the request deadline passed$"):
                    tls.send(b"GET / HTTP/1.1\r\n")
                with pytest.raises(DeadlinePassed, match=r"^the request deadline passed$"):
                    tls.recv(1024)


def test_a_thread_that_never_set_a_deadline_has_none() -> None:
    seen: list[float | None] = []
    with request_deadline(5.0):
        worker = threading.Thread(target=lambda: seen.append(deadline_remaining()))
        worker.start()
        worker.join(5)
    assert seen == [None]  # the deadline belongs to the thread that set it


@pytest.mark.sandbox
def test_a_non_blocking_handshake_stays_non_blocking(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    # "silent": the server never sends its hello, so the handshake cannot finish. (A listener that
    # answers could, under load, answer between the client's write and read, and the handshake
    # would then rightly complete without raising.)
    raw = RawTlsListener(pki, "silent")
    try:
        plain = socket.create_connection(("127.0.0.1", raw.port), timeout=5)
        context = guard(ca_bundle=str(pki.ca_bundle)).ssl_context()
        with context.wrap_socket(
            plain, server_hostname="contosoacr.azurecr.io", do_handshake_on_connect=False
        ) as tls:
            tls.settimeout(0.0)
            with pytest.raises(ssl.SSLWantReadError):  # as ssl.SSLSocket does: no waiting for the server
                tls.do_handshake()
    finally:
        raw.close()


@pytest.mark.sandbox
def test_a_blocking_handshake_asked_of_a_non_blocking_socket_waits_for_the_server(tmp_path: Path) -> None:
    # ssl.SSLSocket.do_handshake(block=True) on a socket with timeout 0 blocks for that handshake.
    # The server says hello only after 0.3 s, so a handshake that did not block could not finish.
    pki = Pki(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*(str(p) for p in pki.issue(["contosoacr.azurecr.io"])))
    done = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def late_hello() -> None:
            conn, _ = listener.accept()
            time.sleep(0.3)
            with contextlib.suppress(OSError), server.wrap_socket(conn, server_side=True):
                done.wait(5)

        thread = threading.Thread(target=late_hello, daemon=True)
        thread.start()
        plain = socket.create_connection(listener.getsockname(), timeout=5)
        context = guard(ca_bundle=str(pki.ca_bundle)).ssl_context()
        with context.wrap_socket(
            plain, server_hostname="contosoacr.azurecr.io", do_handshake_on_connect=False
        ) as tls:
            tls.settimeout(0.0)
            tls.do_handshake(block=True)
            assert tls.version() is not None and tls.gettimeout() == 0.0  # done, and non-blocking again
        done.set()
        thread.join(5)


@pytest.mark.sandbox
def test_send_refuses_flags_as_ssl_sockets_do(tmp_path: Path) -> None:
    with deadline_socket(tmp_path) as tls, pytest.raises(ValueError, match="non-zero flags"):
        tls.send(b"GET / HTTP/1.1\r\n", socket.MSG_OOB)


def test_guards_with_the_same_ca_bundle_share_one_tls_context(tmp_path: Path) -> None:
    # Loading the system CAs costs about 20 ms of CPU; a client per cluster audit must not pay it.
    bundle = Pki(tmp_path).ca_bundle
    first, second = guard(ca_bundle=str(bundle)), guard(ca_bundle=str(bundle))
    assert first.ssl_context() is second.ssl_context()
    assert guard().ssl_context() is not first.ssl_context()  # no bundle: another context


def test_a_rewritten_ca_bundle_gets_a_new_tls_context_that_trusts_it(tmp_path: Path) -> None:
    bundle = Pki(tmp_path / "a").ca_bundle
    before = guard(ca_bundle=str(bundle)).ssl_context()
    replacement = Pki(tmp_path / "b")
    bundle.write_bytes(replacement.ca_bundle.read_bytes() + b"\n")
    after = guard(ca_bundle=str(bundle)).ssl_context()
    assert after is not before
    cert, key = replacement.issue(["registry.test"])
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(cert), str(key))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def accept() -> None:
            conn, _ = listener.accept()
            with contextlib.suppress(OSError), server.wrap_socket(conn, server_side=True):
                pass

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            after.wrap_socket(raw, server_hostname="registry.test") as tls,
        ):
            assert tls.version() is not None  # verified against the rewritten bundle
        thread.join(timeout=5)
