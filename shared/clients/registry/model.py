"""What the registry client hands out and the small pieces every step shares.

Public: :class:`ImageTarget` / :class:`RegistryCredential` (what to check, as whom),
:class:`ImageResult` / :class:`Step` / :class:`ProbeOutcome` (what happened at each step: facts;
which finding they make is decided by the checks, :mod:`shared.checks.registry_steps`), the step
kinds (what stopped a step that got no HTTP answer), :func:`is_acr_host`, :func:`registry_errors`
(an OCI error body) and :class:`Scrubber` (no secret in any detail string).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from shared.cloud import cloud_of_login_server
from shared.reference import ImageRef

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_MEDIA_TYPES = (MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST)
INDEX_MEDIA_TYPES = frozenset({MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST})
ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)

PULLWATCH_IDENTITY = "pullwatch"

# What stopped a step that got no HTTP answer (Step.kind).
NAME_UNRESOLVED = "name_unresolved"  # the host name does not resolve
ADDRESS_REFUSED = "address_refused"  # the name resolves to an address pullwatch must not connect to
CONNECT_FAILED = "connect_failed"  # no connection, or the connection broke
TLS_FAILED = "tls_failed"  # TLS handshake or certificate verification failed
DEADLINE_PASSED = "deadline_passed"  # no complete answer within the request deadline
NOT_SENT = "not_sent"  # pullwatch would not send it: plain HTTP, a credential redirected elsewhere
TOO_LARGE = "too_large"  # the answer was larger than its cap
NOT_ATTEMPTED = (
    "not_attempted"  # pullwatch could not try (no credential, an untrusted tenant or realm, a bad host)
)
UNEXPECTED = "unexpected"  # an answer or an error nothing foresaw
STEP_KINDS = frozenset(
    {
        NAME_UNRESOLVED,
        ADDRESS_REFUSED,
        CONNECT_FAILED,
        TLS_FAILED,
        DEADLINE_PASSED,
        NOT_SENT,
        TOO_LARGE,
        NOT_ATTEMPTED,
        UNEXPECTED,
    }
)


def is_acr_host(host: str) -> bool:
    """An ACR login server of any Azure cloud (what the name says; whether it may receive an Entra
    token is the configured cloud's rule, in the auth step)."""
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
    """One step of the pull path and what happened at it."""

    name: str  # dns, tcp, tls, challenge, entra, exchange, auth, token, manifest, platforms, tags, check
    ok: bool
    elapsed_ms: float
    status: int | None = None  # the HTTP status, when the registry answered
    error_code: str | None = None  # the answer's first OCI error code (DENIED, MANIFEST_UNKNOWN…)
    detail: str | None = None
    kind: str | None = None  # no HTTP answer: what stopped the step (one of STEP_KINDS)
    errors: tuple[tuple[str, str], ...] = ()  # every (code, message) of the OCI error body, scrubbed
    authenticated: bool = False  # the request carried a credential (a token, Basic or an Entra token)
    retry_after: str | None = None  # the answer's Retry-After header, as sent

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
    steps: tuple[Step, ...]  # the steps walked, the failed one (if any) last but for tag suggestions
    platforms: tuple[str, ...] | None = None  # ("linux/amd64", …) when read
    suggestions: tuple[str, ...] = ()
    detail: str | None = None  # what happened, in words (scrubbed)
    digest: str | None = None
    media_type: str | None = None
    latency_ms: float | None = None  # token + manifest
    slow: bool = False
    auth: str = "none"  # "entra", "basic", "anonymous" or "none" (registry open)
    repository_exists: bool | None = None
    arm_audience: bool = False  # pullwatch's Entra token was for ARM (authentication-as-ARM)

    @property
    def key(self) -> tuple[str, str]:
        return (str(self.ref), self.identity)

    @property
    def failed_step(self) -> Step | None:
        return next((s for s in self.steps if not s.ok), None)

    @property
    def found(self) -> bool:
        """The manifest is there (HEAD answered 200)."""
        return any(s.name == "manifest" and s.ok for s in self.steps)

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
    """What trying a credential said: ``ok`` when the registry let it list the repository's tags
    (200 or 404) or asks for no credentials; else the steps say where it stopped."""

    ok: bool
    identity: str
    steps: tuple[Step, ...]
    detail: str | None = None

    @property
    def failed_step(self) -> Step | None:
        return next((s for s in self.steps if not s.ok), None)


def registry_errors(
    response: requests.Response, scrub: Callable[[str], str] | None = None
) -> list[tuple[str, str]]:
    """(code, message) pairs of an OCI error body, or [] when the body is not one; each message
    passed through ``scrub`` when given."""
    try:
        data = response.json()
    except ValueError:
        return []
    errors = data.get("errors") if isinstance(data, dict) else None
    out = []
    for e in errors if isinstance(errors, list) else []:
        if isinstance(e, dict):
            message = str(e.get("message") or "")
            out.append((str(e.get("code") or ""), scrub(message) if scrub else message))
    return out


def answered(
    name: str,
    start: float,
    response: requests.Response,
    errors: Sequence[tuple[str, str]],
    *,
    detail: str | None,
    authenticated: bool = False,
) -> Step:
    """The failed step of a request the registry answered with ``response`` (its status, its OCI
    errors, its Retry-After)."""
    return Step(
        name,
        False,
        ms_since(start),
        status=response.status_code,
        error_code=errors[0][0] if errors else None,
        detail=detail,
        errors=tuple(errors),
        authenticated=authenticated,
        retry_after=response.headers.get("Retry-After"),
    )


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


def ms_since(start: float) -> float:
    return (time.monotonic() - start) * 1000.0


def chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])
