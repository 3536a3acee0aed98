"""``pullwatch preflight`` end to end, as CI runs it: the installed CLI as a subprocess with
DefaultAzureCredential and the real SDK clients, pointed only through app settings at a running
sandbox estate (sandbox/worlds/preflight.yaml: an amd64 and an arm64 pool, a kubelet identity with
AcrPull on contosoacr and no role on vendoracr, the pull secret regcred in shop), and the manifest
sets in tests/data/preflight/."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from sandbox.runner import Sandbox
from sandbox.world import load

ROOT = Path(__file__).resolve().parent.parent
PULLWATCH = shutil.which("pullwatch", path=str(ROOT / ".venv" / "bin")) or "pullwatch"
BROKEN = "tests/data/preflight/broken"
FIXED = "tests/data/preflight/fixed"
SARIF_SCHEMA = json.loads((ROOT / "tests" / "data" / "sarif" / "sarif-schema-2.1.0.json").read_text())
CANARY = "preflight-canary-7731"  # the registry.example.com password in the world and in fixed/

pytestmark = pytest.mark.sandbox

#: The Done-when set: (code, file, line, object) of each finding the broken manifests must give.
EXPECTED = {
    ("IMAGE_NOT_FOUND", f"{BROKEN}/api.yaml", 24, "shop/Deployment/api"),
    ("IMAGE_PLATFORM_MISSING", f"{BROKEN}/batch.yaml", 17, "shop/CronJob/report"),
    ("ROLE_MISSING", f"{BROKEN}/agent-list.yaml", 21, "shop/DaemonSet/agent"),
    ("PULL_SECRET_MISSING", f"{BROKEN}/tools.yaml", 9, "shop/Deployment/tools"),
}


@pytest.fixture(scope="module")
def estate() -> Iterator[tuple[dict[str, str], str]]:
    world = load(ROOT / "sandbox" / "worlds" / "preflight.yaml")
    with Sandbox(world) as box:
        env = {**os.environ, **box.product_settings()}
        env.pop("GITHUB_ACTIONS", None)
        yield env, world.clusters["aks-prod"].resource_id


def preflight(
    args: list[str], env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PULLWATCH, "preflight", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=180,
        check=False,
    )


def located(document: dict[str, Any]) -> set[tuple[str, str, int, str]]:
    return {
        (f["code"], f["locations"][0]["path"], f["locations"][0]["line"], f["objects"][0])
        for f in document["findings"]
    }


def assert_no_secret(text: str) -> None:
    assert CANARY not in text
    assert base64.b64encode(f"ci-bot:{CANARY}".encode()).decode() not in text


def test_the_broken_set_gives_the_four_findings_at_their_lines_and_exits_1(
    estate: tuple[dict[str, str], str],
) -> None:
    env, cluster = estate
    result = preflight([BROKEN, "--cluster", cluster, "--json"], env)
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert located(document) == EXPECTED
    by_code = {f["code"]: f for f in document["findings"]}
    assert "Closest tags: 2.0.0" in by_code["IMAGE_NOT_FOUND"]["message"]
    assert by_code["IMAGE_PLATFORM_MISSING"]["node_pool"] == "armpool"
    assert by_code["ROLE_MISSING"]["registry"] == "vendoracr.azurecr.io"
    assert by_code["ROLE_MISSING"]["remediation"].startswith("az role assignment create ")
    assert by_code["PULL_SECRET_MISSING"]["evidence"]["secrets"] == ["tools-pull"]
    assert document["images"] == 5 and document["workloads"] == 4
    assert_no_secret(result.stdout + result.stderr)

    human = preflight([BROKEN, "--cluster", cluster], env)
    assert human.returncode == 1 and "Traceback" not in human.stderr
    assert f"{BROKEN}/api.yaml:24: error IMAGE_NOT_FOUND shop/Deployment/api" in human.stdout.splitlines()
    assert (
        f"{BROKEN}/tools.yaml:9: error PULL_SECRET_MISSING shop/Deployment/tools" in human.stdout.splitlines()
    )


def test_the_fixed_set_exits_0_and_its_own_pull_secret_counts(estate: tuple[dict[str, str], str]) -> None:
    env, cluster = estate
    result = preflight([FIXED, "--cluster", cluster, "--json"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["findings"] == []
    assert_no_secret(result.stdout + result.stderr)
    # The same set without its Secret: the secret is missing from the cluster.
    without = [
        str(p.relative_to(ROOT)) for p in sorted((ROOT / FIXED).glob("*.yaml")) if "secret" not in p.name
    ]
    missing = json.loads(preflight([*without, "--cluster", cluster, "--json"], env).stdout)
    assert [f["code"] for f in missing["findings"]] == ["PULL_SECRET_MISSING"]


def test_the_sarif_validates_and_puts_each_finding_on_its_line(estate: tuple[dict[str, str], str]) -> None:
    env, cluster = estate
    result = preflight([BROKEN, "--cluster", cluster, "--sarif"], env)
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(document)
    got = set()
    for r in document["runs"][0]["results"]:
        physical = r["locations"][0]["physicalLocation"]
        obj = r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]
        got.add((r["ruleId"], physical["artifactLocation"]["uri"], physical["region"]["startLine"], obj))
        assert r["level"] == "error"
    assert got == EXPECTED


def test_helm_output_on_stdin_is_reported_at_its_source_paths_with_github_annotations(
    estate: tuple[dict[str, str], str],
) -> None:
    env, cluster = estate
    rendered = "".join(
        f"---\n# Source: shop/templates/{p.name}\n{p.read_text()}"
        for p in sorted((ROOT / BROKEN).glob("*.yaml"))
    )
    result = preflight(
        ["-", "--cluster", cluster, "--source-prefix", "charts/", "--namespace", "shop"],
        {**env, "GITHUB_ACTIONS": "true"},
        stdin=rendered,
    )
    assert result.returncode == 1, result.stderr
    annotations = sorted(line for line in result.stdout.splitlines() if line.startswith("::"))
    assert [a.split("::")[1] for a in annotations] == [
        "error file=charts/shop/templates/agent-list.yaml,line=21,title=ROLE_MISSING",
        "error file=charts/shop/templates/api.yaml,line=24,title=IMAGE_NOT_FOUND",
        "error file=charts/shop/templates/batch.yaml,line=17,title=IMAGE_PLATFORM_MISSING",
        "error file=charts/shop/templates/tools.yaml,line=9,title=PULL_SECRET_MISSING",
    ]


def test_without_a_cluster_references_existence_and_the_given_platforms_are_checked(
    estate: tuple[dict[str, str], str],
) -> None:
    env, _ = estate
    result = preflight([BROKEN, "--platform", "linux/arm64", "--platform", "linux/amd64", "--json"], env)
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert document["cluster"] is None
    codes = {
        (f["code"], f["objects"][0] if f["objects"] else None, f["node_pool"]) for f in document["findings"]
    }
    assert ("IMAGE_NOT_FOUND", "shop/Deployment/api", None) in codes
    # the CronJob asks for arm64 nodes: only that platform is needed, and the image lacks it
    assert ("IMAGE_PLATFORM_MISSING", "shop/CronJob/report", "linux/arm64") in codes
    assert not any(code.startswith("ROLE_") or code.startswith("PULL_SECRET") for code, _, _ in codes)
    fixed = preflight([FIXED, "--platform", "linux/arm64", "--json"], env)
    fixed_codes = {f["code"] for f in json.loads(fixed.stdout)["findings"]}
    assert "IMAGE_NOT_FOUND" not in fixed_codes and "IMAGE_PLATFORM_MISSING" not in fixed_codes


MORE = "tests/data/preflight/more"


def test_pull_secrets_of_the_set_abac_conditions_and_docker_hub_are_checked_as_in_the_audit(
    estate: tuple[dict[str, str], str],
) -> None:
    env, cluster = estate
    result = preflight([MORE, "--cluster", cluster, "--json"], env)
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert located(document) == {
        # the set's own secrets: wrong type, no entry for the image's host, a password the registry refuses
        ("PULL_SECRET_MALFORMED", f"{MORE}/secrets.yaml", 55, "shop/Deployment/opaque"),
        ("PULL_SECRET_NO_ENTRY_FOR_REGISTRY", f"{MORE}/secrets.yaml", 32, "shop/Deployment/elsewhere"),
        ("PULL_SECRET_REJECTED", f"{MORE}/secrets.yaml", 9, "shop/Deployment/stale"),
        # the kubelet's ABAC role on teamacr covers team-a/ only: the billing container's line
        ("ROLE_CONDITION_EXCLUDES_REPOSITORY", f"{MORE}/ledger.yaml", 13, "shop/StatefulSet/ledger"),
        ("DOCKERHUB_ANONYMOUS_PULLS", f"{MORE}/dockerhub.yaml", 11, "shop/Deployment/proxy"),
    }
    assert "an-old-password-0412" not in result.stdout + result.stderr


def test_fail_on_warning_fails_on_anonymous_docker_hub_pulls(estate: tuple[dict[str, str], str]) -> None:
    env, cluster = estate
    args = [f"{MORE}/dockerhub.yaml", "--cluster", cluster]
    assert preflight(args, env).returncode == 0
    assert preflight([*args, "--fail-on", "warning"], env).returncode == 1


def test_a_cluster_that_does_not_exist_is_bad_input(estate: tuple[dict[str, str], str]) -> None:
    env, cluster = estate
    gone = cluster.rsplit("/", 1)[0] + "/aks-nowhere"
    result = preflight([BROKEN, "--cluster", gone], env)
    assert result.returncode == 2
    assert "no such cluster" in result.stderr and "Traceback" not in result.stderr and result.stdout == ""
