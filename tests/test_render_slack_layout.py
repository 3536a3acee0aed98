"""Slack layout at its limits: the exact line text, sections filled to exactly 3,000 characters,
50 blocks exactly, "and N more" counts, the plain-text fallback's cut, and cluster headings."""

from __future__ import annotations

import re
from typing import Any

from shared.findings import Severity
from shared.render import NEW, RESOLVED, ClusterBlock, ClusterMeta, Digest, Line
from shared.render.slack import MAX_BLOCKS, MAX_FALLBACK, MAX_LINE, MAX_SECTION, line_text, slack_payload

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


def resolved_of_length(n: int, i: int = 0) -> Line:
    """A resolved line whose Slack text is exactly ``n`` characters."""
    base = len(line_text(line(f"{i}", RESOLVED)))
    return line(f"{i}" + "x" * (n - base), RESOLVED)


def digest(*blocks: tuple[str, list[Line]]) -> Digest:
    return Digest(
        tuple(ClusterBlock(ClusterMeta.from_id(AKS.format(name)), tuple(lines)) for name, lines in blocks)
    )


def sections(payload: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"]


def more_note(payload: dict[str, Any]) -> str | None:
    last = payload["blocks"][-1]
    if last["type"] != "context" or len(payload["blocks"]) == 2:
        return None
    assert last == {"type": "context", "elements": [{"type": "mrkdwn", "text": last["elements"][0]["text"]}]}
    return str(last["elements"][0]["text"])


# --- one line ------------------------------------------------------------------------------------


def test_a_new_line_has_mark_title_code_subject_cause_message_and_remediation() -> None:
    assert line_text(line(cause="manifest_unknown", remediation="az acr import ```x```", count=3)) == (
        ":red_circle: *Image does not exist* `IMAGE_NOT_FOUND` — shop/Deployment/web (3 findings)\n"
        "cause `manifest_unknown`: tag 9 is not in web\n"
        "```az acr import '''x'''```"
    )


def test_a_resolved_line_is_its_head_only() -> None:
    assert line_text(line(kind=RESOLVED, remediation="x", cause="c")) == (
        ":white_check_mark: *Image does not exist* `IMAGE_NOT_FOUND` — shop/Deployment/web"
    )


def test_the_message_is_cut_at_500_characters() -> None:
    exact = line_text(line(message="m" * 500))
    assert exact.endswith("\n" + "m" * 500)
    over = line_text(line(message="m" * 501))
    assert over.endswith("\n" + "m" * 499 + "…")


def test_a_long_remediation_is_cut_to_leave_the_code_block_closed() -> None:
    head_and_body = line_text(line(message="m" * 500))
    text = line_text(line(message="m" * 500, remediation="r" * 2000))
    assert text.endswith("…```") and len(text) <= MAX_LINE
    code = text[len(head_and_body) + 1 :]
    assert code == "```" + "r" * (MAX_LINE - len(head_and_body) - 20 - 1) + "…```"


def test_a_line_is_cut_at_1400_characters_and_not_before() -> None:
    base = len(line_text(line("s")))
    exact = line_text(line("s" + "x" * (MAX_LINE - base)))
    assert len(exact) == MAX_LINE and not exact.endswith("…")
    long = line_text(line("s" * 1500, remediation="r" * 50))
    assert len(long) == MAX_LINE and long.endswith("…")
    assert "```" not in long[-30:]


def test_a_remediation_with_no_room_left_is_an_ellipsis() -> None:
    base = len(line_text(line("s")))
    subject = "s" + "x" * (MAX_LINE - 15 - base)  # head and body leave 15 characters: less than 20
    text = line_text(line(subject, remediation="r" * 50))
    assert text == line_text(line(subject)) + "\n```…```"


# --- sections and blocks -------------------------------------------------------------------------


def test_a_section_is_filled_to_exactly_3000_characters() -> None:
    title = "*Resolved*\n"
    lengths = [1000, 1000, MAX_SECTION - len(title) - 1000 - 1000 - 4]  # two "\n\n" separators
    payload = slack_payload(digest(("a", [resolved_of_length(n, i) for i, n in enumerate(lengths)])))
    assert [len(t) for t in sections(payload)][1:] == [MAX_SECTION]
    assert not sections(payload)[1].endswith("…")


def test_one_character_more_starts_a_new_section_without_the_separator() -> None:
    title = "*Resolved*\n"
    lengths = [1000, 1000, MAX_SECTION - len(title) - 1000 - 1000 - 4 + 1]
    lines = [resolved_of_length(n, i) for i, n in enumerate(lengths)]
    payload = slack_payload(digest(("a", lines)))
    assert sections(payload)[2] == line_text(lines[2])  # starts the next section, no title, no separator
    assert len(sections(payload)[1]) == len(title) + 1000 + 2 + 1000
    assert more_note(payload) is None


def test_exactly_50_blocks_show_everything() -> None:
    lines = [resolved_of_length(MAX_LINE, i) for i in range(94)]  # two per section: 47 sections
    payload = slack_payload(digest(("a", lines)))
    assert len(payload["blocks"]) == MAX_BLOCKS
    assert more_note(payload) is None
    assert sum(t.count("`IMAGE_NOT_FOUND`") for t in sections(payload)) == 94


def test_one_line_that_does_not_fit_is_counted_as_one_more() -> None:
    first = [resolved_of_length(MAX_LINE, i) for i in range(92)]  # heading + 46 sections
    payload = slack_payload(digest(("a", first), ("b", [line("last")])))
    assert len(payload["blocks"]) == MAX_BLOCKS
    assert more_note(payload) == "… and 1 more (the full list is in pullwatch's JSON report)"
    assert sum(t.count("`IMAGE_NOT_FOUND`") for t in sections(payload)) == 92


def test_a_cluster_heading_with_none_of_its_lines_shown_is_dropped() -> None:
    first = [resolved_of_length(MAX_LINE, i) for i in range(90)]  # heading + 45 sections
    second = [resolved_of_length(MAX_LINE, 100 + i) for i in range(4)]
    payload = slack_payload(digest(("a", first), ("b", second)))
    texts = sections(payload)
    assert len(texts) == 46 and "aks-b" not in "".join(texts)
    assert more_note(payload) == "… and 4 more (the full list is in pullwatch's JSON report)"


def test_context_counts_and_cluster_headings() -> None:
    one = slack_payload(digest(("a", [line()])))
    assert one["blocks"][1] == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "1 new in 1 cluster"}],
    }
    two = slack_payload(digest(("a", [line()]), ("b", [line(kind=RESOLVED)])))
    assert two["blocks"][1]["elements"][0]["text"] == "1 new · 1 resolved in 2 clusters"
    empty = slack_payload(Digest(()))
    assert empty["blocks"][1]["elements"][0]["text"] == "nothing to report in 0 clusters"
    bare = Digest((ClusterBlock(ClusterMeta.from_id("aks<&>"), (line(),)),))
    assert sections(slack_payload(bare))[0] == "*aks&lt;&amp;&gt;*"
    assert sections(one)[0] == (
        "*<https://portal.azure.com/#resource"
        + AKS.format("a")
        + "|aks-a>* — subscription `s1`, resource group `rg`"
    )


# --- the plain-text fallback ---------------------------------------------------------------------


def fallback_entry(block: str, ln: Line) -> str:
    return f"\n• {'Resolved' if ln.kind == RESOLVED else 'New'}: aks-{block}: {ln.title} — {ln.subject}"


def test_the_fallback_text_lists_lines_up_to_its_limit_then_says_how_many_more() -> None:
    lines = [line(f"shop/Deployment/web-{i:03d}" + "x" * 40) for i in range(200)]
    d = digest(("a", lines))
    text = slack_payload(d)["text"]
    shown = text.count("\n• ")
    more = re.search(r"\n… and (\d+) more$", text)
    assert more and shown + int(more.group(1)) == 200
    assert text.startswith(d.title + fallback_entry("a", lines[0]))
    assert len(text) <= MAX_FALLBACK


def test_the_fallback_text_fits_exactly_at_its_limit() -> None:
    d0 = digest(("a", [line("s")]))
    room = MAX_FALLBACK - 40 - len(d0.title) - len(fallback_entry("a", line("s")))
    exact = digest(("a", [line("s" + "x" * room)]))
    assert slack_payload(exact)["text"] == exact.title + fallback_entry("a", line("s" + "x" * room))
    over = digest(("a", [line("s" + "x" * (room + 1))]))
    assert slack_payload(over)["text"] == over.title + "\n… and 1 more"


def test_no_space_is_left_before_an_ellipsis() -> None:
    assert line_text(line(message="m" * 498 + " " + "x" * 10)).endswith("\n" + "m" * 498 + "…")


def test_a_portal_link_percent_encodes_what_would_end_or_split_it() -> None:
    meta = ClusterMeta("/subscriptions/s1/resourceGroups/rg|a<b>c d&e/x", "aks")
    texts = sections(slack_payload(Digest((ClusterBlock(meta, (line(),)),))))
    link = (
        "<https://portal.azure.com/#resource/subscriptions/s1/resourceGroups/rg%7Ca%3Cb%3Ec%20d&amp;e/x|aks>"
    )
    assert any(link in t for t in texts), texts


def test_a_long_fix_is_cut_so_the_affected_workloads_still_show() -> None:
    text = line_text(line(remediation="r" * 5000, affected=("shop/Deployment/api", "shop/Deployment/web")))
    assert len(text) <= MAX_LINE
    assert text.endswith("…```\n_affects 2 workloads: shop/Deployment/api, shop/Deployment/web_")
