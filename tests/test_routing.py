"""PULLWATCH_ROUTES: which channels hear about which clusters, and clear errors for bad routes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.config import ConfigError, Settings
from shared.findings import Severity
from shared.routing import Channel, Router

PROD = (
    "/subscriptions/aaaa/resourceGroups/rg-prod/providers/Microsoft.ContainerService/managedClusters/aks-prod"
)
DEV = "/subscriptions/bbbb/resourceGroups/rg-dev/providers/Microsoft.ContainerService/managedClusters/aks-dev"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/canarysecret0001"
TEAMS_URL = (
    "https://prod-01.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig=canarysig"
)


def settings(routes: list[Any] | None = None, **env: str) -> Settings:
    base = {
        "PULLWATCH_SLACK_WEBHOOK_URL": SLACK_URL,
        "PULLWATCH_TEAMS_WEBHOOK_URL": TEAMS_URL,
        "OPS_SLACK": "https://hooks.slack.com/services/T1/B1/opssecret",
        "SEC_TEAMS": TEAMS_URL + "2",
        "PULLWATCH_ROUTES": json.dumps(routes or []),
    }
    base.update(env)
    return Settings.from_env(base)


def names(channels: dict[Channel, Severity]) -> dict[str, str]:
    return {c.name: s.value for c, s in channels.items()}


def test_default_channels_when_no_route_matches() -> None:
    router = Router(
        settings([{"match": {"cluster": "aks-prod"}, "slack": "OPS_SLACK"}], PULLWATCH_MIN_SEVERITY="error")
    )
    assert names(router.channels_for(DEV)) == {
        "slack:PULLWATCH_SLACK_WEBHOOK_URL": "error",
        "teams:PULLWATCH_TEAMS_WEBHOOK_URL": "error",
    }
    assert names(router.channels_for(PROD)) == {"slack:OPS_SLACK": "warning"}


def test_no_default_channel_without_a_url() -> None:
    router = Router(settings(PULLWATCH_SLACK_WEBHOOK_URL="", PULLWATCH_TEAMS_WEBHOOK_URL=""))
    assert router.channels_for(PROD) == {}


def test_match_by_glob_on_name_or_resource_id_case_insensitive() -> None:
    router = Router(
        settings(
            [
                {"match": {"cluster": "AKS-P*"}, "slack": "OPS_SLACK"},
                {"match": {"cluster": "*/resourceGroups/rg-dev/*"}, "teams": "SEC_TEAMS"},
            ]
        )
    )
    assert names(router.channels_for(PROD)) == {"slack:OPS_SLACK": "warning"}
    assert names(router.channels_for(DEV)) == {"teams:SEC_TEAMS": "warning"}


def test_match_by_subscription_and_tag() -> None:
    router = Router(
        settings(
            [
                {"match": {"subscription": "AAAA"}, "slack": "OPS_SLACK"},
                {"match": {"tag": "team=payments"}, "teams": ["SEC_TEAMS"], "min_severity": "error"},
            ]
        )
    )
    assert names(router.channels_for(PROD)) == {"slack:OPS_SLACK": "warning"}
    assert names(router.channels_for(DEV, tags={"Team": "payments"})) == {"teams:SEC_TEAMS": "error"}
    assert names(router.channels_for(DEV, tags={"team": "search"})) == {
        "slack:PULLWATCH_SLACK_WEBHOOK_URL": "warning",
        "teams:PULLWATCH_TEAMS_WEBHOOK_URL": "warning",
    }


def test_all_match_keys_must_fit() -> None:
    router = Router(settings([{"match": {"cluster": "aks-*", "tag": "env=prod"}, "slack": "OPS_SLACK"}]))
    assert "slack:OPS_SLACK" in names(router.channels_for(PROD, tags={"env": "prod"}))
    assert "slack:OPS_SLACK" not in names(router.channels_for(PROD, tags={"env": "dev"}))


def test_several_routes_and_destinations_union_with_least_severity() -> None:
    router = Router(
        settings(
            [
                {
                    "match": {"cluster": "aks-prod"},
                    "min_severity": "error",
                    "slack": ["OPS_SLACK", "PULLWATCH_SLACK_WEBHOOK_URL"],
                },
                {"match": {}, "min_severity": "info", "slack": "OPS_SLACK", "teams": "SEC_TEAMS"},
            ]
        )
    )
    assert names(router.channels_for(PROD)) == {
        "slack:OPS_SLACK": "info",
        "slack:PULLWATCH_SLACK_WEBHOOK_URL": "error",
        "teams:SEC_TEAMS": "info",
    }


def test_url_comes_from_the_named_setting() -> None:
    router = Router(settings([{"slack": "OPS_SLACK"}]))
    assert router.url(Channel("slack", "OPS_SLACK")) == "https://hooks.slack.com/services/T1/B1/opssecret"
    assert router.url(Channel("teams", "PULLWATCH_TEAMS_WEBHOOK_URL")) == TEAMS_URL


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        ([{"slack": "OPS_SLACK"}, {"match": {"cluster": 3}, "slack": "OPS_SLACK"}], "route 1: match.cluster"),
        ([{"match": {"namespace": "x"}, "slack": "OPS_SLACK"}], "route 0: match.namespace"),
        ([{"match": {"tag": "novalue"}, "slack": "OPS_SLACK"}], "route 0: match.tag: expected key=value"),
        ([{"min_severity": "urgent", "slack": "OPS_SLACK"}], "route 0: min_severity"),
        ([{"match": {}}], "route 0: slack/teams"),
        ([{"slack": "MISSING_SETTING"}], "route 0: slack: app setting MISSING_SETTING is not set"),
        ([{"teams": ["SEC_TEAMS", 5]}], "route 0: teams[1]"),
        ([{"slack": "OPS_SLACK", "chanel": "x"}], "route 0: chanel: unknown field"),
        (["not an object"], "route 0: route: expected a JSON object"),
    ],
)
def test_bad_routes_name_the_route_and_field(routes: list[Any], expected: str) -> None:
    with pytest.raises(ConfigError, match="PULLWATCH_ROUTES") as caught:
        Router(settings(routes))
    assert expected in str(caught.value)


def test_a_url_in_place_of_a_setting_name_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        Router(settings([{"slack": SLACK_URL}]))
    assert "route 0: slack" in str(caught.value)
    assert "canarysecret0001" not in str(caught.value)
    assert "hooks.slack.com" not in str(caught.value)
