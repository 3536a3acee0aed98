"""Sandbox network latency: a host's round-trip time is paid by real sockets, per connection and request."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from network_box import NetworkBox

from sandbox.latency import Relays
from sandbox.world import WorldError, parse

pytestmark = pytest.mark.sandbox

RTT = 0.2  # large enough that a loaded machine's scheduling noise cannot fake or hide it
FAR, NEAR = "far.example.com", "near.example.com"
WORLD = f"""
name: latency
clusters:
  aks-prod: {{}}
  aks-dev: {{}}
latency:
  - {{host: {FAR}, rtt: 200ms}}
  - {{host: {NEAR}, rtt: 0.2s, from: aks-prod}}
faults:
  - {{host: gone.example.com, fault: dns}}
"""


NAMES = [FAR, NEAR, "gone.example.com"]


def timed_get(box: NetworkBox, host: str, viewpoint: str | None = None) -> float:
    start = time.monotonic()
    answer = box.get(host, viewpoint, timeout=10)
    elapsed = time.monotonic() - start
    assert answer.status == 200 and json.loads(answer.data) == {"front": "/v2/"}
    return elapsed


@pytest.fixture
def box(tmp_path: Path) -> Iterator[NetworkBox]:
    b = NetworkBox(WORLD, NAMES, tmp_path)
    try:
        yield b
    finally:
        b.stop()


def test_a_request_on_a_new_connection_pays_tcp_tls_and_the_request_round_trips(box: NetworkBox) -> None:
    assert box.network.rtt(FAR) == RTT
    assert timed_get(box, FAR) >= 3 * RTT  # TCP handshake, TLS 1.3 handshake, the request
    assert box.network.relay_connections(FAR) == 1


def test_a_reused_connection_pays_one_round_trip_and_no_handshake(box: NetworkBox) -> None:
    first = timed_get(box, FAR)
    second = timed_get(box, FAR)
    assert second >= RTT
    assert second < first  # no handshake: two round trips fewer
    assert box.network.relay_connections(FAR) == 1  # the pool reused the connection


def test_latency_from_one_cluster_leaves_the_app_and_other_clusters_near(box: NetworkBox) -> None:
    assert box.network.rtt(NEAR, "aks-prod") == RTT
    assert box.network.rtt(NEAR) is None and box.network.rtt(NEAR, "aks-dev") is None
    assert box.network.resolve(NEAR) == box.front.address
    assert box.network.resolve(NEAR, "aks-dev") == box.front.address
    assert box.network.resolve(NEAR, "aks-prod") != box.front.address
    assert timed_get(box, NEAR, "aks-prod") >= 3 * RTT
    timed_get(box, NEAR)
    timed_get(box, NEAR, "aks-dev")
    assert box.network.relay_connections(NEAR, "aks-prod") == 1
    assert box.network.relay_connections(NEAR) == 0 and box.network.relay_connections(NEAR, "aks-dev") == 0


def test_the_product_sees_the_relay_in_its_hosts_setting(box: NetworkBox) -> None:
    relay = box.network.hosts_setting()[FAR]
    assert relay is not None and relay != f"127.0.0.1:{box.front.port}"
    assert box.network.hosts_setting()["gone.example.com"] is None


def test_each_direction_is_delayed_by_half_the_round_trip() -> None:
    """A raw TCP echo across a relay: the reply to the first bytes waits 1.5 RTT (handshake + one way)
    plus half an RTT back; later exchanges take one RTT each, in order."""
    listener = socket.create_server(("127.0.0.1", 0))
    with Relays() as relays:
        relay = relays.open(lambda: listener.getsockname()[:2], RTT)
        with socket.create_connection(relay.address, timeout=10) as client:
            server, _ = listener.accept()
            with server:
                start = time.monotonic()
                client.sendall(b"ping")
                assert server.recv(16) == b"ping"
                arrived = time.monotonic() - start
                server.sendall(b"pong")
                assert client.recv(16) == b"pong"
                first = time.monotonic() - start
                start = time.monotonic()
                client.sendall(b"again")
                assert server.recv(16) == b"again"
                server.sendall(b"back")
                assert client.recv(16) == b"back"
                second = time.monotonic() - start
    listener.close()
    # The clock starts once the listener has the connection, a few ms after the relay began
    # counting its handshake delay: allow that much scheduling slack, no more.
    slack = 0.01
    assert arrived >= 1.5 * RTT - slack
    assert first >= 2 * RTT - slack
    assert second >= RTT - slack
    assert relay.connections == 1


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{host: a.example.com, rtt: fast}", "latency[0].rtt: expected a round-trip time such as 30ms"),
        ("{host: a.example.com, rtt: 30ms, from: aks-nope}", "latency[0].from: no cluster named 'aks-nope'"),
        ("{host: a.example.com}", "latency[0]"),
        ("{host: a.example.com, rtt: 11s}", "latency[0].rtt: a round-trip time of at most 10s"),
    ],
)
def test_a_bad_latency_entry_is_one_line_naming_the_key(entry: str, message: str) -> None:
    with pytest.raises(WorldError) as caught:
        parse(f"name: w\nclusters: {{aks-prod: {{}}}}\nlatency:\n  - {entry}\n", source="w.yaml")
    text = str(caught.value)
    assert "\n" not in text and text.startswith("w.yaml:4:") and message in text
