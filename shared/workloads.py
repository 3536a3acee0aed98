"""What the Kubernetes API says about a cluster, as plain frozen values (the cluster-side facts).

The Kubernetes seam (:mod:`shared.clients.kube`) lists the API objects page by page and feeds the
raw JSON objects (dicts, as the API server sends them) to a
:class:`~shared.snapshot_builder.SnapshotBuilder`, which keeps only the facts the checks read; this
module holds the facts themselves. Everything here is pure, so owner resolution and parsing are
tested with plain values.

Public interface::

    Snapshot(cluster, nodes, workloads, pods, events, service_accounts, secrets, collected_at, api_calls)
        .workload(namespace, ref) -> WorkloadFacts | None
        .secret(namespace, name) -> SecretFacts | None
        .service_account(namespace, name) -> ServiceAccountFacts | None
        .pods_of(namespace, ref) -> list[PodFacts]
    NodeFacts(name, os, arch, pool, labels, taints)
    WorkloadFacts(namespace, kind, name, containers, image_pull_secrets, service_account,
                  node_selector, node_affinity, tolerations)   .ref -> "Deployment/web"
    ContainerFacts(name, image, kind)          kind: container | init | ephemeral
    PodFacts(namespace, name, owner, created, node, phase, waiting)
    ContainerWaiting(container, image, reason, message, kind, last_exit_code, last_message)
    EventFacts(namespace, pod, reason, message, type, count, first_seen, last_seen)
    SecretFacts(namespace, name, type, auths, content_error)   auths: None when content was not read
    AuthEntry(key, username, has_password)
    ServiceAccountFacts(namespace, name, image_pull_secrets)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
DOCKER_CFG = "kubernetes.io/dockercfg"
PULL_SECRET_TYPES = (DOCKER_CONFIG_JSON, DOCKER_CFG)
#: The data key each pull-secret type keeps its content under.
PULL_SECRET_KEYS = {DOCKER_CONFIG_JSON: ".dockerconfigjson", DOCKER_CFG: ".dockercfg"}

#: Event reasons that speak about image pulls (kubelet's events.go).
PULL_EVENT_REASONS = ("Failed", "BackOff", "ErrImageNeverPull", "FailedCreatePodSandBox", "InspectFailed")

#: Node labels the scheduler and AKS put on every node.
OS_LABEL = "kubernetes.io/os"
ARCH_LABEL = "kubernetes.io/arch"
POOL_LABELS = ("kubernetes.azure.com/agentpool", "agentpool")

ContainerKind = Literal["container", "init", "ephemeral"]


def parse_time(text: Any) -> datetime | None:
    """An RFC 3339 time from the API (``2026-11-26T01:02:03Z``), as an aware UTC datetime."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str
    effect: str  # NoSchedule | PreferNoSchedule | NoExecute


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str = ""
    operator: str = "Equal"  # Equal | Exists
    value: str = ""
    effect: str = ""  # empty: every effect

    def tolerates(self, taint: Taint) -> bool:
        """The scheduler's rule (k8s.io/api/core/v1 toleration.go ToleratesTaint)."""
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if self.operator == "Exists":
            return True
        if not self.key and self.operator != "Exists":
            return False  # an empty key needs Exists
        return self.value == taint.value


@dataclass(frozen=True, slots=True)
class NodeFacts:
    name: str
    os: str
    arch: str
    pool: str
    labels: Mapping[str, str] = field(default_factory=dict, compare=False)
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False


@dataclass(frozen=True, slots=True)
class ContainerFacts:
    name: str
    image: str
    kind: ContainerKind = "container"


#: One requirement of a node selector term: (key, operator, values).
Requirement = tuple[str, str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class WorkloadFacts:
    namespace: str
    kind: str
    name: str
    containers: tuple[ContainerFacts, ...]
    image_pull_secrets: tuple[str, ...] = ()
    service_account: str = "default"
    node_selector: Mapping[str, str] = field(default_factory=dict, compare=False)
    #: requiredDuringSchedulingIgnoredDuringExecution terms (ORed); each term's requirements ANDed.
    node_affinity: tuple[tuple[Requirement, ...], ...] = ()
    tolerations: tuple[Toleration, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def images(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.image for c in self.containers if c.image))


@dataclass(frozen=True, slots=True)
class ContainerWaiting:
    container: str
    image: str
    reason: str
    message: str = ""
    kind: ContainerKind = "container"
    # how the container's last run ended (``lastState.terminated``), e.g. for CrashLoopBackOff
    last_exit_code: int | None = None
    last_message: str = ""


@dataclass(frozen=True, slots=True)
class PodFacts:
    namespace: str
    name: str
    owner: str  # the workload ref: "Deployment/web", "CronJob/report", "Pod/debug"
    created: datetime | None
    node: str | None
    phase: str
    waiting: tuple[ContainerWaiting, ...] = ()


@dataclass(frozen=True, slots=True)
class EventFacts:
    namespace: str
    pod: str
    reason: str
    message: str
    type: str = "Warning"
    count: int = 1
    first_seen: datetime | None = None
    last_seen: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuthEntry:
    """One ``auths`` key of a pull secret. The password itself is never kept."""

    key: str
    username: str | None
    has_password: bool


@dataclass(frozen=True, slots=True)
class SecretFacts:
    namespace: str
    name: str
    #: the secret's type; None when only its name was listed and it is not a pull-secret type
    type: str | None
    #: parsed ``auths`` entries; None when the content was not read (read-secrets off)
    auths: tuple[AuthEntry, ...] | None = None
    #: why the content does not parse (None: parses, or was not read). Never holds secret text.
    content_error: str | None = None

    @property
    def is_pull_secret_type(self) -> bool:
        return self.type in PULL_SECRET_TYPES


@dataclass(frozen=True, slots=True)
class ServiceAccountFacts:
    namespace: str
    name: str
    image_pull_secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    cluster: str  # the cluster's ARM resource ID (or a context name for the CLI)
    nodes: tuple[NodeFacts, ...]
    workloads: tuple[WorkloadFacts, ...]
    pods: tuple[PodFacts, ...]
    events: tuple[EventFacts, ...]
    service_accounts: tuple[ServiceAccountFacts, ...]
    secrets: tuple[SecretFacts, ...]
    collected_at: datetime
    api_calls: int = 0
    secrets_read: bool = False
    #: kinds the API refused to list (``"secrets"``, ``"events"``) -> the reason
    unreadable: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_workloads", {(w.namespace, w.ref): w for w in self.workloads})
        object.__setattr__(self, "_secrets", {(s.namespace, s.name): s for s in self.secrets})
        object.__setattr__(self, "_sas", {(s.namespace, s.name): s for s in self.service_accounts})
        pods: dict[tuple[str, str], list[PodFacts]] = defaultdict(list)
        for p in self.pods:
            pods[(p.namespace, p.owner)].append(p)
        object.__setattr__(self, "_pods", dict(pods))

    def workload(self, namespace: str, ref: str) -> WorkloadFacts | None:
        found: WorkloadFacts | None = self.__dict__["_workloads"].get((namespace, ref))
        return found

    def secret(self, namespace: str, name: str) -> SecretFacts | None:
        found: SecretFacts | None = self.__dict__["_secrets"].get((namespace, name))
        return found

    def service_account(self, namespace: str, name: str) -> ServiceAccountFacts | None:
        found: ServiceAccountFacts | None = self.__dict__["_sas"].get((namespace, name))
        return found

    def pods_of(self, namespace: str, ref: str) -> list[PodFacts]:
        found: list[PodFacts] = self.__dict__["_pods"].get((namespace, ref), [])
        return found

    def effective_pull_secrets(self, workload: WorkloadFacts) -> tuple[tuple[str, ...], str]:
        """The pull secrets a pod of the workload gets, and who named them ("pod" or
        "serviceaccount/<name>"): as the ServiceAccount admission plugin does, the service
        account's imagePullSecrets are added only when the pod names none itself."""
        if workload.image_pull_secrets:
            return workload.image_pull_secrets, "pod"
        sa = self.service_account(workload.namespace, workload.service_account)
        if sa is not None and sa.image_pull_secrets:
            return sa.image_pull_secrets, f"serviceaccount/{sa.name}"
        return (), "pod"
