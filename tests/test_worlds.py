"""Every world in sandbox/worlds/ runs through the sandbox and meets its ``expect``.

Each world is built from real parts (docker-registry, Azurite, the ARM / Entra / Kubernetes
stand-ins, the simulated kubelet) and the product runs against it through its Functions entry
points (:func:`sandbox.runner.run_world`). For every world the test also checks that no secret of
the world (registry passwords, pull-secret passwords, webhook URL tokens) reaches a finding or a
notification, and that tearing the world down leaves no process and no temporary folder behind.
Three runs go through the sandbox command (``python -m sandbox run``) as a subprocess (exit codes
0 / 1 / 2).
"""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest
import yaml
from rich.console import Console

from sandbox.report import print_report
from sandbox.runner import run_world

ROOT = Path(__file__).resolve().parent.parent
WORLDS = ROOT / "sandbox" / "worlds"

#: Worlds that show a bug in a file this test's owner may not edit: they must fail until it is fixed.
KNOWN_BUGS = {}

#: Worlds without ``expect`` that another test builds and checks in full.
COVERED_ELSEWHERE = {"agreement-grid": "tests/test_agreement.py"}

SANDBOX_PROCESSES = ("docker-registry", "azurite")


def world_paths() -> list[Any]:
    out = []
    for path in sorted(WORLDS.glob("*.yaml")):
        if path.stem in COVERED_ELSEWHERE:
            continue
        marks = [pytest.mark.sandbox]
        if path.stem in KNOWN_BUGS:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[path.stem]))
        out.append(pytest.param(path, id=path.stem, marks=marks))
    return out


def world_secrets(path: Path) -> set[str]:
    """Every secret a world holds: registry users' passwords, pull-secret auths entries and data."""
    doc = yaml.safe_load(path.read_text())
    found: set[str] = set()
    for spec in (doc.get("registries") or {}).values():
        found.update(str(pw) for pw in ((spec or {}).get("users") or {}).values())
    for cluster in (doc.get("clusters") or {}).values():
        for ns in ((cluster or {}).get("namespaces") or {}).values():
            for secret in ((ns or {}).get("secrets") or {}).values():
                for entry in ((secret or {}).get("auths") or {}).values():
                    for key in ("password", "auth"):
                        if entry.get(key):
                            found.add(str(entry[key]))
                for value in ((secret or {}).get("data") or {}).values():
                    found.add(str(value))  # base64 as stored, and the text it holds
                    try:
                        found.add(base64.b64decode(str(value)).decode())
                    except (ValueError, UnicodeDecodeError):
                        pass
    return found


def sandbox_children() -> set[int]:
    """Sandbox processes (registries, Azurite) started by this test process."""
    out = set()
    for child in psutil.Process().children(recursive=True):
        try:
            text = " ".join(child.cmdline()) or child.name()
        except psutil.Error:
            continue
        if any(name in text for name in SANDBOX_PROCESSES):
            out.add(child.pid)
    return out


@pytest.fixture
def private_tmp(tmp_path: Path) -> Iterator[Path]:
    """Point :mod:`tempfile` at a folder of this test alone, so leftovers are this test's own."""
    before = tempfile.tempdir
    tempfile.tempdir = str(tmp_path)
    try:
        yield tmp_path
    finally:
        tempfile.tempdir = before


@pytest.mark.parametrize("path", world_paths())
def test_world_meets_its_expectations(path: Path, private_tmp: Path) -> None:
    processes_before = sandbox_children()
    report, differences = run_world(path, quiet=True)

    assert report["world"] == yaml.safe_load(path.read_text())["name"]
    assert not report.get("function_failures"), report.get("function_failures")
    assert differences == [], "\n".join(differences) + "\n" + _summary(report)

    # no secret anywhere in what the product produced or sent
    text = json.dumps({k: report[k] for k in ("initial", "steps", "findings", "notifications")})
    for secret in world_secrets(path):
        assert secret not in text, f"a password of {path.name} appears in the report"
    assert not re.search(r"[?&]sig=", text), "a webhook signature appears in the report"
    assert "/services/" not in text, "a Slack webhook path appears in the report"

    if path.stem in EXTRA_CHECKS:
        EXTRA_CHECKS[path.stem](report)

    # tear-down leaves nothing behind
    assert sandbox_children() - processes_before == set(), "sandbox processes left running"
    assert list(private_tmp.glob("pullwatch-sandbox-*")) == [], "sandbox work folder left behind"


def check_timeline_acrpull_removed(report: dict[str, Any]) -> None:
    """Removing AcrPull gives one "new" message per sink; restoring it, one "resolved"."""
    removed, _, restored, _ = report["steps"]
    assert {f["code"] for f in removed["findings"]} >= {"ROLE_MISSING"}
    assert not any(f["code"] == "ROLE_MISSING" for f in restored["findings"])
    sinks: dict[str, list[str]] = {}
    for record in report["notifications"]:
        assert record["status"] in (200, 202)
        sinks.setdefault(record["sink"], []).append(json.dumps(record["payload"]))
    assert set(sinks) == {"slack", "teams"}
    for sink, payloads in sinks.items():
        assert len(payloads) == 2, f"{sink} got {len(payloads)} messages: {payloads}"
        assert "1 new" in payloads[0] and "resolved" not in payloads[0], payloads[0]
        assert "1 resolved" in payloads[1] and "1 new" not in payloads[1], payloads[1]


def check_healthy(report: dict[str, Any]) -> None:
    """Nothing found, nothing sent."""
    assert report["initial"]["findings"] == []
    assert report["notifications"] == []


def check_demo_shows_the_readme_excerpt(report: dict[str, Any]) -> None:
    """The README's excerpt of `make demo` is this run's report in a 100-column terminal, trimmed:
    its lines in order, cuts marked "…", the progress lines (which carry timings) aside."""
    console = Console(file=io.StringIO(), width=100, force_terminal=True, color_system=None, record=True)
    print_report(report, console=console)
    output = [line.rstrip() for line in console.export_text().splitlines()]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"## What `make demo` shows.*?```text\n(.*?)```", readme, re.DOTALL)
    assert section, "README.md has no text block under 'What `make demo` shows'"
    at = 0
    for line in section.group(1).splitlines():
        if line.strip() in ("", "…") or line.startswith("· "):
            continue
        assert line in output[at:], (
            f"README's demo excerpt line is not in the run's output (in order): {line!r}"
        )
        at = output.index(line, at) + 1


#: Checks beyond ``expect`` for some worlds.
EXTRA_CHECKS = {
    "demo": check_demo_shows_the_readme_excerpt,
    "timeline-acrpull-removed": check_timeline_acrpull_removed,
    "healthy": check_healthy,
}


# --- the sandbox command -----------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", "run", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=ROOT,
    )


@pytest.mark.sandbox
def test_cli_prints_one_json_document_and_exits_0_when_expectations_hold() -> None:
    done = run_cli(str(WORLDS / "role-missing.yaml"), "--json", "--check")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # one document, nothing else on stdout
    assert report["world"] == "role-missing"
    assert any(f["code"] == "ROLE_MISSING" for f in report["findings"])
    assert "Traceback" not in done.stderr


@pytest.mark.sandbox
def test_cli_exits_1_when_an_expected_finding_is_missing(tmp_path: Path) -> None:
    world = tmp_path / "unmet.yaml"
    world.write_text(
        "name: unmet\n"
        "registries:\n"
        "  contosoacr: {repositories: {shop/web: {'1.0': [linux/amd64]}}}\n"
        "expect:\n"
        "  findings:\n"
        "    - {code: ROLE_MISSING, registry: contosoacr.azurecr.io}\n"
    )
    done = run_cli(str(world), "--json", "--check")
    assert done.returncode == 1, done.stderr
    json.loads(done.stdout)
    assert "ROLE_MISSING" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_exits_2_with_file_and_line_for_an_unknown_key(tmp_path: Path) -> None:
    world = tmp_path / "typo.yaml"
    world.write_text(
        "name: typo\n"
        "registries:\n"
        "  contosoacr:\n"
        "    repositories: {shop/web: {'1.0': [linux/amd64]}}\n"
        "    replicatons: [northeurope]\n"
    )
    done = run_cli(str(world), "--json", "--check")
    assert done.returncode == 2
    assert f"{world}:5" in done.stderr, done.stderr
    assert "replicatons" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout.strip() == ""


def _summary(report: dict[str, Any]) -> str:
    lines = ["findings at the end:"]
    for f in report["findings"]:
        cluster = (f.get("cluster") or "").rsplit("/", 1)[-1]
        lines.append(
            f"  {f['code']} {cluster} {f.get('registry')} {f.get('image')} {f.get('namespace')} "
            f"{f.get('workload')} {f.get('node_pool')} {f.get('cause')}"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
