"""Azurite (Azure Storage emulator, npm package installed by ``make setup``) as a child process.

Ports are ephemeral: Azurite is started with port 0 and the bound ports are read from its output.
Data lives in memory and in a temp folder that ``stop()`` removes.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

ACCOUNT = "devstoreaccount1"
# The well-known development key every Azurite install uses (public, documented, not a secret).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
ROOT = Path(__file__).resolve().parent.parent


class AzuriteError(RuntimeError):
    pass


def azurite_binary() -> Path:
    path = ROOT / "node_modules" / ".bin" / "azurite"
    if not path.exists():
        raise AzuriteError(f"Azurite is not installed at {path}: run `make setup`")
    return path


_ACCESS = re.compile(r'"(?:GET|PUT|POST|DELETE|HEAD|PATCH|MERGE|OPTIONS) (\S+) HTTP/[\d.]+" \d{3}')


class Azurite:
    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="pullwatch-azurite-"))
        self.process: subprocess.Popen[str] | None = None
        self.ports: dict[str, int] = {}

    def start(self, timeout: float = 30.0) -> Azurite:
        cmd = [
            str(azurite_binary()),  # not --silent: the access log counts storage transactions
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--loose",
            "--blobPort",
            "0",
            "--queuePort",
            "0",
            "--tablePort",
            "0",
        ]
        log_path = self.workdir / "azurite.out"
        self._out = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            cmd,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            cwd=self.workdir,
        )
        deadline = time.monotonic() + timeout
        pattern = re.compile(
            r"Azurite (Blob|Queue|Table) service is successfully listening at http://[\d.]+:(\d+)"
        )
        while time.monotonic() < deadline:
            text = log_path.read_text()
            found = {m.group(1).lower(): int(m.group(2)) for m in pattern.finditer(text)}
            if len(found) == 3:
                self.ports = found
                return self
            if self.process.poll() is not None:
                self.stop()
                raise AzuriteError(f"Azurite exited at start: {text[-500:]}")
            time.sleep(0.1)
        self.stop()
        raise AzuriteError(f"Azurite did not start within {timeout:.0f} s")

    def transactions(self) -> dict[str, int]:
        """Storage transactions served so far, from Azurite's access log: ``queue`` (message
        operations: send, receive, delete) and ``other`` (table entities and batches, queue, table
        and blob management)."""
        counts = {"queue": 0, "other": 0}
        try:
            text = (self.workdir / "azurite.out").read_text(errors="replace")
        except OSError:
            return counts
        for match in _ACCESS.finditer(text):
            path = match.group(1)
            counts["queue" if "/messages" in path else "other"] += 1
        return counts

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint={self.url('blob')};QueueEndpoint={self.url('queue')};"
            f"TableEndpoint={self.url('table')};"
        )

    @property
    def table_url(self) -> str:
        return self.url("table")

    @property
    def queue_url(self) -> str:
        return self.url("queue")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self.process = None
        if getattr(self, "_out", None) is not None:
            self._out.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
