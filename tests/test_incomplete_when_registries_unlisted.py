"""When pullwatch cannot list the container registries, the role check cannot run, and the audit
says so (CHECK_INCOMPLETE, check "roles") rather than skipping it.

The world is built from real parts by the sandbox (sandbox.runner.run_world). pullwatch's identity
may read clusters and role assignments but not ``Microsoft.ContainerRegistry/registries/read``; the
kubelet has no AcrPull. The CHECK_INCOMPLETE names the unreadable registry list as the cause (not
PULLWATCH_TRUSTED_TENANTS, a consequence). A control world with the registry list readable finds the
ROLE_MISSING the first one could not see."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandbox.runner import run_world

pytestmark = pytest.mark.sandbox

WORLD = """
name: registries-unlisted-{name}
description: pullwatch {what}; the kubelet has no AcrPull on contosoacr.
registries:
  contosoacr:
    resourceGroup: rg-shared
    location: westeurope
    repositories:
      shop/web: {{"1.4.2": [linux/amd64]}}
clusters:
  aks-prod:
    resourceGroup: rg-prod
    location: westeurope
    namespaces:
      shop:
        workloads:
          - {{kind: Deployment, name: web, image: contosoacr.azurecr.io/shop/web:1.4.2}}
customRoles:
  AuditReader:
    actions:
      - Microsoft.ContainerService/managedClusters/read
      - Microsoft.ContainerService/managedClusters/agentPools/read
      - Microsoft.Authorization/*/read
      - Microsoft.Network/*/read
      - Microsoft.Resources/subscriptions/read
      - Microsoft.Resources/subscriptions/resourceGroups/read
{extra}
roleAssignments:
  - {{principal: app, role: AuditReader, scope: subscription}}
  - {{principal: app, role: AcrPull, scope: subscription}}
  - {{principal: app, role: "Azure Kubernetes Service Cluster User Role", scope: subscription}}
"""

REGISTRY_READ = """      - Microsoft.ContainerRegistry/registries/read
      - Microsoft.ContainerRegistry/registries/replications/read"""


def _findings(tmp_path: Path, name: str, what: str, extra: str) -> list[dict[str, Any]]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(WORLD.format(name=name, what=what, extra=extra))
    report, _ = run_world(path, quiet=True)
    findings: list[dict[str, Any]] = report["findings"]
    return findings


def test_role_check_is_incomplete_when_the_registries_cannot_be_listed(tmp_path: Path) -> None:
    findings = _findings(tmp_path, "no-registry-read", "cannot list registries", "")
    codes = [f["code"] for f in findings]
    assert "ROLE_MISSING" not in codes  # it cannot know
    roles = [
        f
        for f in findings
        if f["code"] == "CHECK_INCOMPLETE" and "roles" in str(f.get("evidence", {}).get("check")).split(",")
    ]
    assert roles, f"no CHECK_INCOMPLETE for the role check; findings: {codes}"
    assert roles[0].get("registry") == "contosoacr.azurecr.io"
    assert "registr" in roles[0]["evidence"]["reason"].lower()
    assert "403" in roles[0]["evidence"]["reason"] or "authoriz" in roles[0]["evidence"]["reason"].lower()


def test_control_with_the_registries_readable_finds_the_missing_role(tmp_path: Path) -> None:
    findings = _findings(tmp_path, "registry-read", "can list registries", REGISTRY_READ)
    assert "ROLE_MISSING" in [f["code"] for f in findings]
