"""Real registry pieces for the registry client tests and the bench.

- :class:`TokenIssuer`: signs RS256 registry tokens (``x5c`` header, self-signed cert in the
  registry's ``rootcertbundle``) the way docker-registry expects.
- :class:`RegistryProcess`: a real Debian ``docker-registry`` (distribution 2.8) on 127.0.0.1, plain
  HTTP on loopback, with token auth, its own config and storage folder.
- :class:`AcrFront`: a TLS front on an ACR-like host name (served by ``sandbox.httpserver``): it
  answers ``/oauth2/exchange`` and ``/oauth2/token`` (POST refresh-token flow and GET basic /
  anonymous flow) like ACR, forwards ``/v2/`` to the registry, and can inject faults (429, 500,
  403 DENIED, redirects) and rewrite the challenge realm. Every request it sees is recorded.
- :class:`Recorder`: a TLS listener that records everything it receives (the "other host").
- :class:`Trickle`: a TLS listener that answers one byte at a time (a slow-drip registry).
- :func:`push_image`: blob upload + manifest (+ OCI index for several platforms).
"""

from __future__ import annotations

import base64
import datetime
import gzip
import hashlib
import io
import json
import os
import re
import socket
import ssl
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from sandbox.httpserver import Request, Response, Server
from sandbox.pki import Pki

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TokenIssuer:
    def __init__(self, workdir: Path, issuer: str = "pullwatch-test-issuer") -> None:
        self.issuer = issuer
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registry token signer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = workdir / "token-signer.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()

    def issue(
        self, service: str, access: list[dict[str, Any]], ttl: int = 600, subject: str = "test", **claims: Any
    ) -> str:
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "sub": subject,
            "aud": service,
            "exp": now + ttl,
            "nbf": now - 60,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
            **claims,
        }
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"x5c": [self._x5c]})

    def decode(self, token: str, service: str) -> dict[str, Any] | None:
        try:
            return dict(
                jwt.decode(
                    token, self.key.public_key(), algorithms=["RS256"], audience=service, issuer=self.issuer
                )
            )
        except jwt.PyJWTError:
            return None


class RegistryProcess:
    """``docker-registry serve`` with token auth; plain HTTP on 127.0.0.1 (fronted by TLS)."""

    def __init__(
        self,
        workdir: Path,
        *,
        realm: str,
        service: str,
        issuer: TokenIssuer,
        tls: tuple[Path, Path] | None = None,
        ca_bundle: Path | None = None,
        gogc: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.gogc = gogc  # Go's GOGC for the registry process (None: Go's default, 100)
        self.realm, self.service, self.issuer = realm, service, issuer
        self.tls = tls
        self.verify: str | bool = str(ca_bundle) if ca_bundle else True
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> RegistryProcess:
        for _ in range(5):
            self.port = free_port()
            config = self.workdir / "registry.yml"
            storage = self.workdir / "storage"
            storage.mkdir(exist_ok=True)
            config.write_text(
                json.dumps(
                    {
                        "version": 0.1,
                        "log": {"level": "error", "accesslog": {"disabled": True}},
                        "storage": {
                            "filesystem": {"rootdirectory": str(storage)},
                            "delete": {"enabled": True},
                            "cache": {"blobdescriptor": "inmemory"},
                        },
                        "http": {
                            "addr": f"127.0.0.1:{self.port}",
                            "secret": uuid.uuid4().hex,
                            **(
                                {"tls": {"certificate": str(self.tls[0]), "key": str(self.tls[1])}}
                                if self.tls
                                else {}
                            ),
                        },
                        "auth": {
                            "token": {
                                "realm": self.realm,
                                "service": self.service,
                                "issuer": self.issuer.issuer,
                                "rootcertbundle": str(self.issuer.bundle),
                            }
                        },
                    }
                )
            )
            log = open(self.workdir / "registry.log", "ab")  # noqa: SIM115 - closed in stop()
            env = {**os.environ, "GOGC": str(self.gogc)} if self.gogc else None
            self.proc = subprocess.Popen(
                ["docker-registry", "serve", str(config)], stdout=log, stderr=log, env=env
            )
            log.close()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    requests.get(f"{self.url}/v2/", timeout=1, verify=self.verify)
                    return self
                except requests.ConnectionError:
                    time.sleep(0.05)
            self.stop()
        raise RuntimeError(f"docker-registry did not start; see {self.workdir / 'registry.log'}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            self.proc = None

    def push_token(self, repo: str) -> dict[str, str]:
        token = self.issuer.issue(
            self.service, [{"type": "repository", "name": repo, "actions": ["pull", "push"]}]
        )
        return {"Authorization": f"Bearer {token}"}


# -------------------------------------------------------------------------------------------------
# Pushing images


def _layer() -> tuple[bytes, bytes]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        data = b"hello from pullwatch tests\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    uncompressed = raw.getvalue()
    return gzip.compress(uncompressed, mtime=0), uncompressed


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def upload_blob(session: requests.Session, base: str, repo: str, data: bytes, headers: dict[str, str]) -> str:
    digest = _digest(data)
    head = session.head(f"{base}/v2/{repo}/blobs/{digest}", headers=headers, timeout=10)
    if head.status_code == 200:
        return digest
    start = session.post(f"{base}/v2/{repo}/blobs/uploads/", headers=headers, timeout=10)
    start.raise_for_status()
    location = requests.compat.urljoin(base, start.headers["Location"])
    sep = "&" if "?" in location else "?"
    put = session.put(
        f"{location}{sep}digest={digest}",
        data=data,
        timeout=10,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )
    put.raise_for_status()
    return digest


def put_manifest(
    session: requests.Session,
    base: str,
    repo: str,
    reference: str,
    body: bytes,
    media: str,
    headers: dict[str, str],
) -> str:
    resp = session.put(
        f"{base}/v2/{repo}/manifests/{reference}",
        data=body,
        timeout=10,
        headers={**headers, "Content-Type": media},
    )
    if resp.status_code >= 300:
        raise RuntimeError(f"PUT manifest {repo}:{reference}: {resp.status_code} {resp.text[:300]}")
    return _digest(body)


def push_image(
    registry: RegistryProcess,
    repo: str,
    tags: list[str],
    platforms: list[tuple[str, str]],
    *,
    index: bool | None = None,
) -> str:
    """Push a tiny image for ``platforms`` under ``tags``; an OCI index when several platforms
    (or ``index=True``). Returns the digest the tags point to."""
    headers = registry.push_token(repo)
    base = registry.url
    layer_gz, layer_raw = _layer()
    with requests.Session() as s:
        s.verify = registry.verify
        s.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would replace verify
        layer = upload_blob(s, base, repo, layer_gz, headers)
        manifests = []
        for os_, arch in platforms:
            config = json.dumps(
                {
                    "architecture": arch,
                    "os": os_,
                    "rootfs": {"type": "layers", "diff_ids": [_digest(layer_raw)]},
                    "config": {},
                }
            ).encode()
            config_digest = upload_blob(s, base, repo, config, headers)
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                    "layers": [{"mediaType": OCI_LAYER, "digest": layer, "size": len(layer_gz)}],
                }
            ).encode()
            digest = put_manifest(s, base, repo, _digest(manifest), manifest, OCI_MANIFEST, headers)
            manifests.append((manifest, digest, os_, arch))
        use_index = index if index is not None else len(platforms) > 1
        if use_index:
            body = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_INDEX,
                    "manifests": [
                        {
                            "mediaType": OCI_MANIFEST,
                            "digest": d,
                            "size": len(m),
                            "platform": {"os": o, "architecture": a},
                        }
                        for m, d, o, a in manifests
                    ],
                }
            ).encode()
            media = OCI_INDEX
        else:
            body, media = manifests[0][0], OCI_MANIFEST
        digest = ""
        for tag in tags:
            digest = put_manifest(s, base, repo, tag, body, media, headers)
    return digest


# -------------------------------------------------------------------------------------------------
# The TLS front (an ACR-like login server) and the recording listener


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    host: str

    def text(self) -> str:
        return json.dumps([self.method, self.path, self.query, self.headers]) + self.body.decode("latin-1")


@dataclass
class Fault:
    method: str | None
    path: re.Pattern[str]
    respond: Callable[[Request], Response]
    times: int | None = None  # None: always


_COPY = (
    "docker-content-digest",
    "www-authenticate",
    "location",
    "link",
    "retry-after",
    "docker-distribution-api-version",
    "content-length",
)


@dataclass
class AcrFront:
    """An ACR-like login server on ``host``: /oauth2/* answered here, /v2/* forwarded to ``backend``."""

    pki: Pki
    host: str
    backend: RegistryProcess
    issuer: TokenIssuer
    entra_tokens: dict[str, str] = field(default_factory=dict)  # accepted Entra token -> audience
    users: dict[str, str] = field(default_factory=dict)  # username -> password
    public_repos: set[str] = field(default_factory=set)
    arm_audience_enabled: bool = True
    realm_override: str | None = None
    seen: list[Seen] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    untrusted_cert: bool = False

    def __post_init__(self) -> None:
        cert = self.pki.untrusted([self.host]) if self.untrusted_cert else self.pki.issue([self.host])
        self.server = Server(self.handle, cert=cert, name=self.host)
        self._lock = threading.Lock()
        self._session = requests.Session()

    def start(self) -> AcrFront:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        self._session.close()

    @property
    def port(self) -> int:
        return self.server.port

    def count(self, method: str | None = None, path: str = "") -> int:
        with self._lock:
            return sum(
                1 for s in self.seen if (method is None or s.method == method) and s.path.startswith(path)
            )

    def reset(self) -> None:
        with self._lock:
            self.seen.clear()
            self.faults.clear()

    def fault(
        self,
        method: str | None,
        path: str,
        respond: Callable[[Request], Response] | Response,
        times: int | None = None,
    ) -> None:
        fn = respond if callable(respond) else (lambda _r, resp=respond: resp)
        with self._lock:
            self.faults.append(Fault(method, re.compile(path), fn, times))

    # -- handler --
    def handle(self, request: Request) -> Response:
        with self._lock:
            self.seen.append(
                Seen(
                    request.method,
                    request.path,
                    request.query,
                    {k: str(v) for k, v in request.headers.items()},
                    request.body,
                    self.host,
                )
            )
            chosen = None
            for f in self.faults:
                if (f.method in (None, request.method)) and f.path.search(request.path) and f.times != 0:
                    if f.times is not None:
                        f.times -= 1
                    chosen = f
                    break
        if chosen is not None:
            return chosen.respond(request)
        if request.path == "/oauth2/exchange":
            return self._exchange(request)
        if request.path == "/oauth2/token":
            return self._token(request)
        return self._forward(request)

    def _error(self, status: int, code: str, message: str) -> Response:
        return Response(status, {"errors": [{"code": code, "message": message}]})

    def _exchange(self, request: Request) -> Response:
        form = request.form()
        token = (form.get("access_token") or [""])[0]
        audience = self.entra_tokens.get(token)
        if audience is None or (audience == "arm" and not self.arm_audience_enabled):
            return self._error(401, "UNAUTHORIZED", "invalid access token")
        refresh = self.issuer.issue(
            self.backend.service, [], ttl=3600, grant_type="refresh_token", subject="entra"
        )
        return Response(200, {"refresh_token": refresh})

    def _grant(self, scopes: list[str], allowed: Callable[[str], bool]) -> list[dict[str, Any]]:
        access = []
        for scope in scopes:
            for part in scope.split(" "):
                kind, _, rest = part.partition(":")
                name, _, _actions = rest.rpartition(":")
                if kind == "repository" and name and allowed(name):
                    access.append({"type": "repository", "name": name, "actions": ["pull"]})
        return access

    def _token(self, request: Request) -> Response:
        if request.method == "POST":
            form = request.form()
            refresh = (form.get("refresh_token") or [""])[0]
            if not self.issuer.decode(refresh, self.backend.service):
                return self._error(401, "UNAUTHORIZED", "invalid refresh token")
            access = self._grant(form.get("scope") or [], lambda _n: True)
            return Response(200, {"access_token": self.issuer.issue(self.backend.service, access)})
        auth = request.header("Authorization") or ""
        scopes = request.query.get("scope") or []
        if auth.lower().startswith("basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if self.users.get(user) != password:
                return self._error(401, "UNAUTHORIZED", "authentication required")
            access = self._grant(scopes, lambda _n: True)
        else:
            access = self._grant(scopes, lambda n: n in self.public_repos)
        return Response(
            200, {"access_token": self.issuer.issue(self.backend.service, access), "expires_in": 300}
        )

    def _forward(self, request: Request) -> Response:
        query = "&".join(f"{k}={v}" for k, vs in request.query.items() for v in vs)
        url = f"{self.backend.url}{request.path}" + (f"?{query}" if query else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "accept")}
        resp = self._session.request(
            request.method, url, headers=headers, data=request.body or None, timeout=10, allow_redirects=False
        )
        out = {k: v for k, v in resp.headers.items() if k.lower() in _COPY}
        challenge = out.get("WWW-Authenticate") or out.get("Www-Authenticate")
        if challenge:
            out.pop("Www-Authenticate", None)
            # like a real login server: the realm is on the host the client asked for
            realm = self.realm_override or f"https://{request.header('Host') or self.host}/oauth2/token"
            challenge = re.sub(r'realm="[^"]*"', f'realm="{realm}"', challenge)
            out["WWW-Authenticate"] = challenge
        if request.method != "HEAD":
            out.pop("Content-Length", None)
        return Response(resp.status_code, resp.content, out, content_type=resp.headers.get("Content-Type"))


@dataclass
class Recorder:
    """A TLS listener on ``host`` that records everything it receives and answers ``status``."""

    pki: Pki
    host: str
    status: int = 200
    body: Any = field(default_factory=lambda: {"token": "recorder-token", "access_token": "recorder-token"})
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.server = Server(self.handle, cert=self.pki.issue([self.host]), name=self.host)

    def handle(self, request: Request) -> Response:
        self.seen.append(
            Seen(
                request.method,
                request.path,
                request.query,
                {k: str(v) for k, v in request.headers.items()},
                request.body,
                self.host,
            )
        )
        return Response(self.status, self.body)

    def start(self) -> Recorder:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    @property
    def port(self) -> int:
        return self.server.port


@dataclass
class Trickle:
    """A TLS server on loopback that sends chosen answers one byte every ``gap`` seconds.

    ``routes`` maps (method, path prefix) to (head, body, drip) (the longest prefix wins): ``drip`` is "head" (the status line
    and headers trickle), "body" (headers at once, the body trickles) or "" (all at once). Each
    connection answers one request and closes. ``sent`` counts the bytes trickled so far.
    """

    pki: Pki
    host: str
    gap: float = 0.2
    routes: dict[tuple[str, str], tuple[bytes, bytes, str]] = field(default_factory=dict)
    sent: int = 0

    def __post_init__(self) -> None:
        cert, key = self.pki.issue([self.host])
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(cert, key)
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(32)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def start(self) -> Trickle:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, raw: socket.socket) -> None:
        try:
            with self._context.wrap_socket(raw, server_side=True) as conn:
                conn.settimeout(30)
                request = b""
                while b"\r\n\r\n" not in request and len(request) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                method, path = (part.decode() for part in request.split(b" ", 2)[:2])
                matching = [k for k in self.routes if k[0] == method and path.startswith(k[1])]
                if matching:
                    head, body, drip = self.routes[max(matching, key=lambda k: len(k[1]))]
                else:
                    head, body, drip = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n", b"", ""
                head += b"Connection: close\r\n\r\n"
                if drip == "head":
                    self._drip(conn, head + body)
                elif drip == "body":
                    conn.sendall(head)
                    self._drip(conn, body)
                else:
                    conn.sendall(head + body)
        except (OSError, ValueError):
            pass

    def _drip(self, conn: ssl.SSLSocket, data: bytes) -> None:
        for i in range(len(data)):
            if self._stop.is_set():
                return
            conn.sendall(data[i : i + 1])
            self.sent += 1
            time.sleep(self.gap)
