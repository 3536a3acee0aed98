"""``python -m bench``: run every benchmark row and print one table.

A row is a function ``() -> Row`` (or ``-> list[Row]`` when rows share a setup) listed in :data:`ROWS` as ``"module:function"`` (imported lazily,
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

    @property
    def ratio(self) -> float | None:
        if self.ours_s and self.baseline_s:
            return self.baseline_s / self.ours_s
        return None


ROWS: list[str] = [
    "bench.registry:registry_500",
    "bench.cluster:cluster_20000",
    "bench.sandbox:sandbox_build",
    "bench.sandbox:sandbox_fanout_100",
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
    header = (
        f"{'benchmark':<62} {'pullwatch':>10} {'baseline':>10} {'ratio':>8} {'target':>7}  baseline / notes"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        ours = f"{row.ours_s:.2f}s" if row.ours_s is not None else "-"
        base = f"{row.baseline_s:.2f}s" if row.baseline_s is not None else "-"
        ratio = f"{row.ratio:.1f}x" if row.ratio is not None else "-"
        target = f">={row.target_ratio:g}x" if row.target_ratio else ""
        print(f"{row.name:<62} {ours:>10} {base:>10} {ratio:>8} {target:>7}  {row.baseline}")
        for note in row.notes:
            print(f"{'':<62} {'':>10} {'':>10} {'':>8} {'':>7}  - {note}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
