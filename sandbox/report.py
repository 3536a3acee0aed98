"""The human view of a sandbox run: findings per step, the messages Slack and Teams received, and
the requests the product sent (the JSON report is the same data)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from shared.compare import Changes
from shared.findings import Finding
from shared.render import build_digest
from shared.render.terminal import diagnoses, print_digest, printable


def _findings(items: list[dict[str, Any]]) -> list[Finding]:
    return [Finding.from_dict(f) for f in items]


def print_findings(console: Console, findings: list[dict[str, Any]], title: str) -> None:
    """An audit's findings as diagnoses (the layout of ``pullwatch audit`` and of the messages:
    one entry per root cause, the workloads it affects, the fix). Text is printed literally."""
    console.print(Text(title, style="bold underline"))
    if not findings:
        console.print(Text("  nothing to report", style="green"))
    print_digest(console, diagnoses(_findings(findings)))
    console.print()


_IDENTITY = ("code", "cluster", "registry", "image", "namespace", "workload", "node_pool")


def print_changes(
    console: Console, before: list[dict[str, Any]], after: list[dict[str, Any]], step: str
) -> None:
    """What a timeline step changed: diagnoses opened and resolved (by finding identity)."""

    def key(f: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(
            (f.get(k) or "").lower() if k in ("cluster", "registry") else f.get(k) for k in _IDENTITY
        )

    old = {key(f): f for f in before}
    new = {key(f): f for f in after}
    opened = _findings([f for k, f in new.items() if k not in old])
    resolved = _findings([f for k, f in old.items() if k not in new])
    console.print(Text(f"After {step}", style="bold underline"))
    if not opened and not resolved:
        console.print(Text("  no change", style="dim"))
        console.print()
        return
    clusters = {f.cluster or "" for f in opened + resolved}
    changes = {
        c: Changes(
            new=tuple(f for f in opened if (f.cluster or "") == c),
            resolved=tuple(f for f in resolved if (f.cluster or "") == c),
        )
        for c in clusters
    }
    print_digest(console, build_digest(changes))


def _slack_text(payload: dict[str, Any]) -> str:
    lines = []
    for block in payload.get("blocks", []):
        kind = block.get("type")
        if kind == "header":
            lines.append(f"# {block['text']['text']}")
        elif kind in ("section", "context"):
            texts: Iterable[Any] = (
                ([block["text"]] if "text" in block else [])
                + block.get("fields", [])
                + block.get("elements", [])
            )
            lines.extend(str(t.get("text", "")) for t in texts if isinstance(t, dict))
        elif kind == "divider":
            lines.append("─" * 40)
    return "\n".join(lines) or str(payload.get("text", ""))


def _teams_text(payload: dict[str, Any]) -> str:
    lines: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "TextBlock":
                lines.append(str(node.get("text", "")))
            elif node.get("type") == "FactSet":
                lines.extend(f"{f.get('title')}: {f.get('value')}" for f in node.get("facts", []))
            for key in ("body", "items", "columns", "attachments", "content"):
                if key in node:
                    walk(node[key])
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(payload)
    return "\n".join(lines)


def _heading(console: Console, title: str) -> None:
    """A rule across a terminal; a plain line in a pipe or a CI log (no box drawing)."""
    if console.is_terminal:
        console.rule(Text(title, style="bold"))
    else:
        console.print(Text(f"== {title} =="))


def print_report(
    report: dict[str, Any], differences: list[str] | None = None, console: Console | None = None
) -> None:
    console = console or Console()
    _heading(console, f"pullwatch sandbox: {report['world']}")
    print_findings(console, report["initial"]["findings"], "Initial audit (nightly timer path)")
    before = report["initial"]["findings"]
    for entry in report["steps"]:
        print_changes(console, before, entry["findings"], json.dumps(entry["step"]))
        before = entry["findings"]
    console.print(Text(f"Open at the end: {len(report['findings'])} finding(s)", style="bold"))
    console.print()
    _heading(console, "Messages the webhooks received")
    if not report["notifications"]:
        console.print("(none)")
    for n in report["notifications"]:
        text = Text(
            printable(_slack_text(n["payload"]) if n["sink"] == "slack" else _teams_text(n["payload"]))
        )
        title = f"{n['sink']} — answered {n['status']}"
        if console.is_terminal:
            console.print(Panel(text, title=title, title_align="left"))
        else:
            console.print(Text(f"-- {title}"))
            console.print(text)
            console.print()
    _heading(console, "Requests pullwatch sent")
    requests = report["requests"]
    table = Table(show_header=True, box=box.HEAVY_HEAD if console.is_terminal else None)
    table.add_column("stand-in")
    table.add_column("requests", justify="right")
    for key, value in requests.items():
        if isinstance(value, dict):
            for sub, count in value.items():
                table.add_row(f"{key} {sub}", str(count))
        else:
            table.add_row(key, str(value))
    console.print(table)
    for failure in report.get("function_failures", []):
        console.print(Text(f"function invocation failed: {failure}", style="red"))
    if differences is not None:
        if differences:
            for line in differences:
                console.print(Text(f"expect: {line}", style="red"))
        else:
            console.print("[green]findings match the world's expect[/]")
