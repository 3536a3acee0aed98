"""The sandbox's Entra ID through the real azure-identity credentials, over real sockets."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential, ManagedIdentityCredential
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.entra import Entra, EntraTokenError
from sandbox.metrics import RequestLog
from sandbox.pki import Pki
from sandbox.world import World, parse

pytestmark = pytest.mark.sandbox

WORLD = """
name: entra
clusters:
  aks-prod: {}
  aks-old: {identity: servicePrincipal}
  aks-expired: {identity: servicePrincipal, servicePrincipalSecretExpired: true}
"""


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, Entra, Pki, RequestLog]]:
    world = parse(WORLD)
    log = RequestLog()
    pki = Pki(tmp_path_factory.mktemp("entra"))
    entra = Entra(world, log, pki).start()
    try:
        yield world, entra, pki, log
    finally:
        entra.stop()


def test_managed_identity_credential_gets_an_arm_token(
    parts: tuple[World, Entra, Pki, RequestLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    world, entra, _, log = parts
    for key, value in entra.env_for_app().items():
        monkeypatch.setenv(key, value)
    before = log.snapshot()["entra"]
    token = ManagedIdentityCredential().get_token("https://management.azure.com/.default")
    claims = entra.verify(token.token)
    assert claims["aud"] == "https://management.azure.com"
    assert claims["oid"] == world.principal_id("app")
    assert claims["tid"] == world.tenant and claims["iss"] == f"https://sts.windows.net/{world.tenant}/"
    assert {"sub", "appid", "iat", "nbf", "exp"} <= claims.keys()
    assert token.expires_on > time.time() + 3000
    assert log.snapshot()["entra"] == before + 1


def test_managed_identity_endpoint_needs_the_identity_header(
    parts: tuple[World, Entra, Pki, RequestLog],
) -> None:
    _, entra, _, _ = parts
    params = {"api-version": "2019-08-01", "resource": "https://management.azure.com"}
    assert requests.get(entra.msi_url, params=params, timeout=5).status_code == 401
    wrong = requests.get(entra.msi_url, params=params, headers={"X-IDENTITY-HEADER": "guess"}, timeout=5)
    assert wrong.status_code == 401
    good = requests.get(
        entra.msi_url, params=params, headers={"X-IDENTITY-HEADER": entra.identity_header}, timeout=5
    )
    assert good.status_code == 200
    assert set(good.json()) >= {"access_token", "expires_on", "resource", "token_type"}
    assert good.json()["token_type"] == "Bearer"


def test_managed_identity_refusals_answer_in_the_app_service_error_envelope(
    parts: tuple[World, Entra, Pki, RequestLog],
) -> None:
    _, entra, _, _ = parts
    good = {"api-version": "2019-08-01", "resource": "https://management.azure.com"}
    header = {"X-IDENTITY-HEADER": entra.identity_header}
    cases = (
        ({}, good, 401, "X-IDENTITY-HEADER"),
        (header, {**good, "api-version": "2018-02-01"}, 400, "api-version must be 2019-08-01"),
        (header, {"api-version": "2019-08-01"}, 400, "'resource' parameter is required"),
        (
            header,
            {**good, "client_id": "someone-else"},
            400,
            "No User Assigned or Delegated Managed Identity",
        ),
    )
    for headers, params, status, words in cases:
        answer = requests.get(entra.msi_url, params=params, headers=headers, timeout=5)
        body = answer.json()
        assert answer.status_code == status and body["statusCode"] == status, params
        assert words in body["message"] and set(body) == {"statusCode", "message", "correlationId"}
        assert str(uuid.UUID(body["correlationId"])) == body["correlationId"]


def test_client_secret_credential_for_the_app_and_a_service_principal(
    parts: tuple[World, Entra, Pki, RequestLog],
) -> None:
    world, entra, pki, _ = parts
    for principal, scope in (
        ("app", "https://graph.microsoft.com/.default"),
        ("sp:aks-old", "https://containerregistry.azure.net/.default"),
    ):
        cred = ClientSecretCredential(
            world.tenant,
            entra.client_id(principal),
            entra.client_secret(principal),
            authority=entra.url,
            disable_instance_discovery=True,
            connection_verify=str(pki.ca_bundle),
        )
        claims = entra.verify(cred.get_token(scope).token)
        assert claims["oid"] == world.principal_id(principal)
        assert claims["appid"] == entra.client_id(principal)
        assert claims["aud"] == scope.removesuffix("/.default")


def test_expired_service_principal_secret_is_refused(parts: tuple[World, Entra, Pki, RequestLog]) -> None:
    world, entra, pki, _ = parts
    cred = ClientSecretCredential(
        world.tenant,
        entra.client_id("sp:aks-expired"),
        entra.client_secret("sp:aks-expired"),
        authority=entra.url,
        disable_instance_discovery=True,
        connection_verify=str(pki.ca_bundle),
    )
    with pytest.raises(ClientAuthenticationError) as info:
        cred.get_token("https://management.azure.com/.default")
    assert "AADSTS7000222" in str(info.value)
    assert entra.client_secret("sp:aks-expired") not in str(info.value)
    with pytest.raises(EntraTokenError, match="AADSTS7000222"):  # the in-process path refuses it too
        entra.issue("sp:aks-expired", "https://containerregistry.azure.net")


def test_wrong_secret_is_refused(parts: tuple[World, Entra, Pki, RequestLog]) -> None:
    world, entra, pki, _ = parts
    cred = ClientSecretCredential(
        world.tenant,
        entra.client_id("sp:aks-old"),
        "not-the-secret",
        authority=entra.url,
        disable_instance_discovery=True,
        connection_verify=str(pki.ca_bundle),
    )
    with pytest.raises(ClientAuthenticationError) as info:
        cred.get_token("https://management.azure.com/.default")
    assert "AADSTS7000215" in str(info.value)


def test_verify_rejects_expired_and_foreign_tokens(parts: tuple[World, Entra, Pki, RequestLog]) -> None:
    world, entra, _, _ = parts
    with pytest.raises(EntraTokenError):
        entra.verify(entra.issue("kubelet:aks-prod", "https://containerregistry.azure.net", lifetime=-60))
    foreign_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    forged = jwt.encode(
        {
            "aud": "https://management.azure.com",
            "iss": f"https://sts.windows.net/{world.tenant}/",
            "tid": world.tenant,
            "oid": world.principal_id("app"),
            "iat": now,
            "exp": now + 600,
        },
        foreign_key,
        algorithm="RS256",
        headers={"kid": entra.kid},
    )
    with pytest.raises(EntraTokenError):
        entra.verify(forged)
    with pytest.raises(EntraTokenError):
        entra.verify("not-a-jwt")
    other = entra.issue(
        "kubelet:aks-prod",
        "6dae42f8-4368-4678-94ff-3960e28e3630",
        tenant="99999999-9999-9999-9999-999999999999",
    )
    assert entra.verify(other)["tid"] == "99999999-9999-9999-9999-999999999999"


def test_principal_of_maps_object_ids(parts: tuple[World, Entra, Pki, RequestLog]) -> None:
    world, entra, _, _ = parts
    assert entra.principal_of(world.principal_id("kubelet:aks-prod")) == "kubelet:aks-prod"
    assert entra.principal_of("00000000-0000-0000-0000-000000000000") is None


def test_openid_discovery_points_at_the_stand_in(parts: tuple[World, Entra, Pki, RequestLog]) -> None:
    world, entra, pki, _ = parts
    doc = requests.get(
        f"{entra.url}/{world.tenant}/v2.0/.well-known/openid-configuration",
        verify=str(pki.ca_bundle),
        timeout=5,
    ).json()
    assert doc["token_endpoint"].startswith(entra.url)
    keys = requests.get(doc["jwks_uri"], verify=str(pki.ca_bundle), timeout=5).json()["keys"]
    token = entra.issue("app", "https://management.azure.com")
    key = jwt.PyJWK(keys[0]).key
    assert (
        jwt.decode(token, key, algorithms=["RS256"], audience="https://management.azure.com")["tid"]
        == world.tenant
    )


def test_start_stop_leaves_nothing_behind(tmp_path: Path) -> None:
    threads = threading.active_count()
    entra = Entra(parse(WORLD), RequestLog(), Pki(tmp_path)).start()
    ports = [entra.url.rsplit(":", 1)[1], entra.msi_url.split(":")[2].split("/")[0]]
    entra.stop()
    deadline = time.monotonic() + 5  # connection threads end once their sockets are closed
    while threading.active_count() > threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= threads
    for port in ports:
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/", timeout=2)
