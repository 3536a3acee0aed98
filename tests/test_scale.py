"""Scale: the nightly fan-out through Azurite queues, and the ARM call budget (issues 5 and 8).

Both build generated worlds (sandbox/scale.py) from the real sandbox parts and drive the product
only through ``function_app.py``'s entry points (timer → Azurite queue → worker). The fan-out test
audits 100 clusters (issue 8's "Done when"); ``python -m bench sandbox`` prints its numbers for 25
and 100 clusters (100: ~14 s build, ~18 s nightly on this machine).

The call budget. What a nightly audit sends to ARM and Graph today (counted per path):
- per subscription (5): the subscription, its managed clusters, its registries, its role
  assignments and role definitions — plus one more role-assignment page per 20 assignments (the
  stand-in's page size; assignments grow with the clusters' kubelets, so this stays linear);
- per registry (1): its replications;
- per cluster (3 + 1 Graph): the cluster, listClusterUserCredential, its egress public IP, and the
  kubelet identity's transitiveMemberOf in Graph.
That is ARM = 5·S + R + 3·C (+ pages), Graph = C. The budget below, 6·S + 2·R + 5·C + 10, leaves
room for one more call per cluster and a few per subscription. On the doubled estate (2, 4, 8) it
has no room for one read per (cluster, registry) pair (46 + 32 > 70), and the ratio check — ARM +
Graph may grow at most 2.15x when S, R and C all double (linear: 2.0x) — none for one read per
(cluster, subscription) pair (62 / 27 = 2.3x) or anything steeper.
"""

from __future__ import annotations

import pytest

from sandbox.scale import NightlyRun, fanout_yaml, run_nightly, scale_world

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


def budget(s: int, r: int, c: int) -> int:
    """The most ARM + Graph requests a nightly audit of S subscriptions, R registries and C
    clusters may send (see the module doc)."""
    return 6 * s + 2 * r + 5 * c + 10


def _check_fanout(run: NightlyRun) -> None:
    assert run.failures == [], run.failures
    assert run.timer_invocations == 1
    assert run.queue_messages == run.clusters, "the timer must enqueue exactly one message per cluster"
    assert run.worker_invocations == run.clusters, "one worker run per message, no retries"
    assert run.audited == run.clusters, f"only {run.audited} of {run.clusters} clusters are in the inventory"


def test_nightly_fans_out_one_message_per_cluster_and_audits_each() -> None:
    clusters = 100
    run = run_nightly(scale_world(fanout_yaml(clusters, registries=3, subscriptions=2)))
    print(run.summary())
    print("build split:", {k: round(v, 2) for k, v in run.build_split.items()})
    _check_fanout(run)
    # every tenth cluster runs a tag nobody pushed: those have IMAGE_NOT_FOUND, the others nothing
    broken = {f"aks-{c:03d}" for c in range(clusters) if c % 10 == 9}
    assert set(run.findings_by_cluster) == broken, run.findings_by_cluster
    assert all("IMAGE_NOT_FOUND" in codes for codes in run.findings_by_cluster.values())
    assert run.arm + run.graph <= budget(run.subscriptions, run.registries, run.clusters), run.requests
    # one cluster's share of the ARM requests: a constant, not growing with the estate
    assert run.arm / run.clusters <= 4.5, run.requests


def test_arm_and_graph_requests_grow_with_s_plus_r_plus_c_not_their_product() -> None:
    small = run_nightly(scale_world(fanout_yaml(4, registries=2, subscriptions=1, broken_every=0)))
    large = run_nightly(scale_world(fanout_yaml(8, registries=4, subscriptions=2, broken_every=0)))
    for run in (small, large):
        print(run.summary())
        _check_fanout(run)
        assert run.open_findings == 0, "a healthy estate has no findings"
        calls = run.arm + run.graph
        assert calls <= budget(run.subscriptions, run.registries, run.clusters), (
            f"S={run.subscriptions} R={run.registries} C={run.clusters}: {calls} ARM + Graph requests "
            f"over the linear budget {budget(run.subscriptions, run.registries, run.clusters)}"
        )
    # Doubling S, R and C doubles a linear count (plus a constant shrinking the ratio); a term in
    # R·C or S·C would quadruple, S·R·C would grow 8x.
    ratio = (large.arm + large.graph) / (small.arm + small.graph)
    assert ratio <= 2.15, f"ARM + Graph grew {ratio:.2f}x when S, R and C doubled"
