"""Human views for a terminal (rich): colours when the output is a terminal, plain text otherwise."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shared.causes import BY_CODE
from shared.explain import Explanation
from shared.findings import Finding

# How alarming each cause looks: red for what the cluster's owner must fix, yellow for what may
# pass by itself (throttling, transient transport or layer trouble), dim when nothing is known.
_STYLE = {
    "rate_limited": "yellow",
    "network": "yellow",
    "layer_error": "yellow",
    "registry_error": "yellow",
    "no_detail": "dim",
    "unknown": "magenta",
}


def print_explanation(result: Explanation, console: Console | None = None) -> None:
    """Print what ``pullwatch explain`` found: cause, summary, registry, image and what to check."""
    console = console or Console()
    style = _STYLE.get(result.cause, "bold red")
    console.print(f"[{style}]{escape(result.cause)}[/] - {escape(BY_CODE[result.cause].meaning)}")
    console.print(escape(result.summary), soft_wrap=False)
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("registry", escape(result.registry or "-"))
    table.add_row("image", escape(result.image or "-"))
    table.add_row("check", escape(result.remediation))
    console.print(table)


_CONTROL = dict.fromkeys([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, *range(0x80, 0xA0)])


def printable(text: str) -> str:
    """Text from registries and clusters is untrusted: no terminal control sequences reach the screen."""
    return text.translate(_CONTROL)


_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "unknown": "magenta", "info": "cyan"}


def print_findings(
    findings: Sequence[Finding],
    *,
    unchecked: Sequence[Mapping[str, Any]] = (),
    console: Console | None = None,
) -> None:
    """Print an audit's findings as a table (most urgent first), then what could not be checked."""
    console = console or Console()
    if not findings:
        console.print("[green]No findings:[/] every cluster checked can pull its images.")
    else:
        table = Table(expand=True, show_lines=False)
        table.add_column("severity")
        table.add_column("code", style="bold")
        table.add_column("cluster")
        table.add_column("where", overflow="fold")
        table.add_column("what, and the fix", overflow="fold", ratio=3)
        for f in findings:
            where = " ".join(
                escape(printable(x))
                for x in (
                    f.registry,
                    f"{f.namespace}/{f.workload}" if f.namespace and f.workload else f.workload,
                    f"pool {f.node_pool}" if f.node_pool else None,
                )
                if x
            )
            body = escape(printable(f.message))
            if f.cause:
                body += f"\n[italic]cause: {escape(f.cause)}[/]"
            if f.remediation:
                body += f"\n[green]$ {escape(printable(f.remediation))}[/]"
            style = _SEVERITY_STYLE.get(f.level.value, "")
            cluster = (f.cluster or "-").rstrip("/").rsplit("/", 1)[-1]
            table.add_row(f"[{style}]{f.level.value}[/]", f.code, escape(cluster), where or "-", body)
        console.print(table)
        counts = Counter(f.level.value for f in findings)
        console.print(", ".join(f"{n} {level}" for level, n in sorted(counts.items())))
    if unchecked:
        console.print(f"[magenta]{len(unchecked)} check(s) could not run[/] (see CHECK_INCOMPLETE above).")
