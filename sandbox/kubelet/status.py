"""Pod statuses and events with the messages kubelet 1.32 and containerd 1.7 write, built from what each
pull observed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sandbox.kube import KubeCluster, iso
from sandbox.kubelet.containerd import PullResult
from sandbox.kubelet.reference import ImageRef, parse_image

log = logging.getLogger("sandbox.kubelet")

# What an hour of image-pull back-off produces (10s, 20s, … capped at 300s; kubelet re-syncs in between).
HOUR_PULLS = 17
HOUR_BACKOFFS = 262


_FAILING = "failing"  # a container that cannot start: its image was not pulled
_CRASHED = "crashed"  # a container whose image was pulled but cannot run on the node (exec format error)


@dataclass(frozen=True)
class _Moment:
    """One status write: which pod, whether it shows an hour of kubelet work (``aged``) or a back-off
    rewrite (events are written only once), the pod's start and now."""

    cluster: KubeCluster
    pod: dict[str, Any]
    aged: bool
    backoff: bool
    start: float
    now: float


def _never_pulled(at: _Moment, ref: ImageRef, field_path: str, base: dict[str, Any]) -> dict[str, Any]:
    """``imagePullPolicy: Never``: never pulled, so never present on a sandbox node."""
    message = f"Container image {json.dumps(ref.with_tag)} is not present with pull policy of Never"
    if not at.backoff:
        count = HOUR_BACKOFFS if at.aged else 1
        first = at.start + 1 if at.aged else at.now
        for reason, text in (
            ("ErrImageNeverPull", message),
            ("Failed", "Error: ErrImageNeverPull"),
        ):
            at.cluster.record_event(
                at.pod,
                reason=reason,
                message=text,
                type_="Warning",
                container=field_path,
                count=count,
                first=first,
                last=at.now,
            )
    return {**base, "state": {"waiting": {"reason": "ErrImageNeverPull", "message": message}}}


def _events_started(at: _Moment, ref: ImageRef, name: str, field_path: str, result: PullResult) -> None:
    """Pulling, Pulled, Created, Started: a fresh container whose image was pulled."""
    pulled = (
        f"Successfully pulled image {json.dumps(ref.with_tag)} in "
        f"{_go_duration(result.seconds)} ({_go_duration(result.seconds)} "
        f"including waiting). Image size: {result.size} bytes."
    )
    for reason, message in (
        ("Pulling", f"Pulling image {json.dumps(ref.with_tag)}"),
        ("Pulled", pulled),
        ("Created", f"Created container: {name}"),
        ("Started", f"Started container {name}"),
    ):
        at.cluster.record_event(
            at.pod, reason=reason, message=message, container=field_path, first=at.now, last=at.now
        )


def _crash_looping(
    at: _Moment, name: str, field_path: str, pulled: dict[str, Any], cid: str
) -> dict[str, Any]:
    """A container whose binary is for another architecture: exec format error, CrashLoopBackOff."""
    meta = at.pod["metadata"]
    if not at.backoff:
        at.cluster.record_event(
            at.pod,
            reason="BackOff",
            type_="Warning",
            container=field_path,
            message=f"Back-off restarting failed container {name} in pod "
            f"{meta['name']}_{meta['namespace']}({meta['uid']})",
            count=HOUR_BACKOFFS if at.aged else 1,
            first=at.start + 5,
            last=at.now,
        )
    return {
        **pulled,
        "restartCount": 13 if at.aged else 1,
        "state": {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off 5m0s restarting failed container={name} pod={meta['name']}"
                f"_{meta['namespace']}({meta['uid']})",
            }
        },
        "lastState": {
            "terminated": {
                "exitCode": 255,
                "reason": "Error",
                "startedAt": iso(at.now - 20),
                "finishedAt": iso(at.now - 20),
                "containerID": cid,
            }
        },
    }


def _pod_status(
    at: _Moment,
    init_statuses: list[dict[str, Any]],
    main_statuses: list[dict[str, Any]],
    failing: list[str],
    crashed: list[str],
    restart: str,
) -> dict[str, Any]:
    """The pod's phase and conditions from its containers' statuses, as kubelet computes them."""
    pod = at.pod
    status = dict(pod.get("status") or {})
    status.pop("containerStatuses", None)
    status.pop("initContainerStatuses", None)
    main_names = [c["name"] for c in pod["spec"].get("containers") or []]
    init_failing = any(
        s["state"].get("waiting") and s["state"]["waiting"].get("reason") != "PodInitializing"
        for s in init_statuses
    )
    all_done = (
        not failing
        and not crashed
        and restart != "Always"
        and all("terminated" in s["state"] for s in main_statuses)
    )
    running = not failing and not crashed and not all_done
    transition = iso(at.start + 4 if at.aged else at.now)
    if all_done:
        phase = "Succeeded"
    elif failing or (crashed and not main_statuses):
        phase = "Pending"
    else:
        phase = "Running"
    if crashed and any(s["name"] in crashed for s in init_statuses):
        phase = "Pending"
    unready = [s["name"] for s in main_statuses if not s["ready"]]
    ready = running and not unready
    not_ready: dict[str, Any] = {}
    if not ready:  # the Ready and ContainersReady conditions say the same, as kubelet writes them
        not_ready["reason"] = "PodCompleted" if all_done else "ContainersNotReady"
        if not all_done:
            not_ready["message"] = f"containers with unready status: [{' '.join(unready or main_names)}]"
    conditions = [
        {
            "type": "PodReadyToStartContainers",
            "status": "True",
            "lastProbeTime": None,
            "lastTransitionTime": iso(at.start),
        },
        {
            "type": "Initialized",
            "status": "False" if init_failing else "True",
            "lastProbeTime": None,
            "lastTransitionTime": iso(at.start),
            **(
                {
                    "reason": "ContainersNotInitialized",
                    "message": "containers with incomplete status: ["
                    + " ".join(s["name"] for s in init_statuses if "waiting" in s["state"])
                    + "]",
                }
                if init_failing
                else {}
            ),
        },
        *(
            {
                "type": kind,
                "status": "True" if ready else "False",
                "lastProbeTime": None,
                "lastTransitionTime": transition,
                **not_ready,
            }
            for kind in ("Ready", "ContainersReady")
        ),
        {
            "type": "PodScheduled",
            "status": "True",
            "lastProbeTime": None,
            "lastTransitionTime": pod["metadata"]["creationTimestamp"],
        },
    ]
    status.update({"phase": phase, "conditions": conditions, "containerStatuses": main_statuses})
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    return status


class StatusWriter:
    """Writes each pod's status and events from its pulls' results (mixed into ``Kubelet``)."""

    # -- writing statuses and events ----------------------------------------------------------

    def _write_aged(
        self, cluster: KubeCluster, pod: dict[str, Any], pulls: dict[str, Future[PullResult] | Exception]
    ) -> None:
        """The pod as it looks after an hour of kubelet work (pods present when the world was built)."""
        results = {img: (p if isinstance(p, Exception) else p.result()) for img, p in pulls.items()}
        self._write(cluster, pod, results, aged=True)

    def _run_fresh(self, cluster: KubeCluster, pod: dict[str, Any]) -> None:
        try:
            created = time.time()
            cluster.record_event(
                pod,
                reason="Scheduled",
                component="default-scheduler",
                message=f"Successfully assigned {pod['metadata']['namespace']}/{pod['metadata']['name']} "
                f"to {pod['spec']['nodeName']}",
                first=created,
                last=created,
            )
            with self._lock:
                inflight = self._inflight
            pulls = self._start_pulls(cluster, pod, inflight)  # pods created together share pulls
            results = {img: (p if isinstance(p, Exception) else p.result()) for img, p in pulls.items()}
            with self._lock:
                for key, fut in list(self._inflight.items()):
                    if fut.done():
                        del self._inflight[key]
            failed = self._write(cluster, pod, results, aged=False)
            cluster.refresh_workload_status()
            if failed and not self._stopped.wait(self.backoff_delay):
                self._write(cluster, pod, results, aged=False, backoff=True)
                cluster.refresh_workload_status()
        except Exception:
            log.exception("kubelet on %s failed for pod %s", cluster.name, pod["metadata"].get("name"))

    def _write(
        self,
        cluster: KubeCluster,
        pod: dict[str, Any],
        results: dict[str, PullResult | Exception],
        aged: bool,
        backoff: bool = False,
    ) -> bool:
        """Write ``pod``'s status (and, unless this is a back-off rewrite, its events); True if a pull failed."""
        at = _Moment(
            cluster, pod, aged, backoff, _parse_ts(pod["metadata"]["creationTimestamp"]) + 1, time.time()
        )
        _, missing = self._pod_credentials(cluster, pod)
        if missing and not backoff:
            cluster.record_event(
                pod,
                reason="FailedToRetrieveImagePullSecret",
                type_="Warning",
                message=f"Unable to retrieve some image pull secrets ({', '.join(missing)}); "
                "attempting to pull the image may not succeed.",
                count=HOUR_PULLS if aged else 1,
                first=at.start,
                last=at.now - 30 if aged else at.now,
            )
        restart = pod["spec"].get("restartPolicy", "Always")
        init_statuses: list[dict[str, Any]] = []
        main_statuses: list[dict[str, Any]] = []
        blocked = False  # an init container failed: later containers wait
        failing: list[str] = []
        crashed: list[str] = []
        for kind, c in self._containers(pod):
            name = c["name"]
            target = init_statuses if kind == "init" else main_statuses
            base = {
                "name": name,
                "image": c.get("image", ""),
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "lastState": {},
            }
            if blocked:
                target.append({**base, "state": {"waiting": {"reason": "PodInitializing"}}})
                continue
            status, outcome = self._container_status(
                at, kind, c, base, results.get(c.get("image", "")), restart
            )
            target.append(status)
            if outcome == _FAILING:
                failing.append(name)
            elif outcome == _CRASHED:
                crashed.append(name)
            if outcome is not None:
                blocked = blocked or kind == "init"
        cluster.set_pod_status(pod, _pod_status(at, init_statuses, main_statuses, failing, crashed, restart))
        return bool(failing)

    def _container_status(
        self,
        at: _Moment,
        kind: str,
        c: dict[str, Any],
        base: dict[str, Any],
        result: PullResult | Exception | None,
        restart: str,
    ) -> tuple[dict[str, Any], str | None]:
        """One container's status from its image's pull, and whether it is failing, crashing or neither."""
        name, image = c["name"], c.get("image", "")
        field_path = f"spec.initContainers{{{name}}}" if kind == "init" else f"spec.containers{{{name}}}"
        if isinstance(result, Exception):
            message = f"Failed to apply default image tag {json.dumps(image)}: {result}"
            if not at.backoff:
                self._events_invalid(at.cluster, at.pod, field_path, message, at.aged, at.start, at.now)
            return {
                **base,
                "state": {"waiting": {"reason": "InvalidImageName", "message": message}},
            }, _FAILING
        ref = parse_image(image)
        if c.get("imagePullPolicy") == "Never":
            return _never_pulled(at, ref, field_path, base), _FAILING
        if result is None:  # not pulled (cannot happen: every image was pulled or refused)
            return {**base, "state": {"waiting": {"reason": "ContainerCreating"}}}, None
        if not result.ok:
            if at.aged or at.backoff:
                waiting = {
                    "reason": "ImagePullBackOff",
                    "message": self._backoff_message(at.cluster, ref, result),
                }
            else:
                waiting = {"reason": "ErrImagePull", "message": result.error}
            self._events_failed(
                at.cluster, at.pod, field_path, ref, result, at.aged, at.backoff, at.start, at.now
            )
            return {**base, "state": {"waiting": waiting}}, _FAILING
        if not at.aged and not at.backoff:
            _events_started(at, ref, name, field_path, result)
        cid = "containerd://" + hashlib.sha256(f"{at.pod['metadata']['uid']}/{name}".encode()).hexdigest()
        pulled = {**base, "image": ref.normalized, "imageID": result.repo_digest, "containerID": cid}
        if not result.platform_ok:
            return _crash_looping(at, name, field_path, pulled, cid), _CRASHED
        ran = iso(at.start + 3 if at.aged else at.now)
        if kind == "init" or restart != "Always":
            finished = {
                "exitCode": 0,
                "reason": "Completed",
                "startedAt": ran,
                "finishedAt": iso(at.start + 4 if at.aged else at.now),
                "containerID": cid,
            }
            return {**pulled, "state": {"terminated": finished}}, None
        return {**pulled, "ready": True, "started": True, "state": {"running": {"startedAt": ran}}}, None

    def _backoff_message(self, cluster: KubeCluster, ref: ImageRef, result: PullResult) -> str:
        text = f"Back-off pulling image {json.dumps(ref.with_tag)}"
        major, minor = (int(x) for x in ([*cluster.cluster.kubernetes_version.split("."), "0"][:2]))
        if (major, minor) >= (1, 32):
            text += f": ErrImagePull: {result.error}"
        return text

    def _events_failed(
        self,
        cluster: KubeCluster,
        pod: dict[str, Any],
        field_path: str,
        ref: ImageRef,
        result: PullResult,
        aged: bool,
        backoff: bool,
        start: float,
        now: float,
    ) -> None:
        quoted = json.dumps(ref.with_tag)
        pull_failed = f"Failed to pull image {quoted}: {result.error}"
        if aged:
            last_pull = now - 75
            pulls, backoffs = HOUR_PULLS, HOUR_BACKOFFS
            for reason, message, type_, count, last in (
                ("Pulling", f"Pulling image {quoted}", "Normal", pulls, last_pull),
                ("Failed", pull_failed, "Warning", pulls, last_pull),
                ("Failed", "Error: ErrImagePull", "Warning", pulls, last_pull),
                ("BackOff", f"Back-off pulling image {quoted}", "Normal", backoffs, now - 4),
                ("Failed", "Error: ImagePullBackOff", "Warning", backoffs, now - 4),
            ):
                cluster.record_event(
                    pod,
                    reason=reason,
                    message=message,
                    type_=type_,
                    container=field_path,
                    count=count,
                    first=start + 1,
                    last=last,
                )
            return
        if backoff:
            fresh = [
                ("BackOff", f"Back-off pulling image {quoted}", "Normal"),
                ("Failed", "Error: ImagePullBackOff", "Warning"),
            ]
        else:
            fresh = [
                ("Pulling", f"Pulling image {quoted}", "Normal"),
                ("Failed", pull_failed, "Warning"),
                ("Failed", "Error: ErrImagePull", "Warning"),
            ]
        for reason, message, type_ in fresh:
            cluster.record_event(
                pod, reason=reason, message=message, type_=type_, container=field_path, first=now, last=now
            )

    def _events_invalid(
        self,
        cluster: KubeCluster,
        pod: dict[str, Any],
        field_path: str,
        message: str,
        aged: bool,
        start: float,
        now: float,
    ) -> None:
        count = HOUR_BACKOFFS if aged else 1
        first = start + 1 if aged else now
        cluster.record_event(
            pod,
            reason="InspectFailed",
            message=message,
            type_="Warning",
            container=field_path,
            count=count,
            first=first,
            last=now,
        )
        cluster.record_event(
            pod,
            reason="Failed",
            message="Error: InvalidImageName",
            type_="Warning",
            container=field_path,
            count=count,
            first=first,
            last=now,
        )


def _waiting_on_pull(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    for s in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if (s.get("state") or {}).get("waiting", {}).get("reason") in ("ErrImagePull", "ImagePullBackOff"):
            return True
    return False


def _parse_ts(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _go_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.3f}".rstrip("0").rstrip(".") + "ms"
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
