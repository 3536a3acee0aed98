"""The bench's ACR login server: an asyncio (aiohttp) front so that the ACR rows measure pullwatch.

tests/registry_fixture.py's :class:`AcrFront` answers ``/oauth2/*`` like ACR and forwards
``/v2/*`` to ``docker-registry`` through ``sandbox.httpserver`` (a thread per connection) and
``requests``: about 1.3 ms of CPU per forwarded request, which on a shared 2-core machine cost the
ACR rows more than pullwatch's own work (py-spy and per-process CPU times in the README's bench
notes). This front keeps AcrFront's answers — it calls the same ``_exchange`` / ``_token`` logic and
rewrites the challenge realm the same way — and forwards ``/v2/*`` on kept-alive aiohttp connections
(C HTTP parser, one event loop thread). Every request is recorded as ``(method, path)``.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import sys
import threading
from email.message import Message
from pathlib import Path
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web

from sandbox.httpserver import Request

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from registry_fixture import AcrFront

_COPY = ("docker-content-digest", "www-authenticate", "location", "link", "retry-after", "content-type")


class FastAcrFront:
    def __init__(self, logic: AcrFront, cert: tuple[Path, Path]) -> None:
        self.logic = logic
        self.cert = cert
        self.seen: list[tuple[str, str]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bench-acr-front", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> FastAcrFront:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def count(self, method: str | None = None, path: str = "") -> int:
        return sum(1 for m, p in list(self.seen) if (method is None or m == method) and p.startswith(path))

    def reset(self) -> None:
        self.seen.clear()

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64, force_close=False), auto_decompress=False
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert[0]), str(self.cert[1]))
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = int(server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append((request.method, request.path))
        if request.path in ("/oauth2/exchange", "/oauth2/token"):
            headers = Message()
            for name, value in request.headers.items():
                headers[name] = value
            answer = (self.logic._exchange if request.path == "/oauth2/exchange" else self.logic._token)(
                Request(
                    request.method,
                    request.path,
                    parse_qs(request.query_string, keep_blank_values=True),
                    headers,
                    body,
                    ("127.0.0.1", 0),
                )
            )
            payload, content_type = answer.encoded()
            return web.Response(
                status=answer.status,
                body=payload,
                headers={**answer.headers, **({"Content-Type": content_type} if content_type else {})},
            )
        assert self._session is not None
        forward = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "accept")}
        async with self._session.request(
            request.method,
            f"{self.logic.backend.url}{request.path_qs}",
            headers=forward,
            data=body or None,
            allow_redirects=False,
        ) as upstream:
            content = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() in _COPY}
            challenge = upstream.headers.get("WWW-Authenticate")
            if challenge:
                realm = f"https://{request.headers.get('Host') or self.logic.host}/oauth2/token"
                out = {k: v for k, v in out.items() if k.lower() != "www-authenticate"}
                out["WWW-Authenticate"] = re.sub(r'realm="[^"]*"', f'realm="{realm}"', challenge)
            if request.method == "HEAD":
                out["Content-Length"] = upstream.headers.get("Content-Length", "0")
                return web.Response(status=upstream.status, headers=out)
            return web.Response(status=upstream.status, body=content, headers=out)
