"""``python -m bench``: run every benchmark row and print one table.

Every row states its goals and whether this run met them: a ratio to the baseline
(``target_ratio``), a distance to the physical limit of the work (``limit_s`` × ``limit_factor``),
and absolute goals (``goals``: text and verdict, e.g. "< 10 s"). A row is a function ``() -> Row`` (or ``-> list[Row]`` when rows share a setup) listed in :data:`ROWS` as ``"module:function"`` (imported lazily,
so one failing row does not stop the others). To add a row, write it in its own ``bench/<name>.py``
and append it to :data:`ROWS`. ``python -m bench <substring>`` runs only the matching rows.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Row:
    name: str
    ours_s: float | None  # pullwatch's time, seconds
    baseline_s: float | None  # the baseline's time on the same work, seconds
    baseline: str = ""  # what the baseline is
    target_ratio: float | None = None  # baseline_s / ours_s we aim for
    notes: list[str] = field(default_factory=list)
    limit_s: float | None = None  # the physical limit of the same work (e.g. round trips x RTT / concurrency)
    limit_factor: float | None = None  # goal: ours_s <= limit_factor x limit_s
    goals: list[tuple[str, bool]] = field(default_factory=list)  # absolute goals: (text, met)

    @property
    def ratio(self) -> float | None:
        if self.ours_s and self.baseline_s:
            return self.baseline_s / self.ours_s
        return None

    def verdicts(self) -> list[tuple[str, bool]]:
        """Every goal of the row with whether this run met it (a goal not measured is not met)."""
        out = []
        if self.target_ratio:
            ratio = self.ratio
            out.append(
                (f">={self.target_ratio:g}x baseline", ratio is not None and ratio >= self.target_ratio)
            )
        if self.limit_factor:
            met = (
                self.ours_s is not None
                and self.limit_s is not None
                and self.ours_s <= self.limit_factor * self.limit_s
            )
            out.append((f"<={self.limit_factor:g}x limit", met))
        return out + list(self.goals)

    @property
    def met(self) -> bool | None:
        verdicts = self.verdicts()
        return all(ok for _, ok in verdicts) if verdicts else None


ROWS: list[str] = [
    "bench.registry:registry_500",
    "bench.cluster:cluster_20000",
    "bench.cluster:cluster_50000",
    "bench.coldstart:cold_start",
    "bench.sandbox:sandbox_build",
    "bench.sandbox:sandbox_fanout_100",
    "bench.sandbox:sandbox_fanout_250",
    "bench.explain:explain_adversarial_64kb",
    "bench.preflight:preflight_200",
    "bench.reliability:reliability",
]


def _load(spec: str) -> Callable[[], Row | list[Row]]:
    module, _, name = spec.partition(":")
    fn: Callable[[], Row | list[Row]] = getattr(importlib.import_module(module), name)
    return fn


def main(argv: list[str]) -> int:
    wanted = [a for a in argv if not a.startswith("-")]
    rows: list[Row] = []
    failed = 0
    for spec in ROWS:
        if wanted and not any(w in spec for w in wanted):
            continue
        start = time.monotonic()
        try:
            got = _load(spec)()
            rows.extend(got if isinstance(got, list) else [got])
        except Exception as exc:  # report and go on with the other rows
            failed += 1
            traceback.print_exc()
            rows.append(Row(spec, None, None, notes=[f"FAILED: {type(exc).__name__}: {exc}"]))
        print(f"[bench] {spec} done in {time.monotonic() - start:.1f}s", file=sys.stderr)
    print_table(rows)
    return 1 if failed else 0


def print_table(rows: list[Row]) -> None:
    """One line per row (times, ratio, limit, goals, met / NOT MET), its baseline and notes below."""
    header = (
        f"{'benchmark':<58} {'pullwatch':>9} {'baseline':>9} {'ratio':>7} {'limit':>8}  "
        f"{'goal':<34} {'met':<7}"
    )
    print(header)
    print("-" * len(header))
    pad = " " * 4
    for row in rows:
        ours = f"{row.ours_s:.2f}s" if row.ours_s is not None else "-"
        base = f"{row.baseline_s:.2f}s" if row.baseline_s is not None else "-"
        ratio = f"{row.ratio:.1f}x" if row.ratio is not None else "-"
        limit = f"{row.limit_s:.2f}s" if row.limit_s is not None else "-"
        verdicts = row.verdicts()
        goal = ", ".join(text for text, _ in verdicts) or "-"
        met = "-" if row.met is None else ("met" if row.met else "NOT MET")
        print(f"{row.name:<58} {ours:>9} {base:>9} {ratio:>7} {limit:>8}  {goal:<34} {met:<7}")
        if row.baseline:
            print(f"{pad}baseline: {row.baseline}")
        for text, ok in verdicts:
            if not ok:
                print(f"{pad}NOT MET: {text}")
        for note in row.notes:
            print(f"{pad}- {note}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
