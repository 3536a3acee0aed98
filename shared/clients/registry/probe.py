"""The per-registry probe, once per client: dns → tcp → tls → challenge (GET /v2/).

Each step is timed and says why it failed; the challenge (Bearer realm/service, or Basic; None for
an open registry) decides how identities authenticate afterwards.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from shared.clients.registry.auth import Challenge, parse_challenge
from shared.clients.registry.model import (
    CONNECT_FAILED,
    NOT_ATTEMPTED,
    TLS_FAILED,
    Scrubber,
    Step,
    answered,
    ms_since,
    registry_errors,
)
from shared.clients.registry.transport import Transport, exception_kind
from shared.config import Settings
from shared.errors import reason_of
from shared.netguard import AddressRefused, NameNotResolved, NetGuard


@dataclass(frozen=True)
class RegistryProbe:
    """The per-registry probe: dns, tcp, tls, challenge."""

    steps: tuple[Step, ...]
    detail: str | None
    challenge: Challenge | None  # None: the registry is open (200 on /v2/)

    @property
    def failed(self) -> bool:
        return any(not s.ok for s in self.steps)


class Prober:
    """Probes each registry once (single flight per host) and keeps the answer for the client's life."""

    def __init__(self, settings: Settings, guard: NetGuard, transport: Transport, scrub: Scrubber) -> None:
        self.settings = settings
        self.guard = guard
        self.transport = transport
        self.scrub = scrub
        self._lock = threading.Lock()
        self._bases: dict[str, RegistryProbe] = {}
        self._base_locks: dict[str, threading.Lock] = {}

    def probe(self, host: str) -> RegistryProbe:
        with self._lock:
            lock = self._base_locks.setdefault(host, threading.Lock())
        with lock:
            base = self._bases.get(host)
            if base is None:
                base = self._probe_base(host)
                self._bases[host] = base
            return base

    def _challenge(self, host: str) -> requests.Response | requests.exceptions.RequestException:
        """GET /v2/ on ``host`` (no credential), or why it failed."""
        try:
            return self.transport.send("GET", f"https://{host}/v2/")
        except requests.exceptions.RequestException as exc:
            return exc

    def _probe_base(self, host: str) -> RegistryProbe:
        steps: list[Step] = []
        parts = urlsplit(f"//{host}")
        try:
            name, port = (parts.hostname or host).lower(), parts.port or 443
        except ValueError:
            detail = f"{host} has no valid port"
            return RegistryProbe((Step("dns", False, 0.0, detail=detail, kind=NOT_ATTEMPTED),), detail, None)
        start = time.monotonic()
        try:
            endpoint = self.guard.resolve(name, port)
        except (NameNotResolved, AddressRefused) as exc:
            kind = exception_kind(exc)
            steps.append(Step("dns", False, ms_since(start), detail=self.scrub(str(exc)), kind=kind))
            return RegistryProbe(tuple(steps), self.scrub(str(exc)), None)
        steps.append(
            Step(
                "dns",
                True,
                ms_since(start),
                detail=f"{endpoint.address}:{endpoint.connect_port}"
                + (" (PULLWATCH_HOSTS)" if endpoint.mapped else ""),
            )
        )
        # The challenge GET goes out now, beside the TCP and TLS checks: its connection is the one the
        # pool keeps for the image checks, so the checks' own handshake adds no round trip before them.
        # It sends no credential; when TCP or TLS fails, its outcome is not used.
        challenge_start = time.monotonic()
        pending = self.transport.executor(host).submit(self._challenge, host)
        start = time.monotonic()
        timeout = self.settings.http_timeout
        try:
            sock = socket.create_connection((endpoint.address, endpoint.connect_port), timeout=timeout)
        except OSError as exc:
            text = reason_of(exc)
            steps.append(Step("tcp", False, ms_since(start), detail=text, kind=CONNECT_FAILED))
            pending.cancel()
            return RegistryProbe(tuple(steps), f"cannot connect to {host}: {text}", None)
        steps.append(Step("tcp", True, ms_since(start)))
        start = time.monotonic()
        try:
            sock.settimeout(timeout)
            with self.guard.ssl_context().wrap_socket(sock, server_hostname=name) as tls:
                version = tls.version()
        except (ssl.SSLError, ssl.CertificateError) as exc:
            text = reason_of(exc)
            steps.append(Step("tls", False, ms_since(start), detail=self.scrub(text), kind=TLS_FAILED))
            pending.cancel()
            return RegistryProbe(tuple(steps), f"TLS with {host} failed: {text}", None)
        except OSError as exc:
            text = reason_of(exc)
            steps.append(Step("tls", False, ms_since(start), detail=text, kind=CONNECT_FAILED))
            pending.cancel()
            return RegistryProbe(tuple(steps), f"{host} did not complete the TLS handshake: {text}", None)
        finally:
            sock.close()
        steps.append(Step("tls", True, ms_since(start), detail=version))
        start = challenge_start
        response = pending.result()
        if isinstance(response, requests.exceptions.RequestException):
            text = self.scrub(reason_of(response))
            steps.append(
                Step("challenge", False, ms_since(start), detail=text, kind=exception_kind(response))
            )
            return RegistryProbe(tuple(steps), f"GET /v2/ on {host} failed: {text}", None)
        status = response.status_code
        if status == 200:
            steps.append(
                Step("challenge", True, ms_since(start), status=200, detail="open (no authentication)")
            )
            return RegistryProbe(tuple(steps), None, None)
        challenge = parse_challenge(response.headers.get("WWW-Authenticate"))
        if status == 401 and challenge and challenge.scheme in ("bearer", "basic"):
            shown = f"realm={challenge.realm or '-'} service={challenge.service or '-'} ({challenge.scheme})"
            steps.append(Step("challenge", True, ms_since(start), status=401, detail=self.scrub(shown)))
            return RegistryProbe(tuple(steps), None, challenge)
        errors = registry_errors(response, self.scrub)
        detail = errors[0][1] if errors else f"HTTP {status} on GET /v2/"
        steps.append(answered("challenge", start, response, errors, detail=detail))
        return RegistryProbe(tuple(steps), detail, None)
