"""Slack incoming-webhook payload: Block Kit with a plain ``text`` fallback, within Slack's limits.

Limits (tests/data/wire/slack/NOTES.md): 50 blocks per message, section text 3000
characters, header 150 characters (plain text). Lines that do not fit are summarised as
"and N more" in a last context block.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.findings import Severity
from shared.render import KIND_TITLES, NEW, RESOLVED, STILL_OPEN, ClusterBlock, Digest, Line, scrub

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_HEADER = 150
MAX_FALLBACK = 3000
MAX_LINE = 1400  # one finding line, so that at least two fit in a section

MARKS = {
    Severity.ERROR: ":red_circle:",
    Severity.WARNING: ":large_orange_circle:",
    Severity.UNKNOWN: ":grey_question:",
    Severity.INFO: ":large_blue_circle:",
}
RESOLVED_MARK = ":white_check_mark:"


def escape(text: str) -> str:
    """Slack mrkdwn control characters (``& < >``) as entities: applied to every value that came
    from outside where it enters text (so ``<!channel>`` or ``<https://x|y>`` stay literal)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(url: str, text: str) -> str:
    """A mrkdwn link to one of pullwatch's own URLs; ``| < >`` and spaces in it percent-encoded."""
    target = url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E").replace(" ", "%20")
    return f"<{target.replace('&', '&amp;')}|{escape(text)}>"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


def _code(text: str) -> str:
    return "```" + escape(text).replace("```", "'''") + "```"


def line_text(line: Line) -> str:
    """One entry: what is wrong, the fix (one code block per paragraph), the workloads it affects.
    A resolved entry is one line, with the workloads whose pulls cleared with it."""
    mark = RESOLVED_MARK if line.kind == RESOLVED else MARKS[line.severity]
    head = f"{mark} *{escape(line.title)}* `{line.code}` — {escape(line.subject)}"
    if line.count_note:
        head += f" {line.count_note}"
    if line.kind == RESOLVED:
        if line.cleared_note:
            head += f"; {escape(line.cleared_note)}"
        return _cut(head, MAX_LINE)
    body = escape(line.message)
    if line.cause:
        body = f"cause `{escape(line.cause)}`: {body}"
    text = f"{head}\n{_cut(body, 500)}"
    affects = f"\n_{escape(line.affects)}_" if line.affects else ""
    for block in line.fix_blocks:
        text += "\n" + _code(_cut(block, MAX_LINE - len(text) - len(affects) - 20))
    text += affects
    return _cut(text, MAX_LINE) if len(text) > MAX_LINE else text


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, MAX_SECTION)}}


def _cluster_heading(block: ClusterBlock) -> str:
    meta = block.meta
    name = f"*{_link(meta.portal_url, meta.name)}*" if meta.portal_url else f"*{escape(meta.name)}*"
    where = []
    if meta.subscription:
        where.append(f"subscription `{escape(meta.subscription)}`")
    if meta.resource_group:
        where.append(f"resource group `{escape(meta.resource_group)}`")
    return name + (f" — {', '.join(where)}" if where else "")


def _fallback(digest: Digest) -> str:
    # Slack parses the fallback text as mrkdwn too (mentions and links included).
    text = escape(digest.title)
    shown = 0
    for block in digest.clusters:
        for line in block.lines:
            entry = (
                f"\n• {KIND_TITLES[line.kind]}: {escape(block.meta.name)}: "
                f"{escape(line.title)} — {escape(line.subject)}"
            )
            remaining = digest.total - shown
            if len(text) + len(entry) > MAX_FALLBACK - 40:
                return text + f"\n… and {remaining} more"
            text += entry
            shown += 1
    return text


def slack_payload(digest: Digest, secrets: Sequence[str] = ()) -> dict[str, Any]:
    """The ``{"text", "blocks"}`` body for a Slack incoming webhook."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _cut(digest.title, MAX_HEADER), "emoji": True},
        },
    ]
    counts = " · ".join(
        f"{digest.count(k)} {KIND_TITLES[k].lower()}" for k in (NEW, RESOLVED, STILL_OPEN) if digest.count(k)
    )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"{counts or 'nothing to report'} in {len(digest.clusters)} "
                    f"cluster{'s' if len(digest.clusters) != 1 else ''}",
                }
            ],
        }
    )
    # Every section as (text, number of finding lines in it), in order.
    sections: list[tuple[str, int]] = []
    for block in digest.clusters:
        sections.append((_cluster_heading(block), 0))
        for kind in (NEW, RESOLVED, STILL_OPEN):
            lines = block.of(kind)
            if not lines:
                continue
            current, count = f"*{KIND_TITLES[kind]}*", 0
            for line in lines:
                entry = line_text(line)
                sep = "\n\n" if count else "\n"  # a blank line between findings, none after the title
                if len(current) + len(sep) + len(entry) <= MAX_SECTION:
                    current, count = f"{current}{sep}{entry}", count + 1
                else:
                    sections.append((current, count))
                    current, count = entry, 1
            sections.append((current, count))
    if len(blocks) + len(sections) > MAX_BLOCKS:
        sections = sections[: MAX_BLOCKS - 1 - len(blocks)]  # one block left for "and N more"
        while sections and sections[-1][1] == 0:  # a cluster heading with nothing after it
            sections.pop()
    blocks.extend(_section(text) for text, _ in sections)
    shown = sum(count for _, count in sections)
    hidden = digest.total - shown
    if hidden > 0:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"… and {hidden} more (the full list is in pullwatch's JSON report)",
                    }
                ],
            }
        )
    payload: dict[str, Any] = scrub({"text": _fallback(digest), "blocks": blocks}, secrets)
    for out in payload["blocks"]:  # scrubbing may lengthen a text: keep within the limits
        if out["type"] == "section":
            out["text"]["text"] = _cut(out["text"]["text"], MAX_SECTION)
        elif out["type"] == "header":
            out["text"]["text"] = _cut(out["text"]["text"], MAX_HEADER)
    return payload
