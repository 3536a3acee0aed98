"""One real ``docker-registry`` (distribution v2) child process per sandbox registry: its config (token
auth trusting the farm's signer, TLS from the sandbox CA, deletes enabled), its storage, a watchdog
that stops it when the sandbox goes away, and an admin client that pushes, deletes and reads images.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import urllib3
import yaml

from sandbox.images import MANIFEST_ACCEPT, Blob, build_image
from sandbox.pki import Pki
from sandbox.tokens import (
    ACR_ISSUER,
    DOCKERHUB_ISSUER,
    DOCKERHUB_REALM,
    DOCKERHUB_SERVICE,
    TokenSigner,
)
from sandbox.world import Platform, Registry

log = logging.getLogger("sandbox.registry")


class RegistryError(RuntimeError):
    """A sandbox registry could not be started or changed."""


_WATCHDOG = """
docker-registry serve "$1" </dev/null &
child=$!
trap 'kill -TERM $child 2>/dev/null; wait $child; exit 0' TERM INT HUP
read -r _ignored
kill -TERM $child 2>/dev/null
wait $child
"""


def _reap_group(group: int, timeout: float = 5.0) -> None:
    """Wait until no process of the group is left; SIGKILL whatever outlives ``timeout``."""
    for last_resort in (False, True):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.02)
        if last_resort:
            log.warning("processes of group %s outlived SIGKILL (zombies not reaped?)", group)
            return
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            return


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _platforms(values: Iterable[Platform | str]) -> list[Platform]:
    out = []
    for value in values:
        if isinstance(value, Platform):
            out.append(value)
            continue
        parts = str(value).split("/")
        if len(parts) not in (2, 3):
            raise RegistryError(f"platform {value!r} is not os/arch")
        out.append(Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else None))
    return out


class RegistryProcess:
    """One ``docker-registry`` child process with its config, storage and an admin client."""

    def __init__(self, registry: Registry, root: Path, pki: Pki, signer: TokenSigner) -> None:
        self.registry = registry
        self.root = root
        self.pki = pki
        self.signer = signer
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        if registry.is_acr:
            self.service, self.issuer = registry.host, ACR_ISSUER
            self.realm = f"https://{registry.host}/oauth2/token"
        elif registry.kind == "dockerhub":
            self.service, self.issuer, self.realm = DOCKERHUB_SERVICE, DOCKERHUB_ISSUER, DOCKERHUB_REALM
        else:
            self.service, self.issuer = registry.host, f"{registry.host} token service"
            self.realm = f"https://{registry.host}/token"
        self._pool: urllib3.HTTPSConnectionPool | None = None
        self._admin_tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def launch(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        cert, key = self.pki.issue([self.registry.host])
        self.port = _free_port()
        config = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}, "formatter": "text"},
            "storage": {
                "filesystem": {"rootdirectory": str(self.root / "storage")},
                "delete": {"enabled": True},
                "cache": {"blobdescriptor": "inmemory"},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": f"127.0.0.1:{self.port}",
                "host": f"https://{self.registry.host}",
                "secret": secrets.token_hex(16),
                "tls": {"certificate": str(cert), "key": str(key)},
                "headers": {"X-Content-Type-Options": ["nosniff"]},
            },
            "auth": {
                "token": {
                    "realm": self.realm,
                    "service": self.service,
                    "issuer": self.issuer,
                    "rootcertbundle": str(self.signer.cert_path),
                }
            },
        }
        config_path = self.root / "config.yml"
        config_path.write_text(yaml.safe_dump(config))
        self._log = open(self.root / "registry.log", "wb")  # noqa: SIM115 - closed in stop()
        # A tiny sh keeps docker-registry tied to us: it holds a pipe whose other end is ours, and
        # stops the registry when that pipe closes (stop(), or this process dying without stop()).
        self.process = subprocess.Popen(
            ["sh", "-c", _WATCHDOG, "registry-watchdog", str(config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE,
            start_new_session=True,
            cwd=self.root,
        )
        self._pool = urllib3.HTTPSConnectionPool(
            "127.0.0.1",
            self.port,
            maxsize=16,
            block=False,
            ca_certs=str(self.pki.ca_bundle),
            cert_reqs="CERT_REQUIRED",
            server_hostname=self.registry.host,
            assert_hostname=self.registry.host,
            timeout=urllib3.Timeout(connect=5, read=30),
            retries=False,
        )

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RegistryError(f"docker-registry for {self.registry.host} exited: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
            except OSError:
                time.sleep(0.02)
                continue
            try:
                answer = self.request("GET", "/v2/", admin=False)
            except urllib3.exceptions.HTTPError:
                time.sleep(0.02)
                continue
            if answer.status == 401:
                return
            raise RegistryError(
                f"docker-registry for {self.registry.host} answered /v2/ with {answer.status}"
            )
        raise RegistryError(
            f"docker-registry for {self.registry.host} did not start within {timeout:.0f} s: "
            f"{self.log_tail()}"
        )

    def log_tail(self) -> str:
        try:
            return (self.root / "registry.log").read_text(errors="replace")[-600:]
        except OSError:
            return ""

    def admin_token(self, repository: str) -> str:
        with self._lock:
            cached = self._admin_tokens.get(repository)
            if cached and cached[1] > time.monotonic():
                return cached[0]
            token = self.signer.registry_token(
                issuer=self.issuer,
                audience=self.service,
                subject="sandbox-admin",
                access=[{"type": "repository", "name": repository, "actions": ["pull", "push", "delete"]}],
                seconds=3600,
            )
            self._admin_tokens[repository] = (token, time.monotonic() + 3000)
            return token

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        repository: str | None = None,
        admin: bool = True,
    ) -> urllib3.BaseHTTPResponse:
        if self._pool is None:
            raise RegistryError(f"registry {self.registry.host} is not running")
        all_headers = {"Host": self.registry.host, **(headers or {})}
        if admin and repository is not None:
            all_headers["Authorization"] = f"Bearer {self.admin_token(repository)}"
        return self._pool.urlopen(
            method,
            path,
            body=body,
            headers=all_headers,
            redirect=False,
            assert_same_host=False,
            preload_content=True,
            retries=False,
        )

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self.process is not None:
            group = self.process.pid
            if self.process.stdin is not None:
                self.process.stdin.close()  # the watchdog stops docker-registry and exits
            try:
                os.killpg(group, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            _reap_group(group)
            self.process = None
        if getattr(self, "_log", None) is not None:
            self._log.close()

    # -- pushing -------------------------------------------------------------------------------

    def _expect(self, answer: urllib3.BaseHTTPResponse, statuses: tuple[int, ...], what: str) -> None:
        if answer.status not in statuses:
            text = answer.data.decode("utf-8", "replace")[:300]
            raise RegistryError(f"{self.registry.host}: {what} answered {answer.status}: {text}")

    def push_blob(self, repository: str, blob: Blob) -> None:
        start = self.request("POST", f"/v2/{repository}/blobs/uploads/", repository=repository)
        self._expect(start, (202,), f"starting a blob upload to {repository}")
        location = urlsplit(start.headers["Location"])
        separator = "&" if location.query else ""
        target = f"{location.path}?{location.query}{separator}{urlencode({'digest': blob.digest})}"
        done = self.request(
            "PUT",
            target,
            body=blob.data,
            repository=repository,
            headers={"Content-Type": "application/octet-stream"},
        )
        self._expect(done, (201,), f"uploading blob {blob.digest} to {repository}")

    def push_manifest(self, repository: str, reference: str, manifest: Blob) -> None:
        answer = self.request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            body=manifest.data,
            repository=repository,
            headers={"Content-Type": manifest.media_type},
        )
        self._expect(answer, (201,), f"pushing manifest {repository}:{reference}")

    def push(self, repository: str, tag: str, platforms: list[Platform]) -> str:
        image = build_image(repository, tag, platforms)
        for item in image.platforms:
            self.push_blob(repository, item.layer)
            self.push_blob(repository, item.config)
            if image.is_index:
                self.push_manifest(repository, item.manifest.digest, item.manifest)
        self.push_manifest(repository, tag, image.top)
        return image.digest

    def digest(self, repository: str, tag: str) -> str | None:
        answer = self.request(
            "HEAD",
            f"/v2/{repository}/manifests/{tag}",
            repository=repository,
            headers={"Accept": MANIFEST_ACCEPT},
        )
        if answer.status == 404:
            return None
        self._expect(answer, (200,), f"reading {repository}:{tag}")
        return str(answer.headers["Docker-Content-Digest"])

    def delete(self, repository: str, tag: str) -> str:
        digest = self.digest(repository, tag)
        if digest is None:
            raise RegistryError(f"{self.registry.host}: no image {repository}:{tag} to delete")
        answer = self.request("DELETE", f"/v2/{repository}/manifests/{digest}", repository=repository)
        self._expect(answer, (202,), f"deleting {repository}@{digest}")
        return digest
