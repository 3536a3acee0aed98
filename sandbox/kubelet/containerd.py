"""Pulling an image as the ACR credential provider and containerd's resolver and fetcher do: the
credential chain (pull secrets, provider, anonymous), the 401 challenge and token, then index →
the node's platform → manifest → config → layers.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from sandbox.kube import KubeCluster
from sandbox.kubelet.keyring import Credential
from sandbox.kubelet.node_http import Answer, NetError, NodeHttp, _challenge, _server_message
from sandbox.kubelet.reference import ACR_SUFFIXES, ImageRef

log = logging.getLogger("sandbox.kubelet")

ACR_REFRESH_TOKEN_USER = "00000000-0000-0000-0000-000000000000"


MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "*/*",
    )
)
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)

# --- pull results ------------------------------------------------------------------------------


@dataclass
class PullResult:
    ok: bool
    error: str = ""  # the CRI error text (rpc error: … or an aggregate)
    digest: str = ""
    size: int = 0
    seconds: float = 0.0
    platform_ok: bool = True  # a single-platform image for another architecture (exec format error)
    repo_digest: str = ""


class _PullFailure(Exception):
    def __init__(self, message: str, code: str = "Unknown") -> None:
        super().__init__(message)
        self.code = code


class ImagePuller:
    """Pulls one image for one cluster's node (mixed into ``Kubelet``)."""

    def _pull(
        self, cluster: KubeCluster, os_: str, arch: str, ref: ImageRef, secret_creds: list[Credential]
    ) -> PullResult:
        """kubelet's PullImage: each matching credential in turn, then (AKS) anonymously."""
        with self._lock:
            self.pulls += 1
        started = time.monotonic()
        http = NodeHttp(self, cluster)
        try:
            creds = list(secret_creds)
            acr = ref.domain.endswith(ACR_SUFFIXES)
            if acr:
                provided = self._provider_credential(http, cluster, ref)
                if provided is not None:
                    creds.append(provided)
            attempts: list[Credential | None] = list(creds) or [None]
            if acr and creds:
                attempts.append(None)  # AKS: the identity, then anonymously
            errors: list[str] = []
            for cred in attempts:
                try:
                    result = self._containerd_pull(http, ref, cred, os_, arch)
                except _PullFailure as failure:
                    errors.append(
                        f"rpc error: code = {failure.code} desc = failed to pull and unpack image "
                        f"{json.dumps(ref.normalized)}: {failure}"
                    )
                    continue
                result.seconds = time.monotonic() - started
                return result
            unique = list(dict.fromkeys(errors))
            text = unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"
            return PullResult(False, error=text, seconds=time.monotonic() - started)
        finally:
            http.close()

    def _provider_credential(self, http: NodeHttp, cluster: KubeCluster, ref: ImageRef) -> Credential | None:
        """The ACR credential provider: Entra token → /v2/ challenge → /oauth2/exchange (cached)."""
        login = ref.domain.lower()
        with self._lock:
            cached = self._refresh.get((cluster.name, login))
        if cached:
            return Credential(ACR_REFRESH_TOKEN_USER, cached, "provider")
        c = cluster.cluster
        principal = f"kubelet:{c.name}" if c.identity == "managed" else f"sp:{c.name}"
        if c.identity != "managed" and c.service_principal_secret_expired:
            log.debug("credential provider on %s: service principal secret expired", c.name)
            return None
        # A managed identity (or single-tenant service principal) gets tokens in its home tenant only;
        # a registry in another tenant then refuses the exchange, as ACR does.
        try:
            aad_token = self.entra.issue(principal, self.world.azure.arm_audience, self.world.tenant)
        except Exception as exc:  # Entra refused (expired secret, unknown principal)
            log.debug("credential provider on %s: no Entra token (%s)", c.name, type(exc).__name__)
            return None
        try:
            ping = http.request("GET", f"https://{login}/v2/")
            challenge = _challenge(ping)
            if ping.status != 401 or challenge is None or challenge[0] != "bearer":
                return None
            realm = challenge[1].get("realm", f"https://{login}/oauth2/token")
            exchange_url = realm.replace("/oauth2/token", "/oauth2/exchange")
            if urlsplit(exchange_url).hostname != login:
                return None
            form = urlencode(
                {
                    "grant_type": "access_token",
                    "service": challenge[1].get("service", login),
                    "tenant": self.world.tenant,
                    "access_token": aad_token,
                }
            ).encode()
            answer = http.request(
                "POST", exchange_url, {"Content-Type": "application/x-www-form-urlencoded"}, form
            )
        except NetError as exc:
            log.debug("credential provider on %s for %s: %s", c.name, login, exc)
            return None
        doc = answer.json()
        if answer.status != 200 or not isinstance(doc, dict) or not doc.get("refresh_token"):
            return None
        refresh = str(doc["refresh_token"])
        with self._lock:
            self._refresh[(cluster.name, login)] = refresh
        return Credential(ACR_REFRESH_TOKEN_USER, refresh, "provider")

    def _containerd_pull(
        self, http: NodeHttp, ref: ImageRef, cred: Credential | None, os_: str, arch: str
    ) -> PullResult:
        host = ref.api_host
        base = f"https://{host}/v2/{ref.path}"
        quoted = json.dumps(ref.normalized)
        token: str | None = None
        basic: str | None = None

        def auth_headers(extra: dict[str, str]) -> dict[str, str]:
            if token:
                return {**extra, "Authorization": f"Bearer {token}"}
            if basic:
                return {**extra, "Authorization": f"Basic {basic}"}
            return extra

        def resolve_failure(text: str, code: str = "Unknown") -> _PullFailure:
            return _PullFailure(f"failed to resolve reference {quoted}: {text}", code)

        # resolve: HEAD the manifest; on 401 authorize and retry
        url = f"{base}/manifests/{ref.reference}"
        head_headers = {"Accept": MANIFEST_TYPES}
        answer: Answer | None = None
        authorized = False
        for _ in range(3):
            try:
                answer = http.request("HEAD", url, auth_headers(head_headers))
            except NetError as exc:
                raise resolve_failure(f'failed to do request: Head "{url}": {exc}') from None
            if answer.status != 401:
                break
            challenge = _challenge(answer)
            if challenge is None:
                break
            scheme, params = challenge
            if authorized:
                if params.get("error"):
                    raise resolve_failure(
                        "pull access denied, repository does not exist or may require "
                        f"authorization: server message: {params['error']}: authorization failed"
                    )
                break
            authorized = True
            if scheme == "basic":
                if cred is None:
                    break
                basic = base64.b64encode(f"{cred.username}:{cred.password}".encode()).decode()
                continue
            try:
                token = self._fetch_token(http, params, ref, cred)
            except _PullFailure as failure:
                raise resolve_failure(f"failed to authorize: {failure}") from None
        assert answer is not None
        if answer.status == 404:
            raise resolve_failure(f"{ref.normalized}: not found", "NotFound")
        if answer.status >= 400 or answer.status < 200:
            raise resolve_failure(f"unexpected status from HEAD request to {url}: {answer.status_text}")
        digest = answer.headers.get("Docker-Content-Digest") or ""
        media = (answer.headers.get("Content-Type") or "").split(";")[0].strip()

        def fetch(kind: str, reference: str, accept: str | None = None) -> Answer:
            target = f"{base}/{kind}/{reference}"
            try:
                got = http.request("GET", target, auth_headers({"Accept": accept} if accept else {}))
            except NetError as exc:
                raise _PullFailure(
                    f'failed to copy: httpReadSeeker: failed open: failed to do request: Get "{target}": {exc}'
                ) from None
            if got.status == 404:
                raise _PullFailure(
                    f"failed to copy: httpReadSeeker: failed open: content at {target} not found: not found",
                    "NotFound",
                )
            if got.status >= 300:
                message = _server_message(got)
                detail = f" - Server message: {message}" if message else ""
                raise _PullFailure(
                    f"failed to copy: httpReadSeeker: failed open: unexpected status code {target}: "
                    f"{got.status_text}{detail}"
                )
            return got

        top = fetch("manifests", digest or ref.reference, MANIFEST_TYPES)
        manifest_doc = top.json() or {}
        media = manifest_doc.get("mediaType") or media
        size = len(top.body)
        platform_ok = True
        if media in INDEX_TYPES or "manifests" in manifest_doc:
            chosen = _match_platform(manifest_doc.get("manifests") or [], os_, arch)
            if chosen is None:
                raise _PullFailure("no match for platform in manifest: not found", "NotFound")
            child = fetch("manifests", chosen["digest"], chosen.get("mediaType") or MANIFEST_TYPES)
            manifest_doc = child.json() or {}
            size += len(child.body)
        config = manifest_doc.get("config") or {}
        if config.get("digest"):
            blob = fetch("blobs", config["digest"])
            size += len(blob.body)
            cfg = json.loads(blob.body or b"{}") if blob.body else {}
            if (
                isinstance(cfg, dict)
                and cfg.get("architecture")
                and (cfg.get("architecture") != arch or cfg.get("os", os_) != os_)
            ):
                platform_ok = False
        for layer in manifest_doc.get("layers") or []:
            if layer.get("digest"):
                size += len(fetch("blobs", layer["digest"]).body)
        repo_digest = f"{ref.name}@{digest}" if digest else ""
        return PullResult(True, digest=digest, size=size, platform_ok=platform_ok, repo_digest=repo_digest)

    def _fetch_token(
        self, http: NodeHttp, params: dict[str, str], ref: ImageRef, cred: Credential | None
    ) -> str:
        """containerd's doBearerAuth: OAuth POST with credentials (GET fallback), else anonymous GET."""
        realm = params.get("realm", "")
        service = params.get("service", "")
        scope = params.get("scope") or f"repository:{ref.path}:pull"
        query = urlencode([("scope", scope), ("service", service)])
        get_url = f"{realm}?{query}"
        try:
            if cred is not None:
                try:
                    form = urlencode(
                        {
                            "client_id": "containerd-client",
                            "grant_type": "password",
                            "password": cred.password,
                            "scope": scope,
                            "service": service,
                            "username": cred.username,
                        }
                    ).encode()
                    posted = http.request(
                        "POST",
                        realm,
                        {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
                        form,
                    )
                    if 200 <= posted.status < 300:
                        token = (posted.json() or {}).get("access_token")
                        if token:
                            return str(token)
                        raise _PullFailure("failed to fetch oauth token: no access token in the answer")
                    if not (posted.status in (400, 401, 404) or (posted.status == 405 and cred.username)):
                        raise _PullFailure(
                            f"failed to fetch oauth token: unexpected status from POST request to "
                            f"{realm}: {posted.status_text}"
                        )
                    basic = base64.b64encode(f"{cred.username}:{cred.password}".encode()).decode()
                    got = http.request("GET", get_url, {"Authorization": f"Basic {basic}"})
                    if not 200 <= got.status < 300:
                        raise _PullFailure(
                            f"failed to fetch oauth token: unexpected status from GET request to "
                            f"{get_url}: {got.status_text}"
                        )
                    return _token_in(got)
                except NetError as exc:
                    raise _PullFailure(
                        f'failed to fetch oauth token: failed to do request: Post "{realm}": {exc}'
                    ) from None
            try:
                got = http.request("GET", get_url)
            except NetError as exc:
                raise _PullFailure(
                    f'failed to fetch anonymous token: failed to do request: Get "{get_url}": {exc}'
                ) from None
            if not 200 <= got.status < 300:
                raise _PullFailure(
                    f"failed to fetch anonymous token: unexpected status from GET request to "
                    f"{get_url}: {got.status_text}"
                )
            return _token_in(got)
        except _PullFailure:
            raise


def _match_platform(manifests: list[dict[str, Any]], os_: str, arch: str) -> dict[str, Any] | None:
    """containerd's platforms.Default() on the node: os/arch (arm64 also runs arm/v8…v5)."""

    def accepts(p: dict[str, Any]) -> int:
        if p.get("os") != os_:
            return 0
        a, v = p.get("architecture"), p.get("variant") or ""
        if a == arch and (arch != "arm64" or v in ("", "v8")):
            return 3
        if arch == "arm64" and a == "arm" and v in ("v8", "v7", "v6", "v5", ""):
            return {"v8": 2, "v7": 2, "v6": 1, "v5": 1, "": 1}[v]
        return 0

    best, score = None, 0
    for m in manifests:
        s = accepts(m.get("platform") or {})
        if s > score:
            best, score = m, s
    return best


def _token_in(answer: Answer) -> str:
    """The token of a token endpoint's JSON answer (``token``, else ``access_token``)."""
    doc = answer.json() or {}
    return str(doc.get("token") or doc.get("access_token") or "")
