"""Effective Azure RBAC permissions, evaluated the way Azure does it (pure: values in, values out).

- Action patterns: ``*`` matches any run of characters (``*``, ``*/read``,
  ``Microsoft.ContainerRegistry/*``), compared case-insensitively. A permission block grants an
  operation when one of its actions matches and none of its notActions does; a role grants it when
  one of its blocks does; roles add up (notActions are not a deny).
- Scopes: an assignment applies to a resource when its scope is the resource or an ancestor of it
  (prefix match on path segments, case-insensitive), the root ``/``, or a management group above
  the resource's subscription.
- Conditions (conditionVersion 2.0, "Azure role assignment condition format and syntax"):
  :func:`parse_condition` builds an expression tree; :func:`evaluate_condition` evaluates it for one
  action and a set of attributes. Anything not understood raises :class:`ConditionError` — callers
  report "could not check", never a pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from shared.model import PullIdentity, RegistryInfo, RoleAssignment, RoleDefinition, same_id

PULL_ACTION = "Microsoft.ContainerRegistry/registries/pull/read"
CONTENT_READ = "Microsoft.ContainerRegistry/registries/repositories/content/read"
METADATA_READ = "Microsoft.ContainerRegistry/registries/repositories/metadata/read"
REPOSITORY_NAME_ATTRIBUTE = "Microsoft.ContainerRegistry/registries/repositories:name"

ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
ACR_PUSH = "8311e382-0749-4cb8-b61a-304f252e45ec"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
REPOSITORY_READER = "b93aa761-3e63-49ed-ac28-beffa264f7ac"
REPOSITORY_WRITER = "2a1e307c-b015-4ebd-883e-5b7698a07328"
REPOSITORY_CONTRIBUTOR = "2efddaa5-3f1f-4df3-97df-af3f13818f4c"
DATA_IMPORTER_READER = "577a9874-89fd-4f24-9dbd-b5034d0ad23a"

#: Roles whose classic pull action ACR honours in ABAC mode as well (FACTS: "Container Registry
#: Data Importer and Data Reader" pulls in both modes).
ABAC_HONORED_CONTROL_PLANE_ROLES = frozenset({DATA_IMPORTER_READER})


def _builtin(
    guid: str,
    name: str,
    actions: Sequence[str] = (),
    not_actions: Sequence[str] = (),
    data_actions: Sequence[str] = (),
) -> RoleDefinition:
    return RoleDefinition(
        id=f"/providers/Microsoft.Authorization/roleDefinitions/{guid}",
        name=guid,
        role_name=name,
        role_type="BuiltInRole",
        actions=tuple(actions),
        not_actions=tuple(not_actions),
        data_actions=tuple(data_actions),
    )


#: Built-in roles that matter for pulls, used when the listed definitions lack one (they are the
#: same in every subscription). Listed definitions always win.
BUILTIN_ROLES: Mapping[str, RoleDefinition] = {
    r.guid: r
    for r in (
        _builtin(ACR_PULL, "AcrPull", [PULL_ACTION]),
        _builtin(ACR_PUSH, "AcrPush", [PULL_ACTION, "Microsoft.ContainerRegistry/registries/push/write"]),
        _builtin(OWNER, "Owner", ["*"]),
        _builtin(
            CONTRIBUTOR,
            "Contributor",
            ["*"],
            [
                "Microsoft.Authorization/*/Delete",
                "Microsoft.Authorization/*/Write",
                "Microsoft.Authorization/elevateAccess/Action",
                "Microsoft.Blueprint/blueprintAssignments/write",
                "Microsoft.Blueprint/blueprintAssignments/delete",
                "Microsoft.Compute/galleries/share/action",
                "Microsoft.Purview/consents/write",
                "Microsoft.Purview/consents/delete",
            ],
        ),
        _builtin(READER, "Reader", ["*/read"]),
        _builtin(
            REPOSITORY_READER,
            "Container Registry Repository Reader",
            (),
            data_actions=[CONTENT_READ, METADATA_READ],
        ),
        _builtin(
            REPOSITORY_WRITER,
            "Container Registry Repository Writer",
            (),
            data_actions=[
                CONTENT_READ,
                METADATA_READ,
                "Microsoft.ContainerRegistry/registries/repositories/content/write",
                "Microsoft.ContainerRegistry/registries/repositories/metadata/write",
            ],
        ),
        _builtin(
            REPOSITORY_CONTRIBUTOR,
            "Container Registry Repository Contributor",
            (),
            data_actions=[
                CONTENT_READ,
                METADATA_READ,
                "Microsoft.ContainerRegistry/registries/repositories/content/write",
                "Microsoft.ContainerRegistry/registries/repositories/content/delete",
                "Microsoft.ContainerRegistry/registries/repositories/metadata/write",
                "Microsoft.ContainerRegistry/registries/repositories/metadata/delete",
            ],
        ),
        _builtin(
            DATA_IMPORTER_READER,
            "Container Registry Data Importer and Data Reader",
            [
                "Microsoft.ContainerRegistry/registries/importImage/action",
                PULL_ACTION,
                "Microsoft.ContainerRegistry/registries/read",
            ],
        ),
    )
}


# --------------------------------------------------------------------------- actions and roles


@lru_cache(maxsize=4096)
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(p) for p in pattern.split("*")), re.IGNORECASE | re.DOTALL)


def action_matches(pattern: str, action: str) -> bool:
    """Azure's action matching: ``*`` is any run of characters; case does not matter."""
    return _pattern(pattern.strip()).fullmatch(action.strip()) is not None


def _block_grants(allowed: Iterable[str], denied: Iterable[str], operation: str) -> bool:
    return any(action_matches(p, operation) for p in allowed) and not any(
        action_matches(p, operation) for p in denied
    )


def role_grants_action(role: RoleDefinition, action: str) -> bool:
    """Control-plane: actions minus notActions, in any permission block."""
    return any(_block_grants(a, na, action) for a, na, _d, _nd in role.permission_blocks())


def role_grants_data_action(role: RoleDefinition, data_action: str) -> bool:
    """Data plane: dataActions minus notDataActions. ``*`` in actions grants no data action."""
    return any(_block_grants(d, nd, data_action) for _a, _na, d, nd in role.permission_blocks())


def definition_for(
    assignment: RoleAssignment, definitions: Mapping[str, RoleDefinition]
) -> RoleDefinition | None:
    """The assignment's role: from the listed definitions (keyed by GUID or full ID), else built-in."""
    guid = assignment.role_guid
    for key in (guid, assignment.role_definition_id, assignment.role_definition_id.lower()):
        if key in definitions:
            return definitions[key]
    return BUILTIN_ROLES.get(guid)


# --------------------------------------------------------------------------- scopes and principals

_MG_PREFIX = "/providers/microsoft.management/managementgroups/"


def scope_covers(
    scope: str, resource_id: str, resource_subscription: str | None = None, listed_for: str | None = None
) -> bool:
    """True when an assignment at ``scope`` applies to ``resource_id`` (at or above it)."""
    s = "/" + scope.strip().strip("/").lower()
    if s == "/":
        return True
    if s.startswith(_MG_PREFIX):
        # A management group is above a subscription when that subscription's unfiltered list
        # returned the assignment (ARM lists assignments at, above and below the scope).
        return (
            listed_for is None or resource_subscription is None or same_id(listed_for, resource_subscription)
        )
    rid = "/" + resource_id.strip().strip("/").lower()
    return rid == s or rid.startswith(s + "/")


def scope_is_within(scope: str, resource_id: str) -> bool:
    """True when the assignment sits at the resource itself or below it."""
    s = "/" + scope.strip().strip("/").lower()
    rid = "/" + resource_id.strip().strip("/").lower()
    return s == rid or s.startswith(rid + "/")


def principal_ids(identity: PullIdentity, groups: Iterable[str]) -> frozenset[str]:
    return frozenset([identity.object_id.lower(), *(g.lower() for g in groups)])


def assignments_for(
    identity: PullIdentity,
    groups: Iterable[str],
    registry: RegistryInfo,
    assignments: Iterable[RoleAssignment],
) -> list[RoleAssignment]:
    """The assignments of the identity or its groups that apply at the registry (deduplicated)."""
    ids = principal_ids(identity, groups)
    seen: dict[str, RoleAssignment] = {}
    mg_ok: set[str] = set()
    candidates = [a for a in assignments if a.principal_id.lower() in ids]
    for a in candidates:
        if scope_covers(a.scope, registry.id, registry.subscription_id, a.listed_for):
            mg_ok.add(a.id.lower())
    for a in candidates:
        if a.id.lower() in mg_ok:
            seen.setdefault(a.id.lower(), a)
    return list(seen.values())


# --------------------------------------------------------------------------- conditions


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


# --------------------------------------------------------------------------- effective pull right


@dataclass(frozen=True)
class PullAccess:
    """What the identity's assignments give it at one registry."""

    mode: str
    assignments: tuple[RoleAssignment, ...]  # the identity's (and its groups') applicable ones
    roles: tuple[str, ...]  # role names found, sorted
    granted: bool  # can pull (every repository when ABAC conditions are evaluated)
    honored: bool  # ABAC: some role carries the data action (classic: == granted)
    excluded: tuple[str, ...] = ()  # ABAC: repositories in use that no condition lets through
    conditional: bool = False  # ABAC: every honoured role carries a condition
    unknown: tuple[str, ...] = field(default_factory=tuple)  # reasons the answer may be wrong


def pull_access(
    identity: PullIdentity,
    groups: Sequence[str],
    registry: RegistryInfo,
    assignments: Sequence[RoleAssignment],
    definitions: Mapping[str, RoleDefinition],
    repositories: Iterable[str] = (),
) -> PullAccess:
    """Evaluate the identity's effective right to pull from ``registry``."""
    mine = assignments_for(identity, groups, registry, assignments)
    repos = sorted(set(repositories))
    roles: set[str] = set()
    unknown: list[str] = []
    resolved: list[tuple[RoleAssignment, RoleDefinition]] = []
    for a in mine:
        d = definition_for(a, definitions)
        if d is None:
            unknown.append(f"role definition {a.role_guid} of assignment {a.id} could not be read")
            roles.add(a.role_guid)
            continue
        roles.add(d.role_name or d.guid)
        resolved.append((a, d))
    mode = registry.role_assignment_mode or "LegacyRegistryPermissions"
    if not registry.abac:
        granted = False
        for a, d in resolved:
            if not role_grants_action(d, PULL_ACTION):
                continue
            if not a.condition:
                granted = True
                continue
            try:
                if evaluate_condition(parse_condition(a.condition), PULL_ACTION, {}):
                    granted = True
            except ConditionError as exc:
                unknown.append(f"condition of assignment {a.id} not understood: {exc}")
        return PullAccess(
            mode, tuple(mine), tuple(sorted(roles)), granted, granted, (), False, tuple(unknown)
        )
    honoured = [
        (a, d)
        for a, d in resolved
        if role_grants_data_action(d, CONTENT_READ)
        or (d.guid in ABAC_HONORED_CONTROL_PLANE_ROLES and role_grants_action(d, PULL_ACTION))
    ]
    unconditional = any(not a.condition for a, _d in honoured)
    covered: set[str] = set()
    if not unconditional:
        for a, _d in honoured:
            assert a.condition is not None
            try:
                expr = parse_condition(a.condition)
                for r in repos:
                    if r not in covered and evaluate_condition(expr, CONTENT_READ, repository_attributes(r)):
                        covered.add(r)
            except ConditionError as exc:
                unknown.append(f"condition of assignment {a.id} not understood: {exc}")
    excluded = () if unconditional else tuple(r for r in repos if r not in covered)
    granted = bool(honoured) and not excluded
    return PullAccess(
        mode,
        tuple(mine),
        tuple(sorted(roles)),
        granted,
        bool(honoured),
        excluded,
        bool(honoured) and not unconditional,
        tuple(unknown),
    )
