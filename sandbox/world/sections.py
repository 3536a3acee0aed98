"""The per-section readers of a world file: registries, clusters, namespaces, role assignments, latency.

Each turns one validated section into model objects; the ``apply_*_keys`` helpers are shared with
the ``setRegistry``/``setCluster`` changes of :mod:`sandbox.world.timeline`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sandbox.world.model import (
    DOCKERHUB_ALIASES,
    MAX_POOL_NODES,
    MAX_REPLICAS,
    ROLE_MODES,
    SECRET_TYPES_WITH_AUTHS,
    WORKLOAD_KINDS,
    Cluster,
    Latency,
    Namespace,
    NodePool,
    Platform,
    Registry,
    RoleAssignment,
    Secret,
    Workload,
    World,
    WorldError,
)
from sandbox.world.yaml_reader import Reader

_PLATFORM = re.compile(r"^(linux|windows)/(amd64|arm64|arm|386|ppc64le|s390x)(?:/(v[5-8]))?$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")

_RTT = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s)$")


def read_latency(r: Reader, world: World, value: Any) -> list[Latency]:
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


REG_ACR_KEYS = (
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
REG_OTHER_KEYS = ("anonymous", "users", "repositories", "anonymousRateLimit")


def read_registry(r: Reader, world: World, key: str, spec: Any) -> Registry:
    p: tuple[Any, ...] = ("registries", key)
    line = r.doc.line(p)
    if "." not in key:
        if not re.fullmatch(r"[a-zA-Z0-9]{5,50}", key):
            raise r.doc.error(p, f"ACR name {key!r} must be 5-50 letters or digits")
        m = r.mapping(spec, p, REG_ACR_KEYS)
        reg = Registry(
            key=key,
            kind="acr",
            host=f"{key.lower()}{world.azure.acr_suffix}",
            name=key,
            repositories=read_repositories(r, m.get("repositories"), (*p, "repositories")),
            tenant=world.tenant,
            subscription=world.subscriptions[0],
            line=line,
        )
        apply_acr_keys(r, world, reg, m, p)
        return reg
    host = key.lower()
    kind = "generic"
    if host in DOCKERHUB_ALIASES:
        host, kind = "docker.io", "dockerhub"
    m = r.mapping(spec, p, REG_OTHER_KEYS)
    reg = Registry(
        key=key,
        kind=kind,
        host=host,
        name=host,
        repositories=read_repositories(r, m.get("repositories"), (*p, "repositories")),
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


def apply_acr_keys(r: Reader, world: World, reg: Registry, m: dict[str, Any], p: tuple[Any, ...]) -> None:
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


def read_repositories(r: Reader, value: Any, p: tuple[Any, ...]) -> dict[str, dict[str, list[Platform]]]:
    out: dict[str, dict[str, list[Platform]]] = {}
    for repo, tags in r.mapping(value, p).items():
        if not re.fullmatch(r"[a-z0-9]+(?:[._-][a-z0-9]+|__)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+|__)*)*", repo):
            raise r.doc.error((*p, repo), f"repository name {repo!r} is not valid (lower case, / separated)")
        out[repo] = {}
        for tag, platforms in r.mapping(tags, (*p, repo)).items():
            tag = str(tag)
            if not _TAG.match(tag):
                raise r.doc.error((*p, repo, tag), f"tag {tag!r} is not valid")
            out[repo][tag] = read_platforms(r, platforms, (*p, repo, tag))
    return out


def read_platforms(r: Reader, value: Any, p: tuple[Any, ...]) -> list[Platform]:
    out = []
    items = r.seq(value, p) or ["linux/amd64"]
    for i, item in enumerate(items):
        text = r.text(item, (*p, i))
        m = _PLATFORM.match(text)
        if not m:
            raise r.doc.error((*p, i), f"platform {text!r} is not os/arch (e.g. linux/amd64, linux/arm64)")
        out.append(Platform(m.group(1), m.group(2), m.group(3)))
    return out


CLUSTER_KEYS = (
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


def read_cluster(r: Reader, world: World, name: str, spec: Any) -> Cluster:
    p: tuple[Any, ...] = ("clusters", name)
    m = r.mapping(spec, p, CLUSTER_KEYS)
    c = Cluster(name=name, subscription=world.subscriptions[0], line=r.doc.line(p))
    apply_cluster_keys(r, world, c, m, p)
    return c


def apply_cluster_keys(r: Reader, world: World, c: Cluster, m: dict[str, Any], p: tuple[Any, ...]) -> None:
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


def _namespace(r: Reader, c: Cluster, name: str, spec: Any, p: tuple[Any, ...]) -> Namespace:
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


def read_assignment(r: Reader, world: World, p: tuple[Any, ...], spec: Any) -> RoleAssignment:
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
