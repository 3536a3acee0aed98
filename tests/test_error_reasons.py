"""``reason_of`` names why a real network call failed, in words that never carry a URL or a secret."""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import requests
import trustme
import urllib3

from shared.errors import InputError, reason_of
from shared.netguard import NameNotResolved

SECRET_PATH = "/services/T0SECRET/B0SECRET/xoxSECRETPATH"
SECRET_QUERY = "sig=SECRETSIGNATURE&sv=1"


def _url(scheme: str, port: int) -> str:
    return f"{scheme}://127.0.0.1:{port}{SECRET_PATH}?{SECRET_QUERY}"


def _raised(call: Callable[[], object]) -> BaseException:
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("the call did not fail")


def _safe(reason: str) -> None:
    assert "SECRET" not in reason and "/services" not in reason and "127.0.0.1" not in reason


@contextmanager
def _server(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A real TCP server on a free port; ``handle`` gets each accepted connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join()
        listener.close()


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return int(s.getsockname()[1])


def test_a_refused_connection_is_named_through_requests_and_urllib3_wrappers() -> None:
    exc = _raised(lambda: requests.get(_url("http", _closed_port()), timeout=2))
    assert isinstance(exc, requests.exceptions.ConnectionError)
    assert isinstance(exc.args[0], urllib3.exceptions.MaxRetryError)
    assert isinstance(exc.args[0].reason, urllib3.exceptions.NewConnectionError)
    assert SECRET_PATH in str(exc)  # the library's own text quotes the URL
    assert reason_of(exc) == "connection refused"


def test_a_read_that_gets_no_answer_times_out() -> None:
    held: list[socket.socket] = []
    with _server(held.append) as port:
        exc = _raised(lambda: requests.get(_url("http", port), timeout=(2, 0.3)))
    assert isinstance(exc, requests.exceptions.ReadTimeout)
    assert reason_of(exc) == "timed out"
    _safe(reason_of(exc))


def test_a_connection_reset_by_the_peer_is_named() -> None:
    def reset(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    with _server(reset) as port:
        exc = _raised(lambda: requests.get(_url("http", port), timeout=2))
    assert reason_of(exc) == "connection reset"


def test_tls_with_a_peer_that_speaks_no_tls_is_a_handshake_failure() -> None:
    def plain(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    with _server(plain) as port:
        exc = _raised(lambda: requests.get(_url("https", port), timeout=2))
    assert isinstance(exc, requests.exceptions.SSLError)
    reason = reason_of(exc)
    assert reason.startswith("TLS handshake failed")
    _safe(reason)


def test_an_untrusted_certificate_names_openssls_reason() -> None:
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)

    def tls(conn: socket.socket) -> None:
        try:
            with context.wrap_socket(conn, server_side=True) as s:
                s.recv(65536)
        except (ssl.SSLError, OSError):
            pass

    with _server(tls) as port:
        exc = _raised(lambda: requests.get(_url("https", port), timeout=2))
    reason = reason_of(exc)
    assert reason.startswith("TLS certificate verification failed: ")
    _safe(reason)


def test_a_name_that_does_not_resolve_is_named() -> None:
    exc = _raised(lambda: socket.getaddrinfo("pullwatch-test.invalid", 443))
    assert reason_of(requests.exceptions.ConnectionError(exc)) == "name does not resolve"


def test_library_text_holding_a_secret_url_is_never_shown() -> None:
    inner = ValueError(f"bad answer from https://user:pa55word@hooks.example.com{SECRET_PATH}?{SECRET_QUERY}")
    try:
        try:
            raise inner
        except ValueError as cause:
            raise requests.exceptions.ChunkedEncodingError(f"failed reading {SECRET_PATH}") from cause
    except requests.exceptions.ChunkedEncodingError as exc:
        outer: BaseException = exc
    assert reason_of(outer) == "ChunkedEncodingError"
    assert reason_of(outer, default="connection failed") == "connection failed"


@pytest.mark.parametrize(
    "exc",
    [
        NameNotResolved("contosoacr.azurecr.io does not resolve"),
        InputError("contosoacr.azurecr.io does not resolve"),
    ],
)
def test_a_message_pullwatch_wrote_is_shown_as_it_is(exc: BaseException) -> None:
    wrapped = requests.exceptions.ConnectionError(exc)
    assert reason_of(wrapped) == "contosoacr.azurecr.io does not resolve"


def test_a_cyclic_chain_ends() -> None:
    a, b = OSError("a"), OSError("b")
    a.__context__, b.__context__ = b, a
    assert reason_of(a) == "OSError"
