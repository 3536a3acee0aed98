"""Human views for a terminal (rich): colours when the output is a terminal, plain text otherwise
(no colour, no box drawing in a pipe or a CI log). Findings are shown as diagnoses, the layout of
the chat messages: one entry per root cause, what is wrong, the workloads it affects, the fix."""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from shared.causes import BY_CODE
from shared.explain import Explanation
from shared.findings import Finding
from shared.render import RESOLVED, Digest, Line, build_digest

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
_INDENT = "    "


def _wrapped(text: str, width: int, indent: str = _INDENT) -> str:
    return textwrap.fill(
        printable(text), width=max(40, width), initial_indent=indent, subsequent_indent=indent
    )


def _print_line(console: Console, line: Line) -> None:
    """One diagnosis: severity, title, code and subject; what is wrong; the workloads it affects;
    the fix. Prose is wrapped to the console's width; a fix is printed as written, flush left (a
    here-document's terminator must stay at the start of its line when copied)."""
    width = console.width
    label = "resolved" if line.kind == RESOLVED else line.severity.value
    style = "green" if line.kind == RESOLVED else _SEVERITY_STYLE.get(line.severity.value, "")
    head = Text("  ")
    head.append(f"{label.upper():<9}", style=style)
    head.append(printable(line.title), style="bold")
    if line.count_note:
        head.append(f" {line.count_note}")
    console.print(head, overflow="fold")
    console.print(Text(_wrapped(f"{line.code} · {line.subject}", width), style="dim"))
    if line.kind == RESOLVED:
        if line.cleared_note:
            console.print(Text(_wrapped(line.cleared_note, width)))
        return
    console.print(Text(_wrapped(line.message, width)))
    if line.cause:
        console.print(Text(f"{_INDENT}cause: {printable(line.cause)}", style="italic"))
    if line.affects:
        console.print(Text(_wrapped(line.affects, width), style="bold"))
    if line.fix_blocks:
        console.print(Text(f"{_INDENT}fix:", style="green"))
        for block in line.fix_blocks:
            console.print(Text(printable(block), style="green"), soft_wrap=True)


def print_digest(console: Console, digest: Digest) -> None:
    """A digest as the terminal shows it: per cluster, one entry per diagnosis."""
    for block in digest.clusters:
        meta = block.meta
        heading = Text(printable(meta.name), style="bold underline")
        if meta.resource_group:
            heading.append(f"  (resource group {printable(meta.resource_group)})", style="dim")
        console.print(heading)
        for line in block.lines:
            _print_line(console, line)
            console.print()


def diagnoses(findings: Sequence[Finding]) -> Digest:
    """An audit's findings as one digest of diagnoses (all treated as new), per cluster."""
    from shared.compare import Changes

    by_cluster: dict[str, list[Finding]] = {}
    for f in findings:
        by_cluster.setdefault(f.cluster or "", []).append(f)
    return build_digest({c: Changes(new=tuple(fs)) for c, fs in by_cluster.items()})


def print_findings(
    findings: Sequence[Finding],
    *,
    unchecked: Sequence[Mapping[str, Any]] = (),
    console: Console | None = None,
) -> None:
    """Print an audit's findings as diagnoses (most urgent first), then what could not be checked."""
    console = console or Console()
    if not findings:
        console.print("[green]No findings:[/] every cluster checked can pull its images.")
    else:
        digest = diagnoses(findings)
        print_digest(console, digest)
        lines = [line for block in digest.clusters for line in block.lines]
        counts = Counter(line.severity.value for line in lines)
        levels = ", ".join(f"{n} {level}" for level, n in sorted(counts.items()))
        console.print(
            f"{len(lines)} problem{'s' if len(lines) != 1 else ''} ({levels}) from {len(findings)} "
            f"finding{'s' if len(findings) != 1 else ''}"
        )
    if unchecked:
        console.print(f"[magenta]{len(unchecked)} check(s) could not run[/] (see CHECK_INCOMPLETE above).")
