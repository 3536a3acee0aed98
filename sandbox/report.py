"""The human view of a sandbox run: findings per step, the messages Slack and Teams received, and
the requests the product sent (the JSON report is the same data)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "unknown": "magenta", "info": "cyan"}


def _short_cluster(cluster: str | None) -> str:
    return cluster.rstrip("/").rsplit("/", 1)[-1] if cluster else "-"


def findings_table(findings: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False, expand=True)
    for column, style in (
        ("severity", None),
        ("code", "bold"),
        ("cluster", None),
        ("where", None),
        ("what and how to fix", None),
    ):
        table.add_column(column, style=style, overflow="fold", ratio=4 if column.startswith("what") else None)
    for f in findings:
        where = " ".join(
            x
            for x in (
                f.get("registry"),
                f.get("namespace") and f"{f['namespace']}/{f.get('workload')}",
                f.get("node_pool") and f"pool {f['node_pool']}",
            )
            if x
        )
        body = Text(f["message"])
        if f.get("cause"):
            body.append(f"\ncause: {f['cause']}", style="italic")
        if f.get("remediation"):
            body.append(f"\n$ {f['remediation']}", style="green")
        table.add_row(
            Text(f["severity"], style=SEVERITY_STYLE.get(f["severity"], "")),
            f["code"],
            _short_cluster(f.get("cluster")),
            where or "-",
            body,
        )
    if not findings:
        table.add_row("", "(none)", "", "", "nothing to report")
    return table


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
    console.print(findings_table(report["initial"]["findings"], "Initial audit (nightly timer path)"))
    for entry in report["steps"]:
        console.print(findings_table(entry["findings"], f"Open after {entry['step']}"))
    console.rule("Messages the webhooks received")
    if not report["notifications"]:
        console.print("(none)")
    for n in report["notifications"]:
        text = _slack_text(n["payload"]) if n["sink"] == "slack" else _teams_text(n["payload"])
        console.print(Panel(text, title=f"{n['sink']} — answered {n['status']}", title_align="left"))
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
        console.print(f"[red]function invocation failed:[/] {failure}")
    if differences is not None:
        if differences:
            for line in differences:
                console.print(f"[red]expect:[/] {line}")
        else:
            console.print("[green]findings match the world's expect[/]")
