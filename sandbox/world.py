"""Sandbox worlds: parse and validate the YAML format of docs/spec/world.md.

Every error names the file, the line and the path of the bad value. Defaults are the spec's.
The world is plain data: the sandbox parts read it, and ``change`` steps update it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_TENANT = "11111111-1111-1111-1111-111111111111"
DEFAULT_SUBSCRIPTION = "22222222-2222-2222-2222-222222222222"
PRINCIPAL_NAMESPACE = uuid.UUID("5a5d8d4e-6c1f-4c6a-9f7e-2b0b7f1f0a11")

FAULTS = ("dns", "timeout", "refused", "tls", "rate_limit", "server_error", "firewall")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod")
SECRET_TYPES_WITH_AUTHS = ("kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg")
ROLE_MODES = ("LegacyRegistryPermissions", "AbacRepositoryPermissions")
CHANGES = (
    "addRoleAssignment",
    "removeRoleAssignment",
    "pushImage",
    "deleteImage",
    "setRegistry",
    "setCluster",
    "restartWorkload",
    "deleteResourceGroup",
)


# A world file is read whole and turned into plain values: bounded so that a hostile file (an
# alias bomb, a 5 MB name, nesting a thousand deep) is refused quickly with one line.
MAX_FILE_BYTES = 1024 * 1024  # a world or event file
MAX_DEPTH = 32  # nesting of mappings and lists
MAX_ALIASES = 64  # YAML aliases (*name) in one file
MAX_NODES = 200_000  # values after aliases are expanded
MAX_SCALAR = 4096  # characters of one value
MAX_REPLICAS = 1000  # pods of one workload (the sandbox's kubelet really pulls for each)
MAX_POOL_NODES = 1000


class WorldError(ValueError):
    """A world that does not parse or validate; the message says where and what."""


@dataclass(frozen=True)
class Platform:
    os: str
    arch: str
    variant: str | None = None

    def __str__(self) -> str:
        return f"{self.os}/{self.arch}" + (f"/{self.variant}" if self.variant else "")


@dataclass
class Registry:
    key: str  # as written in the world
    kind: str  # "acr" | "generic" | "dockerhub"
    host: str  # login server / host
    name: str  # ACR name, or the host for others
    repositories: dict[str, dict[str, list[Platform]]]
    subscription: str = DEFAULT_SUBSCRIPTION
    resource_group: str = "rg-registries"
    location: str = "westeurope"
    sku: str = "Premium"
    tenant: str = DEFAULT_TENANT
    public_network_access: str = "Enabled"
    default_action: str = "Allow"
    ip_rules: list[str] = field(default_factory=list)
    private_endpoints: list[str] = field(default_factory=list)
    role_assignment_mode: str = "LegacyRegistryPermissions"
    anonymous_pull_enabled: bool = False
    authentication_as_arm: bool = True
    replications: list[str] = field(default_factory=list)
    anonymous: bool = False  # generic / Docker Hub: anonymous pulls allowed
    users: dict[str, str] = field(default_factory=dict)
    anonymous_rate_limit: int | None = None
    line: int = 0

    @property
    def is_acr(self) -> bool:
        return self.kind == "acr"

    @property
    def resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ContainerRegistry/registries/{self.name}"
        )


@dataclass
class Secret:
    name: str
    type: str
    auths: dict[str, dict[str, str]] | None = None
    data: dict[str, str] | None = None


@dataclass
class Workload:
    kind: str
    name: str
    image: str
    init_images: list[str] = field(default_factory=list)
    replicas: int = 1
    service_account: str = "default"
    image_pull_secrets: list[str] | None = None  # None: not set on the pod
    node_pool: str | None = None
    line: int = 0


@dataclass
class Namespace:
    name: str
    service_accounts: dict[str, list[str]] = field(default_factory=dict)  # name -> imagePullSecrets
    secrets: dict[str, Secret] = field(default_factory=dict)
    workloads: list[Workload] = field(default_factory=list)


@dataclass
class NodePool:
    name: str
    os: str = "linux"
    arch: str = "amd64"
    count: int = 1


@dataclass
class Cluster:
    name: str
    subscription: str = DEFAULT_SUBSCRIPTION
    resource_group: str = "rg-aks"
    location: str = "westeurope"
    identity: str = "managed"
    service_principal_secret_expired: bool = False
    service_principal_deleted: bool = False  # servicePrincipal only (extension): the app was deleted
    egress_ips: list[str] = field(default_factory=list)
    vnet: str | None = None
    node_pools: list[NodePool] = field(default_factory=lambda: [NodePool("system")])
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    aad: bool = False  # Entra-enabled API server (extension; default off)
    private: bool = False  # private API server unreachable from the app (extension)
    tags: dict[str, str] = field(default_factory=dict)
    kubernetes_version: str = "1.32.7"
    line: int = 0

    @property
    def resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ContainerService/managedClusters/{self.name}"
        )


@dataclass
class RoleAssignment:
    principal: str  # kubelet:<cluster> | sp:<cluster> | group:<name> | app
    role: str
    scope: str  # registry:<n> | resourceGroup:<n> | subscription[:<id>] | managementGroup:<n>
    repositories: list[str] | None = None
    line: int = 0


@dataclass
class Fault:
    host: str
    fault: str
    from_cluster: str | None = None


@dataclass
class Latency:
    host: str
    rtt: float  # seconds
    from_cluster: str | None = None


@dataclass
class Step:
    kind: str  # audit | change | event | wait
    raw: dict[str, Any]  # the entry as written
    value: Any  # audit: str; change: (name, args); event: Path; wait: seconds
    line: int = 0


@dataclass
class World:
    name: str
    path: Path | None
    description: str = ""
    tenant: str = DEFAULT_TENANT
    subscriptions: list[str] = field(default_factory=lambda: [DEFAULT_SUBSCRIPTION])
    registries: dict[str, Registry] = field(default_factory=dict)  # by host
    clusters: dict[str, Cluster] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    custom_roles: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    role_assignments: list[RoleAssignment] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    latency: list[Latency] = field(default_factory=list)
    webhooks: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"slack": {"fail": []}, "teams": {"fail": []}}
    )
    timeline: list[Step] = field(default_factory=list)
    expect: list[dict[str, Any]] | None = None
    event_schema: str = "EventGridSchema"  # how Event Grid delivers every change's events
    cloud: str = "AzureCloud"  # the Azure cloud the estate lives in (PULLWATCH_CLOUD of the product)

    @property
    def azure(self) -> SandboxCloud:
        return CLOUDS[self.cloud]

    def registry(self, name_or_host: str) -> Registry:
        """A registry by world key, ACR name or host (Docker Hub aliases included)."""
        wanted = name_or_host.lower()
        if wanted in DOCKERHUB_ALIASES:
            wanted = "docker.io"
        for reg in self.registries.values():
            if wanted in (reg.key.lower(), reg.host, reg.name.lower()):
                return reg
        raise KeyError(name_or_host)

    def principal_id(self, principal: str) -> str:
        """The object ID the sandbox gives a principal (stable for a world)."""
        return str(uuid.uuid5(PRINCIPAL_NAMESPACE, f"{self.tenant}/{principal}"))


EVENT_SCHEMAS = ("EventGridSchema", "CloudEventSchemaV1_0")  # Event Grid's deliverySchema values


@dataclass(frozen=True)
class SandboxCloud:
    """What the stand-ins of an Azure cloud answer to (the sandbox's own table, not the product's)."""

    name: str
    arm_audience: str  # ARM tokens' aud; ACR's /oauth2/exchange accepts it too
    graph_audience: str
    acr_suffix: str  # login server of an ACR named in the world without a dot


CLOUDS = {
    c.name: c
    for c in (
        SandboxCloud(
            "AzureCloud", "https://management.azure.com", "https://graph.microsoft.com", ".azurecr.io"
        ),
        SandboxCloud(
            "AzureUSGovernment",
            "https://management.usgovcloudapi.net",
            "https://graph.microsoft.us",
            ".azurecr.us",
        ),
        SandboxCloud(
            "AzureChinaCloud",
            "https://management.chinacloudapi.cn",
            "https://microsoftgraph.chinacloudapi.cn",
            ".azurecr.cn",
        ),
    )
}
DOCKERHUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")


# --- parsing ---------------------------------------------------------------------------------


class _Doc:
    """Plain values from YAML plus the line of every path, for error messages."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.lines: dict[tuple[Any, ...], int] = {}
        self._nodes = 0
        self._open: set[int] = set()  # nodes being converted (an alias back to one is a loop)
        if len(text) > MAX_FILE_BYTES:
            raise WorldError(
                f"{source}: the file is larger than {MAX_FILE_BYTES // 1024} KiB ({len(text)} characters)"
            )
        try:
            self._check_shape(text)
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise WorldError(f"{source}{where}: not valid YAML: {problem}") from None
        self.value = self._convert(node, ()) if node is not None else None

    def _check_shape(self, text: str) -> None:
        """Depth and aliases, from the parser's event stream (not recursive), before composing."""
        depth = aliases = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            line = event.start_mark.line + 1
            if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise WorldError(f"{self.source}:{line}: nested more than {MAX_DEPTH} levels deep")
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                depth -= 1
            elif isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_ALIASES:
                    raise WorldError(
                        f"{self.source}:{line}: more than {MAX_ALIASES} aliases (*{event.anchor})"
                    )

    def _convert(self, node: yaml.Node, path: tuple[Any, ...]) -> Any:
        line = node.start_mark.line + 1
        self.lines[path] = line
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise WorldError(f"{self.source}:{line}: more than {MAX_NODES} values once aliases are expanded")
        if isinstance(node, yaml.ScalarNode):
            if len(node.value) > MAX_SCALAR:
                raise self.error(path, f"value is longer than {MAX_SCALAR} characters ({len(node.value)})")
            return self._scalar(node)
        if id(node) in self._open:
            raise self.error(path, "an alias refers to a value that contains it")
        self._open.add(id(node))
        try:
            return self._collection(node, path)
        finally:
            self._open.discard(id(node))

    def _collection(self, node: yaml.Node, path: tuple[Any, ...]) -> Any:
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise WorldError(
                        f"{self.source}:{key_node.start_mark.line + 1}: "
                        f"{_fmt(path) or 'the top level'}: a key must be a plain string, not a "
                        f"{'list' if isinstance(key_node, yaml.SequenceNode) else 'mapping'}"
                    )
                if len(key_node.value) > MAX_SCALAR:
                    raise self.error(path, f"a key is longer than {MAX_SCALAR} characters")
                key = self._scalar(key_node)
                if key in out:
                    raise WorldError(
                        f"{self.source}:{key_node.start_mark.line + 1}: "
                        f"{_fmt(path)}: key {key!r} appears twice"
                    )
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                out[key] = self._convert(value_node, (*path, key))
            return out
        return [self._convert(item, (*path, i)) for i, item in enumerate(node.value)]

    @staticmethod
    def _scalar(node: yaml.Node) -> Any:
        loader = yaml.SafeLoader("")
        try:
            return loader.construct_object(node, deep=True)
        finally:
            loader.dispose()

    def line(self, path: tuple[Any, ...]) -> int:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)

    def error(self, path: tuple[Any, ...], message: str) -> WorldError:
        where = _fmt(path)
        return WorldError(f"{self.source}:{self.line(path)}: {where + ': ' if where else ''}{message}")


def _fmt(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Reader:
    def __init__(self, doc: _Doc) -> None:
        self.doc = doc
        self.tags: dict[str, set[str]] = {}  # registry host -> "repo:tag" held, along the timeline

    def mapping(
        self,
        value: Any,
        path: tuple[Any, ...],
        allowed: tuple[str, ...] | None = None,
        required: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.doc.error(path, f"expected a mapping, got {_kind(value)}")
        for key in value:
            if not isinstance(key, str):
                raise self.doc.error((*path, key), f"keys must be strings, got {key!r}")
            if allowed is not None and key not in allowed:
                raise self.doc.error(
                    (*path, key), f"unknown key {key!r} (expected one of: {', '.join(allowed)})"
                )
        for key in required:
            if key not in value:
                raise self.doc.error(path, f"missing required key {key!r}")
        return value

    def seq(self, value: Any, path: tuple[Any, ...]) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.doc.error(path, f"expected a list, got {_kind(value)}")
        return value

    def text(self, value: Any, path: tuple[Any, ...], choices: tuple[str, ...] | None = None) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.doc.error(path, f"expected a string, got {_kind(value)}")
        text = str(value)
        if choices is not None and text not in choices:
            raise self.doc.error(path, f"{text!r} is not one of: {', '.join(choices)}")
        return text

    def boolean(self, value: Any, path: tuple[Any, ...]) -> bool:
        if not isinstance(value, bool):
            raise self.doc.error(path, f"expected true or false, got {value!r}")
        return value

    def integer(self, value: Any, path: tuple[Any, ...], minimum: int = 0, maximum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.doc.error(path, f"expected an integer >= {minimum}, got {value!r}")
        if maximum is not None and value > maximum:
            raise self.doc.error(path, f"expected an integer of at most {maximum}, got {value!r}")
        return value

    def texts(self, value: Any, path: tuple[Any, ...]) -> list[str]:
        return [self.text(v, (*path, i)) for i, v in enumerate(self.seq(value, path))]


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", type(None): "nothing"}.get(type(value), repr(value))


_PLATFORM = re.compile(r"^(linux|windows)/(amd64|arm64|arm|386|ppc64le|s390x)(?:/(v[5-8]))?$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


def load(path: str | Path) -> World:
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise WorldError(f"{path}: the file is larger than {MAX_FILE_BYTES // 1024} KiB")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorldError(f"{path}: cannot read the world file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise WorldError(f"{path}: the world file is not UTF-8 text (byte {exc.start})") from None
    return parse(text, source=str(path), path=path)


def parse(text: str, source: str = "world", path: Path | None = None) -> World:
    doc = _Doc(text, source)
    r = _Reader(doc)
    top = r.mapping(
        doc.value,
        (),
        (
            "name",
            "description",
            "tenant",
            "subscriptions",
            "registries",
            "clusters",
            "groups",
            "customRoles",
            "roleAssignments",
            "faults",
            "latency",
            "webhooks",
            "timeline",
            "expect",
            "eventSchema",
            "cloud",
        ),
        required=("name",),
    )
    world = World(name=r.text(top["name"], ("name",)), path=path)
    world.description = r.text(top.get("description", ""), ("description",)) if top.get("description") else ""
    if "tenant" in top:
        world.tenant = r.text(top["tenant"], ("tenant",))
    if "cloud" in top:
        cloud = r.text(top["cloud"], ("cloud",))
        if cloud not in CLOUDS:
            raise doc.error(("cloud",), f"must be one of {', '.join(CLOUDS)}, not {cloud!r}")
        world.cloud = cloud
    if "eventSchema" in top:
        schema = r.text(top["eventSchema"], ("eventSchema",))
        if schema not in EVENT_SCHEMAS:
            raise doc.error(("eventSchema",), f"must be one of {', '.join(EVENT_SCHEMAS)}, not {schema!r}")
        world.event_schema = schema
    if "subscriptions" in top:
        subs = r.texts(top["subscriptions"], ("subscriptions",))
        if not subs:
            raise doc.error(("subscriptions",), "needs at least one subscription")
        world.subscriptions = subs

    for key, spec in r.mapping(top.get("registries"), ("registries",)).items():
        reg = _registry(r, world, key, spec)
        if reg.host in world.registries:
            raise doc.error(("registries", key), f"registry host {reg.host} is defined twice")
        world.registries[reg.host] = reg

    for name, spec in r.mapping(top.get("groups"), ("groups",)).items():
        world.groups[name] = r.texts(spec, ("groups", name))

    for name, spec in r.mapping(top.get("customRoles"), ("customRoles",)).items():
        p: tuple[Any, ...] = ("customRoles", name)
        m = r.mapping(spec, p, ("actions", "notActions", "dataActions", "notDataActions"))
        world.custom_roles[name] = {
            k: r.texts(m.get(k), (*p, k)) for k in ("actions", "notActions", "dataActions", "notDataActions")
        }

    for name, spec in r.mapping(top.get("clusters"), ("clusters",)).items():
        world.clusters[name] = _cluster(r, world, name, spec)

    for i, spec in enumerate(r.seq(top.get("roleAssignments"), ("roleAssignments",))):
        world.role_assignments.append(_assignment(r, world, ("roleAssignments", i), spec))

    for i, spec in enumerate(r.seq(top.get("faults"), ("faults",))):
        p = ("faults", i)
        m = r.mapping(spec, p, ("host", "fault", "from"), required=("host", "fault"))
        fault = Fault(
            host=r.text(m["host"], (*p, "host")).lower(), fault=r.text(m["fault"], (*p, "fault"), FAULTS)
        )
        if "from" in m:
            fault.from_cluster = r.text(m["from"], (*p, "from"))
            if fault.from_cluster not in world.clusters:
                raise doc.error((*p, "from"), f"no cluster named {fault.from_cluster!r}")
        if fault.host in DOCKERHUB_ALIASES:
            fault.host = "docker.io"
        world.faults.append(fault)

    world.latency = _latency(r, world, top.get("latency"))

    if "webhooks" in top:
        hooks = r.mapping(top["webhooks"], ("webhooks",), ("slack", "teams"))
        world.webhooks = {}
        for sink, spec in hooks.items():
            m = r.mapping(spec, ("webhooks", sink), ("fail", "down"))
            fails: list[int | str] = []
            for j, v in enumerate(r.seq(m.get("fail"), ("webhooks", sink, "fail"))):
                if isinstance(v, int) and not isinstance(v, bool):
                    fails.append(v)
                else:
                    fails.append(r.text(v, ("webhooks", sink, "fail", j)))
            world.webhooks[sink] = {
                "fail": fails,
                "down": r.boolean(m["down"], ("webhooks", sink, "down")) if "down" in m else False,
            }

    for i, spec in enumerate(r.seq(top.get("timeline"), ("timeline",))):
        world.timeline.append(_step(r, world, ("timeline", i), spec))

    if "expect" in top:
        exp = r.mapping(top["expect"], ("expect",), ("findings",))
        world.expect = []
        from_fields = (
            "code",
            "severity",
            "cluster",
            "registry",
            "image",
            "namespace",
            "workload",
            "node_pool",
            "cause",
            "root_cause",
        )
        for i, spec in enumerate(r.seq(exp.get("findings"), ("expect", "findings"))):
            m = r.mapping(spec, ("expect", "findings", i), from_fields, required=("code",))
            world.expect.append({k: (None if v is None else str(v)) for k, v in m.items()})
    return world


_RTT = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s)$")


def _latency(r: _Reader, world: World, value: Any) -> list[Latency]:
    """``latency: [{host: H, rtt: 30ms, from: CLUSTER}]``: the round-trip time to a host."""
    rules = []
    for i, spec in enumerate(r.seq(value, ("latency",))):
        p = ("latency", i)
        m = r.mapping(spec, p, ("host", "rtt", "from"), required=("host", "rtt"))
        host = r.text(m["host"], (*p, "host")).lower()
        match = _RTT.match(str(m["rtt"]).strip())
        if match is None or isinstance(m["rtt"], bool):
            raise r.doc.error(
                (*p, "rtt"), f"expected a round-trip time such as 30ms or 0.08s, got {m['rtt']!r}"
            )
        rtt = float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)
        if rtt > 10:
            raise r.doc.error((*p, "rtt"), f"a round-trip time of at most 10s, got {m['rtt']!r}")
        rule = Latency("docker.io" if host in DOCKERHUB_ALIASES else host, rtt)
        if "from" in m:
            rule.from_cluster = r.text(m["from"], (*p, "from"))
            if rule.from_cluster not in world.clusters:
                raise r.doc.error((*p, "from"), f"no cluster named {rule.from_cluster!r}")
        rules.append(rule)
    return rules


_REG_ACR_KEYS = (
    "subscription",
    "resourceGroup",
    "location",
    "sku",
    "tenant",
    "publicNetworkAccess",
    "networkRuleSet",
    "privateEndpoints",
    "roleAssignmentMode",
    "anonymousPullEnabled",
    "authenticationAsArm",
    "replications",
    "repositories",
)
_REG_OTHER_KEYS = ("anonymous", "users", "repositories", "anonymousRateLimit")


def _registry(r: _Reader, world: World, key: str, spec: Any) -> Registry:
    p: tuple[Any, ...] = ("registries", key)
    line = r.doc.line(p)
    if "." not in key:
        if not re.fullmatch(r"[a-zA-Z0-9]{5,50}", key):
            raise r.doc.error(p, f"ACR name {key!r} must be 5-50 letters or digits")
        m = r.mapping(spec, p, _REG_ACR_KEYS)
        reg = Registry(
            key=key,
            kind="acr",
            host=f"{key.lower()}{world.azure.acr_suffix}",
            name=key,
            repositories=_repositories(r, m.get("repositories"), (*p, "repositories")),
            tenant=world.tenant,
            subscription=world.subscriptions[0],
            line=line,
        )
        _apply_acr(r, world, reg, m, p)
        return reg
    host = key.lower()
    kind = "generic"
    if host in DOCKERHUB_ALIASES:
        host, kind = "docker.io", "dockerhub"
    m = r.mapping(spec, p, _REG_OTHER_KEYS)
    reg = Registry(
        key=key,
        kind=kind,
        host=host,
        name=host,
        repositories=_repositories(r, m.get("repositories"), (*p, "repositories")),
        anonymous=kind == "dockerhub",
        line=line,
    )
    if "anonymous" in m:
        reg.anonymous = r.boolean(m["anonymous"], (*p, "anonymous"))
    if "users" in m:
        users = r.mapping(m["users"], (*p, "users"))
        reg.users = {u: r.text(pw, (*p, "users", u)) for u, pw in users.items()}
    if "anonymousRateLimit" in m:
        reg.anonymous_rate_limit = r.integer(m["anonymousRateLimit"], (*p, "anonymousRateLimit"))
    return reg


def _apply_acr(r: _Reader, world: World, reg: Registry, m: dict[str, Any], p: tuple[Any, ...]) -> None:
    """Apply ACR keys (used at load and by setRegistry)."""
    simple: dict[str, tuple[str, Callable[..., Any]]] = {
        "subscription": ("subscription", r.text),
        "resourceGroup": ("resource_group", r.text),
        "location": ("location", r.text),
        "tenant": ("tenant", r.text),
    }
    for k, (attr, fn) in simple.items():
        if k in m:
            setattr(reg, attr, fn(m[k], (*p, k)))
    if "sku" in m:
        reg.sku = r.text(m["sku"], (*p, "sku"), ("Basic", "Standard", "Premium"))
    if "publicNetworkAccess" in m:
        reg.public_network_access = r.text(
            m["publicNetworkAccess"], (*p, "publicNetworkAccess"), ("Enabled", "Disabled")
        )
    if "networkRuleSet" in m:
        q = (*p, "networkRuleSet")
        nrs = r.mapping(m["networkRuleSet"], q, ("defaultAction", "ipRules"))
        if "defaultAction" in nrs:
            reg.default_action = r.text(nrs["defaultAction"], (*q, "defaultAction"), ("Allow", "Deny"))
        if "ipRules" in nrs:
            reg.ip_rules = r.texts(nrs["ipRules"], (*q, "ipRules"))
    if "privateEndpoints" in m:
        reg.private_endpoints = r.texts(m["privateEndpoints"], (*p, "privateEndpoints"))
    if "roleAssignmentMode" in m:
        reg.role_assignment_mode = r.text(m["roleAssignmentMode"], (*p, "roleAssignmentMode"), ROLE_MODES)
    if "anonymousPullEnabled" in m:
        reg.anonymous_pull_enabled = r.boolean(m["anonymousPullEnabled"], (*p, "anonymousPullEnabled"))
    if "authenticationAsArm" in m:
        reg.authentication_as_arm = r.boolean(m["authenticationAsArm"], (*p, "authenticationAsArm"))
    if "replications" in m:
        reg.replications = r.texts(m["replications"], (*p, "replications"))
    if "subscription" in m and reg.subscription not in world.subscriptions:
        raise r.doc.error((*p, "subscription"), f"subscription {reg.subscription} is not in 'subscriptions'")


def _repositories(r: _Reader, value: Any, p: tuple[Any, ...]) -> dict[str, dict[str, list[Platform]]]:
    out: dict[str, dict[str, list[Platform]]] = {}
    for repo, tags in r.mapping(value, p).items():
        if not re.fullmatch(r"[a-z0-9]+(?:[._-][a-z0-9]+|__)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+|__)*)*", repo):
            raise r.doc.error((*p, repo), f"repository name {repo!r} is not valid (lower case, / separated)")
        out[repo] = {}
        for tag, platforms in r.mapping(tags, (*p, repo)).items():
            tag = str(tag)
            if not _TAG.match(tag):
                raise r.doc.error((*p, repo, tag), f"tag {tag!r} is not valid")
            out[repo][tag] = _platforms(r, platforms, (*p, repo, tag))
    return out


def _platforms(r: _Reader, value: Any, p: tuple[Any, ...]) -> list[Platform]:
    out = []
    items = r.seq(value, p) or ["linux/amd64"]
    for i, item in enumerate(items):
        text = r.text(item, (*p, i))
        m = _PLATFORM.match(text)
        if not m:
            raise r.doc.error((*p, i), f"platform {text!r} is not os/arch (e.g. linux/amd64, linux/arm64)")
        out.append(Platform(m.group(1), m.group(2), m.group(3)))
    return out


_CLUSTER_KEYS = (
    "subscription",
    "resourceGroup",
    "location",
    "identity",
    "servicePrincipalSecretExpired",
    "servicePrincipalDeleted",
    "egressIPs",
    "vnet",
    "nodePools",
    "namespaces",
    "aad",
    "private",
    "tags",
    "kubernetesVersion",
)


def _cluster(r: _Reader, world: World, name: str, spec: Any) -> Cluster:
    p: tuple[Any, ...] = ("clusters", name)
    m = r.mapping(spec, p, _CLUSTER_KEYS)
    c = Cluster(name=name, subscription=world.subscriptions[0], line=r.doc.line(p))
    _apply_cluster(r, world, c, m, p)
    return c


def _apply_cluster(r: _Reader, world: World, c: Cluster, m: dict[str, Any], p: tuple[Any, ...]) -> None:
    if "subscription" in m:
        c.subscription = r.text(m["subscription"], (*p, "subscription"))
        if c.subscription not in world.subscriptions:
            raise r.doc.error(
                (*p, "subscription"), f"subscription {c.subscription} is not in 'subscriptions'"
            )
    for k, attr in (
        ("resourceGroup", "resource_group"),
        ("location", "location"),
        ("vnet", "vnet"),
        ("kubernetesVersion", "kubernetes_version"),
    ):
        if k in m:
            setattr(c, attr, r.text(m[k], (*p, k)))
    if "identity" in m:
        c.identity = r.text(m["identity"], (*p, "identity"), ("managed", "servicePrincipal"))
    for k, attr in (
        ("servicePrincipalSecretExpired", "service_principal_secret_expired"),
        ("servicePrincipalDeleted", "service_principal_deleted"),
        ("aad", "aad"),
        ("private", "private"),
    ):
        if k in m:
            setattr(c, attr, r.boolean(m[k], (*p, k)))
    if "egressIPs" in m:
        c.egress_ips = r.texts(m["egressIPs"], (*p, "egressIPs"))
    if "tags" in m:
        c.tags = {k: r.text(v, (*p, "tags", k)) for k, v in r.mapping(m["tags"], (*p, "tags")).items()}
    if "nodePools" in m:
        pools = []
        for i, spec in enumerate(r.seq(m["nodePools"], (*p, "nodePools"))):
            q = (*p, "nodePools", i)
            pm = r.mapping(spec, q, ("name", "os", "arch", "count"), required=("name",))
            pools.append(
                NodePool(
                    name=r.text(pm["name"], (*q, "name")),
                    os=r.text(pm.get("os", "linux"), (*q, "os"), ("linux", "windows")),
                    arch=r.text(pm.get("arch", "amd64"), (*q, "arch"), ("amd64", "arm64")),
                    count=r.integer(pm.get("count", 1), (*q, "count"), 1, MAX_POOL_NODES),
                )
            )
        if not pools:
            raise r.doc.error((*p, "nodePools"), "a cluster needs at least one node pool")
        c.node_pools = pools
    if "namespaces" in m:
        c.namespaces = {}
        for ns_name, spec in r.mapping(m["namespaces"], (*p, "namespaces")).items():
            c.namespaces[ns_name] = _namespace(r, c, ns_name, spec, (*p, "namespaces", ns_name))


def _namespace(r: _Reader, c: Cluster, name: str, spec: Any, p: tuple[Any, ...]) -> Namespace:
    m = r.mapping(spec, p, ("serviceAccounts", "secrets", "workloads"))
    ns = Namespace(name=name)
    for sa, sa_spec in r.mapping(m.get("serviceAccounts"), (*p, "serviceAccounts")).items():
        q = (*p, "serviceAccounts", sa)
        sm = r.mapping(sa_spec, q, ("imagePullSecrets",))
        ns.service_accounts[sa] = r.texts(sm.get("imagePullSecrets"), (*q, "imagePullSecrets"))
    ns.service_accounts.setdefault("default", [])
    for sname, s_spec in r.mapping(m.get("secrets"), (*p, "secrets")).items():
        q = (*p, "secrets", sname)
        sm = r.mapping(s_spec, q, ("type", "auths", "data"), required=("type",))
        secret = Secret(name=sname, type=r.text(sm["type"], (*q, "type")))
        if "auths" in sm:
            if secret.type not in SECRET_TYPES_WITH_AUTHS:
                raise r.doc.error(
                    (*q, "auths"), f"'auths' needs a type of {' or '.join(SECRET_TYPES_WITH_AUTHS)}"
                )
            secret.auths = {}
            for host, entry in r.mapping(sm["auths"], (*q, "auths")).items():
                em = r.mapping(entry, (*q, "auths", host), ("username", "password", "auth", "email"))
                secret.auths[host] = {k: r.text(v, (*q, "auths", host, k)) for k, v in em.items()}
        if "data" in sm:
            dm = r.mapping(sm["data"], (*q, "data"))
            secret.data = {k: r.text(v, (*q, "data", k)) for k, v in dm.items()}
        ns.secrets[sname] = secret
    pools = {np.name for np in c.node_pools}
    seen: set[tuple[str, str]] = set()
    for i, w_spec in enumerate(r.seq(m.get("workloads"), (*p, "workloads"))):
        q = (*p, "workloads", i)
        wm = r.mapping(
            w_spec,
            q,
            (
                "kind",
                "name",
                "image",
                "initImages",
                "replicas",
                "serviceAccount",
                "imagePullSecrets",
                "nodePool",
            ),
            required=("kind", "name", "image"),
        )
        w = Workload(
            kind=r.text(wm["kind"], (*q, "kind"), WORKLOAD_KINDS),
            name=r.text(wm["name"], (*q, "name")),
            image=r.text(wm["image"], (*q, "image")),
            line=r.doc.line(q),
        )
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", w.name) or len(w.name) > 52:
            raise r.doc.error((*q, "name"), f"workload name {w.name!r} is not a valid Kubernetes name")
        if (w.kind, w.name) in seen:
            raise r.doc.error((*q, "name"), f"{w.kind}/{w.name} is defined twice in namespace {name}")
        seen.add((w.kind, w.name))
        w.init_images = r.texts(wm.get("initImages"), (*q, "initImages"))
        if "replicas" in wm:
            w.replicas = r.integer(wm["replicas"], (*q, "replicas"), 0, MAX_REPLICAS)
        if "serviceAccount" in wm:
            w.service_account = r.text(wm["serviceAccount"], (*q, "serviceAccount"))
        if "imagePullSecrets" in wm:
            w.image_pull_secrets = r.texts(wm["imagePullSecrets"], (*q, "imagePullSecrets"))
        if "nodePool" in wm:
            w.node_pool = r.text(wm["nodePool"], (*q, "nodePool"))
            if w.node_pool not in pools:
                raise r.doc.error((*q, "nodePool"), f"cluster {c.name} has no node pool {w.node_pool!r}")
        ns.workloads.append(w)
    return ns


_PRINCIPAL = re.compile(r"^(kubelet|sp|group):(.+)$|^app$")
_SCOPE = re.compile(r"^(registry|resourceGroup|managementGroup):(.+)$|^subscription(?::(.+))?$")


def _assignment(r: _Reader, world: World, p: tuple[Any, ...], spec: Any) -> RoleAssignment:
    m = r.mapping(
        spec, p, ("principal", "role", "scope", "repositories"), required=("principal", "role", "scope")
    )
    a = RoleAssignment(
        principal=r.text(m["principal"], (*p, "principal")),
        role=r.text(m["role"], (*p, "role")),
        scope=r.text(m["scope"], (*p, "scope")),
        line=r.doc.line(p),
    )
    check_principal(world, a.principal, lambda msg: r.doc.error((*p, "principal"), msg))
    check_scope(world, a.scope, lambda msg: r.doc.error((*p, "scope"), msg))
    if "repositories" in m:
        a.repositories = r.texts(m["repositories"], (*p, "repositories"))
    return a


def check_principal(world: World, principal: str, error: Callable[[str], WorldError]) -> None:
    pm = _PRINCIPAL.match(principal)
    if not pm:
        raise error(f"principal {principal!r} is not kubelet:<cluster>, sp:<cluster>, group:<name> or app")
    kind, target = pm.group(1), pm.group(2)
    if kind in ("kubelet", "sp") and target not in world.clusters:
        raise error(f"no cluster named {target!r}")
    if kind == "group" and target not in world.groups:
        raise error(f"no group named {target!r}")


def check_scope(world: World, scope: str, error: Callable[[str], WorldError]) -> None:
    sm = _SCOPE.match(scope)
    if not sm:
        raise error(
            f"scope {scope!r} is not registry:<name>, resourceGroup:<name>, subscription[:<id>] "
            "or managementGroup:<name>"
        )
    if sm.group(1) == "registry":
        try:
            world.registry(sm.group(2))
        except KeyError:
            raise error(f"no registry named {sm.group(2)!r}") from None
    if sm.group(3) and sm.group(3) not in world.subscriptions:
        raise error(f"subscription {sm.group(3)} is not in 'subscriptions'")


def _step(r: _Reader, world: World, p: tuple[Any, ...], spec: Any) -> Step:
    m = r.mapping(spec, p, ("audit", "change", "event", "wait"))
    if len(m) != 1:
        raise r.doc.error(p, "a timeline entry has exactly one of: audit, change, event, wait")
    kind, value = next(iter(m.items()))
    line = r.doc.line(p)
    if kind == "audit":
        return Step("audit", m, r.text(value, (*p, "audit"), ("nightly",)), line)
    if kind == "wait":
        text = r.text(value, (*p, "wait"))
        wm = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|m)?", text)
        if not wm:
            raise r.doc.error((*p, "wait"), f"{text!r} is not a duration like 5s or 500ms")
        seconds = float(wm.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[wm.group(2)]
        return Step("wait", m, seconds, line)
    if kind == "event":
        em = r.mapping(value, (*p, "event"), ("file",), required=("file",))
        rel = Path(r.text(em["file"], (*p, "event", "file")))
        base = world.path.parent if world.path else Path.cwd()
        target = (base / rel).resolve()
        if not target.is_file():
            raise r.doc.error((*p, "event", "file"), f"no event file at {target}")
        _check_event_file(r, (*p, "event", "file"), target)
        return Step("event", m, target, line)
    cm = r.mapping(value, (*p, "change"), CHANGES)
    if len(cm) != 1:
        raise r.doc.error((*p, "change"), f"a change has exactly one of: {', '.join(CHANGES)}")
    name, args = next(iter(cm.items()))
    q = (*p, "change", name)
    return Step("change", m, (name, _change_args(r, world, name, args, q)), line)


def _check_event_file(r: _Reader, path: tuple[Any, ...], target: Path) -> None:
    """An event file is a JSON delivery (one event or an array), bounded like a world file."""
    if target.stat().st_size > MAX_FILE_BYTES:
        raise r.doc.error(path, f"{target.name} is larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        body = json.loads(target.read_bytes())
    except UnicodeDecodeError:
        raise r.doc.error(path, f"{target.name} is not JSON: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise r.doc.error(path, f"{target.name} is not JSON: {exc.msg} (its line {exc.lineno})") from None
    except RecursionError:
        raise r.doc.error(path, f"{target.name} is not JSON: nested too deeply") from None
    if not isinstance(body, list | dict):
        raise r.doc.error(
            path, f"{target.name} holds {type(body).__name__}, not an event or an array of events"
        )


def _change_args(r: _Reader, world: World, name: str, args: Any, q: tuple[Any, ...]) -> dict[str, Any]:
    if name in ("addRoleAssignment", "removeRoleAssignment"):
        required = ("principal", "role", "scope") if name == "addRoleAssignment" else ("principal", "scope")
        m = r.mapping(args, q, ("principal", "role", "scope", "repositories"), required=required)
        check_principal(
            world, r.text(m["principal"], (*q, "principal")), lambda msg: r.doc.error((*q, "principal"), msg)
        )
        check_scope(world, r.text(m["scope"], (*q, "scope")), lambda msg: r.doc.error((*q, "scope"), msg))
        out = {k: (r.texts(v, (*q, k)) if k == "repositories" else r.text(v, (*q, k))) for k, v in m.items()}
        return out
    if name in ("pushImage", "deleteImage"):
        keys = ("registry", "image", "platforms") if name == "pushImage" else ("registry", "image")
        m = r.mapping(args, q, keys, required=("registry", "image"))
        reg_name = r.text(m["registry"], (*q, "registry"))
        try:
            world.registry(reg_name)
        except KeyError:
            raise r.doc.error((*q, "registry"), f"no registry named {reg_name!r}") from None
        image = r.text(m["image"], (*q, "image"))
        if ":" not in image:
            raise r.doc.error((*q, "image"), f"{image!r} is not repo:tag")
        out2: dict[str, Any] = {"registry": reg_name, "image": image}
        # what the registry holds at this point of the timeline (earlier pushes and deletes applied)
        held = r.tags.setdefault(
            world.registry(reg_name).host,
            {f"{repo}:{tag}" for repo, tags in world.registry(reg_name).repositories.items() for tag in tags},
        )
        if name == "pushImage":
            out2["platforms"] = _platforms(r, m.get("platforms"), (*q, "platforms"))
            held.add(image)
        elif image not in held:
            raise r.doc.error((*q, "image"), f"registry {reg_name} holds no image {image!r} at this step")
        else:
            held.discard(image)
        return out2
    if name == "setRegistry":
        m = r.mapping(args, q, ("name", *_REG_ACR_KEYS, *_REG_OTHER_KEYS), required=("name",))
        reg_name = r.text(m["name"], (*q, "name"))
        try:
            world.registry(reg_name)
        except KeyError:
            raise r.doc.error((*q, "name"), f"no registry named {reg_name!r}") from None
        # Validate the values now, on a scratch copy, so a bad change fails at load time.
        import copy

        scratch = copy.deepcopy(world.registry(reg_name))
        rest = {k: v for k, v in m.items() if k != "name"}
        if scratch.is_acr:
            r.mapping(rest, q, _REG_ACR_KEYS)
            _apply_acr(r, world, scratch, rest, q)
        else:
            r.mapping(rest, q, _REG_OTHER_KEYS)
        return dict(m)
    if name == "setCluster":
        m = r.mapping(args, q, ("name", *_CLUSTER_KEYS), required=("name",))
        cname = r.text(m["name"], (*q, "name"))
        if cname not in world.clusters:
            raise r.doc.error((*q, "name"), f"no cluster named {cname!r}")
        import copy

        _apply_cluster(
            r, world, copy.deepcopy(world.clusters[cname]), {k: v for k, v in m.items() if k != "name"}, q
        )
        return dict(m)
    if name == "deleteResourceGroup":
        m = r.mapping(args, q, ("name", "subscription"), required=("name",))
        out3 = {k: r.text(v, (*q, k)) for k, v in m.items()}
        out3.setdefault("subscription", world.subscriptions[0])
        if not any(_in_group(x, out3) for x in (*world.registries.values(), *world.clusters.values())):
            raise r.doc.error((*q, "name"), f"no registry or cluster in resource group {out3['name']!r}")
        return out3
    m = r.mapping(args, q, ("cluster", "namespace", "name"), required=("cluster", "namespace", "name"))
    cname = r.text(m["cluster"], (*q, "cluster"))
    if cname not in world.clusters:
        raise r.doc.error((*q, "cluster"), f"no cluster named {cname!r}")
    out3 = {k: r.text(v, (*q, k)) for k, v in m.items()}
    namespace = world.clusters[cname].namespaces.get(out3["namespace"])
    if namespace is None:
        raise r.doc.error((*q, "namespace"), f"cluster {cname} has no namespace {out3['namespace']!r}")
    if not any(w.name == out3["name"] for w in namespace.workloads):
        raise r.doc.error(
            (*q, "name"), f"namespace {out3['namespace']} of {cname} has no workload {out3['name']!r}"
        )
    return out3


def _in_group(thing: Registry | Cluster, args: dict[str, Any]) -> bool:
    return (
        thing.subscription.lower() == str(args["subscription"]).lower()
        and thing.resource_group.lower() == str(args["name"]).lower()
    )


def apply_resource_group_delete(world: World, args: dict[str, Any]) -> tuple[list[Registry], list[Cluster]]:
    """Delete a resource group and what it holds (registries, clusters, and the role assignments on
    them or by their identities, as ARM does); returns what was removed."""
    registries = [reg for reg in world.registries.values() if reg.is_acr and _in_group(reg, args)]
    clusters = [c for c in world.clusters.values() if _in_group(c, args)]
    for reg in registries:
        del world.registries[reg.host]
    for cluster in clusters:
        del world.clusters[cluster.name]
    gone_scopes = {f"registry:{reg.key}" for reg in registries} | {
        f"registry:{reg.name}" for reg in registries
    }
    gone_scopes.add(f"resourceGroup:{args['name']}")
    gone_principals = {f"{kind}:{c.name}" for c in clusters for kind in ("kubelet", "sp")}
    world.role_assignments[:] = [
        a for a in world.role_assignments if a.scope not in gone_scopes and a.principal not in gone_principals
    ]
    return registries, clusters


def apply_registry_change(world: World, args: dict[str, Any]) -> Registry:
    """Apply a validated setRegistry change to the world; returns the registry."""
    reg = world.registry(args["name"])
    doc = _Doc("{}", "change")
    r = _Reader(doc)
    rest = {k: v for k, v in args.items() if k != "name"}
    if reg.is_acr:
        _apply_acr(r, world, reg, rest, ())
    else:
        if "anonymous" in rest:
            reg.anonymous = bool(rest["anonymous"])
        if "users" in rest:
            reg.users = {str(k): str(v) for k, v in rest["users"].items()}
        if "anonymousRateLimit" in rest:
            reg.anonymous_rate_limit = int(rest["anonymousRateLimit"])
    if "repositories" in rest:
        reg.repositories = _repositories(r, rest["repositories"], ())
    return reg


def apply_cluster_change(world: World, args: dict[str, Any]) -> Cluster:
    """Apply a validated setCluster change to the world; returns the cluster."""
    c = world.clusters[args["name"]]
    _apply_cluster(
        _Reader(_Doc("{}", "change")), world, c, {k: v for k, v in args.items() if k != "name"}, ()
    )
    return c
