"""Worlds run in every Azure cloud.

The sovereign world (sandbox/worlds/government-cloud.yaml) and a representative set of the other
worlds (the demo, ABAC, a missing role, a registry firewall, another tenant's ACR) run in each
cloud they are not written for: the estate's login servers take the cloud's ACR suffix, the ARM,
Graph and ACR-exchange stand-ins accept only that cloud's token audiences, and the product runs
with ``PULLWATCH_CLOUD`` set to it. Each run meets the world's ``expect`` with the host names moved
to that cloud, finds what the world finds in Azure public cloud (apart from host names), and
nothing the product found or sent names another cloud's ACR. Run with the wrong
``PULLWATCH_CLOUD``, a world fails: the stand-ins would catch an endpoint or audience that does
not follow the cloud.

A world names its ACRs' login servers in one cloud (``contosoacr.azurecr.io``);
:func:`world_in_cloud` moves the world's text to another (docs/spec/world.md, "One world in every
cloud").
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest

import sandbox.runner as runner
from sandbox.runner import run_world

WORLDS = Path(__file__).resolve().parent.parent / "sandbox" / "worlds"
GOVERNMENT_WORLD = WORLDS / "government-cloud.yaml"
SUFFIX = {"AzureCloud": ".azurecr.io", "AzureUSGovernment": ".azurecr.us", "AzureChinaCloud": ".azurecr.cn"}
ACR_SUFFIX = re.compile(r"\.azurecr\.(?:io|us|cn)\b")
CLOUD_KEY = re.compile(r"^cloud:.*$", re.MULTILINE)

#: Worlds written for Azure public cloud that also run in the others (AzureCloud: test_worlds.py).
CLOUD_AGNOSTIC_WORLDS = (
    "demo",
    "role-not-honored-abac",
    "role-missing",
    "registry-firewall-denied",
    "registry-other-tenant",  # the Entra token goes only to the cloud's ACRs of a trusted tenant
)
OTHER_CLOUDS = ("AzureUSGovernment", "AzureChinaCloud")

pytestmark = pytest.mark.sandbox


def world_in_cloud(source: Path, cloud: str, folder: Path) -> Path:
    """``source`` written into ``folder`` as a world of ``cloud``: its ``cloud`` key names it and every
    ACR login server in the text (images, expectations, faults, pull secrets) takes its suffix."""
    text = ACR_SUFFIX.sub(SUFFIX[cloud], source.read_text())
    text, replaced = CLOUD_KEY.subn(f"cloud: {cloud}", text)
    if not replaced:
        text = text.rstrip("\n") + f"\ncloud: {cloud}\n"
    path = folder / f"{source.stem}-{cloud}.yaml"
    path.write_text(text)
    return path


def foreign_acr_hosts(report: dict[str, Any], cloud: str) -> set[str]:
    """ACR host names of other clouds in what the product found and sent."""
    text = json.dumps({k: report[k] for k in ("initial", "steps", "findings", "notifications")})
    return {m.group(0) for m in re.finditer(r"[\w.<>-]+\.azurecr\.(?:io|us|cn)\b", text)} - {
        m.group(0) for m in re.finditer(rf"[\w.<>-]+{re.escape(SUFFIX[cloud])}\b", text)
    }


def diagnoses(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The open findings at the end, each as what and where it is and its root cause's code, with
    ACR host names made cloud-free (ids, messages and evidence name hosts, pods and times)."""

    def host_free(value: Any) -> Any:
        return ACR_SUFFIX.sub(".azurecr.<cloud>", value) if isinstance(value, str) else value

    fields = (
        "code",
        "severity",
        "cluster",
        "registry",
        "image",
        "namespace",
        "workload",
        "node_pool",
        "cause",
    )
    return sorted(
        (
            *(host_free(f.get(k)) for k in fields),
            (f.get("root_cause") or "").split(":", 1)[0],
            len(f.get("symptoms") or ()),
        )
        for f in report["findings"]
    )


@functools.cache
def public_cloud_diagnoses(world: str) -> tuple[tuple[Any, ...], ...]:
    """What ``world`` as written (Azure public cloud) finds; once per world and test process."""
    report, _ = run_world(WORLDS / f"{world}.yaml", quiet=True)
    return tuple(diagnoses(report))


def test_a_world_moves_to_a_cloud_by_its_acr_suffix_and_cloud_key(tmp_path: Path) -> None:
    source = tmp_path / "w.yaml"
    source.write_text(
        "name: w\nregistries:\n  contosoacr: {}\nfaults:\n  - {host: contosoacr.azurecr.io, fault: dns}\n"
        "description: >\n  folded text\n"
    )
    moved = world_in_cloud(source, "AzureChinaCloud", tmp_path).read_text()
    assert "contosoacr.azurecr.cn" in moved and ".azurecr.io" not in moved
    assert moved.endswith("  folded text\ncloud: AzureChinaCloud\n")
    again = world_in_cloud(tmp_path / "w-AzureChinaCloud.yaml", "AzureUSGovernment", tmp_path).read_text()
    assert again.count("cloud:") == 1 and "cloud: AzureUSGovernment" in again and ".azurecr.us" in again


@pytest.mark.slow
@pytest.mark.parametrize("cloud", OTHER_CLOUDS)
@pytest.mark.parametrize("world", CLOUD_AGNOSTIC_WORLDS)
def test_a_public_cloud_world_passes_in_another_cloud(world: str, cloud: str, tmp_path: Path) -> None:
    report, differences = run_world(world_in_cloud(WORLDS / f"{world}.yaml", cloud, tmp_path), quiet=True)
    assert not report.get("function_failures"), report.get("function_failures")
    assert differences == [], "\n".join(differences)
    assert foreign_acr_hosts(report, cloud) == set()
    assert tuple(diagnoses(report)) == public_cloud_diagnoses(world)


@pytest.mark.parametrize("cloud", ["AzureCloud", "AzureChinaCloud"])  # AzureUSGovernment: test_worlds.py
def test_the_sovereign_world_passes_in_every_cloud(cloud: str, tmp_path: Path) -> None:
    report, differences = run_world(world_in_cloud(GOVERNMENT_WORLD, cloud, tmp_path), quiet=True)
    assert not report.get("function_failures"), report.get("function_failures")
    assert differences == []
    assert {f["registry"] for f in report["findings"]} == {f"contosoacr{SUFFIX[cloud]}"}
    assert foreign_acr_hosts(report, cloud) == set()


def test_the_product_in_the_wrong_cloud_cannot_read_the_estate(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = runner.Sandbox.product_settings

    def public_cloud(self: runner.Sandbox) -> dict[str, Any]:
        return {**settings(self), "PULLWATCH_CLOUD": "AzureCloud"}

    monkeypatch.setattr(runner.Sandbox, "product_settings", public_cloud)
    _, differences = run_world(GOVERNMENT_WORLD, quiet=True)
    assert differences == [
        'expected but not found: {"cluster": "aks-prod", "code": "ROLE_MISSING", "registry": "contosoacr.azurecr.us"}'
    ], "a Government estate audited with public-cloud audiences must not look fine"
