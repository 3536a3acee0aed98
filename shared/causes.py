"""The pull-error cause catalogue (contract: docs/spec/causes.md), as data.

Each :class:`Cause` says what the code means, how a one-line summary of it reads, and what to
check. Texts may name ``{registry}``, ``{image}``, ``{name}`` (the registry's short name, e.g.
``contosoacr`` for ``contosoacr.azurecr.io``), ``{acr_suffix}`` and ``{storage_suffix}`` (of the
registry's cloud, read from its login server); :func:`remediation_for` fills them in and picks the
registry-specific advice (Azure Container Registry, Docker Hub, ECR, Google Artifact Registry)
where it differs from the general one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from shared.cloud import AZURE_PUBLIC, cloud_of_login_server


@dataclass(frozen=True)
class Cause:
    """One catalogue line."""

    code: str
    meaning: str
    headline: str  # summary wording: "... {subject}" where subject is the image or registry
    remediation: str  # general advice
    by_registry: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))


# Registry families with advice of their own. Keys of ``Cause.by_registry``.
ACR, DOCKER_HUB, ECR, GOOGLE = "acr", "docker_hub", "ecr", "google"

_FAMILIES: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    (ACR, re.compile(r"\.azurecr\.(?:io|cn|us)$|^<[^>]*acr[^>]*>", re.IGNORECASE)),
    (DOCKER_HUB, re.compile(r"^(?:docker\.io|registry-1\.docker\.io|index\.docker\.io)$")),
    (ECR, re.compile(r"\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?$|^public\.ecr\.aws$")),
    (GOOGLE, re.compile(r"(?:^|\.)gcr\.io$|-docker\.pkg\.dev$|^registry\.k8s\.io$")),
)


def registry_family(registry: str | None) -> str | None:
    """Which family with advice of its own ``registry`` belongs to, or None."""
    if not registry:
        return None
    host = registry.lower()
    for family, pattern in _FAMILIES:
        if pattern.search(host):
            return family
    return None


def _c(code: str, meaning: str, headline: str, remediation: str, **by_registry: str) -> Cause:
    return Cause(code, meaning, headline, remediation, MappingProxyType(dict(by_registry)))


_PULL_SECRET = (
    "Check the pod's imagePullSecrets (and its service account's): the secret must exist in the "
    "pod's namespace, be of type kubernetes.io/dockerconfigjson, name the server {registry} exactly, "
    "and hold a current user and token - test them with `docker login {registry}`."
)

CAUSES: Final[tuple[Cause, ...]] = (
    _c(
        "auth_failed",
        "the registry refused the credentials, or none were sent where they are needed",
        "registry {registry} refused the pull credentials",
        _PULL_SECRET
        + " Expired tokens, a rotated password and a secret for another registry host all look like this.",
        acr=(
            "Check that the cluster's kubelet identity (`az aks show -g <rg> -n <cluster> --query "
            "identityProfile.kubeletidentity`) holds AcrPull on {registry} - or Container Registry "
            "Repository Reader if the registry uses ABAC repository permissions: `az role assignment list "
            "--assignee <objectId> --all`. Grant it with `az aks update -g <rg> -n <cluster> --attach-acr "
            "{name}` (or an explicit `az role assignment create`), then run `az aks check-acr -g <rg> -n "
            "<cluster> --acr {registry}`. If the pod uses an imagePullSecret for {registry}, check that it "
            "is current. After a switch to ABAC mode, nodes keep stale tokens until kubelet restarts or "
            "the nodes are replaced."
        ),
        ecr=(
            "Check that the node role (or the IRSA/Pod Identity role of the kubelet credential provider) "
            "allows ecr:GetAuthorizationToken, ecr:BatchGetImage and ecr:GetDownloadUrlForLayer on "
            "{registry}; an imagePullSecret made from `aws ecr get-login-password` expires after 12 hours."
        ),
        google=(
            "Check that the node service account has Artifact Registry Reader (roles/artifactregistry."
            "reader) on the repository, or that the pod's imagePullSecret for {registry} is current."
        ),
    ),
    _c(
        "auth_or_not_found",
        "the registry will not say which: missing repository, or missing rights (Docker Hub, Quay)",
        "registry {registry} denied the pull: the repository does not exist or needs credentials",
        "Check the image name first (spelling, the organisation or namespace part, the tag) - e.g. "
        "`docker manifest inspect {image}` from a machine with access. If it exists and is private, "
        + _PULL_SECRET[0].lower()
        + _PULL_SECRET[1:],
        docker_hub=(
            "Check the image name first: Docker Hub answers the same for a repository that does not exist "
            "and one that is private (a bare name like `nginx` means docker.io/library/nginx; an "
            "organisation image needs `org/name`). Search it on hub.docker.com. If it is private, add an "
            "imagePullSecret for docker.io whose account can read it."
        ),
    ),
    _c(
        "forbidden",
        "the registry refuses this network or this identity outright (403): firewall, private link, IAM",
        "registry {registry} refused the pull outright",
        "A 403 means the registry heard the request and refused it: check the registry's network rules "
        "(IP allow-lists, private endpoints, a proxy in between) for the nodes' egress address, and that "
        "the identity used may read this repository at all.",
        acr=(
            "Check the registry's network rules: `az acr show -n {name} --query "
            '"{{publicNetworkAccess:publicNetworkAccess, networkRuleSet:networkRuleSet}}"`. With the '
            "firewall or private endpoints on, the nodes' egress IP (NAT gateway / load balancer outbound "
            "IP) must be allowed, or the private endpoint and its privatelink{acr_suffix} DNS zone must be "
            "linked to the cluster's VNet. An ABAC condition limiting repositories also answers 403."
        ),
        ecr=(
            "Check the IAM policy of the node role and the repository policy of {registry}: the text names "
            "the action that was refused (ecr:BatchGetImage, ecr:GetDownloadUrlForLayer). For another "
            "account's repository, its repository policy must allow your role."
        ),
        google=(
            "Check IAM on the repository: the node service account needs "
            "artifactregistry.repositories.downloadArtifacts (Artifact Registry Reader) - and VPC Service "
            "Controls or the node's access scopes can refuse it too."
        ),
    ),
    _c(
        "not_found",
        "repository, tag or digest does not exist",
        "the image does not exist in registry {registry}",
        "Check that the repository and tag (or digest) exist: `docker manifest inspect {image}` or the "
        "registry's UI. Typical causes: a typo, a tag that was never pushed or was deleted by a retention "
        "policy, a digest from another registry, or a pipeline that deployed before it pushed.",
        acr=(
            "Check that the repository and tag exist: `az acr repository show-tags -n {name} --repository "
            "<repo>`. Retention policies and `az acr purge` tasks delete untagged or old images."
        ),
    ),
    _c(
        "dns",
        "a name did not resolve (registry, data endpoint, or the DNS server itself failed)",
        "a node could not resolve the registry's name",
        "Check DNS from a node: `kubectl debug node/<node> -it --image=busybox -- nslookup {registry}`. "
        "Custom DNS servers on the VNet must forward to Azure DNS (168.63.129.16) or resolve the "
        "registry; a DNS server that times out or refuses shows as 'read udp ... i/o timeout'.",
        acr=(
            "Check DNS for {registry} and its data endpoint (<name>.<region>.data{acr_suffix}) from a node: "
            "`kubectl debug node/<node> -it --image=busybox -- nslookup {registry}`. With private "
            "endpoints, the privatelink{acr_suffix} private DNS zone must hold both records and be linked to "
            "the cluster's VNet; custom DNS servers must forward to 168.63.129.16."
        ),
    ),
    _c(
        "network",
        "connection timed out, was refused, reset, or the network is unreachable",
        "a node could not reach registry {registry}",
        "Check the path from the nodes to {registry}:443 (and to its blob/data host): NSG and firewall "
        "rules, user-defined routes, an egress proxy (HTTPS_PROXY / NO_PROXY on the node), and whether the "
        "registry is up. Test from a node: `kubectl debug node/<node> -it --image=busybox -- wget -S -O- "
        "https://{registry}/v2/` (401 there means the network path works).",
        acr=(
            "Check the path from the nodes to {registry}:443 and to its data endpoint "
            "(<name>.<region>.data{acr_suffix}, or *.blob.{storage_suffix} on older registries): NSG rules, "
            "Azure Firewall application rules (FQDN tag AzureKubernetesService does not cover your "
            "registry), user-defined routes, and private endpoint reachability. Test with `az aks check-acr "
            "-g <rg> -n <cluster> --acr {registry}`."
        ),
    ),
    _c(
        "tls",
        "certificate or TLS protocol problem",
        "TLS with registry {registry} failed",
        "Check the certificate {registry} serves (`openssl s_client -connect {registry}:443 -servername "
        "<host>`): it must be unexpired, name the host, and chain to a CA the nodes trust. For a private "
        "CA, install it on the nodes (containerd: /etc/containerd/certs.d/{registry}/ca.crt) - a TLS-"
        "inspecting proxy needs the same. 'server gave HTTP response to HTTPS client' means the registry "
        "speaks plain HTTP: serve TLS, or configure it as an HTTP mirror in the runtime.",
    ),
    _c(
        "rate_limited",
        "the registry (429, toomanyrequests) or the kubelet (pull QPS exceeded) throttled the pull",
        "the pull was throttled",
        "Pull less often or from somewhere that allows more: authenticate the pulls (an imagePullSecret), "
        "mirror the image into your own registry, and prefer imagePullPolicy IfNotPresent. 'pull QPS "
        "exceeded' comes from the kubelet itself: raise registryPullQPS / registryBurst in its config.",
        docker_hub=(
            "Docker Hub limits anonymous pulls per IP (shared by every node behind one NAT address): "
            "import the image into your own registry (for ACR: `az acr import --name <acr> --source "
            "docker.io/{repository}`, or an ACR cache rule), or add an imagePullSecret for a Docker Hub "
            "account; use imagePullPolicy IfNotPresent."
        ),
        acr=(
            "ACR throttles per SKU: check the registry's SKU and the pull burst (many nodes pulling at "
            "once), consider Premium or spreading the rollout; 'pull QPS exceeded' is the kubelet's own "
            "limit (registryPullQPS / registryBurst)."
        ),
    ),
    _c(
        "invalid_reference",
        "the image reference does not parse",
        "the image reference does not parse",
        "Fix the image field in the pod spec: lowercase repository, no scheme (https://), at most one tag "
        "after the last '/', a digest as @sha256:<64 hex>, no spaces or unrendered template variables "
        "(${{VAR}}, {{{{ .Values }}}}). On CRI-O, a short name needs a registry: write the full "
        "registry/repository:tag.",
    ),
    _c(
        "platform_mismatch",
        "no manifest for the node's OS/architecture",
        "the image has no variant for the node's OS/architecture",
        "Check which platforms the image offers (`docker manifest inspect {image}` or `docker buildx "
        "imagetools inspect {image}`) against the node's (`kubectl get node -L kubernetes.io/os,"
        "kubernetes.io/arch`). Build and push a multi-arch image (docker buildx --platform linux/amd64,"
        "linux/arm64), or pin the pod to matching nodes with a nodeSelector on kubernetes.io/arch / "
        "kubernetes.io/os. Windows images must also match the node's Windows build.",
    ),
    _c(
        "never_pull",
        "imagePullPolicy: Never and the image is not on the node",
        "imagePullPolicy is Never and the image is not on the node",
        "Either load the image onto every node that may run the pod (kind load / minikube image load / "
        "ctr -n k8s.io images import) or set imagePullPolicy to IfNotPresent and push {image} to a "
        "registry the nodes can reach.",
    ),
    _c(
        "disk_full",
        "the node ran out of disk while pulling or unpacking",
        "the node ran out of disk while pulling",
        "Check the node's disk (`kubectl describe node <node>`: DiskPressure; `df -h /var/lib/containerd`): "
        "remove unused images (`crictl rmi --prune`), check the kubelet's image garbage collection "
        "thresholds, or use a bigger OS disk / ephemeral OS disk for the node pool; very large images need "
        "room for the compressed and the unpacked layers at once.",
    ),
    _c(
        "layer_error",
        "a layer failed to download completely, verify or unpack",
        "a layer of the image failed to download or unpack",
        "Usually transient: delete the pod to retry. If it repeats on one node, check that node's disk "
        "(I/O errors, a corrupted containerd content store: `ctr -n k8s.io content ls`) and a proxy that "
        "truncates large downloads; if it repeats everywhere, the image in {registry} may be corrupt - "
        "re-push it.",
    ),
    _c(
        "signature_invalid",
        "an image signature or policy check rejected the image",
        "a signature or policy check rejected the image",
        "Check the runtime's signature policy (/etc/containers/policy.json, registries.d) or the admission "
        "policy (Ratify, Kyverno, Connaisseur) for {image}: is the image signed by the expected key or "
        "identity, and are the signatures (cosign .sig tags, Notation referrers) copied along with it?",
    ),
    _c(
        "registry_error",
        "the registry failed (5xx, unexpected status or body)",
        "registry {registry} failed to answer",
        "The registry (or a proxy in front of it) answered with an error: check its status page or "
        "health, and retry later. A pull-through cache or mirror (Harbor, Nexus, Artifactory) returning "
        "5xx usually failed upstream - check its logs.",
        acr="Check ACR's health: `az acr check-health -n {name} --yes` and Azure Service Health for the region.",
    ),
    _c(
        "no_detail",
        "the text says a pull failed but not why",
        "the pull failed, but this text does not say why",
        "Find the message that carries the cause: `kubectl describe pod <pod>` and read the 'Failed to "
        "pull image' event before the back-off, or `kubectl get events --field-selector "
        "reason=Failed`. Since Kubernetes 1.32 the waiting message itself carries the last error.",
    ),
    _c(
        "unknown",
        "there is a cause in the text but none of the above fits",
        "the pull failed for a reason pullwatch does not recognise",
        "Read the runtime's own log on the node (`journalctl -u containerd` or `-u crio`) around the time "
        "of the failure, and try the pull by hand there: `crictl pull {image}`.",
    ),
)

BY_CODE: Final[MappingProxyType[str, Cause]] = MappingProxyType({c.code: c for c in CAUSES})
CODES: Final[frozenset[str]] = frozenset(BY_CODE)


def _short_name(registry: str) -> str:
    return registry.split(".", 1)[0] if registry else registry


def remediation_for(code: str, registry: str | None, image: str | None, repository: str | None = None) -> str:
    """The advice for ``code``, specific to the registry's family where the catalogue has one."""
    cause = BY_CODE[code]
    family = registry_family(registry)
    text = cause.by_registry.get(family, cause.remediation) if family else cause.remediation
    cloud = cloud_of_login_server(registry or "") or AZURE_PUBLIC
    return text.format(
        registry=registry or "the registry",
        image=image or "the image",
        name=_short_name(registry or "") or "<registry>",
        repository=repository or "<repository>",
        acr_suffix=cloud.acr_suffix,
        storage_suffix=cloud.storage_suffix,
    )
