"""A small threaded HTTP/1.1 server (optionally TLS) that every sandbox stand-in is built on.

A stand-in is one function ``handler(Request) -> Response``. The server keeps connections alive
(HTTP/1.1), so pooled clients behave as they do against Azure, binds 127.0.0.1 on an ephemeral port,
and stops cleanly (``stop()`` closes the listener and every open connection).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("sandbox.http")


@dataclass
class Request:
    method: str
    path: str  # without the query string, not unquoted
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    client: tuple[str, int]
    server_name: str = ""

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8") or "null")

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True)

    def header(self, name: str, default: str | None = None) -> str | None:
        value = self.headers.get(name)
        return default if value is None else str(value)


@dataclass
class Response:
    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] | None = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None

    def encoded(self) -> tuple[bytes, str | None]:
        if isinstance(self.body, dict | list):
            return json.dumps(self.body).encode(), self.content_type or "application/json; charset=utf-8"
        if isinstance(self.body, str):
            return self.body.encode(), self.content_type or "text/plain; charset=utf-8"
        return self.body or b"", self.content_type


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status=status, body=body, headers=dict(headers or {}))


Handler = Callable[[Request], Response]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.server.name, format % args)

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
            client=self.client_address[:2],
            server_name=self.server.name,
        )
        try:
            response = self.server.handler(request)
        except Exception:  # a stand-in bug must show as a 500, and in the log
            log.exception("sandbox server %s failed on %s %s", self.server.name, self.command, split.path)
            response = Response(500, {"error": {"code": "SandboxError", "message": "stand-in failed"}})
        payload, content_type = response.encoded()
        if self.command == "HEAD":
            length_header = str(len(payload))
            payload = b""
        else:
            length_header = str(len(payload))
        try:
            self.send_response(response.status)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", response.headers.get("Content-Length", length_header))
            for name, value in response.headers.items():
                if name.lower() not in ("content-length",):
                    self.send_header(name, value)
            self.end_headers()
            if payload:
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, handler: Handler, name: str, ssl_context: ssl.SSLContext | None) -> None:
        self.handler = handler
        self.name = name
        self.ssl_context = ssl_context
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        # As real API servers do: without it every response waits ~40 ms on the client's delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            sock.settimeout(10)
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self.lock:
            self.connections.add(sock)
        return sock, addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError):
                return
            request.settimeout(None)
        super().finish_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection error on %s from %s", self.name, client_address, exc_info=True)


class Server:
    """``Server(handler, cert=(cert_path, key_path))``: HTTPS when a certificate is given."""

    def __init__(
        self, handler: Handler, *, cert: tuple[Path, Path] | None = None, name: str = "sandbox"
    ) -> None:
        context = None
        if cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        self._server = _Server(handler, name, context)
        self._thread: threading.Thread | None = None
        self.name = name
        self.scheme = "https" if cert else "http"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> Server:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-{self.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._server.shutdown()
        with self._server.lock:
            conns = list(self._server.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
