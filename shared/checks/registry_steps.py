"""Which finding the registry's steps make (pure: no I/O).

The registry client (:mod:`shared.clients.registry`) reports what happened at each step of the pull
path — a :class:`~shared.clients.registry.Step`: its HTTP status, the OCI error codes and messages
of the answer, whether it carried a credential, or what stopped it without an answer (its
``kind``). This module decides what that means.

Public interface::

    Verdict(code, scope, detail, auth_required=False)
    image_verdict(result: ImageResult) -> Verdict | None   # None: the image is there, pullable
    step_code(step: Step) -> str                            # the finding code of one failed step
    answer_code(status, errors, *, authenticated) -> str    # the finding code of one HTTP answer
    credential_rejected(step: Step | None) -> bool         # a credential trial's failed step: refused?

Rules:

- No HTTP answer: a name that does not resolve is ``REGISTRY_DNS_FAILURE``, a failed TLS handshake
  ``REGISTRY_TLS_ERROR``, no connection or no answer within the deadline ``REGISTRY_UNREACHABLE``;
  anything pullwatch did not or would not send (address policy, plain HTTP, a credential
  redirected elsewhere, an answer over its cap, no credential to try, a bug) ``CHECK_INCOMPLETE``.
- An answer: 403 with ``DENIED`` "… not allowed access" is the firewall; 429 or ``TOOMANYREQUESTS``
  the rate limit; 5xx (and any other 4xx than 401/403/404) a server error; 401/403 to a request
  carrying a credential ``REGISTRY_AUTH_REJECTED``, to an anonymous one ``CHECK_INCOMPLETE`` (the
  registry wants credentials); a missing manifest ``IMAGE_NOT_FOUND``.
- Per step: a 401 on the challenge (``GET /v2/`` without a usable ``WWW-Authenticate``) could not
  be checked; the token and exchange endpoints answering 200 without a token, or the exchange any
  other non-error answer, refuse the identity.
- Scope: a missing manifest, or one refused to a credential, is about the image; an anonymous token
  or manifest refused means credentials are needed for that image (``auth_required``); anything
  else stops every image of the registry. A 429 on the manifest GET (the platforms read, what a
  pull spends) is the rate limit although the HEAD found the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.clients.registry import ImageResult, Step
from shared.clients.registry.model import CONNECT_FAILED, DEADLINE_PASSED, NAME_UNRESOLVED, TLS_FAILED

DNS, UNREACHABLE, TLS = "REGISTRY_DNS_FAILURE", "REGISTRY_UNREACHABLE", "REGISTRY_TLS_ERROR"
FIREWALL, AUTH, RATE = "REGISTRY_FIREWALL_DENIED", "REGISTRY_AUTH_REJECTED", "REGISTRY_RATE_LIMITED"
SERVER, NOT_FOUND, INCOMPLETE = "REGISTRY_SERVER_ERROR", "IMAGE_NOT_FOUND", "CHECK_INCOMPLETE"

_KIND_CODES = {
    NAME_UNRESOLVED: DNS,
    TLS_FAILED: TLS,
    CONNECT_FAILED: UNREACHABLE,
    DEADLINE_PASSED: UNREACHABLE,
}

NEEDS_CREDENTIALS_TOKEN = "the registry gives no anonymous token for this repository; credentials are needed"
NEEDS_CREDENTIALS_MANIFEST = "the registry refuses anonymous pulls of this repository; credentials are needed"
ARM_AUDIENCE_HINT = " (ARM-audience tokens are refused when authentication-as-ARM is disabled)"


@dataclass(frozen=True)
class Verdict:
    """What a registry result means: a finding code, whether it is about the image or the whole
    registry, and the words to show."""

    code: str
    scope: str  # "image" or "registry"
    detail: str | None
    auth_required: bool = False  # anonymous access refused: credentials are needed


def answer_code(status: int, errors: Sequence[tuple[str, str]], *, authenticated: bool) -> str:
    """The finding code of a registry's HTTP error answer (status and OCI error body)."""
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


def step_code(step: Step) -> str:
    """The finding code of a failed step."""
    if step.kind is not None or step.status is None:
        return _KIND_CODES.get(step.kind or "", INCOMPLETE)
    if step.name == "challenge" and step.status == 401:
        return INCOMPLETE  # a 401 without a usable challenge: nothing to authenticate with
    if step.name == "manifest" and step.status == 404:
        return NOT_FOUND
    if step.name in ("exchange", "token") and step.status == 200:
        return AUTH  # answered, but without a token
    code = answer_code(step.status, step.errors, authenticated=step.authenticated)
    if step.name == "exchange" and code == INCOMPLETE:
        return AUTH
    return code


def image_verdict(result: ImageResult) -> Verdict | None:
    """What the steps of one image check mean; None when the image is there and pullable."""
    step = result.failed_step
    if step is None:
        return None
    if step.name == "platforms":
        if step.status != 429:
            return None  # platforms unknown: not guessed, not a failure
        return Verdict(
            RATE,
            "registry",
            f"GET manifest answered 429 ({step.error_code or 'TOOMANYREQUESTS'}): pulls are throttled "
            "although the image exists",
        )
    code = step_code(step)
    if code == INCOMPLETE and step.name == "token" and not step.authenticated:
        return Verdict(INCOMPLETE, "image", NEEDS_CREDENTIALS_TOKEN, auth_required=True)
    if step.name == "manifest":
        if code == INCOMPLETE and step.status in (401, 403):
            return Verdict(INCOMPLETE, "image", NEEDS_CREDENTIALS_MANIFEST, auth_required=True)
        if code in (NOT_FOUND, AUTH):
            return Verdict(code, "image", result.detail)
    if code == AUTH and step.name == "exchange" and result.arm_audience:
        return Verdict(AUTH, "registry", f"{result.detail}{ARM_AUDIENCE_HINT}")
    return Verdict(code, "registry", result.detail)


def credential_rejected(step: Step | None) -> bool:
    """The registry refused a pull secret's credentials: ``step``, the failed step of a credential
    trial (:class:`~shared.clients.registry.ProbeOutcome`), is a 401/403 to the token or tag-list
    request that carried them. PULL_SECRET_REJECTED."""
    return (
        step is not None
        and step.name in ("token", "tags")
        and step.status in (401, 403)
        and step_code(step) == AUTH
    )
