"""``python -m sandbox`` (installed as ``pullwatch-sandbox``): build a local Azure estate from a world
file and run pullwatch against it (contract: docs/spec/cli.md).

The sandbox is a developer's tool, not part of the product: it imports the product (``shared``), the
product never imports it. Exit statuses and error lines are the ``pullwatch`` command's: 0 ran, 1
``--check`` found differences, 2 bad input (one line naming the file, line and key; no traceback).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from sandbox.world import WorldError
from shared.cli import EXIT_FOUND_ERRORS, EXIT_OK, clean_errors, emit_json, fail

F = TypeVar("F", bound=Callable[..., Any])


def world_errors(fn: F) -> F:
    """A world file that cannot be read or built is one line on stderr and exit 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except WorldError as exc:
            fail(str(exc))

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """Build a local Azure estate from a world file and run pullwatch against it."""


@cli.command("run")
@click.argument("world", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the run report as one JSON document.")
@click.option("--check", is_flag=True, help="Exit 1 when the findings differ from the world's expect.")
@clean_errors
@world_errors
def run(world: str, as_json: bool, check: bool) -> None:
    """Build WORLD, run the initial audit and the timeline, print findings and notifications."""
    from sandbox.runner import run_world

    report, differences = run_world(Path(world), quiet=as_json)
    if as_json:
        emit_json(report)
    else:
        from sandbox.report import print_report

        print_report(report, differences if check else None)
    if check and differences:
        for line in differences:
            click.echo(f"expect: {line}", err=True)
        sys.exit(EXIT_FOUND_ERRORS)
    sys.exit(EXIT_OK)


@cli.command("up")
@click.argument("world", type=click.Path(dir_okay=False))
@clean_errors
@world_errors
def up(world: str) -> None:
    """Build WORLD and keep it running, printing endpoints and settings, until interrupted."""
    from sandbox.runner import keep_world_up

    keep_world_up(Path(world))


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="pullwatch-sandbox")
