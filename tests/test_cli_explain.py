"""``pullwatch explain`` as a user runs it: the installed console script, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PULLWATCH = Path(sys.executable).with_name("pullwatch")

ACR_401 = (
    'Failed to pull image "contosoacr.azurecr.io/web:1.4.2": rpc error: code = Unknown desc = failed to pull '
    'and unpack image "contosoacr.azurecr.io/web:1.4.2": failed to resolve reference '
    '"contosoacr.azurecr.io/web:1.4.2": failed to authorize: failed to fetch oauth token: unexpected status: '
    "401 Unauthorized"
)


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    assert PULLWATCH.exists(), f"{PULLWATCH} is missing: install the package (pip install --no-deps -e .)"
    env = {k: v for k, v in os.environ.items() if k != "PULLWATCH_DEBUG"}
    return subprocess.run(
        [str(PULLWATCH), "explain", *args], input=stdin, capture_output=True, timeout=60, env=env, check=False
    )


def assert_clean_failure(result: subprocess.CompletedProcess[bytes]) -> str:
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert "Traceback" not in stderr
    assert result.stdout == b""
    return stderr


def test_json_is_one_document_with_the_contract_keys() -> None:
    result = run("--json", ACR_401)
    assert result.returncode == 0, result.stderr.decode()
    document = json.loads(result.stdout)  # raises if there is anything but one JSON document
    assert document == {
        "cause": "auth_failed",
        "summary": "registry contosoacr.azurecr.io refused the pull credentials (401 from its token endpoint) "
        "for contosoacr.azurecr.io/web:1.4.2",
        "remediation": document["remediation"],
        "registry": "contosoacr.azurecr.io",
        "image": "contosoacr.azurecr.io/web:1.4.2",
    }
    assert "AcrPull" in document["remediation"]
    assert result.stderr == b""


def test_stdin_with_dash() -> None:
    message = 'Back-off pulling image "nginx:1.2"\n'
    result = run("--json", "-", stdin=message.encode())
    assert result.returncode == 0, result.stderr.decode()
    document = json.loads(result.stdout)
    assert (document["cause"], document["registry"], document["image"]) == (
        "no_detail",
        "docker.io",
        "nginx:1.2",
    )


def test_stdin_multi_line_event_dump() -> None:
    events = (
        '  Warning  Failed  2m (x4 over 3m)  kubelet  Failed to pull image "ghcr.io/org/app:1": rpc error: code '
        '= Unknown desc = failed to pull and unpack image "ghcr.io/org/app:1": failed to resolve reference '
        '"ghcr.io/org/app:1": ghcr.io/org/app:1: not found\n'
        "  Warning  Failed  2m (x4 over 3m)  kubelet  Error: ErrImagePull\n"
        '  Normal   BackOff 1m (x6 over 3m)  kubelet  Back-off pulling image "ghcr.io/org/app:1"\n'
    )
    document = json.loads(run("--json", "-", stdin=events.encode()).stdout)
    assert (document["cause"], document["registry"]) == ("not_found", "ghcr.io")


def test_several_arguments_are_joined() -> None:
    result = run(
        "--json", "dial", "tcp:", "lookup", "myacr.azurecr.io", "on", "10.0.0.10:53:", "no", "such", "host"
    )
    assert json.loads(result.stdout)["cause"] == "dns"


def test_human_view() -> None:
    result = run(ACR_401)
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert "auth_failed" in out and "contosoacr.azurecr.io" in out and "az aks check-acr" in out
    assert "\x1b[" not in out  # no colour codes when stdout is not a terminal


def test_exit_zero_whatever_the_cause() -> None:
    assert run("--json", "Error: ErrImagePull").returncode == 0
    assert run("--json", "something nobody has seen before").returncode == 0


@pytest.mark.parametrize("args", [("",), ("--json", "   "), ("--json", "\n\t")])
def test_empty_message_is_bad_input(args: tuple[str, ...]) -> None:
    stderr = assert_clean_failure(run(*args))
    assert "no message" in stderr


def test_empty_stdin_is_bad_input() -> None:
    stderr = assert_clean_failure(run("--json", "-", stdin=b""))
    assert "no message" in stderr


def test_no_argument_is_a_usage_error() -> None:
    result = run()
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr
    assert b"Usage" in result.stderr


def test_undecodable_stdin_is_read_not_a_traceback() -> None:
    result = run("--json", "-", stdin=b'Failed to pull image "nginx": \xff\xfe 429 Too Many Requests')
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["cause"] == "rate_limited"


def test_big_stdin_is_read() -> None:
    message = b'Failed to pull image "nginx": ' + b"x" * 200_000 + b" no space left on device"
    result = run("--json", "-", stdin=message)
    assert result.returncode == 0
    assert json.loads(result.stdout)["cause"] == "disk_full"
