"""Preflight: the audit's checks run on manifests instead of the cluster's live workloads.

With a target cluster (:func:`preflight_cluster`) the manifests take the place of the workloads
the audit would list: :class:`ManifestAuditor` is the :class:`~shared.pipeline.Auditor` whose
collect step builds the :class:`~shared.workloads.Snapshot` from the manifest set plus the
cluster's own facts — its nodes (labels, taints), and the ServiceAccounts and pull secrets of the
namespaces the manifests deploy to (objects of the set win: they will exist once it is applied).
Everything else — node pools, pull identity, role assignments, registries, network, the registry
pull path once per unique image — is the audit's own code, so codes, causes and fixes are the
audit's. Without a cluster (:func:`preflight_offline`), what needs none: references, existence
and the platforms given (``--platform``), through the registry seam with pullwatch's usual
credentials.

Every finding is then placed at the manifest file and line of what it is about
(:func:`shared.preflight.locate.locate`).

Public interface::

    preflight_cluster(settings, credential, manifests, cluster_id, *, namespace, read_secrets,
                      kube_connect=None) -> PreflightResult
    preflight_offline(settings, credential, manifests, *, namespace, platforms) -> PreflightResult
    manifest_snapshot(cluster_id, manifests, namespace, *, nodes=(), service_accounts=(),
                      secrets=(), unreadable=None) -> Snapshot
    read_namespace_facts(kube, cluster_id, namespaces, *, read_secrets)
        -> (nodes, service_accounts, secrets, unreadable)
    PreflightResult(findings, cluster, workloads, images, requests)    # findings: PreflightFinding
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from azure.core.credentials import TokenCredential

from shared.checks.images import ImageUsage, image_findings
from shared.checks.scheduling import image_usages
from shared.clients.registry import ImageResult, ImageTarget, is_acr_host
from shared.config import Settings
from shared.errors import InputError, PullwatchError
from shared.findings import Finding
from shared.model import ClusterInfo, NodePool, RegistryInfo
from shared.pipeline import AuditOptions, Auditor, Seams, connect_auditor, real_seams
from shared.preflight.locate import PreflightFinding, locate, namespace_of
from shared.preflight.manifests import ManifestObject, ManifestSet
from shared.reference import ImageRef
from shared.render import scrub_finding
from shared.snapshot_builder import SnapshotBuilder, workload_from_template
from shared.workloads import (
    DOCKER_CFG,
    DOCKER_CONFIG_JSON,
    NodeFacts,
    SecretFacts,
    ServiceAccountFacts,
    Snapshot,
    WorkloadFacts,
)

log = logging.getLogger("pullwatch.preflight")


@dataclass
class PreflightResult:
    findings: list[PreflightFinding]
    cluster: str | None
    workloads: int
    images: int
    requests: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "workloads": self.workloads,
            "images": self.images,
            "findings": [f.to_dict() for f in self.findings],
            "requests": self.requests,
        }


# --- manifests -> snapshot ----------------------------------------------------------------------


def _workload(obj: ManifestObject, namespace: str | None) -> WorkloadFacts:
    return workload_from_template(namespace_of(obj, namespace), obj.kind, obj.name, obj.pod_spec)


def _secret_object(obj: ManifestObject, namespace: str) -> dict[str, Any]:
    """The Secret as the API would return it: ``stringData`` folded into base64 ``data``."""
    body = dict(obj.body)
    meta = dict(body.get("metadata") or {})
    meta["namespace"] = namespace
    body["metadata"] = meta
    data = dict(body.get("data") or {}) if isinstance(body.get("data"), Mapping) else {}
    string_data = body.get("stringData")
    if isinstance(string_data, Mapping):
        for key, value in string_data.items():
            data[str(key)] = base64.b64encode(str(value).encode("utf-8")).decode("ascii")
    if data:
        body["data"] = data
    body.pop("stringData", None)
    return body


def manifest_snapshot(
    cluster_id: str,
    manifests: ManifestSet,
    namespace: str | None,
    *,
    nodes: Sequence[NodeFacts] = (),
    service_accounts: Sequence[ServiceAccountFacts] = (),
    secrets: Sequence[SecretFacts] = (),
    unreadable: Mapping[str, str] | None = None,
) -> Snapshot:
    """The snapshot the audit's checks read, with the manifests' workloads as the cluster's.

    ServiceAccounts and Secrets of the set replace the cluster's of the same name. A Secret of the
    set is read with its content (it is in the manifest anyway); nothing of it leaves the checks.
    """
    builder = SnapshotBuilder(cluster_id, read_secrets=True)
    for sa in manifests.service_accounts:
        builder.add_service_account(
            {
                "metadata": {"namespace": namespace_of(sa, namespace), "name": sa.name},
                "imagePullSecrets": sa.body.get("imagePullSecrets"),
            }
        )
    for secret in manifests.secrets:
        builder.add_secret(_secret_object(secret, namespace_of(secret, namespace)))
    built = builder.build()
    own_sas = {(s.namespace, s.name) for s in built.service_accounts}
    own_secrets = {(s.namespace, s.name) for s in built.secrets}
    return Snapshot(
        cluster=cluster_id,
        nodes=tuple(nodes),
        workloads=tuple(_workload(w, namespace) for w in manifests.workloads),
        pods=(),
        events=(),
        service_accounts=built.service_accounts
        + tuple(s for s in service_accounts if (s.namespace, s.name) not in own_sas),
        secrets=built.secrets + tuple(s for s in secrets if (s.namespace, s.name) not in own_secrets),
        collected_at=datetime.now(UTC),
        # Per workload, the secrets check needs every secret's content (auths not None); a
        # cluster secret read without its content keeps auths None and so stays "unknown".
        secrets_read=True,
        unreadable=dict(unreadable or {}),
    )


# --- with a cluster ------------------------------------------------------------------------------


def _namespaces(manifests: ManifestSet, namespace: str | None) -> list[str]:
    return sorted({namespace_of(w, namespace) for w in manifests.workloads})


def read_namespace_facts(
    kube: Any, cluster_id: str, namespaces: Iterable[str], *, read_secrets: bool
) -> tuple[list[NodeFacts], list[ServiceAccountFacts], list[SecretFacts], dict[str, str]]:
    """The cluster's nodes, and the service accounts and secrets of ``namespaces`` (namespaced
    lists: a namespace-scoped role is enough), with the audit's rules: pull-secret types by field
    selector (content only with ``read_secrets``), every other secret by name only."""
    from shared.clients.kube import KubeAccessDenied

    b = SnapshotBuilder(cluster_id, read_secrets=read_secrets)
    try:
        for obj in kube.list_objects("nodes"):
            b.add_node(obj)
    except KubeAccessDenied as exc:  # the node pools from ARM still say which platforms exist
        log.info("nodes of %s not readable: %s", cluster_id, exc)
    for ns in namespaces:
        for obj in kube.list_objects("serviceaccounts", namespace=ns):
            b.add_service_account(obj)
    try:
        for ns in namespaces:
            for stype in (DOCKER_CONFIG_JSON, DOCKER_CFG):
                for obj in kube.list_objects(
                    "secrets", namespace=ns, field_selector=f"type={stype}", metadata_only=not read_secrets
                ):
                    b.add_secret(obj, known_type=stype)
            for obj in kube.list_objects("secrets", namespace=ns, metadata_only=True):
                obj.pop("data", None)
                b.add_secret(obj)
    except KubeAccessDenied as exc:
        b.forget_secrets()
        b.unreadable["secrets"] = str(exc)
    snap = b.build()
    return list(snap.nodes), list(snap.service_accounts), list(snap.secrets), dict(snap.unreadable)


class _ManifestSecrets:
    """The Kubernetes seam as the pull-secret checks read it, answering for the manifest set's own
    Secrets first (they are not in the cluster yet) and asking the cluster for the rest."""

    def __init__(self, kube: Any, manifests: ManifestSet, namespace: str | None) -> None:
        self.kube = kube
        self._own = {
            (namespace_of(s, namespace), s.name): _secret_object(s, namespace_of(s, namespace))
            for s in manifests.secrets
        }

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        own = self._own.get((namespace, name))
        if own is not None:
            return own
        found: dict[str, Any] | None = self.kube.read_secret(namespace, name)
        return found


class ManifestAuditor(Auditor):
    """The audit with the manifests standing in for the cluster's workloads: its Kubernetes
    snapshot is the manifests plus the cluster's nodes and the target namespaces' service accounts
    and secrets; every other step (ARM, registries, checks, correlate) is the audit's own."""

    def __init__(
        self, settings: Settings, seams: Seams, manifests: ManifestSet, namespace: str | None
    ) -> None:
        super().__init__(
            settings, arm=seams.arm, kube_connect=seams.kube_connect, registry=seams.registry, own_seams=True
        )
        self.manifests = manifests
        self.namespace = namespace
        self.kube_calls = 0

    def _snapshot(self, cluster: ClusterInfo, read_secrets: bool) -> tuple[Snapshot | None, Any, str | None]:
        from shared.errors import UpstreamError

        reading = read_secrets
        nodes: list[NodeFacts] = []
        sas: list[ServiceAccountFacts] = []
        secrets: list[SecretFacts] = []
        unreadable: dict[str, str] = {}
        kube = None
        try:
            kubeconfig = self.arm.cluster_user_kubeconfig(cluster.id)
            kube = self._kube_connect(cluster, kubeconfig)
            nodes, sas, secrets, unreadable = read_namespace_facts(
                kube, cluster.id, _namespaces(self.manifests, self.namespace), read_secrets=reading
            )
            self.kube_calls += int(getattr(kube, "api_calls", 0))
        except (UpstreamError, PullwatchError) as exc:
            unreadable = {"secrets": f"cannot read the cluster's service accounts and secrets: {exc}"}
            kube = None
        snapshot = manifest_snapshot(
            cluster.id,
            self.manifests,
            self.namespace,
            nodes=nodes,
            service_accounts=sas,
            secrets=secrets,
            unreadable=unreadable,
        )
        return (
            snapshot,
            (_ManifestSecrets(kube, self.manifests, self.namespace) if kube is not None else None),
            None,
        )


def preflight_cluster(
    settings: Settings,
    credential: TokenCredential,
    manifests: ManifestSet,
    cluster_id: str,
    *,
    namespace: str | None = None,
    read_secrets: bool = False,
    kube_connect: Callable[[ClusterInfo, bytes], Any] | None = None,
) -> PreflightResult:
    """The audit of ``cluster_id`` as it will be once ``manifests`` are applied, placed in them."""
    options = AuditOptions(clusters=(cluster_id,), read_secrets=read_secrets)
    seams = real_seams(settings, credential)
    if kube_connect is not None:
        seams = replace(seams, kube_connect=kube_connect)
    auditor = ManifestAuditor(settings, seams, manifests, namespace)
    try:
        result = auditor.audit_clusters([cluster_id], options)
        requests = {**result.requests, "kubernetes": auditor.kube_calls}
    finally:
        auditor.close()
    one = result.clusters[0]
    if one.gone:
        raise InputError(f"--cluster {cluster_id}: no such cluster (ARM answered 404)")
    located = locate(one.findings, manifests, namespace)
    return PreflightResult(located, cluster_id, len(manifests.workloads), len(manifests.images), requests)


# --- without a cluster ------------------------------------------------------------------------------


def parse_platform(text: str) -> NodePool:
    """``linux/arm64`` as a node pool of that platform (named after it)."""
    os_, sep, arch = text.strip().lower().partition("/")
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(arch, arch)
    if not sep or os_ not in ("linux", "windows") or arch not in ("amd64", "arm64"):
        raise InputError(
            f"--platform {text!r}: expected OS/ARCH with OS linux or windows and ARCH amd64 or arm64"
        )
    return NodePool(name=f"{os_}/{arch}", os=os_, arch=arch)  # type: ignore[arg-type]


def _registries_by_host(auditor: Auditor, hosts: set[str]) -> dict[str, RegistryInfo]:
    """The ACRs among ``hosts`` as ARM lists them (their tenant decides whether pullwatch's Entra
    token may go to them); empty when ARM cannot be read (their images are then not checked)."""
    from shared.errors import UpstreamError

    if not any(is_acr_host(h) for h in hosts):
        return {}
    found: dict[str, RegistryInfo] = {}
    try:
        for sub in auditor.subscriptions():
            for reg in auditor.registries_in(sub):
                if reg.login_server.lower() in hosts:
                    found.setdefault(reg.login_server.lower(), reg)
    except UpstreamError as exc:
        log.info("registries not listed: %s", exc)
    return found


def preflight_offline(
    settings: Settings,
    credential: TokenCredential,
    manifests: ManifestSet,
    *,
    namespace: str | None = None,
    platforms: Sequence[str] = (),
) -> PreflightResult:
    """References, existence and (with ``platforms``) platforms: what needs no cluster. Each
    platform is a pool of its own, so a workload's nodeSelector / affinity on ``kubernetes.io/os``
    or ``kubernetes.io/arch`` narrows what it needs as it would on a cluster. Registries are
    reached as the audit reaches them with pullwatch's own identity: an ACR gets its Entra token
    only when ARM lists it in a trusted tenant."""
    pools = [parse_platform(p) for p in dict.fromkeys(platforms)]
    snapshot = manifest_snapshot("", manifests, namespace)
    usages: list[ImageUsage] = []
    findings: list[Finding] = []
    for got in image_usages(snapshot, pools):
        if isinstance(got, Finding):
            findings.append(got)
        else:
            usages.append(got)
    refs: dict[str, ImageRef] = {str(u.ref): u.ref for u in usages}
    auditor = connect_auditor(settings, credential)
    try:
        acrs = _registries_by_host(auditor, {r.registry for r in refs.values()})
        targets = []
        for ref in refs.values():
            acr = acrs.get(ref.registry)
            targets.append(
                ImageTarget(
                    ref,
                    registry_tenant=acr.tenant_id if acr else None,
                    authentication_as_arm=acr.authentication_as_arm if acr else True,
                    want_platforms=bool(pools),
                )
            )
        results: dict[tuple[str, str], ImageResult] = {
            r.key: r for r in auditor.registry.check_images(targets)
        }
        requests: dict[str, Any] = {
            **auditor.arm.request_counts(),
            "registry": auditor.registry.request_counts(),
        }
    finally:
        auditor.close()
    triples = [(p.name, p.os, p.arch) for p in pools]
    findings.extend(image_findings("", usages, results, triples))
    findings = [scrub_finding(f.with_(cluster=None)) for f in findings]
    return PreflightResult(
        locate(findings, manifests, namespace), None, len(manifests.workloads), len(refs), requests
    )
