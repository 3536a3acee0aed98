"""Slack Block Kit digests: golden payloads, Slack's limits, overflow, grouping and scrubbing."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sandbox.sink import validate_slack
from shared.cli import cli
from shared.compare import Changes
from shared.findings import Finding, dumps
from shared.render import ClusterMeta, Digest, build_digest, payload_for
from shared.render.slack import MAX_BLOCKS, MAX_HEADER, MAX_SECTION, slack_payload

GOLDEN = Path(__file__).parent / "golden"
UPDATE = bool(os.environ.get("PULLWATCH_UPDATE_GOLDEN"))
CODE_MARK = re.compile(r"`([A-Z_]{6,})`")


def golden_digest(*, reminder: bool) -> Digest:
    doc = json.loads((GOLDEN / "changes.json").read_text())
    changes = {
        target: Changes(
            **{
                kind: tuple(Finding.from_dict(f) for f in parts.get(kind, []))
                for kind in ("new", "still_open", "resolved")
            }
        )
        for target, parts in doc["clusters"].items()
    }
    meta = {
        t: ClusterMeta.from_id(t, tenant=doc["tenant"], tags=m.get("tags")) for t, m in doc["meta"].items()
    }
    return build_digest(changes, meta, reminder=reminder)


def check_golden(name: str, payload: dict[str, Any]) -> None:
    path = GOLDEN / name
    text = json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
    if UPDATE or not path.exists():
        path.write_text(text)
    assert json.loads(path.read_text()) == payload, (
        f"{name} changed: rerun with PULLWATCH_UPDATE_GOLDEN=1 and review"
    )


def check_limits(payload: dict[str, Any]) -> None:
    assert isinstance(payload["text"], str) and payload["text"].strip()
    assert len(payload["text"]) <= 3000
    blocks = payload["blocks"]
    assert len(blocks) <= MAX_BLOCKS
    for block in blocks:
        if block["type"] == "section":
            assert 1 <= len(block["text"]["text"]) <= MAX_SECTION
            assert len(block.get("fields", [])) <= 10
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text" and len(block["text"]["text"]) <= MAX_HEADER
    assert validate_slack(payload) is None  # the sink's model of Slack accepts it too


def shown_lines(payload: dict[str, Any]) -> int:
    return sum(len(CODE_MARK.findall(b["text"]["text"])) for b in payload["blocks"] if b["type"] == "section")


@pytest.mark.parametrize(("reminder", "name"), [(False, "slack-digest.json"), (True, "slack-reminder.json")])
def test_golden(reminder: bool, name: str) -> None:
    payload = slack_payload(golden_digest(reminder=reminder))
    check_limits(payload)
    check_golden(name, payload)


def test_digest_content() -> None:
    payload = slack_payload(golden_digest(reminder=False))
    texts = "\n".join(b["text"]["text"] for b in payload["blocks"] if b["type"] == "section")
    assert payload["blocks"][0]["type"] == "header"
    assert "*New*" in texts and "*Resolved*" in texts and "*Still open*" not in texts
    portal = (
        "https://portal.azure.com/#@11111111-1111-1111-1111-111111111111/resource/subscriptions/"
        "22222222-2222-2222-2222-222222222222/resourceGroups/rg-prod/providers/"
        "Microsoft.ContainerService/managedClusters/aks-prod"
    )
    assert f"<{portal}|aks-prod>" in texts
    assert "subscription `22222222-2222-2222-2222-222222222222`" in texts
    assert ":red_circle: *Pull identity has no pull role*" in texts
    assert ":white_check_mark: *Image does not exist*" in texts
    assert "```az role assignment create --assignee-object-id 4444" in texts
    assert "cause `rate_limited`" in texts
    assert "&lt;anonymous&gt; &amp; rate limited" in texts  # mrkdwn control characters escaped
    # one entry per root cause: shop/Deployment/web's failing pods are under ROLE_MISSING
    assert "_affects 1 workload: shop/Deployment/web_" in texts
    assert "Deployment/web ·" not in texts
    # one line per code per workload: the two images of shop/Deployment/cart make one line
    assert texts.count("PODS_IMAGE_PULL_FAILING") == 1
    assert "(+1 more image)" in texts and "findings)" not in texts
    # resolved: one line for the root cause and the pull failures that cleared with it
    assert (
        "`IMAGE_NOT_FOUND` — shop/Deployment/api · contosoacr.azurecr.io/api:9.9; pulls work again for 1"
        in texts
    )
    assert "aks-dev" in payload["text"] and "aks-prod" in payload["text"]


def test_reminder_shows_still_open() -> None:
    payload = slack_payload(golden_digest(reminder=True))
    texts = "\n".join(b["text"]["text"] for b in payload["blocks"] if b["type"] == "section")
    assert "*Still open*" in texts and "REGISTRY_FIREWALL_DENIED" in texts
    assert payload["blocks"][0]["text"]["text"].startswith("pullwatch reminder")


def big_audit(n: int = 300) -> list[Finding]:
    out = []
    for i in range(n):
        cluster = (
            f"/subscriptions/s{i % 3}/resourceGroups/rg/providers/Microsoft.ContainerService/"
            f"managedClusters/aks-{i % 3}"
        )
        out.append(
            Finding(
                code="PODS_IMAGE_PULL_FAILING",
                cluster=cluster,
                registry="contosoacr.azurecr.io",
                image=f"contosoacr.azurecr.io/svc{i}:1.0",
                namespace=f"ns{i % 17}",
                workload=f"Deployment/svc-{i}",
                cause="manifest_unknown",
                message=f"Pods of svc-{i} cannot pull: " + "manifest unknown; " * 30,
                remediation=f"az acr import --name contosoacr --source docker.io/library/svc{i}:1.0 "
                + "--force " * 60,
            )
        )
    return out


def test_300_findings_stay_within_slack_limits_with_and_n_more() -> None:
    findings = big_audit()
    payload = payload_for("slack", findings)
    check_limits(payload)
    shown = shown_lines(payload)
    more = re.search(r"and (\d+) more", payload["blocks"][-1]["elements"][0]["text"])
    assert more, "overflow must be summarised"
    assert shown + int(more.group(1)) == 300
    assert shown >= 40  # packing many lines per section, not one block each
    assert len(json.dumps(payload)) < 200_000


def test_small_digest_has_no_overflow_note() -> None:
    payload = payload_for("slack", big_audit(5))
    check_limits(payload)
    assert shown_lines(payload) == 5
    assert "more" not in json.dumps(payload["blocks"][-1])


def test_secrets_are_scrubbed() -> None:
    canary = "canary-value-7781"
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJrdWJlbGV0In0.c2lnbmF0dXJlc2lnbmF0dXJl"
    finding = Finding(
        code="REGISTRY_AUTH_REJECTED",
        cluster="/subscriptions/s/resourceGroups/r/providers/x/y/aks",
        registry="contosoacr.azurecr.io",
        message=(
            f"token {jwt} refused; posted to https://hooks.slack.com/services/T1/B2/zzzzsecret "
            f"and https://prod-1.logic.azure.com/workflows/1/invoke?sig=abc; xoxb-1234-5678-abcdef; "
            f"value {canary}"
        ),
        remediation="docker login --password=hunter2hunter2 contosoacr.azurecr.io",
    )
    digest = build_digest({finding.cluster or "": Changes(new=(finding,))})
    payload = slack_payload(digest, secrets=(canary,))
    text = json.dumps(payload)
    for secret in (jwt, "zzzzsecret", "sig=abc", "xoxb-1234", "hunter2hunter2", canary, "hooks.slack.com"):
        assert secret not in text
    assert "--password=[redacted]" in text
    check_limits(payload)


def test_render_command_prints_the_payload(tmp_path: Path) -> None:
    findings = big_audit(3)
    path = tmp_path / "findings.json"
    path.write_text(dumps(findings))
    result = CliRunner().invoke(cli, ["render", "--format", "slack", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == payload_for("slack", findings)


def test_render_command_rejects_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"findings": [{"code": "NOPE", "message": "x"}]}')
    result = CliRunner().invoke(cli, ["render", "--format", "slack", str(path)])
    assert result.exit_code == 2
    assert "NOPE" in result.output and "Traceback" not in result.output


def test_scrubbing_that_lengthens_a_full_section_still_keeps_it_within_the_limit() -> None:
    secret = "s3cr3t"  # six characters become "[redacted]" (ten): every occurrence adds four
    findings = [
        Finding(
            code="PODS_IMAGE_PULL_FAILING",
            cluster="/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks",
            registry="contosoacr.azurecr.io",
            image=f"contosoacr.azurecr.io/svc{i}:1.0",
            namespace="shop",
            workload=f"Deployment/svc-{i}",
            message=f"{secret} " * 70,
            remediation=f"kubectl create secret docker-registry pull-{i} --docker-password={secret} "
            + "x" * 700,
        )
        for i in range(6)
    ]
    unscrubbed = payload_for("slack", findings)
    sections = [b["text"]["text"] for b in unscrubbed["blocks"] if b["type"] == "section"]
    assert max(len(t) for t in sections) > MAX_SECTION - 4 * 70  # near the limit before scrubbing
    payload = slack_payload(
        build_digest({findings[0].cluster or "": Changes(new=tuple(findings))}), (secret,)
    )
    check_limits(payload)
    scrubbed = [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"]
    assert secret not in json.dumps(payload)
    assert any(len(t) == MAX_SECTION and t.endswith("…") for t in scrubbed)  # cut after scrubbing
