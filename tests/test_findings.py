"""The findings model against its contract, docs/spec/findings.md: codes, severities, JSON shape,
identity for new/resolved, and the findings document."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.findings import (
    CATALOGUE,
    FIELDS,
    Finding,
    FindingError,
    Severity,
    dedupe,
    has_errors,
    load_document,
    sort_findings,
    worst,
)

SPEC = Path(__file__).resolve().parent.parent / "docs" / "spec" / "findings.md"
CLUSTER = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks-prod"


def spec_codes() -> dict[str, str]:
    rows = re.findall(r"^\| `([A-Z_]+)` \| (\w+) \|", SPEC.read_text(), flags=re.M)
    assert len(rows) >= 25, "the spec's code tables were not found"
    return dict(rows)


def test_the_catalogue_is_exactly_the_spec_with_its_default_severities() -> None:
    codes = spec_codes()
    assert set(CATALOGUE) == set(codes)
    for code, severity in codes.items():
        assert CATALOGUE[code].severity.value == severity, code
        assert CATALOGUE[code].title and CATALOGUE[code].meaning and CATALOGUE[code].fix


def test_the_spec_example_round_trips_with_every_field_in_the_spec_order() -> None:
    example = json.loads(re.search(r"```json\n(.*?)\n```", SPEC.read_text(), flags=re.S).group(1))  # type: ignore[union-attr]
    finding = Finding.from_dict(example)
    assert list(finding.to_dict()) == list(example) == list(FIELDS)
    assert finding.to_dict() == example


def test_fields_that_do_not_apply_are_null_and_severity_defaults_from_the_catalogue() -> None:
    data = Finding("IMAGE_NOT_FOUND", "gone", cluster=CLUSTER).to_dict()
    assert data["severity"] == "error"
    assert data["registry"] is None and data["node_pool"] is None and data["cause"] is None
    assert data["evidence"] == {}
    assert Finding("REGISTRY_SLOW", "slow").level is Severity.INFO
    assert Finding("CHECK_INCOMPLETE", "?").level is Severity.UNKNOWN


@pytest.mark.parametrize(
    "data, problem",
    [
        ({"code": "NOPE", "message": "x"}, "unknown finding code"),
        ({"code": "ROLE_MISSING"}, "'message'"),
        ({"code": "ROLE_MISSING", "message": "x", "colour": "red"}, "unknown finding field"),
        ({"code": "ROLE_MISSING", "message": "x", "severity": "fatal"}, "unknown severity"),
        ({"code": "ROLE_MISSING", "message": "x", "evidence": []}, "'evidence'"),
        ({"code": "ROLE_MISSING", "message": "x", "cluster": 3}, "'cluster'"),
    ],
)
def test_bad_findings_are_refused_naming_what_is_wrong(data: dict[str, object], problem: str) -> None:
    with pytest.raises(FindingError, match=re.escape(problem)):
        Finding.from_dict(data)


def test_severity_ordering_puts_unknown_just_below_error() -> None:
    ranked = sorted(Severity, key=lambda s: s.rank, reverse=True)
    assert [s.value for s in ranked] == ["error", "unknown", "warning", "info"]
    assert Severity.UNKNOWN.at_least(Severity.WARNING) and not Severity.INFO.at_least(Severity.UNKNOWN)
    findings = [Finding("REGISTRY_SLOW", "a"), Finding("ROLE_MISSING", "b"), Finding("CHECK_INCOMPLETE", "c")]
    assert [f.code for f in sort_findings(findings)] == ["ROLE_MISSING", "CHECK_INCOMPLETE", "REGISTRY_SLOW"]
    assert worst(findings) is Severity.ERROR and has_errors(findings)
    assert worst([]) is None and not has_errors(findings[:1])


def test_identity_is_the_spec_fields_only_and_ids_compare_case_insensitively() -> None:
    a = Finding(
        "ROLE_MISSING",
        "first words",
        cluster=CLUSTER,
        registry="ContosoACR.azurecr.io",
        evidence={"n": 1},
        remediation="x",
        cause="auth_failed",
    )
    b = Finding("ROLE_MISSING", "other words", cluster=CLUSTER.lower(), registry="contosoacr.azurecr.io")
    assert a.key == b.key and a.key_text == b.key_text
    assert dedupe([a, b]) == [a]
    for field_name in ("image", "namespace", "workload", "node_pool"):
        assert Finding("ROLE_MISSING", "m", cluster=CLUSTER, **{field_name: "x"}).key != b.key
    assert (
        Finding("ROLE_NOT_HONORED_ABAC", "m", cluster=CLUSTER).key
        != Finding("ROLE_MISSING", "m", cluster=CLUSTER).key
    )


def test_findings_documents_in_their_three_forms_and_bad_ones() -> None:
    one = Finding("IMAGE_NOT_FOUND", "gone", cluster=CLUSTER).to_dict()
    assert load_document(json.dumps([one]))[0].code == "IMAGE_NOT_FOUND"
    assert load_document(json.dumps({"findings": [one]}))[0].code == "IMAGE_NOT_FOUND"
    assert (
        load_document(json.dumps({"world": "w", "findings": [one], "steps": []}))[0].code == "IMAGE_NOT_FOUND"
    )
    with pytest.raises(FindingError, match=r"f\.json: not JSON \(.* at line 1"):
        load_document("{", "f.json")
    with pytest.raises(FindingError, match="finding #2"):
        load_document(json.dumps([one, {"code": "X", "message": "m"}]))
    with pytest.raises(FindingError, match="expected a list of findings"):
        load_document(json.dumps({"nope": 1}))
