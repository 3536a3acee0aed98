"""``python -m sandbox run`` / ``up``: build a world from real parts, run the product through its
Functions entry points, report (contract: docs/spec/world.md, "Output").

The product runs in this process exactly as in Azure, pointed at local endpoints by app settings
only (see :meth:`Sandbox.product_settings`): the Functions host stand-in (:mod:`sandbox.host`)
invokes ``function_app.py``'s functions, with Azurite's queue between them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sandbox import events as eg
from sandbox.azurite import Azurite
from sandbox.entra import Entra
from sandbox.host import FunctionsHost
from sandbox.metrics import RequestLog
from sandbox.network import Network
from sandbox.pki import Pki
from sandbox.rbac import Rbac
from sandbox.registry import RegistryFarm
from sandbox.sink import WebhookSink
from sandbox.world import (
    Fault,
    Platform,
    RoleAssignment,
    Step,
    World,
    WorldError,
    apply_cluster_change,
    apply_registry_change,
    apply_resource_group_delete,
    load,
)

log = logging.getLogger("sandbox.runner")

#: Time settings shortened so a `wait` of a few seconds lets every consequence of a change land.
FAST_SETTINGS = {
    "PULLWATCH_DEBOUNCE_SECONDS": "1",
    "PULLWATCH_POD_GRACE_SECONDS": "60",
    "PULLWATCH_RETRY_BASE_SECONDS": "0.2",
    "PULLWATCH_HTTP_TIMEOUT_SECONDS": "3",
    "PULLWATCH_REMINDER_HOURS": "24",
}


class Sandbox:
    """A running world. ``with Sandbox(world) as box:`` builds it and always tears it down."""

    def __init__(self, world: World, *, quiet: bool = True) -> None:
        self.world = world
        self.quiet = quiet
        self.workdir = Path(tempfile.mkdtemp(prefix="pullwatch-sandbox-"))
        self.log = RequestLog()
        self._stack: list[Any] = []
        self.host: FunctionsHost | None = None
        self._saved_env: dict[str, str | None] = {}
        self._deliveries = 0
        self._deleted_clusters: list[str] = []  # their stored findings must be forgotten

    # --- build / tear down ----------------------------------------------------------------------

    def _start(self, part: Any) -> Any:
        started = part.start()
        self._stack.append(started)
        return started

    def build(self) -> Sandbox:
        from sandbox.arm import Arm
        from sandbox.kube import KubeCluster
        from sandbox.kubelet import Kubelet

        world = self.world
        t0 = time.monotonic()
        self.pki = Pki(self.workdir)
        self.rbac = Rbac(world)
        self.entra = self._start(Entra(world, self.log, self.pki))
        self.network = self._start(Network(world, self.pki))
        self.registries = self._start(
            RegistryFarm(world, self.pki, self.network, self.entra, self.rbac, self.log, self.workdir)
        )
        self.clusters = {
            name: self._start(KubeCluster(world, name, self.pki, self.entra, self.log))
            for name in world.clusters
        }
        self.arm = self._start(
            Arm(
                world,
                self.entra,
                self.rbac,
                self.log,
                self.pki,
                kubeconfig_for=lambda name: self.clusters[name].kubeconfig(),
            )
        )
        self.kubelet = Kubelet(world, self.clusters, self.network, self.entra, self.pki, self.registries)
        self._stack.append(self.kubelet)
        self.kubelet.pull_all()
        self.sink = self._start(WebhookSink(world.webhooks))
        self.azurite = self._start(Azurite())
        self.build_seconds = time.monotonic() - t0
        self._enter_product_env()
        self.host = FunctionsHost(
            self.azurite.connection_string, self.product_settings()["PULLWATCH_AUDIT_QUEUE"]
        )
        self.log.reset()  # count only what the product sends
        return self

    def teardown(self) -> None:
        self._leave_product_env()
        if self.host is not None:
            self.host.close()
            self.host = None
        errors = []
        while self._stack:
            part = self._stack.pop()
            try:
                part.stop()
            except Exception as exc:  # keep tearing down the rest
                errors.append(f"{type(part).__name__}: {exc}")
        shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            log.warning("tear-down problems: %s", "; ".join(errors))

    def __enter__(self) -> Sandbox:
        try:
            return self.build()
        except BaseException:
            self.teardown()
            raise

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    # --- the product's settings ------------------------------------------------------------------

    def product_settings(self) -> dict[str, str]:
        settings = {
            **self.entra.env_for_app(),
            "PULLWATCH_ARM_ENDPOINT": self.arm.url,
            "PULLWATCH_GRAPH_ENDPOINT": self.arm.graph_url,
            "PULLWATCH_CA_BUNDLE": str(self.pki.ca_bundle),
            "PULLWATCH_HOSTS": json.dumps(self.network.hosts_setting()),
            "PULLWATCH_ALLOW_ADDRESSES": "127.0.0.0/8",
            "PULLWATCH_SUBSCRIPTIONS": ",".join(self.world.subscriptions),
            "PULLWATCH_CLOUD": self.world.cloud,
            "AzureWebJobsStorage": self.azurite.connection_string,
            "PULLWATCH_AUDIT_QUEUE": "pullwatch-audit",
            "PULLWATCH_STATE_TABLE": "pullwatchstate",
            "PULLWATCH_SLACK_WEBHOOK_URL": self.sink.url("slack"),
            "PULLWATCH_TEAMS_WEBHOOK_URL": self.sink.url("teams"),
            "PULLWATCH_READ_SECRETS": os.environ.get("PULLWATCH_READ_SECRETS", "true"),
            "PULLWATCH_PROBE": os.environ.get("PULLWATCH_PROBE", "false"),
            **FAST_SETTINGS,
        }
        return settings

    def _enter_product_env(self) -> None:
        # The Functions host loads function_app.py afresh after this, so its App reads these settings.
        for name, value in self.product_settings().items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def _leave_product_env(self) -> None:
        if not self._saved_env:
            return
        if self.host is not None:
            self.host.module.process_app.close()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}

    # --- driving the product ---------------------------------------------------------------------

    @property
    def functions(self) -> FunctionsHost:
        assert self.host is not None, "the sandbox is not built"
        return self.host

    def nightly(self) -> None:
        self.functions.fire_timer()
        self.functions.drain()

    def deliver(self, events: list[dict[str, Any]]) -> None:
        """Deliver events as Event Grid does: an array, and now and then the same delivery twice."""
        if not events:
            return
        self._deliveries += 1
        events = eg.as_delivered(events, self.world.event_schema)
        self.functions.deliver_event_grid(events)
        if self._deliveries % 2 == 1:
            self.functions.deliver_event_grid(events[:1])  # at-least-once: a duplicate delivery

    def settle(self, seconds: float = 0.0) -> None:
        if seconds:
            time.sleep(seconds)
        self.functions.drain()

    def open_findings(self) -> list[dict[str, Any]]:
        app = self.functions.module.process_app.get()
        ids = [c.resource_id for c in self.world.clusters.values()] + self._deleted_clusters
        return [f.to_dict() for f in app.open_findings(ids)]

    # --- world changes ---------------------------------------------------------------------------

    def change(self, name: str, args: dict[str, Any]) -> list[dict[str, Any]]:
        """Apply a timeline change to the world and its parts; returns the events Azure would emit."""
        world = self.world
        if name == "addRoleAssignment":
            assignment = RoleAssignment(
                principal=args["principal"],
                role=args["role"],
                scope=args["scope"],
                repositories=args.get("repositories"),
            )
            world.role_assignments.append(assignment)
            self.kubelet.retry_failing()  # the back-off elapses: stuck pulls are tried again
            return [eg.role_assignment_event(world, self.arm.assignment_id(assignment), delete=False)]
        if name == "removeRoleAssignment":
            gone = [
                a
                for a in world.role_assignments
                if a.principal == args["principal"]
                and a.scope == args["scope"]
                and ("role" not in args or a.role == args["role"])
            ]
            ids = [self.arm.assignment_id(a) for a in gone]
            world.role_assignments[:] = [a for a in world.role_assignments if a not in gone]
            self.kubelet.retry_failing()
            return [eg.role_assignment_event(world, rid, delete=True) for rid in ids]
        if name == "pushImage":
            reg = world.registry(args["registry"])
            repo, tag = args["image"].rsplit(":", 1)
            platforms: list[Platform] = args.get("platforms") or [Platform("linux", "amd64")]
            digest = self.registries.push_image(reg.host, repo, tag, platforms)
            reg.repositories.setdefault(repo, {})[tag] = platforms
            self.kubelet.retry_failing()
            return [eg.image_event(reg, repo, tag, digest, delete=False)] if reg.is_acr else []
        if name == "deleteImage":
            reg = world.registry(args["registry"])
            repo, tag = args["image"].rsplit(":", 1)
            digest = self.registries.delete_image(reg.host, repo, tag)
            reg.repositories.get(repo, {}).pop(tag, None)
            return [eg.image_event(reg, repo, None, digest, delete=True)] if reg.is_acr else []
        if name == "setRegistry":
            reg = apply_registry_change(world, args)
            self.kubelet.retry_failing()
            return [eg.registry_write_event(world, reg)] if reg.is_acr else []
        if name == "setCluster":
            cluster = apply_cluster_change(world, args)
            return eg.cluster_write_events(world, cluster, pools_changed="nodePools" in args)
        if name == "restartWorkload":
            self.kubelet.restart_workload(args["cluster"], args["namespace"], args["name"])
            return []
        if name == "deleteResourceGroup":
            registries, clusters = apply_resource_group_delete(world, args)
            self._deleted_clusters += [c.resource_id for c in clusters]
            for reg in registries:  # a deleted registry's login server no longer resolves
                self.network.add_fault(Fault(reg.host, "dns"))
            self.kubelet.retry_failing()
            return [eg.resource_group_delete_event(world, args["subscription"], args["name"])]
        raise WorldError(f"unknown change {name!r}")

    def run_step(self, step: Step) -> None:
        if step.kind == "audit":
            self.nightly()
        elif step.kind == "wait":
            self.settle(float(step.value))
        elif step.kind == "event":
            body = json.loads(Path(step.value).read_text())
            self.functions.deliver_event_grid(body)
            self.settle()
        else:
            name, args = step.value
            self.deliver(self.change(name, args))
            self.settle()


# --- the report ------------------------------------------------------------------------------------


def _matches(expected: dict[str, Any], finding: dict[str, Any]) -> bool:
    for key, want in expected.items():
        have = finding.get(key)
        if key == "cluster" and want is not None and have is not None and not want.startswith("/"):
            if have.rstrip("/").rsplit("/", 1)[-1].lower() != want.lower():
                return False
        elif isinstance(want, str) and isinstance(have, str) and key in ("cluster", "registry"):
            if want.lower() != have.lower():
                return False
        elif key == "root_cause" and isinstance(want, str) and ":" not in want:
            if not isinstance(have, str) or have.split(":", 1)[0] != want:  # by the root's code
                return False
        elif have != want:
            return False
    return True


def differences(world: World, findings: list[dict[str, Any]]) -> list[str]:
    """What differs from ``expect``: an expected finding not found; with an empty list, any finding."""
    if world.expect is None:
        return []
    if not world.expect:
        return [f"unexpected {f['code']} on {f.get('cluster')}: {f['message']}" for f in findings]
    out = []
    for expected in world.expect:
        if not any(_matches(expected, f) for f in findings):
            out.append("expected but not found: " + json.dumps(expected, sort_keys=True))
    return out


def run_world(path: Path, *, quiet: bool = False) -> tuple[dict[str, Any], list[str]]:
    world = load(path)
    with _quiet_logs(quiet), Sandbox(world, quiet=quiet) as box:
        _progress(
            quiet, f"world {world.name}: built in {box.build_seconds:.1f} s; initial audit (timer path)"
        )
        box.nightly()
        initial = box.open_findings()
        steps = []
        for step in world.timeline:
            _progress(quiet, f"step: {json.dumps(step.raw, default=str)}")
            box.run_step(step)
            steps.append({"step": _plain(step.raw), "findings": box.open_findings()})
        final = steps[-1]["findings"] if steps else initial
        report = {
            "world": world.name,
            "initial": {
                "findings": initial,
                "unchecked": [
                    {"cluster": f["cluster"], "registry": f["registry"], **f["evidence"]}
                    for f in initial
                    if f["code"] == "CHECK_INCOMPLETE"
                ],
            },
            "steps": steps,
            "findings": final,
            "notifications": box.sink.records,
            "requests": box.log.snapshot(),
        }
        failures = list(box.functions.failures)
    if failures:
        report["function_failures"] = failures
    return report, differences(world, final)


def keep_world_up(path: Path) -> None:
    world = load(path)
    stop = threading.Event()
    # Ctrl-C or SIGTERM at any moment (even while building) ends the wait and tears everything down.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with Sandbox(world, quiet=False) as box:
        print(f"world {world.name} is up (built in {box.build_seconds:.1f} s). Endpoints:")
        print(f"  ARM / Graph:     {box.arm.url}")
        for name, cluster in box.clusters.items():
            print(f"  kubernetes {name}: {cluster.url}")
        for host in box.world.registries:
            address = box.registries.front(host)
            print(f"  registry {host}: {address[0]}:{address[1]}")
        print("\nSettings that point pullwatch at it (export them, then run `pullwatch audit`):")
        for name, value in box.product_settings().items():
            if "WEBHOOK" in name or name == "IDENTITY_HEADER":
                value = value  # local sandbox values: not secrets of any real system
            print(f"  export {name}={json.dumps(value)}")
        print("\nPress Ctrl-C to stop.", flush=True)
        while not stop.wait(1.0):
            pass


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Platform):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _progress(quiet: bool, text: str) -> None:
    if not quiet:
        import click

        click.echo(f"· {text}", err=True)


@contextmanager
def _quiet_logs(quiet: bool) -> Iterator[None]:
    root = logging.getLogger()
    before = root.level
    if quiet:
        root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(before)
