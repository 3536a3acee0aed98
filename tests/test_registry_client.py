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
from registry_fixture import (
    AcrFront,
    Recorder,
    RegistryProcess,
    Seen,
    TokenIssuer,
    Trickle,
    free_port,
    push_image,
)

from sandbox.httpserver import Request, Response
from sandbox.pki import Pki
from shared.checks.registry_steps import Verdict, credential_rejected, image_verdict
from shared.clients.registry import (
    ImageResult,
    ImageTarget,
    RegistryClient,
    RegistryCredential,
    Scrubber,
    jwt_expiry,
    parse_challenge,
)
from shared.config import ConfigError, Settings
from shared.reference import parse_reference


def verdict_of(result: ImageResult) -> Verdict:
    verdict = image_verdict(result)
    assert verdict is not None, "the image was found"
    return verdict


def code_of(result: ImageResult) -> str | None:
    """The finding code the checks give this result (None: the image is there)."""
    verdict = image_verdict(result)
    return verdict.code if verdict else None


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
    assert code_of(web) is None and web.identity == "pullwatch" and web.auth == "entra"
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


def test_an_index_is_read_once_per_digest_without_waiting_for_the_slowest_head(world: World) -> None:
    # web:1.4.2, 1.4.3 and 1.5.0 are one index; api's HEAD is answered a second late. The index GET
    # goes out right after the first web HEAD found the digest, not after every HEAD is answered.
    world.front.reset()
    state: dict[str, bool] = {}

    def slow_head(request: Request) -> Response:
        time.sleep(1.0)
        state["index_read_before_this_answer"] = any(
            s.method == "GET" and s.path.startswith("/v2/web/manifests/") for s in list(world.front.seen)
        )
        return world.front._forward(request)

    world.front.fault("HEAD", r"^/v2/api/manifests/", slow_head, times=1)
    images = [f"{ACR}/web:1.4.2", f"{ACR}/web:1.4.3", f"{ACR}/web:1.5.0", f"{ACR}/api:2.0"]
    with world.client() as client:
        results = client.check_images([target(i) for i in images])
    assert [r.platforms for r in results] == [("linux/amd64", "linux/arm64")] * 3 + [("linux/amd64",)]
    assert len({r.digest for r in results[:3]}) == 1
    assert world.front.count("GET", "/v2/web/manifests/") == 1  # one read for the three tags
    assert state == {"index_read_before_this_answer": True}


def test_token_batches_and_reuse(world: World) -> None:
    images = [f"{ACR}/batch/r{i:02d}:v1" for i in range(60)]
    with world.client() as client:
        results = client.check_images([target(i, want_platforms=False) for i in images])
        assert all(code_of(r) is None for r in results), [r.detail for r in results if code_of(r)]
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
    assert code_of(result) == "IMAGE_NOT_FOUND" and verdict_of(result).scope == "image"
    assert result.suggestions[:2] == ("1.4.3", "1.4.2"), result.steps[-2:]
    assert result.repository_exists is True
    assert result.failed_step and result.failed_step.status == 404
    assert result.evidence()["suggested_tags"][0] == "1.4.3"


def test_missing_repository(world: World) -> None:
    with world.client() as client:
        result = check_one(client, f"{ACR}/nothing/here:1")
    assert code_of(result) == "IMAGE_NOT_FOUND"
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
    assert code_of(rejected) == "REGISTRY_AUTH_REJECTED" and rejected.failed_step
    assert rejected.failed_step.name == "exchange" and rejected.failed_step.status == 401
    assert "authentication-as-ARM" in (verdict_of(rejected).detail or "")
    assert code_of(ok) is None


def test_untrusted_or_unknown_tenant_gets_no_entra_token(world: World) -> None:
    with world.client() as client:
        other = check_one(client, f"{ACR}/web:1.4.2", registry_tenant="11111111-2222-3333-4444-555555555555")
        unknown = check_one(client, f"{ACR}/web:1.5.0", registry_tenant=None)
    assert code_of(other) == code_of(unknown) == "CHECK_INCOMPLETE"
    assert "tenant" in (other.detail or "")
    assert world.front.count("POST", "/oauth2/exchange") == 0


def test_no_entra_credential_is_incomplete_not_pass(world: World) -> None:
    with RegistryClient(world.settings()) as client:
        result = check_one(client, f"{ACR}/web:1.4.2")
    assert code_of(result) == "CHECK_INCOMPLETE" and "no Entra credential" in (result.detail or "")


def test_pull_secret_identity_and_try_credentials(world: World) -> None:
    cred = RegistryCredential(ACR, "puller", PASSWORD, "secret:shop/acr-pull")
    with world.client() as client:
        result = check_one(client, f"{ACR}/web:1.4.2", credential=cred)
        good = client.try_credentials(ACR, "puller", PASSWORD, "web")
        bad = client.try_credentials(ACR, "puller", "wrong-password", "web")
    assert code_of(result) is None and result.identity == "secret:shop/acr-pull" and result.auth == "basic"
    assert good.ok and not credential_rejected(good.failed_step)
    assert not bad.ok and credential_rejected(bad.failed_step)
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
    assert code_of(public) is None and public.auth == "anonymous" and public.platforms == ("linux/amd64",)
    assert (
        code_of(private) == "CHECK_INCOMPLETE"
        and verdict_of(private).auth_required
        and verdict_of(private).scope == "image"
    )
    assert code_of(acr) == "CHECK_INCOMPLETE"
    token_calls = [s for s in world.plain.seen if s.path == "/oauth2/token"]
    assert len(token_calls) == 1 and len(token_calls[0].query["scope"]) == 2  # one GET, both scopes
    assert all("Authorization" not in s.headers for s in token_calls)


def test_docker_token_flow_with_pull_secret(world: World) -> None:
    cred = RegistryCredential("docker.example.org", "puller", PASSWORD, "secret:shop/docker")
    with world.client() as client:
        result = check_one(client, "docker.example.org/web:1.4.2", credential=cred)
        rejected = client.try_credentials("docker.example.org", "puller", "nope", "web")
    assert code_of(result) is None and result.auth == "basic" and result.identity == "secret:shop/docker"
    assert not rejected.ok and credential_rejected(rejected.failed_step)


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
    assert code_of(result) == "REGISTRY_AUTH_REJECTED" and result.identity == "secret:shop/hub"
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
    assert code_of(bad_port) == "CHECK_INCOMPLETE" and "port" in (bad_port.detail or "")
    assert code_of(result) == "REGISTRY_DNS_FAILURE" and verdict_of(result).scope == "registry"
    assert [s.name for s in result.steps] == ["dns"]
    assert result.steps[0].kind == "name_unresolved" and result.steps[0].status is None
    assert bad_port.steps[0].kind == "not_attempted"


def test_connection_refused(world: World) -> None:
    with world.client() as client:
        result = check_one(client, "closed.azurecr.io/web:1")
    assert code_of(result) == "REGISTRY_UNREACHABLE"
    assert result.failed_step and result.failed_step.name == "tcp"
    assert result.failed_step.kind == "connect_failed"
    assert "refused" in (result.failed_step.detail or "")


def test_listener_that_never_answers_times_out(world: World) -> None:
    start = time.monotonic()
    with world.client(http_timeout=0.5) as client:
        result = check_one(client, "hanging.azurecr.io/web:1")
    assert code_of(result) == "REGISTRY_UNREACHABLE"
    assert result.failed_step and result.failed_step.name == "tls"
    assert "timed out" in (result.failed_step.detail or "")
    assert time.monotonic() - start < 5


def test_unknown_ca(world: World) -> None:
    with world.client() as client:
        result = check_one(client, "rogue.azurecr.io/web:1")
    assert code_of(result) == "REGISTRY_TLS_ERROR"
    assert result.failed_step and result.failed_step.name == "tls"
    assert result.failed_step.kind == "tls_failed"
    assert "certificate" in (result.failed_step.detail or "")
    assert world.rogue.count() == 0  # no HTTP request went over the unverified connection


def test_rate_limited_with_retry_after(world: World) -> None:
    world.front.fault("HEAD", r"/manifests/", Response(429, b"", {"Retry-After": "1"}), times=1)
    start = time.monotonic()
    with world.client() as client:
        passed = check_one(client, f"{ACR}/web:1.4.2", want_platforms=False)
    assert code_of(passed) is None and time.monotonic() - start >= 1.0  # Retry-After honoured
    world.front.fault(
        None,
        r"/manifests/",
        Response(
            429, {"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]}, {"Retry-After": "0"}
        ),
    )
    with world.client() as client:
        limited = check_one(client, f"{ACR}/web:1.4.3", want_platforms=False)
    assert code_of(limited) == "REGISTRY_RATE_LIMITED" and verdict_of(limited).scope == "registry"
    assert limited.failed_step and limited.failed_step.status == 429
    assert world.front.count("HEAD", "/v2/web/manifests/1.4.3") == 3  # first try + 2 retries
    assert world.front.count("GET", "/v2/web/manifests/") == 0  # no quota-counted GET to read the body


def test_quota_counted_manifest_get_throttled(world: World) -> None:
    # Docker Hub: HEAD is free, only the manifest GET spends (and hits) the anonymous quota.
    body = {"errors": [{"code": "TOOMANYREQUESTS", "message": "You have reached your pull rate limit."}]}
    world.front.fault("GET", r"/manifests/", Response(429, body, {"Retry-After": "3600"}))
    with world.client() as client:
        result = check_one(client, f"{ACR}/web:1.4.2")
    assert code_of(result) == "REGISTRY_RATE_LIMITED" and verdict_of(result).scope == "registry"
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
    assert code_of(limited) == "REGISTRY_RATE_LIMITED" and time.monotonic() - start < 5
    assert world.front.count("HEAD", "/v2/web/manifests/") == 1


def test_server_errors_after_bounded_retries(world: World) -> None:
    world.front.fault(None, r"/manifests/", Response(500, "boom"))
    with world.client() as client:
        result = check_one(client, f"{ACR}/web:1.4.2")
    assert code_of(result) == "REGISTRY_SERVER_ERROR"
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
    assert code_of(result) == "REGISTRY_FIREWALL_DENIED" and verdict_of(result).scope == "registry"
    assert result.failed_step and result.failed_step.name == "exchange" and result.failed_step.status == 403
    assert result.failed_step.error_code == "DENIED" and result.failed_step.authenticated
    assert (
        "not allowed access" in result.failed_step.errors[0][1]
    )  # the registry's words, kept for the checks


def test_huge_answers_are_not_read(world: World) -> None:
    world.front.fault("GET", r"/manifests/", Response(200, b"{" + b" " * (5 * 1024 * 1024) + b"}"))
    with world.client() as client:
        result = check_one(client, f"{ACR}/web:1.4.2")
    assert code_of(result) is None and result.platforms is None  # exists; platforms unknown, not guessed
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
    assert code_of(result) is None and result.slow and (result.latency_ms or 0) >= 300


# --- adversarial ---------------------------------------------------------------------------------


def test_metadata_address_refused(world: World) -> None:
    with world.client() as client:
        result = check_one(client, "169.254.169.254/latest/meta-data:1")
        assert client.request_counts() == {}
    assert code_of(result) == "CHECK_INCOMPLETE" and result.failed_step
    assert result.failed_step.name == "dns" and "metadata" in (result.detail or "")


def test_localhost_refused(world: World) -> None:
    port = world.recorder.port
    with world.client() as client:
        by_name = check_one(client, f"localhost:{port}/web:1")
        by_ip = check_one(client, f"127.0.0.1:{port}/web:1")
        by_ipv6 = check_one(client, f"[::1]:{port}/web:1")
    assert code_of(by_name) == code_of(by_ip) == code_of(by_ipv6) == "CHECK_INCOMPLETE"
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
    verdict = verdict_of(result)
    assert (verdict.code, verdict.auth_required) == ("CHECK_INCOMPLETE", True)
    assert verdict.detail == "the registry refuses anonymous pulls of this repository; credentials are needed"
    assert_no_secret(json.dumps(result.evidence()))


def test_acr_realm_elsewhere_gets_no_entra_token(world: World) -> None:
    with world.client() as client:
        result = check_one(client, "elsewhere.azurecr.io/web:1.4.2")
    assert code_of(result) == "CHECK_INCOMPLETE" and "withheld" in (result.detail or "")
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
        code_of(result),
        result.detail,
        result.steps[-1],
    )
    for seen in world.recorder.seen:
        assert not any(k.lower() == "authorization" for k in seen.headers)
        assert_no_secret(seen.text())


def test_a_redirect_url_carrying_user_and_password_adds_no_credential(world: World) -> None:
    # requests turns ``https://user:password@host/`` into Basic auth; a registry's redirect must not
    # make pullwatch send a credential of the registry's choosing (the credential rule decides).
    world.front.fault(
        "HEAD",
        r"/manifests/",
        Response(
            307, b"", {"Location": "https://mallory:stolen@collector.example.net/v2/web/manifests/1.4.2"}
        ),
    )
    with world.client() as client:
        check_one(client, f"{ACR}/web:1.4.2", want_platforms=False)
    assert [s.method for s in world.recorder.seen] == ["HEAD"]
    for seen in world.recorder.seen:
        assert not any(k.lower() == "authorization" for k in seen.headers), seen.headers


def test_pull_secret_for_other_host_not_sent(world: World) -> None:
    cred = RegistryCredential("other.example.org", "puller", PASSWORD, "secret:shop/other")
    with world.client() as client:
        result = check_one(client, f"{ACR}/web:1.4.2", credential=cred)
    assert code_of(result) == "CHECK_INCOMPLETE"
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


def test_many_checks_on_one_registry_reuse_at_most_concurrency_connections(world: World) -> None:
    accepted = 0
    server = world.front.server._server
    plain_accept = server.get_request

    def counting_accept() -> tuple[socket.socket, object]:
        nonlocal accepted
        accepted += 1
        return plain_accept()

    server.get_request = counting_accept  # type: ignore[method-assign]
    try:
        with world.client(registry_concurrency=3) as client:
            results = client.check_images(
                [target(f"{ACR}/batch/r{i:02d}:v1", want_platforms=False) for i in range(60)]
            )
    finally:
        server.get_request = plain_accept  # type: ignore[method-assign]
    assert all(r.found for r in results)
    assert world.front.count("HEAD", "/v2/batch/") == 60
    # the probe's own TCP/TLS check, then one pooled connection per worker for every request after it
    assert accepted <= 3 + 1


def test_each_result_is_the_answer_for_its_own_image(world: World) -> None:
    """Checks run on a few workers in whatever order they finish; every result still belongs to its image."""

    def odd_missing(request: object) -> Response:
        path = str(getattr(request, "path", ""))
        number = int(path.split("/batch/r")[1][:2])
        time.sleep(0.002 * (number % 5))  # answers finish out of order
        if number % 2:
            return Response(404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]})
        return Response(
            200,
            b"",
            {"Docker-Content-Digest": f"sha256:{number:064d}"},
            content_type="application/vnd.oci.image.manifest.v1+json",
        )

    world.front.fault("HEAD", r"/v2/batch/r\d\d/manifests/", odd_missing)
    with world.client(registry_concurrency=4) as client:
        results = client.check_images(
            [target(f"{ACR}/batch/r{i:02d}:v1", want_platforms=False) for i in range(40)]
        )
    assert [r.ref.repository for r in results] == [f"batch/r{i:02d}" for i in range(40)]
    assert [r.found for r in results] == [i % 2 == 0 for i in range(40)]
    assert [r.digest for r in results if r.found] == [f"sha256:{i:064d}" for i in range(0, 40, 2)]


def test_a_cookie_a_registry_sets_is_never_sent_back(world: World) -> None:
    def with_cookie(request: object) -> Response:
        return Response(
            200,
            b"",
            {
                "Docker-Content-Digest": "sha256:" + "2" * 64,
                "Set-Cookie": "lb=registry-session-secret; Path=/; Secure",
            },
            content_type="application/vnd.oci.image.manifest.v1+json",
        )

    world.front.fault("HEAD", r"/manifests/", with_cookie)
    with world.client(registry_concurrency=1) as client:
        results = client.check_images(
            [target(f"{ACR}/batch/r{i:02d}:v1", want_platforms=False) for i in range(3)]
        )
    assert all(r.found for r in results)
    assert world.front.count("HEAD", "/v2/batch/") == 3
    for seen in world.front.seen:
        assert not any(name.lower() == "cookie" for name in seen.headers), seen.path
        assert "registry-session-secret" not in seen.text()


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


# --- no credential leaves its host (a hostile registry on loopback) ---------------------------------

BASIC_CHALLENGE = Response(
    401,
    {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
    {"WWW-Authenticate": 'Basic realm="Registry Realm"'},
)
SECRET = RegistryCredential("docker.example.org", "puller", PASSWORD, "secret:shop/docker")
OTHER = "https://collector.example.net"


def _tags_page(link: str) -> Response:
    return Response(200, {"name": "web", "tags": ["1.4.2", "1.4.3"]}, {"Link": f'<{link}>; rel="next"'})


def _authorizations(seen: list[Seen]) -> list[str]:
    return [
        v for s in seen for k, v in s.headers.items() if k.lower() in ("authorization", "proxy-authorization")
    ]


# Every way a request can be sent: the identity (Entra token exchange, a pull secret through a token
# realm, a pull secret as Basic on every request) times the request path the hostile registry turns to
# another host (token, manifest HEAD and GET, blob, tag list, tag-list Link page).
FLOWS = {
    "entra": (ACR, None, False),
    "pull secret via token realm": ("docker.example.org", SECRET, False),
    "pull secret as basic": ("docker.example.org", SECRET, True),
}
PATHS = {
    "token redirect": ("GET", r"^/oauth2/token$", Response(307, b"", {"Location": f"{OTHER}/token?x=1"})),
    "token POST redirect": ("POST", r"^/oauth2/token$", Response(307, b"", {"Location": f"{OTHER}/t"})),
    "exchange redirect": ("POST", r"^/oauth2/exchange$", Response(308, b"", {"Location": f"{OTHER}/x"})),
    "manifest HEAD redirect": ("HEAD", r"/manifests/", Response(302, b"", {"Location": f"{OTHER}/v2/m"})),
    "manifest GET redirect": ("GET", r"/manifests/", Response(307, b"", {"Location": f"{OTHER}/v2/m"})),
    "blob redirect": ("GET", r"/blobs/", Response(307, b"", {"Location": f"{OTHER}/blob/sha256:1"})),
    "tag list redirect": (
        "GET",
        r"/tags/list",
        Response(302, b"", {"Location": f"{OTHER}/v2/web/tags/list"}),
    ),
    "tag list Link page": ("GET", r"/tags/list", _tags_page(f"{OTHER}/v2/web/tags/list?n=1000&last=1.4.3")),
    "tag list Link page, other port": (
        "GET",
        r"/tags/list",
        _tags_page("https://docker.example.org:8443/v2/web/tags/list?last=1.4.3"),
    ),
}


@pytest.mark.reliability
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("flow", list(FLOWS))
def test_no_credential_reaches_another_host(world: World, flow: str, path: str) -> None:
    """0 credentials at any host but the credential's own (and its trusted realm), on every path."""
    host, credential, basic = FLOWS[flow]
    front = world.front if host == ACR else world.plain
    method, pattern, answer = PATHS[path]
    if basic:
        front.fault("GET", r"^/v2/$", BASIC_CHALLENGE)
    if "tag list" in path or basic:
        # a missing tag: the client reads the tag list to suggest one
        front.fault("HEAD", r"/manifests/", Response(404, b""), times=None if basic else 1)
    front.fault(method, pattern, answer)
    kw: dict[str, object] = {"credential": credential} if credential else {}
    with world.client() as client:
        results = client.check_images(
            [target(f"{host}/web:1.4.9", **kw), target(f"{host}/api:2.0", **kw)]  # index; single-platform
        )
        if credential is not None:
            client.try_credentials(host, "puller", PASSWORD, "web")
    assert _authorizations(world.recorder.seen) == []
    for seen in world.recorder.seen:
        assert_no_secret(seen.text())
    other_port = [s for s in front.seen if s.query.get("last") and "8443" in path]
    assert other_port == []  # the same name on another port is another origin
    for result in results:
        assert_no_secret(json.dumps(result.evidence()))


@pytest.mark.reliability
def test_a_tag_page_on_another_host_is_reported_not_followed(world: World) -> None:
    world.front.fault("GET", r"/tags/list", _tags_page(f"{OTHER}/v2/web/tags/list?last=1.4.3"))
    with world.client() as client:
        result = check_one(client, f"{ACR}/web:1.4.4")
    assert world.recorder.seen == []
    assert code_of(result) == "IMAGE_NOT_FOUND" and result.suggestions[:2] == ("1.4.3", "1.4.2")
    tags = result.steps[-1]
    assert tags.name == "tags" and tags.ok
    assert "collector.example.net" in (tags.detail or "") and "not followed" in (tags.detail or "")


@pytest.mark.reliability
def test_a_tag_page_on_the_same_registry_is_followed_with_its_credential(world: World) -> None:
    world.front.fault(
        "GET", r"/tags/list", _tags_page("/v2/web/tags/list?n=1000&last=1.4.3"), times=1
    )  # the second page is the real registry's answer
    with world.client() as client:
        result = check_one(client, f"{ACR}/web:1.5.1")
    pages = [s for s in world.front.seen if s.path.endswith("/tags/list")]
    assert len(pages) == 2 and all(s.headers.get("Authorization", "").startswith("Bearer ") for s in pages)
    assert "1.5.0" in result.suggestions


# --- a slow-drip registry costs at most the request deadline; answers are capped ---------------------

DRIP = "drip.example.org"
OPEN = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n", b"{}", "")


@pytest.fixture
def trickle(world: World) -> Iterator[Trickle]:
    server = Trickle(world.pki, DRIP, gap=0.2).start()
    try:
        yield server
    finally:
        server.stop()


def _drip_client(world: World, trickle: Trickle, **overrides: object) -> RegistryClient:
    hosts = {**world.settings().hosts, DRIP: ("127.0.0.1", trickle.port)}
    values: dict[str, object] = {"hosts": hosts, "http_timeout": 1.0, "registry_deadline": 1.5}
    values.update(overrides)
    return RegistryClient(world.settings(**values))


@pytest.mark.reliability
def test_a_registry_trickling_its_headers_costs_one_request_deadline(world: World, trickle: Trickle) -> None:
    # 0.2 s a byte never trips the 1 s read timeout; ~80 bytes of headers would take 16 s
    trickle.routes[("GET", "/v2/")] = (OPEN[0], OPEN[1], "head")
    started = time.monotonic()
    with _drip_client(world, trickle) as client:
        result = check_one(client, f"{DRIP}/web:1")
    elapsed = time.monotonic() - started
    assert code_of(result) == "REGISTRY_UNREACHABLE" and result.failed_step
    assert result.failed_step.name == "challenge"
    assert "deadline" in (result.failed_step.detail or "") and "1.5 s" in (result.detail or "")
    assert elapsed < 1.5 + 1.5, elapsed  # the deadline, plus the probe's own dns/tcp/tls steps
    assert 0 < trickle.sent < 20


@pytest.mark.reliability
def test_a_registry_trickling_a_manifest_body_costs_one_request_deadline(
    world: World, trickle: Trickle
) -> None:
    digest = "sha256:" + "a" * 64
    trickle.routes[("GET", "/v2/")] = OPEN
    trickle.routes[("HEAD", "/v2/web/manifests/")] = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\n"
        b"Docker-Content-Digest: " + digest.encode() + b"\r\nContent-Length: 400\r\n",
        b"",
        "",
    )
    trickle.routes[("GET", "/v2/web/manifests/")] = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nContent-Length: 400\r\n",
        b"{" + b" " * 398 + b"}",
        "body",
    )
    started = time.monotonic()
    with _drip_client(world, trickle) as client:
        result = check_one(client, f"{DRIP}/web:1")
    elapsed = time.monotonic() - started
    assert code_of(result) is None and result.digest == digest and result.platforms is None
    platforms = result.steps[-1]
    assert platforms.name == "platforms" and not platforms.ok and "deadline" in (platforms.detail or "")
    assert elapsed < 1.5 + 1.5, elapsed


@pytest.mark.reliability
def test_retries_of_a_trickling_server_error_stay_inside_the_deadline(world: World, trickle: Trickle) -> None:
    trickle.routes[("GET", "/v2/")] = (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 200\r\n",
        b"x" * 200,
        "body",
    )
    started = time.monotonic()
    with _drip_client(world, trickle, retries=3) as client:
        result = check_one(client, f"{DRIP}/web:1")
    elapsed = time.monotonic() - started
    assert code_of(result) in ("REGISTRY_UNREACHABLE", "REGISTRY_SERVER_ERROR")
    assert elapsed < 1.5 + 1.5, elapsed


@pytest.mark.reliability
def test_an_oversized_token_answer_is_refused(world: World) -> None:
    world.front.fault("POST", r"^/oauth2/token$", Response(200, {"access_token": "t" * 300_000}))
    with world.client() as client:
        result = check_one(client, f"{ACR}/web:1.4.2")
    assert code_of(result) == "CHECK_INCOMPLETE" and result.failed_step
    assert result.failed_step.name == "token" and "larger than" in (result.failed_step.detail or "")


@pytest.mark.reliability
def test_an_oversized_tag_page_is_refused_and_the_missing_tag_still_reported(world: World) -> None:
    world.front.fault("GET", r"/tags/list", Response(200, {"name": "web", "tags": ["t" * 64] * 20_000}))
    with world.client() as client:
        result = check_one(client, f"{ACR}/web:1.4.4")
    assert code_of(result) == "IMAGE_NOT_FOUND" and result.suggestions == ()
    tags = result.steps[-1]
    assert tags.name == "tags" and not tags.ok and "larger than" in (tags.detail or "")


@pytest.mark.reliability
def test_a_huge_error_body_is_cut_not_read(world: World) -> None:
    body = {"errors": [{"code": "UNKNOWN", "message": "x" * (8 * 1024 * 1024)}]}
    world.front.fault("GET", r"/manifests/", Response(500, body))
    with world.client(retries=0) as client:
        result = check_one(client, f"{ACR}/web:1.4.2")
    platforms = result.steps[-1]
    assert code_of(result) is None and result.platforms is None
    assert platforms.name == "platforms" and platforms.status == 500


def test_the_request_deadline_setting() -> None:
    assert Settings.from_env({}).request_deadline == 30.0  # 3 x the 10 s HTTP timeout
    assert Settings.from_env({"PULLWATCH_HTTP_TIMEOUT_SECONDS": "4"}).request_deadline == 12.0
    assert Settings.from_env({"PULLWATCH_REGISTRY_DEADLINE_SECONDS": "45"}).request_deadline == 45.0
    with pytest.raises(ConfigError, match="PULLWATCH_REGISTRY_DEADLINE_SECONDS: 5 is less than"):
        Settings.from_env({"PULLWATCH_REGISTRY_DEADLINE_SECONDS": "5"})
    with pytest.raises(ConfigError, match="PULLWATCH_REGISTRY_DEADLINE_SECONDS: expected a number"):
        Settings.from_env({"PULLWATCH_REGISTRY_DEADLINE_SECONDS": "soon"})


def test_a_login_server_of_another_cloud_gets_no_entra_token(world: World) -> None:
    """The Entra-token destination rule follows PULLWATCH_CLOUD: in Azure Government an
    ``*.azurecr.io`` host is not one of the cloud's registries, so it is asked anonymously."""
    from shared.cloud import AZURE_US_GOVERNMENT

    before = world.front.count("POST", "/oauth2/exchange")
    with world.client(cloud=AZURE_US_GOVERNMENT) as client:
        result = check_one(client, f"{ACR}/web:1.4.2")
    assert result.auth != "entra" and code_of(result) is not None
    assert world.front.count("POST", "/oauth2/exchange") == before


def test_a_secret_for_a_host_that_is_a_prefix_of_the_registry_is_not_sent(world: World) -> None:
    cred = RegistryCredential("contoso.azurecr.io", "puller", PASSWORD, "secret:shop/contoso")
    with world.client() as client:
        result = check_one(client, f"{ACR}/web:1.4.2", credential=cred)
    verdict = verdict_of(result)
    assert verdict.code == "CHECK_INCOMPLETE"
    assert verdict.detail == f"credential secret:shop/contoso is for contoso.azurecr.io, not {ACR}; not sent"
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
    verdict = verdict_of(result)
    assert verdict.code == "CHECK_INCOMPLETE"
    assert verdict.detail == f"credential secret:shop/other is for {host}, not docker.io; not sent"
    assert world.hub_auth.seen == []
