"""The sandbox's webhook sink: a Slack incoming webhook and a Teams Workflows trigger, on loopback.

``WebhookSink(script)`` takes the world's ``webhooks`` mapping: ``{"slack": {"fail": [429, 429,
"channel_is_archived", 500], "down": False}, "teams": {...}}``. For each kind, the first requests
get the scripted answers in order (numbers are HTTP statuses, strings Slack error bodies), then the
sink behaves like the real service: it validates the payload as Slack / Teams would and answers
Slack ``200 ok`` or Teams ``202`` (empty body). A down sink resets every connection (RST), as a
dead host behind a load balancer does.

Each kind has its own listener (127.0.0.1, ephemeral port) so that one can be down while the
other answers. ``sandbox/httpserver.py`` cannot reset a connection, so this module uses the
standard library's server directly. URLs look like the real ones and carry random secrets; a
request to any other path is refused like a revoked webhook (Slack 404 ``no_service``, Teams 401).
"""

from __future__ import annotations

import json
import secrets
import socket
import struct
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KINDS = ("slack", "teams")
SLACK_MAX_BLOCKS = 50
SLACK_MAX_SECTION = 3000
SLACK_MAX_FIELDS = 10
SLACK_MAX_FIELD = 2000
SLACK_MAX_HEADER = 150
TEAMS_MAX_BYTES = 28 * 1024
TEAMS_MAX_VERSION = (1, 5)
ADAPTIVE = "application/vnd.microsoft.card.adaptive"

# Slack's documented statuses for its error bodies (changelog 2016-05-17; others 400).
SLACK_ERROR_STATUS = {
    "invalid_payload": 400,
    "user_not_found": 400,
    "action_prohibited": 403,
    "channel_not_found": 404,
    "channel_is_archived": 410,
    "rollup_error": 500,
    "no_service": 404,
    "invalid_token": 403,
    "posting_to_general_channel_denied": 403,
    "no_text": 400,
    "invalid_blocks": 400,
}


class _Answer:
    def __init__(
        self,
        status: int,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        content_type: str = "text/plain; charset=utf-8",
    ) -> None:
        self.status, self.body, self.headers, self.content_type = (
            status,
            body,
            dict(headers or {}),
            content_type,
        )


def _scripted(kind: str, answer: int | str) -> _Answer:
    if isinstance(answer, str):
        if kind == "slack":
            return _Answer(SLACK_ERROR_STATUS.get(answer, 400), answer.encode())
        return _Answer(
            400,
            json.dumps({"error": {"code": answer, "message": answer}}).encode(),
            content_type="application/json",
        )
    headers = {"Retry-After": "1"} if answer == 429 else {}
    if kind == "slack":
        body = {429: b"rate_limited"}.get(answer, b"ok" if answer == 200 else b"internal_error")
        return _Answer(answer, body, headers)
    if 200 <= answer < 300:
        return _Answer(answer)
    code = "TooManyRequests" if answer == 429 else f"HTTP{answer}"
    return _Answer(
        answer,
        json.dumps({"error": {"code": code, "message": "scripted failure"}}).encode(),
        headers,
        "application/json",
    )


def _version(text: Any) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in str(text).split("."))
    except ValueError:
        return None


def _actions(node: Any) -> list[str]:
    found = []
    if isinstance(node, dict):
        kind = node.get("type")
        if isinstance(kind, str) and kind.startswith("Action."):
            found.append(kind)
        for value in node.values():
            found += _actions(value)
    elif isinstance(node, list):
        for value in node:
            found += _actions(value)
    return found


def validate_slack(payload: Any) -> str | None:
    """The Slack error body a payload earns, or None when Slack would accept it."""
    if not isinstance(payload, dict):
        return "invalid_payload"
    text = payload.get("text")
    blocks = payload.get("blocks")
    if not (isinstance(text, str) and text.strip()):
        return "no_text"
    if blocks is None:
        return None
    if not isinstance(blocks, list) or len(blocks) > SLACK_MAX_BLOCKS:
        return "invalid_blocks"
    for block in blocks:
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            return "invalid_blocks"
        if block["type"] == "section":
            body = block.get("text")
            fields = block.get("fields")
            if body is None and fields is None:
                return "invalid_blocks"
            if body is not None and not (
                isinstance(body, dict)
                and isinstance(body.get("text"), str)
                and 1 <= len(body["text"]) <= SLACK_MAX_SECTION
            ):
                return "invalid_blocks"
            if fields is not None and (
                not isinstance(fields, list)
                or len(fields) > SLACK_MAX_FIELDS
                or any(
                    not isinstance(f, dict) or len(str(f.get("text", ""))) > SLACK_MAX_FIELD for f in fields
                )
            ):
                return "invalid_blocks"
        elif block["type"] == "header":
            body = block.get("text")
            if not (
                isinstance(body, dict)
                and body.get("type") == "plain_text"
                and isinstance(body.get("text"), str)
                and 1 <= len(body["text"]) <= SLACK_MAX_HEADER
            ):
                return "invalid_blocks"
        elif block["type"] == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                return "invalid_blocks"
    return None


def validate_teams(payload: Any, size: int) -> str | None:
    """Why a Workflows trigger + "post card" flow would reject the payload, or None."""
    if size > TEAMS_MAX_BYTES:
        return "The payload is too large. Please make sure the size is less than 28KB."
    if not isinstance(payload, dict) or payload.get("type") != "message":
        return "type must be message"
    attachments = payload.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return "attachments missing"
    first = attachments[0]
    if not isinstance(first, dict) or first.get("contentType") != ADAPTIVE:
        return "attachments[0].contentType must be " + ADAPTIVE
    card = first.get("content")
    if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
        return "attachments[0].content must be an AdaptiveCard"
    version = _version(card.get("version"))
    if version is None or version > TEAMS_MAX_VERSION:
        return "unsupported card version"
    if not isinstance(card.get("body", []), list):
        return "card body must be a list"
    if any(a in ("Action.Submit", "Action.Execute") for a in _actions(card)):
        return "Action.Submit and Action.Execute are not supported in webhook cards"
    return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _KindServer

    def log_message(self, format: str, *args: Any) -> None:
        return  # request lines hold the webhook secrets: never log them

    def handle(self) -> None:
        if self.server.sink.is_down(self.server.kind):
            self.server.sink._note_refused(self.server.kind)
            # SO_LINGER 0: close() sends RST, so the client sees "connection reset by peer"
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        super().handle()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        answer = self.server.sink._answer(self.server.kind, self.path, body)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if answer.body:
            self.wfile.write(answer.body)

    def do_GET(self) -> None:
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _KindServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, sink: WebhookSink, kind: str) -> None:
        self.sink = sink
        self.kind = kind
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        with self.lock:
            self.connections.add(sock)
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        with self.lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End kept-alive connections so that their handler threads finish."""
        with self.lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # resets and aborted clients are expected here


class WebhookSink:
    """Slack and Teams webhook stand-ins; ``records`` lists every answered request in order."""

    def __init__(self, script: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        script = script or {}
        unknown = set(script) - set(KINDS)
        if unknown:
            raise ValueError(
                f"webhook sink: unknown kind(s) {', '.join(sorted(unknown))} (expected slack, teams)"
            )
        self._lock = threading.Lock()
        self._fail: dict[str, list[int | str]] = {
            k: list((script.get(k) or {}).get("fail") or []) for k in KINDS
        }
        self._down: dict[str, bool] = {k: bool((script.get(k) or {}).get("down", False)) for k in KINDS}
        self._records: list[dict[str, Any]] = []
        self.refused: dict[str, int] = dict.fromkeys(KINDS, 0)
        token = secrets.token_hex(12)
        self._paths = {
            "slack": f"/slack/services/T0SANDBOX/B0SANDBOX/{token}",
            "teams": f"/teams/workflows/{secrets.token_hex(16)}?sig={secrets.token_urlsafe(24)}",
        }
        self._servers: dict[str, _KindServer] = {}
        self._ports: dict[str, int] = {}
        self._threads: list[threading.Thread] = []
        self.start()

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> WebhookSink:
        """Listen (done by the constructor; calling it again is harmless)."""
        if self._servers:
            return self
        for kind in KINDS:
            server = _KindServer(self, kind)
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"sandbox-sink-{kind}",
                daemon=True,
            )
            thread.start()
            self._servers[kind] = server
            self._ports[kind] = int(server.server_address[1])
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
            server.close_connections()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> WebhookSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests and the runner use ---------------------------------------------------------

    def url(self, kind: str) -> str:
        """The secret-looking webhook URL of ``kind`` (slack or teams)."""
        return f"http://127.0.0.1:{self._ports[kind]}{self._paths[kind]}"

    @property
    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._records]

    def set_down(self, kind: str, down: bool) -> None:
        with self._lock:
            self._down[kind] = down

    def is_down(self, kind: str) -> bool:
        with self._lock:
            return self._down[kind]

    def script(self, kind: str, answers: list[int | str]) -> None:
        """Queue more scripted answers for the next requests of ``kind``."""
        with self._lock:
            self._fail[kind].extend(answers)

    # --- internals -----------------------------------------------------------------------------

    def _note_refused(self, kind: str) -> None:
        with self._lock:
            self.refused[kind] += 1

    def _answer(self, kind: str, path: str, body: bytes) -> _Answer:
        try:
            payload: Any = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            payload = None
        with self._lock:
            if path != self._paths[kind]:
                answer = (
                    _Answer(404, b"no_service")
                    if kind == "slack"
                    else _Answer(
                        401,
                        json.dumps(
                            {
                                "error": {
                                    "code": "DirectApiAuthorizationRequired",
                                    "message": "The request must be authenticated",
                                }
                            }
                        ).encode(),
                        content_type="application/json",
                    )
                )
            elif self._fail[kind]:
                answer = _scripted(kind, self._fail[kind].pop(0))
            else:
                answer = self._validated(kind, payload, len(body))
            self._records.append(
                {
                    "sink": kind,
                    "status": answer.status,
                    "payload": payload if isinstance(payload, dict) else {},
                }
            )
        return answer

    @staticmethod
    def _validated(kind: str, payload: Any, size: int) -> _Answer:
        if kind == "slack":
            error = "invalid_payload" if payload is None else validate_slack(payload)
            return (
                _Answer(200, b"ok")
                if error is None
                else _Answer(SLACK_ERROR_STATUS.get(error, 400), error.encode())
            )
        problem = "The request body is not valid JSON." if payload is None else validate_teams(payload, size)
        if problem is None:
            return _Answer(202)
        return _Answer(
            400,
            json.dumps({"error": {"code": "InvalidRequestContent", "message": problem}}).encode(),
            content_type="application/json",
        )
