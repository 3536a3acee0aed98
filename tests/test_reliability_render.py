"""Values that came from outside (image names, namespaces, workloads, registry hosts, kubelet
messages) reach Slack and Teams as literal text: no mention, link or emphasis of their own."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from shared.compare import Changes
from shared.findings import Finding
from shared.render import ClusterMeta, build_digest, render

pytestmark = pytest.mark.reliability

AKS = "/subscriptions/22222222-2222-2222-2222-222222222222/resourceGroups/rg-prod/providers/Microsoft.ContainerService/managedClusters/aks-prod"
IMAGE = "evil.example/<!channel>/[text](https://evil)/*bold*/_it_:1"
HOSTILE = ("<!channel>", "<@U123>", "<!here>", "[text](https://evil)", "[click](https://evil)")


def hostile_findings() -> list[Finding]:
    return [
        Finding(
            code="IMAGE_REFERENCE_INVALID",
            cluster=AKS,
            image=IMAGE,
            namespace="*ns*<@U123>",
            workload="Deployment/<!here>",
            message=f'Failed to pull image "{IMAGE}": [click](https://evil) <!here> *urgent* _now_',
            remediation=f"kubectl -n '*ns*<@U123>' set image deployment/x x={IMAGE}",
        ),
        Finding(
            code="REGISTRY_DNS_FAILURE",
            cluster=AKS,
            registry="<@U123>.evil.example",
            message="lookup <@U123>.evil.example: no such host\n- a list item\n1. a numbered one",
        ),
    ]


def payload(fmt: str) -> dict[str, Any]:
    digest = build_digest({AKS: Changes(new=tuple(hostile_findings()))}, {AKS: ClusterMeta.from_id(AKS)})
    return render(fmt, digest)


def slack_texts(body: dict[str, Any]) -> list[str]:
    texts = [body["text"]]
    for block in body["blocks"]:
        if isinstance(block.get("text"), dict):
            texts.append(block["text"]["text"])
        texts += [e["text"] for e in block.get("elements", []) if isinstance(e, dict) and "text" in e]
    return texts


def teams_texts(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["text"]] if node.get("type") == "TextBlock" else []
        return own + [t for v in node.values() for t in teams_texts(v)]
    if isinstance(node, list):
        return [t for v in node for t in teams_texts(v)]
    return []


def test_slack_fallback_and_blocks_carry_outside_values_as_literal_text() -> None:
    body = payload("slack")
    texts = slack_texts(body)
    assert "&lt;!channel&gt;" in body["text"], "the fallback names the image, escaped"
    for text in texts:
        for attack in ("<!channel>", "<@U123>", "<!here>"):
            assert attack not in text, f"{attack} reaches Slack unescaped in {text!r}"
        # every remaining < opens one of pullwatch's own links (the portal), never an outside one
        assert all(link.startswith("https://portal.azure.com/") for link in re.findall(r"<([^>|]*)", text))
    assert "&lt;@U123&gt;" in json.dumps(body["blocks"])


def test_teams_text_blocks_carry_outside_values_as_literal_text() -> None:
    texts = teams_texts(payload("teams"))
    joined = "\n".join(texts)
    for attack in ("[text](https://evil)", "[click](https://evil)"):
        assert attack not in joined, f"a link from outside reaches a TextBlock: {attack}"
    for text in texts:
        # emphasis markers from outside are escaped: every * or _ is preceded by a backslash,
        # except pullwatch's own **bold** labels
        assert not re.search(r"(?<![\\*])\*(?!\*)", text.replace("**", "")), text
        assert not re.search(r"(?<!\\)_", text), text
        assert not re.search(r"(?m)^(?:- |\d+\. )", text), f"a list from outside: {text!r}"
    assert r"\[text\]" in joined and r"\*bold\*" in joined
