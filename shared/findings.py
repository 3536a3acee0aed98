"""Findings: the one thing every check produces (contract: docs/spec/findings.md).

A finding is one problem, on one target, with one code from :data:`CATALOGUE`. Its JSON form is
exactly the spec's: every field present, ``null`` where it does not apply.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any


class Severity(enum.Enum):
    """Ordered from most to least urgent; ``unknown`` means a check could not run."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    UNKNOWN = "unknown"

    @property
    def rank(self) -> int:
        """Higher is more urgent. ``unknown`` (a check could not run) ranks just below error: it may
        hide one, so the default notification threshold (warning) never filters it out."""
        return {"error": 4, "unknown": 3, "warning": 2, "info": 1}[self.value]

    def at_least(self, other: Severity) -> bool:
        return self.rank >= other.rank

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls(text.strip().lower())
        except ValueError:
            names = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown severity {text!r} (expected one of: {names})") from None


@dataclass(frozen=True)
class Code:
    """One catalogue line: what a finding code means and how it is usually fixed."""

    code: str
    severity: Severity
    group: str
    title: str
    meaning: str
    fix: str


_E, _W, _I, _U = Severity.ERROR, Severity.WARNING, Severity.INFO, Severity.UNKNOWN

_CODES: tuple[Code, ...] = (
    # Identity and roles (control plane)
    Code(
        "ROLE_MISSING",
        _E,
        "roles",
        "Pull identity has no pull role",
        "The cluster's pull identity holds no role assignment (direct, inherited or through a group) "
        "whose effective permissions include Microsoft.ContainerRegistry/registries/pull/read.",
        "Assign AcrPull to the kubelet identity at the registry scope.",
    ),
    Code(
        "ROLE_NOT_HONORED_ABAC",
        _E,
        "roles",
        "Registry in ABAC mode ignores the identity's roles",
        "The registry uses ABAC repository permissions; the identity holds only roles ABAC mode ignores "
        "for data access (AcrPull, AcrPush, Owner, Contributor, Reader, ...).",
        "Assign Container Registry Repository Reader to the kubelet identity at the registry scope.",
    ),
    Code(
        "ROLE_CONDITION_EXCLUDES_REPOSITORY",
        _E,
        "roles",
        "Role condition leaves out repositories in use",
        "The identity's repository roles carry ABAC conditions that match none of some repositories "
        "the cluster's workloads use.",
        "Widen the role assignment's condition, or add an assignment for the repositories left out.",
    ),
    Code(
        "IDENTITY_UNRESOLVED",
        _E,
        "roles",
        "Cluster pull identity cannot be determined",
        "The cluster has no kubelet identity, or its service principal cannot be found.",
        "Check the cluster's identityProfile / servicePrincipalProfile, or attach a kubelet identity.",
    ),
    Code(
        "REGISTRY_OTHER_TENANT",
        _E,
        "roles",
        "Registry is in another Entra tenant",
        "The registry belongs to another tenant than the cluster: the kubelet identity cannot "
        "authenticate to it without a pull secret or a multitenant application.",
        "Use an imagePullSecret for the registry, or a multitenant service principal.",
    ),
    Code(
        "ABAC_MODE_SWITCHED",
        _W,
        "roles",
        "Registry switched to ABAC mode",
        "A registry the cluster uses was switched to ABAC mode: nodes keep cached credentials that "
        "fail with 401 until kubelet restarts or nodes are replaced.",
        "Make sure the identity holds Container Registry Repository Reader, then reimage or restart the nodes.",
    ),
    # Images (data plane)
    Code(
        "IMAGE_NOT_FOUND",
        _E,
        "images",
        "Image does not exist",
        "A workload's image (repository, tag or digest) does not exist in its registry.",
        "Push the image, or point the workload at a tag that exists.",
    ),
    Code(
        "IMAGE_PLATFORM_MISSING",
        _E,
        "images",
        "Image lacks a node pool's platform",
        "The image exists but has no manifest for the OS/architecture of a node pool where the "
        "workload can run.",
        "Build and push the image for the missing platform, or pin the workload to pools it supports.",
    ),
    Code(
        "IMAGE_REFERENCE_INVALID",
        _E,
        "images",
        "Image reference does not parse",
        "The image reference does not follow the distribution reference grammar.",
        "Fix the image reference (lower-case repository, valid tag or digest).",
    ),
    Code(
        "IMAGE_DELETED_IN_USE",
        _W,
        "images",
        "Image in use was deleted",
        "An image that running workloads use was deleted from the registry: pods run now, the next "
        "pull on a new node fails.",
        "Push the image again or roll the workload to an image that exists.",
    ),
    # Registry reachability and access
    Code(
        "REGISTRY_DNS_FAILURE",
        _E,
        "network",
        "Registry name does not resolve",
        "The registry's login server (or data endpoint) does not resolve.",
        "Check DNS: private DNS zone links, custom DNS servers, the registry name.",
    ),
    Code(
        "REGISTRY_UNREACHABLE",
        _E,
        "network",
        "Registry unreachable",
        "Connection timed out, was refused, or the network is unreachable.",
        "Check firewalls, NSGs, UDRs and proxies between the cluster and the registry.",
    ),
    Code(
        "REGISTRY_TLS_ERROR",
        _E,
        "network",
        "TLS to the registry failed",
        "TLS handshake or certificate verification failed (untrusted CA, expired certificate, proxy "
        "interception, plain HTTP on a TLS port).",
        "Check the registry certificate and any TLS-intercepting proxy; trust its CA on the nodes.",
    ),
    Code(
        "REGISTRY_FIREWALL_DENIED",
        _E,
        "network",
        "Registry firewall denies the cluster",
        "The registry refuses the cluster's network (403 DENIED, client IP not allowed).",
        "Allow the cluster's egress IPs in the registry's network rules, or use a private endpoint.",
    ),
    Code(
        "REGISTRY_PUBLIC_ACCESS_DISABLED",
        _E,
        "network",
        "Registry public access disabled, no private path",
        "The registry's public network access is disabled and it has no private endpoint reachable "
        "from the cluster's virtual network.",
        "Create a private endpoint for the registry in (or peered with) the cluster's virtual network.",
    ),
    Code(
        "REGISTRY_AUTH_REJECTED",
        _E,
        "access",
        "Registry rejected the pull credentials",
        "The pull identity obtained no pull token, or the registry answered 401 with it, although a "
        "pull role was found.",
        "Check the registry's authentication-as-ARM policy and the identity's token audience.",
    ),
    Code(
        "REGISTRY_RATE_LIMITED",
        _W,
        "access",
        "Registry throttles pulls",
        "The registry answered 429 / TOOMANYREQUESTS.",
        "Authenticate pulls, mirror the images into your own registry, or reduce pull frequency.",
    ),
    Code(
        "REGISTRY_SERVER_ERROR",
        _W,
        "access",
        "Registry server error",
        "The registry answered 5xx.",
        "Check the registry's service health; retry later.",
    ),
    # Pull secrets
    Code(
        "PULL_SECRET_MISSING",
        _E,
        "secrets",
        "Named pull secret does not exist",
        "A pod or its service account names an imagePullSecret that does not exist in the namespace.",
        "Create the secret in the namespace, or remove it from the workload.",
    ),
    Code(
        "PULL_SECRET_MALFORMED",
        _E,
        "secrets",
        "Pull secret is malformed",
        "A named pull secret is not of a docker config type, or its content does not parse, or has no auths.",
        "Recreate it with kubectl create secret docker-registry.",
    ),
    Code(
        "PULL_SECRET_NO_ENTRY_FOR_REGISTRY",
        _E,
        "secrets",
        "Pull secrets lack the image's registry",
        "The workload's pull secrets exist but none has an entry for the image's registry host.",
        "Add an auths entry for the registry host to one of the workload's pull secrets.",
    ),
    Code(
        "PULL_SECRET_REJECTED",
        _E,
        "secrets",
        "Registry rejects the pull secret",
        "The registry refuses the credentials in the pull secret.",
        "Renew the credentials and update the secret.",
    ),
    Code(
        "PULL_AUTH_REQUIRED",
        _E,
        "secrets",
        "Registry requires credentials the workload lacks",
        "The registry refuses anonymous pulls of the repository and the workload has no pull secret for it.",
        "Create a pull secret for the registry and name it in the workload or its service account.",
    ),
    Code(
        "DOCKERHUB_ANONYMOUS_PULLS",
        _W,
        "secrets",
        "Anonymous Docker Hub pulls",
        "Workloads pull from Docker Hub without credentials: subject to anonymous pull rate limits.",
        "Mirror the images into your registry (ACR artifact cache), or add Docker Hub credentials.",
    ),
    # Observed failures
    Code(
        "PODS_IMAGE_PULL_FAILING",
        _E,
        "cluster",
        "Pods cannot pull their image",
        "Pods wait in ErrImagePull, ImagePullBackOff, InvalidImageName, ErrImageNeverPull or a "
        "sandbox-image pull failure.",
        "Read the cause; fix the credential, reference or network it names.",
    ),
    Code(
        "PROBE_PULL_FAILED",
        _E,
        "cluster",
        "In-cluster probe could not pull",
        "The opt-in probe pod on a node pool could not pull from the registry.",
        "Read the cause from the probe's events; fix identity or network for that node pool.",
    ),
    # Performance
    Code(
        "REGISTRY_NOT_IN_CLUSTER_REGION",
        _I,
        "performance",
        "Registry not replicated to the cluster's region",
        "The registry has neither its home nor a geo-replica in the cluster's region.",
        "Add a geo-replication of the registry in the cluster's region (Premium SKU).",
    ),
    Code(
        "REGISTRY_SLOW",
        _I,
        "performance",
        "Registry answers slowly",
        "The registry answered the pull path (token + manifest) slower than the configured threshold.",
        "Check the network path and the registry's region; consider a replica near the cluster.",
    ),
    # Coverage
    Code(
        "CHECK_INCOMPLETE",
        _U,
        "coverage",
        "A check could not run",
        "A check could not run (no permission, API server unreachable, time limit, ...).",
        "Read the evidence: grant the missing permission or restore reachability.",
    ),
)

CATALOGUE: Mapping[str, Code] = {c.code: c for c in _CODES}

#: The order of the JSON fields, as the spec shows them.
FIELDS: tuple[str, ...] = (
    "id",
    "code",
    "severity",
    "cluster",
    "registry",
    "image",
    "namespace",
    "workload",
    "node_pool",
    "cause",
    "message",
    "evidence",
    "remediation",
    "root_cause",
    "symptoms",
)

#: The fields that hold a string or null.
_OPTIONAL_TEXT: tuple[str, ...] = tuple(
    f for f in FIELDS if f not in ("id", "code", "severity", "message", "evidence", "symptoms")
)

#: The fields that make a finding's identity (spec: for "new" / "resolved").
IDENTITY_FIELDS: tuple[str, ...] = (
    "id",
    "code",
    "cluster",
    "registry",
    "image",
    "namespace",
    "workload",
    "node_pool",
)


class FindingError(ValueError):
    """A finding or findings document that does not follow the contract."""


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    severity: Severity | None = None  # None: the catalogue's default for the code
    cluster: str | None = None
    registry: str | None = None
    image: str | None = None
    namespace: str | None = None
    workload: str | None = None
    node_pool: str | None = None
    cause: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    remediation: str | None = None
    root_cause: str | None = None  # the id of the finding that explains this one (same audit)
    symptoms: tuple[str, ...] = ()  # ids of the findings this one explains

    def __post_init__(self) -> None:
        if self.code not in CATALOGUE:
            raise FindingError(f"unknown finding code {self.code!r}")
        if self.severity is None:
            object.__setattr__(self, "severity", CATALOGUE[self.code].severity)

    @property
    def level(self) -> Severity:
        assert self.severity is not None  # set in __post_init__
        return self.severity

    @property
    def key(self) -> tuple[str | None, ...]:
        """Identity for new/resolved. Resource IDs and hosts compare case-insensitively."""
        return (
            self.code,
            self.cluster.lower() if self.cluster else None,
            self.registry.lower() if self.registry else None,
            self.image,
            self.namespace,
            self.workload,
            self.node_pool,
        )

    @property
    def key_text(self) -> str:
        """The identity as one stable string (storage row keys, de-duplication)."""
        return "|".join("" if v is None else v for v in self.key)

    @property
    def id(self) -> str:
        """Stable across audits: the code and a digest of the identity (``ROLE_MISSING:3f0c…``)."""
        return f"{self.code}:{hashlib.sha256(self.key_text.encode()).hexdigest()[:12]}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in FIELDS:
            value = getattr(self, name)
            if name == "severity":
                value = self.level.value
            elif name == "evidence":
                value = dict(value)
            elif name == "symptoms":
                value = list(value)
            out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        if not isinstance(data, Mapping):
            raise FindingError(f"a finding must be a JSON object, not {type(data).__name__}")
        unknown = set(data) - set(FIELDS)
        if unknown:
            raise FindingError(f"unknown finding field(s): {', '.join(sorted(unknown))}")
        for required in ("code", "message"):
            if not isinstance(data.get(required), str):
                raise FindingError(f"finding field {required!r} must be a string")
        sev = data.get("severity")
        evidence = data.get("evidence")
        evidence = {} if evidence is None else evidence
        if not isinstance(evidence, Mapping):
            raise FindingError("finding field 'evidence' must be an object")
        symptoms = data.get("symptoms") or []
        if not isinstance(symptoms, list) or not all(isinstance(s, str) for s in symptoms):
            raise FindingError("finding field 'symptoms' must be a list of finding ids")
        if data.get("id") is not None and not isinstance(data.get("id"), str):
            raise FindingError("finding field 'id' must be a string")
        kwargs: dict[str, Any] = {"symptoms": tuple(symptoms)}
        for name in _OPTIONAL_TEXT:
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise FindingError(f"finding field {name!r} must be a string or null")
            kwargs[name] = value
        try:
            severity = Severity.parse(sev) if isinstance(sev, str) else None
        except ValueError as exc:
            raise FindingError(str(exc)) from None
        return cls(
            code=data["code"], message=data["message"], severity=severity, evidence=dict(evidence), **kwargs
        )

    def with_(self, **changes: Any) -> Finding:
        return replace(self, **changes)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Most urgent first, then by target, so output and messages are stable."""
    return sorted(
        findings,
        key=lambda f: (
            -f.level.rank,
            f.cluster or "",
            f.code,
            f.registry or "",
            f.namespace or "",
            f.workload or "",
            f.image or "",
            f.node_pool or "",
        ),
    )


def dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per identity; the first one seen wins."""
    seen: dict[tuple[str | None, ...], Finding] = {}
    for f in findings:
        seen.setdefault(f.key, f)
    return list(seen.values())


def worst(findings: Iterable[Finding]) -> Severity | None:
    levels = [f.level for f in findings]
    return max(levels, key=lambda s: s.rank) if levels else None


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.level is Severity.ERROR for f in findings)


def dumps(findings: Iterable[Finding], **extra: Any) -> str:
    """A findings document: ``{"findings": [...], ...extra}``."""
    return json.dumps({"findings": [f.to_dict() for f in findings], **extra}, indent=2)


def load_document(text: str, source: str = "input") -> list[Finding]:
    """Parse a findings document: ``{"findings": [...]}``, a bare list, or a sandbox run report."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FindingError(
            f"{source}: not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    items: Any
    if isinstance(data, list):
        items = data
    elif isinstance(data, dict) and isinstance(data.get("findings"), list):
        items = data["findings"]
    else:
        raise FindingError(f"{source}: expected a list of findings or an object with a 'findings' list")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(Finding.from_dict(item))
        except FindingError as exc:
            raise FindingError(f"{source}: finding #{i + 1}: {exc}") from None
    return out
