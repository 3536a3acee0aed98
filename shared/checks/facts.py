"""What one audit of one cluster collected: the only input of the checks (frozen, no I/O).

:class:`ClusterFacts` holds everything the checks of :mod:`shared.checks.registered` read: the
cluster and its pull identity from ARM, the role assignments and definitions, the Kubernetes
snapshot, the images in use, every registry answer, the network facts, the pull-secret trials
(read-secrets on), the probe results (probe on), and what the previous audit saw. Where a fact
could not be read, its ``*_unreadable`` field says why: a check then reports ``CHECK_INCOMPLETE``,
never a pass. :meth:`shared.pipeline.Auditor.collect` fills it in through the seams.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.checks.images import ImageUsage
from shared.checks.secrets import CredentialTrials
from shared.clients.registry import ImageResult
from shared.cloud import AZURE_PUBLIC, Cloud
from shared.correlate import CrashFacts
from shared.findings import Finding
from shared.model import ClusterInfo, PullIdentity, RegistryInfo, RoleAssignment, RoleDefinition
from shared.plan import KnownCluster
from shared.reference import ImageRef
from shared.workloads import Snapshot


@dataclass(frozen=True)
class ClusterFacts:
    cluster_id: str
    cluster: ClusterInfo | None = None  # None: gone, or unreadable (``cluster_unreadable``)
    gone: bool = False
    cluster_unreadable: str | None = None
    previous: KnownCluster | None = None  # what the last audit saw (inventory)

    # Kubernetes
    snapshot: Snapshot | None = None
    snapshot_unreadable: str | None = None
    usages: tuple[ImageUsage, ...] = ()  # every image every workload uses, with its pools
    invalid_references: tuple[Finding, ...] = ()  # IMAGE_REFERENCE_INVALID, found while reading usages
    used_refs: frozenset[ImageRef] = frozenset()  # usages, or the previous audit's images
    hosts: frozenset[str] = frozenset()  # registry hosts in use or configured
    running_images: frozenset[str] = frozenset()  # images of pods that run (pulled before)
    crashes: tuple[CrashFacts, ...] = ()  # pods crashing with exec format error

    # ARM: registries, identity, roles
    acrs: Mapping[str, RegistryInfo] = field(default_factory=dict)  # login server -> ACR
    acrs_unlisted: str | None = None  # why some subscription's ACR list could not be read
    used_acrs: tuple[RegistryInfo, ...] = ()
    identity: PullIdentity | None = None
    identity_unreadable: str | None = None
    assignments: tuple[RoleAssignment, ...] = ()
    assignments_unreadable: Mapping[str, str] = field(default_factory=dict)  # subscription -> why
    subscriptions_read: frozenset[str] = frozenset()
    definitions: Mapping[str, RoleDefinition] = field(default_factory=dict)
    groups: tuple[str, ...] = ()
    groups_unreadable: str | None = None
    repositories: Mapping[str, frozenset[str]] = field(default_factory=dict)  # host -> repositories

    # network, from ARM
    egress_ips: tuple[str, ...] | None = None  # None: unknown
    endpoint_vnets: Mapping[str, tuple[str, ...] | None] = field(default_factory=dict)

    # registries, pull secrets, probes
    image_results: Mapping[tuple[str, str], ImageResult] = field(default_factory=dict)
    credential_trials: CredentialTrials | None = None  # None: read-secrets off
    probe_findings: tuple[Finding, ...] = ()
    probe_unavailable: str | None = None

    # settings the checks read
    pod_grace_seconds: float = 0.0
    cloud: Cloud = AZURE_PUBLIC  # the Azure cloud pullwatch runs in (PULLWATCH_CLOUD)
