"""``RegistryClient``: the image checks of one audit, put together from the registry client's parts.

Per registry (api host) and identity, concurrently across groups: the probe
(:mod:`~shared.clients.registry.probe`), the authentication (:mod:`~shared.clients.registry.auth`),
tokens in batches, then per image the manifest, platforms and tag suggestions
(:mod:`~shared.clients.registry.manifests`), all through one transport
(:mod:`~shared.clients.registry.transport`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from shared.clients.registry.auth import Authenticator, Token, authorization
from shared.clients.registry.credentials import try_credentials
from shared.clients.registry.manifests import ManifestReader
from shared.clients.registry.model import (
    ACCEPT,
    UNEXPECTED,
    ImageResult,
    ImageTarget,
    ProbeOutcome,
    Scrubber,
    Step,
)
from shared.clients.registry.probe import Prober
from shared.clients.registry.transport import Transport
from shared.config import Settings
from shared.netguard import NetGuard
from shared.reference import ImageRef


class RegistryClient:
    """Registry data-plane checks. One instance per audit: it caches probes, tokens and sessions."""

    def __init__(
        self,
        settings: Settings,
        *,
        entra_token: Callable[[str], str] | None = None,
        app_tenant: str | None = None,
    ) -> None:
        self.settings = settings
        self.guard = NetGuard(settings)
        tenants = {t.lower() for t in settings.trusted_tenants}
        if app_tenant or settings.tenant_id:
            tenants.add(str(app_tenant or settings.tenant_id).lower())
        self.scrub = Scrubber()
        self.transport = Transport(settings, self.guard)
        self.prober = Prober(settings, self.guard, self.transport, self.scrub)
        self.authenticator = Authenticator(
            settings,
            self.transport,
            self.scrub,
            entra_token=entra_token,
            trusted_tenants=frozenset(tenants),
        )
        self.manifests = ManifestReader(settings, self.transport, self.scrub)

    def request_counts(self) -> dict[str, int]:
        """HTTP requests sent per host (every attempt, redirect hop and retry counted)."""
        return self.transport.request_counts()

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_images(self, targets: Sequence[ImageTarget]) -> list[ImageResult]:
        """Check every unique (ref, identity) once, concurrently per registry; one result each."""
        unique: dict[tuple[str, str], ImageTarget] = {}
        for target in targets:
            key = (str(target.ref), target.identity)
            if key in unique and target.want_platforms and not unique[key].want_platforms:
                unique[key] = target
            unique.setdefault(key, target)
        groups: dict[tuple[str, str, str | None, bool], list[ImageTarget]] = {}
        for target in unique.values():
            gkey = (
                target.ref.api_host,
                target.identity,
                target.registry_tenant,
                target.authentication_as_arm,
            )
            groups.setdefault(gkey, []).append(target)
        results: dict[tuple[str, str], ImageResult] = {}
        if not groups:
            return []
        with ThreadPoolExecutor(
            max_workers=min(16, len(groups)), thread_name_prefix="registry-group"
        ) as outer:
            for group_results in outer.map(self._check_group_safely, groups.values()):
                for r in group_results:
                    results[r.key] = r
        return [results[k] for k in unique if k in results]

    def _check_group_safely(self, targets: list[ImageTarget]) -> list[ImageResult]:
        """A bug or an unforeseen answer makes the group's checks incomplete, never a traceback or a pass."""
        try:
            return self._check_group(targets)
        except Exception as exc:
            detail = self.scrub(f"the registry check failed unexpectedly: {type(exc).__name__}: {exc}")
            step = Step("check", False, 0.0, detail=detail, kind=UNEXPECTED)
            return [ImageResult(t.ref, t.identity, (step,), detail=detail) for t in targets]

    def _check_group(self, targets: list[ImageTarget]) -> list[ImageResult]:
        host = targets[0].ref.api_host
        base = self.prober.probe(host)
        if base.failed:
            return [ImageResult(t.ref, t.identity, base.steps, detail=base.detail) for t in targets]
        auth = self.authenticator.auth(host, targets[0], base.challenge)
        steps = base.steps + auth.steps
        if auth.failed_step is not None:
            return [
                ImageResult(
                    t.ref,
                    t.identity,
                    steps,
                    detail=auth.detail,
                    auth=auth.label,
                    arm_audience=auth.arm_audience,
                )
                for t in targets
            ]
        tokens: dict[str, Token | Step] = {}
        if auth.mode in ("entra", "basic-token", "anonymous-token"):
            tokens = self.authenticator.tokens(
                host, targets[0].identity, auth, list(dict.fromkeys(t.ref.repository for t in targets))
            )
        # Platforms: one GET per distinct (repository, digest), however many tags point at it, sent
        # by the worker whose HEAD first found that digest, right after it: no second phase waiting
        # for the slowest HEAD.
        found: dict[tuple[str, str], tuple[tuple[str, ...] | None, Step]] = {}
        claimed: set[tuple[str, str]] = set()
        claiming = threading.Lock()

        def read_platforms(key: tuple[str, str], ref: ImageRef) -> None:
            token = tokens.get(ref.repository)
            headers = {
                "Accept": ACCEPT,
                **authorization(auth, token if isinstance(token, Token) else None, self.scrub),
            }
            found[key] = self.manifests.platforms_of(host, ref, key[1], headers, auth.scope)

        def check(target: ImageTarget) -> ImageResult:
            result = self.manifests.check_one(host, target, auth, steps, tokens)
            if target.want_platforms and result.found:
                key = (target.ref.repository, result.digest or target.ref.reference)
                with claiming:
                    first = key not in claimed
                    claimed.add(key)
                if first:
                    read_platforms(key, target.ref)
            return result

        results = self.transport.map(host, check, targets)
        out = []
        for target, result in zip(targets, results, strict=True):
            key = (target.ref.repository, result.digest or target.ref.reference)
            if target.want_platforms and result.found and key in found:
                # HEAD is free, the manifest GET is what a pull spends: Docker Hub's anonymous quota
                # answers 429 only there (the platforms step then says so).
                platforms, step = found[key]
                result = replace(result, platforms=platforms, steps=(*result.steps, step))
            out.append(result)
        return out

    def try_credentials(self, registry: str, username: str, password: str, repository: str) -> ProbeOutcome:
        """Do these credentials get pull access to ``repository``? (for PULL_SECRET_REJECTED)."""
        return try_credentials(
            self.prober,
            self.authenticator,
            self.transport,
            self.scrub,
            registry,
            username,
            password,
            repository,
        )
