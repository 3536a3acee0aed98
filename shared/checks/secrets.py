"""Pull-secret checks (pure): do the workloads' pull secrets exist, parse, and cover their registries?

Codes: PULL_SECRET_MISSING, PULL_SECRET_MALFORMED, PULL_SECRET_NO_ENTRY_FOR_REGISTRY,
PULL_SECRET_REJECTED (opt-in), PULL_AUTH_REQUIRED, DOCKERHUB_ANONYMOUS_PULLS. One finding per code
per workload (never per pod); DOCKERHUB_ANONYMOUS_PULLS is one finding per cluster with the
workloads listed in its evidence: the anonymous limit is counted per node address, so the risk is
the cluster's (every workload on a node shares the budget), and a digest line per workload would
bury the real errors under dozens of identical warnings.

Which secret entry serves an image follows kubelet's keyring (kubernetes
``pkg/credentialprovider/keyring.go``): a key's ``https://``/``http://`` prefix and a ``/v1/`` or
``/v2/`` path prefix are dropped; the host must have the same number of dot-separated parts as the
image's registry, each part matching as a glob (``*.azurecr.io``), the port must be equal, and the
key's path must prefix the image's path; a ``index.docker.io`` key serves Docker Hub images. The
findings contract also counts ``registry-1.docker.io`` as a Docker Hub alias (kubelet itself does
not), so such a key is accepted for Docker Hub images here.

Public interface::

    secret_findings(snapshot, *, kubelet_registries=(), anonymous=None, credential_trials=None)
        -> list[Finding]
    credential_candidates(snapshot, kubelet_registries=()) -> [(SecretFacts, auths key, ImageRef)]
    trial_key(secret, auths key, ref) -> key of CredentialTrials
    entry_matches(key, image) -> bool        # image: "registry/repository" as kubelet looks it up
    keyring_key(loc) -> str
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol

from shared.checks.registry_steps import credential_rejected
from shared.clients.registry import Step
from shared.cloud import AZURE_PUBLIC, Cloud
from shared.findings import Finding
from shared.reference import DOCKER_HUB, DOCKER_HUB_ALIASES, ImageRef, ReferenceError, parse_reference
from shared.workloads import PULL_SECRET_TYPES, SecretFacts, Snapshot, WorkloadFacts

DEFAULT_REGISTRY_HOST = "index.docker.io"


class CredentialOutcome(Protocol):
    """What trying a credential against a registry said (``RegistryClient.try_credentials``)."""

    @property
    def ok(self) -> bool: ...

    @property
    def detail(self) -> str | None: ...

    @property
    def failed_step(self) -> Step | None: ...


#: What trying each pull-secret entry against its registry said, collected before the checks run
#: (read-secrets on): :func:`trial_key` -> the outcome, or None when the entry holds no credential.
CredentialTrials = Mapping[tuple[str, str, str, str], "CredentialOutcome | None"]


def trial_key(secret: SecretFacts, key: str, ref: ImageRef) -> tuple[str, str, str, str]:
    """One trial: a secret's auths entry against one repository (tried once per audit)."""
    return (secret.namespace, secret.name, key, f"{ref.registry}/{ref.repository}")


def credential_candidates(
    snapshot: Snapshot, kubelet_registries: Collection[str] = ()
) -> list[tuple[SecretFacts, str, ImageRef]]:
    """The trials PULL_SECRET_REJECTED needs: each auths entry kubelet would use for a workload's
    image on a registry the kubelet identity does not serve (the entry's host is the image's)."""
    kubelet = {h.lower() for h in kubelet_registries}
    out: list[tuple[SecretFacts, str, ImageRef]] = []
    seen: set[tuple[str, str, str, str]] = set()
    for w in snapshot.workloads:
        names, _ = snapshot.effective_pull_secrets(w)
        usable = [
            s
            for s in (snapshot.secret(w.namespace, n) for n in names)
            if s is not None and s.is_pull_secret_type and s.content_error is None and s.auths
        ]
        for ref in (r for r in (_parse(i) for i in w.images) if r is not None):
            if ref.registry in kubelet:
                continue
            lookup = _lookup_name(ref)
            for s in usable:
                for a in s.auths or ():
                    if entry_matches(a.key, lookup) and trial_key(s, a.key, ref) not in seen:
                        seen.add(trial_key(s, a.key, ref))
                        out.append((s, a.key, ref))
    return out


# --- kubelet's keyring matching -----------------------------------------------------------------


def keyring_key(loc: str) -> str:
    """The index key kubelet's ``BasicDockerKeyring.Add`` makes of an ``auths`` key."""
    value = loc if loc.startswith(("https://", "http://")) else "https://" + loc
    rest = value.split("://", 1)[1]
    host, slash, path = rest.partition("/")
    path = slash + path
    for cut in ("?", "#"):
        path = path.split(cut, 1)[0]
    if "@" in host:  # url userinfo is not part of the host
        host = host.rsplit("@", 1)[1]
    if path.startswith(("/v2/", "/v1/")):
        path = path[3:]
    return host + path if path and path != "/" else host


def _split(url: str) -> tuple[list[str], str, str]:
    """(host parts, port, path) of a schemeless URL, as kubelet's parseSchemelessURL + splitURL."""
    host, slash, path = url.partition("/")
    path = slash + path
    port = ""
    name, colon, maybe_port = host.rpartition(":")
    if colon and maybe_port.isdigit() and "]" not in maybe_port:
        host, port = name, maybe_port
    return host.split("."), port, path


@functools.lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str] | None:
    """Go's ``filepath.Match`` pattern as a regex (None for a malformed pattern); a pure function, so
    its answers are memoised (bounded: patterns come from untrusted pull secrets)."""
    out, i = [], 0
    compiled: re.Pattern[str] | None
    try:
        while i < len(pattern):
            c = pattern[i]
            if c == "*":
                out.append("[^/]*")
            elif c == "?":
                out.append("[^/]")
            elif c == "\\":
                i += 1
                if i >= len(pattern):
                    raise ValueError("trailing backslash")
                out.append(re.escape(pattern[i]))
            elif c == "[":
                end = pattern.index("]", i + 1)
                body = pattern[i + 1 : end]
                if body.startswith("^"):
                    body = "^" + body[1:].replace("\\", "\\\\")
                else:
                    body = body.replace("\\", "\\\\").replace("^", "\\^")
                if not body or body == "^":
                    raise ValueError("empty class")
                out.append(f"[{body}]")
                i = end
            else:
                out.append(re.escape(c))
            i += 1
        compiled = re.compile("".join(out) + r"\Z")
    except (ValueError, re.error):
        compiled = None
    return compiled


def urls_match(glob_key: str, target: str) -> bool:
    """kubelet's ``URLsMatchStr``: host parts as globs, same port, the key's path a prefix."""
    glob_parts, glob_port, glob_path = _split(glob_key)
    target_parts, target_port, target_path = _split(target)
    if glob_port != target_port or len(glob_parts) != len(target_parts):
        return False
    if not target_path.startswith(glob_path):
        return False
    for g, t in zip(glob_parts, target_parts, strict=True):
        pattern = _glob(g)
        if pattern is None or not pattern.match(t):
            return False
    return True


def _is_default_registry_match(image: str) -> bool:
    first, slash, _ = image.partition("/")
    if not first:
        return False
    if not slash:
        return True
    if first in ("docker.io", "index.docker.io"):
        return True
    return not any(c in first for c in ".:")


def entry_matches(key: str, image: str) -> bool:
    """Does an ``auths`` key serve ``image`` ("registry/repository", as kubelet looks it up)?"""
    k = keyring_key(key)
    if urls_match(k, image):
        return True
    if _is_default_registry_match(image):
        host = k.split("/", 1)[0]
        # kubelet: the index.docker.io key; the findings contract adds registry-1.docker.io
        return host == DEFAULT_REGISTRY_HOST or (host in DOCKER_HUB_ALIASES and k == host)
    return False


def _lookup_name(ref: ImageRef) -> str:
    return f"{ref.registry}/{ref.repository}"


# --- the checks ---------------------------------------------------------------------------------


def _parse(image: str) -> ImageRef | None:
    try:
        return parse_reference(image)
    except ReferenceError:
        return None  # IMAGE_REFERENCE_INVALID is the image check's


def _kind_for_kubectl(kind: str) -> str:
    return kind.lower()


def _attach_command(w: WorkloadFacts, secret: str) -> str:
    if w.kind == "Pod":
        return (
            f"recreate pod {w.name} with imagePullSecrets: [{{name: {secret}}}] "
            f"(or add {secret} to service account {w.service_account})"
        )
    path = (
        "/spec/jobTemplate/spec/template/spec/imagePullSecrets"
        if w.kind == "CronJob"
        else "/spec/template/spec/imagePullSecrets"
    )
    patch = (
        f'[{{"op":"add","path":"{path}","value":[{{"name":"{secret}"}}]}}]'
        if not w.image_pull_secrets
        else f'[{{"op":"add","path":"{path}/-","value":{{"name":"{secret}"}}}}]'
    )
    return (
        f"kubectl patch {_kind_for_kubectl(w.kind)} {shlex.quote(w.name)} -n {shlex.quote(w.namespace)} "
        f"--type=json -p {shlex.quote(patch)}"
    )


def _create_command(namespace: str, name: str, registry: str | None) -> str:
    server = "https://index.docker.io/v1/" if registry in (None, DOCKER_HUB) else registry
    return (
        f"kubectl create secret docker-registry {shlex.quote(name)} -n {shlex.quote(namespace)} "
        f"--docker-server={server} --docker-username=<user> --docker-password=<password>"
    )


def secret_findings(
    snapshot: Snapshot,
    *,
    kubelet_registries: Collection[str] = (),
    anonymous: Mapping[tuple[str, str], bool] | None = None,
    credential_trials: CredentialTrials | None = None,
    cloud: Cloud = AZURE_PUBLIC,
) -> list[Finding]:
    """Findings about the workloads' pull secrets.

    ``kubelet_registries``: registry hosts the kubelet identity authenticates to by itself (ACRs
    in the cluster's tenant): images there need no secret entry. ``anonymous``: what the registry
    checks learned, ``(registry, repository) -> True`` (anonymous pull works) / ``False`` (refused);
    absent means unknown. ``credential_trials`` (read-secrets on) enables PULL_SECRET_REJECTED: what
    the registry said to each entry of :func:`credential_candidates`, tried before the checks run.
    ``cloud``: the Azure cloud pullwatch runs in (the ACR its fixes suggest is one of that cloud).
    """
    kubelet = {h.lower() for h in kubelet_registries}
    anon = anonymous or {}
    cid = snapshot.cluster
    out: list[Finding] = []
    dockerhub_anonymous: list[tuple[WorkloadFacts, str]] = []

    secrets_listed = "secrets" not in snapshot.unreadable
    if not secrets_listed:
        reason = f"pull secrets cannot be listed: {snapshot.unreadable['secrets']}"
        out.append(
            Finding(
                code="CHECK_INCOMPLETE",
                cluster=cid,
                message=f"The secrets checks could not run: {reason}",
                evidence={"check": "secrets", "reason": reason},
            )
        )
    for w in snapshot.workloads:
        names, named_by = snapshot.effective_pull_secrets(w)
        refs = [r for r in (_parse(i) for i in w.images) if r is not None]
        missing: list[str] = []
        malformed: list[tuple[SecretFacts, str]] = []
        usable: list[SecretFacts] = []
        for name in names if secrets_listed else ():
            s = snapshot.secret(w.namespace, name)
            if s is None:
                missing.append(name)
            elif not s.is_pull_secret_type:
                malformed.append(
                    (
                        s,
                        (f"its type is {s.type}, not " if s.type else "it is not of type ")
                        + " or ".join(PULL_SECRET_TYPES),
                    )
                )
            elif s.content_error is not None:
                malformed.append((s, s.content_error))
            else:
                usable.append(s)
        third_party = [r for r in refs if r.registry not in kubelet]
        first_registry = third_party[0].registry if third_party else None
        base: dict[str, Any] = {"cluster": cid, "namespace": w.namespace, "workload": w.ref}

        if missing:
            out.append(
                Finding(
                    code="PULL_SECRET_MISSING",
                    **base,
                    message=(
                        f"{w.ref} in {w.namespace} names pull secret{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(missing)} ({'named by ' + named_by if named_by != 'pod' else 'in its pod spec'}), "
                        f"which does not exist in the namespace."
                    ),
                    evidence={"secrets": missing, "named_by": named_by, "images": list(w.images)},
                    remediation=_create_command(w.namespace, missing[0], first_registry),
                )
            )
        if malformed:
            s0 = malformed[0][0]
            out.append(
                Finding(
                    code="PULL_SECRET_MALFORMED",
                    **base,
                    message=(
                        f"Pull secret {s0.name} of {w.ref} in {w.namespace} cannot be used: {malformed[0][1]}."
                    ),
                    evidence={
                        "secrets": [{"name": s.name, "type": s.type, "problem": why} for s, why in malformed],
                        "named_by": named_by,
                    },
                    remediation=(
                        f"kubectl delete secret {shlex.quote(s0.name)} -n {shlex.quote(w.namespace)} && "
                        + _create_command(w.namespace, s0.name, first_registry)
                    ),
                )
            )

        content_known = snapshot.secrets_read and all(s.auths is not None for s in usable)

        # which images have an entry in a usable secret (None: content not read)
        def entries_for(
            ref: ImageRef, usable: Sequence[SecretFacts] = usable
        ) -> list[tuple[SecretFacts, str]]:
            name = _lookup_name(ref)
            return [(s, a.key) for s in usable for a in (s.auths or ()) if entry_matches(a.key, name)]

        no_entry: list[ImageRef] = []
        auth_required: list[ImageRef] = []
        for ref in refs:
            if ref.registry in kubelet:
                continue
            known = anon.get((ref.registry, ref.repository))
            if content_known and names:
                entries = entries_for(ref)
                if not entries:
                    if ref.registry == DOCKER_HUB and known is not False:
                        dockerhub_anonymous.append((w, str(ref)))
                    elif known is not True and not missing and not malformed:
                        no_entry.append(ref)
                elif credential_trials is not None:
                    rejected = _rejected(entries, ref, credential_trials)
                    if rejected is not None:
                        s, key, outcome = rejected
                        out.append(
                            Finding(
                                code="PULL_SECRET_REJECTED",
                                **base,
                                registry=ref.registry,
                                image=str(ref),
                                message=(
                                    f"{ref.registry} refuses the credentials in pull secret {s.name} "
                                    f"(entry {key}) that {w.ref} in {w.namespace} pulls {ref} with."
                                ),
                                evidence={
                                    "secret": s.name,
                                    "entry": key,
                                    "repository": ref.repository,
                                    "detail": outcome.detail,
                                },
                                remediation=(
                                    f"kubectl delete secret {shlex.quote(s.name)} -n {shlex.quote(w.namespace)} && "
                                    + _create_command(w.namespace, s.name, ref.registry)
                                ),
                            )
                        )
            elif not names:
                if known is False:
                    auth_required.append(ref)
                elif ref.registry == DOCKER_HUB:
                    dockerhub_anonymous.append((w, str(ref)))

        if no_entry:
            ref = no_entry[0]
            secret_names = [s.name for s in usable]
            out.append(
                Finding(
                    code="PULL_SECRET_NO_ENTRY_FOR_REGISTRY",
                    **base,
                    registry=ref.registry,
                    image=str(ref),
                    message=(
                        f"None of the pull secrets of {w.ref} in {w.namespace} ({', '.join(secret_names)}) "
                        f"has an entry for {ref.registry}, the registry of {ref}."
                    ),
                    evidence={
                        "secrets": [
                            {"name": s.name, "entries": [a.key for a in s.auths or ()]} for s in usable
                        ],
                        "images": [str(r) for r in no_entry],
                        "named_by": named_by,
                    },
                    remediation=(
                        _create_command(
                            w.namespace, f"{ref.registry.split(':')[0].replace('.', '-')}-pull", ref.registry
                        )
                        + " && "
                        + _attach_command(w, f"{ref.registry.split(':')[0].replace('.', '-')}-pull")
                    ),
                )
            )
        if auth_required:
            ref = auth_required[0]
            secret = f"{ref.registry.split(':')[0].replace('.', '-')}-pull"
            out.append(
                Finding(
                    code="PULL_AUTH_REQUIRED",
                    **base,
                    registry=ref.registry,
                    image=str(ref),
                    message=(
                        f"{ref.registry} refuses anonymous pulls of {ref.repository}, and {w.ref} in "
                        f"{w.namespace} has no pull secret (neither its pods nor service account "
                        f"{w.service_account} name one)."
                    ),
                    evidence={
                        "images": [str(r) for r in auth_required],
                        "service_account": w.service_account,
                    },
                    remediation=_create_command(w.namespace, secret, ref.registry)
                    + " && "
                    + _attach_command(w, secret),
                )
            )

    if dockerhub_anonymous:
        workloads = sorted({f"{w.namespace}/{w.ref}" for w, _ in dockerhub_anonymous})
        images = sorted({image for _, image in dockerhub_anonymous})
        out.append(
            Finding(
                code="DOCKERHUB_ANONYMOUS_PULLS",
                cluster=cid,
                registry=DOCKER_HUB,
                message=(
                    (f"{len(workloads)} workloads pull " if len(workloads) != 1 else f"{workloads[0]} pulls ")
                    + f"{len(images)} image{'s' if len(images) != 1 else ''} from Docker Hub without credentials, "
                    "subject to Docker Hub's anonymous pull rate limit (counted per node address)."
                ),
                evidence={
                    "workloads": workloads[:50],
                    "workload_count": len(workloads),
                    "images": images[:50],
                },
                remediation=(
                    "az acr cache create -r <your-acr> -n dockerhub-library --source-repo "
                    "docker.io/library/<repository> --target-repo <repository>  (then pull "
                    f"<your-acr>{cloud.acr_suffix}/<repository>), or add Docker Hub credentials: "
                    + _create_command("<namespace>", "dockerhub-pull", DOCKER_HUB)
                ),
            )
        )
    return out


def _rejected(
    entries: Iterable[tuple[SecretFacts, str]], ref: ImageRef, trials: CredentialTrials
) -> tuple[SecretFacts, str, Any] | None:
    """Of the entries kubelet would use for ``ref``, the first whose credentials the registry
    rejected — None when one was accepted, or none was tried."""
    rejected: tuple[SecretFacts, str, Any] | None = None
    for s, key in entries:
        outcome = trials.get(trial_key(s, key, ref))
        if outcome is None:
            continue
        if outcome.ok:
            return None
        if not outcome.ok and credential_rejected(outcome.failed_step) and rejected is None:
            rejected = (s, key, outcome)
    return rejected
