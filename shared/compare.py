"""Compare an audit's findings with the last stored state: new, still open, resolved (pure).

Only *new* and *resolved* findings produce messages; *still open* ones are repeated in a reminder
at most every ``Settings.reminder_hours`` (the nightly digest).

A target whose checks were incomplete never resolves its findings by silence. Every check follows
one convention: a ``CHECK_INCOMPLETE`` finding's evidence has ``"check"`` (a catalogue group —
roles, images, network, access, secrets, cluster, performance —, a source of facts from
:data:`SOURCE_FEEDS` — kubernetes, arm, registry, storage — or ``"all"``) and ``"reason"``, and its
``registry`` is set when it concerns one registry. A previous finding that is missing from the
current audit stays open when a current ``CHECK_INCOMPLETE`` of the same cluster covers its group
(a source covers every group it feeds; ``"all"`` covers every group) and its registry (the
incomplete check's registry is None, or the same host).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.findings import CATALOGUE, Finding, dedupe, sort_findings

INCOMPLETE = "CHECK_INCOMPLETE"
ALL_CHECKS = "all"

#: Each source of facts and the catalogue groups whose findings it feeds: when a source cannot be
#: read, every finding of those groups is unconfirmed (never resolved by the outage).
SOURCE_FEEDS: dict[str, frozenset[str]] = {
    # workloads, pods and their events, pull secrets, node placement: which image is pulled where,
    # so the image, registry (probed per image), secret, pod, probe and latency findings
    "kubernetes": frozenset({"cluster", "images", "secrets", "network", "access", "performance"}),
    # the cluster, registries, role assignments and definitions, networks, regions
    "arm": frozenset({"roles", "network", "performance"}),
    # one registry's pull path (set ``registry``): its image, network, access and latency findings
    "registry": frozenset({"images", "network", "access", "performance"}),
    # the stored state itself: nothing can be compared
    "storage": frozenset({ALL_CHECKS}),
}


#: A registry-wide failure found now (the registry could not be reached, or refused or failed every
#: read) hides every image behind it: that registry's findings of these groups are unconfirmed, as
#: if a CHECK_INCOMPLETE named it (the failure's own group is left to resolve: a new failure of
#: the same step replaces the old one).
_BEHIND_THE_NETWORK = frozenset({"images", "access", "secrets", "performance"})
_BEHIND_ACCESS = frozenset({"images", "secrets", "performance"})
REGISTRY_FAILURE_HIDES: dict[str, frozenset[str]] = {
    "REGISTRY_DNS_FAILURE": _BEHIND_THE_NETWORK,
    "REGISTRY_UNREACHABLE": _BEHIND_THE_NETWORK,
    "REGISTRY_TLS_ERROR": _BEHIND_THE_NETWORK,
    "REGISTRY_FIREWALL_DENIED": _BEHIND_THE_NETWORK,
    "REGISTRY_AUTH_REJECTED": _BEHIND_ACCESS,
    "REGISTRY_RATE_LIMITED": _BEHIND_ACCESS,
    "REGISTRY_SERVER_ERROR": _BEHIND_ACCESS,
}


def _registry_unreadable(finding: Finding) -> bool:
    """A registry-wide failure met on pullwatch's own pull path (its evidence names the identity
    that tried); the network check's findings from ARM alone hide nothing."""
    return finding.code in REGISTRY_FAILURE_HIDES and "identity" in finding.evidence


def covered_groups(check: str | None) -> frozenset[str]:
    """The catalogue groups a CHECK_INCOMPLETE's ``check`` leaves unconfirmed (comma-separated
    groups or sources; ``"all"`` for every group)."""
    out: set[str] = set()
    for name in str(check or ALL_CHECKS).lower().split(","):
        name = name.strip()
        out |= SOURCE_FEEDS.get(name, {name})
    return frozenset(out)


@dataclass(frozen=True)
class Changes:
    """What changed for one target between two audits (each tuple sorted, most urgent first)."""

    new: tuple[Finding, ...] = ()
    still_open: tuple[Finding, ...] = ()
    resolved: tuple[Finding, ...] = ()

    @property
    def open(self) -> tuple[Finding, ...]:
        """Every finding that is open after this audit (what the state store keeps)."""
        return self.new + self.still_open

    @property
    def changed(self) -> bool:
        """True when there is something to announce (new or resolved)."""
        return bool(self.new or self.resolved)


def _lower(value: str | None) -> str | None:
    return value.lower() if value else None


def _covers(incomplete: Finding, previous: Finding) -> bool:
    """Does this current CHECK_INCOMPLETE (or registry-wide failure) leave ``previous``
    unconfirmed (so it must stay open)?"""
    if _lower(incomplete.cluster) != _lower(previous.cluster):
        return False
    if incomplete.code in REGISTRY_FAILURE_HIDES:
        checks = REGISTRY_FAILURE_HIDES[incomplete.code]
    else:
        checks = covered_groups(incomplete.evidence.get("check"))
    group = CATALOGUE[previous.code].group
    if ALL_CHECKS not in checks and group not in checks:
        return False
    return incomplete.registry is None or _lower(incomplete.registry) == _lower(previous.registry)


def compare(previous: Iterable[Finding], current: Iterable[Finding]) -> Changes:
    """Split ``current`` against ``previous`` by finding identity (``Finding.key``).

    * new: in current, not in previous;
    * still open: in both (the current finding, with its fresher message and evidence), plus a
      previous finding missing now whose check did not complete, or whose registry could not be
      read (the previous finding is kept);
    * resolved: in previous, missing now, and its check completed.
    """
    before = {f.key: f for f in dedupe(previous)}
    now = {f.key: f for f in dedupe(current)}
    incomplete = [f for f in now.values() if f.code == INCOMPLETE or _registry_unreadable(f)]
    new = [f for k, f in now.items() if k not in before]
    still_open = [f for k, f in now.items() if k in before]
    resolved = []
    for key, old in before.items():
        if key in now:
            continue
        if old.code != INCOMPLETE and any(_covers(i, old) for i in incomplete):
            still_open.append(old)
        else:
            resolved.append(old)
    return Changes(
        new=tuple(sort_findings(new)),
        still_open=tuple(sort_findings(still_open)),
        resolved=tuple(sort_findings(resolved)),
    )
