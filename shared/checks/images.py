"""Registry results → findings (pure: no I/O).

Public interface::

    ImageUsage(namespace, workload, ref, pools=(), identity="pullwatch", image=None)
        # workload "Kind/name"; pools: names of the node pools it may run on (empty: every pool),
        # or (name, os, arch) triples / objects with .pool/.os/.arch; identity: the ImageResult
        # identity to read ("pullwatch" or "secret:<ns>/<name>")
    usage_or_finding(cluster_id, namespace, workload, image_text, pools=(), identity="pullwatch")
        -> ImageUsage | Finding                                   # IMAGE_REFERENCE_INVALID
    image_findings(cluster_id, usages, results, pools) -> list[Finding]
        # results: {(str(ref), identity): ImageResult} (ImageResult.key); pools: (name, os, arch)
    region_findings(cluster_id, cluster_location, registry, registry_location, replication_locations)
        -> list[Finding]                                          # REGISTRY_NOT_IN_CLUSTER_REGION
    remediation_for(code, registry, repository=None, ...) -> str | None

What each result means (its code, whether it is about the image or the registry) is
:func:`shared.checks.registry_steps.image_verdict`. Rules: a failure of the whole registry (DNS, unreachable, TLS, firewall, auth at token time, rate
limit, 5xx, or a check that could not run for the registry) gives ONE finding per (cluster,
registry), naming how many images and workloads it hides; image problems (not found, a 401 for
one repository) give one finding per (workload, image), never per pod; ``IMAGE_PLATFORM_MISSING``
is one per (workload, image, node pool) with ``node_pool`` set. pullwatch's *own* identity being
refused says nothing about the kubelet's pulls: it is one ``CHECK_INCOMPLETE`` per (cluster,
registry); a pull secret's credentials refused is ``PULL_SECRET_REJECTED``.
``REGISTRY_SLOW`` is one info finding per (cluster, registry). An image whose repository refuses
anonymous pulls (``auth_required``) is reported as ``CHECK_INCOMPLETE`` here; the pull-secret check
turns it into ``PULL_AUTH_REQUIRED`` when the workload has no secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.checks.registry_steps import Verdict, image_verdict
from shared.clients.registry import PULLWATCH_IDENTITY, ImageResult, is_acr_host
from shared.findings import Finding
from shared.reference import DOCKER_HUB, ImageRef, ReferenceError, parse_reference

REGISTRY_WIDE = frozenset(
    {
        "REGISTRY_DNS_FAILURE",
        "REGISTRY_UNREACHABLE",
        "REGISTRY_TLS_ERROR",
        "REGISTRY_FIREWALL_DENIED",
        "REGISTRY_AUTH_REJECTED",
        "REGISTRY_RATE_LIMITED",
        "REGISTRY_SERVER_ERROR",
        "CHECK_INCOMPLETE",
    }
)

Pool = tuple[str, str, str]  # (name, os, arch)


@dataclass(frozen=True)
class ImageUsage:
    namespace: str
    workload: str  # "Kind/name"
    ref: ImageRef
    pools: tuple[Any, ...] = ()  # pool names (or (name, os, arch) / PoolPlatform); empty: every pool
    identity: str = "pullwatch"
    image: str | None = None  # the reference as written, when it differs from str(ref)


def usage_or_finding(
    cluster_id: str,
    namespace: str,
    workload: str,
    image_text: str,
    pools: Sequence[Any] = (),
    identity: str = "pullwatch",
) -> ImageUsage | Finding:
    """Parse the workload's image reference; an IMAGE_REFERENCE_INVALID finding when it does not parse."""
    try:
        ref = parse_reference(image_text)
    except ReferenceError as exc:
        return Finding(
            code="IMAGE_REFERENCE_INVALID",
            cluster=cluster_id,
            image=image_text,
            namespace=namespace,
            workload=workload,
            message=f"{workload} in {namespace} names an image that does not parse: {exc.reason}.",
            evidence={"image": image_text, "reason": exc.reason},
            remediation=f"kubectl -n {namespace} edit {workload.lower()}   # fix the image reference {image_text!r}",
        )
    return ImageUsage(namespace, workload, ref, tuple(pools), identity, image_text)


def acr_name(registry: str) -> str:
    return registry.split(".")[0]


_IP_RE = re.compile(r"client with IP '?([0-9a-fA-F.:]+)'?")


def remediation_for(
    code: str,
    registry: str,
    repository: str | None = None,
    *,
    tag: str | None = None,
    detail: str | None = None,
    platforms: Sequence[str] = (),
    image: str | None = None,
) -> str | None:
    """A command a person can run as written, with the names filled in."""
    acr = is_acr_host(registry)
    name = acr_name(registry)
    if code == "IMAGE_NOT_FOUND" and repository:
        if acr:
            return f"az acr repository show-tags -n {name} --repository {repository} --orderby time_desc -o table"
        return f"skopeo list-tags docker://{registry}/{repository}"
    if code == "IMAGE_PLATFORM_MISSING":
        shown = ",".join(platforms) or "linux/amd64,linux/arm64"
        return f"docker buildx build --platform {shown} -t {image or registry + '/' + (repository or '')} --push ."
    if code == "REGISTRY_FIREWALL_DENIED":
        m = _IP_RE.search(detail or "")
        if acr and m:
            return f"az acr network-rule add -n {name} --ip-address {m.group(1)}"
        if acr:
            return (
                f"az acr network-rule list -n {name} -o table   # then: az acr network-rule add -n {name} "
                "--ip-address <the cluster's egress IP>, or az acr update -n "
                f"{name} --public-network-enabled true --default-action Allow"
            )
        return None
    if code == "REGISTRY_AUTH_REJECTED":
        if acr and detail and "authentication-as-ARM" in detail:
            return f"az acr config authentication-as-arm update -r {name} --status enabled"
        if acr:
            return (
                f"az acr login -n {name} --expose-token   # as the pull identity; then check its AcrPull role"
            )
        return None
    if code == "REGISTRY_DNS_FAILURE":
        if acr:
            return f"az acr check-health -n {name} --yes   # and: nslookup {registry} from a node"
        return f"nslookup {registry}"
    if code in ("REGISTRY_UNREACHABLE", "REGISTRY_SERVER_ERROR"):
        if acr:
            return f"az acr check-health -n {name} --yes"
        return f"curl -sv https://{registry}/v2/ -o /dev/null"
    if code == "REGISTRY_TLS_ERROR":
        return f"openssl s_client -connect {registry.split(':')[0]}:443 -servername {registry.split(':')[0]} </dev/null"
    if code == "REGISTRY_RATE_LIMITED":
        if registry == DOCKER_HUB and repository:
            return f"az acr import -n <your-acr> --source docker.io/{repository}:{tag or 'latest'}"
        return None
    if code == "CHECK_INCOMPLETE" and acr and detail and "pullwatch's own identity was refused" in detail:
        return (
            f"az role assignment create --assignee <pullwatch's client id> --role AcrPull --scope "
            f"$(az acr show -n {name} --query id -o tsv)   # ABAC-mode registry: --role "
            '"Container Registry Repository Reader"'
        )
    if code == "REGISTRY_SLOW" and acr:
        return f"az acr replication create -r {name} -l <the cluster's region>"
    return None


def _pool_triples(usage: ImageUsage, pools: Sequence[Pool]) -> list[Pool]:
    by_name = {p[0]: p for p in pools}
    if not usage.pools:
        return list(pools)
    out: list[Pool] = []
    for p in usage.pools:
        if isinstance(p, str):
            if p in by_name:
                out.append(by_name[p])
        elif isinstance(p, tuple) and len(p) == 3:
            out.append((str(p[0]), str(p[1]), str(p[2])))
        elif hasattr(p, "pool") and hasattr(p, "os") and hasattr(p, "arch"):
            out.append((str(p.pool), str(p.os), str(p.arch)))
    return out


def _find(results: Mapping[Any, ImageResult], usage: ImageUsage) -> ImageResult | None:
    name = str(usage.ref)
    for key in ((name, usage.identity), (name, "pullwatch")):
        if key in results:
            return results[key]
    for result in results.values():
        if str(result.ref) == name:
            return result
    return None


def _norm_arch(arch: str) -> str:
    a = arch.lower()
    return {"x86_64": "amd64", "x64": "amd64", "aarch64": "arm64"}.get(a, a)


def image_findings(
    cluster_id: str, usages: Sequence[ImageUsage], results: Mapping[Any, ImageResult], pools: Sequence[Pool]
) -> list[Finding]:
    out: list[Finding] = []
    registry_wide: dict[str, tuple[ImageResult, Verdict, set[str], set[tuple[str, str]]]] = {}
    slow: dict[str, list[ImageResult]] = {}
    seen_image: set[tuple[str, str, str, str]] = set()
    for usage in usages:
        result = _find(results, usage)
        if result is None:
            continue
        ref = usage.ref
        image = str(ref)
        if result.slow:
            slow.setdefault(ref.registry, []).append(result)
        verdict = image_verdict(result)
        if verdict is None:
            out.extend(_platform_findings(cluster_id, usage, result, pools, seen_image))
            continue
        if verdict.code == "REGISTRY_AUTH_REJECTED" and result.identity == PULLWATCH_IDENTITY:
            # pullwatch's own identity was refused: that says nothing about the kubelet's pulls
            verdict = Verdict(
                "CHECK_INCOMPLETE",
                "registry",
                f"pullwatch's own identity was refused by {ref.registry} ({verdict.detail}); "
                "its images could not be checked",
            )
        if verdict.scope == "registry" and verdict.code in REGISTRY_WIDE:
            entry = registry_wide.setdefault(ref.registry, (result, verdict, set(), set()))
            entry[2].add(image)
            entry[3].add((usage.namespace, usage.workload))
            continue
        key = (verdict.code, usage.namespace, usage.workload, image)
        if key in seen_image:
            continue
        seen_image.add(key)
        out.append(_image_failure(cluster_id, usage, result, verdict))
    for registry, (result, verdict, images, workloads) in sorted(registry_wide.items()):
        out.append(_registry_failure(cluster_id, registry, result, verdict, images, workloads))
    for registry, slow_results in sorted(slow.items()):
        worst = max(slow_results, key=lambda r: r.latency_ms or 0.0)
        out.append(
            Finding(
                code="REGISTRY_SLOW",
                cluster=cluster_id,
                registry=registry,
                message=f"{registry} answered the pull path (token + manifest) in {worst.latency_ms or 0:.0f} ms, "
                "over the configured threshold.",
                evidence={
                    "latency_ms": round(worst.latency_ms or 0.0, 1),
                    "image": str(worst.ref),
                    "slow_images": len(slow_results),
                    "steps": [s.to_dict() for s in worst.steps if s.name in ("token", "manifest")],
                },
                remediation=remediation_for("REGISTRY_SLOW", registry),
            )
        )
    return out


def _platform_findings(
    cluster_id: str,
    usage: ImageUsage,
    result: ImageResult,
    pools: Sequence[Pool],
    seen: set[tuple[str, str, str, str]],
) -> list[Finding]:
    if result.platforms is None:
        return []
    have = {p.lower() for p in result.platforms}
    have_norm = {f"{p.split('/')[0]}/{_norm_arch(p.split('/')[1])}" for p in have if "/" in p}
    missing: dict[str, list[str]] = {}
    for name, os_, arch in _pool_triples(usage, pools):
        want = f"{os_.lower()}/{_norm_arch(arch)}"
        if want not in have_norm:
            missing.setdefault(want, []).append(name)
    if not missing:
        return []
    image = str(usage.ref)
    build = sorted(have_norm | set(missing))
    out = []
    for want, names in sorted(missing.items()):
        for pool in names:
            key = ("IMAGE_PLATFORM_MISSING", usage.namespace, usage.workload, f"{image}|{pool}")
            if key in seen:
                continue
            seen.add(key)
            out.append(
                Finding(
                    code="IMAGE_PLATFORM_MISSING",
                    cluster=cluster_id,
                    registry=usage.ref.registry,
                    image=image,
                    namespace=usage.namespace,
                    workload=usage.workload,
                    node_pool=pool,
                    message=f"{image} has no manifest for {want}, the platform of node pool {pool} where "
                    f"{usage.workload} can run; {_what_pods_meet(result)}",
                    evidence={
                        "platforms": sorted(have),
                        "missing": want,
                        "pool": {"name": pool, "platform": want},
                        "identity": result.identity,
                    },
                    remediation=remediation_for(
                        "IMAGE_PLATFORM_MISSING",
                        usage.ref.registry,
                        usage.ref.repository,
                        platforms=build,
                        image=image,
                    ),
                )
            )
    return out


_INDEX_TYPES = frozenset(
    {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}
)


def _what_pods_meet(result: ImageResult) -> str:
    """An index without the platform fails the pull; a single-platform image pulls anywhere and
    its binary then fails to start (exec format error), with no pull error to see."""
    if result.media_type is not None and result.media_type not in _INDEX_TYPES:
        return "its pods scheduled there pull it, then crash with exec format error."
    return "its pods scheduled there fail to pull (no matching manifest for the platform)."


def _image_failure(cluster_id: str, usage: ImageUsage, result: ImageResult, verdict: Verdict) -> Finding:
    ref = usage.ref
    image = str(ref)
    code, detail = verdict.code, verdict.detail
    evidence = result.evidence() | ({"detail": detail} if detail else {})
    if code == "IMAGE_NOT_FOUND":
        if result.repository_exists is False:
            what = f"repository {ref.repository} does not exist in {ref.registry}"
        else:
            what = f"{ref.reference} does not exist in {ref.registry}/{ref.repository}"
        hint = f" Closest tags: {', '.join(result.suggestions)}." if result.suggestions else ""
        message = f"{usage.workload} in {usage.namespace} uses {image}, but {what}.{hint}"
    elif code == "REGISTRY_AUTH_REJECTED" and result.identity.startswith("secret:"):
        code = "PULL_SECRET_REJECTED"
        message = (
            f"{ref.registry} refuses the credentials of pull secret {result.identity[7:]} for "
            f"{ref.repository} ({detail})."
        )
        return Finding(
            code=code,
            cluster=cluster_id,
            registry=ref.registry,
            namespace=usage.namespace,
            workload=usage.workload,
            message=message,
            evidence=evidence,
            remediation=f"kubectl -n {usage.namespace} create secret docker-registry "
            f"{result.identity.split('/')[-1]} --docker-server={ref.registry} "
            "--docker-username=<user> --docker-password=<new password> "
            "--dry-run=client -o yaml | kubectl apply -f -",
        )
    elif code == "REGISTRY_AUTH_REJECTED":
        message = (
            f"{ref.registry} refused pull access to {ref.repository} for {result.identity} "
            f"({detail}); {usage.workload} in {usage.namespace} cannot pull {image}."
        )
    elif code == "CHECK_INCOMPLETE":
        message = f"Could not check {image} for {usage.workload} in {usage.namespace}: {detail}."
        evidence = {
            **evidence,
            "check": "images",
            "reason": detail,
            "auth_required": verdict.auth_required,
        }
    else:
        message = f"{image} used by {usage.workload} in {usage.namespace}: {detail}."
    return Finding(
        code=code,
        cluster=cluster_id,
        registry=ref.registry,
        image=image,
        namespace=usage.namespace,
        workload=usage.workload,
        message=message,
        evidence=evidence,
        remediation=remediation_for(code, ref.registry, ref.repository, tag=ref.tag, detail=detail),
    )


_REGISTRY_MESSAGES = {
    "REGISTRY_DNS_FAILURE": "{registry} does not resolve",
    "REGISTRY_UNREACHABLE": "{registry} cannot be reached",
    "REGISTRY_TLS_ERROR": "TLS with {registry} fails",
    "REGISTRY_FIREWALL_DENIED": "{registry}'s firewall refuses the client",
    "REGISTRY_AUTH_REJECTED": "{registry} gives the pull identity no pull token",
    "REGISTRY_RATE_LIMITED": "{registry} throttles requests (429)",
    "REGISTRY_SERVER_ERROR": "{registry} answers with server errors",
    "CHECK_INCOMPLETE": "{registry} could not be checked",
}


def _registry_failure(
    cluster_id: str,
    registry: str,
    result: ImageResult,
    verdict: Verdict,
    images: set[str],
    workloads: set[tuple[str, str]],
) -> Finding:
    code, detail = verdict.code, verdict.detail
    step = result.failed_step
    # "auth" is no request: the registry client says why it could not try (no credential, an untrusted tenant)
    at = f" at step {step.name}" if step and step.name != "auth" else ""
    message = (
        f"{_REGISTRY_MESSAGES[code].format(registry=registry)}{at}: {detail}. "
        f"{len(images)} image(s) used by {len(workloads)} workload(s) are affected."
    )
    evidence = {
        **result.evidence(),
        **({"detail": detail} if detail else {}),
        "images": sorted(images)[:20],
        "image_count": len(images),
        "workload_count": len(workloads),
    }
    if code == "CHECK_INCOMPLETE":
        evidence.update(check="images,network,access", reason=detail)
    ref = result.ref
    return Finding(
        code=code,
        cluster=cluster_id,
        registry=registry,
        message=message,
        evidence=evidence,
        remediation=remediation_for(code, registry, ref.repository, tag=ref.tag, detail=detail),
    )


def normalise_location(location: str) -> str:
    """ARM location names: "East US" → "eastus"."""
    return re.sub(r"[\s_-]", "", location).lower()


def region_findings(
    cluster_id: str,
    cluster_location: str,
    registry: str,
    registry_location: str | None,
    replication_locations: Sequence[str] = (),
) -> list[Finding]:
    """REGISTRY_NOT_IN_CLUSTER_REGION when neither the registry's home nor a replica is in the cluster's region."""
    if not registry_location or not cluster_location:
        return []
    where = normalise_location(cluster_location)
    homes = {normalise_location(registry_location), *(normalise_location(r) for r in replication_locations)}
    if where in homes:
        return []
    name = acr_name(registry)
    return [
        Finding(
            code="REGISTRY_NOT_IN_CLUSTER_REGION",
            cluster=cluster_id,
            registry=registry,
            message=f"{registry} lives in {', '.join(sorted(homes))}; the cluster runs in {where}: pulls cross "
            "regions (slower, egress cost).",
            evidence={
                "cluster_location": where,
                "registry_location": normalise_location(registry_location),
                "replications": sorted(normalise_location(r) for r in replication_locations),
            },
            remediation=f"az acr replication create -r {name} -l {where}" if is_acr_host(registry) else None,
        )
    ]
