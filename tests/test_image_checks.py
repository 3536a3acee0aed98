"""shared/checks/images.py: registry results → findings (pure)."""

from __future__ import annotations

import json

from shared.checks.images import ImageUsage, image_findings, region_findings, usage_or_finding
from shared.clients.registry import ImageResult, Step
from shared.findings import Finding
from shared.reference import parse_reference

CLUSTER = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks-prod"
POOLS = [("system", "linux", "amd64"), ("arm", "linux", "arm64"), ("win", "windows", "amd64")]
BASE = (
    Step("dns", True, 1.0),
    Step("tcp", True, 1.0),
    Step("tls", True, 2.0),
    Step("challenge", True, 3.0, 401),
)


def ok(image: str, platforms: tuple[str, ...] | None = ("linux/amd64",), **kw: object) -> ImageResult:
    return ImageResult(
        parse_reference(image),
        "pullwatch",
        (*BASE, Step("manifest", True, 5.0, 200)),
        platforms=platforms,
        **kw,
    )  # type: ignore[arg-type]


def failed(image: str, step: Step, **kw: object) -> ImageResult:
    """What the registry client reports: the steps walked, the last one failed."""
    return ImageResult(parse_reference(image), "pullwatch", (*BASE[:1], step), **kw)  # type: ignore[arg-type]


def usage(ns: str, workload: str, image: str, pools: tuple[str, ...] = ()) -> ImageUsage:
    return ImageUsage(ns, workload, parse_reference(image), pools)


def index(*results: ImageResult) -> dict[tuple[str, str], ImageResult]:
    return {r.key: r for r in results}


def codes(findings: list[Finding]) -> list[str]:
    return sorted(f.code for f in findings)


def test_registry_wide_failure_is_one_finding_per_registry() -> None:
    step = Step("dns", False, 3.0, detail="gone.azurecr.io does not resolve", kind="name_unresolved")
    results = index(
        *(
            failed(
                f"gone.azurecr.io/app{i}:1",
                step,
                detail="gone.azurecr.io does not resolve",
            )
            for i in range(5)
        )
    )
    usages = [usage("shop", f"Deployment/app{i}", f"gone.azurecr.io/app{i}:1") for i in range(5)]
    usages += [usage("shop", f"Deployment/copy{i}", f"gone.azurecr.io/app{i}:1") for i in range(5)]
    findings = image_findings(CLUSTER, usages, results, POOLS)
    assert codes(findings) == ["REGISTRY_DNS_FAILURE"]
    [f] = findings
    assert f.registry == "gone.azurecr.io" and f.image is None and f.workload is None
    assert f.evidence["image_count"] == 5 and f.evidence["workload_count"] == 10
    assert f.evidence["step"] == "dns"
    assert f.remediation and "gone" in f.remediation


def test_not_found_is_per_workload_and_image_with_suggestions() -> None:
    miss = failed(
        "contosoacr.azurecr.io/web:1.4.4",
        Step("manifest", False, 4.0, 404, "MANIFEST_UNKNOWN"),
        suggestions=("1.4.3", "1.4.2"),
        repository_exists=True,
    )
    usages = [
        usage("shop", "Deployment/web", "contosoacr.azurecr.io/web:1.4.4"),
        usage("shop", "Deployment/web", "contosoacr.azurecr.io/web:1.4.4"),  # two containers
        usage("beta", "Deployment/web", "contosoacr.azurecr.io/web:1.4.4"),
    ]
    findings = image_findings(CLUSTER, usages, index(miss), POOLS)
    assert codes(findings) == ["IMAGE_NOT_FOUND", "IMAGE_NOT_FOUND"]
    f = findings[0]
    assert f.image == "contosoacr.azurecr.io/web:1.4.4" and f.workload == "Deployment/web"
    assert "1.4.3" in f.message and f.evidence["suggested_tags"] == ["1.4.3", "1.4.2"]
    assert (
        f.remediation
        == "az acr repository show-tags -n contosoacr --repository web --orderby time_desc -o table"
    )


def test_platform_missing_against_the_pools_a_workload_can_use() -> None:
    amd64_only = ok("contosoacr.azurecr.io/api:2.0", ("linux/amd64",))
    multi = ok("contosoacr.azurecr.io/web:1.4.2", ("linux/amd64", "linux/arm64"))
    usages = [
        usage("shop", "Deployment/api", "contosoacr.azurecr.io/api:2.0", ("system", "arm")),
        usage("shop", "Deployment/web", "contosoacr.azurecr.io/web:1.4.2", ("system", "arm")),
        usage("shop", "Deployment/api-x86", "contosoacr.azurecr.io/api:2.0", ("system",)),
    ]
    findings = image_findings(CLUSTER, usages, index(amd64_only, multi), POOLS)
    assert codes(findings) == ["IMAGE_PLATFORM_MISSING"]
    [f] = findings
    assert f.workload == "Deployment/api" and f.node_pool == "arm" and f.evidence["missing"] == "linux/arm64"
    assert f.evidence["pool"] == {"name": "arm", "platform": "linux/arm64"}
    assert f.remediation and "--platform linux/amd64,linux/arm64" in f.remediation
    assert "docker buildx build" in f.remediation


def test_no_pool_restriction_means_every_pool_including_windows() -> None:
    findings = image_findings(
        CLUSTER,
        [usage("shop", "Deployment/api", "contosoacr.azurecr.io/api:2.0")],
        index(ok("contosoacr.azurecr.io/api:2.0", ("linux/amd64",))),
        POOLS,
    )
    assert sorted((f.node_pool, f.evidence["missing"]) for f in findings) == [
        ("arm", "linux/arm64"),
        ("win", "windows/amd64"),
    ]
    assert len({f.key for f in findings}) == 2  # node_pool is part of the identity


def test_pullwatch_identity_refused_is_incomplete_not_a_pull_failure() -> None:
    step = Step("manifest", False, 3.0, 403, "DENIED", "access denied", authenticated=True)
    rs = [
        ImageResult(
            parse_reference(f"fabrikamacr.azurecr.io/team-a/app{i}:1"),
            "pullwatch",
            (*BASE, step),
            detail="access denied",
            auth="entra",
        )
        for i in range(3)
    ]
    usages = [
        usage("shop", f"StatefulSet/app{i}", f"fabrikamacr.azurecr.io/team-a/app{i}:1") for i in range(3)
    ]
    findings = image_findings(CLUSTER, usages, index(*rs), POOLS)
    assert codes(findings) == ["CHECK_INCOMPLETE"]
    [f] = findings
    assert f.registry == "fabrikamacr.azurecr.io" and f.workload is None
    assert "pullwatch's own identity" in f.evidence["reason"] and f.evidence["image_count"] == 3
    assert f.remediation and "fabrikamacr" in f.remediation


def test_platforms_unknown_make_no_finding() -> None:
    findings = image_findings(
        CLUSTER,
        [usage("shop", "Deployment/api", "contosoacr.azurecr.io/api:2.0")],
        index(ok("contosoacr.azurecr.io/api:2.0", None)),
        POOLS,
    )
    assert findings == []


def test_firewall_remediation_uses_the_denied_ip() -> None:
    detail = "client with IP '203.0.113.9' is not allowed access. Refer https://aka.ms/acr/firewall to grant access."
    r = failed(
        "contosoacr.azurecr.io/web:1",
        Step("exchange", False, 9.0, 403, "DENIED", detail, errors=(("DENIED", detail),), authenticated=True),
        detail=detail,
    )
    [f] = image_findings(
        CLUSTER, [usage("shop", "Deployment/web", "contosoacr.azurecr.io/web:1")], index(r), POOLS
    )
    assert f.code == "REGISTRY_FIREWALL_DENIED" and f.evidence["status"] == 403
    assert f.evidence["error_code"] == "DENIED"
    assert f.remediation == "az acr network-rule add -n contosoacr --ip-address 203.0.113.9"


def test_incomplete_is_reported_never_a_pass() -> None:
    r = failed(
        "contosoacr.azurecr.io/web:1",
        Step("auth", False, 0.0, kind="not_attempted"),
        detail="registry tenant is unknown (PULLWATCH_TRUSTED_TENANTS): Entra token withheld",
    )
    [f] = image_findings(
        CLUSTER, [usage("shop", "Deployment/web", "contosoacr.azurecr.io/web:1")], index(r), POOLS
    )
    assert f.code == "CHECK_INCOMPLETE" and f.level.value == "unknown"
    assert f.evidence["check"] == "images,network,access" and "tenant" in f.evidence["reason"]


def test_secret_identity_rejected_becomes_pull_secret_rejected() -> None:
    r = ImageResult(
        parse_reference("docker.example.org/web:1"),
        "secret:shop/regcred",
        (*BASE, Step("manifest", False, 2.0, 401, "UNAUTHORIZED", authenticated=True)),
        detail="authentication required",
    )
    u = ImageUsage(
        "shop", "Deployment/web", parse_reference("docker.example.org/web:1"), (), "secret:shop/regcred"
    )
    [f] = image_findings(CLUSTER, [u], index(r), POOLS)
    assert f.code == "PULL_SECRET_REJECTED" and f.namespace == "shop" and "regcred" in (f.remediation or "")


def test_slow_registry_once_per_registry() -> None:
    rs = [ok(f"contosoacr.azurecr.io/a{i}:1", slow=True, latency_ms=4000.0 + i) for i in range(3)]
    usages = [
        usage("shop", f"Deployment/a{i}", f"contosoacr.azurecr.io/a{i}:1", ("system",)) for i in range(3)
    ]
    findings = image_findings(CLUSTER, usages, index(*rs), POOLS)
    assert codes(findings) == ["REGISTRY_SLOW"]
    assert findings[0].evidence["latency_ms"] == 4002.0 and findings[0].level.value == "info"


def test_invalid_reference_and_evidence_is_json() -> None:
    bad = usage_or_finding(CLUSTER, "shop", "Deployment/web", "Contoso/Web:1")
    assert isinstance(bad, Finding) and bad.code == "IMAGE_REFERENCE_INVALID" and "lower-case" in bad.message
    good = usage_or_finding(CLUSTER, "shop", "Deployment/web", "nginx")
    assert isinstance(good, ImageUsage) and str(good.ref) == "docker.io/library/nginx:latest"
    json.dumps([f.to_dict() for f in image_findings(CLUSTER, [good], index(ok("nginx")), POOLS)])


def test_region() -> None:
    assert region_findings(CLUSTER, "westeurope", "contosoacr.azurecr.io", "West Europe") == []
    assert region_findings(CLUSTER, "westeurope", "contosoacr.azurecr.io", "eastus", ["West Europe"]) == []
    [f] = region_findings(CLUSTER, "westeurope", "contosoacr.azurecr.io", "eastus", ["northeurope"])
    assert f.code == "REGISTRY_NOT_IN_CLUSTER_REGION"
    assert f.remediation == "az acr replication create -r contosoacr -l westeurope"
    assert region_findings(CLUSTER, "westeurope", "contosoacr.azurecr.io", None) == []


def test_a_missing_platform_says_whether_pods_fail_to_pull_or_crash() -> None:
    single = ok(
        "contosoacr.azurecr.io/api:2.0",
        ("linux/amd64",),
        media_type="application/vnd.oci.image.manifest.v1+json",
    )
    an_index = ok(
        "contosoacr.azurecr.io/web:1.0",
        ("linux/amd64",),
        media_type="application/vnd.oci.image.index.v1+json",
    )
    usages = [
        usage("shop", "Deployment/api", "contosoacr.azurecr.io/api:2.0", ("arm",)),
        usage("shop", "Deployment/web", "contosoacr.azurecr.io/web:1.0", ("arm",)),
    ]
    found = {f.workload: f.message for f in image_findings(CLUSTER, usages, index(single, an_index), POOLS)}
    assert found["Deployment/api"].endswith("pull it, then crash with exec format error.")
    assert found["Deployment/web"].endswith("fail to pull (no matching manifest for the platform).")


def test_an_identity_that_could_not_be_tried_names_no_step_in_the_message() -> None:
    detail = "registry tenant is unknown (PULLWATCH_TRUSTED_TENANTS): Entra token withheld"
    r = failed(
        "partneracr.azurecr.io/vendor/scanner:5.0",
        Step("auth", False, 0.0, detail=detail, kind="not_attempted"),
        detail=detail,
    )
    [f] = image_findings(
        CLUSTER,
        [usage("shop", "Deployment/scanner", "partneracr.azurecr.io/vendor/scanner:5.0")],
        index(r),
        POOLS,
    )
    assert f.code == "CHECK_INCOMPLETE"
    assert f.message.startswith(f"partneracr.azurecr.io could not be checked: {detail}.")
    assert f.evidence["step"] == "auth"
