"""The audit: plan → collect → check → (compare → deliver in :mod:`shared.app`).

:class:`Auditor` audits clusters with the outside systems it is given (ARM, Kubernetes, registries).
It shares what can be shared across the clusters of one run: subscription-wide ARM lists (through
one :class:`~shared.clients.arm.ArmClient`), and registry probes (one check per unique image).
Every check that cannot run becomes a ``CHECK_INCOMPLETE`` finding, never a silent pass.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from azure.core.credentials import TokenCredential

from shared.checks.images import ImageUsage, image_findings, region_findings, usage_or_finding
from shared.checks.network import network_findings
from shared.checks.roles import registries_with_identity_role, resolve_pull_identity, role_findings
from shared.checks.scheduling import platform_needs
from shared.checks.secrets import entry_matches
from shared.clients.arm import ArmAccessDenied, ArmClient, ArmNotFound
from shared.clients.registry import ImageResult, ImageTarget, RegistryClient, RegistryCredential, is_acr_host
from shared.config import Settings
from shared.errors import PullwatchError, UpstreamError
from shared.findings import Finding, dedupe, sort_findings
from shared.model import ClusterInfo, RegistryInfo, RoleAssignment, RoleDefinition
from shared.plan import KnownCluster
from shared.reference import ImageRef, ReferenceError, parse_reference
from shared.workloads import Snapshot, parse_docker_config, secret_content

log = logging.getLogger("pullwatch.audit")

AKS_SERVER_SCOPE = "6dae42f8-4368-4678-94ff-3960e28e3630/.default"
ARM_SCOPE = "https://management.azure.com/.default"
ACR_SCOPE = "https://containerregistry.azure.net/.default"


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


def incomplete(
    cluster_id: str | None,
    check: str,
    reason: str,
    *,
    registry: str | None = None,
    message: str | None = None,
    **evidence: Any,
) -> Finding:
    name = cluster_id.rstrip("/").rsplit("/", 1)[-1] if cluster_id else "the estate"
    return Finding(
        code="CHECK_INCOMPLETE",
        cluster=cluster_id,
        registry=registry,
        message=message or f"Could not run the {check} checks for {name}: {reason}.",
        evidence={"check": check, "reason": reason, **evidence},
    )


def _scrubbed(finding: Finding) -> Finding:
    """The finding without signed URLs, tokens or JWTs in its message and evidence: they quote
    outside text (kubelet's pull errors cite a layer's SAS URL, signature included)."""
    from shared.render import scrub, scrub_text

    message, evidence = scrub_text(finding.message), scrub(dict(finding.evidence))
    if message == finding.message and evidence == dict(finding.evidence):
        return finding
    return finding.with_(message=message, evidence=evidence)


def safe_reason(exc: BaseException) -> str:
    """A project error's message is safe to show; anything else only by its type."""
    if isinstance(exc, PullwatchError):
        return str(exc)
    return f"{type(exc).__name__} (unexpected error)"


class Auditor:
    """One audit run. ``credential`` is pullwatch's own identity (managed identity in Azure)."""

    def __init__(
        self,
        settings: Settings,
        credential: TokenCredential,
        *,
        arm: ArmClient | None = None,
        kube_connect: Callable[[ClusterInfo, bytes], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.credential = credential
        self.arm = arm or ArmClient.from_settings(credential, settings)
        self._own_arm = arm is None
        self.registry = RegistryClient(settings, entra_token=self._entra_token, app_tenant=settings.tenant_id)
        self._kube_connect = kube_connect or self._default_kube_connect
        from shared.clients.network import NetworkReader

        self.network = NetworkReader.from_settings(credential, settings)
        self._registries: dict[str, list[RegistryInfo]] = {}
        self._registries_unreadable: dict[str, str] = {}  # subscription -> why its ACR list failed
        self._assignments: dict[str, list[RoleAssignment] | str] = {}
        self._image_results: dict[tuple[str, str], ImageResult] = {}

    def close(self) -> None:
        self.registry.close()
        self.network.close()
        if self._own_arm:
            self.arm.close()

    def __enter__(self) -> Auditor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- identities -------------------------------------------------------------------------

    def _entra_token(self, scope: str) -> str:
        return self.credential.get_token(scope).token

    def _default_kube_connect(self, cluster: ClusterInfo, kubeconfig: bytes) -> Any:
        from shared.clients.kube import KubeClient

        bearer = (lambda: self.credential.get_token(AKS_SERVER_SCOPE).token) if cluster.aad_enabled else None
        return KubeClient.from_kubeconfig(kubeconfig, bearer_token=bearer, timeout=self.settings.http_timeout)

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

    # --- one cluster ------------------------------------------------------------------------

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
            one.findings = [_scrubbed(f) for f in one.findings]
            result.clusters.append(one)
            if any(f.code == "CHECK_INCOMPLETE" for f in one.findings):
                result.unchecked.extend(
                    {
                        "cluster": cluster_id,
                        "check": f.evidence.get("check"),
                        "reason": f.evidence.get("reason"),
                    }
                    for f in one.findings
                    if f.code == "CHECK_INCOMPLETE"
                )
        result.requests = {**self.arm.request_counts(), "registry": self.registry.request_counts()}
        return result

    def audit_cluster(
        self,
        cluster_id: str,
        options: AuditOptions,
        previous: KnownCluster | None = None,
    ) -> ClusterResult:
        try:
            cluster = self.arm.get_cluster(cluster_id)
        except ArmNotFound:
            return ClusterResult(cluster_id, [], gone=True)
        except ArmAccessDenied as exc:
            return ClusterResult(
                cluster_id, [incomplete(cluster_id, "all", f"cannot read the cluster: {exc}")]
            )
        findings: list[Finding] = []

        # collect: the cluster's own view
        snapshot, kube = self._collect(cluster, options, findings)

        # images the cluster uses
        usages: list[ImageUsage] = []
        if snapshot is not None:
            usages, invalid = image_usages(cluster, snapshot)
            findings.extend(invalid)
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
        subs = list(dict.fromkeys([cluster.subscription_id, *self.subscriptions(options.subscriptions)]))
        acrs: dict[str, RegistryInfo] = {}
        for sub in subs:
            for reg in self.registries_in(sub):
                acrs.setdefault(reg.login_server.lower(), reg)
        # An ACR the workloads use that no readable list holds: its role check cannot run.
        unlisted = next(
            (
                self._registries_unreadable[s.lower()]
                for s in subs
                if s.lower() in self._registries_unreadable
            ),
            None,
        )
        if unlisted:
            for host in sorted(hosts):
                if is_acr_host(host) and host not in acrs:
                    findings.append(incomplete(cluster.id, "roles", unlisted, registry=host))

        # roles
        identity = None
        identity_unreadable = None
        try:
            identity = resolve_pull_identity(cluster, self.arm.service_principal_object_id)
        except UpstreamError as exc:
            identity_unreadable = f"cannot resolve the service principal: {exc}"
        assignments: list[RoleAssignment] = []
        unreadable: dict[str, str] = {}
        read: set[str] = set()
        for sub in subs:
            got = self.assignments_in(sub)
            if isinstance(got, str):
                unreadable[sub] = got
            else:
                read.add(sub)
                assignments.extend(got)
        groups: tuple[str, ...] = ()
        groups_unreadable = None
        if identity is not None:
            try:
                groups = self.arm.member_groups(identity.object_id)
            except UpstreamError as exc:
                groups_unreadable = str(exc)
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
        findings.extend(
            role_findings(
                cluster,
                identity,
                used_acrs,
                repos,
                assignments,
                definitions,
                groups,
                assignments_unreadable=unreadable or None,
                groups_unreadable=groups_unreadable,
                identity_unreadable=identity_unreadable,
                subscriptions_read=read,
            )
        )

        # network, from ARM: registry firewalls and private endpoints vs the cluster's network
        findings.extend(
            network_findings(
                cluster, used_acrs, self._egress_ips(cluster), self._private_endpoint_vnets(used_acrs)
            )
        )

        # performance: a registry with neither its home nor a replica in the cluster's region
        for reg in used_acrs:
            findings.extend(
                region_findings(
                    cluster.id, cluster.location, reg.login_server, reg.location, reg.replication_locations
                )
            )

        # registries: the pull path for every unique image (shared across the run's clusters)
        reading = options.read_secrets or self.settings.read_secrets
        credentials: dict[str, RegistryCredential] = {}
        if reading and snapshot is not None and kube is not None:
            usages = self._with_secret_credentials(
                usages, snapshot, SecretReader(kube), acrs, cluster, credentials
            )
        results = self._check_images(used_refs, usages, acrs, credentials)
        findings.extend(
            image_findings(cluster.id, usages, results, [(p.name, p.os, p.arch) for p in cluster.node_pools])
        )

        # the cluster's own reports: failing pods, pull secrets, probes
        if snapshot is not None:
            findings.extend(self._cluster_checks(cluster, snapshot, kube, results, used_acrs, options))

        findings = self._changes_since_last_audit(cluster, findings, previous, used_acrs, snapshot)
        findings = sort_findings(dedupe(_merged_incomplete(_from_the_clusters_view(cluster, findings))))
        inventory = KnownCluster(
            id=cluster.id,
            registries=frozenset(hosts),
            registry_ids=frozenset(r.id.lower() for r in used_acrs),
            images=frozenset(str(r) for r in used_refs),
            failing_images=frozenset(
                f.image
                for f in findings
                if f.image
                and f.code in ("PODS_IMAGE_PULL_FAILING", "IMAGE_NOT_FOUND", "IMAGE_PLATFORM_MISSING")
            ),
            registry_modes={r.login_server: r.role_assignment_mode for r in used_acrs},
        )
        return ClusterResult(cluster.id, findings, inventory, cluster)

    # --- steps ------------------------------------------------------------------------------

    def _collect(
        self, cluster: ClusterInfo, options: AuditOptions, findings: list[Finding]
    ) -> tuple[Any, Any]:
        from shared.clients.kube import collect

        try:
            kubeconfig = self.arm.cluster_user_kubeconfig(cluster.id)
        except UpstreamError as exc:
            findings.append(
                incomplete(cluster.id, "kubernetes", f"cannot get the cluster's credentials: {exc}")
            )
            return None, None
        try:
            kube = self._kube_connect(cluster, kubeconfig)
            snapshot = collect(
                kube, cluster.id, read_secrets=options.read_secrets or self.settings.read_secrets
            )
        except PullwatchError as exc:
            reason = str(exc)
            if cluster.private_cluster:
                reason += " (private cluster: give pullwatch network access to the API server, e.g. VNet integration)"
            findings.append(
                incomplete(cluster.id, "kubernetes", f"cannot read the cluster's API server: {reason}")
            )
            return None, None
        return snapshot, kube

    def _egress_ips(self, cluster: ClusterInfo) -> tuple[str, ...] | None:
        try:
            return self.network.addresses(cluster.outbound_ip_ids)
        except UpstreamError as exc:
            log.info("egress IPs of %s unknown: %s", cluster.name, exc)
            return None

    def _private_endpoint_vnets(
        self, registries: Sequence[RegistryInfo]
    ) -> dict[str, tuple[str, ...] | None]:
        reader = self.network
        out: dict[str, tuple[str, ...] | None] = {}
        for reg in registries:
            try:
                out[reg.login_server] = reader.endpoint_vnets(reg.private_endpoint_ids)
            except UpstreamError as exc:
                log.info("private endpoints of %s unknown: %s", reg.name, exc)
                out[reg.login_server] = None
        return out

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

    def _cluster_checks(
        self,
        cluster: ClusterInfo,
        snapshot: Any,
        kube: Any,
        results: Mapping[tuple[str, str], ImageResult],
        acrs: Sequence[RegistryInfo],
        options: AuditOptions,
    ) -> list[Finding]:
        from shared.checks.pods import pod_findings
        from shared.checks.secrets import secret_findings

        out: list[Finding] = []
        out.extend(pod_findings(snapshot, grace_seconds=self.settings.pod_grace_seconds))
        same_tenant = {
            r.login_server
            for r in acrs
            if not r.tenant_id or not cluster.tenant_id or r.tenant_id.lower() == cluster.tenant_id.lower()
        }
        anonymous: dict[tuple[str, str], bool] = {}
        for result in results.values():
            if result.identity != "pullwatch":
                continue
            key = (result.ref.registry, result.ref.repository)
            if result.auth_required:
                anonymous[key] = False
            elif result.auth == "anonymous" and result.failure is None:
                anonymous[key] = True
        reading = options.read_secrets or self.settings.read_secrets
        out.extend(
            secret_findings(
                snapshot,
                kubelet_registries=same_tenant,
                anonymous=anonymous,
                try_credentials=self.registry.try_credentials if reading else None,
                read_credential=kube.read_credential
                if reading and hasattr(kube, "read_credential")
                else None,
            )
        )
        if options.probe or self.settings.probe:
            from shared.probe import run_probes

            try:
                out.extend(run_probes(kube, cluster, snapshot, self.settings))
            except PullwatchError as exc:
                out.append(incomplete(cluster.id, "cluster", f"probe could not run: {exc}"))
        return out

    def _changes_since_last_audit(
        self,
        cluster: ClusterInfo,
        findings: list[Finding],
        previous: KnownCluster | None,
        acrs: Sequence[RegistryInfo],
        snapshot: Any,
    ) -> list[Finding]:
        out = list(findings)
        # ABAC_MODE_SWITCHED: a registry's mode flipped to ABAC since the last audit saw it.
        if previous is not None:
            for reg in acrs:
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
        # IMAGE_DELETED_IN_USE: a missing image that pods still run (they pulled it before).
        running = _running_images(snapshot)
        converted = []
        for f in out:
            if f.code == "IMAGE_NOT_FOUND" and f.image and f.image in running:
                converted.append(
                    f.with_(
                        code="IMAGE_DELETED_IN_USE",
                        severity=None,
                        message=(
                            f"{f.image} was deleted from {f.registry} while {f.workload} still runs it: its pods run now, "
                            "the next pull on a new node fails."
                        ),
                        remediation=(f"Push {f.image} again, or roll {f.workload} to an image that exists."),
                    )
                )
            else:
                converted.append(f)
        return converted


class SecretReader:
    """Reads pull-secret credentials at check time (read-secrets on); nothing is kept beyond the
    registry check that needs it. Also the ``CredentialReader`` of the pull-secret checks."""

    def __init__(self, kube: Any) -> None:
        self.kube = kube
        self._auths: dict[tuple[str, str], dict[str, tuple[str | None, str | None]] | None] = {}

    def _entries(self, namespace: str, name: str) -> dict[str, tuple[str | None, str | None]] | None:
        key = (namespace, name)
        if key not in self._auths:
            obj = self.kube.read_secret(namespace, name)
            entries = None
            if obj is not None:
                stype, content, error = secret_content(obj)
                if content is not None and error is None:
                    try:
                        entries = parse_docker_config(stype, content)
                    except ValueError:
                        entries = None
            self._auths[key] = entries
        return self._auths[key]

    def read(self, namespace: str, name: str, auth_key: str) -> tuple[str, str] | None:
        entry = (self._entries(namespace, name) or {}).get(auth_key)
        if entry is None or not entry[0] or not entry[1]:
            return None
        return entry[0], entry[1]

    def credential_for(
        self, snapshot: Snapshot, namespace: str, workload: str, ref: ImageRef
    ) -> RegistryCredential | None:
        """The first of the workload's pull secrets whose auths key serves the image (kubelet's order)."""
        facts = snapshot.workload(namespace, workload)
        if facts is None:
            return None
        names, _ = snapshot.effective_pull_secrets(facts)
        lookup = f"{ref.registry}/{ref.repository}"
        for name in names:
            for key in self._entries(namespace, name) or {}:
                if entry_matches(key, lookup):
                    found = self.read(namespace, name, key)
                    if found:
                        return RegistryCredential(
                            host=ref.registry,
                            username=found[0],
                            password=found[1],
                            label=f"secret:{namespace}/{name}",
                        )
        return None


_ARM_NETWORK = ("REGISTRY_FIREWALL_DENIED", "REGISTRY_PUBLIC_ACCESS_DISABLED")
_DEFINITE_SECRET = (
    "PULL_SECRET_MISSING",
    "PULL_SECRET_MALFORMED",
    "PULL_SECRET_NO_ENTRY_FOR_REGISTRY",
    "PULL_SECRET_REJECTED",
    "PULL_AUTH_REQUIRED",
)


def _merged_incomplete(findings: list[Finding]) -> list[Finding]:
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


def _from_the_clusters_view(cluster: ClusterInfo, findings: list[Finding]) -> list[Finding]:
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


def image_usages(cluster: ClusterInfo, snapshot: Snapshot) -> tuple[list[ImageUsage], list[Finding]]:
    """Every image every workload uses, with the pools it can run on; unparsable references as findings."""
    usages: list[ImageUsage] = []
    invalid: list[Finding] = []
    for need in platform_needs(snapshot, cluster.node_pools):
        got = usage_or_finding(
            cluster.id,
            need.namespace,
            need.workload,
            need.image,
            [(p.pool, p.os, p.arch) for p in need.pools],
        )
        if isinstance(got, Finding):
            invalid.append(got)
        else:
            usages.append(got)
    return usages, invalid


def _running_images(snapshot: Snapshot | None) -> set[str]:
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


def run_cli_audit(settings: Settings, options: AuditOptions) -> AuditResult:
    """``pullwatch audit``: DefaultAzureCredential, discover, audit, and (``--notify``) deliver."""
    from azure.identity import DefaultAzureCredential

    from shared.app import App

    credential = DefaultAzureCredential()
    app = App(settings, credential)
    try:
        return app.audit_now(options, notify=options.notify)
    finally:
        app.close()
