"""A sandbox ``Network`` for a world, with one TLS front answering ``{"front": <path>}`` for the
given host names: what the network tests (faults, latency) reach through it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import urllib3

from sandbox.httpserver import Response, Server
from sandbox.network import Network
from sandbox.pki import Pki
from sandbox.world import parse


class NetworkBox:
    def __init__(self, world_yaml: str, names: Sequence[str], tmp_path: Path) -> None:
        self.world = parse(world_yaml)
        self.pki = Pki(tmp_path)
        self.network = Network(self.world, self.pki).start()
        self.front = Server(
            lambda request: Response(200, {"front": request.path}),
            cert=self.pki.issue(list(names)),
            name="test-front",
        ).start()
        for name in names:
            self.network.register(name, self.front.address)

    def get(
        self, host: str, viewpoint: str | None = None, path: str = "/v2/", timeout: float = 3.0
    ) -> urllib3.BaseHTTPResponse:
        return self.network.request("GET", f"https://{host}{path}", viewpoint=viewpoint, timeout=timeout)

    def stop(self) -> None:
        self.front.stop()
        self.network.stop()
