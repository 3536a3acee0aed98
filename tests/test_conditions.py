"""ABAC role-assignment conditions (conditionVersion 2.0): parse and evaluate.

Examples follow "Azure role assignment condition format and syntax" and the ACR ABAC repository
permissions article.
"""

from __future__ import annotations

import pytest

from shared.actions import CONTENT_READ, METADATA_READ
from shared.conditions import (
    ConditionError,
    condition_allows,
    evaluate_condition,
    parse_condition,
    repository_condition,
)

ATTR = "@Request[Microsoft.ContainerRegistry/registries/repositories:name]"


def acr(expression: str) -> str:
    return (
        f"((!(ActionMatches{{'{CONTENT_READ}'}}) AND !(ActionMatches{{'{METADATA_READ}'}})) "
        f"OR ({expression}))"
    )


@pytest.mark.parametrize(
    ("condition", "repository", "allowed"),
    [
        (acr(f"{ATTR} StringEqualsIgnoreCase 'web'"), "web", True),
        (acr(f"{ATTR} StringEqualsIgnoreCase 'web'"), "WEB", True),
        (acr(f"{ATTR} StringEqualsIgnoreCase 'web'"), "web2", False),
        (acr(f"{ATTR} StringEquals 'Web'"), "web", False),
        (acr(f"{ATTR} StringStartsWithIgnoreCase 'team-a/'"), "team-a/api", True),
        (acr(f"{ATTR} StringStartsWithIgnoreCase 'team-a/'"), "team-a", False),  # trailing / matters
        (acr(f"{ATTR} StringStartsWithIgnoreCase 'team-a'"), "team-ab/api", True),  # without it: a prefix
        (acr(f"{ATTR} StringStartsWithIgnoreCase 'team-a/'"), "team-b/api", False),
        (acr(f"{ATTR} ForAnyOfAnyValues:StringEqualsIgnoreCase {{'web', 'api'}}"), "api", True),
        (acr(f"{ATTR} ForAnyOfAnyValues:StringEqualsIgnoreCase {{'web', 'api'}}"), "db", False),
        (acr(f"{ATTR} StringEqualsIgnoreCase 'web' OR {ATTR} StringEqualsIgnoreCase 'api'"), "api", True),
        (acr(f"{ATTR} StringEqualsIgnoreCase 'web' OR {ATTR} StringEqualsIgnoreCase 'api'"), "db", False),
        (acr(f"{ATTR} StringLike 'team-*/web?'"), "team-a/web1", True),
        (acr(f"{ATTR} StringLike 'team-*/web?'"), "team-a/web12", False),
        (acr(f"{ATTR} StringLike 'TEAM-*'"), "team-a", False),  # StringLike is case-sensitive
        (acr(f"{ATTR} StringLikeIgnoreCase 'TEAM-*'"), "team-a", True),
        (acr(f"{ATTR} StringNotStartsWithIgnoreCase 'internal/'"), "internal/x", False),
        (acr(f"{ATTR} StringNotEquals 'secret'"), "web", True),
        (acr(f"NOT ({ATTR} StringEquals 'secret')"), "secret", False),
        (acr(f"{ATTR} StringStartsWith 'team-' && {ATTR} StringNotEquals 'team-x'"), "team-x", False),
        (acr(f"{ATTR} StringStartsWith 'team-' && {ATTR} StringNotEquals 'team-x'"), "team-y", True),
        (
            acr("@Resource[Microsoft.ContainerRegistry/registries/repositories:name] StringEquals 'web'"),
            "web",
            True,
        ),
        # no action clause: the expression alone decides
        (f"{ATTR} StringEquals 'web'", "web", True),
        (f"{ATTR} StringEquals 'web'", "api", False),
    ],
)
def test_repository_conditions(condition: str, repository: str, allowed: bool) -> None:
    assert condition_allows(condition, CONTENT_READ, repository) is allowed


def test_condition_does_not_restrict_other_actions() -> None:
    cond = acr(f"{ATTR} StringEqualsIgnoreCase 'web'")
    assert condition_allows(cond, "Microsoft.ContainerRegistry/registries/repositories/content/write", "db")


def test_action_matches_honours_wildcards() -> None:
    cond = f"(!(ActionMatches{{'Microsoft.ContainerRegistry/registries/repositories/*'}})) OR ({ATTR} StringEquals 'a')"
    assert not condition_allows(cond, CONTENT_READ, "b")
    assert condition_allows(cond, "Microsoft.Storage/storageAccounts/read", "b")


@pytest.mark.parametrize(
    ("left", "op", "right", "expected"),
    [  # the cross-product table of the syntax article
        ("{'red', 'blue'}", "ForAnyOfAnyValues:StringEquals", "{'blue', 'green'}", True),
        ("{'red', 'blue'}", "ForAnyOfAnyValues:StringEquals", "{'orange', 'green'}", False),
        ("{'red', 'blue'}", "ForAllOfAnyValues:StringEquals", "{'orange', 'red', 'blue'}", True),
        ("{'red', 'blue'}", "ForAllOfAnyValues:StringEquals", "{'red', 'green'}", False),
        ("{10, 20}", "ForAnyOfAllValues:NumericLessThan", "{15, 18}", True),
        ("{10, 20}", "ForAllOfAllValues:NumericLessThan", "{5, 15, 18}", False),
        ("{10, 20}", "ForAllOfAllValues:NumericLessThan", "{25, 30}", True),
    ],
)
def test_cross_product_operators(left: str, op: str, right: str, expected: bool) -> None:
    expr = parse_condition(f"@Request[x] {op} {right}")
    values = tuple(v.strip(" '") for v in left.strip("{}").split(","))
    assert evaluate_condition(expr, CONTENT_READ, {"@Request[x]": values}) is expected


@pytest.mark.parametrize(
    "condition",
    [
        f"{ATTR} StringEquals 'a' AND {ATTR} StringEquals 'b' OR {ATTR} StringEquals 'c'",  # needs parentheses
        f"{ATTR} StringSoundsLike 'web'",  # unknown operator
        f"({ATTR} StringEquals 'web'",  # unbalanced
        f"{ATTR} StringEquals",  # no value
        f"{ATTR} StringEquals 'web' extra",
        "",
        f"{ATTR} ForSomeValues:StringEquals {{'a'}}",
        f"Exists {ATTR}",
        f"{ATTR} StringEquals 'web' ;",
    ],
)
def test_unreadable_conditions_raise(condition: str) -> None:
    with pytest.raises(ConditionError):
        condition_allows(condition, CONTENT_READ, "web")


def test_unknown_attribute_cannot_be_evaluated() -> None:
    cond = acr("@Principal[Microsoft.Directory/CustomSecurityAttributes/Id:Team] StringEquals 'a'")
    parse_condition(cond)  # parses
    with pytest.raises(ConditionError, match="not one pullwatch can evaluate"):
        condition_allows(cond, CONTENT_READ, "web")


def test_generated_condition_round_trips() -> None:
    cond = repository_condition(["web", "api", "team-a/"])
    assert "ForAnyOfAnyValues:StringEqualsIgnoreCase {'api', 'web'}" in cond
    for repo, ok in [("web", True), ("API", True), ("team-a/x", True), ("team-b/x", False), ("db", False)]:
        assert condition_allows(cond, CONTENT_READ, repo) is ok
        assert condition_allows(cond, METADATA_READ, repo) is ok


def test_quotes_in_values() -> None:
    cond = repository_condition(["it's"])
    assert condition_allows(cond, CONTENT_READ, "it's")
    assert not condition_allows(cond, CONTENT_READ, "its")


X = "@Request[x]"


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("", "empty condition"),
        ("   ", "empty condition"),
        (f"{X} StringEquals", "condition ends too early"),
        (f"({X} StringEquals 'web'", "condition ends too early"),
        ("!", "condition ends too early"),
        (f"{X} StringEquals 'web' extra", "unexpected 'extra' at position 31"),
        (
            f"{X} StringEquals 'a' AND {X} StringEquals 'b' OR {X} StringEquals 'c'",
            "AND and OR mixed without parentheses at position 62",
        ),
        (f"{X} StringSoundsLike 'web'", "operator 'StringSoundsLike' at position 12 is not supported"),
        (
            f"{X} ForSomeValues:StringEquals {{'a'}}",
            "operator 'ForSomeValues:StringEquals' at position 12 is not supported",
        ),
        (f"{X} 'x' 'y'", "operator \"'x'\" at position 12 is not supported"),
        ("ActionMatches{'a' 'b'}", "expected '}' at position 18, found \"'b'\""),
        (f"{X} StringEquals {X}", "comparing two attributes at position 12 is not supported"),
        (f"'a' StringEquals {X}", "attribute on the right of 'StringEquals' is not supported"),
        ("'a' StringEquals 'b'", "comparison at position 4 has no attribute"),
        ("foo StringEquals 'b'", "expected a value at position 0, found 'foo'"),
        (f"{X} StringEquals )", "expected a value at position 25, found ')'"),
        (f"{X} StringEquals 'a' ;", "unexpected character ';' at position 28"),
        (f"{X} StringEquals 'a' ;;", "unexpected character ';' at position 28"),
    ],
)
def test_unreadable_conditions_say_what_and_where(condition: str, message: str) -> None:
    with pytest.raises(ConditionError) as error:
        parse_condition(condition)
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("condition", "attributes", "message"),
    [
        (f"{X} NumericEquals 'abc'", {X: ("web",)}, "NumericEquals needs numbers, got 'web' and 'abc'"),
        (
            f"{X} StringEquals {{'a', 'b'}}",
            {X: ("a",)},
            "StringEquals takes one value; use a ForAnyOfAnyValues: operator for a set",
        ),
        (f"{X} StringEquals 'a'", {"bad": ("x",)}, "attribute 'bad' does not parse"),
        (
            f"{X} StringEquals 'a'",
            {"@Resource[x]": ("a",)},
            "attribute @Request[x] is not one pullwatch can evaluate",
        ),
    ],
)
def test_conditions_that_cannot_be_evaluated_say_why(
    condition: str, attributes: dict[str, tuple[str, ...]], message: str
) -> None:
    with pytest.raises(ConditionError) as error:
        evaluate_condition(parse_condition(condition), CONTENT_READ, attributes)
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("op", "left", "right", "expected"),
    [
        ("NumericEquals", "10", "10", True),
        ("NumericEquals", "10", "11", False),
        ("NumericNotEquals", "10", "10", False),
        ("NumericNotEquals", "10", "11", True),
        ("NumericLessThan", "10", "10", False),
        ("NumericLessThan", "9", "10", True),
        ("NumericLessThanEquals", "10", "10", True),
        ("NumericLessThanEquals", "11", "10", False),
        ("NumericGreaterThan", "10", "10", False),
        ("NumericGreaterThan", "11", "10", True),
        ("NumericGreaterThanEquals", "10", "10", True),
        ("NumericGreaterThanEquals", "9", "10", False),
        ("numericequals", "1.50", "1.5", True),  # operator names are case-insensitive
        ("StringNotEqualsIgnoreCase", "WEB", "web", False),
        ("StringNotLike", "web1", "web?", False),
        ("StringNotLikeIgnoreCase", "WEB1", "web?", False),
        ("StringNotStartsWith", "web", "we", False),
        ("StringStartsWith", "web", "WE", False),
    ],
)
def test_operators_at_their_boundaries(op: str, left: str, right: str, expected: bool) -> None:
    literal = right if right.replace(".", "").isdigit() else f"'{right}'"
    assert evaluate_condition(parse_condition(f"{X} {op} {literal}"), CONTENT_READ, {X: (left,)}) is expected


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("web\\*", "web*", True),  # an escaped * is a literal star
        ("web\\*", "webx", False),
        ("a\\?b", "a?b", True),
        ("a\\?b", "axb", False),
        ("a\\*b*", "a*bcd", True),  # matching goes on after an escape
        ("a\\*b*", "axbcd", False),
        ("web\\\\", "web\\", True),  # an escaped backslash at the end is a literal backslash
        ("w\\eb", "w\\eb", True),  # so is one before another character
        ("a.b", "axb", False),  # regex syntax is literal
        ("a\\Xb", "a\\Xb", True),  # only * and ? can be escaped: the backslash stays
        ("a?c", "a\nc", True),
    ],
)
def test_string_like_wildcards_and_escapes(pattern: str, value: str, expected: bool) -> None:
    expr = parse_condition(f"{X} StringLike '{pattern}'")  # backslashes kept as written
    assert evaluate_condition(expr, CONTENT_READ, {X: (value,)}) is expected


def test_attribute_names_compare_case_insensitively_but_sources_differ() -> None:
    expr = parse_condition(
        "@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringEquals 'web'"
    )
    attributes = {"@REQUEST[microsoft.containerregistry/registries/repositories:NAME]": ("web",)}
    assert evaluate_condition(expr, CONTENT_READ, attributes)
    with pytest.raises(ConditionError):
        evaluate_condition(
            expr,
            CONTENT_READ,
            {"@Resource[Microsoft.ContainerRegistry/registries/repositories:name]": ("web",)},
        )


def test_a_single_valued_operator_on_an_empty_attribute_is_false() -> None:
    assert not evaluate_condition(parse_condition(f"{X} StringNotEquals 'a'"), CONTENT_READ, {X: ()})


@pytest.mark.parametrize(
    ("condition", "sub_operation", "expected"),
    [
        ("SubOperationMatches{'Blob.List'}", "blob.list", True),
        ("SubOperationMatches{'Blob.List'}", "Blob.Read", False),
        ("SubOperationMatches{'Blob.List'}", None, False),
        (f"SubOperationMatches{{'Blob.List'}} AND {X} StringEquals 'a'", "Blob.List", True),
        (f"SubOperationMatches{{'Blob.List'}} OR {X} StringEquals 'b'", "Blob.List", True),
        ("NOT SubOperationMatches{'Blob.List'}", "Blob.List", False),
        ("!(SubOperationMatches{'Blob.List'})", "Blob.Read", True),
    ],
)
def test_sub_operations_reach_every_level_of_a_condition(
    condition: str, sub_operation: str | None, expected: bool
) -> None:
    assert (
        evaluate_condition(parse_condition(condition), CONTENT_READ, {X: ("a",)}, sub_operation) is expected
    )


def test_generated_condition_text_is_exact() -> None:
    attr = "@Request[Microsoft.ContainerRegistry/registries/repositories:name]"
    assert repository_condition(["web", "api", "team-a/", "web"]) == (
        f"((!(ActionMatches{{'{CONTENT_READ}'}}) AND !(ActionMatches{{'{METADATA_READ}'}}))"
        f" OR ({attr} ForAnyOfAnyValues:StringEqualsIgnoreCase {{'api', 'web'}}"
        f" OR {attr} StringStartsWithIgnoreCase 'team-a/'))"
    )
    assert repository_condition(["team-b/", "team-a/"]).endswith(
        f" OR ({attr} StringStartsWithIgnoreCase 'team-a/' OR {attr} StringStartsWithIgnoreCase 'team-b/'))"
    )
    assert repository_condition([]).endswith(" OR (false))")


def test_symbolic_operators_and_surrounding_whitespace() -> None:
    either = parse_condition(f"  {X} StringEquals 'a' || {X} StringEquals 'b'  ")
    assert evaluate_condition(either, CONTENT_READ, {X: ("b",)})
    assert not evaluate_condition(either, CONTENT_READ, {X: ("c",)})
    both = parse_condition(f"{X} StringStartsWith 'a' && {X} StringEquals 'ab'\n")
    assert evaluate_condition(both, CONTENT_READ, {X: ("ab",)})
    assert not evaluate_condition(both, CONTENT_READ, {X: ("ac",)})
