"""Sandbox rows: build time of issue 3's world, and the nightly fan-out over 100 clusters.

- ``sandbox_build``: builds the world of :func:`sandbox.scale.build_time_yaml` — 3 clusters, 4
  registries (ACR classic, ACR ABAC, a private third-party registry, Docker Hub), 50 workloads —
  and runs its initial nightly audit through the Functions entry points. Target: build under 30 s.
  Notes give the split per part and the request counts.
- ``sandbox_fanout_100``: the nightly fan-out of :func:`sandbox.scale.fanout_yaml` — 100 small
  clusters, 3 ACRs in 2 subscriptions: the timer enqueues one Azurite queue message per cluster
  and the worker audits each. Checked as it runs (every cluster audited, exactly 100 messages, no
  function failure); the notes give ARM / Graph requests per cluster next to a 25-cluster run of
  the same estate, which must stay flat (requests grow with S + R + C, not their product).

The baseline column is empty: there is no other tool doing the same work; the targets are absolute.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.__main__ import Row  # noqa: E402
from sandbox.scale import NightlyRun  # noqa: E402

BUILD_TARGET_SECONDS = 30.0


def _split(split: dict[str, float]) -> str:
    return ", ".join(
        f"{name} {seconds:.1f}s" for name, seconds in sorted(split.items(), key=lambda kv: -kv[1])
    )


def _codes(run: NightlyRun) -> str:
    codes = Counter(code for found in run.findings_by_cluster.values() for code in found)
    return ", ".join(f"{code} x{n}" for code, n in sorted(codes.items())) or "none"


def sandbox_build() -> list[Row]:
    from sandbox.scale import build_time_yaml, run_nightly, scale_world

    world = scale_world(build_time_yaml())
    run = run_nightly(world)
    if run.failures:
        raise RuntimeError(f"function failures: {run.failures[:3]}")
    build = Row(
        "sandbox build 3c/4r/50w",
        run.build_seconds,
        None,
        "",
        goals=[(f"< {BUILD_TARGET_SECONDS:.0f} s", run.build_seconds < BUILD_TARGET_SECONDS)],
        notes=[
            f"split: {_split(run.build_split)}",
            f"teardown {run.teardown_seconds:.1f}s",
        ],
    )
    nightly = Row(
        "sandbox initial nightly 3c/4r/50w",
        run.nightly_seconds,
        None,
        "",
        notes=[
            f"{run.queue_messages} messages, {run.worker_invocations} worker runs, "
            f"{run.audited} clusters audited, {run.open_findings} open findings: {_codes(run)}",
            f"requests: ARM {run.arm}, Graph {run.graph}, Entra {run.requests['entra']}, "
            f"Kubernetes {run.requests['kubernetes']}, registry {run.requests['registry']}",
        ],
    )
    return [build, nightly]


def sandbox_fanout_100() -> list[Row]:
    return _fanout((25, 100))


def sandbox_fanout_250() -> list[Row]:
    """250 clusters in 5 subscriptions pulling from 10 registries, next to 50 of the same shape."""
    return _fanout((50, 250), registries=10, subscriptions=5)


def _fanout(sizes: tuple[int, int], registries: int = 3, subscriptions: int = 2) -> list[Row]:
    from sandbox.scale import fanout_yaml, run_nightly, scale_world

    runs = [run_nightly(scale_world(fanout_yaml(c, registries, subscriptions))) for c in sizes]
    rows = []
    for run in runs:
        problems = []
        if run.audited != run.clusters:
            problems.append(f"only {run.audited} of {run.clusters} clusters audited")
        if run.queue_messages != run.clusters or run.timer_invocations != 1:
            problems.append(f"timer ran {run.timer_invocations}x and enqueued {run.queue_messages} messages")
        if run.failures:
            problems.append(f"{len(run.failures)} function failures, e.g. {run.failures[0]}")
        if problems:
            raise RuntimeError(f"fan-out of {run.clusters} clusters: " + "; ".join(problems))
        rows.append(
            Row(
                f"nightly fan-out {run.clusters} clusters",
                run.nightly_seconds,
                None,
                "",
                notes=[
                    f"S={run.subscriptions} R={run.registries} C={run.clusters}: {run.queue_messages} "
                    f"queue messages, {run.worker_invocations} worker runs, {run.audited} audited, "
                    f"{run.open_findings} open findings; "
                    f"{run.nightly_seconds / run.clusters:.2f} s per cluster",
                    f"ARM {run.arm} ({run.arm / run.clusters:.2f}/cluster), Graph {run.graph} "
                    f"({run.graph / run.clusters:.2f}/cluster), Entra {run.requests['entra']}, "
                    f"Kubernetes {run.kubernetes} ({run.kubernetes / run.clusters:.1f}/cluster), "
                    f"registry {run.registry}, Storage {run.storage_transactions} transactions "
                    f"({run.storage_transactions / run.clusters:.1f}/cluster)",
                    f"build {run.build_seconds:.1f}s ({_split(run.build_split)}); "
                    f"teardown {run.teardown_seconds:.1f}s",
                ],
            )
        )
    small, large = runs
    per_small, per_large = small.arm / small.clusters, large.arm / large.clusters
    time_small, time_large = small.nightly_seconds / small.clusters, large.nightly_seconds / large.clusters
    rows[-1].notes.append(
        f"per cluster {small.clusters} -> {large.clusters} clusters: ARM {per_small:.2f} -> {per_large:.2f}, "
        f"nightly {time_small:.3f}s -> {time_large:.3f}s"
    )
    rows[-1].goals = [
        ("ARM per cluster flat (<=1.1x)", per_large <= per_small * 1.1),
        ("time per cluster flat (<=1.5x)", time_large <= time_small * 1.5),
    ]
    return rows
