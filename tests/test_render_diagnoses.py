"""Digests list diagnoses: one entry per root cause with its fix and the workloads it affects;
symptoms whose root cause is in the same digest are not entries of their own."""

from __future__ import annotations

import subprocess

from shared.compare import Changes
from shared.correlate import correlate
from shared.findings import Finding
from shared.render import NEW, RESOLVED, STILL_OPEN, brief_fix, build_digest
from shared.render.slack import slack_payload
from shared.render.teams import teams_payload

CLUSTER = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks-prod"
ACR = "contosoacr.azurecr.io"


def pod(name: str, image: str = f"{ACR}/shop/web:1") -> Finding:
    return Finding(
        "PODS_IMAGE_PULL_FAILING",
        f"1 pod of Deployment/{name} in shop cannot pull {image}: denied.",
        cluster=CLUSTER,
        registry=ACR,
        image=image,
        namespace="shop",
        workload=f"Deployment/{name}",
        cause="auth_or_not_found",
        evidence={"pods": 1},
        remediation="Check the image name first. Then the pull secrets. Then more. And more.",
    )


ROLE = Finding(
    "ROLE_MISSING", "No pull role on contosoacr.", cluster=CLUSTER, registry=ACR, remediation="az role x"
)
SLOW = Finding("REGISTRY_SLOW", "slow", cluster=CLUSTER, registry=ACR)


def audit(n: int) -> list[Finding]:
    return correlate([ROLE, SLOW, *(pod(f"w{i}") for i in range(n))])


def test_a_root_cause_is_one_entry_naming_up_to_five_affected_workloads() -> None:
    digest = build_digest({CLUSTER: Changes(new=tuple(audit(7)))})
    [block] = digest.clusters
    assert [line.code for line in block.lines] == ["ROLE_MISSING", "REGISTRY_SLOW"]
    role = block.lines[0]
    assert role.affects == (
        "affects 7 workloads: shop/Deployment/w0, shop/Deployment/w1, shop/Deployment/w2, "
        "shop/Deployment/w3, shop/Deployment/w4 and 2 more"
    )
    assert digest.count(NEW) == 2


def test_a_symptom_whose_root_cause_is_not_in_the_digest_is_an_entry_with_the_roots_fix() -> None:
    findings = audit(1)
    role, slow, symptom = findings
    digest = build_digest({CLUSTER: Changes(new=(symptom,), still_open=(role, slow))})
    [line] = digest.clusters[0].lines
    assert line.code == "PODS_IMAGE_PULL_FAILING" and line.cause == "auth_failed"
    assert line.remediation == "az role x"
    reminder = build_digest({CLUSTER: Changes(new=(symptom,), still_open=(role, slow))}, reminder=True)
    assert [(line.kind, line.code) for line in reminder.clusters[0].lines] == [
        (STILL_OPEN, "ROLE_MISSING"),
        (STILL_OPEN, "REGISTRY_SLOW"),
    ]


def test_resolved_is_one_line_for_the_root_cause_and_the_symptoms_that_cleared_with_it() -> None:
    digest = build_digest({CLUSTER: Changes(resolved=tuple(audit(2)))})
    lines = digest.clusters[0].of(RESOLVED)
    assert [line.code for line in lines] == ["ROLE_MISSING", "REGISTRY_SLOW"]
    assert lines[0].cleared_note == "pulls work again for 2 workloads: shop/Deployment/w0, shop/Deployment/w1"
    text = str(slack_payload(digest))
    assert "PODS_IMAGE_PULL_FAILING" not in text and "pulls work again for 2 workloads" in text


def test_errors_come_first_then_root_causes_by_workloads_affected() -> None:
    other = Finding("ROLE_NOT_HONORED_ABAC", "ABAC.", cluster=CLUSTER, registry="fabrikamacr.azurecr.io")
    findings = correlate(
        [
            SLOW,
            other,
            ROLE,
            pod("a"),
            pod("b"),
            pod("c", "fabrikamacr.azurecr.io/x:1").with_(registry="fabrikamacr.azurecr.io"),
        ]
    )
    lines = build_digest({CLUSTER: Changes(new=tuple(findings))}).clusters[0].lines
    assert [line.code for line in lines] == ["ROLE_MISSING", "ROLE_NOT_HONORED_ABAC", "REGISTRY_SLOW"]


def test_a_fix_is_at_most_two_sentences_and_the_command() -> None:
    assert brief_fix("One. Two. Three. Four.") == "One. Two."
    assert (
        brief_fix("One. Two. Three. Run `az acr login -n x`. Five.") == "One. Two. Run `az acr login -n x`."
    )
    script = "a=$(cat <<'EOF'\nX. Y. Z. W.\nEOF\n)\n\naz do it"
    assert brief_fix(script) == script


ABAC_FIX = (
    "condition=$(cat <<'EOF'\n((!(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/content/read'}))"
    " OR (@Request[Microsoft.ContainerRegistry/registries/repositories:name] "
    "ForAnyOfAnyValues:StringEqualsIgnoreCase {'team-a/ledger'}))\nEOF\n)\n\n"
    "az role assignment create --role 'Container Registry Repository Reader' --condition \"$condition\""
)


def test_an_abac_condition_is_its_own_code_block_and_the_blocks_run_as_written() -> None:
    abac = Finding("ROLE_NOT_HONORED_ABAC", "ABAC.", cluster=CLUSTER, registry=ACR, remediation=ABAC_FIX)
    digest = build_digest({CLUSTER: Changes(new=(abac,))})
    [line] = digest.clusters[0].lines
    assert len(line.fix_blocks) == 2 and line.fix_blocks[0].startswith("condition=$(cat <<'EOF'")
    slack = "\n".join(b["text"]["text"] for b in slack_payload(digest)["blocks"] if b["type"] == "section")
    assert slack.count("```") == 4 and "'\"'\"'" not in slack
    teams = [
        run["text"]
        for item in teams_payload(digest)["attachments"][0]["content"]["body"][-1]["items"]
        if item["type"] == "RichTextBlock"
        for run in item["inlines"]
        if run.get("fontType") == "Monospace"
    ]
    assert teams[:3] == ABAC_FIX.split("\n\n")[0].splitlines()[:3]
    script = "az() { printf '%s\\n' \"$@\"; }\n" + "\n".join(teams)
    argv = subprocess.run(["bash", "-c", script], capture_output=True, check=True, timeout=10).stdout.decode()
    assert "{'team-a/ledger'}))" in argv.splitlines()[-1]


def test_the_terminal_view_at_80_columns_is_the_diagnosis_layout_in_plain_text() -> None:
    from io import StringIO

    from rich.console import Console

    from shared.render.terminal import print_findings

    out = StringIO()
    print_findings(audit(3), console=Console(file=out, force_terminal=False, width=80))
    text = out.getvalue()
    assert "\x1b" not in text
    assert text.count("ROLE_MISSING") == 1 and "PODS_IMAGE_PULL_FAILING" not in text
    words = " ".join(text.split())  # wrapped at 80 columns
    assert "affects 3 workloads: shop/Deployment/w0, shop/Deployment/w1, shop/Deployment/w2" in words
    assert "\naz role x\n" in text  # the fix as written, flush left, ready to copy
    assert text.rstrip().endswith("2 problems (1 error, 1 info) from 5 findings")
    assert all(len(line) <= 80 for line in text.splitlines())


def test_the_sandbox_report_in_a_pipe_has_no_box_drawing() -> None:
    from io import StringIO

    from rich.console import Console

    from sandbox.report import print_report
    from shared.render import render

    findings = [f.to_dict() for f in audit(2)]
    digest = build_digest({CLUSTER: Changes(new=tuple(audit(2)))})
    report = {
        "world": "w",
        "initial": {"findings": findings},
        "steps": [{"step": {"wait": "1s"}, "findings": findings[:1]}],
        "findings": findings[:1],
        "notifications": [
            {"sink": "slack", "status": 200, "payload": render("slack", digest)},
            {"sink": "teams", "status": 202, "payload": render("teams", digest)},
        ],
        "requests": {"arm": 3, "registry": {ACR: 2}},
    }
    out = StringIO()
    print_report(report, [], console=Console(file=out, force_terminal=False, width=80))
    text = out.getvalue()
    assert not set("─│╭╮╯╰┏┓┗┛━┃") & set(text) and "\x1b" not in text
    assert "== Messages the webhooks received ==" in text and "-- slack — answered 200" in text
    assert "ROLE_MISSING · contosoacr.azurecr.io" in text and "RESOLVED Registry answers slowly" in text
