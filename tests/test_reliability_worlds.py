"""Hostile world and event files through the CLI: one clear line naming the file, the line and the
key; exit 2; no traceback, no internal error, no hang."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parent.parent
WORLD = """\
name: hostile
registries:
  contosoacr:
    resourceGroup: rg-shared
    repositories:
      shop/web: {"1.0": [linux/amd64]}
clusters:
  aks-prod:
    resourceGroup: rg-prod
    namespaces:
      shop:
        workloads:
          - {kind: Deployment, name: web, image: contosoacr.azurecr.io/shop/web:1.0}
"""
LAUGHS = "name: lol\ndescription: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9)
)

CASES: dict[str, tuple[str, dict[str, str], tuple[str, ...]]] = {
    # name: (world text, other files, what the one line must say besides the file name)
    "alias-bomb": (LAUGHS, {}, ("aliases",)),
    "recursive-alias": ("name: loop\ndescription: &a [*a]\n", {}, (":2:", "alias")),
    "complex-key": (WORLD + "  ? [aks, dev]\n  : {}\n", {}, (":14:", "key")),
    "deep-nesting": ("name: deep\ndescription: " + "[" * 5000 + "]" * 5000 + "\n", {}, (":2:", "deep")),
    "5-mb-name": ("name: " + "x" * 5_000_000 + "\n", {}, ("larger than",)),
    "long-value": ("name: " + "x" * 100_000 + "\n", {}, (":1:", "name", "longer than")),
    "replicas": (
        WORLD.replace("name: web, image", "name: web, replicas: 100000000, image"),
        {},
        (":13:", "replicas", "at most"),
    ),
    "garbage-event-file": (
        WORLD + "timeline:\n  - event: {file: events/bad.json}\n",
        {"events/bad.json": "\x00{garbage"},
        (":15:", "timeline[0].event.file", "bad.json", "not JSON"),
    ),
    "deep-event-file": (
        WORLD + "timeline:\n  - event: {file: deep.json}\n",
        {"deep.json": "[" * 100_000 + "]" * 100_000},
        (":15:", "deep.json"),
    ),
    "restart-unknown-workload": (
        WORLD
        + "timeline:\n  - change: {restartWorkload: {cluster: aks-prod, namespace: shop, name: nope}}\n",
        {},
        (":15:", "restartWorkload.name", "nope"),
    ),
    "delete-unknown-image": (
        WORLD + "timeline:\n  - change: {deleteImage: {registry: contosoacr, image: shop/web:9.9}}\n",
        {},
        (":15:", "deleteImage.image", "shop/web:9.9"),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_world_file_gets_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    text, files, says = CASES[case]
    world = tmp_path / "bad.yaml"
    world.write_text(text)
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PULLWATCH_DEBUG", None)
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "run", str(world)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=tmp_path,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-500:]
    assert len(lines) == 1, done.stderr[-2000:]
    line = lines[0]
    assert "internal error" not in line and "Traceback" not in line and len(line) < 400, line
    assert re.match(rf"pullwatch: {re.escape(str(world))}(:\d+)?: ", line), line
    for part in says:
        assert part in line, f"{part!r} missing from: {line}"
