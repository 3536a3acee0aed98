"""One sovereign-cloud world (sandbox/worlds/government-cloud.yaml) run in every Azure cloud: the
estate's login servers take the cloud's ACR suffix, the ARM, Graph and ACR-exchange stand-ins accept
only that cloud's token audiences, and the product runs with ``PULLWATCH_CLOUD`` set to it. Run with
the wrong ``PULLWATCH_CLOUD``, the same world fails: the stand-ins would catch an endpoint or
audience that does not follow the cloud."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import sandbox.runner as runner
from sandbox.runner import run_world

WORLD = Path(__file__).resolve().parent.parent / "sandbox" / "worlds" / "government-cloud.yaml"
SUFFIX = {"AzureCloud": ".azurecr.io", "AzureUSGovernment": ".azurecr.us", "AzureChinaCloud": ".azurecr.cn"}

pytestmark = pytest.mark.sandbox


def _world_in(cloud: str, tmp_path: Path) -> Path:
    text = WORLD.read_text().replace("cloud: AzureUSGovernment", f"cloud: {cloud}")
    path = tmp_path / f"{cloud}.yaml"
    path.write_text(text.replace(".azurecr.us", SUFFIX[cloud]))
    return path


@pytest.mark.parametrize("cloud", ["AzureCloud", "AzureChinaCloud"])  # AzureUSGovernment: test_worlds.py
def test_the_sovereign_world_passes_in_every_cloud(cloud: str, tmp_path: Path) -> None:
    report, differences = run_world(_world_in(cloud, tmp_path), quiet=True)
    assert not report.get("function_failures"), report.get("function_failures")
    assert differences == []
    assert {f["registry"] for f in report["findings"]} == {f"contosoacr{SUFFIX[cloud]}"}


def test_the_product_in_the_wrong_cloud_cannot_read_the_estate(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = runner.Sandbox.product_settings

    def public_cloud(self: runner.Sandbox) -> dict[str, Any]:
        return {**settings(self), "PULLWATCH_CLOUD": "AzureCloud"}

    monkeypatch.setattr(runner.Sandbox, "product_settings", public_cloud)
    _, differences = run_world(WORLD, quiet=True)
    assert differences == [
        'expected but not found: {"cluster": "aks-prod", "code": "ROLE_MISSING", "registry": "contosoacr.azurecr.us"}'
    ], "a Government estate audited with public-cloud audiences must not look fine"
