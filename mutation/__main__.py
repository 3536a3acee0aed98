"""``make mutation``: mutation score of the core modules against their own unit tests (mutmut).

    python -m mutation                  # every target in mutation/targets.py
    python -m mutation rbac compare     # only these targets (names as in the table)
    python -m mutation --max-children 2

For each target this copies the project into ``.mutation/<target>/`` with a ``[tool.mutmut]``
section that mutates only that file and selects only that target's test files, runs
``mutmut run`` on the target's functions, then prints one row per target:
mutants, killed, equivalent (listed in ``mutation/equivalent.toml`` with a reason each), survived,
and score = killed / (mutants - equivalent); then every surviving mutant as file:line and its diff.
Exits 1 when any target scores below :data:`THRESHOLD`, 2 when mutmut itself could not run.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from mutation.targets import TARGETS, Target

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"
EQUIVALENT_FILE = Path(__file__).resolve().parent / "equivalent.toml"
THRESHOLD = 0.90
COPIED = ("shared", "sandbox", "tests")

#: mutmut's exit-code verdicts (mutmut.stats.status_by_exit_code) that mean a test caught the mutant.
CAUGHT = {"killed", "timeout", "segfault", "caught by type check"}


class TargetFailed(Exception):
    """mutmut could not run or finish one target (the others still run)."""


@dataclass
class Survivor:
    name: str
    function: str
    line: int
    diff: str
    change: str  # the changed lines only, stripped: the key of an equivalent-mutant entry


@dataclass
class Score:
    target: Target
    total: int = 0
    killed: int = 0
    equivalent: int = 0
    survivors: list[Survivor] = field(default_factory=list)
    stale_equivalents: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def score(self) -> float:
        judged = self.total - self.equivalent
        return self.killed / judged if judged else 1.0


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _module(source: str) -> str:
    return source.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def _function_of(mutant: str) -> str:
    """``shared.rbac.xǁCǁm__mutmut_3`` → ``C.m``; ``shared.rbac.x_f__mutmut_3`` → ``f``."""
    mangled = mutant.rpartition(".")[2].rpartition("__mutmut_")[0]
    if mangled.startswith("xǁ"):
        return ".".join(part for part in mangled[2:].split("ǁ") if part)
    return mangled.removeprefix("x_")


def _function_starts(source: Path) -> dict[str, int]:
    """First line (decorators included) of every function and method, by ``f`` / ``Class.m``."""
    starts: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = [child.lineno, *(d.lineno for d in child.decorator_list)]
                starts[prefix + child.name] = min(lines)
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")

    visit(ast.parse(source.read_text()), "")
    return starts


def _changed_line(diff: str) -> int:
    """Line within the function (1-based) of the diff's first removed line."""
    line = 0
    for text in diff.splitlines():
        hunk = re.match(r"@@ -(\d+)", text)
        if hunk:
            line = int(hunk.group(1))
        elif text.startswith(("---", "+++")):
            continue
        elif text.startswith("-"):
            return line
        elif text.startswith(" "):
            line += 1
    return line


def _change_key(diff: str) -> str:
    return "\n".join(
        t[0] + " " + t[1:].strip()
        for t in diff.splitlines()
        if t[:1] in "+-" and not t.startswith(("---", "+++"))
    )


def _load_equivalents() -> dict[tuple[str, str, str], str]:
    data = tomllib.loads(EQUIVALENT_FILE.read_text())
    out: dict[tuple[str, str, str], str] = {}
    for i, entry in enumerate(data.get("mutant", []), 1):
        missing = {"source", "function", "change", "reason"} - entry.keys()
        if missing:
            raise SystemExit(f"{EQUIVALENT_FILE}: mutant #{i}: missing {', '.join(sorted(missing))}")
        out[(entry["source"], entry["function"], entry["change"].strip())] = entry["reason"]
    return out


def _prepare(target: Target) -> Path:
    work = WORK / _slug(target.name)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", "*.pyc")
    for name in COPIED:
        shutil.copytree(ROOT / name, work / name, ignore=ignore)
    config = {
        "source_paths": ["shared"],
        "only_mutate": [target.source],
        "also_copy": ["sandbox"],
        "pytest_add_cli_args": [
            "-p",
            "no:cacheprovider",
            "-q",
            *(["-k", target.keyword] if target.keyword else []),
        ],
        "pytest_add_cli_args_test_selection": list(target.tests),
        "use_git_change_detection": False,
        "use_setproctitle": False,
    }
    section = "\n[tool.mutmut]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in config.items())
    (work / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + section)
    return work


_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
print(json.dumps({n: get_diff_for_mutant(n, path=sys.argv[1]) for n in sys.argv[2:]}))
"""


def _globs(target: Target) -> list[str]:
    return [f"{_module(target.source)}.{g}" for g in target.functions]


_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only mutants/ may provide shared


def run_target(target: Target, max_children: int, equivalents: dict[tuple[str, str, str], str]) -> Score:
    started = time.monotonic()
    work = _prepare(target)
    command = ["nice", "-n", "10", sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)]
    done = subprocess.run([*command, *_globs(target)], cwd=work, env=_ENV, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise TargetFailed(f"mutation: mutmut did not finish {target.name} (exit {done.returncode})")
    score = read_results(target, equivalents)
    score.seconds = time.monotonic() - started
    return score


def read_results(target: Target, equivalents: dict[tuple[str, str, str], str]) -> Score:
    """The verdicts of the last run in ``.mutation/<target>/``, survivors matched to the equivalents."""
    work = WORK / _slug(target.name)
    globs = _globs(target)
    meta_path = work / "mutants" / (target.source + ".meta")
    if not meta_path.exists():
        raise TargetFailed(f"mutation: no results for {target.name} in {work}")
    from mutmut.stats import status_by_exit_code

    verdicts = json.loads(meta_path.read_text())["exit_code_by_key"]
    mine = {n: c for n, c in verdicts.items() if any(fnmatch.fnmatch(n, g) for g in globs)}
    if any(c is None for c in mine.values()):
        raise TargetFailed(f"mutation: the run of {target.name} did not finish")
    score = Score(target, total=len(mine))
    uncaught = sorted(n for n, c in mine.items() if status_by_exit_code[c] not in CAUGHT)
    score.killed = score.total - len(uncaught)
    diffs: dict[str, str] = {}
    if uncaught:
        shown = subprocess.run(
            [sys.executable, "-c", _DIFFS, target.source, *uncaught],
            cwd=work,
            env=_ENV,
            capture_output=True,
            text=True,
            check=True,
        )
        diffs = json.loads(shown.stdout)
    starts = _function_starts(ROOT / target.source)
    used: set[tuple[str, str, str]] = set()
    for name in uncaught:
        function, diff = _function_of(name), diffs[name]
        key = (target.source, function, _change_key(diff))
        whole = (target.source, function, "*")  # every mutant of the function
        if key in equivalents or whole in equivalents:
            score.equivalent += 1
            used.add(key if key in equivalents else whole)
            continue
        line = starts.get(function, 1) + _changed_line(diff) - 1
        score.survivors.append(Survivor(name, function, line, diff, key[2]))
    score.stale_equivalents = [
        f"{f}: {c}" for (s, f, c) in equivalents if s == target.source and (s, f, c) not in used
    ]
    return score


def print_equivalent_stubs(scores: list[Score]) -> None:
    """Every survivor as a mutation/equivalent.toml entry, its reason left to write."""
    for s in scores:
        for v in s.survivors:
            change = v.change.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
            print(f"\n[[mutant]]  # {s.target.source}:{v.line}")
            print(f'source = "{s.target.source}"\nfunction = "{v.function}"')
            print(f'change = """\n{change}"""\nreason = ""')


def print_report(scores: list[Score], seconds: float) -> None:
    for s in scores:
        for v in s.survivors:
            print(f"\nSURVIVED {s.target.source}:{v.line} {v.function} ({v.name})")
            print("\n".join("    " + t for t in v.diff.splitlines()[2:]))
        for stale in s.stale_equivalents:
            print(f"\nNOTE {s.target.source}: listed as equivalent but not a survivor now: {stale}")
    print()
    labels = [f"{s.target.name} ({s.target.source})" for s in scores]
    width = max([len("module"), *(len(label) for label in labels)])
    header = f"| {'module':<{width}} | mutants | killed | equivalent | survived | score  | time  |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for s, label in zip(scores, labels, strict=True):
        print(
            f"| {label:<{width}} | {s.total:>7} | {s.killed:>6} | {s.equivalent:>10} | {len(s.survivors):>8} "
            f"| {s.score:>6.1%} | {s.seconds:>4.0f}s |"
        )
    print(f"\nmutation: {len(scores)} targets in {seconds:.0f} s; threshold {THRESHOLD:.0%} per target")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mutation", description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", help="target names (default: all)")
    parser.add_argument("--max-children", type=int, default=1, help="parallel mutant workers (default 1)")
    parser.add_argument("--report", action="store_true", help="re-read the last run's results, run nothing")
    parser.add_argument(
        "--stubs", action="store_true", help="with --report: survivors as equivalent.toml stubs"
    )
    args = parser.parse_args(argv)
    chosen = [
        t for t in TARGETS if not args.targets or t.name in args.targets or _slug(t.name) in args.targets
    ]
    unknown = set(args.targets) - {t.name for t in TARGETS} - {_slug(t.name) for t in TARGETS}
    if unknown:
        print(f"mutation: unknown target(s) {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    equivalents = _load_equivalents()
    started = time.monotonic()
    scores = []
    failed = []
    for target in chosen:
        try:
            if args.report:
                scores.append(read_results(target, equivalents))
                continue
            print(f"mutation: {target.name} ({target.source}) against {' '.join(target.tests)}", flush=True)
            scores.append(run_target(target, args.max_children, equivalents))
        except TargetFailed as exc:
            print(exc, file=sys.stderr, flush=True)
            failed.append(target.name)
    if args.stubs:
        print_equivalent_stubs(scores)
        return 0
    print_report(scores, time.monotonic() - started)
    if failed:
        print(f"mutation: could not run {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0 if all(s.score >= THRESHOLD for s in scores) else 1


if __name__ == "__main__":
    sys.exit(main())
