"""The repository stands on its own: no tracked file reads or points at anything outside it.

A clone has no sibling ``shared`` folder beside it (the developers' reading material), so a file
that names it, or a path expression that climbs above the repository root, works only on the machine where it
was written.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A relative path up into the sibling folder (any depth of "../"), or a Path joined with it one level
# up, names the folder beside the repository.
_SIBLING_SHARED = re.compile(r"(\.\./)+shared\b|parent\s*/\s*[\"']shared[\"']")
# A Path climbing more levels than this file's depth below the root, or ROOT.parent: leaves the root.
_CLIMB = re.compile(r"(\.parent){3,}|parents\[[2-9]\]|\bROOT\.parent\b")


def tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    files = [ROOT / name for name in out.decode().split("\0") if name]
    return [f for f in files if f.is_file() and b"\0" not in f.read_bytes()[:4096]]


def offending_lines(pattern: re.Pattern[str], files: list[Path]) -> list[str]:
    hits = []
    for path in files:
        if path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if pattern.search(line):
                shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                hits.append(f"{shown}:{number}: {line.strip()}")
    return hits


def test_no_tracked_file_refers_to_the_sibling_shared_folder() -> None:
    assert offending_lines(_SIBLING_SHARED, tracked_text_files()) == []


def test_no_python_file_climbs_out_of_the_repository_root() -> None:
    python_files = [f for f in tracked_text_files() if f.suffix == ".py"]
    assert offending_lines(_CLIMB, python_files) == []


def test_the_patterns_catch_what_they_are_meant_to(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sibling = "shared"  # kept apart so that this file itself names no path outside the repository
    sample.write_text(
        f'A = Path(__file__).resolve().parent.parent.parent / "{sibling}"\n'
        f"# see ../{sibling}/spec/findings.md\n"
        "B = ROOT.parent / 'x'\n"
        "C = Path(__file__).resolve().parent.parent / 'docs'\n"
    )
    assert [h.split(":")[1] for h in offending_lines(_SIBLING_SHARED, [sample])] == ["1", "2"]
    assert [h.split(":")[1] for h in offending_lines(_CLIMB, [sample])] == ["1", "3"]
