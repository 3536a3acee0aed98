"""The project's own errors, and :func:`reason_of`: why a network call failed, in words safe to show.

Seams raise these; the CLI and triggers turn them into clear messages."""

from __future__ import annotations

import errno
import re
import socket
import ssl
from http.client import RemoteDisconnected

import requests
import urllib3


class PullwatchError(Exception):
    """Base of every error pullwatch raises on purpose. Its message is safe to show: no secrets."""


class InputError(PullwatchError):
    """Bad input from a user or a caller (file, body, argument): exit 2 / HTTP 400."""


class UpstreamError(PullwatchError):
    """An outside system (ARM, Kubernetes, a registry, a webhook, storage) failed or refused."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class SafeMessage:
    """Mixin for an exception whose message pullwatch wrote and which names no secret (a host, a
    limit, a step): :func:`reason_of` shows that message as it is."""


_CHAIN_LIMIT = 32  # exceptions looked at in one chain (a cycle or a huge chain ends the walk)
_SSL_REASON = re.compile(r"[A-Z0-9_]{1,64}")


def reason_of(exc: BaseException, default: str | None = None) -> str:
    """Why a network call raised ``exc``, in a few words safe to show anywhere.

    Walks the chain (``__cause__``, ``__context__``, exception ``args`` and urllib3's ``reason``) and
    names the most telling failure in it: the message of an exception pullwatch wrote
    (:class:`SafeMessage`, :class:`PullwatchError`) as it is; otherwise one fixed phrase — "name does
    not resolve", "TLS certificate verification failed: <OpenSSL's reason>", "TLS handshake failed",
    "connection refused", "connection reset", "timed out", "network unreachable". The text of a
    library's exception is never shown: it quotes the URL (a webhook's path and a signed URL's query
    are secrets) and the other side's answers. Nothing recognised: ``default``, else the type's name.
    """
    chain = _chain(exc)
    for item in chain:
        if isinstance(item, SafeMessage | PullwatchError):
            return str(item)
    found = [phrase for item in chain if (phrase := _phrase(item)) is not None]
    return min(found)[1] if found else default or type(exc).__name__


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it carries, outermost first, each once."""
    out: list[BaseException] = []
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo and len(out) < _CHAIN_LIMIT:
        item = todo.pop(0)
        if id(item) in seen:
            continue
        seen.add(id(item))
        out.append(item)
        carried = [*item.args, item.__cause__, item.__context__, getattr(item, "reason", None)]
        todo += [c for c in carried if isinstance(c, BaseException)]
    return out


def _phrase(item: BaseException) -> tuple[int, str] | None:
    """(rank, phrase) of one exception of the chain; the lowest rank is the most telling."""
    if isinstance(item, socket.gaierror | urllib3.exceptions.NameResolutionError):
        return 0, "name does not resolve"
    if isinstance(item, ssl.SSLCertVerificationError):
        message = item.verify_message
        return (
            1,
            f"TLS certificate verification failed: {message}"
            if message
            else "TLS certificate verification failed",
        )
    if isinstance(item, ssl.SSLError):
        reason = item.reason if isinstance(item.reason, str) else ""
        return 2, f"TLS handshake failed ({reason})" if _SSL_REASON.fullmatch(
            reason
        ) else "TLS handshake failed"
    if isinstance(item, urllib3.exceptions.SSLError | requests.exceptions.SSLError):
        return 3, "TLS handshake failed"
    if isinstance(item, ConnectionRefusedError):
        return 4, "connection refused"
    if isinstance(item, ConnectionResetError | BrokenPipeError | ConnectionAbortedError | RemoteDisconnected):
        return 5, "connection reset"
    if isinstance(item, urllib3.exceptions.NewConnectionError):
        return None  # a subclass of ConnectTimeoutError, though it is no timeout: its cause says what
    if isinstance(item, TimeoutError | urllib3.exceptions.TimeoutError | requests.exceptions.Timeout):
        return 6, "timed out"
    if isinstance(item, OSError) and item.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return 7, "network unreachable" if item.errno == errno.ENETUNREACH else "host unreachable"
    return None
