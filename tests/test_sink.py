"""The sandbox webhook sink answers like Slack and Teams: scripts, validation, real connection resets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox.sink import WebhookSink

pytestmark = pytest.mark.sandbox

SLACK_OK = {"text": "hello", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]}
CARD = {
    "type": "message",
    "attachments": [
        {
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": None,
            "content": {
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [{"type": "TextBlock", "text": "hi"}],
            },
        }
    ],
}


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    server = WebhookSink({"slack": {"fail": [429, "channel_is_archived", 500]}, "teams": {"fail": [503]}})
    try:
        yield server
    finally:
        server.stop()


def post(url: str, payload: Any) -> requests.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=5)


def test_urls_look_like_secrets_and_bind_loopback(sink: WebhookSink) -> None:
    slack, teams = sink.url("slack"), sink.url("teams")
    assert slack.startswith("http://127.0.0.1:") and "/slack/services/T0SANDBOX/B0SANDBOX/" in slack
    assert "/teams/workflows/" in teams and "?sig=" in teams
    assert len(slack.rsplit("/", 1)[1]) >= 16
    with WebhookSink() as other:
        assert other.url("slack").split("/")[-1] != slack.split("/")[-1]  # random per sink


def test_scripted_answers_in_order_then_success(sink: WebhookSink) -> None:
    first = post(sink.url("slack"), SLACK_OK)
    assert (first.status_code, first.headers["Retry-After"]) == (429, "1")
    second = post(sink.url("slack"), SLACK_OK)
    assert (second.status_code, second.text) == (410, "channel_is_archived")
    assert post(sink.url("slack"), SLACK_OK).status_code == 500
    ok = post(sink.url("slack"), SLACK_OK)
    assert (ok.status_code, ok.text) == (200, "ok")
    assert post(sink.url("teams"), CARD).status_code == 503
    accepted = post(sink.url("teams"), CARD)
    assert (accepted.status_code, accepted.text) == (202, "")
    assert [(r["sink"], r["status"]) for r in sink.records] == [
        ("slack", 429),
        ("slack", 410),
        ("slack", 500),
        ("slack", 200),
        ("teams", 503),
        ("teams", 202),
    ]
    assert sink.records[-1]["payload"] == CARD


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"blocks": SLACK_OK["blocks"]}, "no_text"),
        ({"text": ""}, "no_text"),
        ({"text": "x", "blocks": [{"type": "divider"}] * 51}, "invalid_blocks"),
        (
            {"text": "x", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "a" * 3001}}]},
            "invalid_blocks",
        ),
        (
            {"text": "x", "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]},
            "invalid_blocks",
        ),
        (
            {"text": "x", "blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}]},
            "invalid_blocks",
        ),
        (
            {"text": "x", "blocks": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}]},
            "invalid_blocks",
        ),
        (b"{not json", "invalid_payload"),
    ],
)
def test_slack_rejects_what_slack_rejects(payload: Any, error: str) -> None:
    with WebhookSink() as sink:
        answer = post(sink.url("slack"), payload)
        assert (answer.status_code, answer.text) == (400, error)
        assert post(sink.url("slack"), {"text": "x", "blocks": [{"type": "divider"}] * 50}).text == "ok"


@pytest.mark.parametrize(
    "change",
    [
        lambda p: {**p, "type": "card"},
        lambda p: {**p, "attachments": []},
        lambda p: {
            **p,
            "attachments": [{**p["attachments"][0], "contentType": "application/vnd.microsoft.card.hero"}],
        },
        lambda p: {
            **p,
            "attachments": [
                {**p["attachments"][0], "content": {**p["attachments"][0]["content"], "version": "1.6"}}
            ],
        },
        lambda p: {
            **p,
            "attachments": [
                {
                    **p["attachments"][0],
                    "content": {
                        **p["attachments"][0]["content"],
                        "actions": [{"type": "Action.Submit", "title": "go"}],
                    },
                }
            ],
        },
        lambda p: {
            **p,
            "attachments": [
                {
                    **p["attachments"][0],
                    "content": {
                        **p["attachments"][0]["content"],
                        "body": [{"type": "TextBlock", "text": "x" * 29_000}],
                    },
                }
            ],
        },
    ],
)
def test_teams_rejects_what_a_workflow_rejects(change: Any) -> None:
    with WebhookSink() as sink:
        assert post(sink.url("teams"), change(CARD)).status_code == 400
        assert post(sink.url("teams"), CARD).status_code == 202


def test_wrong_path_is_refused_like_a_revoked_webhook(sink: WebhookSink) -> None:
    base = sink.url("slack").rsplit("/", 1)[0]
    answer = post(base + "/guessed", SLACK_OK)
    assert (answer.status_code, answer.text) == (404, "no_service")
    teams = sink.url("teams").split("?")[0]
    assert post(teams, CARD).status_code == 401


def test_down_resets_connections_then_recovers() -> None:
    with WebhookSink({"slack": {"down": True}}) as sink:
        with pytest.raises(requests.ConnectionError):
            post(sink.url("slack"), SLACK_OK)
        assert post(sink.url("teams"), CARD).status_code == 202  # the other kind still answers
        sink.set_down("slack", False)
        assert post(sink.url("slack"), SLACK_OK).text == "ok"
        sink.set_down("teams", True)
        with pytest.raises(requests.ConnectionError):
            post(sink.url("teams"), CARD)
        assert [r["sink"] for r in sink.records] == ["teams", "slack"]
        assert sink.refused == {"slack": 1, "teams": 1}


def test_unknown_kind_in_script_is_an_error() -> None:
    with pytest.raises(ValueError, match="discord"):
        WebhookSink({"discord": {}})
