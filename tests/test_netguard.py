"""shared/netguard.py: name map, address policy, pinned-address TLS connections (real sockets)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sandbox.httpserver import Request, Response, Server
from sandbox.pki import Pki
from shared.config import Settings
from shared.netguard import AddressRefused, NameNotResolved, NetGuard, PinnedAdapter, PlainHttpRefused


def guard(**kw: object) -> NetGuard:
    return NetGuard(Settings(**kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "169.254.1.1",
        "168.63.129.16",
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "fe80::1",
        "fd00::1",
        "fc00::5",
        "::",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "fd00:ec2::254",
    ],
)
def test_refused_addresses(address: str) -> None:
    assert not guard().address_allowed(address)
    with pytest.raises(AddressRefused):
        guard().resolve(address, 443)


@pytest.mark.parametrize("address", ["20.62.1.1", "52.1.2.3", "2603:1030::1", "8.8.8.8"])
def test_public_addresses_allowed(address: str) -> None:
    assert guard().address_allowed(address)
    assert guard().resolve(address, 443).address == str(ipaddress.ip_address(address))


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
    g = guard(hosts={"contosoacr.azurecr.io": ("127.0.0.1", 8443), "gone.azurecr.io": None})
    e = g.resolve("ContosoACR.azurecr.io", 443)
    assert (e.address, e.connect_port, e.mapped) == ("127.0.0.1", 8443, True)
    with pytest.raises(NameNotResolved, match="mapped to null"):
        g.resolve("gone.azurecr.io", 443)


def test_unresolvable_name() -> None:
    with pytest.raises(NameNotResolved):
        guard().resolve("no-such-host.invalid", 443)


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
