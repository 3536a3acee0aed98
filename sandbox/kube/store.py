"""The object store: objects by resource and key, in etcd key order, with cached JSON per object."""

from __future__ import annotations

import threading
from typing import Any

import orjson

from sandbox.kube.resources import RESOURCES

# --- the store -------------------------------------------------------------------------------


class ObjectStore:
    """Objects by resource and ``ns/name`` key, in etcd key order, with cached JSON per object."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._objects: dict[str, dict[str, dict[str, Any]]] = {p: {} for p in RESOURCES}
        self._sorted: dict[str, list[str] | None] = {p: None for p in RESOURCES}
        self._json: dict[str, dict[str, bytes]] = {p: {} for p in RESOURCES}
        self._rv = 1000
        self.compacted_rv = 0

    @staticmethod
    def key(namespace: str | None, name: str) -> str:
        return f"{namespace}/{name}" if namespace else name

    def next_rv(self) -> str:
        with self.lock:
            self._rv += 1
            return str(self._rv)

    @property
    def rv(self) -> int:
        return self._rv

    def put(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        k = self.key(meta.get("namespace"), meta["name"])
        with self.lock:
            meta["resourceVersion"] = self.next_rv()
            table = self._objects[plural]
            if k not in table:
                self._sorted[plural] = None
            table[k] = obj
            self._json[plural].pop(k, None)
        return obj

    def touch(self, plural: str, obj: dict[str, Any]) -> None:
        """``obj`` (already stored) was changed in place: new resourceVersion, drop cached JSON."""
        self.put(plural, obj)

    def get(self, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._objects[plural].get(self.key(namespace, name))

    def delete(self, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        k = self.key(namespace, name)
        with self.lock:
            obj = self._objects[plural].pop(k, None)
            if obj is not None:
                self._sorted[plural] = None
                self._json[plural].pop(k, None)
                self.next_rv()
        return obj

    def values(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            if namespace is None:
                return list(self._objects[plural].values())
            return [o for o in self._objects[plural].values() if o["metadata"].get("namespace") == namespace]

    def sorted_keys(self, plural: str) -> list[str]:
        with self.lock:
            keys = self._sorted[plural]
            if keys is None:
                keys = sorted(self._objects[plural])
                self._sorted[plural] = keys
            return keys

    def object_json(self, plural: str, k: str) -> bytes:
        cached = self._json[plural].get(k)
        if cached is None:
            with self.lock:  # kubelet threads replace parts of objects in place
                cached = orjson.dumps(self._objects[plural][k])
            self._json[plural][k] = cached
        return cached

    def raw(self, plural: str, k: str) -> dict[str, Any] | None:
        return self._objects[plural].get(k)
