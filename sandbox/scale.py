"""Large sandbox worlds, generated: the scale tests and benchmark rows build these.

Each generator returns world YAML text in the format of docs/spec/world.md (the same loader
parses it, so a generated world is checked like a hand-written one); :func:`scale_world` parses it
into a :class:`sandbox.world.World`. ``python -m sandbox.scale fanout 100 > world.yaml`` prints one.

- :func:`fanout_yaml` — the nightly fan-out estate: ``clusters`` small clusters (one node pool,
  one or two workloads each) spread over ``subscriptions`` subscriptions, pulling from
  ``registries`` ACRs (also spread over the subscriptions). Every kubelet holds AcrPull on exactly
  the registries its workloads use, the way a real estate is wired, so the role assignments grow
  with the clusters (not clusters x registries). The estate is healthy except for one known
  problem per ten clusters (a tag nobody pushed), so the audit has findings to store and report.
- :func:`build_time_yaml` — issue 3's build-time world: 3 clusters, 4 registries (an ACR in
  classic role-assignment mode, an ACR in ABAC mode, a private third-party registry with a
  user, Docker Hub) and 50 workloads over two node pools (amd64, arm64). Every image has both
  platforms and every pull is allowed (AcrPull on the classic ACR, an ABAC repository role on the
  other, a pull secret for the third-party registry), so the only findings are the three
  DOCKERHUB_ANONYMOUS_PULLS that anonymous Docker Hub pulls always raise.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import yaml

from sandbox.runner import Sandbox
from sandbox.world import World, parse

#: Subscription ids of generated worlds (the first is the world's default, as in world.md).
SUBSCRIPTIONS = tuple(f"{n:08x}-aaaa-4bbb-8ccc-{n:012x}" for n in range(0x5CA1E001, 0x5CA1E001 + 8))

APP_ROLES = (
    "Reader",
    "AcrPull",
    "Container Registry Repository Reader",
    "Azure Kubernetes Service Cluster User Role",
)
REPOSITORIES = ("shop/web", "shop/api", "tools/batch")
TAG = "1.0"
MISSING_TAG = "9.9-never-pushed"


def _app_assignments(subscriptions: list[str]) -> list[dict[str, Any]]:
    return [
        {"principal": "app", "role": role, "scope": f"subscription:{sub}"}
        for sub in subscriptions
        for role in APP_ROLES
    ]


def _dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=120)


def fanout_yaml(clusters: int, registries: int = 3, subscriptions: int = 2, *, broken_every: int = 10) -> str:
    """The nightly fan-out estate (see the module doc). ``broken_every=0``: no broken workload."""
    if clusters < 1 or registries < 1 or subscriptions < 1:
        raise ValueError("clusters, registries and subscriptions must each be at least 1")
    if subscriptions > len(SUBSCRIPTIONS):
        raise ValueError(f"at most {len(SUBSCRIPTIONS)} subscriptions")
    subs = list(SUBSCRIPTIONS[:subscriptions])
    acrs = [f"scaleacr{r:02d}" for r in range(registries)]
    doc: dict[str, Any] = {
        "name": f"fanout-s{subscriptions}-r{registries}-c{clusters}",
        "description": (
            f"{clusters} small clusters in {subscriptions} subscription(s) pulling from "
            f"{registries} ACR(s): the nightly fan-out at scale."
        ),
        "subscriptions": subs,
        "registries": {
            acr: {
                "subscription": subs[r % subscriptions],
                "resourceGroup": "rg-registries",
                "location": "westeurope",
                "sku": "Premium",
                "repositories": {repo: {TAG: ["linux/amd64"]} for repo in REPOSITORIES},
            }
            for r, acr in enumerate(acrs)
        },
        "clusters": {},
        "roleAssignments": _app_assignments(subs),
    }
    for c in range(clusters):
        name = f"aks-{c:03d}"
        used = [acrs[c % registries]]
        if c % 2 == 1 and registries > 1:
            used.append(acrs[(c + 1) % registries])
        workloads = []
        for i, acr in enumerate(used):
            repo = REPOSITORIES[(c + i) % len(REPOSITORIES)]
            tag = MISSING_TAG if broken_every and i == 0 and c % broken_every == broken_every - 1 else TAG
            workloads.append(
                {"kind": "Deployment", "name": f"app-{i}", "image": f"{acr}.azurecr.io/{repo}:{tag}"}
            )
        doc["clusters"][name] = {
            "subscription": subs[c % subscriptions],
            "resourceGroup": f"rg-aks-{c % 4}",
            "location": "westeurope",
            "vnet": f"vnet-{name}",
            "nodePools": [{"name": "system", "os": "linux", "arch": "amd64"}],
            "namespaces": {"apps": {"workloads": workloads}},
        }
        doc["roleAssignments"].extend(
            {"principal": f"kubelet:{name}", "role": "AcrPull", "scope": f"registry:{acr}"} for acr in used
        )
    return _dump(doc)


def build_time_yaml(workloads: int = 50) -> str:
    """Issue 3's world: 3 clusters, 4 registries of the four kinds, ``workloads`` workloads."""
    users = {"ci-bot": "scale-s3cret-4471"}
    doc: dict[str, Any] = {
        "name": f"build-time-3c-4r-{workloads}w",
        "description": "3 clusters, ACR classic + ACR ABAC + a private third-party registry + Docker Hub.",
        "registries": {
            "classicacr": {
                "resourceGroup": "rg-shared",
                "location": "westeurope",
                "sku": "Premium",
                "repositories": {
                    "shop/web": {"1.0": ["linux/amd64", "linux/arm64"]},
                    "shop/api": {"2.0": ["linux/amd64", "linux/arm64"]},
                },
            },
            "abacacr": {
                "resourceGroup": "rg-shared",
                "location": "westeurope",
                "roleAssignmentMode": "AbacRepositoryPermissions",
                "repositories": {"team-a/ledger": {"3.2": ["linux/amd64", "linux/arm64"]}},
            },
            "registry.example.com": {
                "anonymous": False,
                "users": users,
                "repositories": {"tools/agent": {"3.1": ["linux/amd64", "linux/arm64"]}},
            },
            "docker.io": {
                "anonymous": True,
                "repositories": {"library/nginx": {"1.27": ["linux/amd64", "linux/arm64"]}},
            },
        },
        "clusters": {},
        "roleAssignments": _app_assignments([SUBSCRIPTIONS[0]]),
    }
    doc["subscriptions"] = [SUBSCRIPTIONS[0]]
    images = [
        ("classicacr.azurecr.io/shop/web:1.0", None),
        ("classicacr.azurecr.io/shop/api:2.0", None),
        ("abacacr.azurecr.io/team-a/ledger:3.2", None),
        ("registry.example.com/tools/agent:3.1", "regcred"),
        ("docker.io/library/nginx:1.27", None),
    ]
    names = ["aks-east", "aks-west", "aks-north"]
    per_cluster: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for w in range(workloads):
        image, secret = images[w % len(images)]
        spec: dict[str, Any] = {"kind": "Deployment", "name": f"svc-{w:03d}", "image": image}
        if secret:
            spec["imagePullSecrets"] = [secret]
        per_cluster[names[w % len(names)]].append(spec)
    for n, specs in per_cluster.items():
        doc["clusters"][n] = {
            "resourceGroup": f"rg-{n}",
            "location": "westeurope",
            "vnet": f"vnet-{n}",
            "nodePools": [
                {"name": "system", "os": "linux", "arch": "amd64"},
                {"name": "armpool", "os": "linux", "arch": "arm64"},
            ],
            "namespaces": {
                "apps": {
                    "secrets": {
                        "regcred": {
                            "type": "kubernetes.io/dockerconfigjson",
                            "auths": {
                                "registry.example.com": {"username": "ci-bot", "password": users["ci-bot"]}
                            },
                        }
                    },
                    "workloads": specs,
                }
            },
        }
        doc["roleAssignments"].append(
            {"principal": f"kubelet:{n}", "role": "AcrPull", "scope": "registry:classicacr"}
        )
        doc["roleAssignments"].append(
            {
                "principal": f"kubelet:{n}",
                "role": "Container Registry Repository Reader",
                "scope": "registry:abacacr",
                "repositories": ["team-a/"],
            }
        )
    return _dump(doc)


def scale_world(text: str) -> World:
    """Parse generated YAML with the world loader (the same checks as a world file)."""
    return parse(text, source="generated world")


class TimedSandbox(Sandbox):
    """A :class:`Sandbox` that also times each part's start (runner.py unchanged: only the
    ``_start`` hook is wrapped). ``part_seconds`` sums by part type (``KubeCluster`` over every
    cluster); what :meth:`build` spends outside part starts — the PKI, the RBAC model and the
    simulated kubelet pulling every pod's image — is ``kubelet_and_rest``."""

    def __init__(self, world: World, *, quiet: bool = True) -> None:
        super().__init__(world, quiet=quiet)
        self.part_seconds: dict[str, float] = {}

    def _start(self, part: Any) -> Any:
        start = time.monotonic()
        try:
            return super()._start(part)
        finally:
            name = type(part).__name__
            self.part_seconds[name] = self.part_seconds.get(name, 0.0) + time.monotonic() - start

    def build_split(self) -> dict[str, float]:
        split: dict[str, float] = dict(self.part_seconds)
        split["kubelet_and_rest"] = max(0.0, self.build_seconds - sum(self.part_seconds.values()))
        return split


@dataclass
class NightlyRun:
    """What one nightly audit of a world cost and did."""

    clusters: int
    registries: int
    subscriptions: int
    build_seconds: float
    build_split: dict[str, float]
    nightly_seconds: float
    requests: dict[str, Any]
    timer_invocations: int
    worker_invocations: int
    queue_messages: int  # messages the timer put on the audit queue
    audited: int  # clusters in the stored inventory after the nightly audit
    open_findings: int
    findings_by_cluster: dict[str, list[str]] = field(default_factory=dict)  # cluster name -> codes
    failures: list[str] = field(default_factory=list)
    teardown_seconds: float = 0.0
    storage: dict[str, int] = field(default_factory=dict)  # Azurite transactions during the nightly

    @property
    def storage_transactions(self) -> int:
        return sum(self.storage.values())

    @property
    def arm(self) -> int:
        return int(self.requests["arm"])

    @property
    def graph(self) -> int:
        return int(self.requests.get("graph", 0))

    @property
    def kubernetes(self) -> int:
        return sum(self.requests["kubernetes"].values())

    @property
    def registry(self) -> int:
        return sum(self.requests["registry"].values())

    def summary(self) -> str:
        return (
            f"S={self.subscriptions} R={self.registries} C={self.clusters}: build {self.build_seconds:.1f}s, "
            f"nightly {self.nightly_seconds:.1f}s, audited {self.audited}, messages {self.queue_messages}, "
            f"ARM {self.arm}, Graph {self.graph}, Entra {self.requests['entra']}, "
            f"Kubernetes {self.kubernetes}, registry {self.registry}, storage {self.storage_transactions}, "
            f"open findings {self.open_findings}, "
            f"failures {len(self.failures)}"
        )


def run_nightly(world: World) -> NightlyRun:
    """Build ``world``, run the nightly audit through the Functions entry points (timer → Azurite
    queue → worker), and measure it; always tears the world down."""
    box = TimedSandbox(world)
    try:
        box.build()
        host = box.functions
        # Count what the timer enqueues: fire it alone, read the queue depth, then drain.
        storage_before = box.azurite.transactions()
        start = time.monotonic()
        host.fire_timer()
        queued = host.queue.get_queue_properties().approximate_message_count or 0
        host.drain(timeout=600.0)
        nightly = time.monotonic() - start
        time.sleep(0.2)  # Azurite writes its access log line after the answer
        storage_after = box.azurite.transactions()
        # the queue-depth read above is the bench's, not the product's
        storage = {k: storage_after[k] - storage_before[k] - (k == "other") for k in storage_after}
        requests = box.log.snapshot()
        app = host.module.process_app.get()
        audited = {c.id.lower() for c in app.inventory.all()}
        names = {c.resource_id.lower(): c.name for c in world.clusters.values()}
        findings = box.open_findings()
        by_cluster: dict[str, list[str]] = {}
        for finding in findings:
            name = names.get(str(finding.get("cluster")).lower(), str(finding.get("cluster")))
            by_cluster.setdefault(name, []).append(str(finding["code"]))
        run = NightlyRun(
            clusters=len(world.clusters),
            registries=len(world.registries),
            subscriptions=len(world.subscriptions),
            build_seconds=box.build_seconds,
            build_split=box.build_split(),
            nightly_seconds=nightly,
            requests=requests,
            timer_invocations=host.invocations["nightly_audit"],
            worker_invocations=host.invocations["audit_worker"],
            queue_messages=int(queued),
            audited=len(audited & {c.resource_id.lower() for c in world.clusters.values()}),
            open_findings=len(findings),
            findings_by_cluster={k: sorted(v) for k, v in sorted(by_cluster.items())},
            failures=list(host.failures),
            storage=storage,
        )
    finally:
        start = time.monotonic()
        box.teardown()
    run.teardown_seconds = time.monotonic() - start
    return run


def main(argv: list[str]) -> int:
    usage = (
        "usage: python -m sandbox.scale fanout CLUSTERS [REGISTRIES [SUBSCRIPTIONS]] | build-time [WORKLOADS]"
    )
    if not argv or argv[0] not in ("fanout", "build-time"):
        print(usage, file=sys.stderr)
        return 2
    try:
        numbers = [int(a) for a in argv[1:]]
        text = fanout_yaml(*numbers) if argv[0] == "fanout" else build_time_yaml(*numbers)
    except (TypeError, ValueError) as exc:
        print(f"{usage}\n{exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
