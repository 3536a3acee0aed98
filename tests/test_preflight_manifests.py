"""``pullwatch preflight`` with plain values: reading manifests (every workload kind, multi-document
files, ``List`` objects, Helm ``# Source:`` comments, folders, stdin, malformed YAML), turning them
into the audit's snapshot, placing findings on manifest lines, and the output formats."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from shared.checks.scheduling import pools_for
from shared.checks.secrets import secret_findings
from shared.findings import Finding
from shared.model import NodePool
from shared.preflight.check import PreflightResult, manifest_snapshot, parse_platform
from shared.preflight.locate import PreflightFinding, locate
from shared.preflight.manifests import Location, ManifestError, parse_documents, read_manifests
from shared.preflight.output import fails, github_annotations, sarif_document, terminal_lines
from shared.workloads import SecretFacts, ServiceAccountFacts

ROOT = Path(__file__).resolve().parent.parent
SARIF_SCHEMA = json.loads((ROOT / "tests" / "data" / "sarif" / "sarif-schema-2.1.0.json").read_text())

EVERY_KIND = """\
apiVersion: v1
kind: Pod
metadata: {name: debug, namespace: ops}
spec:
  containers:
    - name: shell
      image: busybox:1.36
  ephemeralContainers:
    - name: dbg
      image: contosoacr.azurecr.io/tools/debug:1
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      initContainers:
        - name: migrate
          image: contosoacr.azurecr.io/shop/migrate:2
      containers:
        - name: web
          image: contosoacr.azurecr.io/shop/web:1.4.2
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  template:
    spec:
      containers: [{name: db, image: "postgres:16"}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  template:
    spec:
      containers:
        - {name: agent, image: "registry.example.com/tools/agent:3.1"}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: legacy}
spec:
  template:
    spec:
      containers:
        - name: legacy
          image: nginx:1.27
---
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  template:
    spec:
      containers:
        - name: once
          image: alpine:3.20
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
            - name: report
              image: contosoacr.azurecr.io/shop/report:0.9
"""


def test_every_workload_kind_is_read_with_the_line_of_each_image() -> None:
    objects = parse_documents(EVERY_KIND, "all.yaml")
    assert [o.ref for o in objects] == [
        "Pod/debug",
        "Deployment/web",
        "StatefulSet/db",
        "DaemonSet/agent",
        "ReplicaSet/legacy",
        "Job/once",
        "CronJob/report",
    ]
    lines = {(o.ref, c.name): (c.kind, c.image, c.location.line) for o in objects for c in o.containers}
    assert lines[("Pod/debug", "shell")] == ("container", "busybox:1.36", 7)
    assert lines[("Pod/debug", "dbg")] == ("ephemeral", "contosoacr.azurecr.io/tools/debug:1", 10)
    assert lines[("Deployment/web", "migrate")] == ("init", "contosoacr.azurecr.io/shop/migrate:2", 20)
    assert lines[("Deployment/web", "web")] == ("container", "contosoacr.azurecr.io/shop/web:1.4.2", 23)
    assert lines[("StatefulSet/db", "db")][2] == 31  # a flow mapping: the container's own line
    assert lines[("CronJob/report", "report")] == ("container", "contosoacr.azurecr.io/shop/report:0.9", 73)
    assert objects[0].namespace == "ops" and objects[1].namespace is None
    assert objects[1].location == Location("all.yaml", 12)


def test_objects_that_are_not_workloads_and_documents_that_are_not_objects_are_ignored() -> None:
    text = """\
# a values file in a scanned folder
replicaCount: 2
---
apiVersion: v1
kind: Service
metadata: {name: web}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web}
data: {a: b}
---
- just
- a list
---
apiVersion: v1
kind: Pod
metadata: {name: only}
spec:
  containers: [{name: a, image: "nginx:1.27"}]
"""
    assert [o.ref for o in parse_documents(text, "x.yaml")] == ["Pod/only"]


def test_list_objects_are_read_item_by_item_also_typed_lists_whose_items_name_no_kind() -> None:
    text = """\
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: c}
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: a}
    spec:
      template:
        spec:
          containers:
            - name: a
              image: nginx:1.27
---
apiVersion: apps/v1
kind: DeploymentList
items:
  - metadata: {name: b, namespace: shop}
    spec:
      template:
        spec:
          containers:
            - name: b
              image: nginx:1.26
"""
    objects = parse_documents(text, "list.yaml")
    assert [(o.ref, o.location.line, o.containers[0].location.line) for o in objects] == [
        ("Deployment/a", 7, 15),
        ("Deployment/b", 20, 26),
    ]


HELM = """\
---
# Source: web/templates/serviceaccount.yaml
apiVersion: v1
kind: ServiceAccount
metadata:
  name: web
imagePullSecrets:
  - name: regcred
---
# Source: web/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      serviceAccountName: web
      containers:
        - name: web
          image: "contosoacr.azurecr.io/shop/web:1.4.2"
"""


def test_helm_source_comments_name_the_template_and_lines_count_from_it() -> None:
    objects = parse_documents(HELM, "-")
    sa, deployment = objects
    assert sa.location == Location("web/templates/serviceaccount.yaml", 1)
    assert deployment.location == Location("web/templates/deployment.yaml", 1)
    assert deployment.containers[0].location == Location("web/templates/deployment.yaml", 11)
    assert deployment.lines["serviceAccountName"].line == 8
    prefixed = parse_documents(HELM, "-", source_prefix="charts/")
    assert prefixed[1].containers[0].location.path == "charts/web/templates/deployment.yaml"


def test_stdin_and_folders_are_read_recursively_yaml_yml_and_json_only(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.yaml").write_text(
        "kind: Pod\nmetadata: {name: one}\nspec:\n  containers: [{name: a, image: x:1}]\n"
    )
    (tmp_path / "a" / "two.yml").write_text(
        "kind: Pod\nmetadata: {name: two}\nspec:\n  containers: [{name: a, image: x:2}]\n"
    )
    pod = {
        "kind": "Pod",
        "metadata": {"name": "three"},
        "spec": {"containers": [{"name": "a", "image": "x:3"}]},
    }
    (tmp_path / "three.json").write_text(json.dumps(pod, indent=2))
    (tmp_path / "notes.txt").write_text("kind: Pod\nmetadata: {name: no}\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "hidden.yaml").write_text("kind: Pod\nmetadata: {name: hidden}\n")
    found = read_manifests([str(tmp_path), "-"], stdin=io.StringIO(HELM), cwd=tmp_path)
    assert [w.name for w in found.workloads] == ["one", "two", "three", "web"]
    assert found.files == ("a/one.yaml", "a/two.yml", "three.json", "-")
    three = found.workloads[2]
    assert three.containers[0].location == Location("three.json", 10)  # the "image" key of the JSON
    assert [sa.name for sa in found.service_accounts] == ["web"]


def test_malformed_yaml_names_file_and_line() -> None:
    text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n spec: [\n"
    with pytest.raises(ManifestError) as caught:
        parse_documents(text, "bad.yaml")
    assert str(caught.value).startswith("bad.yaml:5: YAML does not parse")


def test_a_missing_path_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"nope\.yaml: no such file or folder"):
        read_manifests([str(tmp_path / "nope.yaml")])


def _cli(
    args: list[str], *, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared", "preflight", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=60,
        check=False,
    )


def test_cli_malformed_yaml_exits_2_with_file_and_line_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Pod\nmetadata:\n  name: [unclosed\n")
    result = _cli([str(bad)])
    assert result.returncode == 2
    assert (
        f"{bad}:4: YAML does not parse" in result.stderr or f"{bad}:3: YAML does not parse" in result.stderr
    )
    assert "Traceback" not in result.stderr and result.stdout == ""
    from_stdin = _cli(["-"], stdin="kind: Pod\n  bad: indent\n")
    assert from_stdin.returncode == 2 and from_stdin.stderr.startswith("pullwatch: -:2: YAML does not parse")


def test_cli_bad_arguments_exit_2() -> None:
    assert _cli(["--platform", "linux/sparc", "-"], stdin="").returncode == 2
    bad_cluster = _cli(["--cluster", "aks-prod", "-"], stdin="")
    assert bad_cluster.returncode == 2 and "not a managedCluster resource ID" in bad_cluster.stderr


# --- manifests -> the audit's snapshot ---------------------------------------------------------------


def _set(text: str) -> object:
    return read_manifests(["-"], stdin=io.StringIO(text))


PULL = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: tools, namespace: shop}
spec:
  template:
    spec:
      imagePullSecrets:
        - name: tools-pull
      containers:
        - name: tools
          image: registry.example.com/tools/agent:3.1
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      nodeSelector: {kubernetes.io/arch: arm64}
      containers:
        - name: web
          image: contosoacr.azurecr.io/shop/web:1.4.2
"""


def _docker_config(host: str) -> str:
    auth = base64.b64encode(b"ci-bot:canary-pw-5521").decode()
    return json.dumps({"auths": {host: {"auth": auth}}})


def test_the_snapshot_places_objects_without_namespace_in_the_target_namespace() -> None:
    manifests = read_manifests(["-"], stdin=io.StringIO(PULL))
    snap = manifest_snapshot("c", manifests, "apps")
    assert {(w.namespace, w.ref) for w in snap.workloads} == {
        ("shop", "Deployment/tools"),
        ("apps", "Deployment/web"),
    }
    assert {(w.namespace, w.ref) for w in manifest_snapshot("c", manifests, None).workloads} == {
        ("shop", "Deployment/tools"),
        ("default", "Deployment/web"),
    }


def test_a_pull_secret_missing_from_the_cluster_is_found_unless_the_set_brings_it() -> None:
    manifests = read_manifests(["-"], stdin=io.StringIO(PULL))
    cluster_secrets = [SecretFacts("shop", "regcred", "kubernetes.io/dockerconfigjson")]
    found = secret_findings(manifest_snapshot("c", manifests, None, secrets=cluster_secrets))
    assert [(f.code, f.workload) for f in found] == [("PULL_SECRET_MISSING", "Deployment/tools")]

    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "tools-pull", "namespace": "shop"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": _docker_config("registry.example.com")},
    }
    with_secret = read_manifests(["-"], stdin=io.StringIO(PULL + "---\n" + json.dumps(secret)))
    assert secret_findings(manifest_snapshot("c", with_secret, None, secrets=cluster_secrets)) == []

    wrong_host = dict(secret, stringData={".dockerconfigjson": _docker_config("other.example.com")})
    wrong = read_manifests(["-"], stdin=io.StringIO(PULL + "---\n" + json.dumps(wrong_host)))
    codes = [(f.code, f.registry) for f in secret_findings(manifest_snapshot("c", wrong, None))]
    assert codes == [("PULL_SECRET_NO_ENTRY_FOR_REGISTRY", "registry.example.com")]


def test_service_accounts_of_the_set_replace_the_clusters() -> None:
    text = PULL.replace("      imagePullSecrets:\n        - name: tools-pull\n", "")
    sa = "---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default, namespace: shop}\nimagePullSecrets: [{name: sa-pull}]\n"
    cluster_sas = [ServiceAccountFacts("shop", "default", ("regcred",))]
    snap = manifest_snapshot(
        "c", read_manifests(["-"], stdin=io.StringIO(text + sa)), None, service_accounts=cluster_sas
    )
    tools = snap.workload("shop", "Deployment/tools")
    assert tools is not None and snap.effective_pull_secrets(tools) == (
        ("sa-pull",),
        "serviceaccount/default",
    )


def test_node_selectors_narrow_the_pools_as_on_the_cluster() -> None:
    snap = manifest_snapshot("c", read_manifests(["-"], stdin=io.StringIO(PULL)), None)
    pools = [NodePool("system", "linux", "amd64"), NodePool("armpool", "linux", "arm64")]
    web = snap.workload("default", "Deployment/web")
    tools = snap.workload("shop", "Deployment/tools")
    assert web is not None and tools is not None
    assert [p.pool for p in pools_for(web, [], pools)] == ["armpool"]
    assert [p.pool for p in pools_for(tools, [], pools)] == ["armpool", "system"]
    assert parse_platform("Linux/aarch64") == NodePool("linux/arm64", "linux", "arm64")


# --- findings -> manifest lines --------------------------------------------------------------------


def test_findings_point_at_the_image_line_the_pull_secret_line_or_every_image_of_the_registry() -> None:
    manifests = read_manifests(["-"], stdin=io.StringIO(PULL))
    findings = [
        Finding(
            code="IMAGE_NOT_FOUND",
            message="gone",
            registry="contosoacr.azurecr.io",
            image="contosoacr.azurecr.io/shop/web:1.4.2",
            namespace="default",
            workload="Deployment/web",
        ),
        Finding(code="PULL_SECRET_MISSING", message="missing", namespace="shop", workload="Deployment/tools"),
        Finding(code="ROLE_MISSING", message="no role", registry="contosoacr.azurecr.io"),
        Finding(code="ROLE_MISSING", message="not used here", registry="unused.azurecr.io"),
        Finding(code="CHECK_INCOMPLETE", message="cluster", evidence={"check": "secrets", "reason": "x"}),
    ]
    placed = {(p.finding.code, p.finding.registry): p for p in locate(findings, manifests, None)}
    assert placed[("IMAGE_NOT_FOUND", "contosoacr.azurecr.io")].locations == (Location("-", 22),)
    assert placed[("PULL_SECRET_MISSING", None)].locations == (Location("-", 7),)
    assert placed[("ROLE_MISSING", "contosoacr.azurecr.io")].objects == ("default/Deployment/web",)
    assert ("ROLE_MISSING", "unused.azurecr.io") not in placed
    assert placed[("CHECK_INCOMPLETE", None)].locations == (Location("-", 1), Location("-", 13))


# --- output -----------------------------------------------------------------------------------------


def _result() -> PreflightResult:
    findings = [
        PreflightFinding(
            Finding(
                code="IMAGE_NOT_FOUND",
                message="Deployment/web in shop uses x:2.1.0, but 2.1.0 does not exist.\nClosest: 2.0.0",
                registry="contosoacr.azurecr.io",
                image="contosoacr.azurecr.io/shop/web:2.1.0",
                namespace="shop",
                workload="Deployment/web",
                remediation="az acr repository show-tags -n contosoacr --repository shop/web",
            ),
            (Location("charts/web/templates/deploy, v2.yaml", 12), Location("b.yaml", 3)),
            ("shop/Deployment/web",),
        ),
        PreflightFinding(
            Finding(code="REGISTRY_NOT_IN_CLUSTER_REGION", message="far", registry="contosoacr.azurecr.io"),
            (Location("-", 4),),
        ),
    ]
    return PreflightResult(
        findings, "/subscriptions/s/resourceGroups/r/providers/x/managedClusters/aks", 1, 1
    )


def test_sarif_validates_against_the_sarif_2_1_0_schema_with_a_physical_location_per_result() -> None:
    document = sarif_document(_result(), version="0.1.0")
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(document)
    results = document["runs"][0]["results"]
    first = results[0]["locations"][0]["physicalLocation"]
    assert first["artifactLocation"]["uri"] == "charts/web/templates/deploy%2C%20v2.yaml"
    assert first["region"]["startLine"] == 12
    assert results[0]["relatedLocations"][0]["physicalLocation"]["region"]["startLine"] == 3
    assert [r["level"] for r in results] == ["error", "note"]
    rules = document["runs"][0]["tool"]["driver"]["rules"]
    assert rules[results[0]["ruleIndex"]]["id"] == "IMAGE_NOT_FOUND"


def test_a_schema_violation_is_caught_by_the_validator() -> None:
    document = sarif_document(_result())
    document["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(SARIF_SCHEMA).validate(document)


def test_github_annotations_escape_data_and_properties() -> None:
    lines = github_annotations(_result())
    assert lines[0].startswith(
        "::error file=charts/web/templates/deploy%2C v2.yaml,line=12,title=IMAGE_NOT_FOUND::"
    )
    assert "\n" not in lines[0] and "%0AClosest: 2.0.0%0AFix: az acr" in lines[0]
    assert lines[1].startswith("::notice file=-,line=4,")


def test_terminal_lines_say_file_line_severity_code_and_the_fix() -> None:
    lines = terminal_lines(_result())
    assert lines[0] == "charts/web/templates/deploy, v2.yaml:12: error IMAGE_NOT_FOUND shop/Deployment/web"
    assert "    $ az acr repository show-tags -n contosoacr --repository shop/web" in lines
    assert "    also at: b.yaml:3" in lines
    assert lines[-1].startswith("preflight: 1 error, 1 info; 1 workload(s), 1 image(s), checked against aks")


def test_fail_on_sets_the_threshold() -> None:
    result = _result()
    assert fails(result, "error")
    only_info = PreflightResult(result.findings[1:], None, 1, 1)
    assert not fails(only_info, "error") and not fails(only_info, "warning")
    warning = PreflightResult(
        [PreflightFinding(Finding(code="REGISTRY_RATE_LIMITED", message="429"), (Location("a", 1),))],
        None,
        1,
        1,
    )
    assert not fails(warning, "error") and fails(warning, "warning")


def test_documents_of_one_template_count_lines_as_in_the_template() -> None:
    """Helm prints a ``# Source:`` comment before every document, also the second of one template;
    a document with no comment of its own belongs to the template above it."""
    template = "kind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n    - name: a\n      image: x:1\n"
    rendered = (
        f"---\n# Source: c/templates/two.yaml\n{template}---\n# Source: c/templates/two.yaml\n"
        f"{template.replace('name: a}', 'name: b}')}"
        f"---\n# Source: c/templates/plain.yaml\n{template.replace('name: a}', 'name: c}')}---\n"
        f"{template.replace('name: a}', 'name: d}')}"
    )
    lines = [(o.name, str(o.containers[0].location)) for o in parse_documents(rendered, "-")]
    # in the template "two.yaml" as written: a at lines 1-6, "---" at 7, b at 8-13
    assert lines == [
        ("a", "c/templates/two.yaml:6"),
        ("b", "c/templates/two.yaml:13"),
        ("c", "c/templates/plain.yaml:6"),
        ("d", "c/templates/plain.yaml:13"),
    ]
