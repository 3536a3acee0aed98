"""The human view of a sandbox run: findings per step, the messages Slack and Teams received, and
the requests the product sent (the JSON report is the same data)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from shared.render.terminal import printable

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "unknown": "magenta", "info": "cyan"}


def _short_cluster(cluster: str | None) -> str:
    return cluster.rstrip("/").rsplit("/", 1)[-1] if cluster else "-"


def print_findings(console: Console, findings: list[dict[str, Any]], title: str) -> None:
    """One block per finding (reads at any width, unlike a wide table): severity, code, cluster and
    place on the first line; then what, the cause and the fix. Text is printed literally."""
    console.print(Text(title, style="bold underline"))
    if not findings:
        console.print(Text("  nothing to report", style="green"))
    for f in findings:
        where = " · ".join(
            x
            for x in (
                f.get("registry"),
                f.get("namespace") and f"{f['namespace']}/{f.get('workload')}",
                f.get("node_pool") and f"pool {f['node_pool']}",
            )
            if x
        )
        head = Text("  ")
        head.append(f"{f['severity']:<7}", style=SEVERITY_STYLE.get(f["severity"], ""))
        head.append(f" {f['code']}", style="bold")
        head.append(f"  {_short_cluster(f.get('cluster'))}")
        if where:
            head.append(f"  {where}", style="dim")
        console.print(head)
        console.print(Text(f"      {printable(f['message'])}"))
        if f.get("cause"):
            console.print(Text(f"      cause: {f['cause']}", style="italic"))
        if f.get("remediation"):
            console.print(Text(f"      $ {printable(f['remediation'])}", style="green"))
    console.print()


_IDENTITY = ("code", "cluster", "registry", "image", "namespace", "workload", "node_pool")


def print_changes(
    console: Console, before: list[dict[str, Any]], after: list[dict[str, Any]], step: str
) -> None:
    """What a timeline step changed: findings opened and findings resolved (by finding identity)."""

    def key(f: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(
            (f.get(k) or "").lower() if k in ("cluster", "registry") else f.get(k) for k in _IDENTITY
        )

    old = {key(f): f for f in before}
    new = {key(f): f for f in after}
    opened = [f for k, f in new.items() if k not in old]
    resolved = [f for k, f in old.items() if k not in new]
    console.print(Text(f"After {step}", style="bold underline"))
    if not opened and not resolved:
        console.print(Text("  no change", style="dim"))
    for label, items, style in (("new", opened, "bold red"), ("resolved", resolved, "bold green")):
        for f in items:
            line = Text(f"  {label:<9}", style=style)
            line.append(f"{f['code']}  {_short_cluster(f.get('cluster'))}  ")
            line.append(f["message"], style="dim" if label == "resolved" else "")
            console.print(line)
    console.print()


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


def print_report(report: dict[str, Any], differences: list[str] | None = None) -> None:
    console = Console()
    console.rule(f"[bold]pullwatch sandbox: {report['world']}")
    print_findings(console, report["initial"]["findings"], "Initial audit (nightly timer path)")
    before = report["initial"]["findings"]
    for entry in report["steps"]:
        print_changes(console, before, entry["findings"], json.dumps(entry["step"]))
        before = entry["findings"]
    console.print(Text(f"Open at the end: {len(report['findings'])} finding(s)", style="bold"))
    console.print()
    console.rule("Messages the webhooks received")
    if not report["notifications"]:
        console.print("(none)")
    for n in report["notifications"]:
        text = _slack_text(n["payload"]) if n["sink"] == "slack" else _teams_text(n["payload"])
        console.print(
            Panel(Text(printable(text)), title=f"{n['sink']} — answered {n['status']}", title_align="left")
        )
    console.rule("Requests pullwatch sent")
    requests = report["requests"]
    table = Table(show_header=True)
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
