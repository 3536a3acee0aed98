"""Registry HTTP: one :class:`shared.netguard.PinnedAdapter` per host (no ``requests.Session``: no
cookie jar, no environment settings, none of its per-request merging), a deadline per request, capped answers, :class:`shared.clients.retry.BoundedRetry`, redirects by hand under
the credential rule (:class:`shared.clients.registry.credential_rule.CredentialScope`), requests
counted.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import requests

from shared.clients.registry.credential_rule import CredentialScope
from shared.clients.registry.model import (
    ADDRESS_REFUSED,
    CONNECT_FAILED,
    DEADLINE_PASSED,
    NAME_UNRESOLVED,
    NOT_SENT,
    TLS_FAILED,
    TOO_LARGE,
)
from shared.clients.retry import BoundedRetry, attempts
from shared.config import Settings
from shared.errors import SafeMessage
from shared.netguard import (
    AddressRefused,
    NameNotResolved,
    NetGuard,
    PinnedAdapter,
    PlainHttpRefused,
    deadline_remaining,
    request_deadline,
)

MAX_RETRY_AFTER_SECONDS = 30.0  # the longest Retry-After honoured; a longer one is reported at once
MAX_REDIRECTS = 3
# Body caps: a registry cannot make pullwatch hold a huge answer (all reads end by the request deadline).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # registries limit manifests to 4 MiB; image configs are smaller
MAX_TAG_PAGE_BYTES = 1024 * 1024  # a page of at most 1000 tags
MAX_TOKEN_BYTES = 256 * 1024  # token and exchange answers (a JWT of a few KB)
MAX_ERROR_BYTES = 64 * 1024  # any other answer, errors included (kept truncated: the status decides)
#: Headers on every request (a caller's header of the same name replaces one of these).
DEFAULT_HEADERS = {"User-Agent": "pullwatch/0.1", "Accept-Encoding": "gzip, deflate", "Accept": "*/*"}


_In = TypeVar("_In")
_Out = TypeVar("_Out")


class ResponseTooLarge(SafeMessage, requests.exceptions.RequestException):
    """A successful registry answer larger than its cap (MAX_MANIFEST_BYTES, MAX_TAG_PAGE_BYTES…)."""


class RedirectRefused(SafeMessage, requests.exceptions.RequestException):
    """A request carrying a credential in its body was redirected to another origin: not followed."""


class DeadlineExceeded(SafeMessage, requests.exceptions.Timeout):
    """One registry request (connect, TLS, reads, retries, redirects) took longer than its deadline."""


def exception_kind(exc: BaseException) -> str:
    """What stopped a request that raised ``exc`` (one of :data:`~shared.clients.registry.model.STEP_KINDS`)."""
    if isinstance(exc, NameNotResolved):
        return NAME_UNRESOLVED
    if isinstance(exc, AddressRefused):
        return ADDRESS_REFUSED
    if isinstance(exc, PlainHttpRefused | RedirectRefused):
        return NOT_SENT
    if isinstance(exc, ResponseTooLarge):
        return TOO_LARGE
    if isinstance(exc, DeadlineExceeded):
        return DEADLINE_PASSED
    if isinstance(exc, requests.exceptions.SSLError | ssl.SSLError):
        return TLS_FAILED
    text = str(exc)
    if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo failed" in text:
        return NAME_UNRESOLVED
    if "SSL" in text or ("CERTIFICATE" in text.upper() and "VERIFY" in text.upper()):
        return TLS_FAILED
    return CONNECT_FAILED


def _prepare(
    method: str, url: str, headers: dict[str, str], data: Any, params: Any
) -> requests.PreparedRequest:
    """The request as ``PreparedRequest.prepare`` builds it, minus its cookie jar and the
    ``user:password@`` credentials of a URL: pullwatch keeps no cookies, and the only credentials a
    request carries are the ones the credential rule let through (a URL from a registry's redirect
    must not add its own)."""
    prepared = requests.PreparedRequest()
    prepared.prepare_method(method)
    prepared.prepare_url(url, params)
    prepared.prepare_headers(headers)
    prepared.prepare_body(data, None)
    return prepared


class Transport:
    """Adapters, worker pools and request counts of one client; :meth:`send` is every request.

    A request goes straight to the host's adapter as a ``PreparedRequest``: ``requests.Session``
    would merge cookies, environment settings and hooks on every request, which costs CPU under the
    GIL and adds nothing a registry check needs (no cookies are kept, no proxy or ``.netrc`` from the
    environment is used).
    """

    def __init__(self, settings: Settings, guard: NetGuard) -> None:
        self.settings = settings
        self.guard = guard
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._adapters: dict[str, PinnedAdapter] = {}
        self._pools: dict[str, ThreadPoolExecutor] = {}

    def request_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def close(self) -> None:
        with self._lock:
            adapters, self._adapters = list(self._adapters.values()), {}
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=True)
        for adapter in adapters:
            adapter.close()

    def _adapter(self, host: str) -> PinnedAdapter:
        with self._lock:
            adapter = self._adapters.get(host)
            if adapter is None:
                retry = BoundedRetry.policy(
                    retries=self.settings.retries,
                    backoff=float(self.settings.retry_base_seconds),
                    max_retry_after=MAX_RETRY_AFTER_SECONDS,
                    remaining=deadline_remaining,
                )
                adapter = PinnedAdapter(
                    self.guard, pool_maxsize=max(self.settings.registry_concurrency, 2), retries=retry
                )
                self._adapters[host] = adapter
            return adapter

    def executor(self, host: str) -> ThreadPoolExecutor:
        with self._lock:
            pool = self._pools.get(host)
            if pool is None:
                pool = ThreadPoolExecutor(
                    max_workers=max(1, self.settings.registry_concurrency),
                    thread_name_prefix=f"registry-{host}",
                )
                self._pools[host] = pool
            return pool

    def map(self, host: str, fn: Callable[[_In], _Out], items: Iterable[_In]) -> list[_Out]:
        """``fn`` over ``items`` on ``host``'s worker pool, at most ``registry_concurrency`` at a time;
        the results in the order of ``items``. The first exception ``fn`` raised is raised here.

        Each of up to ``registry_concurrency`` pool tasks takes the next item until none is left, so
        500 items cost a handful of futures, not 500 (each future is a lock, a condition and a wake-up
        of the waiting thread, all under the GIL).
        """
        todo = list(items)
        results: list[Any] = [None] * len(todo)
        cursor = iter(range(len(todo)))
        taking = threading.Lock()

        def drain() -> None:
            while True:
                with taking:
                    index = next(cursor, None)
                if index is None:
                    return
                results[index] = fn(todo[index])

        workers = max(1, self.settings.registry_concurrency)
        tasks = [self.executor(host).submit(drain) for _ in range(min(workers, len(todo)))]
        for task in tasks:
            task.result()
        return results

    def _count(self, host: str, requests_sent: int = 1) -> None:
        with self._lock:
            self._counts[host] = self._counts.get(host, 0) + requests_sent

    @staticmethod
    def _read_bounded(response: requests.Response, method: str, limit: int) -> None:
        """Read the body: a 2xx answer over ``limit`` bytes is refused (ResponseTooLarge); any other
        answer is kept to its first MAX_ERROR_BYTES (its status is what counts)."""
        if method == "HEAD":
            _ = response.content  # no body: urllib3 finishes the response and pools the connection
            return
        ok = 200 <= response.status_code < 300
        cap = limit if ok else MAX_ERROR_BYTES
        declared = response.headers.get("Content-Length", "")
        if ok and declared.isdigit() and int(declared) > cap:
            response.close()
            raise ResponseTooLarge(f"answer of {declared} bytes is larger than {cap}")
        chunks, size = [], 0
        for chunk in response.iter_content(16 * 1024):
            if size + len(chunk) > cap:
                response.close()  # the rest is not read; the connection is not reused
                if ok:
                    raise ResponseTooLarge(f"answer larger than {cap} bytes")
                chunks.append(chunk[: cap - size])
                break
            size += len(chunk)
            chunks.append(chunk)
        response._content = b"".join(chunks)  # iter_content ran to the end: the connection is released
        response.close()

    def send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        data: Any = None,
        params: Any = None,
        scope: CredentialScope | None = None,
        limit: int = MAX_ERROR_BYTES,
    ) -> requests.Response:
        """One logical request, whole within ``Settings.request_deadline`` (connect, TLS, every read,
        retries on 429/5xx by :class:`BoundedRetry`, redirects followed here), body capped at ``limit``.

        Credentials follow :class:`CredentialScope`: on every hop whose URL ``scope`` does not allow,
        ``Authorization`` is dropped, and a credential body (``data``: every POST pullwatch sends holds
        an Entra or refresh token) is not sent (RedirectRefused).
        """
        deadline = self.settings.request_deadline
        with request_deadline(deadline):
            try:
                return self._send_within_deadline(method, url, headers, data, params, scope, limit)
            except (requests.exceptions.RequestException, TimeoutError):
                left = deadline_remaining()
                if left is not None and left <= 0:
                    raise DeadlineExceeded(
                        f"no complete answer within {deadline:g} s (the deadline of one registry request)"
                    ) from None
                raise

    def _send_within_deadline(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None,
        data: Any,
        params: Any,
        scope: CredentialScope | None,
        limit: int,
    ) -> requests.Response:
        headers = dict(headers or {})
        for _ in range(MAX_REDIRECTS + 1):
            if scope is None or not scope.allows(url):
                headers.pop("Authorization", None)
                if data is not None:
                    raise RedirectRefused(
                        f"{method} {urlsplit(url).path} would send a credential to "
                        f"{urlsplit(url).netloc}, which is not the registry or its trusted realm; not sent"
                    )
            left = deadline_remaining()
            if left is not None and left <= 0:
                raise DeadlineExceeded("the request deadline passed")
            parts = urlsplit(url)
            host = (parts.hostname or parts.netloc).lower()
            adapter = self._adapter(host)
            timeout = self.settings.http_timeout
            try:
                prepared = _prepare(method, url, {**DEFAULT_HEADERS, **headers}, data, params)
                response = adapter.send(
                    prepared,
                    stream=True,
                    timeout=(min(timeout, left) if left is not None else timeout, timeout),
                    verify=True,
                    cert=None,
                    proxies={},
                )
            except requests.exceptions.RequestException:
                self._count(host)
                raise
            self._count(host, attempts(response))
            self._read_bounded(response, method, limit)
            if response.status_code in (301, 302, 303, 307, 308) and "Location" in response.headers:
                url = urljoin(url, response.headers["Location"])
                params = None
                if response.status_code == 303:
                    method, data = "GET", None
                continue
            return response
        raise requests.exceptions.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects")
