"""The Kubernetes seam against the sandbox's real HTTPS API stand-in (sandbox/kube/).

The official ``kubernetes`` client talks TLS to a local API server built from a world file; the
stand-in's request log is the ground truth for how many calls an audit costs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sandbox.entra import Entra
from sandbox.kube import KubeCluster
from sandbox.metrics import RequestLog
from sandbox.pki import Pki
from sandbox.world import World, parse
from shared.clients.kube import AKS_SCOPE, KubeAccessDenied, KubeClient, KubeUnreachable, collect
from shared.errors import InputError

pytestmark = pytest.mark.sandbox

NAMESPACES = 10
DEPLOYMENTS_PER_NAMESPACE = 20
REPLICAS = 10


def big_world(
    name: str = "big", *, aad: bool = False, private: bool = False, namespaces: int = NAMESPACES
) -> World:
    """200 Deployments x 10 replicas (2,000 pods) + a CronJob, a StatefulSet with an init image,
    a bare Pod, pull secrets and a service account naming one."""
    spaces: dict[str, object] = {}
    for n in range(namespaces):
        spaces[f"team-{n}"] = {
            "workloads": [
                {
                    "kind": "Deployment",
                    "name": f"web-{d}",
                    "replicas": REPLICAS,
                    "image": "contosoacr.azurecr.io/web:1.4.2",
                }
                for d in range(DEPLOYMENTS_PER_NAMESPACE)
            ]
        }
    spaces["shop"] = {
        "serviceAccounts": {"builder": {"imagePullSecrets": ["regcred"]}},
        "secrets": {
            "regcred": {
                "type": "kubernetes.io/dockerconfigjson",
                "auths": {"registry.example.com": {"username": "ci-bot", "password": "s3cret-pw"}},
            },
            "settings": {"type": "Opaque", "data": {"key": base64.b64encode(b"value").decode()}},
        },
        "workloads": [
            {
                "kind": "CronJob",
                "name": "report",
                "image": "docker.io/library/nginx:1.27",
                "initImages": ["contosoacr.azurecr.io/web:1.4.1"],
            },
            {
                "kind": "StatefulSet",
                "name": "db",
                "image": "registry.example.com/tools/agent:3.1",
                "initImages": ["docker.io/library/busybox:1.36"],
                "serviceAccount": "builder",
            },
            {"kind": "Pod", "name": "debug", "image": "docker.io/library/busybox:1.36"},
            {
                "kind": "Job",
                "name": "migrate",
                "image": "contosoacr.azurecr.io/web:1.4.2",
                "imagePullSecrets": ["regcred", "gone"],
            },
        ],
    }
    doc = {
        "name": name,
        "registries": {
            "contosoacr": {
                "resourceGroup": "rg",
                "location": "westeurope",
                "repositories": {"web": {"1.4.2": ["linux/amd64"], "1.4.1": ["linux/amd64"]}},
            },
            "registry.example.com": {
                "users": {"ci-bot": "s3cret-pw"},
                "repositories": {"tools/agent": {"3.1": ["linux/amd64"]}},
            },
            "docker.io": {
                "anonymous": True,
                "repositories": {
                    "library/nginx": {"1.27": ["linux/amd64"]},
                    "library/busybox": {"1.36": ["linux/amd64"]},
                },
            },
        },
        "clusters": {
            "aks-big": {
                "resourceGroup": "rg-prod",
                "aad": aad,
                "private": private,
                "nodePools": [
                    {"name": "system", "os": "linux", "arch": "amd64", "count": 3},
                    {"name": "armpool", "os": "linux", "arch": "arm64"},
                ],
                "namespaces": spaces,
            }
        },
    }
    return parse(yaml.safe_dump(doc), source=f"{name}.yaml")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("kube-pki"))


@pytest.fixture(scope="module")
def cluster(pki: Pki) -> Iterator[tuple[KubeCluster, RequestLog]]:
    log = RequestLog()
    kube = KubeCluster(big_world(), "aks-big", pki, None, log).start()
    try:
        yield kube, log
    finally:
        kube.stop()


def test_collect_is_a_bounded_number_of_list_calls(cluster: tuple[KubeCluster, RequestLog]) -> None:
    kube, log = cluster
    client = KubeClient.from_kubeconfig(kube.kubeconfig().encode(), timeout=10)
    before = log.snapshot()["kubernetes"].get("aks-big", 0)
    snap = collect(
        client,
        "/subscriptions/x/resourceGroups/rg-prod/providers/Microsoft.ContainerService/"
        "managedClusters/aks-big",
        read_secrets=False,
        page_size=500,
    )
    served = log.snapshot()["kubernetes"]["aks-big"] - before
    client.close()

    total_pods = NAMESPACES * DEPLOYMENTS_PER_NAMESPACE * REPLICAS
    assert len([p for p in snap.pods if p.namespace.startswith("team-")]) == total_pods
    # what the product counted is what the API server served
    assert snap.api_calls == served
    # 9 kinds + 5 event reasons + 3 secret lists, plus the extra pages of pods (2,0xx / 500)
    # and replicasets (200 / 500): never one call per pod, workload or namespace
    assert served <= 9 + 5 + 3 + 5, served


def test_owner_resolution_through_controllers(cluster: tuple[KubeCluster, RequestLog]) -> None:
    kube, _ = cluster
    with KubeClient.from_kubeconfig(kube.kubeconfig(), timeout=10) as client:
        snap = collect(client, "aks-big", read_secrets=False, page_size=137)
    owners = {(p.namespace, p.owner) for p in snap.pods}
    assert ("team-3", "Deployment/web-7") in owners
    assert ("shop", "CronJob/report") in owners  # Job owned by a CronJob belongs to the CronJob
    assert ("shop", "StatefulSet/db") in owners
    assert ("shop", "Pod/debug") in owners
    assert ("shop", "Job/migrate") in owners
    assert not any(o.startswith(("ReplicaSet/", "Job/report")) for _, o in owners)
    pods_of_web = snap.pods_of("team-3", "Deployment/web-7")
    assert len(pods_of_web) == REPLICAS
    # workloads come from the controllers' templates, init containers included
    report = snap.workload("shop", "CronJob/report")
    assert report is not None
    assert {(c.kind, c.image) for c in report.containers} == {
        ("container", "docker.io/library/nginx:1.27"),
        ("init", "contosoacr.azurecr.io/web:1.4.1"),
    }
    db = snap.workload("shop", "StatefulSet/db")
    assert db is not None and db.service_account == "builder"
    migrate = snap.workload("shop", "Job/migrate")
    assert migrate is not None and migrate.image_pull_secrets == ("regcred", "gone")
    assert snap.service_account("shop", "builder") is not None
    assert snap.service_account("shop", "builder").image_pull_secrets == ("regcred",)  # type: ignore[union-attr]
    assert {n.pool for n in snap.nodes} == {"system", "armpool"}
    assert {(n.os, n.arch) for n in snap.nodes if n.pool == "armpool"} == {("linux", "arm64")}


def test_secrets_metadata_only_without_read_secrets(cluster: tuple[KubeCluster, RequestLog]) -> None:
    kube, _ = cluster
    with KubeClient.from_kubeconfig(kube.kubeconfig(), timeout=10) as client:
        snap = collect(client, "aks-big", read_secrets=False)
    regcred = snap.secret("shop", "regcred")
    settings = snap.secret("shop", "settings")
    assert regcred is not None and regcred.type == "kubernetes.io/dockerconfigjson" and regcred.auths is None
    assert settings is not None and not settings.is_pull_secret_type
    assert snap.secret("shop", "gone") is None
    assert "s3cret-pw" not in repr(snap)


def test_secrets_content_with_read_secrets(cluster: tuple[KubeCluster, RequestLog]) -> None:
    kube, _ = cluster
    with KubeClient.from_kubeconfig(kube.kubeconfig(), timeout=10) as client:
        snap = collect(client, "aks-big", read_secrets=True)
    regcred = snap.secret("shop", "regcred")
    assert regcred is not None and regcred.auths is not None
    assert [(a.key, a.username, a.has_password) for a in regcred.auths] == [
        ("registry.example.com", "ci-bot", True)
    ]
    assert "s3cret-pw" not in repr(snap)
    assert "s3cret-pw" not in json.dumps([repr(s) for s in snap.secrets])


def test_bad_token_is_access_denied(cluster: tuple[KubeCluster, RequestLog]) -> None:
    kube, _ = cluster
    doc = yaml.safe_load(kube.kubeconfig())
    doc["users"][0]["user"]["token"] = "not-the-token"
    client = KubeClient.from_kubeconfig(yaml.safe_dump(doc).encode(), timeout=5)
    with pytest.raises(KubeAccessDenied) as err:
        collect(client, "aks-big", read_secrets=False)
    assert err.value.status == 401
    assert "not-the-token" not in str(err.value)


def test_private_cluster_is_unreachable(pki: Pki) -> None:
    log = RequestLog()
    kube = KubeCluster(big_world("private", private=True), "aks-big", pki, None, log, build=False).start()
    try:
        client = KubeClient.from_kubeconfig(kube.kubeconfig().encode(), timeout=2)
        with pytest.raises(KubeUnreachable) as err:
            collect(client, "aks-big", read_secrets=False)
        assert "unreachable" in str(err.value)
    finally:
        kube.stop()


def test_entra_cluster_uses_a_bearer_token_not_kubelogin(pki: Pki) -> None:
    log = RequestLog()
    world = big_world("aad", aad=True, namespaces=1)
    entra = Entra(world, log, pki)
    kube = KubeCluster(world, "aks-big", pki, entra, log).start()
    asked: list[str] = []

    def token() -> str:
        asked.append(AKS_SCOPE)
        return entra.issue("app", AKS_SCOPE)

    try:
        config = kube.kubeconfig().encode()
        assert b"kubelogin" in config
        with pytest.raises(InputError, match="exec"):
            KubeClient.from_kubeconfig(config, timeout=5)
        with KubeClient.from_kubeconfig(config, bearer_token=token, timeout=5) as client:
            snap = collect(client, "aks-big", read_secrets=False)
        assert snap.pods and asked
        # a token for another audience is refused
        with (
            KubeClient.from_kubeconfig(
                config, bearer_token=lambda: entra.issue("app", "https://management.azure.com"), timeout=5
            ) as client,
            pytest.raises(KubeAccessDenied),
        ):
            collect(client, "aks-big", read_secrets=False)
    finally:
        kube.stop()


def test_from_context_reads_a_local_kubeconfig(
    cluster: tuple[KubeCluster, RequestLog], tmp_path: Path
) -> None:
    kube, _ = cluster
    path = tmp_path / "config"
    path.write_text(kube.kubeconfig())
    with KubeClient.from_context(path, "aks-big", timeout=5) as client:
        nodes = list(client.list_objects("nodes"))
    assert len(nodes) == 4
    with pytest.raises(InputError):
        KubeClient.from_context(path, "no-such-context", timeout=5)


def test_bad_kubeconfig_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="not a kubeconfig"):
        KubeClient.from_kubeconfig(b"just text", timeout=5)
    with pytest.raises(InputError, match="https"):
        KubeClient.from_kubeconfig(
            yaml.safe_dump(
                {
                    "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
                    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                    "users": [{"name": "u", "user": {"token": "t"}}],
                    "current-context": "c",
                }
            ).encode(),
            timeout=5,
        )


def test_the_pull_credential_reader_reads_one_entry_at_check_time(
    cluster: tuple[KubeCluster, RequestLog],
) -> None:
    from shared.pull_credentials import SecretReader

    kube, _ = cluster
    with KubeClient.from_kubeconfig(kube.kubeconfig(), timeout=5) as client:
        reader = SecretReader(client)
        assert reader.read("shop", "regcred", "registry.example.com") == ("ci-bot", "s3cret-pw")
        assert reader.read("shop", "regcred", "quay.io") is None
        assert reader.read("shop", "settings", "registry.example.com") is None
        assert reader.read("shop", "gone", "registry.example.com") is None


def test_untrusted_server_certificate_is_unreachable(
    cluster: tuple[KubeCluster, RequestLog], tmp_path: Path
) -> None:
    kube, _ = cluster
    other = Pki(tmp_path)  # another CA: the server's certificate does not chain to it
    doc = yaml.safe_load(kube.kubeconfig())
    doc["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(other.ca_pem).decode()
    with (
        KubeClient.from_kubeconfig(yaml.safe_dump(doc), timeout=5) as client,
        pytest.raises(KubeUnreachable) as err,
    ):
        list(client.list_objects("nodes"))
    assert "TLS" in str(err.value)


def test_expired_continue_token_lists_again_without_duplicates(
    cluster: tuple[KubeCluster, RequestLog],
) -> None:
    kube, _ = cluster
    with KubeClient.from_kubeconfig(kube.kubeconfig(), timeout=10) as client:
        pages = client.list_objects("pods", page_size=300)
        first = [next(pages) for _ in range(300)]  # the first page
        kube.expire_continue_tokens()  # the next page's token is now 410 Expired
        rest = list(pages)
        calls = client.api_calls
    pages_needed = -(-len(kube.pods()) // 300)
    assert calls == 1 + 1 + pages_needed  # first page, the 410, then the whole list again
    names = [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in first + rest]
    assert len(names) == len(set(names)) == len(kube.pods())
