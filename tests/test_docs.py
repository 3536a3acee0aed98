"""The README and docs/ARCHITECTURE.md stay true to the code they describe."""

from __future__ import annotations

import importlib.util
import re
import struct
from pathlib import Path
from types import ModuleType

import pytest

from shared.config import SETTINGS
from shared.findings import CATALOGUE

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
DOCS = (README, ARCHITECTURE, ROOT / "docs" / "README.md")


def _previews() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_previews", ROOT / "docs" / "previews.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


previews = _previews()


def _section(text: str, heading: str) -> str:
    """The body of the ``## heading`` section (up to the next ``## ``)."""
    match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no '## {heading}' section"
    return match.group(1)


def _table_rows(block: str) -> list[list[str]]:
    rows = []
    for line in block.splitlines()[2:]:
        cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
        rows.append([c.strip().replace("\\|", "|") for c in cells])
    return rows


# --- README ------------------------------------------------------------------------------------


def test_readme_opens_with_make_demo_then_make_test() -> None:
    text = README.read_text(encoding="utf-8")
    first_block = re.search(r"```[a-z]*\n(.*?)```", text, re.S)
    assert first_block, "README has no code block"
    assert text.index("```") < text.index("\n## "), "the first code block must come before any section"
    commands = [line.split("#", 1)[0].strip() for line in first_block.group(1).splitlines()]
    commands = [c for c in commands if c]
    assert commands[:2] == ["make demo", "make test"]


def test_readme_settings_table_is_shared_config_settings() -> None:
    block = previews.marked_block(README.read_text(encoding="utf-8"), "settings")
    assert block == previews.settings_table(), "run `python docs/previews.py --tables`"
    rows = _table_rows(block)
    assert [r[0].strip("`") for r in rows] == [s.name for s in SETTINGS]
    for row, setting in zip(rows, SETTINGS, strict=True):
        assert row[1] == (f"`{setting.default}`" if setting.default else "(empty)")
        assert row[2].startswith(setting.meaning.replace("\n", " "))


def test_readme_codes_table_is_the_findings_catalogue() -> None:
    block = previews.marked_block(README.read_text(encoding="utf-8"), "codes")
    assert block == previews.codes_table(), "run `python docs/previews.py --tables`"
    rows = _table_rows(block)
    assert {r[0].strip("`"): r[1] for r in rows} == {c.code: c.severity.value for c in CATALOGUE.values()}


def test_table_generator_replaces_only_the_marked_block() -> None:
    text = "intro\n<!-- settings:begin -->\nold\n<!-- settings:end -->\n<!-- codes:begin -->\nx\n<!-- codes:end -->\nend\n"
    out = previews.with_tables(text)
    assert out.startswith("intro\n<!-- settings:begin -->\n| Setting |")
    assert out.endswith("<!-- codes:end -->\nend\n")
    assert "\nold\n" not in out
    with pytest.raises(previews.PreviewError, match="codes:begin"):
        previews.with_tables("<!-- settings:begin -->\nold\n<!-- settings:end -->\n")


# --- ARCHITECTURE ----------------------------------------------------------------------------------


def test_architecture_folder_map_names_every_module() -> None:
    folder_map = _section(ARCHITECTURE.read_text(encoding="utf-8"), "Folder map")
    named = set(re.findall(r"`([\w/.]+\.py)`", folder_map))
    modules = {
        p.relative_to(ROOT).as_posix()
        for folder in ("shared", "sandbox")
        for p in (ROOT / folder).rglob("*.py")
        if p.name != "__init__.py"
    }
    missing = sorted(modules - named)
    assert not missing, f"docs/ARCHITECTURE.md's folder map does not name: {missing}"


_PATH = re.compile(
    r"`((?:shared|sandbox|tests|bench|docs|infra|\.ci)/[\w./*-]*|function_app\.py|Makefile|"
    r"pyproject\.toml|requirements(?:-dev)?\.txt|package\.json|host\.json|azure\.yaml|"
    r"local\.settings\.json\.example)`"
)
_LINK = re.compile(r"\]\((?!https?:|#|mailto:)([^)#\s]+)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_path_a_doc_names_exists(doc: Path) -> None:
    if not doc.exists():
        pytest.skip(f"{doc.name} not written")
    text = doc.read_text(encoding="utf-8")
    missing = []
    for path in set(_PATH.findall(text)):
        if "*" in path:
            if not list(ROOT.glob(path)):
                missing.append(path)
        elif not (ROOT / path.rstrip("/")).exists():
            missing.append(path)
    for link in set(_LINK.findall(text)):
        if not (doc.parent / link).resolve().exists():
            missing.append(link)
    assert not missing, f"{doc.name} names paths that do not exist: {sorted(missing)}"


def test_ci_runs_make_test() -> None:
    ci = ROOT / ".ci" / "run"
    lines = [
        line.strip() for line in ci.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    assert lines[-1] == "make test"
    assert ci.stat().st_mode & 0o111, ".ci/run must be executable"


# --- the pictures and their Slack renderer ---------------------------------------------------------


@pytest.mark.parametrize("name", ["slack", "teams"])
def test_pictures_are_committed_pngs(name: str) -> None:
    data = (ROOT / "docs" / "img" / f"{name}.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == int(previews.WIDTH * previews.SCALE)
    assert height > 600, "the picture should show a whole message"


def test_slack_mrkdwn_renders_like_slack() -> None:
    html = previews.mrkdwn_html(
        "*<https://portal.azure.com/#@t/resource/x|aks-prod>* — `IMAGE_NOT_FOUND` in _shop_ ~old~ :red_circle:\n"
        "```kubectl create secret docker-registry a --docker-password=&lt;password&gt;```\n"
        "next line with snake_case_words and a*b*c"
    )
    assert html == (
        '<b><a href="https://portal.azure.com/#@t/resource/x">aks-prod</a></b> — '
        '<code class="code">IMAGE_NOT_FOUND</code> in <i>shop</i> <s>old</s> \U0001f534'
        '<pre class="pre">kubectl create secret docker-registry a --docker-password=&lt;password&gt;</pre>'
        "next line with snake_case_words and a*b*c"
    )


def test_slack_text_is_escaped_into_html() -> None:
    # Slack escapes & < > itself; anything else (quotes, an unescaped &) must not become markup.
    html = previews.mrkdwn_html('a &amp; b &lt;script&gt; "q" <https://x.test/?a=1&amp;b=2>')
    assert (
        html
        == 'a &amp; b &lt;script&gt; "q" <a href="https://x.test/?a=1&amp;b=2">https://x.test/?a=1&amp;b=2</a>'
    )


def test_slack_page_refuses_blocks_it_cannot_show() -> None:
    page = previews.slack_html(
        {
            "text": "fallback",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "pullwatch: 1 new"}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "1 new in 1 cluster"}]},
                {"type": "divider"},
            ],
        }
    )
    assert '<div class="header">pullwatch: 1 new</div>' in page
    assert '<div class="context"><span>1 new in 1 cluster</span></div>' in page
    with pytest.raises(previews.PreviewError, match="'actions'"):
        previews.slack_html({"blocks": [{"type": "actions", "elements": []}]})
