"""What the registry client hands out and the small pieces every step shares.

Public: the finding codes it produces, :class:`ImageTarget` / :class:`RegistryCredential` (what to
check, as whom), :class:`ImageResult` / :class:`Step` / :class:`ProbeOutcome` (what it found),
:func:`is_acr_host`, :func:`registry_errors` (an OCI error body), :func:`finding_code` (a status
and error body as a finding code) and :class:`Scrubber` (no secret in any detail string).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Sequence
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

# Finding codes this client produces.
DNS, UNREACHABLE, TLS = "REGISTRY_DNS_FAILURE", "REGISTRY_UNREACHABLE", "REGISTRY_TLS_ERROR"
FIREWALL, AUTH, RATE = "REGISTRY_FIREWALL_DENIED", "REGISTRY_AUTH_REJECTED", "REGISTRY_RATE_LIMITED"
SERVER, NOT_FOUND, INCOMPLETE = "REGISTRY_SERVER_ERROR", "IMAGE_NOT_FOUND", "CHECK_INCOMPLETE"


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


def ms_since(start: float) -> float:
    return (time.monotonic() - start) * 1000.0


def chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def finding_code(status: int, errors: list[tuple[str, str]], *, authenticated: bool) -> str:
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
