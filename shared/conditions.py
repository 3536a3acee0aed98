"""Azure role-assignment conditions (ABAC, conditionVersion 2.0, "Azure role assignment condition
format and syntax"), parsed and evaluated the way Azure does (pure).

:func:`parse_condition` builds an expression tree; :func:`evaluate_condition` evaluates it for one
action and a set of attributes; :func:`condition_allows` answers for one repository. Anything not
understood raises :class:`ConditionError` — callers report "could not check", never a pass.
:func:`repository_condition` writes the condition that lets a set of repositories through (for a
remediation command).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from shared.actions import CONTENT_READ, METADATA_READ, action_matches

REPOSITORY_NAME_ATTRIBUTE = "Microsoft.ContainerRegistry/registries/repositories:name"


class ConditionError(ValueError):
    """A condition that this parser/evaluator does not understand (never treated as a pass)."""


@dataclass(frozen=True)
class _Tok:
    kind: str  # punct | word | string | number | attr
    text: str
    pos: int


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<attr>@[A-Za-z]+\[[^\]]*\])
    | (?P<string>'(?:[^'\\]|\\.)*')
    | (?P<punct>&&|\|\||[(){},!])
    | (?P<number>-?\d+(?:\.\d+)?(?![\w:]))
    | (?P<word>[A-Za-z_][\w.]*(?::[A-Za-z_][\w.]*)?)
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ConditionError(f"unexpected character {text[pos:].lstrip()[:1]!r} at position {pos}")
        kind = m.lastgroup or ""
        out.append(_Tok(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return out


@dataclass(frozen=True)
class Expr:
    """A node of a condition: and/or/not/action/suboperation/compare."""

    kind: str
    children: tuple[Expr, ...] = ()
    values: tuple[str, ...] = ()
    attribute: str | None = None  # compare: "@Source[name]"
    operator: str | None = None  # compare: e.g. "ForAnyOfAnyValues:StringEqualsIgnoreCase"
    left_values: tuple[str, ...] = ()  # compare with a literal on the left


_STRING_FUNCS = (
    "StringEquals",
    "StringEqualsIgnoreCase",
    "StringNotEquals",
    "StringNotEqualsIgnoreCase",
    "StringStartsWith",
    "StringStartsWithIgnoreCase",
    "StringNotStartsWith",
    "StringNotStartsWithIgnoreCase",
    "StringLike",
    "StringLikeIgnoreCase",
    "StringNotLike",
    "StringNotLikeIgnoreCase",
)
_NUMERIC_FUNCS = (
    "NumericEquals",
    "NumericNotEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
)
_CROSS = ("ForAnyOfAnyValues", "ForAllOfAnyValues", "ForAnyOfAllValues", "ForAllOfAllValues")
_FUNCS = {f.lower(): f for f in (*_STRING_FUNCS, *_NUMERIC_FUNCS)}


def _operator(word: str) -> str | None:
    prefix, _, func = word.rpartition(":")
    canon = _FUNCS.get(func.lower())
    if canon is None:
        return None
    if prefix:
        cross = {c.lower(): c for c in _CROSS}.get(prefix.lower())
        if cross is None:
            return None
        return f"{cross}:{canon}"
    return canon


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise ConditionError("condition ends too early")
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text:
            raise ConditionError(f"expected {text!r} at position {tok.pos}, found {tok.text!r}")

    def parse(self) -> Expr:
        expr = self.expression()
        tok = self.peek()
        if tok is not None:
            raise ConditionError(f"unexpected {tok.text!r} at position {tok.pos}")
        return expr

    def _logical(self, tok: _Tok | None) -> str | None:
        if tok is None:
            return None
        t = tok.text.upper()
        if t in ("AND", "&&"):
            return "and"
        if t in ("OR", "||"):
            return "or"
        return None

    def expression(self) -> Expr:
        first = self.unary()
        op = self._logical(self.peek())
        if op is None:
            return first
        parts = [first]
        while (nxt := self._logical(self.peek())) is not None:
            tok = self.take()
            if nxt != op:
                # The syntax requires parentheses when AND and OR are mixed at one level.
                raise ConditionError(f"AND and OR mixed without parentheses at position {tok.pos}")
            parts.append(self.unary())
        return Expr(op, tuple(parts))

    def unary(self) -> Expr:
        tok = self.peek()
        if tok is not None and (tok.text == "!" or tok.text.upper() == "NOT"):
            self.take()
            return Expr("not", (self.unary(),))
        return self.primary()

    def literal_set(self) -> tuple[str, ...]:
        self.expect("{")
        values = [self.scalar()]
        while (tok := self.peek()) is not None and tok.text == ",":
            self.take()
            values.append(self.scalar())
        self.expect("}")
        return tuple(values)

    def scalar(self) -> str:
        tok = self.take()
        if tok.kind == "string":
            return re.sub(r"\\(.)", r"\1", tok.text[1:-1]) if "\\'" in tok.text else tok.text[1:-1]
        if tok.kind == "number":
            return tok.text
        raise ConditionError(f"expected a value at position {tok.pos}, found {tok.text!r}")

    def operand(self) -> tuple[str | None, tuple[str, ...]]:
        tok = self.peek()
        if tok is None:
            raise ConditionError("condition ends too early")
        if tok.kind == "attr":
            self.take()
            return tok.text, ()
        if tok.text == "{":
            return None, self.literal_set()
        return None, (self.scalar(),)

    def primary(self) -> Expr:
        tok = self.peek()
        if tok is None:
            raise ConditionError("condition ends too early")
        if tok.text == "(":
            self.take()
            inner = self.expression()
            self.expect(")")
            return inner
        if tok.kind == "word" and tok.text.lower() in ("actionmatches", "suboperationmatches"):
            self.take()
            kind = "action" if tok.text.lower() == "actionmatches" else "suboperation"
            return Expr(kind, values=self.literal_set())
        left_attr, left_values = self.operand()
        op_tok = self.take()
        operator = _operator(op_tok.text) if op_tok.kind == "word" else None
        if operator is None:
            raise ConditionError(f"operator {op_tok.text!r} at position {op_tok.pos} is not supported")
        right_attr, right_values = self.operand()
        if right_attr is not None:
            if left_attr is not None:
                raise ConditionError(f"comparing two attributes at position {op_tok.pos} is not supported")
            raise ConditionError(f"attribute on the right of {op_tok.text!r} is not supported")
        if left_attr is None:
            raise ConditionError(f"comparison at position {op_tok.pos} has no attribute")
        return Expr(
            "compare", attribute=left_attr, operator=operator, values=right_values, left_values=left_values
        )


def parse_condition(text: str) -> Expr:
    """Parse a conditionVersion 2.0 condition; :class:`ConditionError` names what was not understood."""
    if not text or not text.strip():
        raise ConditionError("empty condition")
    return _Parser(text).parse()


def _like(pattern: str, value: str, ignore_case: bool) -> bool:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "*?":
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
        i += 1
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.fullmatch("".join(out), value, flags) is not None


def _compare(func: str, left: str, right: str) -> bool:
    if func.startswith("Numeric"):
        try:
            a, b = float(left), float(right)
        except ValueError:
            raise ConditionError(f"{func} needs numbers, got {left!r} and {right!r}") from None
        return {
            "NumericEquals": a == b,
            "NumericNotEquals": a != b,
            "NumericLessThan": a < b,
            "NumericLessThanEquals": a <= b,
            "NumericGreaterThan": a > b,
            "NumericGreaterThanEquals": a >= b,
        }[func]
    negate = "Not" in func
    base = func.replace("Not", "")
    ignore = base.endswith("IgnoreCase")
    base = base.removesuffix("IgnoreCase")
    lv, rv = (left.lower(), right.lower()) if ignore else (left, right)
    if base == "StringEquals":
        result = lv == rv
    elif base == "StringStartsWith":
        result = lv.startswith(rv)
    elif base == "StringLike":
        result = _like(right, left, ignore)
    else:  # pragma: no cover - _operator admits only known names
        raise ConditionError(f"operator {func!r} is not supported")
    return result != negate


def _attribute_key(attribute: str) -> str:
    m = re.fullmatch(r"@([A-Za-z]+)\[\s*([^\]]*?)\s*\]", attribute)
    if not m:
        raise ConditionError(f"attribute {attribute!r} does not parse")
    return f"@{m.group(1).lower()}[{m.group(2).lower()}]"


def evaluate_condition(
    expr: Expr, action: str, attributes: Mapping[str, Sequence[str]], sub_operation: str | None = None
) -> bool:
    """Evaluate for one request. ``attributes`` maps ``@Source[name]`` (any case) to its values.

    An attribute the request does not carry raises :class:`ConditionError` (we cannot know).
    """
    attrs = {_attribute_key(k): tuple(v) for k, v in attributes.items()}
    return _eval(expr, action, attrs, sub_operation)


def _eval(expr: Expr, action: str, attrs: Mapping[str, tuple[str, ...]], sub_op: str | None) -> bool:
    if expr.kind == "and":
        return all(_eval(c, action, attrs, sub_op) for c in expr.children)
    if expr.kind == "or":
        return any(_eval(c, action, attrs, sub_op) for c in expr.children)
    if expr.kind == "not":
        return not _eval(expr.children[0], action, attrs, sub_op)
    if expr.kind == "action":
        return any(action_matches(v, action) for v in expr.values)
    if expr.kind == "suboperation":
        return sub_op is not None and any(v.lower() == sub_op.lower() for v in expr.values)
    assert expr.attribute is not None and expr.operator is not None
    key = _attribute_key(expr.attribute)
    if key not in attrs:
        raise ConditionError(f"attribute {expr.attribute} is not one pullwatch can evaluate")
    left = attrs[key]
    prefix, _, func = expr.operator.rpartition(":")
    right = expr.values
    if not prefix:
        if len(right) != 1:
            raise ConditionError(f"{func} takes one value; use a ForAnyOfAnyValues: operator for a set")
        return any(_compare(func, lv, right[0]) for lv in left) if left else False

    def test(lv: str, rv: str) -> bool:
        return _compare(func, lv, rv)

    if prefix == "ForAnyOfAnyValues":
        return any(test(lv, rv) for lv in left for rv in right)
    if prefix == "ForAllOfAnyValues":
        return all(any(test(lv, rv) for rv in right) for lv in left)
    if prefix == "ForAnyOfAllValues":
        return any(all(test(lv, rv) for rv in right) for lv in left)
    return all(all(test(lv, rv) for rv in right) for lv in left)  # ForAllOfAllValues


def repository_attributes(repository: str) -> dict[str, tuple[str, ...]]:
    """The attributes of a pull of ``repository`` (ACR exposes the name as request and resource)."""
    return {
        f"@Request[{REPOSITORY_NAME_ATTRIBUTE}]": (repository,),
        f"@Resource[{REPOSITORY_NAME_ATTRIBUTE}]": (repository,),
    }


def condition_allows(condition: str, action: str, repository: str) -> bool:
    """Does the condition let ``action`` on ``repository`` through? Raises :class:`ConditionError`."""
    return evaluate_condition(parse_condition(condition), action, repository_attributes(repository))


def repository_condition(repositories: Iterable[str]) -> str:
    """The condition that limits a repository role to these repositories (names, or prefixes
    ending in ``/``), for both content/read and metadata/read."""
    names = sorted({r for r in repositories if not r.endswith("/")})
    prefixes = sorted({r for r in repositories if r.endswith("/")})
    attr = f"@Request[{REPOSITORY_NAME_ATTRIBUTE}]"
    parts = []
    if names:
        values = ", ".join(_quote(n) for n in names)
        parts.append(f"{attr} ForAnyOfAnyValues:StringEqualsIgnoreCase {{{values}}}")
    for p in prefixes:
        parts.append(f"{attr} StringStartsWithIgnoreCase {_quote(p)}")
    expression = " OR ".join(parts) if parts else "false"
    return (
        f"((!(ActionMatches{{'{CONTENT_READ}'}}) AND !(ActionMatches{{'{METADATA_READ}'}}))"
        f" OR ({expression}))"
    )


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
