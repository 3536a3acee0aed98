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
