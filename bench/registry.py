"""Registry rows: checking 500 unique images on one local registry, pullwatch vs a skopeo loop.

Two real ``docker-registry`` processes with token auth hold the same 500 images (50 repositories ×
10 tags, each tag an OCI index for linux/amd64 + linux/arm64), served from a separate process:

- **ACR chain**: behind a TLS login server that answers ``/oauth2/*`` like ACR
  (tests/registry_fixture.py). pullwatch walks the ACR chain (Entra exchange, batched repository
  tokens by POST, one HEAD per image). The login server is a Python proxy, so it bounds both sides.
- **direct**: the registry serves TLS itself; its token realm is a small token service. pullwatch
  uses the Docker token flow (anonymous GET, batched scopes) with ``PULLWATCH_ALLOW_ADDRESSES``
  admitting loopback.

The baseline is a bash loop of ``skopeo inspect --raw --tls-verify=false`` over the same list
against the same server, measured in the same run.
"""

from __future__ import annotations

import ipaddress
import math
import multiprocessing
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from bench.__main__ import Row

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from registry_fixture import AcrFront, RegistryProcess, TokenIssuer, push_image  # noqa: E402

from sandbox.httpserver import Request, Response, Server  # noqa: E402
from sandbox.pki import Pki  # noqa: E402
from shared.checks.registry_steps import image_verdict  # noqa: E402
from shared.clients.registry import TOKEN_BATCH_GET, TOKEN_BATCH_POST, ImageTarget, RegistryClient  # noqa: E402
from shared.config import Settings  # noqa: E402
from shared.reference import parse_reference  # noqa: E402

ACR = "contosoacr.azurecr.io"
DIRECT_SERVICE = "registry.bench.test"
TENANT = "00000000-0000-0000-0000-0000000000aa"
ENTRA = "bench-entra-token-" + "x" * 32
REPOS, TAGS = 50, 10  # 500 unique images
TARGET_RATIO = 10.0
RUNS = 3  # pullwatch is cheap to repeat; its median is reported (skopeo runs once)


@dataclass
class Bench:
    acr_port: int  # the ACR-like login server's port on 127.0.0.1
    direct_port: int  # the TLS docker-registry's port on 127.0.0.1
    ca_bundle: str
    names: list[str]  # "repo:tag"
    conn: Connection  # to the server process

    def ask(self, *message: object) -> object:
        self.conn.send(message)
        return self.conn.recv()

    def count(self, which: str, method: str, path: str) -> int:
        answer = self.ask("count", which, method, path)
        assert isinstance(answer, int)
        return answer


def _serve(conn: Connection, workdir: str) -> None:
    """The server side, in its own process (its own GIL), as a registry is in real life."""
    root = Path(workdir)
    pki = Pki(root)
    issuer = TokenIssuer(root)
    (root / "acr").mkdir()
    (root / "direct").mkdir()
    seen_tokens: list[str] = []

    def token_service(request: Request) -> Response:
        seen_tokens.append(request.path)
        scopes = request.query.get("scope") or []
        access = [{"type": "repository", "name": s.split(":")[1], "actions": ["pull"]} for s in scopes]
        return Response(200, {"token": issuer.issue(DIRECT_SERVICE, access), "expires_in": 300})

    tokens = Server(token_service, cert=pki.issue(["127.0.0.1"]), name="token").start()
    acr_registry = RegistryProcess(
        root / "acr", realm=f"https://{ACR}/oauth2/token", service=ACR, issuer=issuer
    ).start()
    direct = RegistryProcess(
        root / "direct",
        realm=f"https://127.0.0.1:{tokens.port}/token",
        service=DIRECT_SERVICE,
        issuer=issuer,
        tls=pki.issue([DIRECT_SERVICE]),
        ca_bundle=pki.ca_bundle,
    ).start()
    front = None
    try:
        repos = [f"team{i // 10}/svc{i:02d}" for i in range(REPOS)]
        platforms = [("linux", "amd64"), ("linux", "arm64")]
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda r: push_image(acr_registry, r, [f"1.0.{t}" for t in range(TAGS)], platforms), repos
                )
            )
            list(
                pool.map(lambda r: push_image(direct, r, [f"1.0.{t}" for t in range(TAGS)], platforms), repos)
            )
        front = AcrFront(
            pki, ACR, acr_registry, issuer, entra_tokens={ENTRA: "arm"}, public_repos=set(repos)
        ).start()
        conn.send(
            (
                front.port,
                direct.port,
                str(pki.ca_bundle),
                [f"{r}:1.0.{t}" for r in repos for t in range(TAGS)],
            )
        )
        while True:
            message = conn.recv()
            if message[0] == "count" and message[1] == "acr":
                conn.send(front.count(message[2], message[3]))
            elif message[0] == "count":
                conn.send(len(seen_tokens))
            elif message[0] == "reset":
                front.reset()
                seen_tokens.clear()
                conn.send(True)
            else:
                break
    finally:
        if front is not None:
            front.stop()
        tokens.stop()
        direct.stop()
        acr_registry.stop()


@contextmanager
def _registries() -> Iterator[Bench]:
    with tempfile.TemporaryDirectory(prefix="pullwatch-bench-") as tmp:
        ours, theirs = multiprocessing.Pipe()
        process = multiprocessing.get_context("spawn").Process(target=_serve, args=(theirs, tmp), daemon=True)
        process.start()
        try:
            if not ours.poll(180):
                raise RuntimeError("the bench registries did not start")
            acr_port, direct_port, ca_bundle, names = ours.recv()
            yield Bench(acr_port, direct_port, ca_bundle, names, ours)
        finally:
            ours.send(("stop",))
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join(timeout=10)


def _skopeo_loop(images: list[str]) -> float:
    script = 'while read -r image; do skopeo inspect --raw --tls-verify=false "docker://$image" >/dev/null || exit 1; done'
    start = time.monotonic()
    subprocess.run(["bash", "-c", script], input="\n".join(images) + "\n", text=True, check=True, timeout=900)
    return time.monotonic() - start


def _measure(bench: Bench, mode: str, want_platforms: bool) -> tuple[float, list[str]]:
    bench.ask("reset")
    if mode == "acr":
        settings = Settings(
            hosts={ACR: ("127.0.0.1", bench.acr_port)},
            ca_bundle=bench.ca_bundle,
            tenant_id=TENANT,
            http_timeout=10.0,
            registry_concurrency=8,
        )
        images = [f"{ACR}/{n}" for n in bench.names]
        host = ACR
    else:
        settings = Settings(
            ca_bundle=bench.ca_bundle,
            http_timeout=10.0,
            registry_concurrency=8,
            allow_addresses=(ipaddress.ip_network("127.0.0.0/8"),),
        )
        host = f"127.0.0.1:{bench.direct_port}"
        images = [f"{host}/{n}" for n in bench.names]
    client = RegistryClient(settings, entra_token=lambda _scope: ENTRA)
    try:
        targets = [
            ImageTarget(parse_reference(i), registry_tenant=TENANT, want_platforms=want_platforms)
            for i in images
        ]
        start = time.monotonic()
        results = client.check_images(targets)
        ours = time.monotonic() - start
        counts = client.request_counts()
    finally:
        client.close()
    failures = [(r, v) for r in results if (v := image_verdict(r)) is not None]
    manifest_steps = sum(1 for r in results for s in r.steps if s.name == "manifest")
    registry_requests = counts.get("127.0.0.1" if mode == "direct" else ACR, 0)
    if mode == "acr":
        tokens = bench.count("acr", "POST", "/oauth2/token")
        batches = math.ceil(REPOS / TOKEN_BATCH_POST)
        heads = bench.count("acr", "HEAD", "/v2/")
        token_text = f"{tokens} token POST(s) (batches of <= {TOKEN_BATCH_POST} repos)"
    else:
        tokens = bench.count("direct", "GET", "/token")
        batches = math.ceil(REPOS / TOKEN_BATCH_GET)
        heads = manifest_steps
        token_text = f"{tokens} token GET(s) (batches of <= {TOKEN_BATCH_GET} repos)"
    notes = [
        f"{len(results)} unique images in {REPOS} repositories, {len(failures)} failures; "
        f"{registry_requests} requests to the registry host(s): {heads} HEAD manifest, {token_text}",
        f"one HEAD per unique image: {'yes' if heads == len(results) else 'NO'}; "
        f"token requests <= {batches} batches: {'yes' if tokens <= batches else 'NO'}",
    ]
    if failures:
        notes.append(f"first failure: {failures[0][1].code} {failures[0][1].detail}")
    return ours, notes


def _median_of(runs: int, bench: Bench, mode: str, want_platforms: bool) -> tuple[float, list[str]]:
    """pullwatch's time as the median of ``runs`` fresh clients (a new client: no cached tokens)."""
    measured = [_measure(bench, mode, want_platforms) for _ in range(runs)]
    times = sorted(t for t, _ in measured)
    median = times[len(times) // 2]
    notes = measured[-1][1] + [
        f"pullwatch runs (fresh client each): {', '.join(f'{t:.2f}s' for t, _ in measured)}"
    ]
    return median, notes


def registry_500() -> list[Row]:
    """500 unique images on one registry, existence (one HEAD each) and with platforms (+ one GET
    per distinct index), against one skopeo loop over the same list, for each setup."""
    rows = []
    with _registries() as bench:
        for mode, label in (
            ("direct", "direct TLS registry, Docker token flow"),
            ("acr", "ACR chain via Python login-server proxy"),
        ):
            existence, existence_notes = _median_of(RUNS, bench, mode, want_platforms=False)
            port = bench.direct_port if mode == "direct" else bench.acr_port
            baseline = _skopeo_loop([f"127.0.0.1:{port}/{n}" for n in bench.names])
            platforms, platforms_notes = _median_of(RUNS, bench, mode, want_platforms=True)
            what = "bash loop of `skopeo inspect --raw`, same 500 images, same server, same run"
            rows.append(
                Row(
                    f"500 images, existence ({label})",
                    existence,
                    baseline,
                    what,
                    TARGET_RATIO,
                    existence_notes,
                )
            )
            rows.append(
                Row(
                    f"500 images, + platforms ({label})",
                    platforms,
                    baseline,
                    what,
                    TARGET_RATIO,
                    platforms_notes,
                )
            )
    return rows
