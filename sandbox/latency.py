"""Round-trip time as real socket behaviour: TCP relays that delay every byte by half an RTT.

``Relays().start()`` runs one event loop thread; ``relays.open(target, rtt)`` binds a listener on
127.0.0.1 and relays every connection to ``target()`` (resolved when the connection is accepted) with
the timing of a path ``rtt`` seconds long:

- every chunk is delivered half an RTT after it was sent, in each direction, in order;
- a new connection's first bytes to the server arrive no earlier than 1.5 RTT after the client
  connected: the kernel completes the loopback handshake at once, so the relay charges the TCP
  handshake (one RTT) on the first bytes, as the client would have waited for it on a real path.

So an HTTPS request on a new connection costs three round trips (TCP, TLS 1.3, the request), and
one on a kept-alive connection costs one. ``Relay.connections`` counts accepted connections (each
paid a handshake). ``rtt`` can be changed while running; it applies to bytes sent afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

Target = Callable[[], tuple[str, int] | None]


class _Direction:
    """Bytes one way: queued with their due time, written in order when due."""

    def __init__(self, loop: asyncio.AbstractEventLoop, not_before: float) -> None:
        self.loop = loop
        self.not_before = not_before
        self.queue: deque[tuple[float, bytes | None]] = deque()  # None: close after the bytes before
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False

    def push(self, data: bytes | None, delay: float) -> None:
        last = self.queue[-1][0] if self.queue else 0.0
        self.queue.append((max(self.loop.time() + delay, self.not_before, last), data))
        self._schedule()

    def attach(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._schedule()

    def _schedule(self) -> None:
        if self.timer is None and self.queue and self.transport is not None and not self.closed:
            self.timer = self.loop.call_at(self.queue[0][0], self._flush)

    def _flush(self) -> None:
        self.timer = None
        now = self.loop.time()
        while self.queue and self.queue[0][0] <= now and self.transport is not None and not self.closed:
            _, data = self.queue.popleft()
            if data is None:
                self.closed = True
                self.transport.close()  # writes what is buffered, then closes
            else:
                self.transport.write(data)
        self._schedule()

    def abort(self) -> None:
        self.closed = True
        self.queue.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.abort()


class _Upstream(asyncio.Protocol):
    def __init__(self, link: _Link) -> None:
        self.link = link

    def data_received(self, data: bytes) -> None:
        self.link.to_client.push(data, self.link.relay.rtt / 2)

    def eof_received(self) -> bool | None:
        return None  # close our side; connection_lost passes the close on

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.to_client.push(None, self.link.relay.rtt / 2)


class _Link(asyncio.Protocol):
    """One client connection and its upstream connection."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.loop = relay.loop
        rtt = relay.rtt
        self.to_server = _Direction(self.loop, self.loop.time() + 1.5 * rtt)
        self.to_client = _Direction(self.loop, 0.0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.relay.connections += 1
        self.relay.links.add(self)
        self.to_client.attach(transport)
        target = self.relay.target()
        if target is None:
            transport.abort()
            return
        self.loop.create_task(self._connect(target))

    async def _connect(self, target: tuple[str, int]) -> None:
        try:
            upstream, _ = await self.loop.create_connection(lambda: _Upstream(self), target[0], target[1])
        except OSError:
            self.to_client.abort()
            return
        sock = upstream.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.to_server.attach(upstream)

    def data_received(self, data: bytes) -> None:
        self.to_server.push(data, self.relay.rtt / 2)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.links.discard(self)
        self.to_server.push(None, self.relay.rtt / 2)

    def abort(self) -> None:
        self.to_server.abort()
        self.to_client.abort()


class Relay:
    """A listener on 127.0.0.1 whose connections reach ``target()`` across ``rtt`` seconds."""

    def __init__(self, loop: asyncio.AbstractEventLoop, target: Target, rtt: float) -> None:
        self.loop = loop
        self.target = target
        self.rtt = rtt
        self.connections = 0
        self.links: set[_Link] = set()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(256)
        self._server: asyncio.base_events.Server | None = None

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", int(self._sock.getsockname()[1])

    @property
    def port(self) -> int:
        return self.address[1]

    async def _serve(self) -> None:
        self._server = await self.loop.create_server(lambda: _Link(self), sock=self._sock)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        else:
            self._sock.close()
        for link in list(self.links):
            link.abort()


class Relays:
    """The event loop thread that serves every relay; ``stop()`` closes them all."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._relays: list[Relay] = []

    def start(self) -> Relays:
        self._thread = threading.Thread(target=self._loop.run_forever, name="sandbox-latency", daemon=True)
        self._thread.start()
        return self

    def open(self, target: Target, rtt: float) -> Relay:
        if self._thread is None:
            raise RuntimeError("Relays.start() first")
        relay = Relay(self._loop, target, rtt)
        asyncio.run_coroutine_threadsafe(relay._serve(), self._loop).result(timeout=10)
        self._relays.append(relay)
        return relay

    def close(self, relay: Relay) -> None:
        self._run(relay._close())
        with contextlib.suppress(ValueError):
            self._relays.remove(relay)

    def _run(self, coro: Any) -> None:
        if self._thread is not None:
            asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def stop(self) -> None:
        if self._thread is None:
            return
        for relay in list(self._relays):
            self.close(relay)

        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._thread = None
        self._loop.close()

    def __enter__(self) -> Relays:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
