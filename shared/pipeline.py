"""The audit of one cluster: collect → checks → correlate (then compare → deliver in :mod:`shared.app`).

:class:`Auditor` reads everything one cluster's checks need into one frozen
:class:`~shared.checks.facts.ClusterFacts` through the seams it is given (ARM and Graph, network facts included; Kubernetes; the
registries; :func:`connect_auditor` builds the real ones), runs the registered
pure checks (:mod:`shared.checks.registered`) and links each symptom to its root cause
(:mod:`shared.correlate`). It shares what can be shared across the clusters of one run:
subscription-wide ARM lists, and registry probes (one check per unique image). Every check that
cannot run becomes a ``CHECK_INCOMPLETE`` finding, never a silent pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from azure.core.credentials import TokenCredential

from shared.checks.facts import ClusterFacts
from shared.checks.images import ImageUsage
from shared.checks.pods import exec_format_crashes
from shared.checks.registered import incomplete, run_checks
from shared.checks.roles import registries_with_identity_role, resolve_pull_identity
from shared.checks.scheduling import image_usages
from shared.checks.secrets import credential_candidates, trial_key
from shared.clients.arm import ArmAccessDenied, ArmClient, ArmNotFound
from shared.clients.registry import ImageResult, ImageTarget, RegistryClient, RegistryCredential
from shared.config import Settings
from shared.correlate import correlate
from shared.errors import PullwatchError, UpstreamError
from shared.findings import Finding, sort_findings
from shared.model import ClusterInfo, PullIdentity, RegistryInfo, RoleAssignment, RoleDefinition
from shared.plan import KnownCluster
from shared.pull_credentials import SecretReader
from shared.reference import ImageRef, ReferenceError, parse_reference
from shared.render import scrub_finding
from shared.workloads import Snapshot

__all__ = ["AuditOptions", "AuditResult", "Auditor", "ClusterResult", "connect_auditor", "incomplete"]

log = logging.getLogger("pullwatch.audit")

AKS_SERVER_SCOPE = "6dae42f8-4368-4678-94ff-3960e28e3630/.default"


@dataclass(frozen=True)
class AuditOptions:
    subscriptions: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    registries: tuple[str, ...] = ()
    probe: bool = False
    read_secrets: bool = False
    notify: bool = False


@dataclass
class ClusterResult:
    cluster_id: str
    findings: list[Finding]
    inventory: KnownCluster | None = None
    cluster: ClusterInfo | None = None
    gone: bool = False  # the cluster no longer exists
    elapsed_s: float = 0.0

    @property
    def tags(self) -> Mapping[str, str]:
        return self.cluster.tags if self.cluster else {}


@dataclass
class AuditResult:
    clusters: list[ClusterResult] = field(default_factory=list)
    unchecked: list[dict[str, Any]] = field(default_factory=list)
    requests: dict[str, Any] = field(default_factory=dict)

    @property
    def findings(self) -> list[Finding]:
        return sort_findings(f for c in self.clusters for f in c.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "findings": [f.to_dict() for f in self.findings],
            "unchecked": self.unchecked,
            "clusters": [
                {
                    "id": c.cluster_id,
                    "findings": len(c.findings),
                    "gone": c.gone,
                    "seconds": round(c.elapsed_s, 2),
                }
                for c in self.clusters
            ],
            "requests": self.requests,
        }


def safe_reason(exc: BaseException) -> str:
    """A project error's message is safe to show; anything else only by its type."""
    if isinstance(exc, PullwatchError):
        return str(exc)
    return f"{type(exc).__name__} (unexpected error)"


class Auditor:
    """One audit run over the seams it is given: ARM (and Graph), Kubernetes (``kube_connect``:
    cluster + kubeconfig -> client) and the registries; network facts (egress IPs, private
    endpoints) come through the ARM seam too. :func:`connect_auditor` builds them for pullwatch's
    own identity."""

    def __init__(
        self,
        settings: Settings,
        *,
        arm: ArmClient,
        kube_connect: Callable[[ClusterInfo, bytes], Any],
        registry: RegistryClient,
        own_seams: bool = False,
    ) -> None:
        self.settings = settings
        self.arm = arm
        self.registry = registry
        self._kube_connect = kube_connect
        self._own_seams = own_seams  # close them with the Auditor
        self._registries: dict[str, list[RegistryInfo]] = {}
        self._registries_unreadable: dict[str, str] = {}  # subscription -> why its ACR list failed
        self._assignments: dict[str, list[RoleAssignment] | str] = {}
        self._image_results: dict[tuple[str, str], ImageResult] = {}

    def close(self) -> None:
        if self._own_seams:
            self.registry.close()
            self.arm.close()

    def __enter__(self) -> Auditor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- discovery --------------------------------------------------------------------------

    def subscriptions(self, wanted: Sequence[str] = ()) -> list[str]:
        if wanted:
            return list(dict.fromkeys(wanted))
        if self.settings.subscriptions:
            return list(self.settings.subscriptions)
        return [s.subscription_id for s in self.arm.list_subscriptions()]

    def discover(
        self, subscriptions: Sequence[str] = (), clusters: Sequence[str] = ()
    ) -> tuple[list[str], list[Finding]]:
        """Cluster IDs to audit: the given ones, or every cluster in the subscriptions."""
        if clusters or self.settings.clusters:
            return list(dict.fromkeys(clusters or self.settings.clusters)), []
        found: list[str] = []
        problems: list[Finding] = []
        for sub in self.subscriptions(subscriptions):
            try:
                found.extend(c.id for c in self.arm.list_clusters(sub))
            except UpstreamError as exc:
                problems.append(
                    incomplete(
                        None, "all", f"cannot list clusters in subscription {sub}: {exc}", subscription=sub
                    )
                )
        return found, problems

    # --- cached ARM lists (one per subscription per run) ---------------------------------------

    def registries_in(self, subscription: str) -> list[RegistryInfo]:
        key = subscription.lower()
        if key not in self._registries:
            try:
                self._registries[key] = self.arm.list_registries(subscription)
            except UpstreamError as exc:
                log.warning("cannot list registries in %s: %s", subscription, exc)
                self._registries[key] = []
                self._registries_unreadable[key] = (
                    f"cannot list the container registries of subscription {subscription}: {exc}"
                )
        return self._registries[key]

    def assignments_in(self, subscription: str) -> list[RoleAssignment] | str:
        """The subscription's role assignments, or why they could not be read."""
        key = subscription.lower()
        if key not in self._assignments:
            try:
                self._assignments[key] = self.arm.list_role_assignments(subscription)
            except UpstreamError as exc:
                self._assignments[key] = str(exc)
        return self._assignments[key]

    # --- clusters ---------------------------------------------------------------------------

    def audit_clusters(
        self,
        cluster_ids: Sequence[str],
        options: AuditOptions,
        previous: Mapping[str, KnownCluster] | None = None,
    ) -> AuditResult:
        """Audit each cluster; ``previous`` is what the last audit of each saw (the inventory), from
        which changes such as a registry switched to ABAC mode are recognised."""
        result = AuditResult()
        for cluster_id in cluster_ids:
            start = time.monotonic()
            try:
                one = self.audit_cluster(cluster_id, options, (previous or {}).get(cluster_id.lower()))
            except Exception as exc:  # one broken cluster never stops the others
                if isinstance(exc, PullwatchError):  # expected (its message says why): no traceback
                    log.warning("audit of %s failed: %s", cluster_id, exc)
                else:
                    log.exception("audit of %s failed", cluster_id)
                one = ClusterResult(cluster_id, [incomplete(cluster_id, "all", safe_reason(exc))])
            one.elapsed_s = time.monotonic() - start
            one.findings = [scrub_finding(f) for f in one.findings]
            result.clusters.append(one)
            result.unchecked.extend(
                {"cluster": cluster_id, "check": f.evidence.get("check"), "reason": f.evidence.get("reason")}
                for f in one.findings
                if f.code == "CHECK_INCOMPLETE"
            )
        result.requests = {**self.arm.request_counts(), "registry": self.registry.request_counts()}
        return result

    def audit_cluster(
        self, cluster_id: str, options: AuditOptions, previous: KnownCluster | None = None
    ) -> ClusterResult:
        """Collect the facts, run the registered checks, link symptoms to their root causes."""
        facts = self.collect(cluster_id, options, previous)
        if facts.gone:
            return ClusterResult(cluster_id, [], gone=True)
        findings = correlate(run_checks(facts), facts.crashes)
        return ClusterResult(facts.cluster_id, findings, seen(facts, findings), facts.cluster)

    # --- collect: every fact the checks read, through the seams ---------------------------------

    def collect(self, cluster_id: str, options: AuditOptions, previous: KnownCluster | None) -> ClusterFacts:
        """Everything one cluster's checks need, read once. What cannot be read is recorded as
        why (``*_unreadable``), never left out silently."""
        try:
            cluster = self.arm.get_cluster(cluster_id)
        except ArmNotFound:
            return ClusterFacts(cluster_id, gone=True)
        except ArmAccessDenied as exc:
            return ClusterFacts(cluster_id, cluster_unreadable=f"cannot read the cluster: {exc}")
        reading = options.read_secrets or self.settings.read_secrets
        subs = list(dict.fromkeys([cluster.subscription_id, *self.subscriptions(options.subscriptions)]))
        # The cluster's Kubernetes objects, the registries and role assignments of each subscription,
        # the pull identity with its groups and the egress IPs do not depend on one another: read them
        # at once, so the audit waits for the slowest of them, not for their sum. Each is still read
        # once (registries_in and assignments_in keep what they read for the steps below).
        with ThreadPoolExecutor(max_workers=5, thread_name_prefix="collect") as pool:
            snapshot_read = pool.submit(self._snapshot, cluster, reading)
            registries_read = pool.submit(lambda: [self.registries_in(sub) for sub in subs])
            assignments_read = pool.submit(lambda: [self.assignments_in(sub) for sub in subs])
            identity_read = pool.submit(self._pull_identity, cluster)
            egress_read = pool.submit(self._egress_ips, cluster)
            snapshot, kube, snapshot_unreadable = snapshot_read.result()
            registries_read.result()
            assignments_read.result()
            identity, identity_unreadable, groups, groups_unreadable = identity_read.result()
            egress_ips = egress_read.result()

        # images the cluster uses
        usages: list[ImageUsage] = []
        invalid: list[Finding] = []
        if snapshot is not None:
            for got in image_usages(snapshot, cluster.node_pools):
                if isinstance(got, Finding):
                    invalid.append(got)
                else:
                    usages.append(got)
        used_refs = {u.ref for u in usages}
        hosts = {r.registry for r in used_refs} | set(self.settings.registries) | set(options.registries)
        if snapshot is None and previous is not None:  # fall back on what the last audit saw
            hosts |= set(previous.registries)
            for image in previous.images:
                try:
                    used_refs.add(parse_reference(image))
                except ReferenceError:
                    pass

        # registries from ARM: every ACR of the watched subscriptions (one list per subscription)
        acrs: dict[str, RegistryInfo] = {}
        for sub in subs:
            for reg in self.registries_in(sub):
                acrs.setdefault(reg.login_server.lower(), reg)
        unlisted = next(
            (
                self._registries_unreadable[s.lower()]
                for s in subs
                if s.lower() in self._registries_unreadable
            ),
            None,
        )

        # the pull identity's roles
        assignments: list[RoleAssignment] = []
        unreadable: dict[str, str] = {}
        read: set[str] = set()
        for sub in subs:
            got_assignments = self.assignments_in(sub)
            if isinstance(got_assignments, str):
                unreadable[sub] = got_assignments
            else:
                read.add(sub)
                assignments.extend(got_assignments)
        used_acrs = [acrs[h] for h in sorted(hosts) if h in acrs]
        if identity is not None:
            for reg in registries_with_identity_role(identity, list(acrs.values()), assignments, groups):
                if reg not in used_acrs:
                    used_acrs.append(reg)
        repos: dict[str, set[str]] = {}
        for ref in used_refs:
            repos.setdefault(ref.registry, set()).add(ref.repository)
        definitions: dict[str, RoleDefinition] = {}
        if used_acrs:
            try:
                definitions = self.arm.definitions_for(
                    assignments, f"/subscriptions/{cluster.subscription_id}"
                )
            except UpstreamError as exc:
                unreadable = {sub: f"role definitions: {exc}" for sub in subs}
                read = set()

        # registries: the pull path for every unique image (shared across the run's clusters),
        # with the workload's own pull secret where the kubelet identity does not serve the image
        credentials: dict[str, RegistryCredential] = {}
        secrets = SecretReader(kube) if reading and snapshot is not None and kube is not None else None
        if secrets is not None and snapshot is not None:
            usages = self._with_secret_credentials(usages, snapshot, secrets, acrs, cluster, credentials)
        results = self._check_images(used_refs, usages, acrs, credentials)
        trials = None
        if secrets is not None and snapshot is not None:
            trials = self._try_pull_secrets(snapshot, secrets, cluster, used_acrs)

        probe_findings: list[Finding] = []
        probe_unavailable = None
        if snapshot is not None and (options.probe or self.settings.probe):
            from shared.probe import run_probes

            try:
                probe_findings = run_probes(kube, cluster, snapshot, self.settings)
            except PullwatchError as exc:
                probe_unavailable = str(exc)

        return ClusterFacts(
            cluster_id=cluster.id,
            cluster=cluster,
            previous=previous,
            snapshot=snapshot,
            snapshot_unreadable=snapshot_unreadable,
            usages=tuple(usages),
            invalid_references=tuple(invalid),
            used_refs=frozenset(used_refs),
            hosts=frozenset(hosts),
            running_images=frozenset(running_images(snapshot)),
            crashes=tuple(exec_format_crashes(snapshot)) if snapshot is not None else (),
            acrs=acrs,
            acrs_unlisted=unlisted,
            used_acrs=tuple(used_acrs),
            identity=identity,
            identity_unreadable=identity_unreadable,
            assignments=tuple(assignments),
            assignments_unreadable=unreadable,
            subscriptions_read=frozenset(read),
            definitions=definitions,
            groups=groups,
            groups_unreadable=groups_unreadable,
            repositories={host: frozenset(r) for host, r in repos.items()},
            egress_ips=egress_ips,
            endpoint_vnets=self._private_endpoint_vnets(used_acrs),
            image_results=results,
            credential_trials=trials,
            probe_findings=tuple(probe_findings),
            probe_unavailable=probe_unavailable,
            pod_grace_seconds=self.settings.pod_grace_seconds,
            cloud=self.settings.cloud,
        )

    def _snapshot(self, cluster: ClusterInfo, read_secrets: bool) -> tuple[Snapshot | None, Any, str | None]:
        """The cluster's Kubernetes snapshot and client, or why they could not be read."""
        from shared.clients.kube import collect

        try:
            kubeconfig = self.arm.cluster_user_kubeconfig(cluster.id)
        except UpstreamError as exc:
            return None, None, f"cannot get the cluster's credentials: {exc}"
        try:
            kube = self._kube_connect(cluster, kubeconfig)
            return collect(kube, cluster.id, read_secrets=read_secrets), kube, None
        except PullwatchError as exc:
            reason = str(exc)
            if cluster.private_cluster:
                reason += " (private cluster: give pullwatch network access to the API server, e.g. VNet integration)"
            return None, None, f"cannot read the cluster's API server: {reason}"

    def _pull_identity(
        self, cluster: ClusterInfo
    ) -> tuple[PullIdentity | None, str | None, tuple[str, ...], str | None]:
        """The kubelet's pull identity and its groups: (identity, why it is unknown, groups, why
        they are unknown)."""
        try:
            identity = resolve_pull_identity(cluster, self.arm.service_principal_object_id)
        except UpstreamError as exc:
            return None, f"cannot resolve the service principal: {exc}", (), None
        if identity is None:
            return None, None, (), None
        try:
            return identity, None, self.arm.member_groups(identity.object_id), None
        except UpstreamError as exc:
            return identity, None, (), str(exc)

    def _egress_ips(self, cluster: ClusterInfo) -> tuple[str, ...] | None:
        try:
            return self.arm.public_ip_addresses(cluster.outbound_ip_ids)
        except UpstreamError as exc:
            log.info("egress IPs of %s unknown: %s", cluster.name, exc)
            return None

    def _private_endpoint_vnets(
        self, registries: Sequence[RegistryInfo]
    ) -> dict[str, tuple[str, ...] | None]:
        out: dict[str, tuple[str, ...] | None] = {}
        for reg in registries:
            try:
                out[reg.login_server] = self.arm.private_endpoint_vnets(reg.private_endpoint_ids)
            except UpstreamError as exc:
                log.info("private endpoints of %s unknown: %s", reg.name, exc)
                out[reg.login_server] = None
        return out

    def _try_pull_secrets(
        self,
        snapshot: Snapshot,
        reader: SecretReader,
        cluster: ClusterInfo,
        used_acrs: Sequence[RegistryInfo],
    ) -> dict[tuple[str, str, str, str], Any]:
        """Each pull-secret entry against its registry, once (read-secrets on): the password is
        read, handed to the registry seam for the entry's own host, and dropped."""
        same_tenant = [
            r.login_server
            for r in used_acrs
            if not r.tenant_id or not cluster.tenant_id or r.tenant_id.lower() == cluster.tenant_id.lower()
        ]
        trials: dict[tuple[str, str, str, str], Any] = {}
        for secret, key, ref in credential_candidates(snapshot, same_tenant):
            found = reader.read(secret.namespace, secret.name, key)
            if found is None:
                trials[trial_key(secret, key, ref)] = None
                continue
            username, password = found
            trials[trial_key(secret, key, ref)] = self.registry.try_credentials(
                ref.registry, username, password, ref.repository
            )
            del password
        return trials

    def _with_secret_credentials(
        self,
        usages: list[ImageUsage],
        snapshot: Snapshot,
        reader: SecretReader,
        acrs: Mapping[str, RegistryInfo],
        cluster: ClusterInfo,
        credentials: dict[str, RegistryCredential],
    ) -> list[ImageUsage]:
        """With read-secrets on: images on registries the kubelet identity does not serve are
        checked with the workload's own pull secret, as kubelet would pull them."""
        out = []
        for usage in usages:
            acr = acrs.get(usage.ref.registry)
            if acr is not None and (not acr.tenant_id or acr.tenant_id == cluster.tenant_id):
                out.append(usage)
                continue
            found = reader.credential_for(snapshot, usage.namespace, usage.workload, usage.ref)
            if found is None:
                out.append(usage)
                continue
            # One secret may serve several registries: keep each host's entry apart.
            credentials[f"{found.label}@{found.host}"] = found
            out.append(replace(usage, identity=found.label))
        return out

    def _check_images(
        self,
        refs: Iterable[ImageRef],
        usages: Sequence[ImageUsage],
        acrs: Mapping[str, RegistryInfo],
        credentials: Mapping[str, RegistryCredential],
    ) -> dict[tuple[str, str], ImageResult]:
        wanted: dict[tuple[str, str], ImageRef] = {(str(r), "pullwatch"): r for r in refs}
        for usage in usages:
            wanted.pop((str(usage.ref), "pullwatch"), None)
            wanted[(str(usage.ref), usage.identity)] = usage.ref
        targets = []
        for (_, identity), ref in wanted.items():
            acr = acrs.get(ref.registry)
            targets.append(
                ImageTarget(
                    ref,
                    credential=credentials.get(f"{identity}@{ref.registry}"),
                    registry_tenant=acr.tenant_id if acr else None,
                    authentication_as_arm=acr.authentication_as_arm if acr else True,
                )
            )
        todo = [t for t in targets if (str(t.ref), t.identity) not in self._image_results]
        if todo:
            for result in self.registry.check_images(todo):
                self._image_results[result.key] = result
        return {
            (str(t.ref), t.identity): self._image_results[(str(t.ref), t.identity)]
            for t in targets
            if (str(t.ref), t.identity) in self._image_results
        }


@dataclass(frozen=True)
class Seams:
    """The real seams an :class:`Auditor` is given, for pullwatch's own identity."""

    arm: ArmClient
    kube_connect: Callable[[ClusterInfo, bytes], Any]
    registry: RegistryClient


def real_seams(settings: Settings, credential: TokenCredential) -> Seams:
    """ARM, Kubernetes and registry seams as pullwatch's own identity (managed identity in Azure)."""
    from shared.clients.kube import KubeClient

    def entra_token(scope: str) -> str:
        return credential.get_token(scope).token

    def kube_connect(cluster: ClusterInfo, kubeconfig: bytes) -> KubeClient:
        bearer = (lambda: entra_token(AKS_SERVER_SCOPE)) if cluster.aad_enabled else None
        return KubeClient.from_kubeconfig(kubeconfig, bearer_token=bearer, timeout=settings.http_timeout)

    return Seams(
        arm=ArmClient.from_settings(credential, settings),
        kube_connect=kube_connect,
        registry=RegistryClient(settings, entra_token=entra_token, app_tenant=settings.tenant_id),
    )


def connect_auditor(settings: Settings, credential: TokenCredential) -> Auditor:
    """An Auditor over the real seams, closing them when it is closed."""
    seams = real_seams(settings, credential)
    return Auditor(
        settings, arm=seams.arm, kube_connect=seams.kube_connect, registry=seams.registry, own_seams=True
    )


def seen(facts: ClusterFacts, findings: Sequence[Finding]) -> KnownCluster | None:
    """What this audit saw the cluster use (the inventory the planner and the next audit read)."""
    if facts.cluster is None:
        return None
    return KnownCluster(
        id=facts.cluster.id,
        registries=frozenset(facts.hosts),
        registry_ids=frozenset(r.id.lower() for r in facts.used_acrs),
        images=frozenset(str(r) for r in facts.used_refs),
        failing_images=frozenset(
            f.image
            for f in findings
            if f.image and f.code in ("PODS_IMAGE_PULL_FAILING", "IMAGE_NOT_FOUND", "IMAGE_PLATFORM_MISSING")
        ),
        registry_modes={r.login_server: r.role_assignment_mode for r in facts.used_acrs},
    )


def running_images(snapshot: Snapshot | None) -> set[str]:
    """Images of workloads that have running pods (the image was pulled before)."""
    if snapshot is None:
        return set()
    out = set()
    for pod in snapshot.pods:
        if pod.phase not in ("Running", "Succeeded"):
            continue
        workload = snapshot.workload(pod.namespace, pod.owner)
        waiting = {w.image for w in pod.waiting}
        for image in workload.images if workload else ():
            if image in waiting:
                continue
            try:
                out.add(str(parse_reference(image)))
            except ReferenceError:
                continue
    return out
