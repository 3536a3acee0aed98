"""The one seam for registry HTTP: walks the pull path a kubelet walks and says which step failed.

For each registry (login server) pullwatch checks, once per client:

    dns        resolve the login server (PULLWATCH_HOSTS honoured) and check the address policy
    tcp        connect to the checked address
    tls        TLS handshake, certificate verified for the real host name (SNI)
    challenge  GET /v2/  → 200 (open) or 401 + WWW-Authenticate (Bearer realm/service, or Basic)

then per identity and batch of repositories:

    exchange   ACR + pullwatch's Entra identity: POST /oauth2/exchange → ACR refresh token
    token      ACR: POST /oauth2/token (several ``scope`` values); others: GET realm?service&scope…
               (anonymous, or basic with a pull secret's credentials)

then per unique (registry, repository, tag-or-digest):

    manifest   HEAD /v2/<repo>/manifests/<ref> with every manifest media type in Accept
    platforms  GET the manifest (and, for a single-platform image, its config blob) when wanted
    tags       on a missing tag: GET /v2/<repo>/tags/list → the closest tags (difflib)

Safety: an Entra token goes only to an ACR login server of the cloud (``PULLWATCH_CLOUD``) whose tenant is
trusted (``Settings.trusted_tenants`` or the app tenant) and whose realm is the same host; a pull
secret's credentials go only to its own host (or a realm host explicitly paired with it: Docker Hub →
auth.docker.io); redirects to another host are followed without credentials; every connection goes
through :class:`shared.netguard.NetGuard` (address policy, pinned address, verified TLS). Secrets are
scrubbed from every detail string; evidence never holds a token or password.

Public interface::

    RegistryClient(settings, *, entra_token: Callable[[str], str] | None = None,
                   app_tenant: str | None = None)
        .check_images(targets: Sequence[ImageTarget]) -> list[ImageResult]   # one per unique (ref, identity)
        .try_credentials(registry, username, password, repository) -> ProbeOutcome
        .request_counts() -> dict[str, int]                                  # HTTP requests per host
        .close()
    ImageTarget(ref, credential=None, registry_tenant=None, authentication_as_arm=True, want_platforms=True)
    RegistryCredential(host, username, password, label)      # label "secret:<ns>/<name>"
    ImageResult(ref, identity, steps, failure, platforms, suggestions, ...)  .key, .evidence()
    Step(name, ok, elapsed_ms, status, error_code, detail)
    ProbeOutcome(ok, code, identity, steps, detail, rejected)
    is_acr_host(host) -> bool
"""

from __future__ import annotations

import base64
import difflib
import email.utils
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from shared.cloud import cloud_of_login_server
from shared.config import Settings
from shared.netguard import AddressRefused, NameNotResolved, NetGuard, PinnedAdapter, PlainHttpRefused
from shared.reference import DOCKER_HUB, DOCKER_HUB_ALIASES, ImageRef

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_MEDIA_TYPES = (MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST)
INDEX_MEDIA_TYPES = frozenset({MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST})
ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)

PULLWATCH_IDENTITY = "pullwatch"

#: Realm hosts on another host that may receive a registry's basic credentials (registry API host → realms).
REALM_PAIRS: dict[str, frozenset[str]] = {"registry-1.docker.io": frozenset({"auth.docker.io"})}

MAX_RETRY_AFTER_SECONDS = 30.0  # the longest Retry-After honoured, and the sleep budget of one request
MAX_REDIRECTS = 3
MAX_BODY_BYTES = 4 * 1024 * 1024  # manifests are limited to 4 MiB by registries; tag pages are smaller
TOKEN_BATCH_POST = 50  # repositories per ACR /oauth2/token request (form body)
TOKEN_BATCH_GET = 20  # repositories per GET realm request (query string length)
TOKEN_MARGIN_SECONDS = 30.0
DEFAULT_TOKEN_SECONDS = 60.0

# Finding codes this client produces.
DNS, UNREACHABLE, TLS = "REGISTRY_DNS_FAILURE", "REGISTRY_UNREACHABLE", "REGISTRY_TLS_ERROR"
FIREWALL, AUTH, RATE = "REGISTRY_FIREWALL_DENIED", "REGISTRY_AUTH_REJECTED", "REGISTRY_RATE_LIMITED"
SERVER, NOT_FOUND, INCOMPLETE = "REGISTRY_SERVER_ERROR", "IMAGE_NOT_FOUND", "CHECK_INCOMPLETE"


class ResponseTooLarge(requests.exceptions.RequestException):
    """A registry answer larger than MAX_BODY_BYTES."""


class RedirectRefused(requests.exceptions.RequestException):
    """A request carrying a credential in its body was redirected to another host: not followed."""


def is_acr_host(host: str) -> bool:
    """An ACR login server of any Azure cloud (what the name says; whether it may receive an Entra
    token is the configured cloud's rule, in :class:`RegistryClient`)."""
    return cloud_of_login_server(host) is not None


@dataclass(frozen=True)
class RegistryCredential:
    """Credentials from a pull secret, for one registry host only."""

    host: str  # the secret's ``auths`` host (normalised: ``docker.io`` for Docker Hub)
    username: str
    password: str = field(repr=False)
    label: str = "secret"  # "secret:<namespace>/<name>"


@dataclass(frozen=True)
class ImageTarget:
    ref: ImageRef
    credential: RegistryCredential | None = None
    registry_tenant: str | None = None  # the registry's Entra tenant, from ARM, when known
    authentication_as_arm: bool = True  # the registry's azureADAuthenticationAsArmPolicy
    want_platforms: bool = True  # False: existence only (one HEAD per image)

    @property
    def identity(self) -> str:
        return self.credential.label if self.credential else PULLWATCH_IDENTITY


@dataclass(frozen=True)
class Step:
    name: str
    ok: bool
    elapsed_ms: float
    status: int | None = None
    error_code: str | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "ok": self.ok,
            "elapsed_ms": round(self.elapsed_ms, 1),
            "status": self.status,
            "error_code": self.error_code,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class ImageResult:
    ref: ImageRef
    identity: str  # "pullwatch" or "secret:<ns>/<name>"
    steps: tuple[Step, ...]
    failure: str | None  # a finding code, or None when the image is there
    platforms: tuple[str, ...] | None = None  # ("linux/amd64", …) when read
    suggestions: tuple[str, ...] = ()
    detail: str | None = None
    scope: str | None = None  # "registry" (failure of the whole registry) or "image"
    digest: str | None = None
    media_type: str | None = None
    latency_ms: float | None = None  # token + manifest
    slow: bool = False
    auth: str = "none"  # "entra", "basic", "anonymous" or "none" (registry open)
    auth_required: bool = False  # anonymous access refused: credentials are needed
    repository_exists: bool | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (str(self.ref), self.identity)

    @property
    def failed_step(self) -> Step | None:
        return next((s for s in self.steps if not s.ok), None)

    def evidence(self) -> dict[str, Any]:
        """Safe to show: steps, status codes, error codes, timings. Never a token or password."""
        step = self.failed_step
        out: dict[str, Any] = {
            "identity": self.identity,
            "auth": self.auth,
            "steps": [s.to_dict() for s in self.steps],
        }
        if step is not None:
            out.update(
                step=step.name,
                status=step.status,
                error_code=step.error_code,
                elapsed_ms=round(step.elapsed_ms, 1),
            )
        if self.detail:
            out["detail"] = self.detail
        if self.suggestions:
            out["suggested_tags"] = list(self.suggestions)
        if self.platforms is not None:
            out["platforms"] = list(self.platforms)
        if self.latency_ms is not None:
            out["latency_ms"] = round(self.latency_ms, 1)
        if self.digest:
            out["digest"] = self.digest
        return out


@dataclass(frozen=True)
class ProbeOutcome:
    ok: bool
    code: str | None  # None, PULL_SECRET_REJECTED, a REGISTRY_* code or CHECK_INCOMPLETE
    identity: str
    steps: tuple[Step, ...]
    detail: str | None = None
    rejected: bool = False


# ---------------------------------------------------------------------------------------------
# Small parsers


_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*(?:,|$)')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "bearer" or "basic"
    params: dict[str, str]

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")


def parse_challenge(header: str | None) -> Challenge | None:
    """Parse ``WWW-Authenticate`` (RFC 6750 / 7235 auth-params): ``Bearer realm="…",service="…"``."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM_RE.match(rest, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3) or ""
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = m.end()
    return Challenge(scheme.lower(), params)


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, read without verifying (only to know how long to reuse it)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, json.JSONDecodeError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


def registry_errors(response: requests.Response) -> list[tuple[str, str]]:
    """(code, message) pairs of an OCI error body, or [] when the body is not one."""
    try:
        data = response.json()
    except ValueError:
        return []
    errors = data.get("errors") if isinstance(data, dict) else None
    out = []
    for e in errors if isinstance(errors, list) else []:
        if isinstance(e, dict):
            out.append((str(e.get("code") or ""), str(e.get("message") or "")))
    return out


_SECRETISH: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)(authorization\s*[:=]\s*)(?:(?:bearer|basic)\s+)?[^\s,'\"]+"), r"\1***"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 ***"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), "***"),
    (re.compile(r"(?i)\b((?:access_token|refresh_token|password|token)=)[^&\s]+"), r"\1***"),
)


class Scrubber:
    """Removes every secret the client has handled, and anything token-shaped, from a text."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *values: str | None) -> None:
        with self._lock:
            self._secrets.update(v for v in values if v and len(v) >= 4)

    def __call__(self, text: str, limit: int = 300) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, "***")
        for pattern, replacement in _SECRETISH:
            text = pattern.sub(replacement, text)
        return text if len(text) <= limit else text[:limit] + "…"


def _ms(start: float) -> float:
    return (time.monotonic() - start) * 1000.0


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def _exception_code(exc: BaseException) -> str:
    if isinstance(exc, NameNotResolved):
        return DNS
    if isinstance(exc, AddressRefused | PlainHttpRefused | RedirectRefused | ResponseTooLarge):
        return INCOMPLETE
    if isinstance(exc, requests.exceptions.SSLError | ssl.SSLError):
        return TLS
    text = str(exc)
    if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo failed" in text:
        return DNS
    if "SSL" in text or ("CERTIFICATE" in text.upper() and "VERIFY" in text.upper()):
        return TLS
    return UNREACHABLE


def _exception_text(exc: BaseException) -> str:
    if isinstance(
        exc, NameNotResolved | AddressRefused | PlainHttpRefused | RedirectRefused | ResponseTooLarge
    ):
        return str(exc)
    if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.ReadTimeout | TimeoutError):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message}"
    reason: BaseException = exc
    while reason.__context__ is not None and reason.__context__ is not reason:
        reason = reason.__context__
    text = str(reason) or type(reason).__name__
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "certificate verification failed"
    if "timed out" in text:
        return "timed out"
    return f"{type(exc).__name__}: {text}"


def _status_code(status: int, errors: list[tuple[str, str]], *, authenticated: bool) -> str:
    codes = {c for c, _ in errors}
    if status == 403 and any(c == "DENIED" and "not allowed access" in m for c, m in errors):
        return FIREWALL
    if status == 429 or "TOOMANYREQUESTS" in codes:
        return RATE
    if status >= 500:
        return SERVER
    if status in (401, 403):
        return AUTH if authenticated else INCOMPLETE
    if status == 404:
        return NOT_FOUND
    return SERVER if status >= 400 else INCOMPLETE


# ---------------------------------------------------------------------------------------------


@dataclass
class _Base:
    """The per-registry probe: dns, tcp, tls, challenge."""

    steps: tuple[Step, ...]
    failure: str | None
    detail: str | None
    challenge: Challenge | None  # None: the registry is open (200 on /v2/)


@dataclass
class _Token:
    value: str
    expires: float  # monotonic
    step: Step

    def valid(self) -> bool:
        return time.monotonic() < self.expires - TOKEN_MARGIN_SECONDS


@dataclass
class _Auth:
    """How one (registry, identity) authenticates, decided after the challenge."""

    mode: str  # "none", "entra", "basic-token", "anonymous-token", "basic", "anonymous"
    steps: tuple[Step, ...] = ()
    failure: str | None = None
    detail: str | None = None
    realm: str | None = None
    service: str | None = None
    send_basic_to_realm: bool = False
    credential: RegistryCredential | None = None
    refresh_token: str | None = None

    @property
    def label(self) -> str:
        return {"none": "none", "entra": "entra", "basic-token": "basic", "basic": "basic"}.get(
            self.mode, "anonymous"
        )


class RegistryClient:
    """Registry data-plane checks. One instance per audit: it caches probes, tokens and sessions."""

    def __init__(
        self,
        settings: Settings,
        *,
        entra_token: Callable[[str], str] | None = None,
        app_tenant: str | None = None,
    ) -> None:
        self.settings = settings
        self.guard = NetGuard(settings)
        self._entra_token = entra_token
        tenants = {t.lower() for t in settings.trusted_tenants}
        if app_tenant or settings.tenant_id:
            tenants.add(str(app_tenant or settings.tenant_id).lower())
        self._trusted_tenants = frozenset(tenants)
        self.scrub = Scrubber()
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._sessions: dict[str, requests.Session] = {}
        self._bases: dict[str, _Base] = {}
        self._base_locks: dict[str, threading.Lock] = {}
        self._auths: dict[tuple[str, str, str | None, bool], _Auth] = {}
        self._auth_locks: dict[tuple[str, str, str | None, bool], threading.Lock] = {}
        self._tokens: dict[tuple[str, str, str], _Token] = {}  # (host, identity, repo)
        self._platforms: dict[tuple[str, str, str], tuple[str, ...]] = {}
        self._platform_locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._closed = False

    # -- plumbing ---------------------------------------------------------------------------------

    def request_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sessions, self._sessions = list(self._sessions.values()), {}
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=True)
        for session in sessions:
            session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _session(self, host: str) -> requests.Session:
        with self._lock:
            session = self._sessions.get(host)
            if session is None:
                session = requests.Session()
                session.trust_env = False  # no proxies or .netrc credentials from the environment
                adapter = PinnedAdapter(self.guard, pool_maxsize=max(self.settings.registry_concurrency, 2))
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                session.headers["User-Agent"] = "pullwatch/0.1"
                self._sessions[host] = session
            return session

    def _executor(self, host: str) -> ThreadPoolExecutor:
        with self._lock:
            pool = self._pools.get(host)
            if pool is None:
                pool = ThreadPoolExecutor(
                    max_workers=max(1, self.settings.registry_concurrency),
                    thread_name_prefix=f"registry-{host}",
                )
                self._pools[host] = pool
            return pool

    def _count(self, host: str) -> None:
        with self._lock:
            self._counts[host] = self._counts.get(host, 0) + 1

    def _retry_delay(self, response: requests.Response, attempt: int) -> float | None:
        """Seconds to wait before retrying, or None to give up now: a ``Retry-After`` beyond
        MAX_RETRY_AFTER_SECONDS (Docker Hub says 3600 when the anonymous quota is gone) is not worth
        stalling an audit for; the answer is reported as it is."""
        backoff = float(self.settings.retry_base_seconds) * float(2**attempt)
        header = response.headers.get("Retry-After")
        if header:
            try:
                seconds = float(header)
            except ValueError:
                try:
                    seconds = email.utils.parsedate_to_datetime(header).timestamp() - time.time()
                except (TypeError, ValueError):
                    seconds = backoff
            return None if seconds > MAX_RETRY_AFTER_SECONDS else max(0.0, seconds)
        return min(backoff, MAX_RETRY_AFTER_SECONDS)

    @staticmethod
    def _read_bounded(response: requests.Response, method: str) -> None:
        """Read the body, at most MAX_BODY_BYTES (a registry cannot make pullwatch hold a huge answer)."""
        if method == "HEAD":
            _ = response.content  # no body: urllib3 finishes the response and pools the connection
            return
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            response.close()
            raise ResponseTooLarge(f"answer of {declared} bytes is larger than {MAX_BODY_BYTES}")
        chunks, size = [], 0
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                response.close()
                raise ResponseTooLarge(f"answer larger than {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
        response._content = b"".join(chunks)  # iter_content ran to the end: the connection is released
        response.close()

    def _send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        data: Any = None,
        params: Any = None,
        origin: str | None = None,
    ) -> requests.Response:
        """One logical request: bounded retries on 429/5xx, redirects followed by hand.

        ``Authorization`` is kept only while the URL stays on ``origin`` (host:port of the first URL
        unless given); a redirect to another host is followed without it.
        """
        headers = dict(headers or {})
        first = urlsplit(url)
        origin = origin or first.netloc.lower()
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            host = parts.netloc.lower()
            if host != origin:
                headers.pop("Authorization", None)
            session = self._session(parts.hostname or host)
            response: requests.Response | None = None
            slept = 0.0
            for attempt in range(self.settings.retries + 1):
                self._count(parts.hostname or host)
                response = session.request(
                    method,
                    url,
                    headers=headers,
                    data=data,
                    params=params,
                    timeout=self.settings.http_timeout,
                    allow_redirects=False,
                    stream=True,
                )
                self._read_bounded(response, method)
                retryable = response.status_code == 429 or response.status_code >= 500
                if not retryable or attempt == self.settings.retries:
                    break
                delay = self._retry_delay(response, attempt)
                if delay is None or slept + delay > MAX_RETRY_AFTER_SECONDS:
                    break  # beyond the retry budget: report the answer now
                response.close()
                time.sleep(delay)
                slept += delay
            assert response is not None
            if response.status_code in (301, 302, 303, 307, 308) and "Location" in response.headers:
                target = urljoin(url, response.headers["Location"])
                response.close()
                if urlsplit(target).netloc.lower() != origin and (
                    data is not None or method not in ("GET", "HEAD")
                ):
                    # The body of a POST here is a credential (Entra token, refresh token): it is never
                    # re-sent to another host, and the request is not turned into something else.
                    raise RedirectRefused(
                        f"{method} {parts.path} was redirected to another host ({urlsplit(target).netloc}); "
                        "not followed, so the request body (a credential) stays with "
                        f"{origin}"
                    )
                url = target
                params = None
                if response.status_code == 303:
                    method, data = "GET", None
                continue
            return response
        raise requests.exceptions.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects")

    # -- the per-registry probe ---------------------------------------------------------------------

    def _base(self, host: str) -> _Base:
        with self._lock:
            lock = self._base_locks.setdefault(host, threading.Lock())
        with lock:
            base = self._bases.get(host)
            if base is None:
                base = self._probe_base(host)
                self._bases[host] = base
            return base

    def _probe_base(self, host: str) -> _Base:
        steps: list[Step] = []
        parts = urlsplit(f"//{host}")
        try:
            name, port = (parts.hostname or host).lower(), parts.port or 443
        except ValueError:
            detail = f"{host} has no valid port"
            return _Base((Step("dns", False, 0.0, detail=detail),), INCOMPLETE, detail, None)
        start = time.monotonic()
        try:
            endpoint = self.guard.resolve(name, port)
        except (NameNotResolved, AddressRefused) as exc:
            code = _exception_code(exc)
            steps.append(Step("dns", False, _ms(start), detail=self.scrub(str(exc))))
            return _Base(tuple(steps), code, self.scrub(str(exc)), None)
        steps.append(
            Step(
                "dns",
                True,
                _ms(start),
                detail=f"{endpoint.address}:{endpoint.connect_port}"
                + (" (PULLWATCH_HOSTS)" if endpoint.mapped else ""),
            )
        )
        start = time.monotonic()
        timeout = self.settings.http_timeout
        try:
            sock = socket.create_connection((endpoint.address, endpoint.connect_port), timeout=timeout)
        except OSError as exc:
            text = _exception_text(exc)
            steps.append(Step("tcp", False, _ms(start), detail=text))
            return _Base(tuple(steps), UNREACHABLE, f"cannot connect to {host}: {text}", None)
        steps.append(Step("tcp", True, _ms(start)))
        start = time.monotonic()
        try:
            sock.settimeout(timeout)
            with self.guard.ssl_context().wrap_socket(sock, server_hostname=name) as tls:
                version = tls.version()
        except (ssl.SSLError, ssl.CertificateError) as exc:
            text = _exception_text(exc)
            steps.append(Step("tls", False, _ms(start), detail=self.scrub(text)))
            return _Base(tuple(steps), TLS, f"TLS with {host} failed: {text}", None)
        except OSError as exc:
            text = _exception_text(exc)
            steps.append(Step("tls", False, _ms(start), detail=text))
            return _Base(
                tuple(steps), UNREACHABLE, f"{host} did not complete the TLS handshake: {text}", None
            )
        finally:
            sock.close()
        steps.append(Step("tls", True, _ms(start), detail=version))
        start = time.monotonic()
        try:
            response = self._send("GET", f"https://{host}/v2/")
        except requests.exceptions.RequestException as exc:
            text = self.scrub(_exception_text(exc))
            steps.append(Step("challenge", False, _ms(start), detail=text))
            return _Base(tuple(steps), _exception_code(exc), f"GET /v2/ on {host} failed: {text}", None)
        status = response.status_code
        if status == 200:
            steps.append(Step("challenge", True, _ms(start), status=200, detail="open (no authentication)"))
            return _Base(tuple(steps), None, None, None)
        challenge = parse_challenge(response.headers.get("WWW-Authenticate"))
        if status == 401 and challenge and challenge.scheme in ("bearer", "basic"):
            shown = f"realm={challenge.realm or '-'} service={challenge.service or '-'} ({challenge.scheme})"
            steps.append(Step("challenge", True, _ms(start), status=401, detail=self.scrub(shown)))
            return _Base(tuple(steps), None, None, challenge)
        errors = registry_errors(response)
        code = _status_code(status, errors, authenticated=False)
        if status == 401:
            code = INCOMPLETE
        error_code = errors[0][0] if errors else None
        detail = self.scrub(errors[0][1] if errors else f"HTTP {status} on GET /v2/")
        steps.append(
            Step("challenge", False, _ms(start), status=status, error_code=error_code, detail=detail)
        )
        return _Base(tuple(steps), code, detail, None)

    # -- authentication ---------------------------------------------------------------------------

    def _auth(self, host: str, target: ImageTarget, base: _Base) -> _Auth:
        key = (host, target.identity, target.registry_tenant, target.authentication_as_arm)
        with self._lock:
            lock = self._auth_locks.setdefault(key, threading.Lock())
        with lock:
            auth = self._auths.get(key)
            if auth is None or (
                auth.mode == "entra"
                and auth.failure is None
                and auth.refresh_token
                and (jwt_expiry(auth.refresh_token) or float("inf")) - TOKEN_MARGIN_SECONDS < time.time()
            ):
                auth = self._decide_auth(host, target, base)
                if auth.failure not in (RATE, SERVER, UNREACHABLE):
                    self._auths[key] = auth
            return auth

    def _credential_matches(self, credential: RegistryCredential, registry: str) -> bool:
        have = credential.host.lower()
        if have in DOCKER_HUB_ALIASES or have.rstrip("/").endswith("index.docker.io/v1"):
            have = DOCKER_HUB
        return have == registry

    def _decide_auth(self, host: str, target: ImageTarget, base: _Base) -> _Auth:
        challenge = base.challenge
        credential = target.credential
        if credential is not None:
            self.scrub.add(credential.password)
            if not self._credential_matches(credential, target.ref.registry):
                return _Auth(
                    "anonymous",
                    failure=INCOMPLETE,
                    detail=f"credential {credential.label} is for {credential.host}, "
                    f"not {target.ref.registry}; not sent",
                )
        if challenge is None:
            return _Auth("none")
        if challenge.scheme == "basic":
            return _Auth("basic" if credential else "anonymous", credential=credential)
        realm, service = challenge.realm, challenge.service or host
        if not realm:
            return _Auth("anonymous", failure=INCOMPLETE, detail="Bearer challenge without a realm")
        realm_parts = urlsplit(realm)
        realm_host = (realm_parts.hostname or "").lower()
        same_host = realm_parts.scheme == "https" and realm_parts.netloc.lower() == host
        if credential is None and self.settings.cloud.is_acr_host(host):
            return self._entra_exchange(host, target, realm, service, same_host)
        if credential is not None:
            allowed = same_host or (realm_parts.scheme == "https" and realm_host in REALM_PAIRS.get(host, ()))
            if not allowed:
                return _Auth(
                    "anonymous-token",
                    realm=realm,
                    service=service,
                    detail=f"token realm {realm_host} is not {host}: credentials withheld, asked anonymously",
                )
            return _Auth(
                "basic-token", realm=realm, service=service, send_basic_to_realm=True, credential=credential
            )
        return _Auth("anonymous-token", realm=realm, service=service)

    def _entra_exchange(
        self, host: str, target: ImageTarget, realm: str, service: str, same_host: bool
    ) -> _Auth:
        if self._entra_token is None:
            return _Auth(
                "anonymous-token",
                realm=realm,
                service=service,
                failure=INCOMPLETE,
                detail="no Entra credential configured for pullwatch; cannot check a private ACR",
            )
        if not same_host:
            return _Auth(
                "entra",
                failure=INCOMPLETE,
                detail=f"ACR challenge realm {urlsplit(realm).netloc} is not the login server {host}: "
                "Entra token withheld",
            )
        tenant = (target.registry_tenant or "").lower()
        if not tenant or tenant not in self._trusted_tenants:
            why = "unknown" if not tenant else f"{tenant}, not a trusted tenant"
            return _Auth(
                "entra",
                failure=INCOMPLETE,
                detail=f"registry tenant is {why} (PULLWATCH_TRUSTED_TENANTS): Entra token withheld",
            )
        cloud = self.settings.cloud
        audience = cloud.arm_scope if target.authentication_as_arm else cloud.acr_scope
        start = time.monotonic()
        try:
            entra = self._entra_token(audience)
        except Exception as exc:
            detail = self.scrub(f"could not get an Entra token for {audience}: {type(exc).__name__}: {exc}")
            return _Auth(
                "entra",
                steps=(Step("entra", False, _ms(start), detail=detail),),
                failure=INCOMPLETE,
                detail=detail,
            )
        self.scrub.add(entra)
        entra_step = Step("entra", True, _ms(start), detail=f"audience {audience}")
        start = time.monotonic()
        form = {"grant_type": "access_token", "service": service, "tenant": tenant, "access_token": entra}
        try:
            response = self._send("POST", f"https://{host}/oauth2/exchange", data=form)
        except requests.exceptions.RequestException as exc:
            text = self.scrub(_exception_text(exc))
            return _Auth(
                "entra",
                steps=(entra_step, Step("exchange", False, _ms(start), detail=text)),
                failure=_exception_code(exc),
                detail=f"POST /oauth2/exchange failed: {text}",
            )
        refresh = None
        if response.status_code == 200:
            try:
                body = response.json()
                refresh = body.get("refresh_token") if isinstance(body, dict) else None
            except ValueError:
                refresh = None
        if not isinstance(refresh, str) or not refresh:
            errors = registry_errors(response)
            code = _status_code(response.status_code, errors, authenticated=True)
            if response.status_code == 200 or code == INCOMPLETE:
                code = AUTH
            detail = self.scrub(
                errors[0][1] if errors else f"HTTP {response.status_code} from /oauth2/exchange"
            )
            hint = (
                ""
                if code != AUTH
                else (
                    " (ARM-audience tokens are refused when authentication-as-ARM is disabled)"
                    if target.authentication_as_arm
                    else ""
                )
            )
            step = Step(
                "exchange",
                False,
                _ms(start),
                status=response.status_code,
                error_code=errors[0][0] if errors else None,
                detail=detail,
            )
            return _Auth("entra", steps=(entra_step, step), failure=code, detail=f"{detail}{hint}")
        self.scrub.add(refresh)
        step = Step("exchange", True, _ms(start), status=200)
        return _Auth("entra", steps=(entra_step, step), realm=realm, service=service, refresh_token=refresh)

    def _fetch_tokens(
        self, host: str, identity: str, auth: _Auth, repos: Sequence[str]
    ) -> dict[str, _Token | Step]:
        """A token per repository (one request per batch); a failed Step where the batch failed."""
        out: dict[str, _Token | Step] = {}
        missing = []
        with self._lock:
            for repo in repos:
                token = self._tokens.get((host, identity, repo))
                if token is not None and token.valid():
                    out[repo] = token
                else:
                    missing.append(repo)
        if not missing:
            return out
        size = TOKEN_BATCH_POST if auth.mode == "entra" else TOKEN_BATCH_GET
        batches = list(_chunks(missing, size))
        for batch, result in zip(
            batches,
            self._executor(host).map(lambda b: self._token_batch(host, auth, b), batches),
            strict=True,
        ):
            for repo in batch:
                out[repo] = result
                if isinstance(result, _Token):
                    with self._lock:
                        self._tokens[(host, identity, repo)] = result
        return out

    def _token_batch(self, host: str, auth: _Auth, repos: list[str]) -> _Token | Step:
        scopes = [f"repository:{repo}:pull" for repo in repos]
        start = time.monotonic()
        assert auth.realm is not None
        try:
            if auth.mode == "entra":
                form: list[tuple[str, str]] = [
                    ("grant_type", "refresh_token"),
                    ("service", auth.service or host),
                ]
                form += [("scope", s) for s in scopes]
                form.append(("refresh_token", auth.refresh_token or ""))
                response = self._send("POST", f"https://{host}/oauth2/token", data=form)
            else:
                headers = {}
                if auth.send_basic_to_realm and auth.credential is not None:
                    raw = f"{auth.credential.username}:{auth.credential.password}".encode()
                    basic = base64.b64encode(raw).decode()
                    self.scrub.add(basic)
                    headers["Authorization"] = f"Basic {basic}"
                params = [("service", auth.service or host)] + [("scope", s) for s in scopes]
                realm_origin = urlsplit(auth.realm).netloc.lower()
                response = self._send("GET", auth.realm, params=params, headers=headers, origin=realm_origin)
        except requests.exceptions.RequestException as exc:
            text = self.scrub(_exception_text(exc))
            return Step("token", False, _ms(start), error_code=_exception_code(exc), detail=text)
        token = None
        body: Any = None
        if response.status_code == 200:
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict):
                token = body.get("access_token") or body.get("token")
        if not isinstance(token, str) or not token:
            errors = registry_errors(response)
            code = _status_code(response.status_code, errors, authenticated=auth.mode != "anonymous-token")
            if response.status_code == 200:
                code = AUTH
            detail = self.scrub(
                errors[0][1] if errors else f"HTTP {response.status_code} from the token endpoint"
            )
            return Step(
                "token",
                False,
                _ms(start),
                status=response.status_code,
                error_code=code,
                detail=f"{errors[0][0] if errors else ''} {detail}".strip(),
            )
        self.scrub.add(token)
        expiry = jwt_expiry(token)
        now_wall, now = time.time(), time.monotonic()
        if expiry is not None:
            expires = now + (expiry - now_wall)
        else:
            seconds = body.get("expires_in") if isinstance(body, dict) else None
            expires = now + (float(seconds) if isinstance(seconds, int | float) else DEFAULT_TOKEN_SECONDS)
        step = Step("token", True, _ms(start), status=200, detail=f"{len(repos)} repositories in one request")
        return _Token(token, expires, step)

    # -- images -----------------------------------------------------------------------------------

    def check_images(self, targets: Sequence[ImageTarget]) -> list[ImageResult]:
        """Check every unique (ref, identity) once, concurrently per registry; one result each."""
        unique: dict[tuple[str, str], ImageTarget] = {}
        for target in targets:
            key = (str(target.ref), target.identity)
            if key in unique and target.want_platforms and not unique[key].want_platforms:
                unique[key] = target
            unique.setdefault(key, target)
        groups: dict[tuple[str, str, str | None, bool], list[ImageTarget]] = {}
        for target in unique.values():
            gkey = (
                target.ref.api_host,
                target.identity,
                target.registry_tenant,
                target.authentication_as_arm,
            )
            groups.setdefault(gkey, []).append(target)
        results: dict[tuple[str, str], ImageResult] = {}
        if not groups:
            return []
        with ThreadPoolExecutor(
            max_workers=min(16, len(groups)), thread_name_prefix="registry-group"
        ) as outer:
            for group_results in outer.map(self._check_group_safely, groups.values()):
                for r in group_results:
                    results[r.key] = r
        return [results[k] for k in unique if k in results]

    def _check_group_safely(self, targets: list[ImageTarget]) -> list[ImageResult]:
        """A bug or an unforeseen answer makes the group's checks incomplete, never a traceback or a pass."""
        try:
            return self._check_group(targets)
        except Exception as exc:
            detail = self.scrub(f"the registry check failed unexpectedly: {type(exc).__name__}: {exc}")
            step = Step("check", False, 0.0, detail=detail)
            return [
                ImageResult(t.ref, t.identity, (step,), INCOMPLETE, detail=detail, scope="registry")
                for t in targets
            ]

    def _check_group(self, targets: list[ImageTarget]) -> list[ImageResult]:
        host = targets[0].ref.api_host
        base = self._base(host)
        if base.failure:
            return [
                ImageResult(t.ref, t.identity, base.steps, base.failure, detail=base.detail, scope="registry")
                for t in targets
            ]
        auth = self._auth(host, targets[0], base)
        steps = base.steps + auth.steps
        if auth.failure:
            return [
                ImageResult(
                    t.ref,
                    t.identity,
                    steps,
                    auth.failure,
                    detail=auth.detail,
                    scope="registry",
                    auth=auth.label,
                )
                for t in targets
            ]
        tokens: dict[str, _Token | Step] = {}
        if auth.mode in ("entra", "basic-token", "anonymous-token"):
            tokens = self._fetch_tokens(
                host, targets[0].identity, auth, list(dict.fromkeys(t.ref.repository for t in targets))
            )
        executor = self._executor(host)
        results = list(executor.map(lambda t: self._check_one(host, t, auth, steps, tokens), targets))
        # Platforms: one GET per distinct (repository, digest), however many tags point at it.
        wanted: dict[tuple[str, str], ImageRef] = {}
        for target, result in zip(targets, results, strict=True):
            if target.want_platforms and result.failure is None:
                wanted.setdefault((target.ref.repository, result.digest or target.ref.reference), target.ref)

        def read(item: tuple[tuple[str, str], ImageRef]) -> tuple[tuple[str, ...] | None, Step]:
            (_repo, reference), ref = item
            token = tokens.get(ref.repository)
            headers = {
                "Accept": ACCEPT,
                **self._auth_header(auth, token if isinstance(token, _Token) else None),
            }
            return self._platforms_of(host, ref, reference, headers)

        found = dict(zip(wanted, executor.map(read, wanted.items()), strict=True))
        out = []
        for target, result in zip(targets, results, strict=True):
            key = (target.ref.repository, result.digest or target.ref.reference)
            if target.want_platforms and result.failure is None and key in found:
                platforms, step = found[key]
                result = replace(result, platforms=platforms, steps=(*result.steps, step))
                if step.status == 429:
                    # HEAD is free, the manifest GET is what a pull spends: Docker Hub's anonymous quota
                    # answers 429 only there. Pulls fail although the image exists.
                    result = replace(
                        result,
                        failure=RATE,
                        scope="registry",
                        detail=f"GET manifest answered 429 ({step.error_code or 'TOOMANYREQUESTS'}): pulls are "
                        "throttled although the image exists",
                    )
            out.append(result)
        return out

    def _auth_header(self, auth: _Auth, token: _Token | None) -> dict[str, str]:
        if token is not None:
            return {"Authorization": f"Bearer {token.value}"}
        if auth.mode == "basic" and auth.credential is not None:
            raw = f"{auth.credential.username}:{auth.credential.password}".encode()
            basic = base64.b64encode(raw).decode()
            self.scrub.add(basic)
            return {"Authorization": f"Basic {basic}"}
        return {}

    def _check_one(
        self,
        host: str,
        target: ImageTarget,
        auth: _Auth,
        steps: tuple[Step, ...],
        tokens: dict[str, _Token | Step],
    ) -> ImageResult:
        ref = target.ref
        identity = target.identity
        token: _Token | None = None
        latency = 0.0
        got = tokens.get(ref.repository)
        if isinstance(got, Step):
            code = got.error_code or AUTH
            step = Step(
                got.name,
                False,
                got.elapsed_ms,
                got.status,
                None if code.startswith("REGISTRY_") or code == INCOMPLETE else code,
                got.detail,
            )
            if code == INCOMPLETE and auth.mode == "anonymous-token":
                return ImageResult(
                    ref,
                    identity,
                    (*steps, step),
                    INCOMPLETE,
                    scope="image",
                    auth=auth.label,
                    detail="the registry gives no anonymous token for this repository; "
                    "credentials are needed",
                    auth_required=True,
                )
            return ImageResult(
                ref, identity, (*steps, step), code, detail=got.detail, scope="registry", auth=auth.label
            )
        if isinstance(got, _Token):
            token = got
            steps = (*steps, got.step)
            latency += got.step.elapsed_ms
        headers = {"Accept": ACCEPT, **self._auth_header(auth, token)}
        url = f"https://{host}/v2/{ref.repository}/manifests/{ref.reference}"
        start = time.monotonic()
        try:
            response = self._send("HEAD", url, headers=headers)
        except requests.exceptions.RequestException as exc:
            text = self.scrub(_exception_text(exc))
            step = Step("manifest", False, _ms(start), detail=text)
            return ImageResult(
                ref,
                identity,
                (*steps, step),
                _exception_code(exc),
                detail=text,
                scope="registry",
                auth=auth.label,
            )
        elapsed = _ms(start)
        latency += elapsed
        status = response.status_code
        slow = latency > self.settings.slow_ms
        if status == 200:
            digest = response.headers.get("Docker-Content-Digest")
            media = (response.headers.get("Content-Type") or "").split(";")[0].strip() or None
            steps = (*steps, Step("manifest", True, elapsed, status=200, detail=media))
            return ImageResult(
                ref,
                identity,
                steps,
                None,
                digest=digest,
                media_type=media,
                latency_ms=latency,
                slow=slow,
                auth=auth.label,
                scope=None,
            )
        errors: list[tuple[str, str]] = []
        if status in (401, 403):
            # HEAD answers carry no body: ask once more with GET to read the registry's error code
            # (DENIED "not allowed access" is a firewall). Not on 429/5xx: the status says it all, and
            # Docker Hub counts manifest GETs against the pull quota.
            try:
                again = self._send("GET", url, headers=headers)
                errors = registry_errors(again)
                status = again.status_code if again.status_code != 200 else status
            except requests.exceptions.RequestException:
                errors = []
        if status == 404:
            step = Step(
                "manifest",
                False,
                elapsed,
                status=404,
                error_code="MANIFEST_UNKNOWN",
                detail=f"{ref.reference} not found in {ref.repository}",
            )
            suggestions, exists, tstep = self._suggest_tags(host, ref, headers)
            if exists is False:
                step = Step(
                    "manifest",
                    False,
                    elapsed,
                    status=404,
                    error_code="NAME_UNKNOWN",
                    detail=f"repository {ref.repository} not found",
                )
            all_steps = (*steps, step) + ((tstep,) if tstep else ())
            return ImageResult(
                ref,
                identity,
                all_steps,
                NOT_FOUND,
                suggestions=suggestions,
                scope="image",
                detail=step.detail,
                latency_ms=latency,
                auth=auth.label,
                repository_exists=exists,
            )
        authenticated = auth.mode in ("entra", "basic-token", "basic")
        code = _status_code(status, errors, authenticated=authenticated)
        error_code = errors[0][0] if errors else None
        detail = self.scrub(errors[0][1] if errors else f"HTTP {status} on HEAD manifest")
        step = Step("manifest", False, elapsed, status=status, error_code=error_code, detail=detail)
        if code == INCOMPLETE and status in (401, 403):
            return ImageResult(
                ref,
                identity,
                (*steps, step),
                INCOMPLETE,
                scope="image",
                auth=auth.label,
                detail="the registry refuses anonymous pulls of this repository; credentials are needed",
                auth_required=True,
            )
        scope = "image" if code == AUTH else "registry"
        return ImageResult(
            ref,
            identity,
            (*steps, step),
            code,
            detail=detail,
            scope=scope,
            auth=auth.label,
            latency_ms=latency,
        )

    def _platforms_of(
        self, host: str, ref: ImageRef, reference: str, headers: dict[str, str]
    ) -> tuple[tuple[str, ...] | None, Step]:
        """Platforms of a manifest, read once per (registry, repository, digest) however many tags share it."""
        key = (host, ref.repository, reference)
        with self._lock:
            lock = self._platform_locks.setdefault(key, threading.Lock())
        with lock:  # single flight: tags resolving to the same digest wait for the first reader
            with self._lock:
                cached = self._platforms.get(key)
            if cached is not None:
                return cached, Step("platforms", True, 0.0, detail="cached")
            return self._read_platforms(host, ref, reference, headers, key)

    def _read_platforms(
        self, host: str, ref: ImageRef, reference: str, headers: dict[str, str], key: tuple[str, str, str]
    ) -> tuple[tuple[str, ...] | None, Step]:
        start = time.monotonic()
        try:
            response = self._send(
                "GET", f"https://{host}/v2/{ref.repository}/manifests/{reference}", headers=headers
            )
            if response.status_code != 200:
                errors = registry_errors(response)
                return None, Step(
                    "platforms",
                    False,
                    _ms(start),
                    status=response.status_code,
                    error_code=errors[0][0] if errors else None,
                    detail=self.scrub(errors[0][1]) if errors else "could not read the manifest",
                )
            manifest = response.json()
            media = manifest.get("mediaType") or (response.headers.get("Content-Type") or "").split(";")[0]
            found: list[str] = []
            if media in INDEX_MEDIA_TYPES or "manifests" in manifest:
                for entry in manifest.get("manifests") or []:
                    p = entry.get("platform") or {}
                    os_, arch = p.get("os"), p.get("architecture")
                    if os_ and arch and os_ != "unknown":
                        found.append(f"{os_}/{arch}")
            else:
                config = (manifest.get("config") or {}).get("digest")
                if not config:
                    return None, Step("platforms", False, _ms(start), detail="manifest has no config")
                blob = self._send(
                    "GET", f"https://{host}/v2/{ref.repository}/blobs/{config}", headers=headers
                )
                if blob.status_code != 200:
                    return None, Step(
                        "platforms",
                        False,
                        _ms(start),
                        status=blob.status_code,
                        detail="could not read the image config",
                    )
                cfg = blob.json()
                if cfg.get("os") and cfg.get("architecture"):
                    found.append(f"{cfg['os']}/{cfg['architecture']}")
        except (requests.exceptions.RequestException, ValueError, AttributeError) as exc:
            return None, Step("platforms", False, _ms(start), detail=self.scrub(_exception_text(exc)))
        platforms = tuple(dict.fromkeys(found))
        with self._lock:
            self._platforms[key] = platforms
        return platforms, Step("platforms", True, _ms(start), status=200, detail=", ".join(platforms))

    def _suggest_tags(
        self, host: str, ref: ImageRef, headers: dict[str, str]
    ) -> tuple[tuple[str, ...], bool | None, Step | None]:
        start = time.monotonic()
        tags: list[str] = []
        url: str | None = f"https://{host}/v2/{ref.repository}/tags/list?n=1000"
        try:
            for _ in range(10):
                assert url is not None
                response = self._send("GET", url, headers={k: v for k, v in headers.items() if k != "Accept"})
                if response.status_code == 404:
                    return (
                        (),
                        False,
                        Step(
                            "tags",
                            True,
                            _ms(start),
                            status=404,
                            error_code="NAME_UNKNOWN",
                            detail="repository does not exist",
                        ),
                    )
                if response.status_code != 200:
                    return (), None, Step("tags", False, _ms(start), status=response.status_code)
                body = response.json()
                tags.extend(t for t in (body.get("tags") or []) if isinstance(t, str))
                link = response.headers.get("Link")
                m = re.match(r"\s*<([^>]+)>", link or "")
                if not m:
                    break
                url = urljoin(url, m.group(1))
        except (requests.exceptions.RequestException, ValueError, AttributeError) as exc:
            return (), None, Step("tags", False, _ms(start), detail=self.scrub(_exception_text(exc)))
        suggestions: tuple[str, ...] = ()
        if ref.tag and not ref.digest:
            suggestions = tuple(difflib.get_close_matches(ref.tag, tags, n=3, cutoff=0.4))
        return suggestions, True, Step("tags", True, _ms(start), status=200, detail=f"{len(tags)} tags")

    # -- pull-secret credentials --------------------------------------------------------------------

    def try_credentials(self, registry: str, username: str, password: str, repository: str) -> ProbeOutcome:
        """Do these credentials get pull access to ``repository``? (for PULL_SECRET_REJECTED)."""
        from shared.reference import parse_reference

        self.scrub.add(password)
        label = "secret"
        ref = parse_reference(f"{registry}/{repository}")
        credential = RegistryCredential(ref.registry, username, password, label)
        target = ImageTarget(ref, credential=credential, want_platforms=False)
        host = ref.api_host
        base = self._base(host)
        if base.failure:
            return ProbeOutcome(False, base.failure, label, base.steps, base.detail)
        auth = self._decide_auth(host, target, base)
        steps = base.steps + auth.steps
        if auth.failure:
            return ProbeOutcome(False, auth.failure, label, steps, auth.detail)
        if auth.mode == "none":
            return ProbeOutcome(True, None, label, steps, "the registry asks for no credentials")
        if auth.mode == "anonymous-token":
            return ProbeOutcome(False, INCOMPLETE, label, steps, auth.detail)
        headers: dict[str, str] = {}
        if auth.mode == "basic-token":
            got = self._token_batch(host, auth, [ref.repository])
            if isinstance(got, Step):
                rejected = got.status in (401, 403) and got.error_code in (AUTH, INCOMPLETE)
                return ProbeOutcome(
                    False,
                    "PULL_SECRET_REJECTED" if rejected else got.error_code,
                    label,
                    (*steps, got),
                    got.detail,
                    rejected=rejected,
                )
            steps = (*steps, got.step)
            headers = self._auth_header(auth, got)
        else:
            headers = self._auth_header(auth, None)
        start = time.monotonic()
        try:
            response = self._send("GET", f"https://{host}/v2/{ref.repository}/tags/list?n=1", headers=headers)
        except requests.exceptions.RequestException as exc:
            text = self.scrub(_exception_text(exc))
            return ProbeOutcome(
                False,
                _exception_code(exc),
                label,
                (*steps, Step("tags", False, _ms(start), detail=text)),
                text,
            )
        errors = registry_errors(response)
        step = Step(
            "tags",
            response.status_code in (200, 404),
            _ms(start),
            status=response.status_code,
            error_code=errors[0][0] if errors else None,
        )
        if response.status_code in (200, 404):
            return ProbeOutcome(True, None, label, (*steps, step))
        code = _status_code(response.status_code, errors, authenticated=True)
        rejected = code == AUTH
        detail = self.scrub(errors[0][1] if errors else f"HTTP {response.status_code}")
        return ProbeOutcome(
            False,
            "PULL_SECRET_REJECTED" if rejected else code,
            label,
            (*steps, step),
            detail,
            rejected=rejected,
        )


def unique_targets(targets: Iterable[ImageTarget]) -> list[ImageTarget]:
    """The targets check_images would check (one per (ref, identity)), for callers that count."""
    seen: dict[tuple[str, str], ImageTarget] = {}
    for t in targets:
        seen.setdefault((str(t.ref), t.identity), t)
    return list(seen.values())
