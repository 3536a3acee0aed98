"""The installed ``pullwatch`` command as a user meets it: help, ``python -m shared``, ``render`` from
stdin; the sandbox's own command (``python -m sandbox``): help, and ``up`` started and interrupted."""

from __future__ import annotations

import ast
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PULLWATCH = str(ROOT / ".venv" / "bin" / "pullwatch")
SANDBOX = [sys.executable, "-m", "sandbox"]
CLUSTER = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks-prod"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PULLWATCH, *args], input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("explain", "audit", "render"):
        assert command in result.stdout
    assert "sandbox" not in result.stdout  # the product's command does not carry the sandbox
    sandbox_help = subprocess.run(
        [*SANDBOX, "--help"], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    assert sandbox_help.returncode == 0, sandbox_help.stderr
    assert "run" in sandbox_help.stdout and "up" in sandbox_help.stdout
    module = subprocess.run(
        [sys.executable, "-m", "shared", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert module.returncode == 0 and "explain" in module.stdout


def test_the_product_imports_nothing_from_the_sandbox() -> None:
    importers = []
    for path in sorted((ROOT / "shared").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "sandbox" or n.startswith("sandbox.") for n in names):
                importers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert importers == []


def test_unknown_command_and_option_exit_2() -> None:
    assert run("frobnicate").returncode == 2
    assert run("audit", "--no-such-flag").returncode == 2


@pytest.mark.parametrize("fmt, key", [("slack", "blocks"), ("teams", "attachments")])
def test_render_reads_stdin_and_prints_one_payload(fmt: str, key: str) -> None:
    doc = {
        "findings": [
            {
                "code": "ROLE_MISSING",
                "severity": "error",
                "cluster": CLUSTER,
                "registry": "contosoacr.azurecr.io",
                "image": None,
                "namespace": None,
                "workload": None,
                "node_pool": None,
                "cause": None,
                "message": "no pull role",
                "evidence": {},
                "remediation": "az role assignment create ...",
            }
        ]
    }
    result = run("render", "--format", fmt, "-", stdin=json.dumps(doc))
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert key in payload and "no pull role" in result.stdout
    bad = run("render", "--format", fmt, "-", stdin="{")
    assert bad.returncode == 2 and "stdin" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.sandbox
def test_sandbox_up_prints_endpoints_and_settings_and_stops_on_interrupt() -> None:
    process = subprocess.Popen(
        [*SANDBOX, "up", str(ROOT / "sandbox" / "worlds" / "healthy.yaml")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(lines)
        assert "PULLWATCH_ARM_ENDPOINT" in text and "PULLWATCH_HOSTS" in text, text
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_untrusted_text_cannot_send_terminal_control_sequences() -> None:
    from io import StringIO

    from rich.console import Console

    from shared.findings import Finding
    from shared.render.terminal import print_findings

    out = StringIO()
    evil = Finding("PODS_IMAGE_PULL_FAILING", "pull failed \x1b]0;owned\x07\x1b[2J", cluster=CLUSTER)
    print_findings([evil], console=Console(file=out, force_terminal=False, width=200))
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()
    assert "pull failed" in out.getvalue()
