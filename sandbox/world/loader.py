"""Load a world file: parse and validate the YAML format of docs/spec/world.md into a World.

Every error names the file, the line and the path of the bad value. Defaults are the spec's.
The sections are read by :mod:`sandbox.world.sections`, the timeline by :mod:`sandbox.world.timeline`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sandbox.world.model import CLOUDS, DOCKERHUB_ALIASES, EVENT_SCHEMAS, FAULTS, Fault, World, WorldError
from sandbox.world.sections import read_assignment, read_cluster, read_latency, read_registry
from sandbox.world.timeline import read_step
from sandbox.world.yaml_reader import MAX_FILE_BYTES, Doc, Reader


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
    doc = Doc(text, source)
    r = Reader(doc)
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
        reg = read_registry(r, world, key, spec)
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
        world.clusters[name] = read_cluster(r, world, name, spec)

    for i, spec in enumerate(r.seq(top.get("roleAssignments"), ("roleAssignments",))):
        world.role_assignments.append(read_assignment(r, world, ("roleAssignments", i), spec))

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

    world.latency = read_latency(r, world, top.get("latency"))

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
        world.timeline.append(read_step(r, world, ("timeline", i), spec))

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
