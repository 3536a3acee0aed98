"""Credential trials: do a pull secret's user and password get pull access to a repository?

The facts behind PULL_SECRET_REJECTED: the same probe and authentication as an image check, then
one ``GET /v2/<repo>/tags/list?n=1`` with the credential (200 or 404: accepted; otherwise the
step's status and error codes, which :func:`shared.checks.registry_steps.credential_rejected` reads).
"""

from __future__ import annotations

import time

import requests

from shared.clients.registry.auth import Authenticator, authorization
from shared.clients.registry.model import (
    NOT_ATTEMPTED,
    ImageTarget,
    ProbeOutcome,
    RegistryCredential,
    Scrubber,
    Step,
    answered,
    ms_since,
    registry_errors,
)
from shared.clients.registry.probe import Prober
from shared.clients.registry.transport import MAX_TAG_PAGE_BYTES, Transport, exception_kind
from shared.errors import reason_of
from shared.reference import parse_reference


def try_credentials(
    prober: Prober,
    authenticator: Authenticator,
    transport: Transport,
    scrub: Scrubber,
    registry: str,
    username: str,
    password: str,
    repository: str,
) -> ProbeOutcome:
    """Do these credentials get pull access to ``repository``? (for PULL_SECRET_REJECTED)."""
    scrub.add(password)
    label = "secret"
    ref = parse_reference(f"{registry}/{repository}")
    credential = RegistryCredential(ref.registry, username, password, label)
    target = ImageTarget(ref, credential=credential, want_platforms=False)
    host = ref.api_host
    base = prober.probe(host)
    if base.failed:
        return ProbeOutcome(False, label, base.steps, base.detail)
    auth = authenticator.decide(host, target, base.challenge)
    steps = base.steps + auth.steps
    if auth.failed_step is not None:
        return ProbeOutcome(False, label, steps, auth.detail)
    if auth.mode == "none":
        return ProbeOutcome(True, label, steps, "the registry asks for no credentials")
    if auth.mode == "anonymous-token":  # the realm is not trusted with the credential
        withheld = Step("auth", False, 0.0, detail=auth.detail, kind=NOT_ATTEMPTED)
        return ProbeOutcome(False, label, (*steps, withheld), auth.detail)
    headers: dict[str, str] = {}
    if auth.mode == "basic-token":
        got = authenticator.token_batch(host, auth, [ref.repository])
        if isinstance(got, Step):
            return ProbeOutcome(False, label, (*steps, got), got.detail)
        steps = (*steps, got.step)
        headers = authorization(auth, got, scrub)
    else:
        headers = authorization(auth, None, scrub)
    start = time.monotonic()
    try:
        response = transport.send(
            "GET",
            f"https://{host}/v2/{ref.repository}/tags/list?n=1",
            headers=headers,
            scope=auth.scope,
            limit=MAX_TAG_PAGE_BYTES,
        )
    except requests.exceptions.RequestException as exc:
        text = scrub(reason_of(exc))
        step = Step("tags", False, ms_since(start), detail=text, kind=exception_kind(exc), authenticated=True)
        return ProbeOutcome(False, label, (*steps, step), text)
    errors = registry_errors(response, scrub)
    if response.status_code in (200, 404):
        step = Step("tags", True, ms_since(start), status=response.status_code, authenticated=True)
        return ProbeOutcome(True, label, (*steps, step))
    detail = errors[0][1] if errors else f"HTTP {response.status_code}"
    step = answered("tags", start, response, errors, detail=None, authenticated=True)
    return ProbeOutcome(False, label, (*steps, step), detail)
