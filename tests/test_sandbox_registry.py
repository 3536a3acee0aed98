"""Sandbox registries: real docker-registry processes behind their fronts, real HTTPS, real token flows.

Clients: the sandbox network's pinned HTTPS client (resolves through the world's name map, verifies
TLS against the host name) doing the registry token flow step by step, and Debian's ``skopeo`` as
an independent client (through a small CONNECT proxy that maps the world's host names).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import shutil
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest

from sandbox.entra import Entra
from sandbox.images import MANIFEST_ACCEPT, OCI_INDEX, OCI_MANIFEST, build_image
from sandbox.metrics import RequestLog
from sandbox.network import Network
from sandbox.pki import Pki
from sandbox.rbac import Rbac
from sandbox.registry import RegistryFarm
from sandbox.world import Platform, RoleAssignment, World, apply_registry_change, parse

pytestmark = pytest.mark.sandbox

ACR = "https://containerregistry.azure.net"
ARM = "https://management.azure.com"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

WORLD = """
name: registries
registries:
  contosoacr:
    repositories:
      web: {"1.4.2": [linux/amd64, linux/arm64], "1.4.1": [linux/amd64]}
      secret/app: {"1.0": [linux/amd64]}
  fabrikamacr:
    tenant: 99999999-9999-9999-9999-999999999999
    repositories:
      api: {"2.0": [linux/amd64]}
  strictacr:
    authenticationAsArm: false
    repositories:
      api: {"2.0": [linux/amd64]}
  publicacr:
    anonymousPullEnabled: true
    repositories:
      base: {"1": [linux/amd64]}
  registry.example.com:
    users: {ci-bot: s3cret}
    repositories:
      tools/agent: {"3.1": [linux/arm64]}
  docker.io:
    anonymousRateLimit: 3
    repositories:
      library/nginx: {"1.27": [linux/amd64, linux/arm64]}
clusters:
  aks-prod: {vnet: vnet-prod}
  aks-dev: {egressIPs: [20.60.0.7]}
roleAssignments:
  - {principal: kubelet:aks-prod, role: AcrPull, scope: registry:contosoacr}
  - {principal: kubelet:aks-prod, role: AcrPull, scope: registry:fabrikamacr}
  - {principal: kubelet:aks-prod, role: AcrPull, scope: registry:strictacr}
  - {principal: app, role: Reader, scope: subscription}
"""


class Sandbox:
    def __init__(self, world: World, workdir: Path) -> None:
        self.world = world
        self.workdir = workdir
        self.pki = Pki(workdir)
        self.log = RequestLog()
        self.entra = Entra(world, self.log, self.pki)
        self.rbac = Rbac(world)
        self.network = Network(world, self.pki).start()
        self.farm = RegistryFarm(
            world, self.pki, self.network, self.entra, self.rbac, self.log, workdir
        ).start()

    def stop(self) -> None:
        self.farm.stop()
        self.network.stop()

    # -- the client side of the flows, step by step ------------------------------------------------

    def get(self, url: str, viewpoint: str | None = None, **headers: str) -> Any:
        return self.network.request("GET", url, viewpoint=viewpoint, headers=headers)

    def post_form(self, url: str, form: list[tuple[str, str]], viewpoint: str | None = None) -> Any:
        return self.network.request(
            "POST", url, viewpoint=viewpoint, body=urlencode(form).encode(), headers=FORM
        )

    def challenge(self, host: str, viewpoint: str | None = None) -> dict[str, str]:
        answer = self.get(f"https://{host}/v2/", viewpoint)
        assert answer.status == 401, answer.data
        header = answer.headers["WWW-Authenticate"]
        assert header.startswith("Bearer ")
        return dict(re.findall(r'(\w+)="([^"]*)"', header))

    def refresh_token(self, host: str, entra_token: str, viewpoint: str | None = None) -> Any:
        return self.post_form(
            f"https://{host}/oauth2/exchange",
            [
                ("grant_type", "access_token"),
                ("service", host),
                ("tenant", self.world.tenant),
                ("access_token", entra_token),
            ],
            viewpoint,
        )

    def acr_access_token(
        self, host: str, principal: str, repos: list[str], audience: str = ACR, viewpoint: str | None = None
    ) -> str:
        challenge = self.challenge(host, viewpoint)
        assert challenge == {"realm": f"https://{host}/oauth2/token", "service": host}
        exchanged = self.refresh_token(host, self.entra.issue(principal, audience), viewpoint)
        assert exchanged.status == 200, exchanged.data
        form = [
            ("grant_type", "refresh_token"),
            ("service", host),
            *[("scope", f"repository:{r}:pull") for r in repos],
            ("refresh_token", json.loads(exchanged.data)["refresh_token"]),
        ]
        answer = self.post_form(challenge["realm"], form, viewpoint)
        assert answer.status == 200, answer.data
        return str(json.loads(answer.data)["access_token"])

    def manifest(
        self,
        host: str,
        repo: str,
        ref: str,
        token: str | None,
        viewpoint: str | None = None,
        method: str = "GET",
    ) -> Any:
        headers = {"Accept": MANIFEST_ACCEPT}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.network.request(
            method, f"https://{host}/v2/{repo}/manifests/{ref}", viewpoint=viewpoint, headers=headers
        )

    def pull(
        self, host: str, repo: str, ref: str, token: str, viewpoint: str | None = None
    ) -> dict[str, Any]:
        """Manifest (or index + the first child), config and layer, each checked against its digest."""
        answer = self.manifest(host, repo, ref, token, viewpoint)
        assert answer.status == 200, answer.data
        assert answer.headers["Docker-Content-Digest"] == "sha256:" + hashlib.sha256(answer.data).hexdigest()
        document = json.loads(answer.data)
        if document["mediaType"] == OCI_INDEX:
            answer = self.manifest(host, repo, document["manifests"][0]["digest"], token, viewpoint)
            assert answer.status == 200
        manifest = json.loads(answer.data)
        blobs = {}
        for descriptor in [manifest["config"], *manifest["layers"]]:
            blob = self.network.request(
                "GET",
                f"https://{host}/v2/{repo}/blobs/{descriptor['digest']}",
                viewpoint=viewpoint,
                headers={"Authorization": f"Bearer {token}"},
            )
            assert blob.status == 200, blob.data
            assert "sha256:" + hashlib.sha256(blob.data).hexdigest() == descriptor["digest"]
            assert len(blob.data) == descriptor["size"]
            blobs[descriptor["mediaType"]] = blob.data
        return {
            "top": document,
            "manifest": manifest,
            "config": json.loads(blobs[manifest["config"]["mediaType"]]),
        }

    def docker_token(
        self,
        realm: str,
        service: str,
        repo: str,
        basic: tuple[str, str] | None = None,
        viewpoint: str | None = None,
    ) -> Any:
        headers = {}
        if basic:
            import base64

            headers["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        url = f"{realm}?{urlencode({'service': service, 'scope': f'repository:{repo}:pull'})}"
        return self.network.request("GET", url, viewpoint=viewpoint, headers=headers)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    box = Sandbox(parse(WORLD), tmp_path_factory.mktemp("registries"))
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def own_sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox for tests that change the world."""
    box = Sandbox(parse(WORLD), tmp_path)
    try:
        yield box
    finally:
        box.stop()


# -- ACR ---------------------------------------------------------------------------------------


def test_kubelet_with_acrpull_pulls_manifest_and_blobs(sandbox: Sandbox) -> None:
    token = sandbox.acr_access_token(
        "contosoacr.azurecr.io", "kubelet:aks-prod", ["web"], viewpoint="aks-prod"
    )
    pulled = sandbox.pull("contosoacr.azurecr.io", "web", "1.4.1", token, viewpoint="aks-prod")
    assert pulled["top"]["mediaType"] == OCI_MANIFEST
    assert (pulled["config"]["os"], pulled["config"]["architecture"]) == ("linux", "amd64")


def test_multi_platform_tag_is_an_oci_index_with_platform_entries(sandbox: Sandbox) -> None:
    token = sandbox.acr_access_token("contosoacr.azurecr.io", "kubelet:aks-prod", ["web"])
    answer = sandbox.manifest("contosoacr.azurecr.io", "web", "1.4.2", token)
    assert answer.headers["Content-Type"] == OCI_INDEX
    index = json.loads(answer.data)
    assert [m["platform"] for m in index["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux"},
    ]
    for entry in index["manifests"]:
        child = json.loads(sandbox.manifest("contosoacr.azurecr.io", "web", entry["digest"], token).data)
        config = sandbox.network.request(
            "GET",
            f"https://contosoacr.azurecr.io/v2/web/blobs/{child['config']['digest']}",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert json.loads(config.data)["architecture"] == entry["platform"]["architecture"]
    # Same (repo, tag, platforms) -> same bytes -> same digest, on any run.
    assert (
        answer.headers["Docker-Content-Digest"]
        == build_image("web", "1.4.2", [Platform("linux", "amd64"), Platform("linux", "arm64")]).digest
    )


def test_principal_without_a_role_gets_a_token_without_access_and_the_registry_says_insufficient_scope(
    sandbox: Sandbox,
) -> None:
    token = sandbox.acr_access_token("contosoacr.azurecr.io", "kubelet:aks-dev", ["web"], viewpoint="aks-dev")
    assert jwt.decode(token, options={"verify_signature": False})["access"] == []
    answer = sandbox.manifest("contosoacr.azurecr.io", "web", "1.4.1", token, viewpoint="aks-dev")
    assert answer.status == 401
    assert json.loads(answer.data)["errors"][0]["code"] == "UNAUTHORIZED"
    assert 'error="insufficient_scope"' in answer.headers["WWW-Authenticate"]
    assert 'scope="repository:web:pull"' in answer.headers["WWW-Authenticate"]


def test_token_for_one_repository_does_not_open_another(sandbox: Sandbox) -> None:
    token = sandbox.acr_access_token("contosoacr.azurecr.io", "kubelet:aks-prod", ["web"])
    assert sandbox.manifest("contosoacr.azurecr.io", "secret/app", "1.0", token).status == 401


def test_token_from_another_tenant_is_refused_at_exchange(sandbox: Sandbox) -> None:
    answer = sandbox.refresh_token("fabrikamacr.azurecr.io", sandbox.entra.issue("kubelet:aks-prod", ACR))
    assert answer.status == 401
    assert json.loads(answer.data)["errors"][0]["code"] == "UNAUTHORIZED"


def test_arm_audience_is_refused_while_authentication_as_arm_is_disabled(sandbox: Sandbox) -> None:
    arm_token = sandbox.entra.issue("kubelet:aks-prod", ARM)
    refused = sandbox.refresh_token("strictacr.azurecr.io", arm_token)
    assert refused.status == 401
    assert json.loads(refused.data)["errors"][0]["code"] == "UNAUTHORIZED"
    assert sandbox.refresh_token("contosoacr.azurecr.io", arm_token).status == 200
    token = sandbox.acr_access_token("strictacr.azurecr.io", "kubelet:aks-prod", ["api"], audience=ACR)
    assert sandbox.manifest("strictacr.azurecr.io", "api", "2.0", token).status == 200


def test_anonymous_pull_only_where_enabled(sandbox: Sandbox) -> None:
    query = "service=publicacr.azurecr.io&scope=repository:base:pull"
    answer = sandbox.get(f"https://publicacr.azurecr.io/oauth2/token?{query}")
    assert answer.status == 200
    assert (
        sandbox.manifest("publicacr.azurecr.io", "base", "1", json.loads(answer.data)["access_token"]).status
        == 200
    )
    refused = sandbox.get(
        "https://contosoacr.azurecr.io/oauth2/token?service=contosoacr.azurecr.io&scope=repository:web:pull"
    )
    assert refused.status == 401
    assert json.loads(refused.data)["errors"][0]["code"] == "UNAUTHORIZED"


def test_abac_mode_switch_invalidates_cached_refresh_tokens(own_sandbox: Sandbox) -> None:
    box, host = own_sandbox, "contosoacr.azurecr.io"
    box.world.role_assignments.append(
        RoleAssignment(
            "kubelet:aks-prod", "Container Registry Repository Reader", "registry:contosoacr", ["web"]
        )
    )
    cached = json.loads(box.refresh_token(host, box.entra.issue("kubelet:aks-prod", ACR)).data)[
        "refresh_token"
    ]
    form = [
        ("grant_type", "refresh_token"),
        ("service", host),
        ("scope", "repository:web:pull"),
        ("refresh_token", cached),
    ]
    assert box.post_form(f"https://{host}/oauth2/token", form).status == 200
    apply_registry_change(
        box.world, {"name": "contosoacr", "roleAssignmentMode": "AbacRepositoryPermissions"}
    )
    stale = box.post_form(f"https://{host}/oauth2/token", form)
    assert stale.status == 401
    assert json.loads(stale.data)["errors"][0]["code"] == "UNAUTHORIZED"
    # After a kubelet restart (a new exchange) the Repository Reader assignment works, AcrPull does not.
    token = box.acr_access_token(host, "kubelet:aks-prod", ["web", "secret/app"])
    assert [a["name"] for a in jwt.decode(token, options={"verify_signature": False})["access"]] == ["web"]
    assert box.manifest(host, "web", "1.4.1", token).status == 200


# -- generic registries and Docker Hub ----------------------------------------------------------


def test_generic_registry_basic_auth_token_flow(sandbox: Sandbox) -> None:
    host = "registry.example.com"
    challenge = sandbox.challenge(host)
    assert challenge == {"realm": f"https://{host}/token", "service": host}
    answer = sandbox.docker_token(challenge["realm"], host, "tools/agent", ("ci-bot", "s3cret"))
    assert answer.status == 200
    body = json.loads(answer.data)
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
    pulled = sandbox.pull(host, "tools/agent", "3.1", body["token"])
    assert pulled["config"]["architecture"] == "arm64"
    assert sandbox.docker_token(challenge["realm"], host, "tools/agent", ("ci-bot", "wrong")).status == 401
    assert sandbox.docker_token(challenge["realm"], host, "tools/agent").status == 401  # anonymous, private


def test_docker_hub_anonymous_pulls_then_rate_limit(own_sandbox: Sandbox) -> None:
    box = own_sandbox
    challenge = box.challenge("registry-1.docker.io", "aks-prod")
    assert challenge == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io"}
    token = json.loads(
        box.docker_token(challenge["realm"], challenge["service"], "library/nginx", viewpoint="aks-prod").data
    )["token"]
    assert box.manifest("docker.io", "library/nginx", "1.27", token, "aks-prod", method="HEAD").status == 200
    for _ in range(3):  # HEAD does not count, GETs do
        assert box.manifest("index.docker.io", "library/nginx", "1.27", token, "aks-prod").status == 200
    limited = box.manifest("registry-1.docker.io", "library/nginx", "1.27", token, "aks-prod")
    assert limited.status == 429
    assert limited.headers["Retry-After"].isdigit()
    error = json.loads(limited.data)["errors"][0]
    assert error["code"] == "TOOMANYREQUESTS" and "pull rate limit" in error["message"]
    # Limits are per client IP: the app (another egress IP) still pulls.
    app_token = json.loads(box.docker_token(challenge["realm"], challenge["service"], "library/nginx").data)[
        "token"
    ]
    assert box.manifest("registry-1.docker.io", "library/nginx", "1.27", app_token).status == 200


# -- changes while running --------------------------------------------------------------------


def test_delete_image_removes_the_tag_and_push_image_adds_one(own_sandbox: Sandbox) -> None:
    box, host = own_sandbox, "contosoacr.azurecr.io"
    before = box.farm.digest("contosoacr", "web", "1.4.1")
    assert before is not None
    assert box.farm.delete_image("contosoacr", "web", "1.4.1") == before
    assert box.farm.digest("contosoacr", "web", "1.4.1") is None
    assert "1.4.1" not in box.world.registry("contosoacr").repositories["web"]
    token = box.acr_access_token(host, "kubelet:aks-prod", ["web"])
    gone = box.manifest(host, "web", "1.4.1", token)
    assert gone.status == 404
    assert json.loads(gone.data)["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert box.manifest(host, "web", "1.4.2", token).status == 200  # other tags untouched
    digest = box.farm.push_image(host, "web", "1.5.0", ["linux/amd64", "linux/arm64"])
    answer = box.manifest(host, "web", "1.5.0", token)
    assert answer.status == 200 and answer.headers["Docker-Content-Digest"] == digest
    assert box.farm.push_image("contosoacr", "web", "1.5.0", ["linux/amd64", "linux/arm64"]) == digest


def test_front_counts_only_product_requests(own_sandbox: Sandbox) -> None:
    box = own_sandbox
    box.challenge("contosoacr.azurecr.io", "aks-prod")
    assert box.log.snapshot()["registry"] == {}
    box.challenge("contosoacr.azurecr.io")
    box.challenge("docker.io")
    box.get("https://auth.docker.io/token?service=registry.docker.io&scope=repository:library/nginx:pull")
    assert box.log.snapshot()["registry"] == {"contosoacr.azurecr.io": 1, "docker.io": 2}


# -- network rules ----------------------------------------------------------------------------

FIREWALLED = """
name: firewalled
registries:
  denyacr:
    networkRuleSet: {defaultAction: Deny, ipRules: [20.50.1.0/24]}
    repositories: {web: {"1": [linux/amd64]}}
  privateacr:
    publicNetworkAccess: Disabled
    privateEndpoints: [vnet-prod]
    repositories: {web: {"1": [linux/amd64]}}
clusters:
  aks-prod: {vnet: vnet-prod}
  aks-dev: {vnet: vnet-dev, egressIPs: [20.60.0.7]}
roleAssignments:
  - {principal: kubelet:aks-prod, role: AcrPull, scope: subscription}
  - {principal: kubelet:aks-dev, role: AcrPull, scope: subscription}
"""


def _denied(answer: Any, ip: str) -> None:
    assert answer.status == 403
    assert json.loads(answer.data) == {
        "errors": [
            {
                "code": "DENIED",
                "message": (
                    f"client with IP '{ip}' is not allowed access. Refer https://aka.ms/acr/firewall to grant access."
                ),
            }
        ]
    }


def test_acr_network_rules_per_viewpoint(tmp_path: Path) -> None:
    box = Sandbox(parse(FIREWALLED), tmp_path)
    try:
        # Deny + ipRules: aks-prod (default egress 20.50.1.10) is inside the rule, aks-dev and the app are not.
        token = box.acr_access_token("denyacr.azurecr.io", "kubelet:aks-prod", ["web"], viewpoint="aks-prod")
        assert box.manifest("denyacr.azurecr.io", "web", "1", token, "aks-prod").status == 200
        _denied(box.get("https://denyacr.azurecr.io/v2/", "aks-dev"), "20.60.0.7")
        _denied(
            box.refresh_token("denyacr.azurecr.io", box.entra.issue("kubelet:aks-dev", ACR), "aks-dev"),
            "20.60.0.7",
        )
        _denied(box.get("https://denyacr.azurecr.io/oauth2/token?service=denyacr.azurecr.io"), "203.0.113.10")
        # Public access disabled: only the cluster whose vnet has a private endpoint gets through.
        token = box.acr_access_token(
            "privateacr.azurecr.io", "kubelet:aks-prod", ["web"], viewpoint="aks-prod"
        )
        assert box.manifest("privateacr.azurecr.io", "web", "1", token, "aks-prod").status == 200
        _denied(box.get("https://privateacr.azurecr.io/v2/", "aks-dev"), "20.60.0.7")
        _denied(box.get("https://privateacr.azurecr.io/v2/"), "203.0.113.10")
        # Rules are read live: opening the registry lets the app in.
        apply_registry_change(box.world, {"name": "denyacr", "networkRuleSet": {"defaultAction": "Allow"}})
        assert box.get("https://denyacr.azurecr.io/v2/").status == 401
    finally:
        box.stop()


# -- skopeo, an independent client ------------------------------------------------------------


class _ConnectProxy(socketserver.ThreadingTCPServer):
    """HTTP CONNECT proxy mapping host names through the sandbox network (skopeo cannot use a name map)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, network: Network) -> None:
        self.network = network
        super().__init__(("127.0.0.1", 0), _ConnectHandler)


class _ConnectHandler(socketserver.BaseRequestHandler):
    server: _ConnectProxy

    def handle(self) -> None:
        client: socket.socket = self.request
        client.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
        method, target, _ = head.split(b"\r\n")[0].decode().split(" ", 2)
        address = self.server.network.resolve(target.rsplit(":", 1)[0]) if method == "CONNECT" else None
        if address is None:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        upstream = socket.create_connection(address, timeout=10)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        sockets = [client, upstream]
        try:
            while True:
                readable, _, _ = select.select(sockets, [], [], 10)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)
        except OSError:
            return
        finally:
            upstream.close()


@pytest.fixture(scope="module")
def skopeo(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    proxy = _ConnectProxy(sandbox.network)
    thread = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    home = tmp_path_factory.mktemp("skopeo-home")
    certs = home / "certs"
    certs.mkdir()
    shutil.copy(sandbox.pki.ca_bundle, certs / "ca.crt")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HTTPS_PROXY": f"http://127.0.0.1:{proxy.server_address[1]}",
        "NO_PROXY": "",
    }

    def inspect(reference: str, *creds: str) -> subprocess.CompletedProcess[str]:
        auth = ["--creds", creds[0]] if creds else ["--no-creds"]
        return subprocess.run(
            [
                "skopeo",
                "--command-timeout",
                "20s",
                "inspect",
                "--raw",
                "--tls-verify=true",
                "--cert-dir",
                str(certs),
                *auth,
                f"docker://{reference}",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=40,
            check=False,
        )

    try:
        yield inspect
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=5)


def test_skopeo_pulls_with_an_acr_refresh_token_as_password(sandbox: Sandbox, skopeo: Any) -> None:
    host = "contosoacr.azurecr.io"
    refresh = json.loads(sandbox.refresh_token(host, sandbox.entra.issue("kubelet:aks-prod", ACR)).data)
    done = skopeo(f"{host}/web:1.4.2", f"00000000-0000-0000-0000-000000000000:{refresh['refresh_token']}")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["mediaType"] == OCI_INDEX
    denied = skopeo(f"{host}/web:1.4.2", "00000000-0000-0000-0000-000000000000:not-a-token")
    assert denied.returncode != 0
    assert "401" in denied.stderr or "unauthorized" in denied.stderr.lower()


def test_skopeo_generic_registry_credentials_and_docker_hub_anonymous(sandbox: Sandbox, skopeo: Any) -> None:
    done = skopeo("registry.example.com/tools/agent:3.1", "ci-bot:s3cret")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["mediaType"] == OCI_MANIFEST
    wrong = skopeo("registry.example.com/tools/agent:3.1", "ci-bot:nope")
    assert wrong.returncode != 0
    anonymous = skopeo("registry.example.com/tools/agent:3.1")
    assert anonymous.returncode != 0
    hub = skopeo("docker.io/library/nginx:1.27")
    assert hub.returncode == 0, hub.stderr


# -- life cycle -------------------------------------------------------------------------------


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "status").read_text()
        except OSError:
            continue
        if text in cmdline and "State:\tZ" not in state:
            found.append(int(entry.name))
    return found


def test_start_and_stop_leave_no_process_and_no_temp_dir(tmp_path: Path) -> None:
    threads_before = set(threading.enumerate())
    box = Sandbox(parse(WORLD), tmp_path)
    root = box.farm.root
    assert root is not None and root.is_dir()
    running = _processes_mentioning(str(root))
    assert len(running) == 12, "a watchdog shell and a docker-registry per registry"
    box.stop()
    assert _processes_mentioning(str(root)) == []
    assert all(not Path(f"/proc/{pid}").exists() for pid in running)
    assert not root.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["pki"]
    assert not [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]


def test_registries_die_with_their_owner_even_without_stop(tmp_path: Path) -> None:
    """A sandbox process killed outright (SIGKILL, a timeout) must not leave docker-registry behind."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from tests.test_sandbox_registry import Sandbox, WORLD\n"
        "from sandbox.world import parse\n"
        "box = Sandbox(parse(WORLD), Path(sys.argv[1]))\n"
        "print(box.farm.root, flush=True)\n"
        "time.sleep(60)\n"
    )
    owner = subprocess.Popen(
        [os.sys.executable, "-c", script, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert owner.stdout is not None
        root = owner.stdout.readline().strip()
        assert root and len(_processes_mentioning(root)) == 12
    finally:
        owner.kill()
        owner.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _processes_mentioning(root) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_mentioning(root) == []
