"""The simulated kubelet: reference parsing, keyring matching, and real pulls from the sandbox registries."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import kubernetes
import pytest
import yaml

from sandbox.entra import Entra
from sandbox.kube import KubeCluster
from sandbox.kubelet import (
    Kubelet,
    ReferenceError_,
    _match_platform,
    docker_config_auths,
    keyring_lookup,
    parse_image,
)
from sandbox.metrics import RequestLog
from sandbox.network import Network
from sandbox.pki import Pki
from sandbox.rbac import Rbac
from sandbox.registry import RegistryFarm
from sandbox.world import World, parse

# One worker runs the module: its tests share one built sandbox (and see each other's changes in order).
pytestmark = pytest.mark.xdist_group("sandbox-kubelet")

# --- units ----------------------------------------------------------------------------------------


def test_parse_image_normalizes_like_distribution() -> None:
    ref = parse_image("nginx")
    assert (ref.domain, ref.path, ref.tag, ref.with_tag, ref.normalized) == (
        "docker.io",
        "library/nginx",
        "latest",
        "nginx:latest",
        "docker.io/library/nginx:latest",
    )
    assert ref.api_host == "registry-1.docker.io"
    ref = parse_image("contosoacr.azurecr.io/team-a/web:1.4.2")
    assert (ref.domain, ref.path, ref.tag, ref.with_tag) == (
        "contosoacr.azurecr.io",
        "team-a/web",
        "1.4.2",
        "contosoacr.azurecr.io/team-a/web:1.4.2",
    )
    ref = parse_image("localhost:5000/x@sha256:" + "a" * 64)
    assert ref.domain == "localhost:5000" and ref.digest and ref.tag is None and ref.reference == ref.digest
    assert parse_image("index.docker.io/bitnami/redis:7").normalized == "docker.io/bitnami/redis:7"


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        ("contosoacr.azurecr.io/Web:1", "invalid reference format: repository name must be lowercase"),
        ("${REPOSITORY_PREFIX}/visits-service:latest", "invalid reference format"),
        ("https://harbor.k8s.mybank/release/name:1.1.0", "invalid reference format"),
        ("gcr.io/a/b:gcr.io/a/b:1", "invalid reference format"),
    ],
)
def test_invalid_references_give_kubelet_text(image: str, reason: str) -> None:
    with pytest.raises(ReferenceError_) as err:
        parse_image(image)
    assert str(err.value) == f"couldn't parse image reference {json.dumps(image)}: {reason}"


def _entry(key: str) -> tuple[str, dict[str, str]]:
    return ("secret:s", {"key": key, "username": "u", "password": "p"})


@pytest.mark.parametrize(
    ("key", "image", "matches"),
    [
        ("registry.example.com", "registry.example.com/tools/agent:3.1", True),
        ("https://registry.example.com/v1/", "registry.example.com/tools/agent:3.1", True),
        ("https://registry.example.com/v2/", "registry.example.com/tools/agent:3.1", True),
        ("registry.example.com/tools", "registry.example.com/tools/agent:3.1", True),
        ("registry.example.com/other", "registry.example.com/tools/agent:3.1", False),
        ("*.azurecr.io", "contosoacr.azurecr.io/web:1", True),
        ("registry.example.com:5000", "registry.example.com/tools/agent:3.1", False),
        ("https://index.docker.io/v1/", "nginx:1.27", True),
        ("docker.io", "docker.io/library/nginx:1.27", True),
        ("index.docker.io", "bitnami/redis:7", True),
        ("contosoacr.azurecr.io", "nginx:1.27", False),
    ],
)
def test_keyring_matching(key: str, image: str, matches: bool) -> None:
    assert bool(keyring_lookup([_entry(key)], parse_image(image))) is matches


def test_docker_config_auths_reads_both_secret_types() -> None:
    doc = {"auths": {"r.example.com": {"auth": base64.b64encode(b"bot:pw").decode()}}}
    cfg = {
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(doc).encode()).decode()},
    }
    assert docker_config_auths(cfg) == {"r.example.com": {"username": "bot", "password": "pw"}}
    old = {
        "type": "kubernetes.io/dockercfg",
        "data": {
            ".dockercfg": base64.b64encode(
                json.dumps({"r.example.com": {"username": "bot", "password": "pw"}}).encode()
            ).decode()
        },
    }
    assert docker_config_auths(old) == {"r.example.com": {"username": "bot", "password": "pw"}}
    assert docker_config_auths({"type": "Opaque", "data": {"x": "eQ=="}}) is None
    assert (
        docker_config_auths({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "!!"}})
        is None
    )


def test_platform_matching_like_containerd() -> None:
    index = [
        {"digest": "a", "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": "b", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
    ]
    assert _match_platform(index, "linux", "arm64")["digest"] == "b"  # type: ignore[index]
    assert _match_platform(index, "linux", "amd64")["digest"] == "a"  # type: ignore[index]
    assert _match_platform(index[:1], "linux", "arm64") is None
    arm32 = [{"digest": "c", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}}]
    assert _match_platform(arm32, "linux", "arm64")["digest"] == "c"  # type: ignore[index]
    assert _match_platform(index, "windows", "amd64") is None


# --- against the real registries --------------------------------------------------------------------

WORLD = """
name: kubelet-cases
registries:
  contosoacr:
    repositories:
      web: {"1.4.2": [linux/amd64, linux/arm64], "1.4.1": [linux/amd64]}
      multi: {"1.0": [linux/amd64, linux/ppc64le]}
  noaccessacr:
    repositories:
      app: {"1.0": [linux/amd64]}
  fwacr:
    networkRuleSet: {defaultAction: Deny, ipRules: [198.51.100.0/24]}
    repositories:
      app: {"1.0": [linux/amd64]}
  abacacr:
    repositories:
      app: {"1.0": [linux/amd64]}
  registry.example.com:
    users: {ci-bot: s3cret}
    repositories:
      tools/agent: {"3.1": [linux/amd64]}
  docker.io:
    anonymous: true
    anonymousRateLimit: 0
    repositories:
      library/nginx: {"1.27": [linux/amd64, linux/arm64]}
clusters:
  aks-prod:
    nodePools:
      - {name: system, os: linux, arch: amd64}
      - {name: armpool, os: linux, arch: arm64}
    namespaces:
      shop:
        secrets:
          regcred:
            type: kubernetes.io/dockerconfigjson
            auths: {registry.example.com: {username: ci-bot, password: s3cret}}
          badcred:
            type: kubernetes.io/dockerconfigjson
            auths: {"https://registry.example.com/v1/": {username: ci-bot, password: wrong}}
        workloads:
          - {kind: Deployment, name: good, replicas: 2, image: contosoacr.azurecr.io/web:1.4.2, nodePool: system}
          - {kind: Deployment, name: good-arm, image: contosoacr.azurecr.io/web:1.4.2, nodePool: armpool}
          - {kind: Deployment, name: missing-tag, image: contosoacr.azurecr.io/web:9.9, nodePool: system}
          - {kind: Deployment, name: platform, image: contosoacr.azurecr.io/multi:1.0, nodePool: armpool}
          - {kind: Deployment, name: single-arch, image: contosoacr.azurecr.io/web:1.4.1, nodePool: armpool}
          - {kind: Deployment, name: no-acrpull, image: noaccessacr.azurecr.io/app:1.0, nodePool: system}
          - {kind: Deployment, name: firewall, image: fwacr.azurecr.io/app:1.0, nodePool: system}
          - {kind: Deployment, name: abac, image: abacacr.azurecr.io/app:1.0, nodePool: system}
          - {kind: Deployment, name: dns, image: dns.example.com/x:1, nodePool: system}
          - {kind: Deployment, name: refused, image: refused.example.com/x:1, nodePool: system}
          - {kind: Deployment, name: timeout, image: timeout.example.com/x:1, nodePool: system}
          - {kind: Deployment, name: tls, image: tls.example.com/x:1, nodePool: system}
          - {kind: Deployment, name: busy, image: busy.example.com/x:1, nodePool: system}
          - {kind: Deployment, name: broken, image: broken.example.com/x:1, nodePool: system}
          - {kind: Deployment, name: hub, image: "nginx:1.27", nodePool: system}
          - {kind: Deployment, name: secret-good, image: registry.example.com/tools/agent:3.1,
             imagePullSecrets: [regcred], nodePool: system}
          - {kind: Deployment, name: secret-missing, image: registry.example.com/tools/agent:3.1,
             imagePullSecrets: [nosuch], nodePool: system}
          - {kind: Deployment, name: secret-wrong, image: registry.example.com/tools/agent:3.1,
             imagePullSecrets: [badcred], nodePool: system}
          - {kind: Deployment, name: invalid, image: "contosoacr.azurecr.io/Web:1", nodePool: system}
          - {kind: CronJob, name: report, image: contosoacr.azurecr.io/web:1.4.2,
             initImages: [contosoacr.azurecr.io/web:9.9], nodePool: system}
          - {kind: Job, name: once, image: contosoacr.azurecr.io/web:1.4.2, nodePool: system}
  aks-sp:
    identity: servicePrincipal
    servicePrincipalSecretExpired: true
    namespaces:
      apps:
        workloads:
          - {kind: Deployment, name: web, image: contosoacr.azurecr.io/web:1.4.2}
roleAssignments:
  - {principal: kubelet:aks-prod, role: AcrPull, scope: registry:contosoacr}
  - {principal: kubelet:aks-prod, role: AcrPull, scope: registry:fwacr}
  - {principal: kubelet:aks-prod, role: AcrPull, scope: registry:abacacr}
  - {principal: kubelet:aks-prod, role: "Container Registry Repository Reader", scope: registry:abacacr}
  - {principal: sp:aks-sp, role: AcrPull, scope: registry:contosoacr}
faults:
  - {host: dns.example.com, fault: dns}
  - {host: refused.example.com, fault: refused}
  - {host: timeout.example.com, fault: timeout}
  - {host: tls.example.com, fault: tls}
  - {host: busy.example.com, fault: rate_limit}
  - {host: broken.example.com, fault: server_error}
"""


@dataclass
class Sandbox:
    world: World
    clusters: dict[str, KubeCluster]
    kubelet: Kubelet
    farm: RegistryFarm
    log: RequestLog
    seconds: float
    pulls: int  # image pulls pull_all performed

    def pod(self, app: str, cluster: str = "aks-prod") -> dict[str, Any]:
        pods = [p for p in self.clusters[cluster].pods() if p["metadata"]["labels"].get("app") == app]
        assert pods, f"no pod for {app}"
        return pods[0]

    def waiting(self, app: str, cluster: str = "aks-prod") -> dict[str, str]:
        status = self.pod(app, cluster)["status"]
        states = [s["state"] for s in status.get("initContainerStatuses", []) + status["containerStatuses"]]
        return next(s["waiting"] for s in states if "waiting" in s)

    def events(self, app: str, cluster: str = "aks-prod") -> list[dict[str, Any]]:
        uid = self.pod(app, cluster)["metadata"]["uid"]
        return [e for e in self.clusters[cluster].store.values("events") if e["involvedObject"]["uid"] == uid]

    def pull_error(self, app: str, cluster: str = "aks-prod") -> str:
        messages = [
            e["message"] for e in self.events(app, cluster) if e["message"].startswith("Failed to pull image")
        ]
        assert len(messages) == 1
        return messages[0]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    workdir = tmp_path_factory.mktemp("kubelet")
    world = parse(WORLD)
    log = RequestLog()
    pki = Pki(workdir)
    rbac = Rbac(world)
    entra = Entra(world, log, pki).start()
    network = Network(world, pki).start()
    farm = RegistryFarm(world, pki, network, entra, rbac, log, workdir).start()
    clusters = {name: KubeCluster(world, name, pki, entra, log).start() for name in world.clusters}
    kubelet = Kubelet(world, clusters, network, entra, pki, farm, timeout=1.0, backoff_delay=0.2)
    try:
        started = time.monotonic()
        kubelet.pull_all()
        yield Sandbox(world, clusters, kubelet, farm, log, time.monotonic() - started, kubelet.pulls)
    finally:
        kubelet.stop()
        for c in clusters.values():
            c.stop()
        farm.stop()
        network.stop()
        entra.stop()


IMAGE_PREFIX = 'rpc error: code = Unknown desc = failed to pull and unpack image "{0}": failed to resolve reference "{0}": '


def _acr_anonymous_401(registry: str, repo: str, image: str) -> str:
    return (
        IMAGE_PREFIX.format(image)
        + "failed to authorize: failed to fetch anonymous token: unexpected status "
        f"from GET request to https://{registry}/oauth2/token?scope=repository%3A{repo}%3Apull&service={registry}"
        ": 401 Unauthorized"
    )


@pytest.mark.sandbox
def test_good_pull_runs(sandbox: Sandbox) -> None:
    for app in ("good", "good-arm", "secret-good"):
        pod = sandbox.pod(app)
        status = pod["status"]
        assert status["phase"] == "Running", app
        cs = status["containerStatuses"][0]
        assert cs["ready"] and "running" in cs["state"]
        assert cs["imageID"].startswith(cs["image"].rsplit(":", 1)[0] + "@sha256:")
        assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert sandbox.events("good") == []  # an hour old: its Pulled/Started events expired
    once = sandbox.pod("once")["status"]
    assert once["phase"] == "Succeeded"
    assert once["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


@pytest.mark.sandbox
def test_no_acrpull_is_insufficient_scope_then_anonymous_401(sandbox: Sandbox) -> None:
    image = "noaccessacr.azurecr.io/app:1.0"
    error = (
        "[" + IMAGE_PREFIX.format(image) + "pull access denied, repository does not exist or may require "
        "authorization: server message: insufficient_scope: authorization failed, "
        + _acr_anonymous_401("noaccessacr.azurecr.io", "app", image)
        + "]"
    )
    assert sandbox.pull_error("no-acrpull") == f'Failed to pull image "{image}": {error}'
    waiting = sandbox.waiting("no-acrpull")
    assert waiting == {
        "reason": "ImagePullBackOff",
        "message": f'Back-off pulling image "{image}": ErrImagePull: {error}',
    }
    assert sandbox.pod("no-acrpull")["status"]["phase"] == "Pending"


@pytest.mark.sandbox
def test_events_of_an_hour_of_back_off(sandbox: Sandbox) -> None:
    events = {(e["reason"], e["message"]): e for e in sandbox.events("no-acrpull")}
    image = '"noaccessacr.azurecr.io/app:1.0"'
    pulling = events[("Pulling", f"Pulling image {image}")]
    backoff = events[("BackOff", f"Back-off pulling image {image}")]
    err_pull = events[("Failed", "Error: ErrImagePull")]
    assert pulling["type"] == "Normal" and backoff["type"] == "Normal" and err_pull["type"] == "Warning"
    assert pulling["count"] > 10 and backoff["count"] > pulling["count"]
    assert pulling["source"]["component"] == "kubelet" and pulling["involvedObject"]["kind"] == "Pod"
    assert pulling["involvedObject"]["fieldPath"] == "spec.containers{no-acrpull}"
    assert pulling["firstTimestamp"] < pulling["lastTimestamp"]
    assert {e["message"] for e in sandbox.events("no-acrpull") if e["reason"] == "Failed"} >= {
        "Error: ErrImagePull",
        "Error: ImagePullBackOff",
    }


@pytest.mark.sandbox
def test_missing_tag_is_not_found(sandbox: Sandbox) -> None:
    image = "contosoacr.azurecr.io/web:9.9"
    assert sandbox.pull_error("missing-tag") == (
        f'Failed to pull image "{image}": [rpc error: code = NotFound desc = failed to pull and unpack image '
        f'"{image}": failed to resolve reference "{image}": {image}: not found, '
        + _acr_anonymous_401("contosoacr.azurecr.io", "web", image)
        + "]"
    )


@pytest.mark.sandbox
def test_platform_mismatch_on_arm64(sandbox: Sandbox) -> None:
    error = sandbox.pull_error("platform")
    assert (
        'rpc error: code = NotFound desc = failed to pull and unpack image "contosoacr.azurecr.io/multi:1.0": '
        "no match for platform in manifest: not found"
    ) in error
    # a single-platform amd64 image pulls on arm64 and then cannot run (exec format error)
    waiting = sandbox.waiting("single-arch")
    assert waiting["reason"] == "CrashLoopBackOff"
    status = sandbox.pod("single-arch")["status"]["containerStatuses"][0]
    assert status["lastState"]["terminated"]["exitCode"] == 255 and status["restartCount"] > 0


@pytest.mark.sandbox
@pytest.mark.parametrize(
    ("app", "host", "tail"),
    [
        ("dns", "dns.example.com", "dial tcp: lookup dns.example.com on 10.0.0.10:53: no such host"),
        ("refused", "refused.example.com", "connect: connection refused"),
        ("timeout", "timeout.example.com", "net/http: TLS handshake timeout"),
        (
            "tls",
            "tls.example.com",
            "tls: failed to verify certificate: x509: certificate signed by unknown authority",
        ),
    ],
)
def test_network_faults(sandbox: Sandbox, app: str, host: str, tail: str) -> None:
    image = f"{host}/x:1"
    error = sandbox.pull_error(app)
    assert error.startswith(
        f'Failed to pull image "{image}": '
        + IMAGE_PREFIX.format(image)
        + f'failed to do request: Head "https://{host}/v2/x/manifests/1": '
    )
    assert error.endswith(tail)
    if app == "refused":
        assert "dial tcp " in error and ":443: connect" in error


@pytest.mark.sandbox
@pytest.mark.parametrize(
    ("app", "status"), [("busy", "429 Too Many Requests"), ("broken", "503 Service Unavailable")]
)
def test_registry_answering_errors(sandbox: Sandbox, app: str, status: str) -> None:
    image = f"{app}.example.com/x:1"
    assert sandbox.pull_error(app) == (
        f'Failed to pull image "{image}": '
        + IMAGE_PREFIX.format(image)
        + f"unexpected status from HEAD request to https://{app}.example.com/v2/x/manifests/1: {status}"
    )


@pytest.mark.sandbox
def test_firewall_is_403_on_head(sandbox: Sandbox) -> None:
    image = "fwacr.azurecr.io/app:1.0"
    assert sandbox.pull_error("firewall") == (
        f'Failed to pull image "{image}": '
        + IMAGE_PREFIX.format(image)
        + "unexpected status from HEAD request to https://fwacr.azurecr.io/v2/app/manifests/1.0: 403 Forbidden"
    )


@pytest.mark.sandbox
def test_docker_hub_rate_limit(sandbox: Sandbox) -> None:
    error = sandbox.pull_error("hub")
    assert error.startswith(
        'Failed to pull image "nginx:1.27": rpc error: code = Unknown desc = failed to pull and '
        'unpack image "docker.io/library/nginx:1.27": failed to copy: httpReadSeeker: failed '
        "open: unexpected status code https://registry-1.docker.io/v2/library/nginx/manifests/sha256:"
    )
    assert error.endswith(
        ": 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate "
        "limit. You may increase the limit by authenticating and upgrading: "
        "https://www.docker.com/increase-rate-limit"
    )


@pytest.mark.sandbox
def test_pull_secrets(sandbox: Sandbox) -> None:
    image = "registry.example.com/tools/agent:3.1"
    token_url = (
        "https://registry.example.com/token?scope=repository%3Atools%2Fagent%3Apull"
        "&service=registry.example.com"
    )
    assert sandbox.pull_error("secret-missing").endswith(
        f"failed to authorize: failed to fetch anonymous token: unexpected status from GET request to {token_url}: "
        "401 Unauthorized"
    )
    warn = [e for e in sandbox.events("secret-missing") if e["reason"] == "FailedToRetrieveImagePullSecret"]
    assert warn[0]["message"] == (
        "Unable to retrieve some image pull secrets (nosuch); attempting to pull the image may not succeed."
    )
    assert sandbox.pull_error("secret-wrong") == (
        f'Failed to pull image "{image}": '
        + IMAGE_PREFIX.format(image)
        + f"failed to authorize: failed to fetch oauth token: unexpected status from GET request to {token_url}: "
        "401 Unauthorized"
    )
    assert "wrong" not in sandbox.pull_error("secret-wrong")


@pytest.mark.sandbox
def test_invalid_reference(sandbox: Sandbox) -> None:
    text = (
        'Failed to apply default image tag "contosoacr.azurecr.io/Web:1": couldn\'t parse image reference '
        '"contosoacr.azurecr.io/Web:1": invalid reference format: repository name must be lowercase'
    )
    assert sandbox.waiting("invalid") == {"reason": "InvalidImageName", "message": text}
    reasons = {(e["reason"], e["message"]) for e in sandbox.events("invalid")}
    assert ("InspectFailed", text) in reasons and ("Failed", "Error: InvalidImageName") in reasons


@pytest.mark.sandbox
def test_init_container_failure_blocks_the_pod(sandbox: Sandbox) -> None:
    status = sandbox.pod("report")["status"]
    assert status["phase"] == "Pending"
    assert status["initContainerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff"
    assert status["containerStatuses"][0]["state"]["waiting"] == {"reason": "PodInitializing"}
    initialized = next(c for c in status["conditions"] if c["type"] == "Initialized")
    assert initialized["status"] == "False" and initialized["reason"] == "ContainersNotInitialized"
    paths = {e["involvedObject"].get("fieldPath") for e in sandbox.events("report")}
    assert paths == {"spec.initContainers{init}"}


@pytest.mark.sandbox
def test_expired_service_principal_pulls_anonymously(sandbox: Sandbox) -> None:
    image = "contosoacr.azurecr.io/web:1.4.2"
    assert sandbox.pull_error("web", "aks-sp") == (
        f'Failed to pull image "{image}": ' + _acr_anonymous_401("contosoacr.azurecr.io", "web", image)
    )


@pytest.mark.sandbox
def test_pulls_are_cached_and_workload_statuses_follow(sandbox: Sandbox) -> None:
    assert sandbox.pulls <= 22  # 23 pods, shared per (pool, image, credentials)
    good = sandbox.clusters["aks-prod"].store.get("deployments", "shop", "good")
    assert good is not None and good["status"]["readyReplicas"] == 2
    bad = sandbox.clusters["aks-prod"].store.get("deployments", "shop", "dns")
    assert bad is not None and bad["status"]["unavailableReplicas"] == 1
    assert sandbox.log.snapshot()["registry"] == {}  # the kubelet's requests are not the product's


@pytest.mark.sandbox
def test_probe_pods_through_the_api(sandbox: Sandbox) -> None:
    cluster = sandbox.clusters["aks-prod"]
    core = kubernetes.client.CoreV1Api(
        kubernetes.config.new_client_from_config_dict(yaml.safe_load(cluster.kubeconfig()))
    )

    def probe(name: str, image: str, pool: str = "system") -> None:
        core.create_namespaced_pod(
            "shop",
            {
                "metadata": {"name": name},
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": {"kubernetes.azure.com/agentpool": pool},
                    "containers": [{"name": "probe", "image": image}],
                },
            },
        )

    probe("probe-ok", "contosoacr.azurecr.io/web:1.4.2", "armpool")
    probe("probe-bad", "contosoacr.azurecr.io/web:0.0")
    assert sandbox.kubelet.wait_idle(30)
    ok = core.read_namespaced_pod("probe-ok", "shop")
    assert ok.status.phase == "Succeeded"
    bad = core.read_namespaced_pod("probe-bad", "shop")
    assert bad.status.phase == "Pending"
    waiting = bad.status.container_statuses[0].state.waiting
    assert waiting.reason == "ImagePullBackOff" and "web:0.0: not found" in waiting.message
    reasons = [
        e.reason
        for e in core.list_namespaced_event("shop", field_selector="involvedObject.name=probe-bad").items
    ]
    assert {"Scheduled", "Pulling", "Failed", "BackOff"} <= set(reasons)
    ok_events = {
        e.reason: e.message
        for e in core.list_namespaced_event("shop", field_selector="involvedObject.name=probe-ok").items
    }
    assert ok_events["Pulled"].startswith('Successfully pulled image "contosoacr.azurecr.io/web:1.4.2" in ')
    assert ok_events["Scheduled"].endswith(ok.spec.node_name)
    core.delete_namespaced_pod("probe-ok", "shop")
    core.delete_namespaced_pod("probe-bad", "shop")
    # bound to a node that does not exist: nothing ever reports on it
    core.create_namespaced_pod(
        "shop",
        {
            "metadata": {"name": "probe-ghost"},
            "spec": {
                "nodeName": "aks-ghost-1-vmss000000",
                "containers": [{"name": "probe", "image": "nginx"}],
            },
        },
    )
    assert sandbox.kubelet.wait_idle(30)
    ghost = core.read_namespaced_pod("probe-ghost", "shop")
    assert ghost.status.phase == "Pending" and not ghost.status.container_statuses
    core.delete_namespaced_pod("probe-ghost", "shop")


@pytest.mark.sandbox
def test_abac_switch_breaks_cached_credentials_until_restart(sandbox: Sandbox) -> None:
    cluster = sandbox.clusters["aks-prod"]
    assert sandbox.pod("abac")["status"]["phase"] == "Running"
    sandbox.world.registry("abacacr").role_assignment_mode = "AbacRepositoryPermissions"
    try:
        # a new pod on the same kubelet: its cached refresh token is refused by the token service
        core = kubernetes.client.CoreV1Api(
            kubernetes.config.new_client_from_config_dict(yaml.safe_load(cluster.kubeconfig()))
        )
        core.create_namespaced_pod(
            "shop",
            {
                "metadata": {"name": "abac-probe"},
                "spec": {"containers": [{"name": "probe", "image": "abacacr.azurecr.io/app:1.0"}]},
            },
        )
        assert sandbox.kubelet.wait_idle(30)
        waiting = core.read_namespaced_pod("abac-probe", "shop").status.container_statuses[0].state.waiting
        assert (
            "failed to fetch oauth token: unexpected status from GET request to https://abacacr.azurecr.io/"
            "oauth2/token?scope=repository%3Aapp%3Apull&service=abacacr.azurecr.io: 401 Unauthorized"
            in waiting.message
        )
        core.delete_namespaced_pod("abac-probe", "shop")
        # restarting the workload (kubelet credentials dropped): the new mode's role lets it pull
        pods = sandbox.kubelet.restart_workload("aks-prod", "shop", "abac")
        assert [
            cluster.store.get("pods", "shop", p["metadata"]["name"])["status"]["phase"] for p in pods
        ] == ["Running"]
    finally:
        sandbox.world.registry("abacacr").role_assignment_mode = "LegacyRegistryPermissions"


@pytest.mark.sandbox
def test_back_off_retry_recovers_without_restart(sandbox: Sandbox) -> None:
    cluster = sandbox.clusters["aks-prod"]
    name = sandbox.pod("secret-missing")["metadata"]["name"]
    cluster.store.put(
        "secrets",
        {
            "metadata": {"name": "nosuch", "namespace": "shop", "uid": "s"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": cluster.store.get("secrets", "shop", "regcred")["data"],
        },
    )  # type: ignore[index]
    try:
        assert sandbox.kubelet.retry_failing("aks-prod") >= 1
        pod = cluster.store.get("pods", "shop", name)
        assert pod is not None and pod["metadata"]["name"] == name
        assert pod["status"]["phase"] == "Running"
        reasons = {e["reason"] for e in sandbox.events("secret-missing")}
        assert {"Pulled", "Started"} <= reasons
        # still broken ones keep failing, with one more attempt counted
        before = next(e["count"] for e in sandbox.events("dns") if e["message"].startswith("Failed to pull"))
        sandbox.kubelet.retry_failing("aks-prod")
        after = next(e["count"] for e in sandbox.events("dns") if e["message"].startswith("Failed to pull"))
        assert after == before + 1 and sandbox.waiting("dns")["reason"] == "ImagePullBackOff"
    finally:
        cluster.store.delete("secrets", "shop", "nosuch")


@pytest.mark.sandbox
def test_restart_after_a_fix_pulls_again(sandbox: Sandbox) -> None:
    sandbox.farm.push_image("contosoacr", "web", "9.9", ["linux/amd64"])
    try:
        pods = sandbox.kubelet.restart_workload("aks-prod", "shop", "missing-tag")
        cluster = sandbox.clusters["aks-prod"]
        fresh = cluster.store.get("pods", "shop", pods[0]["metadata"]["name"])
        assert fresh is not None and fresh["status"]["phase"] == "Running"
    finally:
        sandbox.farm.delete_image("contosoacr", "web", "9.9")


class NoNetwork:
    """A node network where no name resolves (so every pull fails with a DNS error)."""

    def resolve(self, host: str, viewpoint: str | None = None) -> tuple[str, int] | None:
        return None


class NoEntra:
    def issue(self, principal: str, audience: str, tenant: str | None = None) -> str:
        raise RuntimeError("no identity")


@pytest.mark.parametrize(("version", "suffix"), [("1.31.5", False), ("1.32.7", True), ("1.33.1", True)])
def test_back_off_message_by_kubernetes_version(
    tmp_path_factory: pytest.TempPathFactory, version: str, suffix: bool
) -> None:
    world = parse(
        f"name: t\nclusters:\n  c:\n    kubernetesVersion: '{version}'\n    namespaces:\n"
        "      a:\n        workloads:\n          - {kind: Pod, name: p, image: 'nowhere.example.com/x:1'}\n"
    )
    pki = Pki(tmp_path_factory.mktemp("kubelet-version"))
    cluster = KubeCluster(world, "c", pki, None, RequestLog())
    kubelet = Kubelet(world, {"c": cluster}, NoNetwork(), NoEntra(), pki)
    try:
        kubelet.pull_all()
    finally:
        kubelet.stop()
    waiting = cluster.store.get("pods", "a", "p")["status"]["containerStatuses"][0]["state"]["waiting"]  # type: ignore[index]
    assert waiting["reason"] == "ImagePullBackOff"
    expected = 'Back-off pulling image "nowhere.example.com/x:1"'
    if suffix:
        expected += (
            ": ErrImagePull: rpc error: code = Unknown desc = failed to pull and unpack image "
            '"nowhere.example.com/x:1": failed to resolve reference "nowhere.example.com/x:1": failed to do '
            'request: Head "https://nowhere.example.com/v2/x/manifests/1": dial tcp: lookup '
            "nowhere.example.com on 10.0.0.10:53: no such host"
        )
    assert waiting["message"] == expected


def test_pull_policy_never(tmp_path_factory: pytest.TempPathFactory) -> None:
    world = parse(
        "name: t\nclusters:\n  c:\n    namespaces:\n      a:\n        workloads:\n"
        "          - {kind: Pod, name: p, image: 'registry.example.com/x'}\n"
    )
    pki = Pki(tmp_path_factory.mktemp("kubelet-never"))
    cluster = KubeCluster(world, "c", pki, None, RequestLog())
    pod = cluster.store.get("pods", "a", "p")
    assert pod is not None
    pod["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    kubelet = Kubelet(world, {"c": cluster}, NoNetwork(), NoEntra(), pki)
    try:
        kubelet.pull_all()
    finally:
        kubelet.stop()
    assert kubelet.pulls == 0
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    text = 'Container image "registry.example.com/x:latest" is not present with pull policy of Never'
    assert waiting == {"reason": "ErrImageNeverPull", "message": text}
    assert {(e["reason"], e["message"]) for e in cluster.store.values("events")} == {
        ("ErrImageNeverPull", text),
        ("Failed", "Error: ErrImageNeverPull"),
    }


def test_stop_leaves_no_worker_threads(tmp_path_factory: pytest.TempPathFactory) -> None:
    world = parse("name: t\nclusters:\n  c: {}\n")
    pki = Pki(tmp_path_factory.mktemp("kubelet-stop"))
    log = RequestLog()
    cluster = KubeCluster(world, "c", pki, None, log)
    before = set(threading.enumerate())
    kubelet = Kubelet(world, {"c": cluster}, NoNetwork(), NoEntra(), pki)
    cluster.store.put(
        "pods",
        {
            "metadata": {
                "name": "x",
                "namespace": "default",
                "uid": "u",
                "creationTimestamp": "2026-01-01T00:00:00Z",
            },
            "spec": {},
            "status": {},
        },
    )
    kubelet.pull_all()
    kubelet.stop()
    assert set(threading.enumerate()) <= before
