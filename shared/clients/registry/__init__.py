"""The one seam for registry HTTP: walks the pull path a kubelet walks and says what happened at
each step (facts: statuses, the registry's error codes, what stopped a step without an answer).
Which finding that makes is the checks' call (:mod:`shared.checks.registry_steps`).

Modules, one job each (data flows down this list; ``client`` puts them together):

    model            what goes in and comes out (targets, results, steps, step kinds), the scrubber
    credential_rule  where a credential may go (CredentialScope): the one rule every request obeys
    transport        sessions, deadline per request, body caps, BoundedRetry, redirects, counts
    auth             challenge parsing, identity flows, the Entra exchange, token batches
    probe            dns / tcp / tls / challenge, once per registry
    manifests        manifest HEAD, platforms, tag suggestions
    credentials      credential trials (PULL_SECRET_REJECTED)
    client           RegistryClient

For each registry (login server) pullwatch checks, once per client:

    dns        resolve the login server (PULLWATCH_HOSTS honoured) and check the address policy
    tcp        connect to the checked address
    tls        TLS handshake, certificate verified for the real host name (SNI)
    challenge  GET /v2/  → 200 (open) or 401 + WWW-Authenticate (Bearer realm/service, or Basic)

then per identity and batch of repositories:

    exchange   ACR + pullwatch's Entra identity: POST /oauth2/exchange → ACR refresh token
    token      ACR: POST /oauth2/token (several ``scope`` values); others: GET realm?service&scope…
               (anonymous, or basic with a pull secret's credentials)

then per unique (registry, repository, tag-or-digest):

    manifest   HEAD /v2/<repo>/manifests/<ref> with every manifest media type in Accept
    platforms  GET the manifest (and, for a single-platform image, its config blob) when wanted
    tags       on a missing tag: GET /v2/<repo>/tags/list → the closest tags (difflib)

Safety: one rule, :class:`CredentialScope`, decides for every request (token, exchange, manifest,
blob, tag-list page, each redirect hop) whether it may carry a credential: only to the registry's
own origin (scheme, host, port) or the token realm trusted for it (:func:`realm_trusted`: the same
origin, or a pair such as Docker Hub → auth.docker.io). Elsewhere ``Authorization`` is dropped and a
credential body (Entra or refresh token) is not sent. An Entra token goes only to an ACR login
server (``*.azurecr.io|cn|us``) whose tenant is trusted (``Settings.trusted_tenants`` or the app
tenant). Redirects to another origin are followed without credentials; a tag-list ``Link`` page on
another origin is not followed at all (the step says so). Every connection goes through
:class:`shared.netguard.NetGuard` (address policy, pinned address, verified TLS).

Resources: one request (connect, TLS, every read, the retries of ``BoundedRetry`` and their waits,
redirects) ends within ``Settings.request_deadline`` (PULLWATCH_REGISTRY_DEADLINE_SECONDS, by
default 3 x PULLWATCH_HTTP_TIMEOUT_SECONDS), so a registry answering a byte a second costs at most
that; answers are capped (manifests 4 MiB, tag pages 1 MiB, tokens 256 KiB, anything else kept to
64 KiB). Secrets are scrubbed from every detail string; evidence never holds a token or password.

Public interface::

    RegistryClient(settings, *, entra_token: Callable[[str], str] | None = None,
                   app_tenant: str | None = None)
        .check_images(targets: Sequence[ImageTarget]) -> list[ImageResult]   # one per unique (ref, identity)
        .try_credentials(registry, username, password, repository) -> ProbeOutcome
        .request_counts() -> dict[str, int]                                  # HTTP requests per host
        .close()
    ImageTarget(ref, credential=None, registry_tenant=None, authentication_as_arm=True, want_platforms=True)
    RegistryCredential(host, username, password, label)      # label "secret:<ns>/<name>"
    ImageResult(ref, identity, steps, platforms, suggestions, ...)  .key, .failed_step, .found, .evidence()
    Step(name, ok, elapsed_ms, status, error_code, detail, kind, errors, authenticated, retry_after)
    ProbeOutcome(ok, identity, steps, detail)  .failed_step
    is_acr_host(host) -> bool
"""

from shared.clients.registry.auth import (
    TOKEN_BATCH_GET,
    TOKEN_BATCH_POST,
    jwt_expiry,
    parse_challenge,
)
from shared.clients.registry.client import RegistryClient
from shared.clients.registry.credential_rule import REALM_PAIRS, CredentialScope, origin_of, realm_trusted
from shared.clients.registry.model import (
    ACCEPT,
    MANIFEST_MEDIA_TYPES,
    PULLWATCH_IDENTITY,
    ImageResult,
    ImageTarget,
    ProbeOutcome,
    RegistryCredential,
    Scrubber,
    Step,
    is_acr_host,
    registry_errors,
)
from shared.clients.registry.transport import (
    MAX_ERROR_BYTES,
    MAX_MANIFEST_BYTES,
    MAX_TAG_PAGE_BYTES,
    MAX_TOKEN_BYTES,
    DeadlineExceeded,
    RedirectRefused,
    ResponseTooLarge,
)

__all__ = [
    "ACCEPT",
    "MANIFEST_MEDIA_TYPES",
    "MAX_ERROR_BYTES",
    "MAX_MANIFEST_BYTES",
    "MAX_TAG_PAGE_BYTES",
    "MAX_TOKEN_BYTES",
    "PULLWATCH_IDENTITY",
    "REALM_PAIRS",
    "TOKEN_BATCH_GET",
    "TOKEN_BATCH_POST",
    "CredentialScope",
    "DeadlineExceeded",
    "ImageResult",
    "ImageTarget",
    "ProbeOutcome",
    "RedirectRefused",
    "RegistryClient",
    "RegistryCredential",
    "ResponseTooLarge",
    "Scrubber",
    "Step",
    "is_acr_host",
    "jwt_expiry",
    "origin_of",
    "parse_challenge",
    "realm_trusted",
    "registry_errors",
]
