"""When the nightly audit cannot discover the clusters of a subscription (pullwatch may not list
them), that is reported as CHECK_INCOMPLETE — stored and told to the channels that want ``unknown``
findings — and resolved when discovery works again; the night never looks all clear. World built
from real parts (sandbox.runner.Sandbox), product driven through its Functions entry points (timer →
queue)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.runner import Sandbox
from sandbox.world import parse

pytestmark = pytest.mark.sandbox

WORLD = """
name: no-cluster-read
description: pullwatch may not list the subscription's clusters; the nightly audit cannot run.
registries:
  contosoacr:
    resourceGroup: rg-shared
    location: westeurope
    repositories:
      shop/web: {"1.4.2": [linux/amd64]}
clusters:
  aks-prod:
    resourceGroup: rg-prod
    location: westeurope
    namespaces:
      shop:
        workloads:
          - {kind: Deployment, name: web, image: contosoacr.azurecr.io/shop/web:1.4.2}
customRoles:
  NoClusterReader:
    actions:
      - Microsoft.ContainerRegistry/registries/read
      - Microsoft.Authorization/*/read
      - Microsoft.Resources/subscriptions/read
roleAssignments:
  - {principal: app, role: NoClusterReader, scope: subscription}
"""


def test_a_subscription_whose_clusters_cannot_be_listed_is_reported_not_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = parse(WORLD, source="no-cluster-read", path=tmp_path / "world.yaml")
    with Sandbox(world) as box:
        monkeypatch.setenv("PULLWATCH_MIN_SEVERITY", "unknown")  # channels that want to hear it
        box.functions.module.process_app.get(reset=True)
        box.nightly()
        assert box.functions.failures == []
        stored = [
            f.to_dict() for f in box.functions.module.process_app.get().open_findings(["/subscriptions"])
        ]
        codes = [f["code"] for f in stored]
        assert codes == ["CHECK_INCOMPLETE"], stored
        reason = stored[0]["evidence"]["reason"]
        assert world.subscriptions[0] in reason and "403" in reason, reason
        told = json.dumps(box.sink.records)
        assert "CHECK_INCOMPLETE" in told or "could not" in told.lower(), "no channel heard about it"
        assert len(box.sink.records) == 2  # one message per channel (slack, teams)

        # The same night again: still open, not told twice.
        box.nightly()
        assert len(box.sink.records) == 2
