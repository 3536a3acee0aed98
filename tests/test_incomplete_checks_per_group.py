"""Two checks that could not run for the same registry both keep their findings open.

The roles check's and the network check's CHECK_INCOMPLETE for one registry are distinct findings
(their ``check`` group is part of the identity), so de-duplication keeps both and compare() keeps the
registry's open REGISTRY_FIREWALL_DENIED open: the network check never ran, so nothing resolved it.
World from real parts (sandbox.runner.Sandbox); product driven through its Functions entry points: a
nightly audit with full read access finds the firewall problem, then pullwatch loses read access to
role assignments and networks, and the next nightly audit runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.runner import Sandbox
from sandbox.world import parse

pytestmark = pytest.mark.sandbox

WORLD = """
name: incomplete-checks-per-group
description: fabrikamacr's firewall refuses aks-prod's egress; later pullwatch loses read access.
registries:
  fabrikamacr:
    resourceGroup: rg-shared
    location: westeurope
    networkRuleSet: {defaultAction: Deny, ipRules: [198.51.100.0/24]}
    repositories:
      team-a/ledger: {"3.2": [linux/amd64]}
clusters:
  aks-prod:
    resourceGroup: rg-prod
    location: westeurope
    egressIPs: [20.50.1.10]
    namespaces:
      shop:
        workloads:
          - {kind: StatefulSet, name: ledger, image: fabrikamacr.azurecr.io/team-a/ledger:3.2}
customRoles:
  Inventory:
    actions:
      - Microsoft.ContainerService/managedClusters/read
      - Microsoft.ContainerService/managedClusters/agentPools/read
      - Microsoft.ContainerRegistry/registries/read
      - Microsoft.ContainerRegistry/registries/replications/read
      - Microsoft.Resources/subscriptions/read
      - Microsoft.Resources/subscriptions/resourceGroups/read
roleAssignments:
  - {principal: kubelet:aks-prod, role: AcrPull, scope: registry:fabrikamacr}
  - {principal: app, role: Reader, scope: subscription}
  - {principal: app, role: AcrPull, scope: subscription}
  - {principal: app, role: "Azure Kubernetes Service Cluster User Role", scope: subscription}
"""


def _codes(box: Sandbox) -> list[tuple[str, str | None, str | None]]:
    return sorted(
        (f["code"], f.get("registry"), (f.get("evidence") or {}).get("check")) for f in box.open_findings()
    )


def test_a_check_that_could_not_run_keeps_its_findings_open_beside_another_incomplete_check(
    tmp_path: Path,
) -> None:
    world = parse(WORLD, source="incomplete-checks-per-group", path=tmp_path / "world.yaml")
    with Sandbox(world) as box:
        box.nightly()
        before = _codes(box)
        assert ("REGISTRY_FIREWALL_DENIED", "fabrikamacr.azurecr.io", None) in before, before

        # pullwatch keeps inventory access but can no longer read role assignments nor networks
        box.change("removeRoleAssignment", {"principal": "app", "scope": "subscription", "role": "Reader"})
        box.change("addRoleAssignment", {"principal": "app", "role": "Inventory", "scope": "subscription"})
        box.nightly()
        after = _codes(box)
        checks = {part for code, _, c in after if code == "CHECK_INCOMPLETE" for part in str(c).split(",")}
        assert {"roles", "network"} & checks, after  # the checks did not run, and say so
        assert ("REGISTRY_FIREWALL_DENIED", "fabrikamacr.azurecr.io", None) in after, (
            f"resolved by silence: the network check never ran; open now: {after}"
        )
        told = " ".join(str(r.get("payload")) for r in box.sink.records)
        assert "resolved" not in told.lower(), "a resolution was announced for an unchecked finding"
