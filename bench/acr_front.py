"""The bench's ACR login server: nginx in front, so that the ACR rows measure pullwatch.

A real ACR login server is one host that answers ``/oauth2/*`` itself and serves ``/v2/*`` from the
registry behind it. tests/registry_fixture.py's :class:`AcrFront` plays that in Python (a thread
per connection, each ``/v2/`` request forwarded with ``requests``): about 1.3 ms of CPU per
forwarded request, and an asyncio front after it still 0.3 ms, which on a shared 2-core machine
cost the ACR rows a third of what pullwatch itself spent (per-process CPU in the README's bench
notes). Here Debian's ``nginx-light`` terminates TLS for the ACR host name and:

- forwards ``/oauth2/*`` to :class:`AcrFront` (its ``_exchange`` / ``_token``: the same answers the
  tests get; a run sends one or two of these);
- forwards ``/v2/*`` to ``docker-registry`` on kept-alive connections, with the challenge's realm
  rewritten to ``https://<the Host the client asked for>/oauth2/token`` as AcrFront does.

Every request is counted from nginx's access log (``method path`` per line).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from registry_fixture import AcrFront, free_port

_CONFIG = """\
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log error;
events {{ worker_connections 512; }}
http {{
    log_format counted '$request_method $uri';
    access_log {root}/access.log counted;
    client_body_temp_path {root}/tmp-body;
    proxy_temp_path {root}/tmp-proxy;
    fastcgi_temp_path {root}/tmp-fastcgi;
    uwsgi_temp_path {root}/tmp-uwsgi;
    scgi_temp_path {root}/tmp-scgi;
    upstream registry {{ server 127.0.0.1:{registry_port}; keepalive 32; }}
    # The challenge's realm names the host the client asked for, as AcrFront's does: a client that
    # reached the registry as 127.0.0.1:port (the skopeo loop) asks for its token there too.
    map $upstream_http_www_authenticate $challenge {{
        '~^(?<before>.*)realm="[^"]*"(?<after>.*)$' '${{before}}realm="https://$http_host/oauth2/token"${{after}}';
        default $upstream_http_www_authenticate;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {host};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        keepalive_requests 100000;
        location /oauth2/ {{
            proxy_pass https://127.0.0.1:{login_port};
            proxy_set_header Host {host};
            proxy_ssl_verify off;
        }}
        location / {{
            proxy_pass http://registry;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host {host};
            proxy_hide_header WWW-Authenticate;
            add_header WWW-Authenticate $challenge always;
        }}
    }}
}}
"""


class NginxAcrFront:
    """``nginx`` on 127.0.0.1:``port`` for ``logic.host``: ``/oauth2/*`` to ``logic``, the rest to
    ``logic.backend`` (the registry). ``count`` / ``reset`` read its access log."""

    def __init__(self, logic: AcrFront, cert: tuple[Path, Path], workdir: Path) -> None:
        if shutil.which("nginx") is None:
            raise RuntimeError("nginx is not installed (make bench installs nginx-light with apt-get)")
        self.logic = logic
        self.cert = cert
        self.root = workdir
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_from = 0

    def start(self) -> NginxAcrFront:
        self.logic.start()
        self.root.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            self.port = free_port()
            config = self.root / "nginx.conf"
            config.write_text(
                _CONFIG.format(
                    root=self.root,
                    port=self.port,
                    host=self.logic.host,
                    cert=self.cert[0],
                    key=self.cert[1],
                    login_port=self.logic.port,
                    registry_port=self.logic.backend.port,
                )
            )
            self._proc = subprocess.Popen(
                ["nginx", "-p", str(self.root), "-e", str(self.root / "error.log"), "-c", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self._proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    self.reset()
                    return self
                except OSError:
                    time.sleep(0.05)
            self._stop_nginx()
        log = self.root / "error.log"
        last = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        raise RuntimeError(f"nginx did not start: {last[0] if last else 'no error logged'}")

    def _stop_nginx(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
            self._proc = None

    def stop(self) -> None:
        self._stop_nginx()
        self.logic.stop()

    def _lines(self) -> list[str]:
        log = self.root / "access.log"
        if not log.exists():
            return []
        with log.open("rb") as f:
            f.seek(self._log_from)
            return f.read().decode("utf-8", "replace").splitlines()

    def count(self, method: str | None = None, path: str = "") -> int:
        """Requests nginx answered since the last :meth:`reset` with ``method`` and a path starting
        with ``path`` (nginx writes each line when it has sent the answer)."""
        total = 0
        for line in self._lines():
            seen_method, _, seen_path = line.partition(" ")
            if (method is None or seen_method == method) and seen_path.startswith(path):
                total += 1
        return total

    def reset(self) -> None:
        log = self.root / "access.log"
        self._log_from = os.path.getsize(log) if log.exists() else 0
        self.logic.reset()
