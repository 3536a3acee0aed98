"""Teams Workflows webhook payload: one Adaptive Card (version 1.4) in a ``message`` envelope.

Constraints (tests/data/wire/teams/NOTES.md): the whole payload at most 28 KB, no
``Action.Submit`` / ``Action.Execute``; Workflows render ``attachments[0].content``. The card is kept
under :data:`MAX_BYTES` (measured as the UTF-8 JSON bytes that are sent); lines that do not fit are
summarised as "and N more".
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from shared.findings import Severity
from shared.render import KIND_TITLES, NEW, RESOLVED, STILL_OPEN, ClusterBlock, Digest, Line, scrub

CARD_VERSION = "1.4"
CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
LIMIT_BYTES = 28 * 1024
MAX_BYTES = 26 * 1024  # below the documented 28 KB: practitioners report rejections from ~27 KB
MAX_TEXT = 1500

COLORS = {
    Severity.ERROR: "Attention",
    Severity.WARNING: "Warning",
    Severity.UNKNOWN: "Accent",
    Severity.INFO: "Default",
}


def encode_body(payload: Any) -> bytes:
    """The exact bytes pullwatch sends for a payload (compact UTF-8 JSON)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def payload_size(payload: Any) -> int:
    return len(encode_body(payload))


def _cut(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


def _text(text: str, **props: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": _cut(text), "wrap": True, **props}


def _literal(text: str, **props: Any) -> dict[str, Any]:
    """A monospace line shown exactly as written: a RichTextBlock's TextRun renders no Markdown
    (Adaptive Cards 1.2+), so a command copies as it runs and nothing in it becomes a link."""
    run = {"type": "TextRun", "text": _cut(text), "fontType": "Monospace"}
    return {"type": "RichTextBlock", "inlines": [run], **props}


_LIST_MARK = re.compile(r"(?m)^(\s*)([-+*]|\d+\.)(?=\s)")


def _md(text: str) -> str:
    """Adaptive Card TextBlocks render a Markdown subset (emphasis, links, lists): every value that
    came from outside goes through this where it enters text, so it stays literal."""
    for ch in ("\\", "*", "_", "[", "]", "`"):
        text = text.replace(ch, "\\" + ch)
    return _LIST_MARK.sub(lambda m: m.group(1) + "\\" + m.group(2), text)


def _link(url: str, text: str) -> str:
    """A Markdown link to one of pullwatch's own URLs (``( )`` and spaces percent-encoded)."""
    target = url.replace("(", "%28").replace(")", "%29").replace(" ", "%20")
    return f"[{_md(text)}]({target})"


def _cluster_heading(block: ClusterBlock) -> dict[str, Any]:
    meta = block.meta
    name = _link(meta.portal_url, meta.name) if meta.portal_url else _md(meta.name)
    items = [_text(f"**{name}**", size="Medium")]
    where = []
    if meta.subscription:
        where.append(f"subscription {meta.subscription}")
    if meta.resource_group:
        where.append(f"resource group {meta.resource_group}")
    if where:
        items.append(_text(_md(", ".join(where)), isSubtle=True, spacing="None"))
    return {"type": "Container", "style": "emphasis", "spacing": "Large", "items": items}


def _kind_heading(kind: str) -> dict[str, Any]:
    return _text(KIND_TITLES[kind], weight="Bolder", spacing="Medium")


def _line(line: Line) -> dict[str, Any]:
    color = "Good" if line.kind == RESOLVED else COLORS[line.severity]
    label = "Resolved" if line.kind == RESOLVED else line.severity.value.upper()
    head = f"**{label}** · **{_md(line.title)}** ({_md(line.code)})"
    if line.count_note:
        head += f" {line.count_note}"
    items: list[dict[str, Any]] = [
        _text(head, color=color),
        _text(_md(line.subject), isSubtle=True, spacing="None"),
    ]
    if line.kind != RESOLVED:
        body = _md(line.message)
        if line.cause:
            body = f"Cause {_md(line.cause)}: {body}"
        items.append(_text(_cut(body, 600), spacing="Small"))
        for block in line.fix_blocks:  # one block per line: a TextRun keeps no line breaks
            rows = block.splitlines()
            items.extend(_literal(row, spacing="Small" if i == 0 else "None") for i, row in enumerate(rows))
        if line.affects:
            items.append(_text(_md(line.affects), isSubtle=True, spacing="Small"))
    elif line.cleared_note:
        items.append(_text(_md(line.cleared_note), isSubtle=True, spacing="None"))
    return {"type": "Container", "separator": True, "items": items}


def _envelope(body: list[dict[str, Any]]) -> dict[str, Any]:
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
    }
    return {
        "type": "message",
        "attachments": [{"contentType": CONTENT_TYPE, "contentUrl": None, "content": card}],
    }


def _more(hidden: int) -> dict[str, Any]:
    return _text(
        f"… and {hidden} more (the full list is in pullwatch's JSON report)", isSubtle=True, spacing="Medium"
    )


def teams_payload(
    digest: Digest, secrets: Sequence[str] = (), *, max_bytes: int = MAX_BYTES
) -> dict[str, Any]:
    """The ``{"type": "message", "attachments": [...]}`` body for a Teams Workflows webhook."""
    counts = " · ".join(
        f"{digest.count(k)} {KIND_TITLES[k].lower()}" for k in (NEW, RESOLVED, STILL_OPEN) if digest.count(k)
    )
    head = [
        _text(digest.title, size="Large", weight="Bolder"),
        _text(
            f"{counts or 'nothing to report'} in {len(digest.clusters)} "
            f"cluster{'s' if len(digest.clusters) != 1 else ''}",
            isSubtle=True,
            spacing="None",
        ),
    ]
    # (element, number of finding lines it carries), in order
    units: list[tuple[dict[str, Any], int]] = []
    for block in digest.clusters:
        units.append((_cluster_heading(block), 0))
        for kind in (NEW, RESOLVED, STILL_OPEN):
            lines = block.of(kind)
            if lines:
                units.append((_kind_heading(kind), 0))
                units.extend((_line(line), 1) for line in lines)
    units = [(scrub(u, secrets), n) for u, n in units]
    head = scrub(head, secrets)

    reserve = payload_size(_more(digest.total)) + 1
    size = payload_size(_envelope(head))
    taken: list[tuple[dict[str, Any], int]] = []
    for unit, n in units:
        unit_size = payload_size(unit) + 1  # the comma
        if size + unit_size + reserve > max_bytes:
            break
        taken.append((unit, n))
        size += unit_size
    if len(taken) < len(units):
        while taken and taken[-1][1] == 0:  # a heading with nothing after it
            taken.pop()
    shown = sum(n for _, n in taken)
    body = head + [u for u, _ in taken]
    if shown < digest.total:
        body.append(_more(digest.total - shown))
    return _envelope(body)
