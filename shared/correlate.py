"""Symptoms to root causes, within one audit (pure).

A pod that cannot pull is a symptom; the kubelet's text often cannot say why (ACR answers
``insufficient_scope`` both for a repository that does not exist and for a right the identity lacks).
The audit's other checks usually know. :func:`correlate` links each ``PODS_IMAGE_PULL_FAILING``
finding to the finding of the same audit that explains it, and each ``IMAGE_PLATFORM_MISSING`` to the
pods that crash with ``exec format error`` because of it:

==============================================  ===========================================  ==========
root cause                                      explains the pod failures of                 cause
==============================================  ===========================================  ==========
``REGISTRY_FIREWALL_DENIED``,                   that registry, from that cluster             forbidden
``REGISTRY_PUBLIC_ACCESS_DISABLED``
``REGISTRY_DNS_FAILURE`` / ``_TLS_ERROR`` /     that registry, from that cluster             dns / tls /
``_UNREACHABLE``                                                                             network
``ROLE_MISSING``, ``ROLE_NOT_HONORED_ABAC``,    that ACR, from that cluster                  auth_failed
``REGISTRY_OTHER_TENANT``, ``SP_SECRET_EXPIRED``
``ROLE_CONDITION_EXCLUDES_REPOSITORY``          that ACR, only the repositories left out     auth_failed
``IDENTITY_UNRESOLVED``                         every ACR, from that cluster                 auth_failed
``PULL_SECRET_*``, ``PULL_AUTH_REQUIRED``       that workload (and registry, where named)    auth_failed
``IMAGE_NOT_FOUND``, ``IMAGE_DELETED_IN_USE``   that image, in that cluster                  not_found
``IMAGE_PLATFORM_MISSING``                      that image, in that cluster                  platform_mismatch
==============================================  ===========================================  ==========

A root cause explains a pod failure only where the kubelet's own cause agrees with it (a DNS error
is not explained by a missing role), and the first row that applies wins: without network nothing
else can be tried, without a credential the image cannot be seen. A pod failure that nothing
explains keeps the cause read from the kubelet's text.

A symptom gets ``cause``, ``root_cause`` (the root's :attr:`~shared.findings.Finding.id`), the root's
remediation, and evidence ``kubelet_cause`` (what the kubelet's text alone said). A root cause gets
``symptoms`` (their ids); an ``IMAGE_PLATFORM_MISSING`` whose workload has crashing pods gets evidence
``crashing_pods``.

Public interface::

    correlate(findings, crashes=None) -> list[Finding]
    CrashFacts                             # pods crashing with exec format error, per workload
    AUTH_ROOTS, NETWORK_ROOTS, SECRET_ROOTS, IMAGE_ROOTS
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from shared.causes import ACR, registry_family
from shared.findings import Finding
from shared.reference import ReferenceError, parse_reference

SYMPTOM = "PODS_IMAGE_PULL_FAILING"
MAX_SYMPTOMS = 500  # ids a root cause lists; beyond, evidence ``symptoms_total`` counts them

#: Network roots and the pull-error cause each one produces.
NETWORK_ROOTS: Mapping[str, str] = {
    "REGISTRY_FIREWALL_DENIED": "forbidden",
    "REGISTRY_PUBLIC_ACCESS_DISABLED": "forbidden",
    "REGISTRY_DNS_FAILURE": "dns",
    "REGISTRY_TLS_ERROR": "tls",
    "REGISTRY_UNREACHABLE": "network",
}
#: The pull identity lacks the right: every pull from that ACR fails authentication.
AUTH_ROOTS = frozenset(
    {
        "ROLE_MISSING",
        "ROLE_NOT_HONORED_ABAC",
        "ROLE_CONDITION_EXCLUDES_REPOSITORY",
        "IDENTITY_UNRESOLVED",
        "SP_SECRET_EXPIRED",
        "REGISTRY_OTHER_TENANT",
    }
)
SECRET_ROOTS = frozenset(
    {
        "PULL_SECRET_MISSING",
        "PULL_SECRET_MALFORMED",
        "PULL_SECRET_NO_ENTRY_FOR_REGISTRY",
        "PULL_SECRET_REJECTED",
        "PULL_AUTH_REQUIRED",
    }
)
IMAGE_ROOTS = frozenset({"IMAGE_NOT_FOUND", "IMAGE_DELETED_IN_USE"})

# The kubelet causes each kind of root can explain: what the kubelet says when that is the problem,
# plus the causes that say nothing definite.
_VAGUE = frozenset({"no_detail", "unknown"})
_AUTH_SAYS = frozenset({"auth_failed", "auth_or_not_found"}) | _VAGUE
_NOT_FOUND_SAYS = frozenset({"not_found", "auth_or_not_found"}) | _VAGUE
_PLATFORM_SAYS = frozenset({"platform_mismatch"}) | _VAGUE


@dataclass(frozen=True)
class CrashFacts:
    """Pods of one workload on one node pool whose container, after pulling ``image``, crashes with
    what a binary for another architecture does: ``exec format error`` (see
    :func:`shared.checks.pods.exec_format_crashes`)."""

    namespace: str
    workload: str
    image: str
    node_pool: str | None
    pods: int


def _lower(text: str | None) -> str:
    return (text or "").lower()


def _repository(image: str | None) -> str | None:
    if not image:
        return None
    try:
        return parse_reference(image).repository
    except ReferenceError:
        return None


def _same_registry(root: Finding, pod: Finding) -> bool:
    return bool(root.registry) and _lower(root.registry) == _lower(pod.registry)


def _explains(root: Finding, pod: Finding) -> str | None:
    """The cause ``root`` gives ``pod``'s pull failure, or None when it does not explain it."""
    if _lower(root.cluster) != _lower(pod.cluster):
        return None
    said = pod.cause or "no_detail"
    if root.code in NETWORK_ROOTS:
        cause = NETWORK_ROOTS[root.code]
        agrees = said in {cause, "network", "auth_or_not_found"} | _VAGUE
        return cause if agrees and _same_registry(root, pod) else None
    if root.code in AUTH_ROOTS:
        if said not in _AUTH_SAYS:
            return None
        if root.code == "IDENTITY_UNRESOLVED":
            return "auth_failed" if registry_family(pod.registry) == ACR else None
        if not _same_registry(root, pod):
            return None
        if root.code == "ROLE_CONDITION_EXCLUDES_REPOSITORY":
            left_out = root.evidence.get("repositories_excluded") or ()
            return "auth_failed" if _repository(pod.image) in left_out else None
        return "auth_failed"
    if root.code in SECRET_ROOTS:
        if said not in _AUTH_SAYS or (root.namespace, root.workload) != (pod.namespace, pod.workload):
            return None
        return "auth_failed" if not root.registry or _same_registry(root, pod) else None
    if root.code in IMAGE_ROOTS:
        return "not_found" if said in _NOT_FOUND_SAYS and root.image and root.image == pod.image else None
    if root.code == "IMAGE_PLATFORM_MISSING":
        return "platform_mismatch" if said in _PLATFORM_SAYS and root.image == pod.image else None
    return None


# The order in which roots are tried: the first that explains a pod failure is its root cause.
_ORDER: tuple[Callable[[str], bool], ...] = (
    lambda code: code in NETWORK_ROOTS,
    lambda code: code in AUTH_ROOTS,
    lambda code: code in SECRET_ROOTS,
    lambda code: code in IMAGE_ROOTS,
    lambda code: code == "IMAGE_PLATFORM_MISSING",
)


def _rank(code: str) -> int:
    return next((i for i, test in enumerate(_ORDER) if test(code)), len(_ORDER))


def _symptom(pod: Finding, root: Finding, cause: str) -> Finding:
    pods = pod.evidence.get("pods")
    count = pods if isinstance(pods, int) and pods > 0 else 1
    subject = pod.image or "its image"
    where = f" in {pod.namespace}" if pod.namespace else ""
    return pod.with_(
        cause=cause,
        root_cause=root.id,
        message=(
            f"{count} pod{'s' if count != 1 else ''} of {pod.workload}{where} cannot pull {subject}: "
            f"{root.message.rstrip('.')} ({root.code})."
        ),
        remediation=root.remediation,
        evidence={**pod.evidence, "kubelet_cause": pod.cause},
    )


def correlate(findings: Sequence[Finding], crashes: Sequence[CrashFacts] | None = None) -> list[Finding]:
    """The findings, in the same order, with every symptom linked to its root cause (see module doc)."""
    # Roots indexed by what they can share with a pod failure (registry, workload, image, or the
    # whole cluster), so that each failure is compared only with the roots that may explain it.
    index: dict[tuple[str | None, ...], list[tuple[int, int, Finding]]] = {}
    for order, f in enumerate(findings):
        if _rank(f.code) >= len(_ORDER) or f.root_cause is not None:
            continue
        cluster = _lower(f.cluster)
        for key in (
            ("registry", cluster, _lower(f.registry)) if f.registry else ("cluster", cluster),
            ("workload", cluster, f.namespace, f.workload),
            ("image", cluster, f.image),
        ):
            index.setdefault(key, []).append((_rank(f.code), order, f))
    out: list[Finding] = []
    symptoms: dict[str, list[str]] = {}
    for f in findings:
        if f.code == SYMPTOM and f.root_cause is None:
            cluster = _lower(f.cluster)
            candidates = {
                order: (rank, order, root)
                for key in (
                    ("registry", cluster, _lower(f.registry)),
                    ("cluster", cluster),
                    ("workload", cluster, f.namespace, f.workload),
                    ("image", cluster, f.image),
                )
                for rank, order, root in index.get(key, ())
            }
            roots = [root for _, _, root in sorted(candidates.values(), key=lambda c: (c[0], c[1]))]
            found = next(((r, c) for r in roots if (c := _explains(r, f))), None)
            if found is not None:
                f = _symptom(f, *found)
                symptoms.setdefault(found[0].id, []).append(f.id)
        out.append(f)
    crashing: dict[tuple[str | None, ...], int] = {}
    for crash in crashes or ():
        key = (crash.namespace, crash.workload, crash.image, crash.node_pool)
        crashing[key] = crashing.get(key, 0) + crash.pods
    linked = []
    for f in out:
        if f.id in symptoms:
            ids = sorted(set(f.symptoms) | set(symptoms[f.id]))
            f = f.with_(symptoms=tuple(ids[:MAX_SYMPTOMS]))
            if len(ids) > MAX_SYMPTOMS:  # a stored finding stays small; each symptom names its root
                f = f.with_(evidence={**f.evidence, "symptoms_total": len(ids)})
        crashed = crashing.get((f.namespace, f.workload, f.image, f.node_pool))
        if f.code == "IMAGE_PLATFORM_MISSING" and crashed:
            f = f.with_(
                message=f"{f.message} {crashed} pod{'s are' if crashed != 1 else ' is'} in CrashLoopBackOff "
                "there with exec format error.",
                evidence={**f.evidence, "crashing_pods": crashed},
            )
        linked.append(f)
    return linked
