"""The timeline of a world: reading its steps, and applying ``change`` steps to the world.

Every step is validated when the world loads (a change is tried on a scratch copy), so a bad
timeline fails before the sandbox starts; the runner applies the changes in order.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from sandbox.world.model import Cluster, Registry, Step, World
from sandbox.world.sections import (
    CLUSTER_KEYS,
    REG_ACR_KEYS,
    REG_OTHER_KEYS,
    apply_acr_keys,
    apply_cluster_keys,
    check_principal,
    check_scope,
    read_platforms,
    read_repositories,
)
from sandbox.world.yaml_reader import MAX_FILE_BYTES, Doc, Reader

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


def read_step(r: Reader, world: World, p: tuple[Any, ...], spec: Any) -> Step:
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


def _check_event_file(r: Reader, path: tuple[Any, ...], target: Path) -> None:
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


def _change_args(r: Reader, world: World, name: str, args: Any, q: tuple[Any, ...]) -> dict[str, Any]:
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
            out2["platforms"] = read_platforms(r, m.get("platforms"), (*q, "platforms"))
            held.add(image)
        elif image not in held:
            raise r.doc.error((*q, "image"), f"registry {reg_name} holds no image {image!r} at this step")
        else:
            held.discard(image)
        return out2
    if name == "setRegistry":
        m = r.mapping(args, q, ("name", *REG_ACR_KEYS, *REG_OTHER_KEYS), required=("name",))
        reg_name = r.text(m["name"], (*q, "name"))
        try:
            world.registry(reg_name)
        except KeyError:
            raise r.doc.error((*q, "name"), f"no registry named {reg_name!r}") from None
        # Validate the values now, on a scratch copy, so a bad change fails at load time.
        scratch = copy.deepcopy(world.registry(reg_name))
        rest = {k: v for k, v in m.items() if k != "name"}
        if scratch.is_acr:
            r.mapping(rest, q, REG_ACR_KEYS)
            apply_acr_keys(r, world, scratch, rest, q)
        else:
            r.mapping(rest, q, REG_OTHER_KEYS)
        return dict(m)
    if name == "setCluster":
        m = r.mapping(args, q, ("name", *CLUSTER_KEYS), required=("name",))
        cname = r.text(m["name"], (*q, "name"))
        if cname not in world.clusters:
            raise r.doc.error((*q, "name"), f"no cluster named {cname!r}")
        apply_cluster_keys(
            r, world, copy.deepcopy(world.clusters[cname]), {k: v for k, v in m.items() if k != "name"}, q
        )
        return dict(m)
    if name == "deleteResourceGroup":
        m = r.mapping(args, q, ("name", "subscription"), required=("name",))
        out3 = {k: r.text(v, (*q, k)) for k, v in m.items()}
        out3.setdefault("subscription", world.subscriptions[0])
        holders: list[Registry | Cluster] = [*world.registries.values(), *world.clusters.values()]
        if not any(_in_group(x, out3) for x in holders):
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
    doc = Doc("{}", "change")
    r = Reader(doc)
    rest = {k: v for k, v in args.items() if k != "name"}
    if reg.is_acr:
        apply_acr_keys(r, world, reg, rest, ())
    else:
        if "anonymous" in rest:
            reg.anonymous = bool(rest["anonymous"])
        if "users" in rest:
            reg.users = {str(k): str(v) for k, v in rest["users"].items()}
        if "anonymousRateLimit" in rest:
            reg.anonymous_rate_limit = int(rest["anonymousRateLimit"])
    if "repositories" in rest:
        reg.repositories = read_repositories(r, rest["repositories"], ())
    return reg


def apply_cluster_change(world: World, args: dict[str, Any]) -> Cluster:
    """Apply a validated setCluster change to the world; returns the cluster."""
    c = world.clusters[args["name"]]
    apply_cluster_keys(
        Reader(Doc("{}", "change")), world, c, {k: v for k, v in args.items() if k != "name"}, ()
    )
    return c
