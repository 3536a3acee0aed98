"""Safe, bounded YAML reading for world files: plain values plus the line of every path.

A world file is untrusted input: :class:`Doc` refuses an oversized file, deep nesting, alias bombs
and long values with one line naming the file and line; :class:`Reader` checks the type of each
value and names the path of a bad one.
"""

from __future__ import annotations

from typing import Any

import yaml

from sandbox.world.model import WorldError

# A world file is read whole and turned into plain values: bounded so that a hostile file (an
# alias bomb, a 5 MB name, nesting a thousand deep) is refused quickly with one line.
MAX_FILE_BYTES = 1024 * 1024  # a world or event file
MAX_DEPTH = 32  # nesting of mappings and lists
MAX_ALIASES = 64  # YAML aliases (*name) in one file
MAX_NODES = 200_000  # values after aliases are expanded
MAX_SCALAR = 4096  # characters of one value


class Doc:
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
            line = event.start_mark.line + 1 if event.start_mark is not None else 1
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


class Reader:
    def __init__(self, doc: Doc) -> None:
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
