"""Per image: does the manifest exist (HEAD), which platforms it has (the manifest, and the config
blob of a single-platform image, read once per digest), and on a missing tag the closest tags
(the tag list, paged on the registry's own origin only).
"""

from __future__ import annotations

import difflib
import re
import threading
import time
from dataclasses import replace
from urllib.parse import urljoin, urlsplit

import requests

from shared.clients.registry.auth import Auth, Token, authorization
from shared.clients.registry.credential_rule import CredentialScope, origin_of
from shared.clients.registry.model import (
    ACCEPT,
    INDEX_MEDIA_TYPES,
    ImageResult,
    ImageTarget,
    Scrubber,
    Step,
    answered,
    ms_since,
    registry_errors,
)
from shared.clients.registry.transport import (
    MAX_MANIFEST_BYTES,
    MAX_TAG_PAGE_BYTES,
    Transport,
    exception_kind,
)
from shared.config import Settings
from shared.errors import reason_of
from shared.reference import ImageRef

_NEXT_LINK = re.compile(r'<([^<>]{1,2048})>\s*;[^,]{0,200}?\brel="?next"?', re.IGNORECASE)


class ManifestReader:
    """Reads manifests, platforms and tags for one client; platforms cached per (registry, repo, digest)."""

    def __init__(self, settings: Settings, transport: Transport, scrub: Scrubber) -> None:
        self.settings = settings
        self.transport = transport
        self.scrub = scrub
        self._lock = threading.Lock()
        self._platforms: dict[tuple[str, str, str], tuple[str, ...]] = {}
        self._platform_locks: dict[tuple[str, str, str], threading.Lock] = {}

    def check_one(
        self,
        host: str,
        target: ImageTarget,
        auth: Auth,
        steps: tuple[Step, ...],
        tokens: dict[str, Token | Step],
    ) -> ImageResult:
        ref = target.ref
        identity = target.identity
        token: Token | None = None
        latency = 0.0
        got = tokens.get(ref.repository)
        if isinstance(got, Step):
            return ImageResult(ref, identity, (*steps, got), detail=got.detail, auth=auth.label)
        if isinstance(got, Token):
            token = got
            steps = (*steps, got.step)
            latency += got.step.elapsed_ms
        headers = {"Accept": ACCEPT, **authorization(auth, token, self.scrub)}
        authenticated = auth.mode in ("entra", "basic-token", "basic")  # a token or Basic for this identity
        url = f"https://{host}/v2/{ref.repository}/manifests/{ref.reference}"
        start = time.monotonic()
        try:
            response = self.transport.send("HEAD", url, headers=headers, scope=auth.scope)
        except requests.exceptions.RequestException as exc:
            text = self.scrub(reason_of(exc))
            step = Step(
                "manifest",
                False,
                ms_since(start),
                detail=text,
                kind=exception_kind(exc),
                authenticated=authenticated,
            )
            return ImageResult(ref, identity, (*steps, step), detail=text, auth=auth.label)
        elapsed = ms_since(start)
        latency += elapsed
        status = response.status_code
        slow = latency > self.settings.slow_ms
        if status == 200:
            digest = response.headers.get("Docker-Content-Digest")
            media = (response.headers.get("Content-Type") or "").split(";")[0].strip() or None
            steps = (*steps, Step("manifest", True, elapsed, status=200, detail=media))
            return ImageResult(
                ref,
                identity,
                steps,
                digest=digest,
                media_type=media,
                latency_ms=latency,
                slow=slow,
                auth=auth.label,
            )
        errors: list[tuple[str, str]] = []
        answer = response
        if status in (401, 403):
            # HEAD answers carry no body: ask once more with GET to read the registry's error code
            # (DENIED "not allowed access" is a firewall). Not on 429/5xx: the status says it all, and
            # Docker Hub counts manifest GETs against the pull quota.
            try:
                again = self.transport.send("GET", url, headers=headers, scope=auth.scope)
                errors = registry_errors(again, self.scrub)
                if again.status_code != 200:
                    status, answer = again.status_code, again
            except requests.exceptions.RequestException:
                errors = []
        if status == 404:
            step = Step(
                "manifest",
                False,
                elapsed,
                status=404,
                error_code="MANIFEST_UNKNOWN",
                detail=f"{ref.reference} not found in {ref.repository}",
                authenticated=authenticated,
            )
            suggestions, exists, tstep = self._suggest_tags(host, ref, headers, auth.scope)
            if exists is False:
                step = Step(
                    "manifest",
                    False,
                    elapsed,
                    status=404,
                    error_code="NAME_UNKNOWN",
                    detail=f"repository {ref.repository} not found",
                    authenticated=authenticated,
                )
            all_steps = (*steps, step) + ((tstep,) if tstep else ())
            return ImageResult(
                ref,
                identity,
                all_steps,
                suggestions=suggestions,
                detail=step.detail,
                latency_ms=latency,
                auth=auth.label,
                repository_exists=exists,
            )
        detail = errors[0][1] if errors else f"HTTP {status} on HEAD manifest"
        step = answered("manifest", start, answer, errors, detail=detail, authenticated=authenticated)
        step = replace(step, elapsed_ms=elapsed)
        return ImageResult(ref, identity, (*steps, step), detail=detail, auth=auth.label, latency_ms=latency)

    def platforms_of(
        self,
        host: str,
        ref: ImageRef,
        reference: str,
        headers: dict[str, str],
        scope: CredentialScope | None,
    ) -> tuple[tuple[str, ...] | None, Step]:
        """Platforms of a manifest, read once per (registry, repository, digest) however many tags share it."""
        key = (host, ref.repository, reference)
        with self._lock:
            lock = self._platform_locks.setdefault(key, threading.Lock())
        with lock:  # single flight: tags resolving to the same digest wait for the first reader
            with self._lock:
                cached = self._platforms.get(key)
            if cached is not None:
                return cached, Step("platforms", True, 0.0, detail="cached")
            return self._read_platforms(host, ref, reference, headers, scope, key)

    def _read_platforms(
        self,
        host: str,
        ref: ImageRef,
        reference: str,
        headers: dict[str, str],
        scope: CredentialScope | None,
        key: tuple[str, str, str],
    ) -> tuple[tuple[str, ...] | None, Step]:
        start = time.monotonic()
        try:
            response = self.transport.send(
                "GET",
                f"https://{host}/v2/{ref.repository}/manifests/{reference}",
                headers=headers,
                scope=scope,
                limit=MAX_MANIFEST_BYTES,
            )
            if response.status_code != 200:
                errors = registry_errors(response, self.scrub)
                detail = errors[0][1] if errors else "could not read the manifest"
                return None, answered("platforms", start, response, errors, detail=detail)
            manifest = response.json()
            media = manifest.get("mediaType") or (response.headers.get("Content-Type") or "").split(";")[0]
            found: list[str] = []
            if media in INDEX_MEDIA_TYPES or "manifests" in manifest:
                for entry in manifest.get("manifests") or []:
                    p = entry.get("platform") or {}
                    os_, arch = p.get("os"), p.get("architecture")
                    if os_ and arch and os_ != "unknown":
                        found.append(f"{os_}/{arch}")
            else:
                config = (manifest.get("config") or {}).get("digest")
                if not config:
                    return None, Step("platforms", False, ms_since(start), detail="manifest has no config")
                blob = self.transport.send(
                    "GET",
                    f"https://{host}/v2/{ref.repository}/blobs/{config}",
                    headers=headers,
                    scope=scope,
                    limit=MAX_MANIFEST_BYTES,
                )
                if blob.status_code != 200:
                    return None, Step(
                        "platforms",
                        False,
                        ms_since(start),
                        status=blob.status_code,
                        detail="could not read the image config",
                    )
                cfg = blob.json()
                if cfg.get("os") and cfg.get("architecture"):
                    found.append(f"{cfg['os']}/{cfg['architecture']}")
        except (requests.exceptions.RequestException, ValueError, AttributeError) as exc:
            return None, Step("platforms", False, ms_since(start), detail=self.scrub(reason_of(exc)))
        platforms = tuple(dict.fromkeys(found))
        with self._lock:
            self._platforms[key] = platforms
        return platforms, Step("platforms", True, ms_since(start), status=200, detail=", ".join(platforms))

    def _suggest_tags(
        self, host: str, ref: ImageRef, headers: dict[str, str], scope: CredentialScope | None
    ) -> tuple[tuple[str, ...], bool | None, Step | None]:
        """The closest tags, reading at most 10 pages of the tag list.

        A ``Link: <…>; rel="next"`` page on another origin than the registry is not followed (with or
        without credentials: the registry's own tag list is on the registry); the step says so, and
        the tags read so far still make the suggestions.
        """
        start = time.monotonic()
        tags: list[str] = []
        url = f"https://{host}/v2/{ref.repository}/tags/list?n=1000"
        registry = origin_of(url)
        note = ""
        try:
            for _ in range(10):
                response = self.transport.send(
                    "GET",
                    url,
                    headers={k: v for k, v in headers.items() if k != "Accept"},
                    scope=scope,
                    limit=MAX_TAG_PAGE_BYTES,
                )
                if response.status_code == 404:
                    return (
                        (),
                        False,
                        Step(
                            "tags",
                            True,
                            ms_since(start),
                            status=404,
                            error_code="NAME_UNKNOWN",
                            detail="repository does not exist",
                        ),
                    )
                if response.status_code != 200:
                    return (), None, Step("tags", False, ms_since(start), status=response.status_code)
                body = response.json()
                tags.extend(t for t in (body.get("tags") or []) if isinstance(t, str))
                link = _NEXT_LINK.search(response.headers.get("Link") or "")
                if not link:
                    break
                following = urljoin(url, link.group(1))
                if origin_of(following) != registry:
                    shown = self.scrub(urlsplit(following).netloc, limit=120)
                    note = f"; the next page is on another host ({shown}): not followed"
                    break
                url = following
        except (requests.exceptions.RequestException, ValueError, AttributeError) as exc:
            return (), None, Step("tags", False, ms_since(start), detail=self.scrub(reason_of(exc)))
        suggestions: tuple[str, ...] = ()
        if ref.tag and not ref.digest:
            suggestions = tuple(difflib.get_close_matches(ref.tag, tags, n=3, cutoff=0.4))
        return (
            suggestions,
            True,
            Step("tags", True, ms_since(start), status=200, detail=f"{len(tags)} tags{note}"),
        )
