"""Human views for a terminal (rich): colours when the output is a terminal, plain text otherwise."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shared.causes import BY_CODE
from shared.explain import Explanation

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
