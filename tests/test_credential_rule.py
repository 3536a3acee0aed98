"""The credential rule: a registry's credentials go to its own origin and to a trusted token realm only."""

from __future__ import annotations

import pytest

from shared.clients.registry.credential_rule import CredentialScope, origin_of, realm_trusted

ACR = "contosoacr.azurecr.io"


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://contosoacr.azurecr.io/v2/", ("https", ACR, 443)),
        ("HTTPS://ContosoACR.azurecr.io/oauth2/token", ("https", ACR, 443)),
        ("http://contosoacr.azurecr.io/v2/", ("http", ACR, 80)),
        ("https://contosoacr.azurecr.io:5000/v2/", ("https", ACR, 5000)),
        ("http://localhost:8080/token", ("http", "localhost", 8080)),
        ("ftp://contosoacr.azurecr.io/x", ("ftp", ACR, 0)),
    ],
)
def test_an_origin_is_scheme_host_and_port_with_the_default_port_made_explicit(
    url: str, origin: tuple[str, str, int]
) -> None:
    assert origin_of(url) == origin


@pytest.mark.parametrize(
    "url", ["", "/v2/", "contosoacr.azurecr.io", "https:///v2/", "https://acr.io:99999/"]
)
def test_a_url_without_scheme_host_or_a_valid_port_has_no_origin(url: str) -> None:
    assert origin_of(url) is None


@pytest.mark.parametrize(
    "realm",
    [
        f"https://{ACR}/oauth2/token",
        f"https://{ACR.upper()}:443/oauth2/token",
    ],
)
def test_the_registrys_own_https_origin_is_a_trusted_realm(realm: str) -> None:
    assert realm_trusted(ACR, realm)


@pytest.mark.parametrize(
    "realm",
    [
        f"http://{ACR}/oauth2/token",  # plain HTTP
        f"https://{ACR}:8443/oauth2/token",  # another port
        "https://evil.example/token",  # another host
        "https://contosoacr.azurecr.io.evil.example/token",  # a look-alike suffix
        "not a url",
        "https://auth.docker.io/token",  # Docker Hub's realm is not ACR's
    ],
)
def test_any_other_realm_is_not_trusted(realm: str) -> None:
    assert not realm_trusted(ACR, realm)


def test_docker_hubs_realm_is_trusted_for_docker_hub_on_port_443_only() -> None:
    assert realm_trusted("registry-1.docker.io", "https://auth.docker.io/token")
    assert realm_trusted("Registry-1.Docker.io", "https://AUTH.docker.io:443/token")
    assert not realm_trusted("registry-1.docker.io", "https://auth.docker.io:8443/token")
    assert not realm_trusted("registry-1.docker.io", "http://auth.docker.io/token")
    assert not realm_trusted("registry-1.docker.io", "https://evil.example/token")


def test_a_scope_allows_the_registrys_origin_and_a_trusted_realm_only() -> None:
    scope = CredentialScope.of_registry("registry-1.docker.io", "https://auth.docker.io/token")
    assert scope.origins == frozenset(
        {("https", "registry-1.docker.io", 443), ("https", "auth.docker.io", 443)}
    )
    assert scope.allows("https://registry-1.docker.io/v2/library/nginx/manifests/1")
    assert scope.allows("https://auth.docker.io/token?service=registry.docker.io")
    assert not scope.allows("http://registry-1.docker.io/v2/")
    assert not scope.allows("https://production.cloudfront.docker.com/blob")
    assert not scope.allows("")


def test_an_untrusted_realm_is_left_out_of_the_scope() -> None:
    scope = CredentialScope.of_registry(ACR, "https://evil.example/token")
    assert scope.origins == frozenset({("https", ACR, 443)})
    assert not scope.allows("https://evil.example/token")


def test_without_a_realm_the_scope_is_the_registrys_origin() -> None:
    assert CredentialScope.of_registry(ACR).origins == frozenset({("https", ACR, 443)})
    assert CredentialScope.of_registry(ACR, "").origins == frozenset({("https", ACR, 443)})
