"""What preflight reads of the target cluster, through the Kubernetes seam against the sandbox's
HTTPS API stand-in: the nodes, and only the target namespaces' service accounts and secrets, by
their namespaced paths (a namespace-scoped role is enough), in a fixed number of calls."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from sandbox.kube import KubeCluster
from sandbox.metrics import RequestLog
from sandbox.pki import Pki
from sandbox.world import parse
from shared.clients.kube import KubeClient
from shared.errors import InputError
from shared.preflight.check import read_namespace_facts

pytestmark = pytest.mark.sandbox

PASSWORD = "facts-canary-3390"
WORLD = {
    "name": "preflight-facts",
    "registries": {"registry.example.com": {"users": {"ci-bot": PASSWORD}, "repositories": {}}},
    "clusters": {
        "aks-facts": {
            "resourceGroup": "rg",
            "nodePools": [
                {"name": "system", "os": "linux", "arch": "amd64"},
                {"name": "armpool", "os": "linux", "arch": "arm64"},
            ],
            "namespaces": {
                "shop": {
                    "serviceAccounts": {"builder": {"imagePullSecrets": ["regcred"]}},
                    "secrets": {
                        "regcred": {
                            "type": "kubernetes.io/dockerconfigjson",
                            "auths": {"registry.example.com": {"username": "ci-bot", "password": PASSWORD}},
                        },
                        "settings": {"type": "Opaque", "data": {"key": "dmFsdWU="}},
                    },
                },
                "other": {
                    "serviceAccounts": {"robot": {}},
                    "secrets": {
                        "other-cred": {
                            "type": "kubernetes.io/dockerconfigjson",
                            "auths": {"registry.example.com": {"username": "ci-bot", "password": PASSWORD}},
                        }
                    },
                },
            },
        }
    },
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KubeCluster, RequestLog]]:
    log = RequestLog()
    world = parse(yaml.safe_dump(WORLD), source="facts.yaml")
    kube = KubeCluster(world, "aks-facts", Pki(tmp_path_factory.mktemp("pki")), None, log).start()
    try:
        yield kube, log
    finally:
        kube.stop()


def test_only_the_target_namespace_is_read_in_five_calls(cluster: tuple[KubeCluster, RequestLog]) -> None:
    kube, log = cluster
    before = log.snapshot()["kubernetes"].get("aks-facts", 0)
    with KubeClient.from_kubeconfig(kube.kubeconfig(), timeout=10) as client:
        nodes, sas, secrets, unreadable = read_namespace_facts(
            client, "aks-facts", ["shop"], read_secrets=False
        )
        calls = client.api_calls
    assert calls == log.snapshot()["kubernetes"]["aks-facts"] - before == 5  # nodes, SAs, 3 secret lists
    assert sorted({(n.pool, n.arch) for n in nodes}) == [("armpool", "arm64"), ("system", "amd64")]
    assert {(s.namespace, s.name) for s in sas} >= {("shop", "builder")}
    assert all(s.namespace == "shop" for s in [*sas, *secrets])
    by_name = {s.name: s for s in secrets}
    assert by_name["regcred"].is_pull_secret_type and by_name["regcred"].auths is None
    assert not by_name["settings"].is_pull_secret_type
    assert unreadable == {} and PASSWORD not in repr(secrets)


def test_secret_content_is_read_only_when_asked(cluster: tuple[KubeCluster, RequestLog]) -> None:
    kube, _ = cluster
    with KubeClient.from_kubeconfig(kube.kubeconfig(), timeout=10) as client:
        _, _, secrets, _ = read_namespace_facts(client, "aks-facts", ["shop", "other"], read_secrets=True)
    by_name = {(s.namespace, s.name): s for s in secrets}
    regcred = by_name[("shop", "regcred")]
    assert regcred.auths is not None and [a.key for a in regcred.auths] == ["registry.example.com"]
    assert ("other", "other-cred") in by_name
    assert PASSWORD not in repr(secrets)  # the facts keep whether a password is there, not the password


def test_nodes_are_not_namespaced(cluster: tuple[KubeCluster, RequestLog]) -> None:
    kube, _ = cluster
    with KubeClient.from_kubeconfig(kube.kubeconfig(), timeout=10) as client, pytest.raises(InputError):
        next(client.list_objects("nodes", namespace="shop"))
