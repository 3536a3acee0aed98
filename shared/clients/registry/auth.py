"""How pullwatch authenticates to a registry: challenge parsing, the choice of identity flow, the
Entra exchange for ACR, access tokens in batches (cached per repository), the Authorization header.

Flows (``Auth.mode``): ``none`` (open registry), ``entra`` (ACR: Entra token → /oauth2/exchange →
refresh token → POST /oauth2/token), ``basic-token`` (a pull secret's Basic credentials to a
trusted realm → bearer token), ``anonymous-token`` (realm without credentials), ``basic`` (Basic on
every request) and ``anonymous``. Where each identity's credentials may go is decided once, by
:class:`shared.clients.registry.credential_rule.CredentialScope`.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import requests

from shared.clients.registry.credential_rule import CredentialScope, realm_trusted
from shared.clients.registry.model import (
    CONNECT_FAILED,
    DEADLINE_PASSED,
    NOT_ATTEMPTED,
    ImageTarget,
    RegistryCredential,
    Scrubber,
    Step,
    answered,
    chunks,
    ms_since,
    registry_errors,
)
from shared.clients.registry.transport import MAX_TOKEN_BYTES, Transport, exception_kind
from shared.config import Settings
from shared.errors import reason_of
from shared.reference import DOCKER_HUB, DOCKER_HUB_ALIASES

TOKEN_BATCH_POST = 50  # repositories per ACR /oauth2/token request (form body)
TOKEN_BATCH_GET = 20  # repositories per GET realm request (query string length)
TOKEN_MARGIN_SECONDS = 30.0
DEFAULT_TOKEN_SECONDS = 60.0


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


@dataclass
class Token:
    value: str
    expires: float  # monotonic
    step: Step

    def valid(self) -> bool:
        return time.monotonic() < self.expires - TOKEN_MARGIN_SECONDS


@dataclass
class Auth:
    """How one (registry, identity) authenticates, decided after the challenge."""

    mode: str  # "none", "entra", "basic-token", "anonymous-token", "basic", "anonymous"
    steps: tuple[Step, ...] = ()  # a failed one when this identity cannot authenticate
    detail: str | None = None
    realm: str | None = None
    service: str | None = None
    send_basic_to_realm: bool = False
    credential: RegistryCredential | None = None
    refresh_token: str | None = None
    scope: CredentialScope | None = None  # where this identity's credentials may go (None: nowhere)
    arm_audience: bool = False  # the Entra token asked for is for ARM (authentication-as-ARM)

    @property
    def failed_step(self) -> Step | None:
        return next((s for s in self.steps if not s.ok), None)

    @property
    def may_pass(self) -> bool:
        """Failed in a way that may pass by itself (no connection or answer in time, 429, 5xx or
        another unexpected 4xx): decided again next time rather than remembered."""
        step = self.failed_step
        if step is None:
            return False
        if step.kind is not None or step.status is None:
            return step.kind in (CONNECT_FAILED, DEADLINE_PASSED)
        status = step.status
        return (
            status == 429
            or any(code == "TOOMANYREQUESTS" for code, _ in step.errors)
            or (status >= 400 and status not in (401, 403, 404))
        )

    @property
    def label(self) -> str:
        return {"none": "none", "entra": "entra", "basic-token": "basic", "basic": "basic"}.get(
            self.mode, "anonymous"
        )


def basic_authorization(credential: RegistryCredential, scrub: Scrubber) -> dict[str, str]:
    raw = f"{credential.username}:{credential.password}".encode()
    basic = base64.b64encode(raw).decode()
    scrub.add(basic)
    return {"Authorization": f"Basic {basic}"}


def authorization(auth: Auth, token: Token | None, scrub: Scrubber) -> dict[str, str]:
    """The Authorization header of a registry request for this identity (a bearer token or Basic)."""
    if token is not None:
        return {"Authorization": f"Bearer {token.value}"}
    if auth.mode == "basic" and auth.credential is not None:
        return basic_authorization(auth.credential, scrub)
    return {}


class Authenticator:
    """Decides and caches how each (registry, identity) authenticates, and fetches its tokens."""

    def __init__(
        self,
        settings: Settings,
        transport: Transport,
        scrub: Scrubber,
        *,
        entra_token: Callable[[str], str] | None,
        trusted_tenants: frozenset[str],
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.scrub = scrub
        self._entra_token = entra_token
        self._trusted_tenants = trusted_tenants
        self._lock = threading.Lock()
        self._auths: dict[tuple[str, str, str | None, bool], Auth] = {}
        self._auth_locks: dict[tuple[str, str, str | None, bool], threading.Lock] = {}
        self._tokens: dict[tuple[str, str, str], Token] = {}  # (host, identity, repo)

    def auth(self, host: str, target: ImageTarget, challenge: Challenge | None) -> Auth:
        key = (host, target.identity, target.registry_tenant, target.authentication_as_arm)
        with self._lock:
            lock = self._auth_locks.setdefault(key, threading.Lock())
        with lock:
            auth = self._auths.get(key)
            if auth is None or (
                auth.mode == "entra"
                and auth.failed_step is None
                and auth.refresh_token
                and (jwt_expiry(auth.refresh_token) or float("inf")) - TOKEN_MARGIN_SECONDS < time.time()
            ):
                auth = self.decide(host, target, challenge)
                if not auth.may_pass:
                    self._auths[key] = auth
            return auth

    def _credential_matches(self, credential: RegistryCredential, registry: str) -> bool:
        have = credential.host.lower()
        if have in DOCKER_HUB_ALIASES or have.rstrip("/").endswith("index.docker.io/v1"):
            have = DOCKER_HUB
        return have == registry

    def decide(self, host: str, target: ImageTarget, challenge: Challenge | None) -> Auth:
        """How this identity authenticates, and (:class:`CredentialScope`) where its credentials may go."""
        auth = self._choose_auth(host, target, challenge)
        realm = challenge.realm if challenge is not None else None
        return replace(auth, scope=CredentialScope.of_registry(host, realm))

    def _choose_auth(self, host: str, target: ImageTarget, challenge: Challenge | None) -> Auth:
        credential = target.credential
        if credential is not None:
            self.scrub.add(credential.password)
            if not self._credential_matches(credential, target.ref.registry):
                return _not_attempted(
                    "anonymous",
                    f"credential {credential.label} is for {credential.host}, not {target.ref.registry}; not sent",
                )
        if challenge is None:
            return Auth("none")
        if challenge.scheme == "basic":
            return Auth("basic" if credential else "anonymous", credential=credential)
        realm, service = challenge.realm, challenge.service or host
        if not realm:
            return _not_attempted("anonymous", "Bearer challenge without a realm")
        realm_host = (urlsplit(realm).hostname or "").lower()
        if credential is None and self.settings.cloud.is_acr_host(host):
            return self._entra_exchange(host, target, realm, service, realm_trusted(host, realm))
        if credential is not None:
            if not realm_trusted(host, realm):
                return Auth(
                    "anonymous-token",
                    realm=realm,
                    service=service,
                    detail=f"token realm {realm_host} is not {host}: credentials withheld, asked anonymously",
                )
            return Auth(
                "basic-token", realm=realm, service=service, send_basic_to_realm=True, credential=credential
            )
        return Auth("anonymous-token", realm=realm, service=service)

    def _entra_exchange(
        self, host: str, target: ImageTarget, realm: str, service: str, realm_is_trusted: bool
    ) -> Auth:
        if self._entra_token is None:
            return _not_attempted(
                "anonymous-token", "no Entra credential configured for pullwatch; cannot check a private ACR"
            )
        if not realm_is_trusted:  # an ACR's realm is its own login server
            return _not_attempted(
                "entra",
                f"ACR challenge realm {urlsplit(realm).netloc} is not the login server {host}: Entra token withheld",
            )
        tenant = (target.registry_tenant or "").lower()
        if not tenant or tenant not in self._trusted_tenants:
            why = "unknown" if not tenant else f"{tenant}, not a trusted tenant"
            return _not_attempted(
                "entra", f"registry tenant is {why} (PULLWATCH_TRUSTED_TENANTS): Entra token withheld"
            )
        cloud = self.settings.cloud
        audience = cloud.arm_scope if target.authentication_as_arm else cloud.acr_scope
        start = time.monotonic()
        try:
            entra = self._entra_token(audience)
        except Exception as exc:
            detail = self.scrub(f"could not get an Entra token for {audience}: {type(exc).__name__}: {exc}")
            return Auth(
                "entra",
                steps=(Step("entra", False, ms_since(start), detail=detail, kind=NOT_ATTEMPTED),),
                detail=detail,
            )
        self.scrub.add(entra)
        entra_step = Step("entra", True, ms_since(start), detail=f"audience {audience}")
        start = time.monotonic()
        form = {"grant_type": "access_token", "service": service, "tenant": tenant, "access_token": entra}
        try:
            response = self.transport.send(
                "POST",
                f"https://{host}/oauth2/exchange",
                data=form,
                scope=CredentialScope.of_registry(host),
                limit=MAX_TOKEN_BYTES,
            )
        except requests.exceptions.RequestException as exc:
            text = self.scrub(reason_of(exc))
            step = Step(
                "exchange", False, ms_since(start), detail=text, kind=exception_kind(exc), authenticated=True
            )
            return Auth("entra", steps=(entra_step, step), detail=f"POST /oauth2/exchange failed: {text}")
        refresh = None
        if response.status_code == 200:
            try:
                body = response.json()
                refresh = body.get("refresh_token") if isinstance(body, dict) else None
            except ValueError:
                refresh = None
        if not isinstance(refresh, str) or not refresh:
            errors = registry_errors(response, self.scrub)
            detail = errors[0][1] if errors else f"HTTP {response.status_code} from /oauth2/exchange"
            step = answered("exchange", start, response, errors, detail=detail, authenticated=True)
            return Auth(
                "entra", steps=(entra_step, step), detail=detail, arm_audience=target.authentication_as_arm
            )
        self.scrub.add(refresh)
        step = Step("exchange", True, ms_since(start), status=200)
        return Auth("entra", steps=(entra_step, step), realm=realm, service=service, refresh_token=refresh)

    def tokens(self, host: str, identity: str, auth: Auth, repos: Sequence[str]) -> dict[str, Token | Step]:
        """A token per repository (one request per batch); a failed Step where the batch failed."""
        out: dict[str, Token | Step] = {}
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
        batches = list(chunks(missing, size))
        for batch, result in zip(
            batches,
            self.transport.map(host, lambda b: self.token_batch(host, auth, b), batches),
            strict=True,
        ):
            for repo in batch:
                out[repo] = result
                if isinstance(result, Token):
                    with self._lock:
                        self._tokens[(host, identity, repo)] = result
        return out

    def token_batch(self, host: str, auth: Auth, repos: list[str]) -> Token | Step:
        scopes = [f"repository:{repo}:pull" for repo in repos]
        authenticated = auth.mode != "anonymous-token"  # an Entra refresh token or Basic credentials
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
                response = self.transport.send(
                    "POST", f"https://{host}/oauth2/token", data=form, scope=auth.scope, limit=MAX_TOKEN_BYTES
                )
            else:
                headers = {}
                if auth.send_basic_to_realm and auth.credential is not None:
                    headers.update(basic_authorization(auth.credential, self.scrub))
                params = [("service", auth.service or host)] + [("scope", s) for s in scopes]
                response = self.transport.send(
                    "GET", auth.realm, params=params, headers=headers, scope=auth.scope, limit=MAX_TOKEN_BYTES
                )
        except requests.exceptions.RequestException as exc:
            text = self.scrub(reason_of(exc))
            return Step(
                "token",
                False,
                ms_since(start),
                detail=text,
                kind=exception_kind(exc),
                authenticated=authenticated,
            )
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
            errors = registry_errors(response, self.scrub)
            detail = errors[0][1] if errors else f"HTTP {response.status_code} from the token endpoint"
            return answered(
                "token",
                start,
                response,
                errors,
                detail=f"{errors[0][0] if errors else ''} {detail}".strip(),
                authenticated=authenticated,
            )
        self.scrub.add(token)
        expiry = jwt_expiry(token)
        now_wall, now = time.time(), time.monotonic()
        if expiry is not None:
            expires = now + (expiry - now_wall)
        else:
            seconds = body.get("expires_in") if isinstance(body, dict) else None
            expires = now + (float(seconds) if isinstance(seconds, int | float) else DEFAULT_TOKEN_SECONDS)
        step = Step(
            "token", True, ms_since(start), status=200, detail=f"{len(repos)} repositories in one request"
        )
        return Token(token, expires, step)


def _not_attempted(mode: str, detail: str) -> Auth:
    """This identity cannot be tried (no credential, an untrusted realm or tenant): one failed step says why."""
    return Auth(mode, steps=(Step("auth", False, 0.0, detail=detail, kind=NOT_ATTEMPTED),), detail=detail)
