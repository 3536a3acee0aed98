"""A credential is never sent to a host it was not issued for, not even in a redirected body.

``RegistryClient`` follows redirects by hand and drops the ``Authorization`` header when the host
changes; a 307/308 redirect of a POST would re-send the *body*, and the bodies of ``/oauth2/exchange``
and ``/oauth2/token`` are credentials (pullwatch's Entra access token, the ACR refresh token). Uses
the registry client tests' real world: docker-registry behind an ACR-like TLS front, and a recording
"other host"."""

from __future__ import annotations

import pytest
from test_registry_client import ACR, ENTRA_ACR, ENTRA_ARM, World, check_one, world  # noqa: F401

from sandbox.httpserver import Response

pytestmark = [pytest.mark.sandbox, pytest.mark.xdist_group("registry")]


def _bodies_seen_elsewhere(world: World) -> list[str]:  # noqa: F811
    return [seen.text() for seen in world.recorder.seen]


@pytest.fixture(autouse=True)
def _clean(world: World) -> None:  # noqa: F811
    world.front.reset()
    world.recorder.seen.clear()


def test_entra_token_in_the_exchange_body_is_not_posted_to_a_redirect_target(world: World) -> None:  # noqa: F811
    world.front.fault(
        "POST",
        r"^/oauth2/exchange$",
        Response(307, b"", {"Location": "https://collector.example.net/oauth2/exchange"}),
    )
    with world.client() as client:
        result = check_one(client, f"{ACR}/web:1.4.2")
    step = result.failed_step
    assert (
        step is not None and step.name == "exchange" and step.kind == "not_sent"
    )  # the exchange did not happen
    for text in _bodies_seen_elsewhere(world):
        assert ENTRA_ARM not in text and ENTRA_ACR not in text, "the Entra token reached another host"


def test_refresh_token_in_the_token_body_is_not_posted_to_a_redirect_target(world: World) -> None:  # noqa: F811
    world.front.fault(
        "POST",
        r"^/oauth2/token$",
        Response(308, b"", {"Location": "https://collector.example.net/oauth2/token"}),
    )
    with world.client() as client:
        check_one(client, f"{ACR}/web:1.4.2")
    posted = [s for s in world.recorder.seen if s.method == "POST"]
    for seen in posted:
        assert "refresh_token" not in seen.text(), "the ACR refresh token reached another host"


def test_the_redirect_target_is_a_real_other_host(world: World) -> None:  # noqa: F811
    # Guards the two tests above against passing for the wrong reason: the recorder does receive
    # what is redirected to it (a manifest HEAD, without credentials).
    world.front.fault(
        "HEAD",
        r"/manifests/",
        Response(307, b"", {"Location": "https://collector.example.net/v2/web/manifests/1.4.2"}),
    )
    with world.client() as client:
        check_one(client, f"{ACR}/web:1.4.2", want_platforms=False)
    assert [s.method for s in world.recorder.seen] == ["HEAD"]
