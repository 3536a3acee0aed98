"""The ``pullwatch`` command line (contract: docs/spec/cli.md).

Exit statuses: 0 ran and found no ``error``; 1 ran and found at least one ``error``; 2 bad usage,
bad input or could not run. Errors go to stderr as one clear message, never a traceback
(``PULLWATCH_DEBUG=1`` shows it). ``--json`` prints exactly one JSON document on stdout.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from shared.errors import PullwatchError

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.pipeline import AuditOptions, AuditResult

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FOUND_ERRORS, EXIT_CANNOT_RUN = 0, 1, 2


def fail(message: str) -> NoReturn:
    click.echo(f"pullwatch: {message}", err=True)
    sys.exit(EXIT_CANNOT_RUN)


def _known_errors() -> tuple[type[BaseException], ...]:
    from shared.config import ConfigError
    from shared.findings import FindingError

    return (PullwatchError, ConfigError, FindingError)


def clean_errors(fn: F) -> F:
    """Turn every error into one line on stderr and exit 2: no traceback reaches a user."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except _known_errors() as exc:
            fail(str(exc))
        except Exception as exc:
            if os.environ.get("PULLWATCH_DEBUG"):
                raise
            fail(f"internal error ({type(exc).__name__}): {exc}. Set PULLWATCH_DEBUG=1 for details.")

    return wrapper  # type: ignore[return-value]


def emit_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="pullwatch", prog_name="pullwatch")
def cli() -> None:
    """pullwatch: keeps AKS clusters able to pull their images.

    It checks role assignments, the registry pull path, pull secrets and failing pods, and tells
    Teams or Slack what broke, why, and the command that fixes it.
    """


# --- explain ----------------------------------------------------------------------------------


@cli.command()
@click.argument("message", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@clean_errors
def explain(message: Sequence[str], as_json: bool) -> None:
    """Explain kubelet / container-runtime pull-error text.

    MESSAGE is the text (several arguments are joined with spaces), or - to read it from stdin.
    Exit 0 when the text was read (whatever its cause), 2 when there is nothing to read.
    """
    from shared.explain import explain as explain_text

    if list(message) == ["-"]:
        text = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    else:
        text = " ".join(message)
    if not text.strip():
        fail("explain: no message given (pass the text, or - to read stdin)")
    result = explain_text(text)
    if as_json:
        emit_json(result.to_dict())
    else:
        from shared.render.terminal import print_explanation

        print_explanation(result)
    sys.exit(EXIT_OK)


# --- render -----------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["slack", "teams"]),
    required=True,
    help="Which webhook payload to print.",
)
@click.argument("findings_file", metavar="FINDINGS.json")
@clean_errors
def render(fmt: str, findings_file: str) -> None:
    """Print the webhook payload FINDINGS.json (or - for stdin) would produce, without sending it."""
    from shared.findings import load_document
    from shared.render import payload_for

    if findings_file == "-":
        text, source = sys.stdin.read(), "stdin"
    else:
        try:
            text, source = Path(findings_file).read_text(encoding="utf-8"), findings_file
        except OSError as exc:
            fail(f"render: cannot read {findings_file} ({exc.strerror})")
        except UnicodeDecodeError as exc:
            fail(f"render: {findings_file} is not UTF-8 text (byte {exc.start})")
    findings = load_document(text, source)
    emit_json(payload_for(fmt, findings))


# --- audit ------------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--subscription",
    "subscriptions",
    multiple=True,
    metavar="ID",
    help="Subscription to audit (repeatable; default: every one the credential can read).",
)
@click.option(
    "--cluster",
    "clusters",
    multiple=True,
    metavar="RESOURCE_ID",
    help="managedCluster resource ID to audit (repeatable).",
)
@click.option(
    "--registry",
    "registries",
    multiple=True,
    metavar="HOST",
    help="Extra registry host to check for every cluster (repeatable).",
)
@click.option("--probe", is_flag=True, help="Run opt-in in-cluster pull probe pods.")
@click.option("--read-secrets", is_flag=True, help="Read pull-secret content and try its credentials.")
@click.option("--notify", is_flag=True, help="Post new and resolved findings to the configured webhooks.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@clean_errors
def audit(
    subscriptions: Sequence[str],
    clusters: Sequence[str],
    registries: Sequence[str],
    probe: bool,
    read_secrets: bool,
    notify: bool,
    as_json: bool,
) -> None:
    """Audit real Azure with DefaultAzureCredential and print the findings."""
    from shared.config import Settings
    from shared.events import parse_resource_id
    from shared.findings import has_errors
    from shared.pipeline import AuditOptions

    for cluster in clusters:
        rid = parse_resource_id(cluster)
        if rid is None or rid.kind != "microsoft.containerservice/managedclusters":
            fail(
                f"audit: --cluster {cluster!r} is not a managedCluster resource ID "
                "(/subscriptions/…/resourceGroups/…/providers/Microsoft.ContainerService/managedClusters/NAME)"
            )
    settings = Settings.from_env()
    request = AuditOptions(
        subscriptions=tuple(subscriptions),
        clusters=tuple(clusters),
        registries=tuple(registries),
        probe=probe or settings.probe,
        read_secrets=read_secrets or settings.read_secrets,
        notify=notify,
    )
    result = run_cli_audit(settings, request)
    if as_json:
        emit_json(result.to_dict())
    else:
        from shared.render.terminal import print_findings

        print_findings(result.findings, unchecked=result.unchecked)
    not_audited = [c for c in result.clusters if _not_audited(c.findings)]
    if result.clusters and len(not_audited) == len(result.clusters):
        reason = not_audited[0].findings[0].evidence.get("reason") or "see CHECK_INCOMPLETE"
        fail(f"audit: no cluster could be audited: {reason}")
    sys.exit(EXIT_FOUND_ERRORS if has_errors(result.findings) else EXIT_OK)


def run_cli_audit(settings: Settings, options: AuditOptions) -> AuditResult:
    """``pullwatch audit``: DefaultAzureCredential, discover, audit, and (``--notify``) deliver."""
    from azure.identity import DefaultAzureCredential

    from shared.app import App

    app = App(settings, DefaultAzureCredential(authority=settings.cloud.authority_host))
    try:
        return app.audit_now(options, notify=options.notify)
    finally:
        app.close()


def _not_audited(findings: Sequence[Any]) -> bool:
    """True when a cluster's only findings say that none of its checks could run."""
    return bool(findings) and all(
        f.code == "CHECK_INCOMPLETE" and f.evidence.get("check") == "all" for f in findings
    )


# --- preflight --------------------------------------------------------------------------------


@cli.command()
@click.argument("paths", nargs=-1, metavar="[PATH|-]...")
@click.option("--cluster", "cluster", metavar="RESOURCE_ID", help="managedCluster to check against.")
@click.option("--namespace", metavar="NS", help="Namespace of objects that name none (default: default).")
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    metavar="OS/ARCH",
    help="Without --cluster: a platform the images must have (repeatable), e.g. linux/arm64.",
)
@click.option("--read-secrets", is_flag=True, help="Read the cluster's pull-secret content and try it.")
@click.option(
    "--source-prefix",
    default="",
    metavar="DIR",
    help="Put DIR before Helm '# Source:' paths (helm template charts/web: --source-prefix charts/).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--sarif", "as_sarif", is_flag=True, help="Print SARIF 2.1.0 (code scanning).")
@click.option(
    "--output",
    "output",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the --json / --sarif document to this file; the terminal view goes to stdout.",
)
@click.option(
    "--fail-on",
    type=click.Choice(["error", "warning"]),
    default="error",
    show_default=True,
    help="Exit 1 when a finding is at least this severe.",
)
@clean_errors
def preflight(
    paths: Sequence[str],
    cluster: str | None,
    namespace: str | None,
    platforms: Sequence[str],
    read_secrets: bool,
    source_prefix: str,
    as_json: bool,
    as_sarif: bool,
    output: str | None,
    fail_on: str,
) -> None:
    """Check Kubernetes manifests for pull failures before they are deployed.

    PATH is a file, a folder (read recursively: *.yaml, *.yml, *.json) or - for stdin (e.g. the
    output of helm template or kustomize build). With --cluster, every check of the audit runs
    against that cluster's node pools, pull identity, roles, registries and the namespace's
    secrets; without it, references, existence and --platform. Exit 0 when nothing is at least
    as severe as --fail-on, 1 when something is, 2 for bad input.
    """
    from shared.preflight.run import run_preflight

    sys.exit(
        run_preflight(
            paths,
            cluster=cluster,
            namespace=namespace,
            platforms=platforms,
            read_secrets=read_secrets,
            fmt="sarif" if as_sarif else "json" if as_json else "terminal",
            output=output,
            fail_on=fail_on,
            source_prefix=source_prefix,
        )
    )


def main(argv: Sequence[str] | None = None) -> None:
    from shared.notify import install_log_redaction

    install_log_redaction()
    cli.main(args=list(argv) if argv is not None else None, prog_name="pullwatch")


if __name__ == "__main__":  # pragma: no cover
    main()
