"""The sandbox's shared plumbing: HTTPS server, CA, request log, Azurite — real sockets, real processes."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import requests
from azure.data.tables import TableServiceClient

from sandbox.azurite import Azurite
from sandbox.httpserver import Response, Server
from sandbox.metrics import RequestLog
from sandbox.pki import Pki


def test_https_server_keeps_connections_alive_and_verifies_with_the_sandbox_ca(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    seen: list[tuple[str, int]] = []

    def handler(request):  # type: ignore[no-untyped-def]
        seen.append(request.client)
        return Response(200, {"path": request.path, "q": request.arg("q")})

    with Server(handler, cert=pki.issue(["registry.test"])) as server, requests.Session() as session:
        for _ in range(3):
            answer = session.get(f"{server.url}/v2/?q=1", verify=str(pki.ca_bundle), timeout=5)
            assert answer.json() == {"path": "/v2/", "q": "1"}
        assert len({client for client in seen}) == 1, "HTTP/1.1 keep-alive: one connection for three requests"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(server.url, timeout=5)  # the system trust store does not know the sandbox CA


def test_untrusted_certificate_fails_verification(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    with Server(lambda r: Response(200), cert=pki.untrusted(["registry.test"])) as server:
        with pytest.raises(requests.exceptions.SSLError) as info:
            requests.get(server.url, verify=str(pki.ca_bundle), timeout=5)
        assert isinstance(info.value.__context__, Exception) or "certificate" in str(info.value).lower()


def test_handler_crash_is_a_500_not_a_hang(tmp_path: Path) -> None:
    def broken(request):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    with Server(broken) as server:
        assert requests.get(server.url, timeout=5).status_code == 500


def test_stop_closes_the_listener() -> None:
    server = Server(lambda r: Response(204)).start()
    port = server.port
    server.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)


def test_request_log_counts_by_kind() -> None:
    log = RequestLog()
    log.count("arm")
    log.count("registry", "a.azurecr.io")
    log.count("registry", "a.azurecr.io")
    log.count("kubernetes", "aks-prod")
    assert log.snapshot() == {
        "arm": 1,
        "entra": 0,
        "graph": 0,
        "kubernetes": {"aks-prod": 1},
        "registry": {"a.azurecr.io": 2},
    }
    with pytest.raises(ValueError):
        log.count("nope")


@pytest.mark.sandbox
def test_azurite_starts_serves_tables_and_leaves_nothing_behind() -> None:
    server = Azurite().start()
    workdir, pid = server.workdir, server.process.pid if server.process else None
    try:
        tables = TableServiceClient.from_connection_string(server.connection_string)
        table = tables.create_table_if_not_exists("plumbing")
        table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "n": 1})
        assert [e["n"] for e in table.list_entities()] == [1]
    finally:
        server.stop()
    assert not workdir.exists()
    assert (pid is not None and not Path(f"/proc/{pid}").exists()) or _is_zombie(pid)
    _ = ssl  # keep import for typing of TLS errors above


def _is_zombie(pid: int | None) -> bool:
    try:
        return "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return True
