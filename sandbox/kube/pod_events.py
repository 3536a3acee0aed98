"""Pod statuses and ``Event`` objects as kubelet and the scheduler write them (same reason and message
aggregate into one event with a count; expired ones are not written).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sandbox.kube.resources import EVENT_TTL, iso


class EventWriter:
    """Writes pod statuses and events into ``self.store`` (mixed into ``KubeCluster``)."""

    def _scheduling_event(self, pod: dict[str, Any], created: float) -> None:
        """default-scheduler's FailedScheduling for a pod no node fits (kept fresh by its retries)."""
        if pod["spec"].get("nodeName"):
            return
        message = next(c["message"] for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
        self.record_event(
            pod,
            reason="FailedScheduling",
            message=message,
            type_="Warning",
            component="default-scheduler",
            first=created,
            last=max(created, time.time() - 30),
        )

    def set_pod_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        with self.store.lock:
            current = self.store.get("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
            if current is None or current["metadata"]["uid"] != pod["metadata"]["uid"]:
                return  # deleted meanwhile
            current["status"] = status
            self.store.touch("pods", current)

    def record_event(
        self,
        pod: dict[str, Any],
        *,
        reason: str,
        message: str,
        type_: str = "Normal",
        container: str | None = None,
        count: int = 1,
        first: float | None = None,
        last: float | None = None,
        component: str = "kubelet",
    ) -> dict[str, Any] | None:
        """An event about ``pod`` as kubelet (or the scheduler) writes it; same reason+message aggregate."""
        now = time.time()
        first = now if first is None else first
        last = now if last is None else last
        if now - last > EVENT_TTL:
            return None  # expired (kube-apiserver --event-ttl)
        meta = pod["metadata"]
        ns = meta["namespace"]
        involved: dict[str, Any] = {
            "kind": "Pod",
            "namespace": ns,
            "name": meta["name"],
            "uid": meta["uid"],
            "apiVersion": "v1",
            "resourceVersion": meta.get("resourceVersion", ""),
        }
        if container is not None:
            involved["fieldPath"] = container
        node = pod["spec"].get("nodeName", "")
        index_key = (meta["uid"], reason, message, container)
        with self.store.lock:
            known = self._event_index.get(index_key)
            ev = self.store.get("events", ns, known) if known else None
            if ev is not None:
                ev["count"] += count
                ev["lastTimestamp"] = iso(last)
                self.store.touch("events", ev)
                return ev
            self._event_seq += 1
            ev = {
                "metadata": {
                    "name": f"{meta['name']}.{int(first * 1e9) + self._event_seq:x}"[:253],
                    "namespace": ns,
                    "uid": str(uuid.uuid4()),
                    "creationTimestamp": iso(first),
                },
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "source": {
                    "component": component,
                    **({"host": node} if component == "kubelet" and node else {}),
                },
                "firstTimestamp": iso(first),
                "lastTimestamp": iso(last),
                "count": count,
                "type": type_,
                "eventTime": None,
                "reportingComponent": component,
                "reportingInstance": node if component == "kubelet" else "",
            }
            self.store.put("events", ev)
            self._event_index[index_key] = ev["metadata"]["name"]
            return ev
