"""``pullwatch preflight`` end to end: read the manifests, check, print, and the exit status.

Exit statuses (as every pullwatch command): 0 nothing at least as severe as ``fail_on``; 1 at
least one such finding; 2 bad input (a manifest that does not parse, a bad argument) or a target
cluster that cannot be read at all.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from shared.errors import InputError
from shared.preflight.manifests import read_manifests

EXIT_OK, EXIT_FOUND, EXIT_CANNOT_RUN = 0, 1, 2


def _validate_cluster(cluster: str) -> None:
    from shared.events import parse_resource_id

    rid = parse_resource_id(cluster)
    if rid is None or rid.kind != "microsoft.containerservice/managedclusters":
        raise InputError(
            f"preflight: --cluster {cluster!r} is not a managedCluster resource ID "
            "(/subscriptions/…/resourceGroups/…/providers/Microsoft.ContainerService/managedClusters/NAME)"
        )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pullwatch")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout without install
        return "0"


def run_preflight(
    paths: Sequence[str],
    *,
    cluster: str | None,
    namespace: str | None,
    platforms: Sequence[str],
    read_secrets: bool,
    fmt: str,
    output: str | None,
    fail_on: str,
    source_prefix: str = "",
) -> int:
    from shared.config import Settings
    from shared.preflight.check import parse_platform, preflight_cluster, preflight_offline
    from shared.preflight.output import (
        fails,
        github_annotations,
        json_document,
        sarif_document,
        terminal_lines,
    )

    if cluster:
        _validate_cluster(cluster)
        if platforms:
            raise InputError(
                "preflight: --platform is for checks without --cluster (the cluster's node pools say which)"
            )
    for p in platforms:
        parse_platform(p)  # a bad platform is bad input before anything is read
    manifests = read_manifests(list(paths) or ["-"], stdin=sys.stdin, source_prefix=source_prefix)
    settings = Settings.from_env()
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential()
    if cluster:
        result = preflight_cluster(
            settings,
            credential,
            manifests,
            cluster,
            namespace=namespace,
            read_secrets=read_secrets or settings.read_secrets,
        )
        everything_incomplete = bool(result.findings) and all(
            f.finding.code == "CHECK_INCOMPLETE" and f.finding.evidence.get("check") == "all"
            for f in result.findings
        )
        if everything_incomplete:
            reason = result.findings[0].finding.evidence.get("reason") or "see CHECK_INCOMPLETE"
            raise InputError(f"preflight: cluster {cluster} could not be checked: {reason}")
    else:
        result = preflight_offline(settings, credential, manifests, namespace=namespace, platforms=platforms)
    document: str | None = None
    if fmt == "sarif":
        document = json.dumps(sarif_document(result, version=_version()), indent=2)
    elif fmt == "json":
        document = json.dumps(json_document(result), indent=2)
    annotations = github_annotations(result) if os.environ.get("GITHUB_ACTIONS") == "true" else []
    if document is not None and output:
        try:
            Path(output).write_text(document + "\n", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"preflight: cannot write {output} ({exc.strerror})") from None
        document = None
    if document is not None:
        click.echo(document)
        # stdout carries the document; the Actions runner parses workflow commands on stderr too
        for line in annotations:
            click.echo(line, err=True)
    else:
        for line in terminal_lines(result):
            click.echo(line)
        for line in annotations:
            click.echo(line)
    return EXIT_FOUND if fails(result, fail_on) else EXIT_OK
