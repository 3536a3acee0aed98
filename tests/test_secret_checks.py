"""Pull-secret checks with plain values: kubelet's keyring matching rules and each finding code."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.checks.secrets import (
    _glob,
    credential_candidates,
    entry_matches,
    keyring_key,
    secret_findings,
    trial_key,
)
from shared.clients.registry import Step
from shared.cloud import AZURE_CHINA, AZURE_PUBLIC, AZURE_US_GOVERNMENT, Cloud
from shared.snapshot_builder import parse_docker_config, snapshot_from_objects

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
CLUSTER = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks"


@pytest.mark.parametrize(
    ("key", "image", "match"),
    [
        ("registry.example.com", "registry.example.com/tools/agent", True),
        ("https://registry.example.com", "registry.example.com/tools/agent", True),
        ("http://registry.example.com", "registry.example.com/tools/agent", True),
        ("https://registry.example.com/v2/", "registry.example.com/tools/agent", True),
        ("registry.example.com/tools", "registry.example.com/tools/agent", True),
        ("registry.example.com/other", "registry.example.com/tools/agent", False),
        ("example.com", "registry.example.com/tools/agent", False),
        ("contoso.azurecr.io", "contosoacr.azurecr.io/web", False),  # same number of labels, a prefix
        ("https://contoso.azurecr.io/", "contosoacr.azurecr.io/web", False),
        ("contosoacr.azurecr.io", "contoso.azurecr.io/web", False),
        ("contosoacr.azurecr.io", "contosoacr.azurecr.io.evil.example/web", False),
        ("*.azurecr.io", "contosoacr.azurecr.io/web", True),
        ("*.azurecr.io", "a.b.azurecr.io/web", False),
        ("contoso*.azurecr.io", "contosoacr.azurecr.io/web", True),
        ("registry.example.com:5000", "registry.example.com/x", False),
        ("registry.example.com:5000", "registry.example.com:5000/x", True),
        ("registry.example.com", "registry.example.com:5000/x", False),
        ("docker.io", "docker.io/library/nginx", True),
        ("index.docker.io", "docker.io/library/nginx", True),
        ("https://index.docker.io/v1/", "docker.io/library/nginx", True),
        ("registry-1.docker.io", "docker.io/library/nginx", True),  # the findings contract's alias
        ("index.docker.io", "quay.io/org/app", False),
        ("quay.io", "docker.io/library/nginx", False),
        ("[invalid", "registry.example.com/x", False),
        ("registry.example.*", "registry.example.com:5000/x", False),  # the port is not part of a label
        ("registry.example.*:5000", "registry.example.com:5000/x", True),
        ("index.docker.io/team/app", "docker.io/library/nginx", True),  # the host of a Docker Hub key
        ("index.docker.io", "nginx", True),  # a bare name is a Docker Hub image
        ("index.docker.io", "library/nginx", True),
        ("index.docker.io", "teamX/app", True),
        ("index.docker.io", "localhost:5000/app", False),
        ("index.docker.io", "/library/nginx", False),  # an empty registry is not Docker Hub
        ("registry-1.docker.io", "index.docker.io/library/nginx", True),
    ],
)
def test_entry_matches_like_kubelet(key: str, image: str, match: bool) -> None:
    assert entry_matches(key, image) is match


def test_keyring_key_strips_scheme_and_version_path() -> None:
    assert keyring_key("https://index.docker.io/v1/") == "index.docker.io"
    assert keyring_key("quay.io/coreos") == "quay.io/coreos"
    assert keyring_key("https://quay.io/v2/coreos") == "quay.io/coreos"


@pytest.mark.parametrize(
    ("key", "index"),
    [
        ("https://quay.io/coreos?x=1#frag", "quay.io/coreos"),
        ("quay.io/a#b?c", "quay.io/a"),
        ("quay.io/a?b?c", "quay.io/a"),
        ("quay.io/a#b#c", "quay.io/a"),
        ("https://user:pw@quay.io/coreos", "quay.io/coreos"),
        ("https://a@b@quay.io/coreos", "quay.io/coreos"),  # the host follows the last @
        ("quay.io/path://x", "quay.io/path://x"),
        ("https://quay.io/", "quay.io"),
    ],
)
def test_keyring_key_drops_query_fragment_and_userinfo(key: str, index: str) -> None:
    assert keyring_key(key) == index


@pytest.fixture(autouse=True)
def _compile_globs_afresh() -> None:
    _glob.cache_clear()  # each test sees the glob translation itself, not another test's cached result


@pytest.mark.parametrize(
    ("key", "image", "match"),
    [
        ("contoso?cr.azurecr.io", "contosoacr.azurecr.io/web", True),
        ("contoso?cr.azurecr.io", "contosocr.azurecr.io/web", False),
        ("contoso[a-c]cr.azurecr.io", "contosoacr.azurecr.io/web", True),
        ("contoso[a-c]cr.azurecr.io", "contosodcr.azurecr.io/web", False),
        ("contoso[^a]cr.azurecr.io", "contosoacr.azurecr.io/web", False),
        ("contoso[^a]cr.azurecr.io", "contosobcr.azurecr.io/web", True),
        ("contoso[a^]cr.azurecr.io", "contoso^cr.azurecr.io/web", True),
        ("contoso[^^]cr.azurecr.io", "contoso^cr.azurecr.io/web", False),
        ("contoso[\\]cr.azurecr.io", "contoso\\cr.azurecr.io/web", True),
        ("contoso[^\\]cr.azurecr.io", "contoso\\cr.azurecr.io/web", False),
        ("contoso[^\\]cr.azurecr.io", "contosoacr.azurecr.io/web", True),
        ("contoso\\acr.azurecr.io", "contosoacr.azurecr.io/web", True),  # an escaped literal
        ("contoso\\.cr.azurecr.io", "contosoxcr.azurecr.io/web", False),
        ("c*.azurecr.io", "contosoacr.azurecr.io/web", True),
        ("*acr.azurecr.io", "contosoacr.azurecr.io/web", True),
        ("*x.azurecr.io", "contosoacr.azurecr.io/web", False),
        ("contosoacr\\", "contosoacr/web", False),  # trailing backslash: malformed, never matches
        ("contoso[]acr.azurecr.io", "contosoacr.azurecr.io/web", False),  # empty class: malformed
        ("contoso[^]acr.azurecr.io", "contosoacr.azurecr.io/web", False),
        ("contoso[acr.azurecr.io", "contosoacr.azurecr.io/web", False),  # unclosed class: malformed
        ("contoso(acr.azurecr.io", "contoso(acr.azurecr.io/web", True),  # regex syntax is literal
        ("contoso+acr.azurecr.io", "contosoooacr.azurecr.io/web", False),
        ("a]b[c]d.io", "a]bcd.io/web", True),  # the class closes at the first ] after it
        ("x[a]y[b]z.io", "xaybz.io/web", True),
        ("x][a]y.io", "x]ay.io/web", True),  # a ] before the class is a literal
        ("x[]a]y.io", "x]y.io/web", False),  # [] is an empty class: malformed
        ("contoso[\\\\]cr.io", "contosoXcr.io/web", False),  # a backslash class holds nothing else
        ("contoso[^\\\\]cr.io", "contosoXcr.io/web", True),
        ("contoso[a^]cr.io", "contosoXcr.io/web", False),
    ],
)
def test_host_labels_match_as_go_globs(key: str, image: str, match: bool) -> None:
    assert entry_matches(key, image) is match
    assert entry_matches(key, image) is match  # the cached translation answers the same


def test_parse_docker_config_forms() -> None:
    auth = base64.b64encode(b"bot:pw").decode()
    assert parse_docker_config(
        "kubernetes.io/dockerconfigjson", json.dumps({"auths": {"r.io": {"auth": auth}}}).encode()
    ) == {"r.io": ("bot", "pw")}
    assert parse_docker_config(
        "kubernetes.io/dockercfg", json.dumps({"r.io": {"username": "u", "password": "p"}}).encode()
    ) == {"r.io": ("u", "p")}
    for bad, why in (
        (b"{", "not JSON"),
        (b'{"x": 1}', "no 'auths'"),
        (b'{"auths": {}}', "no entries"),
        (json.dumps({"auths": {"r.io": {"auth": "!!"}}}).encode(), "not base64"),
    ):
        with pytest.raises(ValueError, match=why) as err:
            parse_docker_config("kubernetes.io/dockerconfigjson", bad)
        assert "pw" not in str(err.value)


def secret(
    ns: str,
    name: str,
    auths: dict[str, Any] | None,
    *,
    stype: str = "kubernetes.io/dockerconfigjson",
    raw: bytes | None = None,
) -> dict[str, Any]:
    content = raw if raw is not None else json.dumps({"auths": auths}).encode()
    key = ".dockerconfigjson" if stype == "kubernetes.io/dockerconfigjson" else "data"
    return {
        "metadata": {"namespace": ns, "name": name},
        "type": stype,
        "data": {key: base64.b64encode(content).decode()},
    }


def deployment(
    ns: str, name: str, images: list[str], secrets: list[str] | None = None, sa: str | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]}
    if secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in secrets]
    if sa:
        spec["serviceAccountName"] = sa
    return {"metadata": {"namespace": ns, "name": name}, "spec": {"template": {"spec": spec}}}


def pods_of(ns: str, rs: str, n: int) -> list[dict[str, Any]]:
    return [
        {
            "metadata": {
                "namespace": ns,
                "name": f"{rs}-{i}",
                "ownerReferences": [{"kind": "ReplicaSet", "name": rs, "controller": True}],
            },
            "spec": {"containers": [{"name": "c0", "image": "x"}]},
            "status": {"phase": "Running"},
        }
        for i in range(n)
    ]


def snapshot(objects: dict[str, list[dict[str, Any]]], read_secrets: bool = True) -> Any:
    return snapshot_from_objects(CLUSTER, objects, read_secrets=read_secrets, collected_at=NOW)


def codes(findings: list[Any]) -> list[tuple[str, str | None]]:
    return sorted((f.code, f.workload) for f in findings)


def test_missing_secret_named_by_pod_or_service_account_one_line_per_workload() -> None:
    objects = {
        "deployments": [
            deployment("shop", "web", ["registry.example.com/web:1"], ["gone"]),
            deployment("shop", "api", ["registry.example.com/api:1"], sa="builder"),
        ],
        "replicasets": [
            {
                "metadata": {
                    "namespace": "shop",
                    "name": "web-1",
                    "ownerReferences": [{"kind": "Deployment", "name": "web", "controller": True}],
                }
            }
        ],
        "pods": pods_of("shop", "web-1", 5),
        "serviceaccounts": [
            {
                "metadata": {"namespace": "shop", "name": "builder"},
                "imagePullSecrets": [{"name": "also-gone"}],
            }
        ],
    }
    for read in (True, False):
        found = secret_findings(snapshot(objects, read_secrets=read))
        assert codes(found) == [
            ("PULL_SECRET_MISSING", "Deployment/api"),
            ("PULL_SECRET_MISSING", "Deployment/web"),
        ]
    api = next(f for f in found if f.workload == "Deployment/api")
    assert api.evidence["named_by"] == "serviceaccount/builder"
    assert "kubectl create secret docker-registry also-gone -n shop --docker-server=registry.example.com" in (
        api.remediation or ""
    )


def test_malformed_wrong_type_and_bad_content() -> None:
    objects = {
        "deployments": [
            deployment("a", "w1", ["r.io/x:1"], ["opaque"]),
            deployment("a", "w2", ["r.io/x:1"], ["broken"]),
            deployment("a", "w3", ["r.io/x:1"], ["noauths"]),
        ],
        "secrets": [
            secret("a", "opaque", None, stype="Opaque", raw=b"{}"),
            secret("a", "broken", None, raw=b"{not json"),
            secret("a", "noauths", None, raw=b'{"credsStore": "x"}'),
        ],
    }
    found = secret_findings(snapshot(objects))
    assert codes(found) == [
        ("PULL_SECRET_MALFORMED", "Deployment/w1"),
        ("PULL_SECRET_MALFORMED", "Deployment/w2"),
        ("PULL_SECRET_MALFORMED", "Deployment/w3"),
    ]
    # without read-secrets only the type can be judged
    found = secret_findings(snapshot(objects, read_secrets=False))
    assert codes(found) == [("PULL_SECRET_MALFORMED", "Deployment/w1")]


def test_no_entry_for_registry_but_kubelet_registries_need_none() -> None:
    objects = {
        "deployments": [
            deployment(
                "a", "w", ["registry.example.com/tools/agent:3.1", "contosoacr.azurecr.io/web:1"], ["other"]
            ),
            deployment("a", "ok", ["registry.example.com/tools/agent:3.1"], ["good"]),
        ],
        "secrets": [
            secret("a", "other", {"quay.io": {"username": "u", "password": "p"}}),
            secret("a", "good", {"https://registry.example.com": {"username": "u", "password": "p"}}),
        ],
    }
    found = secret_findings(snapshot(objects), kubelet_registries={"contosoacr.azurecr.io"})
    assert codes(found) == [("PULL_SECRET_NO_ENTRY_FOR_REGISTRY", "Deployment/w")]
    f = found[0]
    assert (f.registry, f.image) == ("registry.example.com", "registry.example.com/tools/agent:3.1")
    assert f.evidence["secrets"] == [{"name": "other", "entries": ["quay.io"]}]
    # without content, nothing can be said about entries
    assert (
        secret_findings(snapshot(objects, read_secrets=False), kubelet_registries={"contosoacr.azurecr.io"})
        == []
    )


def test_auth_required_only_without_any_pull_secret_and_not_for_kubelet_acr() -> None:
    objects = {
        "deployments": [
            deployment("a", "w", ["registry.example.com/tools/agent:3.1", "contosoacr.azurecr.io/web:1"])
        ]
    }
    anonymous = {("registry.example.com", "tools/agent"): False, ("contosoacr.azurecr.io", "web"): False}
    found = secret_findings(
        snapshot(objects), anonymous=anonymous, kubelet_registries={"contosoacr.azurecr.io"}
    )
    assert codes(found) == [("PULL_AUTH_REQUIRED", "Deployment/w")]
    assert found[0].registry == "registry.example.com"
    assert "kubectl patch deployment w -n a" in (found[0].remediation or "")
    assert secret_findings(snapshot(objects), anonymous={("registry.example.com", "tools/agent"): True}) == []


def test_dockerhub_anonymous_pulls_is_one_finding_per_cluster() -> None:
    objects = {
        "deployments": [
            deployment("a", "w1", ["nginx:1.27"]),
            deployment("b", "w2", ["docker.io/library/redis:7"]),
            deployment("b", "w3", ["index.docker.io/library/redis:7"], ["hub"]),
            deployment("c", "w4", ["busybox"], ["quayonly"]),
        ],
        "secrets": [
            secret("b", "hub", {"https://index.docker.io/v1/": {"username": "u", "password": "p"}}),
            secret("c", "quayonly", {"quay.io": {"username": "u", "password": "p"}}),
        ],
    }
    found = secret_findings(snapshot(objects))
    assert [f.code for f in found] == ["DOCKERHUB_ANONYMOUS_PULLS"]
    f = found[0]
    assert (f.registry, f.workload, f.namespace) == ("docker.io", None, None)
    assert f.evidence["workloads"] == ["a/Deployment/w1", "b/Deployment/w2", "c/Deployment/w4"]
    assert f.evidence["workload_count"] == 3


@pytest.mark.parametrize("cloud", [AZURE_PUBLIC, AZURE_US_GOVERNMENT, AZURE_CHINA], ids=lambda c: c.name)
def test_dockerhub_anonymous_pulls_fix_names_an_acr_of_the_cloud(cloud: Cloud) -> None:
    objects = {"deployments": [deployment("a", "w1", ["nginx:1.27"])]}
    [found] = secret_findings(snapshot(objects), cloud=cloud)
    fix = found.remediation or ""
    assert f"<your-acr>{cloud.acr_suffix}/<repository>" in fix
    others = {c.acr_suffix for c in (AZURE_PUBLIC, AZURE_US_GOVERNMENT, AZURE_CHINA)} - {cloud.acr_suffix}
    assert not any(suffix in fix for suffix in others), fix


@dataclass(frozen=True)
class Outcome:
    """A credential trial as the registry client reports it: accepted, or the step that failed."""

    ok: bool
    failed_step: Step | None = None
    detail: str | None = None


REFUSED_TOKEN = Step(
    "token", False, 5.0, 401, "UNAUTHORIZED", "UNAUTHORIZED bad credentials", authenticated=True
)


def test_rejected_credentials_are_tried_once_per_secret_and_repository() -> None:
    objects = {
        "deployments": [
            deployment("a", "w1", ["registry.example.com/tools/agent:3.1"], ["regcred"]),
            deployment("a", "w2", ["registry.example.com/tools/agent:3.2"], ["regcred"]),
            deployment("a", "w3", ["registry.example.com/tools/other:1"], ["regcred"]),
        ],
        "secrets": [
            secret("a", "regcred", {"registry.example.com": {"username": "ci-bot", "password": "old-pw"}})
        ],
    }
    snap = snapshot(objects)
    candidates = credential_candidates(snap)
    assert sorted(ref.repository for _, _, ref in candidates) == ["tools/agent", "tools/other"]
    trials = {
        trial_key(s, key, ref): Outcome(True)
        if ref.repository == "tools/other"
        else Outcome(False, REFUSED_TOKEN, "401 from the token endpoint")
        for s, key, ref in candidates
    }
    found = secret_findings(snap, credential_trials=trials)
    assert codes(found) == [
        ("PULL_SECRET_REJECTED", "Deployment/w1"),
        ("PULL_SECRET_REJECTED", "Deployment/w2"),
    ]
    text = json.dumps([f.to_dict() for f in found])
    assert "old-pw" not in text
    assert found[0].evidence["secret"] == "regcred"
    # off without trials (read-secrets off)
    assert secret_findings(snap) == []


def test_no_credentials_are_tried_on_registries_the_kubelet_identity_serves() -> None:
    objects = {
        "deployments": [deployment("a", "w1", ["contosoacr.azurecr.io/web:1"], ["regcred"])],
        "secrets": [secret("a", "regcred", {"contosoacr.azurecr.io": {"username": "u", "password": "p"}})],
    }
    assert credential_candidates(snapshot(objects), ["contosoacr.azurecr.io"]) == []
    assert len(credential_candidates(snapshot(objects))) == 1


def test_unlistable_secrets_are_incomplete_not_missing() -> None:
    from dataclasses import replace

    objects = {
        "deployments": [
            deployment("a", "w1", ["registry.example.com/x:1"], ["regcred"]),
            deployment("a", "w2", ["registry.example.com/tools/agent:3.1"]),
        ]
    }
    snap = replace(snapshot(objects), unreadable={"secrets": "403 Forbidden"}, secrets_read=False)
    found = secret_findings(snap, anonymous={("registry.example.com", "tools/agent"): False})
    assert sorted((f.code, f.workload) for f in found) == [
        ("CHECK_INCOMPLETE", None),
        ("PULL_AUTH_REQUIRED", "Deployment/w2"),
    ]
    incomplete = next(f for f in found if f.code == "CHECK_INCOMPLETE")
    assert incomplete.evidence["check"] == "secrets" and "403" in incomplete.evidence["reason"]
