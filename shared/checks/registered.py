"""The checks an audit runs on one cluster: a registered list of pure functions
``ClusterFacts -> list[Finding]``, and the pure steps that settle their findings.

A new check is one function here (or in its group's module, registered here), its catalogue line
in :mod:`shared.findings` and its test from plain :class:`~shared.checks.facts.ClusterFacts`. No check
imports a client or calls anything that does I/O: everything was collected before
(:meth:`shared.pipeline.Auditor.collect`).

Public interface::

    CHECKS: tuple[Check, ...]
    run_checks(facts) -> list[Finding]          # every check, then settle()
    settle(cluster, findings) -> list[Finding]  # the cluster's view, CHECK_INCOMPLETEs merged, sorted
    incomplete(cluster_id, check, reason, *, registry=None, message=None, **evidence) -> Finding
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from typing import Any

from shared.checks.facts import ClusterFacts
from shared.checks.images import image_findings, region_findings
from shared.checks.network import network_findings
from shared.checks.pods import pod_findings
from shared.checks.registry_steps import image_verdict
from shared.checks.roles import role_findings
from shared.checks.secrets import secret_findings
from shared.clients.registry import is_acr_host
from shared.findings import Finding, dedupe, sort_findings
from shared.model import ClusterInfo

Check = Callable[[ClusterFacts], list[Finding]]


def incomplete(
    cluster_id: str | None,
    check: str,
    reason: str,
    *,
    registry: str | None = None,
    message: str | None = None,
    **evidence: Any,
) -> Finding:
    """CHECK_INCOMPLETE: the ``check`` group (or ``all``) could not run, and why."""
    name = cluster_id.rstrip("/").rsplit("/", 1)[-1] if cluster_id else "the estate"
    return Finding(
        code="CHECK_INCOMPLETE",
        cluster=cluster_id,
        registry=registry,
        message=message or f"Could not run the {check} checks for {name}: {reason}.",
        evidence={"check": check, "reason": reason, **evidence},
    )


def coverage(facts: ClusterFacts) -> list[Finding]:
    """What could not be read at all: the cluster, its API server, an ACR list."""
    out = []
    if facts.cluster_unreadable:
        out.append(incomplete(facts.cluster_id, "all", facts.cluster_unreadable))
    if facts.snapshot_unreadable:
        out.append(incomplete(facts.cluster_id, "kubernetes", facts.snapshot_unreadable))
    if facts.acrs_unlisted:
        for host in sorted(facts.hosts):
            if is_acr_host(host) and host not in facts.acrs:
                out.append(incomplete(facts.cluster_id, "roles", facts.acrs_unlisted, registry=host))
    return out


def roles(facts: ClusterFacts) -> list[Finding]:
    if facts.cluster is None:
        return []
    return role_findings(
        facts.cluster,
        facts.identity,
        facts.used_acrs,
        {host: set(repos) for host, repos in facts.repositories.items()},
        facts.assignments,
        facts.definitions,
        facts.groups,
        assignments_unreadable=dict(facts.assignments_unreadable) or None,
        groups_unreadable=facts.groups_unreadable,
        identity_unreadable=facts.identity_unreadable,
        subscriptions_read=facts.subscriptions_read,
    )


def abac_mode_switched(facts: ClusterFacts) -> list[Finding]:
    """A registry whose mode flipped to ABAC since the last audit saw it."""
    cluster, previous = facts.cluster, facts.previous
    if cluster is None or previous is None:
        return []
    out = []
    for reg in facts.used_acrs:
        before = previous.registry_modes.get(reg.login_server)
        if before and before != reg.role_assignment_mode and reg.abac:
            out.append(
                Finding(
                    code="ABAC_MODE_SWITCHED",
                    cluster=cluster.id,
                    registry=reg.login_server,
                    message=(
                        f"{reg.name} was switched to ABAC repository permissions: nodes of {cluster.name} "
                        "keep cached credentials that fail with 401 until kubelet restarts or nodes are "
                        "replaced, even where the new roles are right."
                    ),
                    evidence={"before": before, "now": reg.role_assignment_mode},
                    remediation=(
                        "az aks nodepool upgrade --node-image-only --resource-group "
                        f"{shlex.quote(cluster.resource_group)} --cluster-name {shlex.quote(cluster.name)} "
                        "--name <pool>  # reimage nodes after granting Container Registry Repository Reader"
                    ),
                )
            )
    return out


def network(facts: ClusterFacts) -> list[Finding]:
    """Registry firewalls and private endpoints against the cluster's network, from ARM."""
    if facts.cluster is None:
        return []
    return network_findings(
        facts.cluster, list(facts.used_acrs), facts.egress_ips, dict(facts.endpoint_vnets)
    )


def regions(facts: ClusterFacts) -> list[Finding]:
    cluster = facts.cluster
    if cluster is None:
        return []
    return [
        f
        for reg in facts.used_acrs
        for f in region_findings(
            cluster.id, cluster.location, reg.login_server, reg.location, reg.replication_locations
        )
    ]


def _registry_findings(facts: ClusterFacts) -> list[Finding]:
    if facts.cluster is None:
        return []
    pools = [(p.name, p.os, p.arch) for p in facts.cluster.node_pools]
    return image_findings(facts.cluster.id, list(facts.usages), facts.image_results, pools)


def images(facts: ClusterFacts) -> list[Finding]:
    """What the registries answered for every image in use (a missing image that pods still run
    is :func:`image_deleted_in_use`'s), and the references that do not parse."""
    return [*facts.invalid_references] + [
        f
        for f in _registry_findings(facts)
        if not (f.code == "IMAGE_NOT_FOUND" and f.image in facts.running_images)
    ]


def image_deleted_in_use(facts: ClusterFacts) -> list[Finding]:
    """A missing image that pods still run: they pulled it before; the next pull on a new node fails."""
    return [
        f.with_(
            code="IMAGE_DELETED_IN_USE",
            severity=None,
            message=(
                f"{f.image} was deleted from {f.registry} while {f.workload} still runs it: its pods run now, "
                "the next pull on a new node fails."
            ),
            remediation=f"Push {f.image} again, or roll {f.workload} to an image that exists.",
        )
        for f in _registry_findings(facts)
        if f.code == "IMAGE_NOT_FOUND" and f.image in facts.running_images
    ]


def pods(facts: ClusterFacts) -> list[Finding]:
    if facts.snapshot is None:
        return []
    return pod_findings(facts.snapshot, grace_seconds=facts.pod_grace_seconds)


def secrets(facts: ClusterFacts) -> list[Finding]:
    cluster, snapshot = facts.cluster, facts.snapshot
    if cluster is None or snapshot is None:
        return []
    same_tenant = {
        r.login_server
        for r in facts.used_acrs
        if not r.tenant_id or not cluster.tenant_id or r.tenant_id.lower() == cluster.tenant_id.lower()
    }
    anonymous: dict[tuple[str, str], bool] = {}
    for result in facts.image_results.values():
        if result.identity != "pullwatch":
            continue
        key = (result.ref.registry, result.ref.repository)
        verdict = image_verdict(result)
        if verdict is not None and verdict.auth_required:
            anonymous[key] = False
        elif result.auth == "anonymous" and verdict is None:
            anonymous[key] = True
    return secret_findings(
        snapshot,
        kubelet_registries=same_tenant,
        anonymous=anonymous,
        credential_trials=facts.credential_trials,
        cloud=facts.cloud,
    )


def probes(facts: ClusterFacts) -> list[Finding]:
    """The opt-in in-cluster probe's results (run while collecting)."""
    out = list(facts.probe_findings)
    if facts.probe_unavailable:
        out.append(incomplete(facts.cluster_id, "cluster", f"probe could not run: {facts.probe_unavailable}"))
    return out


CHECKS: tuple[Check, ...] = (
    coverage,
    roles,
    abac_mode_switched,
    network,
    regions,
    images,
    image_deleted_in_use,
    pods,
    secrets,
    probes,
)


def run_checks(facts: ClusterFacts, checks: Sequence[Check] = CHECKS) -> list[Finding]:
    """Every registered check on ``facts``, settled (see :func:`settle`)."""
    findings = [f for check in checks for f in check(facts)]
    return settle(facts.cluster, findings) if facts.cluster is not None else findings


# --- settling: pure steps over the checks' findings ------------------------------------------------

_ARM_NETWORK = ("REGISTRY_FIREWALL_DENIED", "REGISTRY_PUBLIC_ACCESS_DISABLED")
_DEFINITE_SECRET = (
    "PULL_SECRET_MISSING",
    "PULL_SECRET_MALFORMED",
    "PULL_SECRET_NO_ENTRY_FOR_REGISTRY",
    "PULL_SECRET_REJECTED",
    "PULL_AUTH_REQUIRED",
)


def settle(cluster: ClusterInfo, findings: list[Finding]) -> list[Finding]:
    """The findings from the cluster's point of view, one per identity, CHECK_INCOMPLETEs of one
    identity merged, most urgent first."""
    return sort_findings(dedupe(merge_incomplete(from_the_clusters_view(cluster, findings))))


def merge_incomplete(findings: list[Finding]) -> list[Finding]:
    """CHECK_INCOMPLETE findings with one identity (e.g. the roles and the network check of one
    registry) become one that names every check (evidence ``check`` "roles,network", as compare()
    reads it). De-duplication would keep only the first, and compare() would then resolve the
    other checks' findings by silence."""
    out: list[Finding] = []
    at: dict[tuple[str | None, ...], int] = {}
    for f in findings:
        if f.code != "CHECK_INCOMPLETE":
            out.append(f)
            continue
        if f.key not in at:
            at[f.key] = len(out)
            out.append(f)
            continue
        kept = out[at[f.key]]
        checks = str(kept.evidence.get("check") or "all").split(",")
        more = [c for c in str(f.evidence.get("check") or "all").split(",") if c not in checks]
        if not more:
            continue
        out[at[f.key]] = kept.with_(
            message=f"{kept.message} {f.message}",
            evidence={**kept.evidence, "check": ",".join(checks + more)},
        )
    return out


def from_the_clusters_view(cluster: ClusterInfo, findings: list[Finding]) -> list[Finding]:
    """Keep findings about the cluster, not about where pullwatch itself runs.

    - A firewall 403 that pullwatch's own probe met says the registry refuses *pullwatch's* address;
      whether it refuses the cluster's is what the ARM network check decides. Unless that check also
      found the cluster denied, the probe's 403 means only that images could not be checked.
    - An image that could not be checked for want of credentials, next to a definite pull-secret
      finding for the same workload and image, adds nothing: the secret finding says why.
    """
    arm_denied = {f.registry for f in findings if f.code in _ARM_NETWORK and "identity" not in f.evidence}
    secret_problem = {(f.namespace, f.workload, f.image) for f in findings if f.code in _DEFINITE_SECRET}
    secret_workloads = {(ns, wl) for ns, wl, _ in secret_problem}
    out = []
    for f in findings:
        probed = "identity" in f.evidence  # met by pullwatch's own registry probe
        if f.code == "REGISTRY_FIREWALL_DENIED" and probed:
            if f.registry in arm_denied:
                continue  # the ARM network check already says why the cluster is refused
            reason = (
                "the registry's firewall refuses pullwatch's own network, so its images could not be checked "
                "(allow pullwatch's outbound IP, or give it VNet integration)"
            )
            out.append(
                incomplete(
                    cluster.id,
                    "images",
                    reason,
                    registry=f.registry,
                    message=f"Could not check the images {cluster.name} pulls from {f.registry}: {reason}.",
                    status=f.evidence.get("status"),
                    error_code=f.evidence.get("error_code"),
                )
            )
            continue
        if (
            f.code == "REGISTRY_AUTH_REJECTED"
            and probed
            and str(f.evidence.get("identity")).startswith("secret:")
        ):
            continue  # a pull secret's credentials refused: PULL_SECRET_REJECTED says it, per workload
        if (
            f.code == "CHECK_INCOMPLETE"
            and f.image
            and (
                (f.namespace, f.workload, f.image) in secret_problem
                or (
                    (f.namespace, f.workload) in secret_workloads
                    and str(f.evidence.get("check")).startswith("images")
                )
            )
        ):
            continue
        out.append(f)
    return out
