"""A registry check that could not run keeps that registry's earlier findings open.

Contract (shared/compare.py): a CHECK_INCOMPLETE's evidence ``check`` is a catalogue group (roles,
images, network, access, secrets, cluster, performance) or ``all``; a previous finding missing from
the current audit stays open when a current CHECK_INCOMPLETE covers its group. So when the registry
cannot be checked (e.g. token withheld, tenant not trusted), the image checks' CHECK_INCOMPLETE names
a group and the registry's open IMAGE_NOT_FOUND is not resolved by silence. Real functions, no
stand-ins: the findings come from ``image_findings`` over registry-client results, then ``compare``."""

from __future__ import annotations

from shared.checks.images import ImageUsage, image_findings, usage_or_finding
from shared.clients.registry import ImageResult, Step
from shared.compare import compare

CLUSTER = (
    "/subscriptions/22222222-2222-2222-2222-222222222222/resourceGroups/rg-prod"
    "/providers/Microsoft.ContainerService/managedClusters/aks-prod"
)
IMAGE = "contosoacr.azurecr.io/shop/web:1.4.3"


def _usage() -> ImageUsage:
    usage = usage_or_finding(CLUSTER, "shop", "Deployment/web", IMAGE)
    assert isinstance(usage, ImageUsage)
    return usage


def _findings(result: ImageResult) -> list[object]:
    usage = _usage()
    return list(image_findings(CLUSTER, [usage], {(str(usage.ref), "pullwatch"): result}, []))


def _result(step: Step) -> ImageResult:
    usage = _usage()
    return ImageResult(ref=usage.ref, identity="pullwatch", steps=(step,), detail=step.detail)


NOT_FOUND = Step("manifest", False, 1.0, 404, "MANIFEST_UNKNOWN", "manifest unknown")
WITHHELD = Step("auth", False, 0.0, detail="Entra token withheld", kind="not_attempted")


def test_an_open_image_finding_is_not_resolved_when_its_registry_could_not_be_checked() -> None:
    previous = _findings(_result(NOT_FOUND))
    assert [f.code for f in previous] == ["IMAGE_NOT_FOUND"]  # type: ignore[attr-defined]
    current = _findings(_result(WITHHELD))
    assert [f.code for f in current] == ["CHECK_INCOMPLETE"]  # type: ignore[attr-defined]
    changes = compare(previous, current)  # type: ignore[arg-type]
    assert not changes.resolved, "IMAGE_NOT_FOUND announced as resolved though nothing was checked"
    assert [f.code for f in changes.still_open] == ["IMAGE_NOT_FOUND"]
