"""shared/netguard.py: name map, address policy, pinned-address TLS connections (real sockets)."""

from __future__ import annotations

import ipaddress
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
