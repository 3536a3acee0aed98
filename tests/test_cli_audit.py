"""``pullwatch audit`` as a user runs it: the installed CLI, DefaultAzureCredential, real SDK clients,
pointed at a running sandbox only through app settings (environment variables)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sandbox.runner import Sandbox
from sandbox.world import load

ROOT = Path(__file__).resolve().parent.parent
PULLWATCH = shutil.which("pullwatch", path=str(ROOT / ".venv" / "bin")) or "pullwatch"

pytestmark = pytest.mark.sandbox


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PULLWATCH, *args], capture_output=True, text=True, env=env, timeout=180, check=False
    )


def test_audit_finds_the_missing_role_and_exits_1_with_one_json_document() -> None:
    world = load(ROOT / "sandbox" / "worlds" / "role-missing.yaml")
    with Sandbox(world) as box:
        env = {**os.environ, **box.product_settings()}
        result = _run(["audit", "--json"], env)
        assert result.returncode == 1, result.stderr
        document = json.loads(result.stdout)  # one JSON document, nothing else on stdout
        codes = {f["code"] for f in document["findings"]}
        assert {"ROLE_MISSING", "PODS_IMAGE_PULL_FAILING"} <= codes
        role = next(f for f in document["findings"] if f["code"] == "ROLE_MISSING")
        assert role["remediation"].startswith("az role assignment create --assignee-object-id ")
        assert world.principal_id("kubelet:aks-prod") in role["remediation"]
        # The human view says the same, and --cluster narrows the audit to one cluster.
        human = _run(["audit", "--cluster", world.clusters["aks-prod"].resource_id], env)
        assert human.returncode == 1 and "ROLE_MISSING" in human.stdout
        assert "Traceback" not in human.stderr


def test_audit_of_a_healthy_world_exits_0() -> None:
    world = load(ROOT / "sandbox" / "worlds" / "healthy.yaml")
    with Sandbox(world) as box:
        result = _run(["audit", "--json"], {**os.environ, **box.product_settings()})
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(result.stdout)["findings"] == []


def test_audit_with_a_bad_setting_says_which_and_exits_2() -> None:
    env = {**os.environ, "PULLWATCH_HOSTS": "{not json", "PULLWATCH_DEBUG": ""}
    result = _run(["audit"], env)
    assert result.returncode == 2
    assert "PULLWATCH_HOSTS" in result.stderr and "Traceback" not in result.stderr


BOX_DRAWING = set("─│┃━┏┓┗┛┌┐└┘├┤┬┴┼╭╮╯╰═║")


def test_audit_piped_at_80_columns_prints_one_diagnosis_per_problem_in_plain_text() -> None:
    world = load(ROOT / "sandbox" / "worlds" / "demo.yaml")
    with Sandbox(world) as box:
        env = {**os.environ, **box.product_settings(), "COLUMNS": "80", "TERM": "xterm-256color"}
        env.pop("FORCE_COLOR", None)
        result = _run(["audit"], env)  # stdout is a pipe, as in CI logs
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "\x1b" not in out and not BOX_DRAWING & set(out)
    lines = out.splitlines()
    assert len(lines) < 150
    fix_lines = {i + 1 for i, line in enumerate(lines) if line == "    fix:"}
    prose = [line for i, line in enumerate(lines) if line.startswith(" ") and i not in fix_lines]
    assert all(len(line) <= 80 for line in prose), [line for line in prose if len(line) > 80]
    # aks-dev: the role is the diagnosis, its failing pods are listed under it, not beside it
    dev = out[out.index("aks-dev") : out.index("aks-prod")]
    assert dev.count("ROLE_MISSING") == 1 and "PODS_IMAGE_PULL_FAILING" not in dev
    assert "affects 1 workload: shop/Deployment/web" in dev
    assert "'\"'\"'" not in out and "condition=$(cat <<'EOF'" in out
