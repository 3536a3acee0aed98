"""The registry client against a real docker-registry behind a real TLS front, and real faults."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from registry_fixture import AcrFront, Recorder, RegistryProcess, TokenIssuer, free_port, push_image

from sandbox.httpserver import Response
from sandbox.pki import Pki
from shared.clients.registry import (
    ImageResult,
    ImageTarget,
    RegistryClient,
    RegistryCredential,
    Scrubber,
    jwt_expiry,
    parse_challenge,
)
from shared.config import Settings
from shared.reference import parse_reference

pytestmark = [pytest.mark.sandbox, pytest.mark.xdist_group("registry")]

ACR = "contosoacr.azurecr.io"
TENANT = "72f988bf-0000-0000-0000-000000000001"
ENTRA_ARM = "entra-arm-" + "x" * 40
ENTRA_ACR = "entra-acr-" + "y" * 40
PASSWORD = "pull-secret-password-" + "z" * 20


@dataclass
class World:
    pki: Pki
    issuer: TokenIssuer
    registry: RegistryProcess
    front: AcrFront
    evil: AcrFront  # a non-ACR registry whose challenge realm points at the recorder
    acr_elsewhere: AcrFront  # an ACR host whose realm points at the recorder
    rogue: AcrFront  # certificate from an unknown CA
    plain: AcrFront  # a non-ACR registry with the Docker token flow on its own host
    hub: AcrFront  # "registry-1.docker.io", realm on "auth.docker.io" (the hub_auth recorder)
    hub_auth: Recorder
    recorder: Recorder
    hanging: socket.socket
    closed_port: int

    def settings(self, **overrides: object) -> Settings:
        hosts: dict[str, tuple[str, int] | None] = {
            ACR: ("127.0.0.1", self.front.port),
            "registry.example.com": ("127.0.0.1", self.evil.port),
            "elsewhere.azurecr.io": ("127.0.0.1", self.acr_elsewhere.port),
            "rogue.azurecr.io": ("127.0.0.1", self.rogue.port),
            "docker.example.org": ("127.0.0.1", self.plain.port),
            "registry-1.docker.io": ("127.0.0.1", self.hub.port),
            "auth.docker.io": ("127.0.0.1", self.hub_auth.port),
            "collector.example.net": ("127.0.0.1", self.recorder.port),
            "gone.azurecr.io": None,
            "closed.azurecr.io": ("127.0.0.1", self.closed_port),
            "hanging.azurecr.io": ("127.0.0.1", self.hanging.getsockname()[1]),
        }
        values: dict[str, object] = dict(
            hosts=hosts,
            ca_bundle=str(self.pki.ca_bundle),
            tenant_id=TENANT,
            http_timeout=2.0,
            retries=2,
            retry_base_seconds=0.01,
            slow_ms=3000.0,
        )
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    def client(self, **overrides: object) -> RegistryClient:
        tokens = {
            "https://management.azure.com/.default": ENTRA_ARM,
            "https://containerregistry.azure.net/.default": ENTRA_ACR,
        }
        return RegistryClient(self.settings(**overrides), entra_token=lambda scope: tokens[scope])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir: Path = tmp_path_factory.mktemp("registry")
    pki = Pki(workdir)
    issuer = TokenIssuer(workdir)
    registry = RegistryProcess(
        workdir, realm=f"https://{ACR}/oauth2/token", service=ACR, issuer=issuer
    ).start()
    started: list[AcrFront | Recorder] = []
    hanging = socket.socket()
    try:
        push_image(registry, "web", ["1.4.2", "1.4.3", "1.5.0"], [("linux", "amd64"), ("linux", "arm64")])
        push_image(registry, "api", ["2.0"], [("linux", "amd64")])
        push_image(registry, "public/tool", ["1"], [("linux", "amd64")])
        for i in range(60):
            push_image(registry, f"batch/r{i:02d}", ["v1"], [("linux", "amd64")])
        recorder = Recorder(pki, "collector.example.net").start()
        started.append(recorder)
        front = AcrFront(
            pki,
            ACR,
            registry,
            issuer,
            entra_tokens={ENTRA_ARM: "arm", ENTRA_ACR: "acr"},
            users={"puller": PASSWORD},
            public_repos={"public/tool"},
        ).start()
        evil = AcrFront(
            pki,
            "registry.example.com",
            registry,
            issuer,
            users={"puller": PASSWORD},
            realm_override="https://collector.example.net/token",
        ).start()
        elsewhere = AcrFront(
            pki,
            "elsewhere.azurecr.io",
            registry,
            issuer,
            entra_tokens={ENTRA_ARM: "arm"},
            realm_override="https://collector.example.net/oauth2/token",
        ).start()
        rogue = AcrFront(pki, "rogue.azurecr.io", registry, issuer, untrusted_cert=True).start()
        plain = AcrFront(
            pki,
            "docker.example.org",
            registry,
            issuer,
            users={"puller": PASSWORD},
            public_repos={"public/tool"},
        ).start()
        hub = AcrFront(
            pki, "registry-1.docker.io", registry, issuer, realm_override="https://auth.docker.io/token"
        ).start()
        hub_auth = Recorder(pki, "auth.docker.io").start()
        started += [front, evil, elsewhere, rogue, plain, hub, hub_auth]
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(16)  # accepts TCP (backlog) but never answers a TLS handshake
        yield World(
            pki,
            issuer,
            registry,
            front,
            evil,
            elsewhere,
            rogue,
            plain,
            hub,
            hub_auth,
            recorder,
            hanging,
            free_port(),
        )
    finally:
        for part in started:
            part.stop()
        hanging.close()
        registry.stop()


@pytest.fixture(autouse=True)
def _clean(world: World) -> None:
    for front in (world.front, world.evil, world.acr_elsewhere, world.plain):
        front.reset()
    world.recorder.seen.clear()
    world.hub_auth.seen.clear()


def target(image: str, **kw: object) -> ImageTarget:
    kw.setdefault("registry_tenant", TENANT)
    return ImageTarget(parse_reference(image), **kw)  # type: ignore[arg-type]


def check_one(client: RegistryClient, image: str, **kw: object) -> ImageResult:
    [result] = client.check_images([target(image, **kw)])
    return result


def assert_no_secret(text: str) -> None:
    basic = base64.b64encode(f"puller:{PASSWORD}".encode()).decode()
    for secret in (ENTRA_ARM, ENTRA_ACR, PASSWORD, basic, "eyJ"):
        assert secret not in text, f"secret-looking value {secret[:8]}… found"


# --- the whole chain -----------------------------------------------------------------------------


def test_full_chain_index_and_single_platform(world: World) -> None:
    with world.client() as client:
        results = {
            str(r.ref): r
            for r in client.check_images(
                [
                    target(f"{ACR}/web:1.4.2"),
                    target(f"{ACR}/api:2.0"),
                    target(f"{ACR}/web:1.4.2"),
                ]
            )
        }
        counts = client.request_counts()
    assert len(results) == 2  # duplicates checked once
    web, api = results[f"{ACR}/web:1.4.2"], results[f"{ACR}/api:2.0"]
    assert web.failure is None and web.identity == "pullwatch" and web.auth == "entra"
    assert web.platforms == ("linux/amd64", "linux/arm64")
    assert api.platforms == ("linux/amd64",)
    assert [s.name for s in web.steps][:7] == ["dns", "tcp", "tls", "challenge", "entra", "exchange", "token"]
    assert web.digest and web.digest.startswith("sha256:")
    # one /v2/, one exchange, one token for both repositories, one HEAD per unique image
    assert world.front.count("POST", "/oauth2/exchange") == 1
    assert world.front.count("POST", "/oauth2/token") == 1
    assert world.front.count("HEAD", "/v2/") == 2
    assert counts[ACR] == sum(1 for s in world.front.seen)
    form = next(s for s in world.front.seen if s.path == "/oauth2/token").body.decode()
    assert form.count("scope=") == 2
    assert_no_secret(json.dumps([r.evidence() for r in results.values()]))


def test_token_batches_and_reuse(world: World) -> None:
    images = [f"{ACR}/batch/r{i:02d}:v1" for i in range(60)]
    with world.client() as client:
        results = client.check_images([target(i, want_platforms=False) for i in images])
        assert all(r.failure is None for r in results), [r.detail for r in results if r.failure]
        assert world.front.count("POST", "/oauth2/token") == 2  # 60 repositories, 50 per request
        assert world.front.count("HEAD", "/v2/batch/") == 60
        assert world.front.count("GET", "/v2/batch/") == 0  # existence only: no GET
        client.check_images([target(i, want_platforms=False) for i in images[:10]])
        assert world.front.count("POST", "/oauth2/token") == 2  # tokens reused
        assert world.front.count("POST", "/oauth2/exchange") == 1
        assert world.front.count("GET", "/v2/") == 1  # the registry probe is done once per client


def test_missing_tag_suggests_closest(world: World) -> None:
    with world.client() as client:
        result = check_one(client, f"{ACR}/web:1.4.4")
    assert result.failure == "IMAGE_NOT_FOUND" and result.scope == "image"
    assert result.suggestions[:2] == ("1.4.3", "1.4.2"), result.steps[-2:]
    assert result.repository_exists is True
    assert result.failed_step and result.failed_step.status == 404
    assert result.evidence()["suggested_tags"][0] == "1.4.3"


def test_missing_repository(world: World) -> None:
    with world.client() as client:
        result = check_one(client, f"{ACR}/nothing/here:1")
    assert result.failure == "IMAGE_NOT_FOUND"
    assert result.repository_exists is False and result.suggestions == ()
    assert result.failed_step and result.failed_step.error_code == "NAME_UNKNOWN"


def test_arm_audience_disabled(world: World) -> None:
    world.front.arm_audience_enabled = False
    try:
        with world.client() as client:
            rejected = check_one(client, f"{ACR}/web:1.4.2")
            ok = check_one(client, f"{ACR}/web:1.4.2", authentication_as_arm=False)
    finally:
        world.front.arm_audience_enabled = True
    assert rejected.failure == "REGISTRY_AUTH_REJECTED" and rejected.failed_step
    assert rejected.failed_step.name == "exchange" and rejected.failed_step.status == 401
    assert "authentication-as-ARM" in (rejected.detail or "")
    assert ok.failure is None


def test_untrusted_or_unknown_tenant_gets_no_entra_token(world: World) -> None:
    with world.client() as client:
        other = check_one(client, f"{ACR}/web:1.4.2", registry_tenant="11111111-2222-3333-4444-555555555555")
        unknown = check_one(client, f"{ACR}/web:1.5.0", registry_tenant=None)
    assert other.failure == unknown.failure == "CHECK_INCOMPLETE"
    assert "tenant" in (other.detail or "")
    assert world.front.count("POST", "/oauth2/exchange") == 0


def test_no_entra_credential_is_incomplete_not_pass(world: World) -> None:
    with RegistryClient(world.settings()) as client:
        result = check_one(client, f"{ACR}/web:1.4.2")
    assert result.failure == "CHECK_INCOMPLETE" and "no Entra credential" in (result.detail or "")


def test_pull_secret_identity_and_try_credentials(world: World) -> None:
    cred = RegistryCredential(ACR, "puller", PASSWORD, "secret:shop/acr-pull")
    with world.client() as client:
        result = check_one(client, f"{ACR}/web:1.4.2", credential=cred)
        good = client.try_credentials(ACR, "puller", PASSWORD, "web")
        bad = client.try_credentials(ACR, "puller", "wrong-password", "web")
    assert result.failure is None and result.identity == "secret:shop/acr-pull" and result.auth == "basic"
    assert good.ok and good.code is None
    assert not bad.ok and bad.rejected and bad.code == "PULL_SECRET_REJECTED"
    assert_no_secret(json.dumps([s.to_dict() for s in bad.steps]) + (bad.detail or ""))


def test_anonymous_docker_token_flow(world: World) -> None:
    with RegistryClient(world.settings()) as client:
        public, private = client.check_images(
            [
                ImageTarget(parse_reference("docker.example.org/public/tool:1")),
                ImageTarget(parse_reference("docker.example.org/web:1.4.2")),
            ]
        )
        # ACR without an Entra callable is incomplete, never a pass:
        acr = check_one(client, f"{ACR}/public/tool:1")
    assert public.failure is None and public.auth == "anonymous" and public.platforms == ("linux/amd64",)
    assert private.failure == "CHECK_INCOMPLETE" and private.auth_required and private.scope == "image"
    assert acr.failure == "CHECK_INCOMPLETE"
    token_calls = [s for s in world.plain.seen if s.path == "/oauth2/token"]
    assert len(token_calls) == 1 and len(token_calls[0].query["scope"]) == 2  # one GET, both scopes
    assert all("Authorization" not in s.headers for s in token_calls)


def test_docker_token_flow_with_pull_secret(world: World) -> None:
    cred = RegistryCredential("docker.example.org", "puller", PASSWORD, "secret:shop/docker")
    with world.client() as client:
        result = check_one(client, "docker.example.org/web:1.4.2", credential=cred)
        rejected = client.try_credentials("docker.example.org", "puller", "nope", "web")
    assert result.failure is None and result.auth == "basic" and result.identity == "secret:shop/docker"
    assert rejected.rejected and rejected.code == "PULL_SECRET_REJECTED"


def test_docker_hub_credentials_go_to_auth_docker_io_only(world: World) -> None:
    cred = RegistryCredential("https://index.docker.io/v1/", "puller", PASSWORD, "secret:shop/hub")
    with world.client() as client:
        result = check_one(client, "nginx:1.27", credential=cred)
    # the API host is registry-1.docker.io; its realm auth.docker.io is the one built-in pair
    [token_request] = world.hub_auth.seen
    expected = "Basic " + base64.b64encode(f"puller:{PASSWORD}".encode()).decode()
    assert token_request.headers.get("Authorization") == expected
    assert token_request.query["scope"] == ["repository:library/nginx:pull"]
    assert world.hub.count("HEAD", "/v2/library/nginx/manifests/1.27") == 1
    # the recorder's token is not one the registry accepts: an authenticated refusal
    assert result.failure == "REGISTRY_AUTH_REJECTED" and result.identity == "secret:shop/hub"
    assert_no_secret(json.dumps(result.evidence()))


def test_real_amd64_only_image_on_an_arm64_pool(world: World) -> None:
    from shared.checks.images import ImageUsage, image_findings

    with world.client() as client:
        results = client.check_images([target(f"{ACR}/api:2.0"), target(f"{ACR}/web:1.4.2")])
    usages = [
        ImageUsage("shop", "Deployment/api", parse_reference(f"{ACR}/api:2.0"), ("arm",)),
        ImageUsage("shop", "Deployment/web", parse_reference(f"{ACR}/web:1.4.2"), ("arm",)),
    ]
    findings = image_findings(
        "/subscriptions/s/rg/aks",
        usages,
        {r.key: r for r in results},
        [("system", "linux", "amd64"), ("arm", "linux", "arm64")],
    )
    assert [(f.code, f.workload) for f in findings] == [("IMAGE_PLATFORM_MISSING", "Deployment/api")]
    assert findings[0].evidence["platforms"] == ["linux/amd64"]


# --- faults --------------------------------------------------------------------------------------


def test_dns_failure(world: World) -> None:
    with world.client() as client:
        result = check_one(client, "gone.azurecr.io/web:1")
        bad_port = check_one(client, "registry.example.com:99999/web:1")
    assert bad_port.failure == "CHECK_INCOMPLETE" and "port" in (bad_port.detail or "")
    assert result.failure == "REGISTRY_DNS_FAILURE" and result.scope == "registry"
    assert [s.name for s in result.steps] == ["dns"]


def test_connection_refused(world: World) -> None:
    with world.client() as client:
        result = check_one(client, "closed.azurecr.io/web:1")
    assert result.failure == "REGISTRY_UNREACHABLE"
    assert result.failed_step and result.failed_step.name == "tcp"
    assert "refused" in (result.failed_step.detail or "")


def test_listener_that_never_answers_times_out(world: World) -> None:
    start = time.monotonic()
    with world.client(http_timeout=0.5) as client:
        result = check_one(client, "hanging.azurecr.io/web:1")
    assert result.failure == "REGISTRY_UNREACHABLE"
    assert result.failed_step and result.failed_step.name == "tls"
    assert "timed out" in (result.failed_step.detail or "")
    assert time.monotonic() - start < 5


def test_unknown_ca(world: World) -> None:
    with world.client() as client:
        result = check_one(client, "rogue.azurecr.io/web:1")
    assert result.failure == "REGISTRY_TLS_ERROR"
    assert result.failed_step and result.failed_step.name == "tls"
    assert "certificate" in (result.failed_step.detail or "")
    assert world.rogue.count() == 0  # no HTTP request went over the unverified connection


def test_rate_limited_with_retry_after(world: World) -> None:
    world.front.fault("HEAD", r"/manifests/", Response(429, b"", {"Retry-After": "1"}), times=1)
    start = time.monotonic()
    with world.client() as client:
        passed = check_one(client, f"{ACR}/web:1.4.2", want_platforms=False)
    assert passed.failure is None and time.monotonic() - start >= 1.0  # Retry-After honoured
    world.front.fault(
        None,
        r"/manifests/",
        Response(
            429, {"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]}, {"Retry-After": "0"}
        ),
    )
    with world.client() as client:
        limited = check_one(client, f"{ACR}/web:1.4.3", want_platforms=False)
    assert limited.failure == "REGISTRY_RATE_LIMITED" and limited.scope == "registry"
    assert limited.failed_step and limited.failed_step.status == 429
    assert world.front.count("HEAD", "/v2/web/manifests/1.4.3") == 3  # first try + 2 retries
    assert world.front.count("GET", "/v2/web/manifests/") == 0  # no quota-counted GET to read the body


def test_quota_counted_manifest_get_throttled(world: World) -> None:
    # Docker Hub: HEAD is free, only the manifest GET spends (and hits) the anonymous quota.
    body = {"errors": [{"code": "TOOMANYREQUESTS", "message": "You have reached your pull rate limit."}]}
    world.front.fault("GET", r"/manifests/", Response(429, body, {"Retry-After": "3600"}))
    with world.client() as client:
        result = check_one(client, f"{ACR}/web:1.4.2")
    assert result.failure == "REGISTRY_RATE_LIMITED" and result.scope == "registry"
    assert result.steps[-1].status == 429 and result.steps[-1].error_code == "TOOMANYREQUESTS"
    assert world.front.count("GET", "/v2/web/manifests/") == 1


def test_retry_after_beyond_the_budget_gives_up_at_once(world: World) -> None:
    world.front.fault(
        None,
        r"/manifests/",
        Response(
            429, {"errors": [{"code": "TOOMANYREQUESTS", "message": "pull quota"}]}, {"Retry-After": "3600"}
        ),
    )
    start = time.monotonic()
    with world.client() as client:
        limited = check_one(client, f"{ACR}/web:1.4.2")
    assert limited.failure == "REGISTRY_RATE_LIMITED" and time.monotonic() - start < 5
    assert world.front.count("HEAD", "/v2/web/manifests/") == 1


def test_server_errors_after_bounded_retries(world: World) -> None:
    world.front.fault(None, r"/manifests/", Response(500, "boom"))
    with world.client() as client:
        result = check_one(client, f"{ACR}/web:1.4.2")
    assert result.failure == "REGISTRY_SERVER_ERROR"
    assert world.front.count("HEAD", "/v2/web/manifests/") == 3


def test_firewall_denied(world: World) -> None:
    body = {
        "errors": [
            {
                "code": "DENIED",
                "message": "client with IP '203.0.113.9' is not allowed access. "
                "Refer https://aka.ms/acr/firewall to grant access.",
            }
        ]
    }
    world.front.fault("POST", r"^/oauth2/exchange$", Response(403, body))
    with world.client() as client:
        result = check_one(client, f"{ACR}/web:1.4.2")
    assert result.failure == "REGISTRY_FIREWALL_DENIED" and result.scope == "registry"
    assert result.failed_step and result.failed_step.name == "exchange" and result.failed_step.status == 403
    assert result.failed_step.error_code == "DENIED"


def test_huge_answers_are_not_read(world: World) -> None:
    world.front.fault("GET", r"/manifests/", Response(200, b"{" + b" " * (5 * 1024 * 1024) + b"}"))
    with world.client() as client:
        result = check_one(client, f"{ACR}/web:1.4.2")
    assert result.failure is None and result.platforms is None  # exists; platforms unknown, not guessed
    assert result.steps[-1].name == "platforms" and "larger than" in (result.steps[-1].detail or "")


def test_slow_registry_flagged(world: World) -> None:
    def slow(_request: object) -> Response:
        time.sleep(0.3)
        return Response(
            200,
            b"",
            {"Docker-Content-Digest": "sha256:" + "0" * 64},
            content_type="application/vnd.oci.image.manifest.v1+json",
        )

    world.front.fault("HEAD", r"/manifests/", slow)
    with world.client(slow_ms=200.0) as client:
        result = check_one(client, f"{ACR}/web:1.4.2", want_platforms=False)
    assert result.failure is None and result.slow and (result.latency_ms or 0) >= 300


# --- adversarial ---------------------------------------------------------------------------------


def test_metadata_address_refused(world: World) -> None:
    with world.client() as client:
        result = check_one(client, "169.254.169.254/latest/meta-data:1")
        assert client.request_counts() == {}
    assert result.failure == "CHECK_INCOMPLETE" and result.failed_step
    assert result.failed_step.name == "dns" and "metadata" in (result.detail or "")


def test_localhost_refused(world: World) -> None:
    port = world.recorder.port
    with world.client() as client:
        by_name = check_one(client, f"localhost:{port}/web:1")
        by_ip = check_one(client, f"127.0.0.1:{port}/web:1")
        by_ipv6 = check_one(client, f"[::1]:{port}/web:1")
    assert by_name.failure == by_ip.failure == by_ipv6.failure == "CHECK_INCOMPLETE"
    assert "loopback" in (by_ipv6.detail or "")
    assert "loopback" in (by_name.detail or "")
    assert world.recorder.seen == []


def test_foreign_realm_receives_no_credentials(world: World) -> None:
    cred = RegistryCredential("registry.example.com", "puller", PASSWORD, "secret:shop/pull")
    with world.client() as client:
        result = check_one(client, "registry.example.com/web:1.4.2", credential=cred)
    assert world.recorder.seen, "the realm host was asked anonymously"
    for seen in world.recorder.seen:
        assert "Authorization" not in seen.headers and "authorization" not in seen.headers
        assert_no_secret(seen.text())
    # the recorder's token is no good at the registry: the check says credentials are needed
    assert (result.failure, result.auth, result.auth_required) == ("CHECK_INCOMPLETE", "anonymous", True)
    assert result.detail == "the registry refuses anonymous pulls of this repository; credentials are needed"
    assert_no_secret(json.dumps(result.evidence()))


def test_acr_realm_elsewhere_gets_no_entra_token(world: World) -> None:
    with world.client() as client:
        result = check_one(client, "elsewhere.azurecr.io/web:1.4.2")
    assert result.failure == "CHECK_INCOMPLETE" and "withheld" in (result.detail or "")
    assert world.recorder.seen == []
    assert world.acr_elsewhere.count("POST") == 0


def test_redirect_to_other_host_drops_credentials(world: World) -> None:
    world.front.fault(
        "HEAD",
        r"/manifests/",
        Response(307, b"", {"Location": "https://collector.example.net/v2/web/manifests/1.4.2"}),
    )
    with world.client() as client:
        result = check_one(client, f"{ACR}/web:1.4.2", want_platforms=False)
    assert [s.method for s in world.recorder.seen] == ["HEAD"], (
        result.failure,
        result.detail,
        result.steps[-1],
    )
    for seen in world.recorder.seen:
        assert not any(k.lower() == "authorization" for k in seen.headers)
        assert_no_secret(seen.text())


def test_pull_secret_for_other_host_not_sent(world: World) -> None:
    cred = RegistryCredential("other.example.org", "puller", PASSWORD, "secret:shop/other")
    with world.client() as client:
        result = check_one(client, f"{ACR}/web:1.4.2", credential=cred)
    assert result.failure == "CHECK_INCOMPLETE"
    for seen in world.front.seen:
        assert_no_secret(seen.text())


def test_concurrency_is_bounded_per_registry(world: World) -> None:
    active = 0
    peak = 0
    lock = threading.Lock()

    def counting(request: object) -> Response:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with lock:
            active -= 1
        return Response(
            200,
            b"",
            {"Docker-Content-Digest": "sha256:" + "1" * 64},
            content_type="application/vnd.oci.image.manifest.v1+json",
        )

    world.front.fault("HEAD", r"/manifests/", counting)
    with world.client(registry_concurrency=3) as client:
        client.check_images([target(f"{ACR}/batch/r{i:02d}:v1", want_platforms=False) for i in range(12)])
    assert 1 < peak <= 3


# --- pure parts ----------------------------------------------------------------------------------


def test_parse_challenge() -> None:
    c = parse_challenge(
        'Bearer realm="https://a.example/token",service="a.example",scope="repository:x/y:pull,push"'
    )
    assert c and c.scheme == "bearer" and c.realm == "https://a.example/token"
    assert c.params["scope"] == "repository:x/y:pull,push"
    b = parse_challenge('Basic realm="Registry Realm"')
    assert b and b.scheme == "basic" and b.realm == "Registry Realm"
    assert parse_challenge(None) is None


def test_jwt_expiry_and_scrubber(world: World) -> None:
    token = world.issuer.issue(ACR, [], ttl=120)
    exp = jwt_expiry(token)
    assert exp and abs(exp - (time.time() + 120)) < 5
    assert jwt_expiry("not-a-jwt") is None
    scrub = Scrubber()
    scrub.add(PASSWORD)
    text = scrub(f"failed with Authorization: Bearer {token} and password={PASSWORD} {PASSWORD}")
    assert token not in text and PASSWORD not in text and "eyJ" not in text


def test_a_secret_for_a_host_that_is_a_prefix_of_the_registry_is_not_sent(world: World) -> None:
    cred = RegistryCredential("contoso.azurecr.io", "puller", PASSWORD, "secret:shop/contoso")
    with world.client() as client:
        result = check_one(client, f"{ACR}/web:1.4.2", credential=cred)
    assert result.failure == "CHECK_INCOMPLETE"
    assert result.detail == f"credential secret:shop/contoso is for contoso.azurecr.io, not {ACR}; not sent"
    for seen in world.front.seen:
        assert not any(k.lower() == "authorization" for k in seen.headers)
        assert_no_secret(seen.text())


@pytest.mark.parametrize(
    "host",
    ["docker.io", "Docker.IO", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1"],
)
def test_every_spelling_of_docker_hub_gets_the_hub_secret(world: World, host: str) -> None:
    cred = RegistryCredential(host, "puller", PASSWORD, "secret:shop/hub")
    with world.client() as client:
        result = check_one(client, "nginx:1.27", credential=cred)
    [token_request] = world.hub_auth.seen
    assert (
        token_request.headers.get("Authorization")
        == "Basic " + base64.b64encode(f"puller:{PASSWORD}".encode()).decode()
    )
    assert result.identity == "secret:shop/hub"


@pytest.mark.parametrize("host", ["index.docker.io.evil.example", "docker.io.example.org", "example.org"])
def test_a_secret_for_another_host_never_reaches_docker_hub(world: World, host: str) -> None:
    cred = RegistryCredential(host, "puller", PASSWORD, "secret:shop/other")
    with world.client() as client:
        result = check_one(client, "nginx:1.27", credential=cred)
    assert result.failure == "CHECK_INCOMPLETE"
    assert result.detail == f"credential secret:shop/other is for {host}, not docker.io; not sent"
    assert world.hub_auth.seen == []
