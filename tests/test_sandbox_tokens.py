"""ACR and Docker token services, called as the front calls them (no registry process needed).

Tokens are checked the way the registry checks them: signature against the signer's certificate
(the ``x5c`` header), issuer, audience, expiry, and the ``access`` claim.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sandbox.entra import Entra
from sandbox.httpserver import Request, Response
from sandbox.metrics import RequestLog
from sandbox.pki import Pki
from sandbox.rbac import Rbac
from sandbox.tokens import (
    ACR_ISSUER,
    ACR_REFRESH_TOKEN_USER,
    AcrTokenService,
    DockerTokenService,
    TokenSigner,
    parse_scope,
)
from sandbox.world import World, apply_registry_change, parse

WORLD = """
name: tokens
registries:
  contosoacr:
    repositories: {web: {"1": [linux/amd64]}}
  otheracr:
    repositories: {web: {"1": [linux/amd64]}}
  registry.example.com:
    users: {ci-bot: s3cret}
    repositories: {tools/agent: {"3.1": [linux/amd64]}}
  docker.io:
    repositories: {library/nginx: {"1.27": [linux/amd64]}}
clusters:
  aks-prod: {}
  aks-dev: {}
roleAssignments:
  - {principal: kubelet:aks-prod, role: AcrPull, scope: registry:contosoacr}
  - {principal: app, role: Reader, scope: subscription}
"""
ACR = "https://containerregistry.azure.net"
ARM = "https://management.azure.com"
HOST = "contosoacr.azurecr.io"


@dataclass
class Decision:
    allowed: bool
    reason: str


class OnlyRepositories:
    """An RBAC model that allows exactly the listed repositories (to test the subset rule)."""

    def __init__(self, *allowed: str) -> None:
        self.allowed = set(allowed)
        self.asked: list[tuple[str, str, str]] = []

    def decide_pull(self, object_id: str, tenant: str, registry: Any, repository: str) -> Decision:
        self.asked.append((object_id, tenant, repository))
        return Decision(repository in self.allowed, "test")


def request(
    method: str,
    path: str,
    form: list[tuple[str, str]] | None = None,
    query: dict[str, list[str]] | None = None,
    basic: tuple[str, str] | None = None,
) -> Request:
    headers = Message()
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    return Request(method, path, query or {}, headers, urlencode(form or []).encode(), ("127.0.0.1", 1))


def body(response: Response) -> Any:
    payload, _ = response.encoded()
    return json.loads(payload)


class Parts:
    def __init__(self, tmp_path: Path) -> None:
        self.world: World = parse(WORLD)
        self.entra = Entra(self.world, RequestLog(), Pki(tmp_path))
        self.signer = TokenSigner(tmp_path / "signer")
        self.rbac = Rbac(self.world)

    def acr(self, name: str = "contosoacr", rbac: Any = None) -> AcrTokenService:
        return AcrTokenService(self.world.registry(name), self.signer, self.entra, rbac or self.rbac)

    def exchange(
        self,
        service: AcrTokenService,
        principal: str = "kubelet:aks-prod",
        audience: str = ACR,
        tenant: str | None = None,
    ) -> Response:
        token = self.entra.issue(principal, audience, tenant=tenant)
        return service.handle(
            request(
                "POST",
                "/oauth2/exchange",
                [
                    ("grant_type", "access_token"),
                    ("service", service.login_server),
                    ("tenant", self.world.tenant),
                    ("access_token", token),
                ],
            )
        )  # type: ignore[return-value]

    def access(self, service: AcrTokenService, refresh: str, *scopes: str) -> Response:
        form = [
            ("grant_type", "refresh_token"),
            ("service", service.login_server),
            *[("scope", s) for s in scopes],
            ("refresh_token", refresh),
        ]
        return service.handle(request("POST", "/oauth2/token", form))  # type: ignore[return-value]

    def registry_claims(self, token: str, audience: str = HOST, issuer: str = ACR_ISSUER) -> dict[str, Any]:
        """Verify as docker-registry does: with the certificate carried in x5c."""
        header = jwt.get_unverified_header(token)
        cert = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
        assert cert.public_bytes(serialization.Encoding.PEM) == self.signer.cert_path.read_bytes()
        claims: dict[str, Any] = jwt.decode(
            token,
            cert.public_key(),
            algorithms=["RS256"],  # type: ignore[arg-type]
            audience=audience,
            issuer=issuer,
        )
        return claims


@pytest.fixture
def parts(tmp_path: Path) -> Parts:
    return Parts(tmp_path)


def refresh_of(response: Response) -> str:
    assert response.status == 200, response.body
    assert set(body(response)) == {"refresh_token"}
    return str(body(response)["refresh_token"])


def test_exchange_then_token_grants_pull_where_rbac_allows(parts: Parts) -> None:
    service = parts.acr()
    refresh = refresh_of(parts.exchange(service))
    claims = parts.registry_claims(refresh)
    assert claims["sub"] == parts.world.principal_id("kubelet:aks-prod")
    assert claims["grant_type"] == "refresh_token" and claims["tenant"] == parts.world.tenant
    answer = parts.access(service, refresh, "repository:web:pull")
    assert answer.status == 200 and set(body(answer)) == {"access_token"}
    access = parts.registry_claims(body(answer)["access_token"])
    assert access["access"] == [{"type": "repository", "name": "web", "actions": ["pull"]}]
    assert access["exp"] > access["iat"] and access["grant_type"] == "access_token"


def test_a_subset_of_the_scopes_is_granted_without_error(parts: Parts) -> None:
    rbac = OnlyRepositories("web")
    service = parts.acr(rbac=rbac)
    refresh = refresh_of(parts.exchange(service))
    answer = parts.access(
        service, refresh, "repository:web:pull,push", "repository:secret:pull", "registry:catalog:*"
    )
    assert answer.status == 200
    assert parts.registry_claims(body(answer)["access_token"])["access"] == [
        {"type": "repository", "name": "web", "actions": ["pull"]}
    ]
    assert [r for _, _, r in rbac.asked] == ["web", "secret"]
    assert all(oid == parts.world.principal_id("kubelet:aks-prod") for oid, _, _ in rbac.asked)
    none = parts.access(service, refresh, "repository:secret:pull")
    assert none.status == 200 and parts.registry_claims(body(none)["access_token"])["access"] == []


def test_real_rbac_denies_a_principal_without_a_role(parts: Parts) -> None:
    service = parts.acr()
    refresh = refresh_of(parts.exchange(service, "kubelet:aks-dev"))
    answer = parts.access(service, refresh, "repository:web:pull")
    assert parts.registry_claims(body(answer)["access_token"])["access"] == []


def test_exchange_refusals(parts: Parts) -> None:
    service = parts.acr()
    other_tenant = parts.exchange(service, tenant="99999999-9999-9999-9999-999999999999")
    assert other_tenant.status == 401 and body(other_tenant)["errors"][0]["code"] == "UNAUTHORIZED"
    graph = parts.exchange(service, audience="https://graph.microsoft.com")
    assert graph.status == 401
    garbage = service.handle(
        request(
            "POST",
            "/oauth2/exchange",
            [("grant_type", "access_token"), ("service", HOST), ("access_token", "not.a.jwt")],
        )
    )
    assert garbage is not None and garbage.status == 401
    assert body(garbage) == {
        "errors": [{"code": "UNAUTHORIZED", "message": body(garbage)["errors"][0]["message"]}]
    }
    wrong_grant = service.handle(request("POST", "/oauth2/exchange", [("grant_type", "password")]))
    assert wrong_grant is not None and wrong_grant.status == 400
    assert service.handle(request("GET", "/oauth2/exchange")).status == 405  # type: ignore[union-attr]


def test_arm_audience_follows_authentication_as_arm(parts: Parts) -> None:
    service = parts.acr()
    assert parts.exchange(service, audience=ARM).status == 200
    assert parts.exchange(service, audience=ARM + "/.default").status == 200
    parts.world.registry("contosoacr").authentication_as_arm = False
    refused = parts.exchange(service, audience=ARM)
    assert refused.status == 401 and body(refused)["errors"][0]["code"] == "UNAUTHORIZED"
    assert parts.exchange(service, audience=ACR).status == 200


def test_refresh_tokens_are_bound_to_their_registry_and_to_the_role_assignment_mode(parts: Parts) -> None:
    service, other = parts.acr(), parts.acr("otheracr")
    refresh = refresh_of(parts.exchange(service))
    assert parts.access(other, refresh, "repository:web:pull").status == 401
    assert parts.access(service, "forged." + refresh.split(".", 1)[1], "repository:web:pull").status == 401
    assert parts.access(service, refresh, "repository:web:pull").status == 200
    apply_registry_change(
        parts.world, {"name": "contosoacr", "roleAssignmentMode": "AbacRepositoryPermissions"}
    )
    stale = parts.access(service, refresh, "repository:web:pull")
    assert stale.status == 401 and body(stale)["errors"][0]["code"] == "UNAUTHORIZED"
    fresh = refresh_of(parts.exchange(service))
    # ABAC ignores AcrPull: the new token is accepted but grants nothing.
    answer = parts.access(service, fresh, "repository:web:pull")
    assert answer.status == 200 and parts.registry_claims(body(answer)["access_token"])["access"] == []


def test_basic_auth_with_a_refresh_token_and_anonymous_get(parts: Parts) -> None:
    service = parts.acr()
    refresh = refresh_of(parts.exchange(service))
    query = {"service": [HOST], "scope": ["repository:web:pull"]}
    answer = service.handle(
        request("GET", "/oauth2/token", query=query, basic=(ACR_REFRESH_TOKEN_USER, refresh))
    )
    assert answer is not None and answer.status == 200
    assert parts.registry_claims(body(answer)["access_token"])["access"][0]["name"] == "web"
    wrong_user = service.handle(request("GET", "/oauth2/token", query=query, basic=("admin", refresh)))
    assert wrong_user is not None and wrong_user.status == 401
    anonymous = service.handle(request("GET", "/oauth2/token", query=query))
    assert anonymous is not None and anonymous.status == 401
    assert body(anonymous)["errors"][0]["code"] == "UNAUTHORIZED"
    parts.world.registry("contosoacr").anonymous_pull_enabled = True
    anonymous = service.handle(request("GET", "/oauth2/token", query=query))
    assert anonymous is not None and anonymous.status == 200
    claims = parts.registry_claims(body(anonymous)["access_token"])
    assert claims["sub"] == "" and claims["access"] == [
        {"type": "repository", "name": "web", "actions": ["pull"]}
    ]
    # containerd tries the OAuth2 password grant first; ACR answers 400 and it falls back to GET.
    password = service.handle(
        request("POST", "/oauth2/token", [("grant_type", "password"), ("username", "u")])
    )
    assert password is not None and password.status == 400


def test_docker_token_flow_for_a_generic_registry(parts: Parts) -> None:
    service = DockerTokenService(parts.world.registry("registry.example.com"), parts.signer)
    query = {"service": ["registry.example.com"], "scope": ["repository:tools/agent:pull"]}
    answer = service.handle(request("GET", "/token", query=query, basic=("ci-bot", "s3cret")))
    assert answer.status == 200
    document = body(answer)
    assert set(document) == {"token", "access_token", "expires_in", "issued_at"}
    assert document["token"] == document["access_token"]
    claims = parts.registry_claims(
        document["token"], "registry.example.com", "registry.example.com token service"
    )
    assert claims["sub"] == "ci-bot" and claims["access"][0]["name"] == "tools/agent"
    assert service.handle(request("GET", "/token", query=query, basic=("ci-bot", "S3cret"))).status == 401
    assert service.handle(request("GET", "/token", query=query, basic=("nobody", "s3cret"))).status == 401
    assert service.handle(request("GET", "/token", query=query)).status == 401
    parts.world.registry("registry.example.com").anonymous = True
    assert service.handle(request("GET", "/token", query=query)).status == 200


def test_docker_hub_token_service(parts: Parts) -> None:
    service = DockerTokenService(parts.world.registry("docker.io"), parts.signer)
    assert (service.realm, service.service) == ("https://auth.docker.io/token", "registry.docker.io")
    query = {"service": ["registry.docker.io"], "scope": ["repository:library/nginx:pull"]}
    anonymous = service.handle(request("GET", "/token", query=query))
    assert anonymous.status == 200
    claims = parts.registry_claims(body(anonymous)["token"], "registry.docker.io", "auth.docker.io")
    assert claims["sub"] == ""
    wrong = service.handle(request("GET", "/token", query=query, basic=("someone", "bad")))
    assert wrong.status == 401 and body(wrong) == {"details": "incorrect username or password"}


def test_parse_scope() -> None:
    assert parse_scope("repository:team-a/web:pull,push") == ("repository", "team-a/web", ["pull", "push"])
    assert parse_scope("registry:catalog:*") == ("registry", "catalog", ["*"])
    assert parse_scope("repository:localhost:5000/x:pull") == ("repository", "localhost:5000/x", ["pull"])
    assert parse_scope("nonsense") is None
