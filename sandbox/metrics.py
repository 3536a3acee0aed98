"""Counts of the requests the product sends to each stand-in (the run report's ``requests``)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

KINDS = ("arm", "entra", "graph", "kubernetes", "registry")


class RequestLog:
    def __init__(self) -> None:
        self._flat: Counter[str] = Counter()
        self._keyed: dict[str, Counter[str]] = {"kubernetes": Counter(), "registry": Counter()}
        self._lock = threading.Lock()

    def count(self, kind: str, key: str | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown request kind {kind!r}")
        with self._lock:
            if kind in self._keyed:
                self._keyed[kind][key or "?"] += 1
            else:
                self._flat[kind] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "arm": self._flat["arm"],
                "entra": self._flat["entra"],
                "graph": self._flat["graph"],
                "kubernetes": dict(sorted(self._keyed["kubernetes"].items())),
                "registry": dict(sorted(self._keyed["registry"].items())),
            }

    def reset(self) -> None:
        with self._lock:
            self._flat.clear()
            for c in self._keyed.values():
                c.clear()
