"""Kubernetes manifests → workload objects with the file and line of each object and image (pure
but for reading the files).

Input: files, folders (recursively: ``*.yaml``, ``*.yml``, ``*.json``), or ``-`` for stdin (the
output of ``helm template`` / ``kustomize build``). A file may hold several YAML documents; a
``List`` (or ``DeploymentList`` …) holds objects in ``items``. A document after a Helm
``# Source: chart/templates/x.yaml`` comment is reported at THAT path, its lines counted from the
comment (line 1 is the template's first line as rendered).

Kept: every workload kind pullwatch audits (:data:`WORKLOAD_KINDS`, with init and ephemeral
containers), and the ServiceAccounts and Secrets of the set (they will exist in the namespace
once the set is applied). Every other object is ignored, and so is a document that is not a
Kubernetes object (``values.yaml`` in a scanned folder). YAML that does not parse raises
:class:`ManifestError` (``file:line: what``).

Line numbers come from PyYAML's composer (``SafeLoader`` nodes carry their marks).

Public interface::

    read_manifests(paths, *, stdin=None, cwd=None, source_prefix="") -> ManifestSet   # raises ManifestError
    parse_documents(text, path, *, source_prefix="") -> list[ManifestObject]          # one file's text
    ManifestSet(workloads, service_accounts, secrets, files)
    ManifestObject(kind, name, namespace, location, body, containers, lines)   .ref -> "Deployment/web"
    ContainerSite(name, kind, image, location)
    Location(path, line)
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from shared.errors import InputError
from shared.workloads import ContainerKind

#: Workload kind -> the path from the object to its pod spec.
WORKLOAD_KINDS: Mapping[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
#: Other kinds of the set that the pull checks read.
SUPPORTING_KINDS = ("ServiceAccount", "Secret")
SUFFIXES = (".yaml", ".yml", ".json")
#: Bounds on untrusted input: bytes per file, files per run, documents per file.
MAX_FILE_BYTES = 32 * 1024 * 1024
MAX_FILES = 20_000
MAX_DOCUMENTS = 100_000

_SOURCE_RE = re.compile(r"^# Source: (\S.*?)\s*$")
_CONTAINER_KEYS: tuple[tuple[str, ContainerKind], ...] = (
    ("initContainers", "init"),
    ("containers", "container"),
    ("ephemeralContainers", "ephemeral"),
)


class ManifestError(InputError):
    """A manifest that cannot be read: its message is ``file:line: what``."""


@dataclass(frozen=True, order=True)
class Location:
    path: str  # as reported: relative to the working folder when under it, or a Helm Source path
    line: int  # 1-based

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class ContainerSite:
    name: str
    kind: ContainerKind
    image: str
    location: Location  # the ``image:`` line (the container's line when it has no image)


@dataclass(frozen=True)
class ManifestObject:
    kind: str
    name: str
    namespace: str | None  # None: not set in the manifest (the target namespace applies)
    location: Location  # where the object starts
    body: Mapping[str, Any] = field(compare=False, repr=False)
    containers: tuple[ContainerSite, ...] = ()
    #: lines of notable keys of the pod spec: "imagePullSecrets", "serviceAccountName", "nodeSelector"
    lines: Mapping[str, Location] = field(default_factory=dict, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def pod_spec(self) -> Mapping[str, Any]:
        node: Any = self.body
        for key in WORKLOAD_KINDS.get(self.kind, ()):
            node = node.get(key) if isinstance(node, Mapping) else None
        return node if isinstance(node, Mapping) else {}


@dataclass(frozen=True)
class ManifestSet:
    workloads: tuple[ManifestObject, ...] = ()
    service_accounts: tuple[ManifestObject, ...] = ()
    secrets: tuple[ManifestObject, ...] = ()
    files: tuple[str, ...] = ()

    @property
    def images(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.image for w in self.workloads for c in w.containers if c.image))


# --- YAML with line numbers ------------------------------------------------------------------------


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key and isinstance(v, yaml.Node):
            return v
    return None


def _key_node(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, _ in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return k
    return None


def _walk(node: yaml.Node | None, path: Sequence[str]) -> yaml.Node | None:
    for key in path:
        node = _child(node, key)
    return node


@dataclass(frozen=True)
class _Origin:
    """How node lines map to reported locations: a file's own lines, or a Helm Source's."""

    path: str
    offset: int  # subtracted from the 1-based file line

    def at(self, node: yaml.Node | None, fallback: Location) -> Location:
        if node is None:
            return fallback
        return Location(self.path, max(1, node.start_mark.line + 1 - self.offset))


def _sources(text: str) -> list[tuple[int, str]]:
    """(1-based line, path) of every Helm ``# Source:`` comment."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        m = _SOURCE_RE.match(line)
        if m:
            out.append((number, m.group(1)))
    return out


def _origin_of(start: int, sources: list[tuple[int, str]], path: str, prefix: str) -> _Origin:
    """Where a document starting at line ``start`` is reported: the file itself, or the template
    of the last Helm ``# Source:`` comment above it, lines counted from that comment. Helm gives
    each document of a multi-document template its own comment naming the same template: lines
    count on from the template's first comment, less one per repeated comment (the ``---`` stays
    as in the template)."""
    before = [s for s in sources if s[0] < start]
    if not before:
        return _Origin(path, 0)
    line, name = before[-1]
    repeats = 0
    for earlier_line, earlier_name in reversed(before[:-1]):
        if earlier_name != name:
            break
        line, repeats = earlier_line, repeats + 1
    return _Origin(posixpath.join(prefix, name), line + repeats)


def _error(path: str, exc: yaml.YAMLError, text: str) -> ManifestError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    last = max(1, len(text.splitlines()))  # "got end of stream" is on the last line, not past it
    line = min(mark.line + 1, last) if mark is not None else 1
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    what = f"{context}: {problem}" if context else str(problem)
    return ManifestError(f"{path}:{line}: YAML does not parse ({what})")


#: libyaml's safe loader (nodes with the same marks; about 5x faster than the pure-Python one on 200
#: chart manifests), or PyYAML's own where PyYAML was built without libyaml.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_documents(text: str, path: str, *, source_prefix: str = "") -> list[ManifestObject]:
    """The workload, ServiceAccount and Secret objects of one file's text, with their locations.
    ``source_prefix`` goes before Helm ``# Source:`` paths (``helm template charts/web`` names
    ``web/templates/…``; the repository holds ``charts/web/templates/…``)."""
    sources = _sources(text)
    loader = _Loader(text)
    out: list[ManifestObject] = []
    documents = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            documents += 1
            if documents > MAX_DOCUMENTS:
                raise ManifestError(f"{path}:{node.start_mark.line + 1}: more than {MAX_DOCUMENTS} documents")
            origin = _origin_of(node.start_mark.line + 1, sources, path, source_prefix)
            value = loader.construct_document(node)
            out.extend(_objects(value, node, origin))
    except yaml.YAMLError as exc:
        raise _error(path, exc, text) from None
    finally:
        loader.dispose()
    return out


def _objects(
    value: Any, node: yaml.Node, origin: _Origin, list_kind: str | None = None
) -> Iterator[ManifestObject]:
    if not isinstance(value, Mapping):
        return
    kind = value.get("kind")
    if not isinstance(kind, str) and list_kind:
        kind = list_kind
    if not isinstance(kind, str):
        return  # not a Kubernetes object
    items = value.get("items")
    if kind.endswith("List") and isinstance(items, list):
        item_nodes = _child(node, "items")
        nodes = item_nodes.value if isinstance(item_nodes, yaml.SequenceNode) else []
        for i, item in enumerate(items):
            item_node = nodes[i] if i < len(nodes) else node
            yield from _objects(item, item_node, origin, kind[: -len("List")] or None)
        return
    if kind not in WORKLOAD_KINDS and kind not in SUPPORTING_KINDS:
        return
    found = value.get("metadata")
    meta: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    here = origin.at(node, Location(origin.path, 1))
    name = str(meta.get("name") or "")
    namespace = str(meta["namespace"]) if meta.get("namespace") else None
    if kind not in WORKLOAD_KINDS:
        yield ManifestObject(kind, name, namespace, here, value)
        return
    spec_node = _walk(node, WORKLOAD_KINDS[kind])
    spec: Any = value
    for key in WORKLOAD_KINDS[kind]:
        spec = spec.get(key) if isinstance(spec, Mapping) else None
    containers: list[ContainerSite] = []
    if isinstance(spec, Mapping):
        for key, ckind in _CONTAINER_KEYS:
            listed = spec.get(key)
            seq = _child(spec_node, key)
            seq_nodes = seq.value if isinstance(seq, yaml.SequenceNode) else []
            for i, c in enumerate(listed if isinstance(listed, list) else []):
                if not isinstance(c, Mapping):
                    continue
                c_node = seq_nodes[i] if i < len(seq_nodes) else None
                at = origin.at(c_node, here)
                containers.append(
                    ContainerSite(
                        str(c.get("name") or ""),
                        ckind,
                        str(c.get("image") or ""),
                        origin.at(_child(c_node, "image"), at),
                    )
                )
    lines = {
        key: origin.at(found, here)
        for key in ("imagePullSecrets", "serviceAccountName", "nodeSelector", "affinity", "tolerations")
        if (found := _key_node(spec_node, key)) is not None
    }
    yield ManifestObject(kind, name, namespace, here, value, tuple(containers), lines)


# --- files -------------------------------------------------------------------------------------------


def _shown(path: Path, cwd: Path) -> str:
    """The path as reported: relative to the working folder (``cwd``, resolved) when under it
    (SARIF wants that)."""
    try:
        return path.resolve().relative_to(cwd).as_posix()
    except ValueError:
        return path.as_posix()


def _files(paths: Iterable[str]) -> Iterator[Path]:
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(
                f
                for f in p.rglob("*")
                if f.suffix.lower() in SUFFIXES
                and f.is_file()
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
            yield from found
        elif p.exists():
            yield p
        else:
            raise ManifestError(f"{raw}: no such file or folder")


def _read(path: Path, shown: str) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ManifestError(f"{shown}:1: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{shown}:1: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ManifestError(f"{shown}:1: cannot read ({exc.strerror})") from None


def read_manifests(
    paths: Sequence[str],
    *,
    stdin: IO[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    source_prefix: str = "",
) -> ManifestSet:
    """Every manifest object under ``paths`` (``-``: ``stdin``), in the order given."""
    base = (Path(cwd) if cwd is not None else Path.cwd()).resolve()
    objects: list[ManifestObject] = []
    files: list[str] = []
    for raw in paths or ["-"]:
        if raw == "-":
            if stdin is None:
                raise ManifestError("-: no standard input to read")
            text = stdin.read(MAX_FILE_BYTES + 1)
            if len(text) > MAX_FILE_BYTES:
                raise ManifestError(f"-:1: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
            files.append("-")
            objects.extend(parse_documents(text, "-", source_prefix=source_prefix))
            continue
        for path in _files([raw]):
            shown = _shown(path, base)
            files.append(shown)
            if len(files) > MAX_FILES:
                raise ManifestError(f"{raw}: more than {MAX_FILES} manifest files")
            objects.extend(parse_documents(_read(path, shown), shown, source_prefix=source_prefix))
    return ManifestSet(
        workloads=tuple(o for o in objects if o.kind in WORKLOAD_KINDS),
        service_accounts=tuple(o for o in objects if o.kind == "ServiceAccount"),
        secrets=tuple(o for o in objects if o.kind == "Secret"),
        files=tuple(files),
    )
