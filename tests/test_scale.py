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
from sandbox.world import World

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


# -- The fleet formulas of docs/SCALE.md, checked on measured sandbox runs ----------------------

ARM_PAGE = 20  # the ARM stand-in's page size (sandbox/arm.py PAGE_SIZE); Azure's pages are larger
KUBE_LISTS = 17  # Kubernetes requests per small cluster: one page of each list pullwatch reads


def _pages(items: int, page: int = ARM_PAGE) -> int:
    return max(1, -(-items // page))


def arm_reads(world: World) -> int:
    """docs/SCALE.md's ARM formula: per subscription the subscription, one list each of managed
    clusters, registries, role assignments and role definitions (in pages); per registry its
    replications; per cluster the cluster, listClusterUserCredential and its egress public IP."""
    registry_sub = {r.key: r.subscription for r in world.registries.values()}
    total = 0
    for sub in world.subscriptions:
        clusters = sum(1 for c in world.clusters.values() if c.subscription == sub)
        registries = sum(1 for r in world.registries.values() if r.subscription == sub)
        assignments = 0
        for a in world.role_assignments:
            kind, _, name = a.scope.partition(":")
            in_sub = registry_sub.get(name) if kind == "registry" else (name or world.subscriptions[0])
            assignments += in_sub == sub
        total += 1 + _pages(clusters) + _pages(registries) + _pages(assignments) + 1
    return total + len(world.registries) + 3 * len(world.clusters)


def storage_bounds(clusters: int) -> tuple[int, int]:
    """docs/SCALE.md's Storage formula: per cluster one message sent, received and deleted (the
    receive may be batched) and six table transactions (inventory, findings state), plus a few."""
    return 2 * clusters + 6 * clusters, 3 * clusters + 6 * clusters + 12


@pytest.fixture(scope="module")
def fleet_runs() -> list[tuple[World, NightlyRun]]:
    runs = []
    for clusters, registries, subscriptions in ((10, 2, 1), (20, 4, 2)):
        world = scale_world(fanout_yaml(clusters, registries, subscriptions, broken_every=0))
        runs.append((world, run_nightly(world)))
    return runs


def test_arm_reads_are_the_per_subscription_registry_and_cluster_formula(
    fleet_runs: list[tuple[World, NightlyRun]],
) -> None:
    for world, run in fleet_runs:
        _check_fanout(run)
        assert run.arm == arm_reads(world), (run.summary(), arm_reads(world))
        assert run.graph == run.clusters, "one transitiveMemberOf per cluster's kubelet identity"


def test_kubernetes_requests_are_a_constant_per_cluster(fleet_runs: list[tuple[World, NightlyRun]]) -> None:
    for _, run in fleet_runs:
        assert set(run.requests["kubernetes"].values()) == {KUBE_LISTS}, run.requests["kubernetes"]
        assert len(run.requests["kubernetes"]) == run.clusters


def test_registry_requests_grow_with_registries_not_clusters(
    fleet_runs: list[tuple[World, NightlyRun]],
) -> None:
    per_registry = [set(run.requests["registry"].values()) for _, run in fleet_runs]
    assert all(len(values) == 1 for values in per_registry), per_registry
    assert per_registry[0] == per_registry[1], "twice the clusters, the same requests per registry"


def test_storage_transactions_are_linear_in_clusters(fleet_runs: list[tuple[World, NightlyRun]]) -> None:
    for _, run in fleet_runs:
        low, high = storage_bounds(run.clusters)
        assert low <= run.storage_transactions <= high, (run.clusters, run.storage)
