"""Credential trials: do a pull secret's user and password get pull access to a repository?

The answer behind PULL_SECRET_REJECTED: the same probe and authentication as an image check, then
one ``GET /v2/<repo>/tags/list?n=1`` with the credential (200 or 404: accepted; 401/403: rejected).
"""

from __future__ import annotations

import time

import requests

from shared.clients.registry.auth import Authenticator, authorization
from shared.clients.registry.model import (
    AUTH,
    INCOMPLETE,
    ImageTarget,
    ProbeOutcome,
    RegistryCredential,
    Scrubber,
    Step,
    finding_code,
    ms_since,
    registry_errors,
)
from shared.clients.registry.probe import Prober
from shared.clients.registry.transport import MAX_TAG_PAGE_BYTES, Transport, exception_code
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
    if base.failure:
        return ProbeOutcome(False, base.failure, label, base.steps, base.detail)
    auth = authenticator.decide(host, target, base.challenge)
    steps = base.steps + auth.steps
    if auth.failure:
        return ProbeOutcome(False, auth.failure, label, steps, auth.detail)
    if auth.mode == "none":
        return ProbeOutcome(True, None, label, steps, "the registry asks for no credentials")
    if auth.mode == "anonymous-token":
        return ProbeOutcome(False, INCOMPLETE, label, steps, auth.detail)
    headers: dict[str, str] = {}
    if auth.mode == "basic-token":
        got = authenticator.token_batch(host, auth, [ref.repository])
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
        return ProbeOutcome(
            False,
            exception_code(exc),
            label,
            (*steps, Step("tags", False, ms_since(start), detail=text)),
            text,
        )
    errors = registry_errors(response)
    step = Step(
        "tags",
        response.status_code in (200, 404),
        ms_since(start),
        status=response.status_code,
        error_code=errors[0][0] if errors else None,
    )
    if response.status_code in (200, 404):
        return ProbeOutcome(True, None, label, (*steps, step))
    code = finding_code(response.status_code, errors, authenticated=True)
    rejected = code == AUTH
    detail = scrub(errors[0][1] if errors else f"HTTP {response.status_code}")
    return ProbeOutcome(
        False,
        "PULL_SECRET_REJECTED" if rejected else code,
        label,
        (*steps, step),
        detail,
        rejected=rejected,
    )
