"""Bad settings and bad input get one clear line and exit 2, never a traceback or a run without
timeouts. The installed CLI (and the sandbox's command) are run as a user runs them; Azure endpoints
point at a closed local port so nothing leaves the machine."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import ConfigError, Settings

ROOT = Path(__file__).resolve().parent.parent
PULLWATCH = shutil.which("pullwatch", path=str(ROOT / ".venv" / "bin")) or "pullwatch"
CLUSTER = (
    "/subscriptions/22222222-2222-2222-2222-222222222222/resourceGroups/rg-prod"
    "/providers/Microsoft.ContainerService/managedClusters/aks-prod"
)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _offline_env() -> dict[str, str]:
    dead = _closed_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULLWATCH_", "AZURE_"))}
    env.update(
        PULLWATCH_ARM_ENDPOINT=f"https://127.0.0.1:{dead}",
        PULLWATCH_GRAPH_ENDPOINT=f"https://127.0.0.1:{dead}",
        IDENTITY_ENDPOINT=f"http://127.0.0.1:{dead}/msi/token",
        IDENTITY_HEADER="test",
        PULLWATCH_HTTP_TIMEOUT_SECONDS="2",
        PULLWATCH_RETRIES="0",
    )
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PULLWATCH, *args], capture_output=True, text=True, env=env, timeout=120, check=False, cwd=cwd
    )


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "0"])
def test_http_timeout_must_be_a_finite_positive_number(value: str) -> None:
    # inf is no timeout at all; nan and 0 make every request fail with an unexplained error.
    with pytest.raises(ConfigError, match="PULLWATCH_HTTP_TIMEOUT_SECONDS"):
        Settings.from_env({"PULLWATCH_HTTP_TIMEOUT_SECONDS": value})


@pytest.mark.parametrize("name", ["PULLWATCH_DEBOUNCE_SECONDS", "PULLWATCH_REMINDER_HOURS"])
def test_number_settings_reject_nan_and_infinity(name: str) -> None:
    for value in ("nan", "inf"):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: value})


def test_audit_of_a_cluster_argument_that_is_not_a_resource_id_exits_2_without_traceback() -> None:
    result = _run(["audit", "--cluster", "aks-prod", "--json"], _offline_env())
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "aks-prod" in result.stderr and "resource ID" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_audit_that_could_audit_no_cluster_prints_its_findings_and_exits_2() -> None:
    # A valid ID is not refused, but Azure is unreachable: nothing could be audited. That is "could
    # not run" (exit 2, one line saying why), not "ran and found no error" (exit 0) — a script must
    # not read an audit that never happened as all clear. The findings are still printed.
    result = _run(["audit", "--cluster", CLUSTER, "--json"], _offline_env())
    assert result.returncode == 2, (result.returncode, result.stderr)
    document = json.loads(result.stdout)  # still exactly one JSON document
    assert [f["code"] for f in document["findings"]] == ["CHECK_INCOMPLETE"]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("pullwatch: audit: no cluster could be audited"), result.stderr
    assert "token" in last


def test_render_of_a_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    findings = tmp_path / "findings.json"
    findings.write_bytes(b"\xff\xfe{\x00")
    result = _run(["render", "--format", "slack", str(findings)], _offline_env())
    assert result.returncode == 2
    assert "findings.json" in result.stderr and "UTF-8" in result.stderr, result.stderr
    assert "internal error" not in result.stderr


def test_sandbox_run_of_a_world_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    world = tmp_path / "world.yaml"
    world.write_bytes(b"\xffname: x\n")
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "run", str(world)],
        capture_output=True,
        text=True,
        env=_offline_env(),
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "world.yaml" in result.stderr and "UTF-8" in result.stderr, result.stderr
    assert "internal error" not in result.stderr


def test_audit_without_azure_access_says_why_in_one_finding_and_no_traceback() -> None:
    # No credential can get a token (the managed identity endpoint is a closed port): a common
    # first run. The cluster is reported incomplete, naming the token problem, with no traceback.
    result = _run(["audit", "--cluster", CLUSTER, "--json"], _offline_env())
    assert "Traceback" not in result.stderr, result.stderr
    document = json.loads(result.stdout)
    [finding] = document["findings"]
    assert finding["code"] == "CHECK_INCOMPLETE"
    reason = finding["evidence"]["reason"]
    assert "HTTP None" not in reason and "token" in reason, reason


@pytest.mark.parametrize("port", ["99999", "-1", "0"])
def test_a_host_mapping_with_an_impossible_port_is_a_config_error(port: str) -> None:
    # Refused up front: accepted, it would fail inside the registry check as an unexplained OverflowError.
    with pytest.raises(ConfigError, match="PULLWATCH_HOSTS"):
        Settings.from_env({"PULLWATCH_HOSTS": json.dumps({"contosoacr.azurecr.io": f"127.0.0.1:{port}"})})


def test_a_host_mapping_with_a_real_port_is_accepted() -> None:
    hosts = Settings.from_env(
        {"PULLWATCH_HOSTS": json.dumps({"contosoacr.azurecr.io": "127.0.0.1:8443"})}
    ).hosts
    assert hosts == {"contosoacr.azurecr.io": ("127.0.0.1", 8443)}
