"""Sandbox network: per-viewpoint name map and faults as real socket behaviour."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3
from network_box import NetworkBox

from sandbox.network import NameNotResolved, Network
from sandbox.pki import Pki
from sandbox.world import Fault, parse

pytestmark = pytest.mark.sandbox

FAULT_KINDS = ("dns", "refused", "timeout", "tls", "rate_limit", "server_error", "firewall")
WORLD = "\n".join(
    [
        "name: faults",
        "clusters:",
        "  aks-prod: {}",
        "  aks-dev: {egressIPs: [20.60.0.7]}",
        "faults:",
        *[
            f"  - {{host: {kind.replace('_', '-')}.example.com, fault: {kind}, from: aks-prod}}"
            for kind in FAULT_KINDS
        ],
        "  - {host: gone.example.com, fault: dns}",
        "  - {host: registry-1.docker.io, fault: refused, from: aks-dev}",
    ]
)
HOSTS = [f"{kind.replace('_', '-')}.example.com" for kind in FAULT_KINDS]


NAMES = [*HOSTS, "gone.example.com", "docker.io", "registry-1.docker.io", "auth.docker.io"]


@pytest.fixture
def box(tmp_path: Path) -> Iterator[NetworkBox]:
    b = NetworkBox(WORLD, NAMES, tmp_path)
    try:
        yield b
    finally:
        b.stop()


def _reaches_front(box: NetworkBox, host: str, viewpoint: str | None) -> None:
    answer = box.get(host, viewpoint)
    assert answer.status == 200 and json.loads(answer.data) == {"front": "/v2/"}


@pytest.mark.parametrize("host", HOSTS)
def test_a_fault_from_one_cluster_leaves_the_app_and_other_clusters_alone(box: NetworkBox, host: str) -> None:
    _reaches_front(box, host, None)
    _reaches_front(box, host, "app")
    _reaches_front(box, host, "aks-dev")
    assert box.network.resolve(host, "aks-prod") != box.front.address


def test_dns_fault_does_not_resolve(box: NetworkBox) -> None:
    assert box.network.resolve("dns.example.com", "aks-prod") is None
    with pytest.raises(NameNotResolved):
        box.get("dns.example.com", "aks-prod")
    assert box.network.hosts_setting("aks-prod")["dns.example.com"] is None
    assert box.network.hosts_setting()["dns.example.com"] == f"127.0.0.1:{box.front.port}"
    # Without 'from' the name is gone for everyone.
    assert box.network.hosts_setting()["gone.example.com"] is None
    assert box.network.resolve("gone.example.com", "aks-dev") is None


def test_refused_fault_is_a_real_refused_connection(box: NetworkBox) -> None:
    address = box.network.resolve("refused.example.com", "aks-prod")
    assert address is not None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=2).close()
    with pytest.raises(urllib3.exceptions.NewConnectionError):
        box.get("refused.example.com", "aks-prod")


def test_timeout_fault_accepts_and_never_answers(box: NetworkBox) -> None:
    address = box.network.resolve("timeout.example.com", "aks-prod")
    assert address is not None
    with socket.create_connection(address, timeout=2) as sock:  # the connection is accepted...
        sock.settimeout(0.3)
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: timeout.example.com\r\n\r\n")
        with pytest.raises(TimeoutError):  # ...and nothing ever comes back
            sock.recv(1)
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        box.get("timeout.example.com", "aks-prod", timeout=0.5)


def test_tls_fault_presents_a_certificate_from_an_unknown_ca(box: NetworkBox) -> None:
    with pytest.raises(urllib3.exceptions.SSLError) as info:
        box.get("tls.example.com", "aks-prod")
    assert "certificate verify failed" in str(info.value)
    address = box.network.resolve("tls.example.com", "aks-prod")
    assert address is not None
    context = ssl.create_default_context(cafile=str(box.pki.ca_bundle))
    with socket.create_connection(address, timeout=2) as raw, pytest.raises(ssl.SSLCertVerificationError):
        context.wrap_socket(raw, server_hostname="tls.example.com")


def test_rate_limit_fault_answers_429_with_retry_after(box: NetworkBox) -> None:
    answer = box.get("rate-limit.example.com", "aks-prod")
    assert answer.status == 429 and answer.headers["Retry-After"] == "1"
    assert json.loads(answer.data)["errors"][0]["code"] == "TOOMANYREQUESTS"


def test_server_error_fault_answers_5xx(box: NetworkBox) -> None:
    assert box.get("server-error.example.com", "aks-prod").status == 503
    answer = box.network.request(
        "POST", "https://server-error.example.com/oauth2/exchange", viewpoint="aks-prod"
    )
    assert answer.status == 500


def test_firewall_fault_answers_acr_denied_on_every_path(box: NetworkBox) -> None:
    for path in ("/v2/", "/oauth2/exchange", "/oauth2/token?service=x", "/v2/web/manifests/1"):
        answer = box.get("firewall.example.com", "aks-prod", path)
        assert answer.status == 403
        assert json.loads(answer.data) == {
            "errors": [
                {
                    "code": "DENIED",
                    "message": (
                        "client with IP '20.50.1.10' is not allowed access. Refer https://aka.ms/acr/firewall to grant access."
                    ),
                }
            ]
        }


def test_docker_hub_aliases_share_a_fault_but_not_the_auth_host(box: NetworkBox) -> None:
    for alias in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        assert box.network.resolve(alias, "aks-dev") == box.network.resolve("docker.io", "aks-dev")
        assert box.network.resolve(alias, "aks-dev") != box.front.address
    assert box.network.resolve("auth.docker.io", "aks-dev") == box.front.address
    setting = box.network.hosts_setting()
    assert {"docker.io", "index.docker.io", "registry-1.docker.io", "auth.docker.io"} <= set(setting)


def test_faults_can_be_added_and_removed_while_running(box: NetworkBox) -> None:
    host = "rate-limit.example.com"
    box.network.add_fault(Fault(host, "firewall", None))
    assert box.get(host, None).status == 403  # the world-wide fault now applies to the app
    assert box.get(host, "aks-prod").status == 429  # the cluster's own fault wins from its nodes
    box.network.remove_fault(host, None)
    _reaches_front(box, host, None)
    box.network.remove_fault(host, "aks-prod")
    _reaches_front(box, host, "aks-prod")
    assert all(f.host != host for f in box.world.faults)


def test_docker_hub_names_never_fall_through_to_real_dns(tmp_path: Path) -> None:
    world = parse("name: no-hub\nclusters: {aks-prod: {}}\n")
    with Network(world, Pki(tmp_path)) as network:
        setting = network.hosts_setting()
        for name in ("docker.io", "index.docker.io", "registry-1.docker.io", "auth.docker.io"):
            assert setting[name] is None


def test_client_ip_per_viewpoint(box: NetworkBox) -> None:
    assert box.network.client_ip(None) == box.network.client_ip("app") == "203.0.113.10"
    assert box.network.client_ip("aks-prod") == "20.50.1.10"  # default: 20.50.<n>.10, n = cluster order
    assert box.network.client_ip("aks-dev") == "20.60.0.7"


def test_stop_closes_every_fault_endpoint(tmp_path: Path) -> None:
    threads_before = set(threading.enumerate())
    b = NetworkBox(WORLD, NAMES, tmp_path)
    silent = b.network.resolve("timeout.example.com", "aks-prod")
    served = b.network.resolve("rate-limit.example.com", "aks-prod")
    assert silent is not None and served is not None
    b.stop()
    for address in (silent, served):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address, timeout=2).close()
    assert not [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]
