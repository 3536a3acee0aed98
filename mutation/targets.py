"""What ``make mutation`` mutates, and the fast unit tests each target is judged by.

One row per target: the source file, the functions to mutate (mutmut mutant-name globs, relative
to the module; ``*`` means every function in the file) and the test files that are that code's own
unit tests. Keep the test sets small: every mutant runs the tests that reach its function.
To retarget after a refactor (a function renamed or moved to another file), edit the row here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str  # the row's name in the score table
    source: str  # file under shared/
    functions: tuple[str, ...]  # mutmut mutant-name globs within the module, e.g. "x_scope_covers*"
    tests: tuple[str, ...]
    #: pytest ``-k`` expression narrowing the test files: leave out timed tests (mutmut's trampolines
    #: make every call slower) and keep slow files to the tests that exercise the target
    keyword: str = ""


#: the credential and realm tests of the registry client's (slow: sandbox registry world) test files
_REGISTRY_CREDENTIAL_TESTS = (
    "pull_secret or docker or realm or credential or prefix_of or spelling or never_reaches"
    " or anonymous or entra or tenant or audience or redirect or origin or scope"
)

TARGETS: tuple[Target, ...] = (
    Target("rbac", "shared/rbac.py", ("*",), ("tests/test_rbac.py",)),
    # ABAC conditions: parsing and evaluation of role-assignment conditions.
    Target("conditions", "shared/conditions.py", ("*",), ("tests/test_conditions.py", "tests/test_rbac.py")),
    # Azure's action matching (wildcards, case), used by both of the above.
    Target("actions", "shared/actions.py", ("*",), ("tests/test_rbac.py", "tests/test_conditions.py")),
    Target("compare", "shared/compare.py", ("*",), ("tests/test_compare.py",)),
    Target("netguard", "shared/netguard.py", ("*",), ("tests/test_netguard.py",)),
    Target(
        "explain",
        "shared/explain.py",
        ("*",),
        ("tests/test_explain.py",),
        keyword="not read_fast and not read_quickly and not costs_no_more and not adversarial_runs"
        " and not linear_time",
    ),
    Target("plan", "shared/plan.py", ("*",), ("tests/test_plan.py", "tests/test_plan_decisions.py")),
    # Pull-secret host matching: kubelet's rule for which docker-config entry serves an image.
    Target(
        "pull-secret hosts",
        "shared/checks/secrets.py",
        (
            "x_keyring_key__*",
            "x__split__*",
            "x__glob__*",
            "x_urls_match__*",
            "x__is_default_registry_match__*",
            "x_entry_matches__*",
        ),
        ("tests/test_secret_checks.py",),
    ),
    # The registry client's credential rule: which credential is sent to which host (and realm).
    Target(
        "credential rule",
        "shared/clients/registry/credential_rule.py",
        ("*",),
        (
            "tests/test_credential_rule.py",
            "tests/test_registry_client.py",
            "tests/test_registry_redirect_credentials.py",
        ),
        keyword=_REGISTRY_CREDENTIAL_TESTS,
    ),
    # The authenticator's choice of credential and auth scheme per registry challenge.
    Target(
        "registry credentials",
        "shared/clients/registry/auth.py",
        (
            "xǁAuthenticatorǁ_credential_matches__*",
            "xǁAuthenticatorǁ_choose_auth__*",
            "xǁAuthenticatorǁdecide__*",
        ),
        ("tests/test_registry_client.py", "tests/test_registry_redirect_credentials.py"),
        keyword=_REGISTRY_CREDENTIAL_TESTS,
    ),
    # The renderers: diagnoses, escaping, Slack block/section limits and Teams card size and layout.
    Target(
        "render slack",
        "shared/render/slack.py",
        ("*",),
        ("tests/test_render_slack.py", "tests/test_render_slack_layout.py", "tests/test_render_diagnoses.py"),
    ),
    Target(
        "render teams",
        "shared/render/teams.py",
        ("*",),
        ("tests/test_render_teams.py", "tests/test_render_teams_layout.py", "tests/test_render_diagnoses.py"),
    ),
)
