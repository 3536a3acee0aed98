"""Teams card layout at its limits: the exact elements of a line and a heading, Markdown kept literal,
text cuts, the byte budget to the byte, "and N more" counts and dropped bare headings."""

from __future__ import annotations

import json
from typing import Any

from shared.findings import Severity
from shared.render import NEW, RESOLVED, ClusterBlock, ClusterMeta, Digest, Line
from shared.render.teams import MAX_TEXT, _more, encode_body, payload_size, teams_payload

AKS = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks-{}"


def line(subject: str = "shop/Deployment/web", kind: str = NEW, **kw: Any) -> Line:
    values: dict[str, Any] = {
        "kind": kind,
        "severity": Severity.ERROR,
        "code": "IMAGE_NOT_FOUND",
        "title": "Image does not exist",
        "subject": subject,
        "cause": None,
        "message": "tag 9 is not in web",
        "remediation": None,
    }
    values.update(kw)
    return Line(**values)


def digest(*blocks: tuple[str, list[Line]]) -> Digest:
    return Digest(
        tuple(ClusterBlock(ClusterMeta.from_id(AKS.format(name)), tuple(lines)) for name, lines in blocks)
    )


def body(payload: dict[str, Any]) -> list[dict[str, Any]]:
    assert payload["type"] == "message"
    [attachment] = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert (card["$schema"], card["type"], card["version"]) == (
        "http://adaptivecards.io/schemas/adaptive-card.json",
        "AdaptiveCard",
        "1.4",
    )
    return list(card["body"])


def text(value: str, **props: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": value, "wrap": True, **props}


def literal(value: str, **props: Any) -> dict[str, Any]:
    """A command line: a monospace TextRun, which Adaptive Cards render without Markdown."""
    return {
        "type": "RichTextBlock",
        "inlines": [{"type": "TextRun", "text": value, "fontType": "Monospace"}],
        **props,
    }


def lines_shown(payload: dict[str, Any]) -> int:
    return sum(1 for e in body(payload) if e["type"] == "Container" and e.get("separator"))


def test_a_new_line_is_head_subject_body_and_remediation() -> None:
    d = digest(("a", [line(cause="manifest_unknown", remediation="az acr import x", count=3)]))
    assert body(teams_payload(d))[4] == {
        "type": "Container",
        "separator": True,
        "items": [
            text(
                "**ERROR** · **Image does not exist** (IMAGE\\_NOT\\_FOUND) (3 findings)", color="Attention"
            ),
            text("shop/Deployment/web", isSubtle=True, spacing="None"),
            text("Cause manifest\\_unknown: tag 9 is not in web", spacing="Small"),
            literal("az acr import x", spacing="Small"),
        ],
    }


def test_a_resolved_line_is_head_and_subject_only() -> None:
    d = digest(("a", [line(kind=RESOLVED, severity=Severity.WARNING, cause="c", remediation="r")]))
    assert body(teams_payload(d))[4]["items"] == [
        text("**Resolved** · **Image does not exist** (IMAGE\\_NOT\\_FOUND)", color="Good"),
        text("shop/Deployment/web", isSubtle=True, spacing="None"),
    ]


def test_markdown_in_finding_text_stays_literal() -> None:
    d = digest(("a", [line("a*b_c[d]e`f\\g", title="*bold*")]))
    items = body(teams_payload(d))[4]["items"]
    assert items[0]["text"].startswith("**ERROR** · **\\*bold\\*** ")
    assert items[1]["text"] == "a\\*b\\_c\\[d\\]e\\`f\\\\g"


def test_texts_are_cut_at_1500_and_messages_at_600_characters() -> None:
    exact = digest(("a", [line(message="m" * 600, remediation="r" * MAX_TEXT)]))
    items = body(teams_payload(exact))[4]["items"]
    assert items[2]["text"] == "m" * 600 and items[3]["inlines"][0]["text"] == "r" * MAX_TEXT
    over = digest(("a", [line(message="m" * 601, remediation="r" * (MAX_TEXT + 1))]))
    items = body(teams_payload(over))[4]["items"]
    assert (
        items[2]["text"] == "m" * 599 + "…" and items[3]["inlines"][0]["text"] == "r" * (MAX_TEXT - 1) + "…"
    )


def test_title_counts_and_cluster_headings() -> None:
    one = body(teams_payload(digest(("a", [line()]))))
    assert one[0] == text("pullwatch: image pulls — 1 new", size="Large", weight="Bolder")
    assert one[1] == text("1 new in 1 cluster", isSubtle=True, spacing="None")
    assert one[2] == {
        "type": "Container",
        "style": "emphasis",
        "spacing": "Large",
        "items": [
            text(f"**[aks-a](https://portal.azure.com/#resource{AKS.format('a')})**", size="Medium"),
            text("subscription s1, resource group rg", isSubtle=True, spacing="None"),
        ],
    }
    assert one[3] == text("New", weight="Bolder", spacing="Medium")
    two = body(teams_payload(digest(("a", [line()]), ("b", [line(kind=RESOLVED)]))))
    assert two[1]["text"] == "1 new · 1 resolved in 2 clusters"
    assert body(teams_payload(Digest(())))[1]["text"] == "nothing to report in 0 clusters"
    bare = Digest((ClusterBlock(ClusterMeta.from_id("aks_x"), (line(),)),))
    assert body(teams_payload(bare))[2]["items"] == [text("**aks\\_x**", size="Medium")]


def test_the_byte_budget_is_exact() -> None:
    lines = [line(f"shop/Deployment/web-{i}") for i in range(5)]
    d = digest(("a", lines))
    everything = teams_payload(d, max_bytes=10**9)
    needed = payload_size(everything) + payload_size(_more(d.total)) + 1
    assert teams_payload(d, max_bytes=needed) == everything
    short = teams_payload(d, max_bytes=needed - 1)
    assert lines_shown(short) == 4
    assert body(short)[-1] == text(
        "… and 1 more (the full list is in pullwatch's JSON report)", isSubtle=True, spacing="Medium"
    )
    assert payload_size(short) <= needed - 1


def test_a_heading_with_none_of_its_lines_shown_is_dropped() -> None:
    d = digest(("a", [line("first")]), ("b", [line("second"), line("third")]))
    everything = teams_payload(d, max_bytes=10**9)
    first_only = teams_payload(digest(("a", [line("first")])), max_bytes=10**9)
    # room for cluster a, and b's headings, but not b's first line
    budget = payload_size(first_only) + payload_size(_more(3)) + 1 + 400
    cut = teams_payload(d, max_bytes=budget)
    assert payload_size(everything) > budget
    assert lines_shown(cut) == 1
    assert body(cut)[-2]["type"] == "Container" and body(cut)[-2].get("separator")  # a line, not a heading
    assert body(cut)[-1]["text"].startswith("… and 2 more")


def test_nothing_fits_but_the_head() -> None:
    d = digest(("a", [line()]))
    cut = teams_payload(d, max_bytes=1)
    assert body(cut)[2:] == [
        text("… and 1 more (the full list is in pullwatch's JSON report)", isSubtle=True, spacing="Medium")
    ]


def test_the_body_is_compact_utf8_json() -> None:
    assert encode_body({"a": ["é…", 1], "b": None}) == '{"a":["é…",1],"b":null}'.encode()
    assert payload_size({"a": "é"}) == len('{"a":"é"}'.encode())


def test_no_space_is_left_before_an_ellipsis() -> None:
    d = digest(("a", [line(remediation="r" * (MAX_TEXT - 2) + " " + "x" * 5)]))
    fix = body(teams_payload(d))[4]["items"][3]
    assert fix["type"] == "RichTextBlock"
    assert [run["text"] for run in fix["inlines"]] == ["r" * (MAX_TEXT - 2) + "…"]


def test_given_secrets_are_scrubbed_from_lines_and_the_head() -> None:
    d = digest(("a", [line(message="token canary-value-7781 refused")]))
    payload = teams_payload(d, secrets=("canary-value-7781", "pullwatch"))
    assert "canary-value-7781" not in json.dumps(payload)
    assert body(payload)[4]["items"][2]["text"] == "token [redacted] refused"
    assert body(payload)[0]["text"] == "[redacted]: image pulls — 1 new"


def test_a_fix_of_several_lines_is_one_monospace_row_per_line() -> None:
    d = digest(("a", [line(remediation="az login\naz acr import x \\\n  --force")]))
    assert body(teams_payload(d))[4]["items"][3:] == [
        literal("az login", spacing="Small"),
        literal("az acr import x \\", spacing="None"),
        literal("  --force", spacing="None"),
    ]


def test_list_marks_at_the_start_of_a_line_stay_literal() -> None:
    d = digest(("a", [line(message="- one\n  2. two\n+three *x")]))
    assert body(teams_payload(d))[4]["items"][2]["text"] == "\\- one\n  \\2. two\n+three \\*x"


def test_a_portal_link_keeps_parentheses_and_spaces_inside_its_target() -> None:
    meta = ClusterMeta("/subscriptions/s1/resourceGroups/rg (a) b/providers/x", "aks")
    payload = teams_payload(Digest((ClusterBlock(meta, (line(),)),)))
    assert (
        "[aks](https://portal.azure.com/#resource/subscriptions/s1/resourceGroups/rg%20%28a%29%20b/providers/x)"
        in (json.dumps(payload, ensure_ascii=False))
    )
