"""Preflight findings → the manifest lines they are about (pure).

A finding about one workload points at its container's ``image:`` line (the pod spec's
``imagePullSecrets:`` line for pull-secret findings, the object when neither fits); a finding about
a registry (a missing role, a firewall, anonymous Docker Hub pulls) at every image of the set on that
registry (narrowed to the repositories or workloads it names); a finding about the cluster as a
whole at every workload. A finding about nothing in the set (a registry it does not use) is
dropped.

Public interface::

    locate(findings, manifests, namespace) -> list[PreflightFinding]
    PreflightFinding(finding, locations, objects)      .to_dict()
    namespace_of(obj, namespace) -> str                # the object's, the target's, or "default"
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shared.findings import Finding, sort_findings
from shared.preflight.manifests import Location, ManifestObject, ManifestSet
from shared.reference import ImageRef, ReferenceError, parse_reference

DEFAULT_NAMESPACE = "default"
#: Findings located at the pod spec's imagePullSecrets line.
_SECRET_CODES = (
    "PULL_SECRET_MISSING",
    "PULL_SECRET_MALFORMED",
    "PULL_SECRET_NO_ENTRY_FOR_REGISTRY",
    "PULL_SECRET_REJECTED",
)


@dataclass(frozen=True)
class PreflightFinding:
    """An audit finding and where in the manifests it points: ``locations[0]`` is the main one."""

    finding: Finding
    locations: tuple[Location, ...]
    objects: tuple[str, ...] = ()  # "shop/Deployment/web"

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.finding.to_dict(),
            "locations": [{"path": loc.path, "line": loc.line} for loc in self.locations],
            "objects": list(self.objects),
        }


def namespace_of(obj: ManifestObject, namespace: str | None) -> str:
    return obj.namespace or namespace or DEFAULT_NAMESPACE


def _normalised(image: str) -> str | None:
    try:
        return str(parse_reference(image))
    except ReferenceError:
        return None


def _ref(image: str) -> ImageRef | None:
    try:
        return parse_reference(image)
    except ReferenceError:
        return None


def locate(
    findings: Iterable[Finding], manifests: ManifestSet, namespace: str | None
) -> list[PreflightFinding]:
    """Each finding with the manifest lines it is about; findings about nothing in the set are dropped."""
    objects = [(namespace_of(w, namespace), w) for w in manifests.workloads]
    out: list[PreflightFinding] = []
    for f in sort_findings(findings):
        sites: list[tuple[Location, str]] = []
        if f.workload and f.namespace is not None:
            mine = [(ns, o) for ns, o in objects if ns == f.namespace and o.ref == f.workload]
            for ns, o in mine:
                label = f"{ns}/{o.ref}"
                if f.code in _SECRET_CODES and "imagePullSecrets" in o.lines:
                    sites.append((o.lines["imagePullSecrets"], label))
                elif f.image:
                    matched = [
                        c.location
                        for c in o.containers
                        if c.image == f.image or _normalised(c.image) == f.image
                    ]
                    sites.extend((loc, label) for loc in matched)
                if not any(lab == label for _, lab in sites):
                    sites.append((o.location, label))
        elif f.registry:
            wanted = _wanted_images(f)
            named = _named_workloads(f)
            for ns, o in objects:
                if named is not None and f"{ns}/{o.ref}" not in named:
                    continue
                for c in o.containers:
                    ref = _ref(c.image)
                    if ref is None or ref.registry.lower() != f.registry.lower():
                        continue
                    if wanted is not None and str(ref) not in wanted and ref.repository not in wanted:
                        continue
                    sites.append((c.location, f"{ns}/{o.ref}"))
        else:  # about the cluster as a whole: every workload of the set
            sites = [(o.location, f"{ns}/{o.ref}") for ns, o in objects]
        if not sites:
            continue  # about nothing in the manifests (a registry they do not use)
        locations = tuple(dict.fromkeys(loc for loc, _ in sites))
        labels = tuple(dict.fromkeys(label for _, label in sites))
        out.append(PreflightFinding(f, locations, labels))
    return out


def _wanted_images(f: Finding) -> set[str] | None:
    """The images or repositories a registry-wide finding names, when it names them all."""
    ev = f.evidence
    if f.code == "ROLE_CONDITION_EXCLUDES_REPOSITORY" and ev.get("repositories_excluded"):
        return {str(r) for r in ev["repositories_excluded"]}
    images = ev.get("images")
    count = ev.get("image_count", len(images) if isinstance(images, list) else -1)
    if isinstance(images, list) and images and len(images) == count:
        return {str(i) for i in images}
    return None


def _named_workloads(f: Finding) -> set[str] | None:
    """The ``namespace/Kind/name`` workloads a cluster-wide finding lists, when it lists them all."""
    listed = f.evidence.get("workloads")
    if isinstance(listed, list) and len(listed) == f.evidence.get("workload_count", len(listed)):
        return {str(w) for w in listed}
    return None
