"""One retry policy for pullwatch's ``requests`` sessions: a :class:`urllib3.util.Retry` that waits
only as long as a run can afford and never carries a credential to another origin.

- Retries 429 and 5xx answers (every method: the token and exchange POSTs pullwatch sends are safe to
  repeat), at most ``retries`` times, with a backoff of ``backoff, 2*backoff, 4*backoff…``.
- ``Retry-After`` is honoured up to ``max_retry_after`` seconds. A longer one (Docker Hub says 3600
  when the anonymous pull quota is gone) is not worth stalling for: the answer is returned at once,
  as it is, for the caller to report. The same when the wait would pass the request's deadline
  (``remaining``: seconds left, or None for no deadline).
- Connection and read errors are not retried (a registry that does not answer is reported).
- Redirects are not followed unless ``redirects`` > 0 (urllib3 itself, e.g. a ``PoolManager``). Then
  a redirect to another origin (scheme, host, port) drops ``Authorization``, ``Proxy-Authorization``
  and ``Cookie`` plus any ``credential_headers`` (``remove_headers_on_redirect``), and a request with
  a body (which may be a credential: a token form, a webhook payload) is not re-sent to another
  origin at all: the redirect answer is returned as it is. ``requests`` follows redirects itself
  (``Session.rebuild_auth`` drops ``Authorization`` across hosts); callers that follow by hand apply
  their own rule (the registry client: ``CredentialScope``).

Use with ``requests``::

    adapter = HTTPAdapter(max_retries=BoundedRetry.policy(retries=3, backoff=1.0, max_retry_after=60))
    session.mount("https://", adapter)
    response = session.post(url, json=body, timeout=10)   # 429/5xx: the last answer after the retries
    attempts(response)                                     # 1 + retries done, from urllib3's history
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from urllib3.exceptions import InvalidHeader, MaxRetryError, ResponseError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

RETRY_STATUSES = frozenset({429, *range(500, 600)})
CREDENTIAL_HEADERS = frozenset({"Authorization", "Proxy-Authorization", "Cookie"})


class BoundedRetry(Retry):
    """A urllib3 ``Retry`` whose waits are capped (see the module docstring)."""

    def __init__(
        self,
        *args: Any,
        max_retry_after: float = 30.0,
        remaining: Callable[[], float | None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_retry_after = max_retry_after
        self.remaining = remaining

    @classmethod
    def policy(
        cls,
        *,
        retries: int,
        backoff: float,
        max_retry_after: float,
        remaining: Callable[[], float | None] | None = None,
        credential_headers: Collection[str] = (),
        redirects: int = 0,
    ) -> BoundedRetry:
        """The policy: ``retries`` retries of 429/5xx, nothing else retried, answers returned when spent."""
        return cls(
            total=None,  # each kind has its own count below
            connect=0,
            read=False,  # a read error is raised as it is (ReadTimeout), not wrapped
            other=0,
            status=retries,
            redirect=redirects,
            raise_on_redirect=False,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=None,  # every method
            backoff_factor=backoff,
            raise_on_status=False,  # retries spent: the last answer is returned, for the caller to read
            respect_retry_after_header=True,
            remove_headers_on_redirect=CREDENTIAL_HEADERS | frozenset(credential_headers),
            max_retry_after=max_retry_after,
            remaining=remaining,
        )

    def new(self, **kw: Any) -> BoundedRetry:
        kw.setdefault("max_retry_after", self.max_retry_after)
        kw.setdefault("remaining", self.remaining)
        new = super().new(**kw)
        assert isinstance(new, BoundedRetry)
        return new

    def get_backoff_time(self) -> float:
        """``backoff * 2**(n-1)`` for the n-th consecutive retry (urllib3 waits 0 before the first)."""
        errors = 0
        for entry in reversed(self.history):
            if entry.redirect_location is not None:
                break
            errors += 1
        if errors == 0:
            return 0.0
        return float(max(0.0, min(self.backoff_max, self.backoff_factor * 2 ** (errors - 1))))

    def wait_before_retry(self, response: BaseHTTPResponse | None) -> float | None:
        """Seconds to wait before the next attempt, or None when it is not worth waiting for."""
        seconds = self.get_backoff_time()
        header = response.headers.get("Retry-After") if response is not None else None
        if header is not None and self.respect_retry_after_header:
            try:
                seconds = self.parse_retry_after(header)
            except InvalidHeader:
                pass  # an unreadable Retry-After: the backoff
            if seconds > self.max_retry_after:
                return None
        left = self.remaining() if self.remaining is not None else None
        if left is not None and seconds >= left:
            return None
        return seconds

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> BoundedRetry:
        location = response.get_redirect_location() if response is not None else None
        if location and (method or "GET").upper() not in ("GET", "HEAD") and not _same_origin(url, location):
            # a body is not carried to another origin: the redirect answer is returned as it is
            raise MaxRetryError(_pool, url, ResponseError("a request body is not re-sent to another origin"))
        new = super().increment(method, url, response, error, _pool, _stacktrace)
        assert isinstance(new, BoundedRetry)
        if location:
            return new
        if response is not None and new.wait_before_retry(response) is None:
            # urllib3 returns this answer as it is (raise_on_status=False): no wait, no retry
            raise MaxRetryError(_pool, url, ResponseError("the wait it asks for is beyond the budget"))
        return new

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        seconds = self.wait_before_retry(response)
        if seconds:
            time.sleep(seconds)


def _same_origin(url: str | None, location: str) -> bool:
    """Whether ``location`` (absolute or relative to ``url``) has the scheme, host and port of ``url``."""
    if not url:
        return not urlsplit(location).netloc
    base, target = urlsplit(url), urlsplit(urljoin(url, location))
    if not base.netloc:  # urllib3 passes a connection pool's request path: only a relative one is same-origin
        return not urlsplit(location).netloc
    try:
        ports = (
            base.port or _DEFAULT_PORTS.get(base.scheme),
            target.port or _DEFAULT_PORTS.get(target.scheme),
        )
    except ValueError:
        return False
    return (base.scheme, (base.hostname or "").lower(), ports[0]) == (
        target.scheme,
        (target.hostname or "").lower(),
        ports[1],
    )


_DEFAULT_PORTS = {"http": 80, "https": 443}


def attempts(response: requests.Response) -> int:
    """How many HTTP requests this answer took (1 + the retries urllib3 made for it)."""
    retries = getattr(response.raw, "retries", None)
    return 1 + len(retries.history) if isinstance(retries, Retry) else 1
