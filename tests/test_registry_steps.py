"""shared/checks/registry_steps.py: what the registry's reported steps mean (pure, plain Step values)."""

from __future__ import annotations

import pytest

from shared.checks.registry_steps import credential_rejected, image_verdict, step_code
from shared.clients.registry import ImageResult, Step
from shared.reference import parse_reference

REF = parse_reference("contosoacr.azurecr.io/shop/web:1.4.2")
PROBED = (
    Step("dns", True, 1.0),
    Step("tcp", True, 1.0),
    Step("tls", True, 1.0),
    Step("challenge", True, 1.0, 401),
)
FIREWALL_MESSAGE = "client with IP '203.0.113.9' is not allowed access. Refer https://aka.ms/acr/firewall"


def result(*steps: Step, **kw: object) -> ImageResult:
    return ImageResult(REF, "pullwatch", steps, detail=steps[-1].detail, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("step", "code"),
    [
        (Step("dns", False, 1.0, kind="name_unresolved"), "REGISTRY_DNS_FAILURE"),
        (Step("dns", False, 1.0, kind="address_refused"), "CHECK_INCOMPLETE"),
        (Step("tcp", False, 1.0, kind="connect_failed"), "REGISTRY_UNREACHABLE"),
        (Step("manifest", False, 1.0, kind="deadline_passed"), "REGISTRY_UNREACHABLE"),
        (Step("tls", False, 1.0, kind="tls_failed"), "REGISTRY_TLS_ERROR"),
        (Step("exchange", False, 1.0, kind="not_sent"), "CHECK_INCOMPLETE"),
        (Step("token", False, 1.0, kind="too_large"), "CHECK_INCOMPLETE"),
        (Step("auth", False, 0.0, kind="not_attempted"), "CHECK_INCOMPLETE"),
        (Step("check", False, 0.0, kind="unexpected"), "CHECK_INCOMPLETE"),
        (
            Step(
                "exchange",
                False,
                1.0,
                403,
                "DENIED",
                errors=(("DENIED", FIREWALL_MESSAGE),),
                authenticated=True,
            ),
            "REGISTRY_FIREWALL_DENIED",
        ),
        (Step("token", False, 1.0, 401, "UNAUTHORIZED", authenticated=True), "REGISTRY_AUTH_REJECTED"),
        (
            Step("exchange", False, 1.0, 200, authenticated=True),
            "REGISTRY_AUTH_REJECTED",
        ),  # no token in a 200
        (Step("exchange", False, 1.0, 302, authenticated=True), "REGISTRY_AUTH_REJECTED"),
        (Step("token", False, 1.0, 200, authenticated=True), "REGISTRY_AUTH_REJECTED"),
        (Step("manifest", False, 1.0, 429), "REGISTRY_RATE_LIMITED"),
        (
            Step("manifest", False, 1.0, 403, "TOOMANYREQUESTS", errors=(("TOOMANYREQUESTS", "slow down"),)),
            "REGISTRY_RATE_LIMITED",
        ),
        (Step("manifest", False, 1.0, 503), "REGISTRY_SERVER_ERROR"),
        (Step("manifest", False, 1.0, 400, authenticated=True), "REGISTRY_SERVER_ERROR"),
        (Step("manifest", False, 1.0, 404, "MANIFEST_UNKNOWN"), "IMAGE_NOT_FOUND"),
        (Step("manifest", False, 1.0, 404, "NAME_UNKNOWN"), "IMAGE_NOT_FOUND"),
        (
            Step("manifest", False, 1.0, 401, "UNAUTHORIZED"),
            "CHECK_INCOMPLETE",
        ),  # anonymous: credentials needed
        (Step("challenge", False, 1.0, 401), "CHECK_INCOMPLETE"),  # no usable WWW-Authenticate
        (
            Step("challenge", False, 1.0, 403, "DENIED", errors=(("DENIED", FIREWALL_MESSAGE),)),
            "REGISTRY_FIREWALL_DENIED",
        ),
    ],
)
def test_each_failed_step_has_its_finding_code(step: Step, code: str) -> None:
    assert step_code(step) == code


def test_a_denied_answer_that_is_not_the_firewall_is_an_auth_refusal() -> None:
    step = Step(
        "manifest",
        False,
        1.0,
        403,
        "DENIED",
        errors=(("DENIED", "requested access is denied"),),
        authenticated=True,
    )
    assert step_code(step) == "REGISTRY_AUTH_REJECTED"


def test_a_found_image_has_no_verdict_even_when_its_platforms_are_unknown() -> None:
    found = result(*PROBED, Step("manifest", True, 1.0, 200))
    assert image_verdict(found) is None
    unread = result(*PROBED, Step("manifest", True, 1.0, 200), Step("platforms", False, 1.0, 500))
    assert image_verdict(unread) is None


def test_a_429_on_the_manifest_get_is_the_rate_limit_although_the_image_exists() -> None:
    throttled = result(
        *PROBED, Step("manifest", True, 1.0, 200), Step("platforms", False, 1.0, 429, "TOOMANYREQUESTS")
    )
    verdict = image_verdict(throttled)
    assert verdict is not None
    assert (verdict.code, verdict.scope) == ("REGISTRY_RATE_LIMITED", "registry")
    assert verdict.detail and "although the image exists" in verdict.detail


def test_a_missing_image_or_a_refused_credential_is_about_the_image() -> None:
    missing = image_verdict(
        result(*PROBED, Step("manifest", False, 1.0, 404, "MANIFEST_UNKNOWN", "1.4.2 not found"))
    )
    assert missing is not None and (missing.code, missing.scope) == ("IMAGE_NOT_FOUND", "image")
    refused = image_verdict(
        result(*PROBED, Step("manifest", False, 1.0, 401, "UNAUTHORIZED", authenticated=True))
    )
    assert refused is not None and (refused.code, refused.scope) == ("REGISTRY_AUTH_REJECTED", "image")


def test_anonymous_access_refused_means_credentials_are_needed_for_that_image() -> None:
    for step in (
        Step("manifest", False, 1.0, 401, "UNAUTHORIZED"),
        Step("token", False, 1.0, 401, "UNAUTHORIZED"),
    ):
        verdict = image_verdict(result(*PROBED, step))
        assert verdict is not None
        assert (verdict.code, verdict.scope, verdict.auth_required) == ("CHECK_INCOMPLETE", "image", True)
        assert verdict.detail and "credentials are needed" in verdict.detail


def test_a_failure_before_the_manifest_stops_the_whole_registry() -> None:
    for step in (
        Step("dns", False, 1.0, kind="name_unresolved"),
        Step("token", False, 1.0, 401, "UNAUTHORIZED", authenticated=True),
        Step("auth", False, 0.0, kind="not_attempted"),
    ):
        verdict = image_verdict(result(step))
        assert verdict is not None and verdict.scope == "registry" and not verdict.auth_required


def test_an_arm_audience_refused_at_the_exchange_says_so() -> None:
    refused = Step("exchange", False, 1.0, 401, "UNAUTHORIZED", "unauthorized", authenticated=True)
    arm = image_verdict(result(*PROBED, Step("entra", True, 1.0), refused, arm_audience=True))
    acr = image_verdict(result(*PROBED, Step("entra", True, 1.0), refused))
    assert arm is not None and "authentication-as-ARM" in (arm.detail or "")
    assert acr is not None and acr.detail == "unauthorized"
    busy = Step("exchange", False, 1.0, 503, detail="HTTP 503 from /oauth2/exchange", authenticated=True)
    server = image_verdict(result(*PROBED, busy, arm_audience=True))
    assert (
        server is not None and server.code == "REGISTRY_SERVER_ERROR" and "ARM" not in (server.detail or "")
    )


def test_a_credential_is_rejected_only_by_a_401_or_403_to_the_request_carrying_it() -> None:
    assert credential_rejected(Step("token", False, 1.0, 401, "UNAUTHORIZED", authenticated=True))
    assert credential_rejected(Step("tags", False, 1.0, 403, "DENIED", authenticated=True))
    assert not credential_rejected(None)
    assert not credential_rejected(Step("tags", False, 1.0, 429, authenticated=True))
    assert not credential_rejected(Step("token", False, 1.0, kind="connect_failed", authenticated=True))
    firewall = Step(
        "tags", False, 1.0, 403, "DENIED", errors=(("DENIED", FIREWALL_MESSAGE),), authenticated=True
    )
    assert not credential_rejected(firewall)
    assert not credential_rejected(Step("challenge", False, 1.0, 401))
