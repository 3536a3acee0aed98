"""Preflight findings as text: terminal lines, one JSON document, SARIF 2.1.0, GitHub annotations.

Everything shown comes from the findings (their messages and remediations are the audit's, already
scrubbed of tokens); text from manifests and registries is untrusted, so control characters are
removed from terminal output and workflow-command data is escaped.

Public interface::

    terminal_lines(result) -> list[str]
    json_document(result) -> dict
    sarif_document(result, *, version) -> dict          # SARIF 2.1.0, physicalLocation per result
    github_annotations(result) -> list[str]              # ::error file=…,line=…,title=…::message
    fails(result, fail_on) -> bool                        # fail_on: "error" | "warning"
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any
from urllib.parse import quote

from shared.findings import CATALOGUE, Severity
from shared.preflight.check import PreflightResult
from shared.preflight.locate import PreflightFinding
from shared.preflight.manifests import Location
from shared.render.terminal import printable

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/pullwatch/pullwatch"
#: How many extra locations a finding shows in the terminal (SARIF and JSON keep them all).
SHOWN_LOCATIONS = 5
_SARIF_LEVEL = {"error": "error", "warning": "warning", "unknown": "warning", "info": "note"}
_GITHUB_LEVEL = {"error": "error", "warning": "warning", "unknown": "warning", "info": "notice"}


def fails(result: PreflightResult, fail_on: str) -> bool:
    """True when a finding is at least as urgent as ``fail_on`` (``error`` or ``warning``)."""
    threshold = Severity.parse(fail_on)
    return any(f.finding.level.at_least(threshold) for f in result.findings)


def _where(result: PreflightResult) -> str:
    return result.cluster.rstrip("/").rsplit("/", 1)[-1] if result.cluster else "no cluster (offline)"


def terminal_lines(result: PreflightResult) -> list[str]:
    """``path:line: severity CODE object`` per finding, the message and fix indented below."""
    lines: list[str] = []
    for pf in result.findings:
        f = pf.finding
        first = pf.locations[0]
        what = pf.objects[0] if len(pf.objects) == 1 else f.registry or ""
        lines.append(printable(f"{first}: {f.level.value} {f.code} {what}".rstrip()))
        lines.append("    " + printable(f.message))
        if f.cause:
            lines.append(f"    cause: {printable(f.cause)}")
        if f.remediation:
            lines.append("    $ " + printable(f.remediation))
        more = pf.locations[1:]
        if more:
            shown = ", ".join(str(loc) for loc in more[:SHOWN_LOCATIONS])
            rest = f" and {len(more) - SHOWN_LOCATIONS} more" if len(more) > SHOWN_LOCATIONS else ""
            lines.append(printable(f"    also at: {shown}{rest}"))
    counts = Counter(pf.finding.level.value for pf in result.findings)
    summary = ", ".join(f"{n} {level}" for level, n in sorted(counts.items())) or "no findings"
    lines.append(
        f"preflight: {summary}; {result.workloads} workload(s), {result.images} image(s), "
        f"checked against {_where(result)}."
    )
    return lines


def json_document(result: PreflightResult) -> dict[str, Any]:
    return result.to_dict()


def _uri(path: str) -> str:
    return "stdin" if path == "-" else quote(path, safe="/")


def _physical(loc: Location) -> dict[str, Any]:
    return {
        "physicalLocation": {
            "artifactLocation": {"uri": _uri(loc.path), "uriBaseId": "%SRCROOT%"},
            "region": {"startLine": loc.line},
        }
    }


def _fingerprint(pf: PreflightFinding) -> str:
    """Stable across runs and line moves: the finding's identity without the cluster, and its file."""
    f = pf.finding
    text = "|".join(
        [f.code, f.registry or "", f.image or "", f.namespace or "", f.workload or "", f.node_pool or ""]
    )
    return hashlib.sha256(f"{text}|{pf.locations[0].path}".encode()).hexdigest()[:32]


def sarif_document(result: PreflightResult, *, version: str = "0") -> dict[str, Any]:
    """SARIF 2.1.0: one rule per finding code used, one result per finding with its manifest line
    (``physicalLocation``) and object (``logicalLocations``); further lines as ``relatedLocations``."""
    codes = sorted({pf.finding.code for pf in result.findings})
    index = {code: i for i, code in enumerate(codes)}
    rules = []
    for code in codes:
        entry = CATALOGUE[code]
        rules.append(
            {
                "id": code,
                "name": "".join(part.capitalize() for part in code.split("_")),
                "shortDescription": {"text": entry.title},
                "fullDescription": {"text": entry.meaning},
                "help": {"text": entry.fix},
                "defaultConfiguration": {"level": _SARIF_LEVEL[entry.severity.value]},
                "properties": {"tags": ["pullwatch", entry.group]},
            }
        )
    results = []
    for pf in result.findings:
        f = pf.finding
        text = f.message + (f"\nFix: {f.remediation}" if f.remediation else "")
        location = _physical(pf.locations[0])
        if pf.objects:
            location["logicalLocations"] = [
                {"fullyQualifiedName": obj, "kind": "resource"} for obj in pf.objects[:10]
            ]
        item: dict[str, Any] = {
            "ruleId": f.code,
            "ruleIndex": index[f.code],
            "level": _SARIF_LEVEL[f.level.value],
            "message": {"text": text},
            "locations": [location],
            "partialFingerprints": {"pullwatchFinding/v1": _fingerprint(pf)},
            "properties": {
                "severity": f.level.value,
                "cluster": f.cluster,
                "registry": f.registry,
                "image": f.image,
                "namespace": f.namespace,
                "workload": f.workload,
                "node_pool": f.node_pool,
            },
        }
        if len(pf.locations) > 1:
            item["relatedLocations"] = [
                {"id": i, **_physical(loc)} for i, loc in enumerate(pf.locations[1:], start=1)
            ]
        results.append(item)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "pullwatch",
                        "informationUri": INFORMATION_URI,
                        "version": version,
                        "rules": rules,
                    }
                },
                "automationDetails": {"id": f"pullwatch-preflight/{_where(result)}/"},
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }


def _data(text: str) -> str:
    """Workflow-command data escaping (the runner's ``CommandEscapeData``)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    """Workflow-command property escaping (``CommandEscapeProperty``)."""
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(result: PreflightResult) -> list[str]:
    """One workflow command per finding, on its first manifest line (``GITHUB_ACTIONS=true``)."""
    out = []
    for pf in result.findings:
        f = pf.finding
        loc = pf.locations[0]
        level = _GITHUB_LEVEL[f.level.value]
        props = f"file={_property(loc.path)},line={loc.line},title={_property(f.code)}"
        text = f.message + (f"\nFix: {f.remediation}" if f.remediation else "")
        out.append(f"::{level} {props}::{_data(printable(text))}")
    return out
