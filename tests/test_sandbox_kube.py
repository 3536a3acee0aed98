"""The sandbox Kubernetes API, driven by the official ``kubernetes`` client over real HTTPS."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import requests
import yaml
from kubernetes.client.exceptions import ApiException

from sandbox.entra import Entra
from sandbox.kube import AKS_SERVER_ID, KubeCluster, parse_label_selector
from sandbox.metrics import RequestLog
from sandbox.pki import Pki
from sandbox.world import World, parse

# One worker runs the module: its tests share one built sandbox (and see each other's changes in order).
pytestmark = pytest.mark.xdist_group("sandbox-kube")

WORLD = """
name: kube-api
registries:
  contosoacr:
    repositories:
      web: {"1.4.2": [linux/amd64, linux/arm64]}
clusters:
  aks-prod:
    nodePools:
      - {name: system, os: linux, arch: amd64, count: 2}
      - {name: armpool, os: linux, arch: arm64}
      - {name: win, os: windows, arch: amd64}
    namespaces:
      shop:
        serviceAccounts:
          default: {imagePullSecrets: [regcred]}
          builder: {}
        secrets:
          regcred:
            type: kubernetes.io/dockerconfigjson
            auths: {registry.example.com: {username: ci-bot, password: s3cret}}
          oldcfg:
            type: kubernetes.io/dockercfg
            auths: {registry.example.com: {username: ci-bot, password: s3cret}}
          opaque:
            type: Opaque
            data: {token: c2VjcmV0}
        workloads:
          - {kind: Deployment, name: web, replicas: 3, image: contosoacr.azurecr.io/web:1.4.2}
          - {kind: Deployment, name: agent, image: registry.example.com/tools/agent:3.1,
             imagePullSecrets: [othercred], nodePool: armpool}
          - {kind: StatefulSet, name: db, replicas: 2, image: docker.io/library/postgres:16,
             serviceAccount: builder}
          - {kind: DaemonSet, name: logs, image: docker.io/library/fluentd:1}
          - {kind: Job, name: migrate, image: contosoacr.azurecr.io/web:1.4.2}
          - {kind: CronJob, name: report, image: docker.io/library/nginx:1.27,
             initImages: [contosoacr.azurecr.io/web:1.4.2, docker.io/library/busybox:1.36]}
          - {kind: Pod, name: debug, image: docker.io/library/busybox:1.36}
      batch:
        workloads:
          - {kind: Deployment, name: many, replicas: 25, image: contosoacr.azurecr.io/web:1.4.2,
             nodePool: system}
  aks-aad:
    aad: true
  aks-private:
    private: true
"""


@pytest.fixture(scope="module")
def world() -> World:
    return parse(WORLD)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("kube-pki"))


@pytest.fixture(scope="module")
def log() -> RequestLog:
    return RequestLog()


@pytest.fixture(scope="module")
def cluster(world: World, pki: Pki, log: RequestLog) -> Iterator[KubeCluster]:
    c = KubeCluster(world, "aks-prod", pki, None, log).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def api(cluster: KubeCluster) -> kubernetes.client.ApiClient:
    return kubernetes.config.new_client_from_config_dict(yaml.safe_load(cluster.kubeconfig()))


@pytest.fixture(scope="module")
def core(api: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api)


def _session(cluster: KubeCluster, pki: Pki, token: str | None) -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE would override the session's CA
    s.verify = str(pki.ca_bundle)
    if token:
        s.headers["Authorization"] = f"Bearer {token}"
    return s


def _status(exc: ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


# --- kubeconfig and authentication ---------------------------------------------------------------


def test_kubeconfig_is_what_aks_returns(cluster: KubeCluster) -> None:
    doc = yaml.safe_load(cluster.kubeconfig())
    assert doc["kind"] == "Config" and doc["current-context"] == "aks-prod"
    server = doc["clusters"][0]["cluster"]
    assert server["server"] == cluster.url
    assert base64.b64decode(server["certificate-authority-data"]) == cluster.ca_pem
    user = doc["users"][0]
    assert user["name"] == "clusterUser_rg-aks_aks-prod"
    assert user["user"] == {"token": cluster.token}


def test_requests_without_a_valid_token_get_401_status(cluster: KubeCluster, pki: Pki) -> None:
    for token in (None, "wrong"):
        answer = _session(cluster, pki, token).get(f"{cluster.url}/api/v1/pods", timeout=5)
        assert answer.status_code == 401
        assert answer.json() == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }


def test_every_request_is_counted(cluster: KubeCluster, pki: Pki, log: RequestLog) -> None:
    before = log.snapshot()["kubernetes"].get("aks-prod", 0)
    _session(cluster, pki, cluster.token).get(f"{cluster.url}/version", timeout=5)
    _session(cluster, pki, None).get(f"{cluster.url}/api", timeout=5)
    assert log.snapshot()["kubernetes"]["aks-prod"] == before + 2


def test_aad_cluster_takes_entra_tokens_for_the_aks_audience(world: World, pki: Pki, log: RequestLog) -> None:
    entra = Entra(world, log, pki)
    c = KubeCluster(world, "aks-aad", pki, entra, log).start()
    try:
        user = yaml.safe_load(c.kubeconfig())["users"][0]["user"]
        assert "token" not in user
        assert user["exec"]["command"] == "kubelogin"
        args = user["exec"]["args"]
        assert args[0] == "get-token" and args[args.index("--server-id") + 1] == AKS_SERVER_ID
        good = entra.issue("app", AKS_SERVER_ID)
        arm = entra.issue("app", "https://management.azure.com")
        assert _session(c, pki, good).get(f"{c.url}/api/v1/namespaces", timeout=5).status_code == 200
        assert _session(c, pki, arm).get(f"{c.url}/api/v1/namespaces", timeout=5).status_code == 401
        assert _session(c, pki, c.token).get(f"{c.url}/api/v1/namespaces", timeout=5).status_code == 401
        assert _session(c, pki, good + "x").get(f"{c.url}/api/v1/namespaces", timeout=5).status_code == 401
    finally:
        c.stop()


def test_private_cluster_api_server_is_unreachable(world: World, pki: Pki, log: RequestLog) -> None:
    c = KubeCluster(world, "aks-private", pki, None, log).start()
    try:
        assert c.url != c.internal_url
        port = int(c.url.rsplit(":", 1)[1])
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        assert yaml.safe_load(c.kubeconfig())["clusters"][0]["cluster"]["server"] == c.url
    finally:
        c.stop()


# --- discovery and lists --------------------------------------------------------------------------


def test_discovery_and_version(api: kubernetes.client.ApiClient, cluster: KubeCluster, pki: Pki) -> None:
    assert kubernetes.client.VersionApi(api).get_code().git_version == "v1.32.7"
    groups = kubernetes.client.ApisApi(api).get_api_versions()
    assert {g.name for g in groups.groups} >= {"apps", "batch"}
    s = _session(cluster, pki, cluster.token)
    core_list = s.get(f"{cluster.url}/api/v1", timeout=5).json()
    assert {r["name"] for r in core_list["resources"]} >= {
        "pods",
        "pods/status",
        "events",
        "secrets",
        "nodes",
        "namespaces",
        "serviceaccounts",
    }
    apps = s.get(f"{cluster.url}/apis/apps/v1", timeout=5).json()
    assert {r["name"] for r in apps["resources"]} >= {
        "deployments",
        "replicasets",
        "statefulsets",
        "daemonsets",
    }


def test_list_is_shaped_like_the_api_server(cluster: KubeCluster, pki: Pki) -> None:
    doc = (
        _session(cluster, pki, cluster.token)
        .get(f"{cluster.url}/api/v1/namespaces/shop/pods", timeout=5)
        .json()
    )
    assert doc["kind"] == "PodList" and doc["apiVersion"] == "v1"
    assert int(doc["metadata"]["resourceVersion"]) > 0
    assert "continue" not in doc["metadata"]
    assert doc["items"] and all("kind" not in i and "apiVersion" not in i for i in doc["items"])
    one = (
        _session(cluster, pki, cluster.token)
        .get(f"{cluster.url}/api/v1/namespaces/shop/pods/debug", timeout=5)
        .json()
    )
    assert one["kind"] == "Pod" and one["apiVersion"] == "v1"


def test_paging_with_limit_and_continue(core: kubernetes.client.CoreV1Api, cluster: KubeCluster) -> None:
    everything = [p.metadata.name for p in core.list_pod_for_all_namespaces().items]
    names: list[str] = []
    token = None
    pages = 0
    while True:
        page = core.list_pod_for_all_namespaces(limit=7, _continue=token)
        pages += 1
        assert len(page.items) <= 7
        names += [p.metadata.name for p in page.items]
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == len(everything) - len(names)
    assert names == everything and len(set(names)) == len(names)
    assert pages == -(-len(everything) // 7)
    # namespaced paging stays inside the namespace
    first = core.list_namespaced_pod("batch", limit=10)
    rest = core.list_namespaced_pod("batch", limit=100, _continue=first.metadata._continue)
    assert len(first.items) + len(rest.items) == 25
    assert {p.metadata.namespace for p in first.items + rest.items} == {"batch"}


def test_expired_and_invalid_continue_tokens(core: kubernetes.client.CoreV1Api, cluster: KubeCluster) -> None:
    page = core.list_pod_for_all_namespaces(limit=5)
    cluster.expire_continue_tokens()
    with pytest.raises(ApiException) as expired:
        core.list_pod_for_all_namespaces(limit=5, _continue=page.metadata._continue)
    assert expired.value.status == 410 and _status(expired.value)["reason"] == "Expired"
    with pytest.raises(ApiException) as invalid:
        core.list_pod_for_all_namespaces(limit=5, _continue="not-a-token")
    assert invalid.value.status == 400 and _status(invalid.value)["reason"] == "BadRequest"


def test_label_selectors(core: kubernetes.client.CoreV1Api) -> None:
    def names(selector: str) -> set[str]:
        return {
            p.metadata.labels["app"] for p in core.list_namespaced_pod("shop", label_selector=selector).items
        }

    assert names("app=web") == {"web"}
    assert names("app==db") == {"db"}
    assert names("app in (web, db)") == {"web", "db"}
    assert names("app notin (web,db,logs)") == {"agent", "migrate", "report", "debug"}
    assert names("app!=web,statefulset.kubernetes.io/pod-name") == {"db"}
    assert names("!pod-template-hash,app in (web,db)") == {"db"}
    assert names("job-name") == {"migrate", "report"}
    with pytest.raises(ApiException) as bad:
        core.list_namespaced_pod("shop", label_selector="app in web")
    assert bad.value.status == 400


def test_parse_label_selector_handles_sets_with_commas() -> None:
    tests = parse_label_selector("a in (x, y),b!=z,!c")
    assert all(t({"a": "y", "b": "q"}) for t in tests)
    assert not all(t({"a": "y", "b": "q", "c": "1"}) for t in tests)


def test_field_selectors(core: kubernetes.client.CoreV1Api, cluster: KubeCluster) -> None:
    arm_node = next(n.name for n in cluster.nodes if n.pool.name == "armpool")
    on_arm = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={arm_node}").items
    assert on_arm and all(p.spec.node_name == arm_node for p in on_arm)
    assert {p.metadata.labels.get("app") for p in on_arm} >= {"agent", "logs"}
    assert [
        p.metadata.name for p in core.list_namespaced_pod("shop", field_selector="metadata.name=debug").items
    ] == ["debug"]
    pending = core.list_pod_for_all_namespaces(field_selector="status.phase=Pending,metadata.namespace=batch")
    assert len(pending.items) == 25
    assert core.list_pod_for_all_namespaces(field_selector="status.phase!=Pending").items == []
    secrets = core.list_namespaced_secret("shop", field_selector="type=kubernetes.io/dockerconfigjson").items
    assert [s.metadata.name for s in secrets] == ["regcred"]
    with pytest.raises(ApiException) as bad:
        core.list_namespaced_pod("shop", field_selector="spec.image=x")
    assert bad.value.status == 400 and "field label not supported" in _status(bad.value)["message"]


def test_event_field_selectors(core: kubernetes.client.CoreV1Api, cluster: KubeCluster) -> None:
    pod = cluster.store.get("pods", "shop", "debug")
    assert pod is not None
    cluster.record_event(
        pod,
        reason="Failed",
        message="Error: ErrImagePull",
        type_="Warning",
        container="spec.containers{debug}",
    )
    cluster.record_event(
        pod,
        reason="Failed",
        message="Error: ErrImagePull",
        type_="Warning",
        container="spec.containers{debug}",
    )
    events = core.list_namespaced_event(
        "shop", field_selector="involvedObject.kind=Pod,involvedObject.name=debug,reason=Failed,type=Warning"
    ).items
    assert len(events) == 1
    ev = events[0]
    assert (
        ev.count == 2
        and ev.source.component == "kubelet"
        and ev.involved_object.uid == pod["metadata"]["uid"]
    )
    assert ev.first_timestamp is not None and ev.last_timestamp is not None
    by_uid = core.list_event_for_all_namespaces(field_selector=f"involvedObject.uid={pod['metadata']['uid']}")
    assert [e.metadata.name for e in by_uid.items] == [ev.metadata.name]


def test_metadata_only_secret_list(cluster: KubeCluster, pki: Pki) -> None:
    accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
    doc = (
        _session(cluster, pki, cluster.token)
        .get(
            f"{cluster.url}/api/v1/namespaces/shop/secrets",
            headers={"Accept": accept},
            params={"limit": "2"},
            timeout=5,
        )
        .json()
    )
    assert doc["kind"] == "PartialObjectMetadataList" and doc["apiVersion"] == "meta.k8s.io/v1"
    assert doc["metadata"]["continue"]
    assert [i["metadata"]["name"] for i in doc["items"]] == ["oldcfg", "opaque"]
    assert all(set(i) == {"kind", "apiVersion", "metadata"} for i in doc["items"])
    assert "s3cret" not in json.dumps(doc) and "Y2ktYm90" not in json.dumps(doc)


def test_namespaced_and_cluster_wide_lists(
    core: kubernetes.client.CoreV1Api, api: kubernetes.client.ApiClient
) -> None:
    assert {n.metadata.name for n in core.list_namespace().items} >= {
        "shop",
        "batch",
        "default",
        "kube-system",
    }
    everywhere = core.list_pod_for_all_namespaces().items
    shop = core.list_namespaced_pod("shop").items
    assert {p.metadata.namespace for p in everywhere} == {"shop", "batch"}
    assert {p.metadata.namespace for p in shop} == {"shop"} and len(shop) < len(everywhere)
    apps = kubernetes.client.AppsV1Api(api)
    batch = kubernetes.client.BatchV1Api(api)
    assert {d.metadata.name for d in apps.list_deployment_for_all_namespaces().items} == {
        "web",
        "agent",
        "many",
    }
    assert [s.metadata.name for s in apps.list_namespaced_stateful_set("shop").items] == ["db"]
    assert [d.metadata.name for d in apps.list_namespaced_daemon_set("shop").items] == ["logs"]
    assert len(apps.list_namespaced_replica_set("shop").items) == 2
    assert [c.metadata.name for c in batch.list_namespaced_cron_job("shop").items] == ["report"]
    assert len(batch.list_namespaced_job("shop").items) == 2
    assert {s.metadata.name for s in core.list_namespaced_service_account("shop").items} == {
        "default",
        "builder",
    }


# --- get / create / delete ------------------------------------------------------------------------


def test_get_create_delete_pod(core: kubernetes.client.CoreV1Api, cluster: KubeCluster) -> None:
    created_events: list[str] = []
    deleted_events: list[str] = []
    cluster.on_pod_created(lambda c, p: created_events.append(p["metadata"]["name"]))
    cluster.on_pod_deleted(lambda c, p: deleted_events.append(p["metadata"]["name"]))
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe-1", "labels": {"pullwatch": "probe"}},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"kubernetes.azure.com/agentpool": "armpool"},
            "containers": [{"name": "probe", "image": "contosoacr.azurecr.io/web:1.4.2"}],
        },
    }
    pod = core.create_namespaced_pod("shop", body)
    assert pod.metadata.uid and pod.metadata.creation_timestamp and pod.status.phase == "Pending"
    assert pod.spec.node_name.startswith("aks-armpool-")
    assert pod.spec.image_pull_secrets[0].name == "regcred"  # from the default service account
    assert created_events == ["probe-1"]
    assert core.read_namespaced_pod("probe-1", "shop").metadata.uid == pod.metadata.uid
    with pytest.raises(ApiException) as dup:
        core.create_namespaced_pod("shop", body)
    assert dup.value.status == 409 and _status(dup.value)["reason"] == "AlreadyExists"
    assert _status(dup.value)["message"] == 'pods "probe-1" already exists'
    core.delete_namespaced_pod("probe-1", "shop")
    assert deleted_events == ["probe-1"]
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_pod("probe-1", "shop")
    assert gone.value.status == 404
    assert _status(gone.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "probe-1" not found',
        "reason": "NotFound",
        "details": {"name": "probe-1", "kind": "pods"},
        "code": 404,
    }


def test_create_errors(core: kubernetes.client.CoreV1Api) -> None:
    pod = {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "x", "image": "nginx"}]}}
    with pytest.raises(ApiException) as no_ns:
        core.create_namespaced_pod("nope", pod)
    assert no_ns.value.status == 404
    with pytest.raises(ApiException) as no_sa:
        core.create_namespaced_pod("shop", {**pod, "spec": {**pod["spec"], "serviceAccountName": "ghost"}})
    assert no_sa.value.status == 403 and _status(no_sa.value)["reason"] == "Forbidden"
    assert 'serviceaccount "ghost" not found' in _status(no_sa.value)["message"]


def test_watch_returns_changes_since_a_resource_version(core: kubernetes.client.CoreV1Api) -> None:
    listed = core.list_namespaced_pod("batch")
    w = kubernetes.watch.Watch()
    seen = [e["type"] for e in w.stream(core.list_namespaced_pod, "batch", timeout_seconds=1)]
    assert seen == ["ADDED"] * len(listed.items)
    core.patch_namespaced_pod(
        listed.items[0].metadata.name, "batch", {"metadata": {"labels": {"seen": "yes"}}}
    )
    changed = list(
        w.stream(
            core.list_namespaced_pod,
            "batch",
            timeout_seconds=1,
            resource_version=listed.metadata.resource_version,
        )
    )
    assert [(e["type"], e["object"].metadata.name) for e in changed] == [
        ("MODIFIED", listed.items[0].metadata.name)
    ]


def test_unschedulable_pod_gets_failed_scheduling(core: kubernetes.client.CoreV1Api) -> None:
    core.create_namespaced_pod(
        "batch",
        {
            "metadata": {"name": "nowhere"},
            "spec": {
                "nodeSelector": {"kubernetes.azure.com/agentpool": "gpu"},
                "containers": [{"name": "c", "image": "nginx"}],
            },
        },
    )
    pod = core.read_namespaced_pod("nowhere", "batch")
    assert pod.spec.node_name is None and pod.status.phase == "Pending"
    events = core.list_namespaced_event("batch", field_selector="involvedObject.name=nowhere").items
    assert [(e.reason, e.source.component) for e in events] == [("FailedScheduling", "default-scheduler")]
    assert events[0].message.startswith(
        "0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector."
    )
    core.delete_namespaced_pod("nowhere", "batch")


def test_namespace_create_and_delete(core: kubernetes.client.CoreV1Api) -> None:
    core.create_namespace({"metadata": {"name": "probe-ns"}})
    core.create_namespaced_service_account("probe-ns", {"metadata": {"name": "default"}})
    core.create_namespaced_secret(
        "probe-ns", {"metadata": {"name": "s"}, "type": "Opaque", "stringData": {"k": "v"}}
    )
    assert base64.b64decode(core.read_namespaced_secret("s", "probe-ns").data["k"]) == b"v"
    core.create_namespaced_pod(
        "probe-ns", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    )
    core.delete_namespace("probe-ns")
    with pytest.raises(ApiException):
        core.read_namespace("probe-ns")
    assert core.list_namespaced_pod("probe-ns").items == []


def test_pod_status_subresource(core: kubernetes.client.CoreV1Api) -> None:
    core.create_namespaced_pod(
        "batch", {"metadata": {"name": "st"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    )
    core.patch_namespaced_pod_status("st", "batch", {"status": {"phase": "Running"}})
    assert core.read_namespaced_pod_status("st", "batch").status.phase == "Running"
    core.delete_namespaced_pod("st", "batch")


# --- the world's objects --------------------------------------------------------------------------


def test_nodes_per_pool(core: kubernetes.client.CoreV1Api) -> None:
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert len(nodes) == 4
    arm = next(n for n in nodes.values() if n.metadata.labels["agentpool"] == "armpool")
    assert arm.metadata.name.startswith("aks-armpool-") and arm.metadata.name.endswith("-vmss000000")
    assert arm.metadata.labels["kubernetes.io/arch"] == "arm64"
    assert arm.metadata.labels["kubernetes.azure.com/agentpool"] == "armpool"
    assert arm.metadata.labels["node.kubernetes.io/instance-type"]
    assert arm.status.node_info.architecture == "arm64" and arm.status.node_info.operating_system == "linux"
    assert arm.status.node_info.container_runtime_version.startswith("containerd://1.7.")
    assert arm.status.node_info.kubelet_version == "v1.32.7"
    system = sorted(n for n in nodes if "-system-" in n)
    assert [n[-6:] for n in system] == ["000000", "000001"]
    assert any(n.metadata.labels["kubernetes.io/os"] == "windows" for n in nodes.values())


def test_owner_chains(core: kubernetes.client.CoreV1Api, api: kubernetes.client.ApiClient) -> None:
    apps = kubernetes.client.AppsV1Api(api)
    batch = kubernetes.client.BatchV1Api(api)
    web = [p for p in core.list_namespaced_pod("shop", label_selector="app=web").items]
    assert len(web) == 3
    rs_ref = web[0].metadata.owner_references[0]
    assert rs_ref.kind == "ReplicaSet" and rs_ref.controller
    rs = apps.read_namespaced_replica_set(rs_ref.name, "shop")
    assert rs.metadata.uid == rs_ref.uid
    assert rs.metadata.name == f"web-{rs.metadata.labels['pod-template-hash']}"
    assert all(
        p.metadata.name.startswith(rs.metadata.name + "-")
        and len(p.metadata.name) == len(rs.metadata.name) + 6
        for p in web
    )
    dep_ref = rs.metadata.owner_references[0]
    assert dep_ref.kind == "Deployment" and dep_ref.name == "web"
    assert apps.read_namespaced_deployment("web", "shop").metadata.uid == dep_ref.uid
    db = sorted(p.metadata.name for p in core.list_namespaced_pod("shop", label_selector="app=db").items)
    assert db == ["db-0", "db-1"]
    report = core.list_namespaced_pod("shop", label_selector="app=report").items[0]
    job_ref = report.metadata.owner_references[0]
    assert job_ref.kind == "Job" and job_ref.name.startswith("report-") and job_ref.name[7:].isdigit()
    job = batch.read_namespaced_job(job_ref.name, "shop")
    assert job.metadata.owner_references[0].kind == "CronJob"
    assert (
        batch.read_namespaced_cron_job("report", "shop").metadata.uid == job.metadata.owner_references[0].uid
    )
    migrate = core.list_namespaced_pod("shop", label_selector="job-name=migrate").items[0]
    assert (
        migrate.metadata.owner_references[0].name == "migrate" and migrate.spec.restart_policy == "OnFailure"
    )
    debug = core.read_namespaced_pod("debug", "shop")
    assert debug.metadata.owner_references is None


def test_service_account_pull_secrets_rule(core: kubernetes.client.CoreV1Api) -> None:
    def secrets_of(app: str) -> list[str] | None:
        pod = core.list_namespaced_pod("shop", label_selector=f"app={app}").items[0]
        return [s.name for s in pod.spec.image_pull_secrets] if pod.spec.image_pull_secrets else None

    assert secrets_of("web") == ["regcred"]  # added from the default service account
    assert secrets_of("agent") == ["othercred"]  # the pod names its own: the SA's are not added
    assert secrets_of("db") is None  # service account 'builder' has none
    sa = core.read_namespaced_service_account("default", "shop")
    assert [s.name for s in sa.image_pull_secrets] == ["regcred"]


def test_pod_spec_from_workload(core: kubernetes.client.CoreV1Api, cluster: KubeCluster) -> None:
    report = core.list_namespaced_pod("shop", label_selector="app=report").items[0]
    assert [c.image for c in report.spec.init_containers] == [
        "contosoacr.azurecr.io/web:1.4.2",
        "docker.io/library/busybox:1.36",
    ]
    assert [c.image for c in report.spec.containers] == ["docker.io/library/nginx:1.27"]
    agent = core.list_namespaced_pod("shop", label_selector="app=agent").items[0]
    assert agent.spec.node_selector == {"kubernetes.azure.com/agentpool": "armpool"}
    assert agent.spec.node_name.startswith("aks-armpool-")
    db = core.read_namespaced_pod("db-0", "shop")
    assert db.spec.service_account_name == "builder"
    # unpinned pods spread over Linux nodes of every pool, never Windows
    many = core.list_namespaced_pod("batch").items
    assert {p.spec.node_name for p in many} == {n.name for n in cluster.nodes if n.pool.name == "system"}
    web_nodes = {p.spec.node_name for p in core.list_namespaced_pod("shop", label_selector="app=web").items}
    assert not any("win" in n for n in web_nodes)


def test_daemonset_pod_per_linux_node(core: kubernetes.client.CoreV1Api, cluster: KubeCluster) -> None:
    logs = core.list_namespaced_pod("shop", label_selector="app=logs").items
    linux = sorted(n.name for n in cluster.nodes if n.pool.os == "linux")
    assert sorted(p.spec.node_name for p in logs) == linux
    assert all(p.metadata.owner_references[0].kind == "DaemonSet" for p in logs)


def test_pods_look_an_hour_old(cluster: KubeCluster) -> None:
    from datetime import datetime

    pod = cluster.store.get("pods", "shop", "debug")
    assert pod is not None
    created = datetime.strptime(pod["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    age = (datetime.utcnow() - created).total_seconds()
    assert 3500 < age < 4000


def test_secrets_hold_docker_configs(core: kubernetes.client.CoreV1Api) -> None:
    reg = core.read_namespaced_secret("regcred", "shop")
    assert reg.type == "kubernetes.io/dockerconfigjson"
    doc = json.loads(base64.b64decode(reg.data[".dockerconfigjson"]))
    entry = doc["auths"]["registry.example.com"]
    assert entry["username"] == "ci-bot" and base64.b64decode(entry["auth"]) == b"ci-bot:s3cret"
    old = core.read_namespaced_secret("oldcfg", "shop")
    assert "registry.example.com" in json.loads(base64.b64decode(old.data[".dockercfg"]))
    assert core.read_namespaced_secret("opaque", "shop").data == {"token": "c2VjcmV0"}


def test_workload_statuses_parse_in_the_typed_client(api: kubernetes.client.ApiClient) -> None:
    apps = kubernetes.client.AppsV1Api(api)
    dep = apps.read_namespaced_deployment("web", "shop")
    assert dep.status.replicas == 3 and not dep.status.ready_replicas
    assert apps.read_namespaced_stateful_set("db", "shop").status.replicas == 2
    assert apps.read_namespaced_daemon_set("logs", "shop").status.desired_number_scheduled == 3


def test_restart_workload_recreates_pods(world: World, pki: Pki, log: RequestLog) -> None:
    c = KubeCluster(world, "aks-prod", pki, None, log)
    created = c.store.get("deployments", "shop", "web")["metadata"]["creationTimestamp"]  # type: ignore[index]
    seen: list[str] = []
    c.on_pod_created(lambda cluster, pod: seen.append(pod["metadata"]["name"]))
    before = {p["metadata"]["name"] for p in c.pods() if p["metadata"]["labels"].get("app") == "web"}
    new = c.restart_workload("shop", "web")
    after = {p["metadata"]["name"] for p in c.pods() if p["metadata"]["labels"].get("app") == "web"}
    assert len(after) == 3 and not (after & before) and sorted(seen) == sorted(after)
    assert all(
        p["metadata"]["creationTimestamp"]
        > c.store.get("pods", "shop", "debug")["metadata"]["creationTimestamp"]
        for p in new
    )
    sets = [r for r in c.store.values("replicasets", "shop") if r["metadata"]["labels"]["app"] == "web"]
    assert [r["spec"]["replicas"] for r in sets] == [0, 3]  # the old ReplicaSet stays, scaled down
    dep = c.store.get("deployments", "shop", "web")
    assert dep is not None and dep["metadata"]["creationTimestamp"] == created
    assert dep["metadata"]["generation"] == 2
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert "kubectl.kubernetes.io/restartedAt" in dep["spec"]["template"]["metadata"]["annotations"]
    report = c.restart_workload("shop", "report")
    assert (
        len(report) == 1
        and len([j for j in c.store.values("jobs", "shop") if j["metadata"]["labels"]["app"] == "report"])
        == 1
    )


def test_nodes_follow_node_pool_changes(pki: Pki, log: RequestLog) -> None:
    from sandbox.world import apply_cluster_change

    w = parse(WORLD)
    c = KubeCluster(w, "aks-prod", pki, None, log)
    before = {n.name for n in c.nodes}
    apply_cluster_change(
        w,
        {"name": "aks-prod", "nodePools": [{"name": "system", "count": 3}, {"name": "gpu", "arch": "arm64"}]},
    )
    c.sync_nodes()
    names = {n["metadata"]["name"] for n in c.store.values("nodes")}
    assert names == {n.name for n in c.nodes} and len(names) == 4
    assert {n for n in before if "-system-" in n} < names and not any(
        "armpool" in n or "win" in n for n in names
    )
    gpu = next(n for n in c.store.values("nodes") if n["metadata"]["labels"]["agentpool"] == "gpu")
    assert gpu["status"]["nodeInfo"]["architecture"] == "arm64"
    pod = c._create_pod_from(
        "batch",
        "p",
        {},
        {
            "nodeSelector": {"kubernetes.azure.com/agentpool": "gpu"},
            "containers": [{"name": "c", "image": "nginx"}],
        },
        None,
        0.0,
    )
    assert pod["spec"]["nodeName"] == gpu["metadata"]["name"]


def test_stop_leaves_no_thread(world: World, pki: Pki, log: RequestLog) -> None:
    before = set(threading.enumerate())
    c = KubeCluster(world, "aks-private", pki, None, log).start()
    c.stop()
    assert set(threading.enumerate()) <= before


def test_twenty_thousand_pods_list_in_pages(pki: Pki, log: RequestLog, tmp_path: Path) -> None:
    workloads = "\n".join(
        f"          - {{kind: Deployment, name: app{i}, replicas: 100, "
        f"image: contosoacr.azurecr.io/web:1.4.2}}"
        for i in range(200)
    )
    big = parse(
        f"name: big\nclusters:\n  big:\n    nodePools: [{{name: system, count: 50}}]\n"
        f"    namespaces:\n      shop:\n        workloads:\n{workloads}\n"
    )
    c = KubeCluster(big, "big", pki, None, log).start()
    try:
        s = _session(c, pki, c.token)
        names: list[str] = []
        page_sizes: list[int] = []
        owners: dict[str, int] = {}
        token = ""
        while True:
            doc = s.get(
                f"{c.url}/api/v1/pods",
                params={"limit": "500", **({"continue": token} if token else {})},
                timeout=30,
            ).json()
            page_sizes.append(len(doc["items"]))
            for item in doc["items"]:
                names.append(item["metadata"]["name"])
                assert item["metadata"]["namespace"] == "shop"
                assert item["spec"]["containers"][0]["image"] == "contosoacr.azurecr.io/web:1.4.2"
                deployment = item["metadata"]["name"].split("-", 1)[0]
                owners[deployment] = owners.get(deployment, 0) + 1
            token = doc["metadata"].get("continue", "")
            if not token:
                break
        assert page_sizes == [500] * 40  # every page full, and no empty page after the last
        assert len(set(names)) == len(names) == 20000  # no pod twice, none missing
        assert owners == {f"app{i}": 100 for i in range(200)}
    finally:
        c.stop()
