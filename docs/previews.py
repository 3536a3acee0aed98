"""Pictures of real pullwatch messages, and the README's generated tables.

``python docs/previews.py`` (see docs/README.md) runs the demo world in-process, takes the first
Slack and the first Teams payload the sandbox's webhook sink received, and screenshots them with
headless Chromium into ``docs/img/slack.png`` and ``docs/img/teams.png``:

- Teams: the Adaptive Card (``attachments[0].content``) rendered by the official Adaptive Cards
  JavaScript renderer (npm ``adaptivecards``, markdown by ``markdown-it``, both pinned in
  package.json) with a Teams-like host config. A card the renderer reports parse errors for fails.
- Slack: the Block Kit payload rendered by :func:`slack_html`, a small renderer of the blocks and
  mrkdwn pullwatch sends (header, section, context, divider; *bold*, _italic_, ~strike~, `code`,
  ```code blocks```, ``<url|text>`` links, ``:emoji:``), styled like Slack's desktop client. A block
  type it does not know fails instead of being skipped.

``python docs/previews.py --tables`` rewrites the README's settings and finding-code tables from
:data:`shared.config.SETTINGS` and :data:`shared.findings.CATALOGUE` (tests/test_docs.py checks
that they match).
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "docs" / "img"
README = ROOT / "README.md"
DEMO_WORLD = ROOT / "sandbox" / "worlds" / "demo.yaml"
NODE_MODULES = ROOT / "node_modules"
CHROMIUM_TIMEOUT_SECONDS = 90
WIDTH = 760
SCALE = 1.5


class PreviewError(RuntimeError):
    """A picture cannot be made; the message says what is missing or wrong."""


# --- README tables --------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_table() -> str:
    from shared.config import SETTINGS

    rows = ["| Setting | Default | Meaning |", "|---|---|---|"]
    for s in SETTINGS:
        default = f"`{_cell(s.default)}`" if s.default else "(empty)"
        meaning = _cell(s.meaning) + (
            " **Secret.**" if s.secret and "secret" not in s.meaning.lower() else ""
        )
        rows.append(f"| `{s.name}` | {default} | {meaning} |")
    return "\n".join(rows)


def codes_table() -> str:
    from shared.findings import CATALOGUE

    rows = ["| Code | Severity | Group | Title |", "|---|---|---|---|"]
    for code in CATALOGUE.values():
        rows.append(f"| `{code.code}` | {code.severity.value} | {code.group} | {_cell(code.title)} |")
    return "\n".join(rows)


TABLES = {"settings": settings_table, "codes": codes_table}


def _marked(text: str, name: str) -> re.Match[str]:
    match = re.search(rf"<!-- {name}:begin -->\n(.*?)\n?<!-- {name}:end -->", text, re.S)
    if not match:
        raise PreviewError(f"README.md has no <!-- {name}:begin --> ... <!-- {name}:end --> block")
    return match


def marked_block(text: str, name: str) -> str:
    """The text between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` (stripped)."""
    return _marked(text, name).group(1).strip()


def with_tables(text: str) -> str:
    """README text with every generated table replaced by its current rendering."""
    for name, make in TABLES.items():
        match = _marked(text, name)
        text = text[: match.start(1)] + make() + "\n" + text[match.end(0) - len(f"<!-- {name}:end -->") :]
    return text


# --- Slack Block Kit -> HTML ----------------------------------------------------------------------

EMOJI = {
    "red_circle": "\U0001f534",
    "large_orange_circle": "\U0001f7e0",
    "large_yellow_circle": "\U0001f7e1",
    "large_blue_circle": "\U0001f535",
    "large_green_circle": "\U0001f7e2",
    "white_check_mark": "\u2705",
    "grey_question": "\u2754",
    "warning": "\u26a0\ufe0f",
    "x": "\u274c",
}

_FENCE = re.compile(r"```(.*?)```", re.S)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"<([^<>|\s]+)(?:\|([^<>]*))?>")
_STYLES = (
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]*?\S)\*(?![\w*])"), "b"),
    (re.compile(r"(?<![\w_])_(?=\S)([^_\n]*?\S)_(?![\w_])"), "i"),
    (re.compile(r"(?<![\w~])~(?=\S)([^~\n]*?\S)~(?![\w~])"), "s"),
)
_EMOJI = re.compile(r":([a-z0-9_+-]+):")


def slack_unescape(text: str) -> str:
    """Slack's three escapes (&amp; &lt; &gt;) back to characters."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _leaf(text: str) -> str:
    return html.escape(slack_unescape(text), quote=False)


def _styled(text: str) -> str:
    """Slack-escaped text without code → HTML: links, *bold*, _italic_, ~strike~, :emoji:."""
    links: list[str] = []

    def keep_link(match: re.Match[str]) -> str:
        url, label = match.group(1), match.group(2)
        target = html.escape(slack_unescape(url))
        links.append(f'<a href="{target}">{_format(label) if label else _leaf(url)}</a>')
        return f"\x00{len(links) - 1}\x00"

    text = _LINK.sub(keep_link, text)
    out = _format(text)
    return re.sub("\x00(\\d+)\x00", lambda m: links[int(m.group(1))], out)


def _format(text: str) -> str:
    out = _leaf(text)
    for pattern, tag in _STYLES:
        out = pattern.sub(rf"<{tag}>\1</{tag}>", out)
    return _EMOJI.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), out)


def mrkdwn_html(text: str) -> str:
    """One Slack mrkdwn text → HTML, the way Slack's client lays it out."""
    parts: list[str] = []
    pos = 0
    for fence in _FENCE.finditer(text):
        before = text[pos : fence.start()]
        if pos:
            before = before.removeprefix("\n")  # the block absorbs one newline on each side
        parts.append(_inline(before.removesuffix("\n")))
        parts.append(f'<pre class="pre">{_leaf(fence.group(1).strip(chr(10)))}</pre>')
        pos = fence.end()
    parts.append(_inline(text[pos:].removeprefix("\n") if pos else text))
    return "".join(parts)


def _inline(text: str) -> str:
    out: list[str] = []
    pos = 0
    for code in _INLINE_CODE.finditer(text):
        out.append(_styled(text[pos : code.start()]))
        out.append(f'<code class="code">{_leaf(code.group(1))}</code>')
        pos = code.end()
    out.append(_styled(text[pos:]))
    return "".join(out).replace("\n", "<br>")


def _text_object(obj: Mapping[str, Any]) -> str:
    kind, text = obj.get("type"), str(obj.get("text", ""))
    if kind == "mrkdwn":
        return mrkdwn_html(text)
    if kind == "plain_text":
        escaped = html.escape(text, quote=False)
        if obj.get("emoji", True):
            escaped = _EMOJI.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), escaped)
        return escaped.replace("\n", "<br>")
    raise PreviewError(f"Slack text object of type {kind!r} is not rendered")


def block_html(block: Mapping[str, Any]) -> str:
    kind = block.get("type")
    if kind == "header":
        return f'<div class="header">{_text_object(block["text"])}</div>'
    if kind == "section":
        inner = _text_object(block["text"]) if "text" in block else ""
        fields = "".join(f'<div class="field">{_text_object(f)}</div>' for f in block.get("fields", []))
        if fields:
            inner += f'<div class="fields">{fields}</div>'
        return f'<div class="section">{inner}</div>'
    if kind == "context":
        items = []
        for element in block.get("elements", []):
            if element.get("type") == "image":
                alt = html.escape(str(element.get("alt_text", "")))
                items.append(
                    f'<img class="context-image" alt="{alt}" src="{html.escape(element["image_url"])}">'
                )
            else:
                items.append(f"<span>{_text_object(element)}</span>")
        return f'<div class="context">{"".join(items)}</div>'
    if kind == "divider":
        return '<hr class="divider">'
    raise PreviewError(f"Slack block of type {kind!r} is not rendered")


SLACK_CSS = """
body { margin: 0; background: #fff; font-family: Lato, 'Slack-Lato', 'Helvetica Neue', Arial, sans-serif;
       font-size: 15px; line-height: 1.46668; color: #1d1c1d; -webkit-font-smoothing: antialiased; }
.message { display: flex; padding: 12px 20px 14px; }
.avatar { flex: none; width: 36px; height: 36px; border-radius: 6px; background: #0b6e4f; color: #fff;
          font-weight: 900; font-size: 15px; line-height: 36px; text-align: center; margin-right: 8px; }
.content { flex: 1; min-width: 0; }
.sender { font-weight: 900; }
.badge { display: inline-block; background: rgba(29,28,29,.13); color: rgba(29,28,29,.7); font-size: 10px;
         font-weight: 700; border-radius: 2px; padding: 0 3px; line-height: 16px; margin-left: 4px;
         vertical-align: 1px; }
.time { color: #616061; font-size: 12px; margin-left: 6px; }
.header { font-size: 18px; font-weight: 900; line-height: 1.33334; margin: 6px 0 2px; }
.section { margin: 4px 0; overflow-wrap: anywhere; }
.fields { display: grid; grid-template-columns: 1fr 1fr; gap: 4px 16px; }
.context { color: #616061; font-size: 13px; line-height: 1.38463; margin: 4px 0; }
.context span + span { margin-left: 8px; }
.divider { border: 0; border-top: 1px solid rgba(29,28,29,.13); margin: 10px 0; }
a { color: #1264a3; text-decoration: none; }
.code { font-family: Monaco, Menlo, Consolas, 'DejaVu Sans Mono', monospace; font-size: 12px; color: #e01e5a;
        background: rgba(29,28,29,.04); border: 1px solid rgba(29,28,29,.13); border-radius: 3px;
        padding: 2px 3px 1px; }
.pre { font-family: Monaco, Menlo, Consolas, 'DejaVu Sans Mono', monospace; font-size: 12px; line-height: 1.50001;
       background: rgba(29,28,29,.04); border: 1px solid rgba(29,28,29,.13); border-radius: 4px;
       padding: 8px; margin: 4px 0; white-space: pre-wrap; overflow-wrap: anywhere; }
"""


def slack_html(payload: Mapping[str, Any], sender: str = "pullwatch", time: str = "2:00 AM") -> str:
    """A whole HTML page showing a Slack incoming-webhook payload as one message in a channel."""
    blocks = payload.get("blocks")
    if blocks:
        body = "".join(block_html(b) for b in blocks)
    else:
        body = f'<div class="section">{mrkdwn_html(str(payload.get("text", "")))}</div>'
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Slack message</title>'
        f"<style>{SLACK_CSS}</style></head><body>"
        '<div class="message"><div class="avatar">pw</div><div class="content">'
        f'<div><span class="sender">{html.escape(sender)}</span><span class="badge">APP</span>'
        f'<span class="time">{html.escape(time)}</span></div>{body}</div></div>'
        f"<script>{_MEASURE_JS}</script></body></html>"
    )


# --- Teams Adaptive Card -> HTML (official renderer) ----------------------------------------------

TEAMS_HOST_CONFIG: dict[str, Any] = {
    "fontFamily": "'Segoe UI', 'Noto Sans', 'DejaVu Sans', sans-serif",
    "supportsInteractivity": True,
    "spacing": {"small": 4, "default": 8, "medium": 16, "large": 20, "extraLarge": 24, "padding": 16},
    "separator": {"lineThickness": 1, "lineColor": "#E0E0E0"},
    "fontTypes": {
        "default": {
            "fontFamily": "'Segoe UI', 'Noto Sans', 'DejaVu Sans', sans-serif",
            "fontSizes": {"small": 12, "default": 14, "medium": 14, "large": 18, "extraLarge": 24},
            "fontWeights": {"lighter": 200, "default": 400, "bolder": 600},
        },
        "monospace": {
            "fontFamily": "Consolas, Menlo, 'DejaVu Sans Mono', monospace",
            "fontSizes": {"small": 12, "default": 13, "medium": 14, "large": 18, "extraLarge": 24},
            "fontWeights": {"lighter": 200, "default": 400, "bolder": 600},
        },
    },
    "containerStyles": {
        "default": {
            "backgroundColor": "#FFFFFF",
            "foregroundColors": {
                "default": {"default": "#242424", "subtle": "#616161"},
                "accent": {"default": "#5B5FC7", "subtle": "#444791"},
                "attention": {"default": "#C4314B", "subtle": "#A72037"},
                "good": {"default": "#237B4B", "subtle": "#0E5C2F"},
                "warning": {"default": "#835B00", "subtle": "#6A4A00"},
                "dark": {"default": "#242424", "subtle": "#424242"},
                "light": {"default": "#FFFFFF", "subtle": "#F5F5F5"},
            },
        },
        "emphasis": {
            "backgroundColor": "#F5F5F5",
            "foregroundColors": {
                "default": {"default": "#242424", "subtle": "#616161"},
                "accent": {"default": "#5B5FC7", "subtle": "#444791"},
                "attention": {"default": "#C4314B", "subtle": "#A72037"},
                "good": {"default": "#237B4B", "subtle": "#0E5C2F"},
                "warning": {"default": "#835B00", "subtle": "#6A4A00"},
                "dark": {"default": "#242424", "subtle": "#424242"},
                "light": {"default": "#FFFFFF", "subtle": "#F5F5F5"},
            },
        },
    },
    "actions": {"maxActions": 6, "buttonSpacing": 8, "actionsOrientation": "horizontal"},
}

TEAMS_CSS = """
body { margin: 0; background: #F5F5F5; font-family: 'Segoe UI', 'Noto Sans', 'DejaVu Sans', sans-serif;
       color: #242424; }
.message { display: flex; padding: 16px 20px; }
.avatar { flex: none; width: 32px; height: 32px; border-radius: 50%; background: #5B5FC7; color: #fff;
          font-size: 12px; font-weight: 600; line-height: 32px; text-align: center; margin-right: 10px; }
.bubble { flex: 1; min-width: 0; }
.meta { font-size: 12px; color: #616161; margin-bottom: 4px; }
.meta b { color: #242424; font-weight: 600; margin-right: 8px; }
.card { background: #fff; border: 1px solid #E0E0E0; border-radius: 6px; overflow: hidden;
        box-shadow: 0 1px 2px rgba(0,0,0,.12); }
.ac-textBlock p { margin: 0; }
.ac-textBlock a { color: #5B5FC7; text-decoration: none; }
"""

_MEASURE_JS = (
    "document.body.setAttribute('data-height', String(Math.ceil("
    "document.querySelector('.message').getBoundingClientRect().bottom)));"
)


def _script_json(value: Any) -> str:
    return json.dumps(value).replace("</", "<\\/")


def teams_html(card: Mapping[str, Any], node_modules: Path = NODE_MODULES) -> str:
    """A whole HTML page rendering an Adaptive Card with the official JS renderer, in a Teams post."""
    renderer = node_modules / "adaptivecards" / "dist" / "adaptivecards.min.js"
    markdown = node_modules / "markdown-it" / "dist" / "markdown-it.min.js"
    for path in (renderer, markdown):
        if not path.is_file():
            raise PreviewError(f"{path} is missing: run `npm install` in {ROOT}")
    script = f"""
const errors = [];
try {{
  // The Markdown subset Adaptive Cards support in TextBlocks (bold, italic, links, lists) plus
  // backslash escapes; anything else (`code`, headings, HTML) shows as typed, as in Teams.
  const md = window.markdownit('zero', {{html: false}}).enable(['emphasis', 'link', 'list', 'escape']);
  AdaptiveCards.AdaptiveCard.onProcessMarkdown = (text, result) => {{
    result.outputHtml = md.render(text);
    result.didProcess = true;
  }};
  const card = new AdaptiveCards.AdaptiveCard();
  card.hostConfig = new AdaptiveCards.HostConfig({_script_json(TEAMS_HOST_CONFIG)});
  const context = new AdaptiveCards.SerializationContext();
  card.parse({_script_json(card)}, context);
  for (let i = 0; i < context.eventCount; i++) {{
    const e = context.getEventAt(i);
    errors.push(String(e.message));
  }}
  const element = card.render();
  if (!element) {{ errors.push('render() returned nothing'); }}
  else {{ document.getElementById('card').appendChild(element); }}
}} catch (exc) {{ errors.push('exception: ' + exc); }}
document.body.setAttribute('data-errors', JSON.stringify(errors));
{_MEASURE_JS}
"""
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Teams message</title>'
        f"<style>{TEAMS_CSS}</style>"
        f'<script src="{markdown.as_uri()}"></script><script src="{renderer.as_uri()}"></script>'
        '</head><body><div class="message"><div class="avatar">W</div><div class="bubble">'
        '<div class="meta"><b>Workflows</b>2:00 AM</div><div class="card" id="card"></div></div></div>'
        f"<script>{script}</script></body></html>"
    )


# --- headless Chromium ----------------------------------------------------------------------------


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise PreviewError("chromium is not installed: `sudo apt-get install -y chromium` (see docs/README.md)")


def _chromium(args: Sequence[str], width: int, height: int) -> str:
    profile = tempfile.mkdtemp(prefix="pullwatch-chromium-")
    try:
        command = [
            chromium_binary(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--allow-file-access-from-files",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--force-device-scale-factor={SCALE}",
            *args,
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_SECONDS, check=False
        )
        if done.returncode != 0:
            raise PreviewError(f"chromium exited {done.returncode}: {done.stderr.strip()[-500:]}")
        return done.stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(page: str, out: Path, width: int = WIDTH) -> None:
    """Render ``page`` (HTML text) and save a PNG exactly as tall as its message."""
    with tempfile.TemporaryDirectory(prefix="pullwatch-preview-") as tmp:
        source = Path(tmp) / "page.html"
        source.write_text(page, encoding="utf-8")
        dom = _chromium(["--dump-dom", source.as_uri()], width, 2000)
        errors = re.search(r'data-errors="([^"]*)"', dom)
        if errors and json.loads(html.unescape(errors.group(1))):
            raise PreviewError(f"the Adaptive Card renderer reported: {html.unescape(errors.group(1))}")
        measured = re.search(r'data-height="(\d+)"', dom)
        if not measured:
            raise PreviewError("the page did not render (no measured height in Chromium's DOM)")
        height = int(measured.group(1)) + 16
        out.parent.mkdir(parents=True, exist_ok=True)
        _chromium([f"--screenshot={out}", source.as_uri()], width, height)
        if not out.is_file():
            raise PreviewError(f"chromium wrote no screenshot to {out}")


# --- the demo's payloads --------------------------------------------------------------------------


def demo_payloads(world: Path = DEMO_WORLD) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first Slack and the first Teams payload the sink received in ``world``."""
    from sandbox.runner import run_world

    report, _ = run_world(world, quiet=True)
    first: dict[str, dict[str, Any]] = {}
    for note in report["notifications"]:
        first.setdefault(note["sink"], note["payload"])
    missing = {"slack", "teams"} - first.keys()
    if missing:
        raise PreviewError(f"{world} sent no {' or '.join(sorted(missing))} message")
    return first["slack"], first["teams"]


def saved_payloads(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Payloads written earlier with ``--payloads`` (slack.json, teams.json), to re-render quickly."""
    try:
        slack, teams = (
            json.loads((folder / f"{n}.json").read_text(encoding="utf-8")) for n in ("slack", "teams")
        )
    except (OSError, ValueError) as exc:
        raise PreviewError(f"cannot read the saved payloads in {folder}: {exc}") from None
    return slack, teams


def make_pictures(
    out_dir: Path = IMG,
    world: Path = DEMO_WORLD,
    keep_payloads: bool = False,
    payload_dir: Path | None = None,
) -> list[Path]:
    slack, teams = saved_payloads(payload_dir) if payload_dir else demo_payloads(world)
    card = teams["attachments"][0]["content"]
    slack_png, teams_png = out_dir / "slack.png", out_dir / "teams.png"
    screenshot(slack_html(slack), slack_png)
    screenshot(teams_html(card), teams_png)
    written = [slack_png, teams_png]
    if keep_payloads:
        for name, payload in (("slack", slack), ("teams", teams)):
            path = out_dir / f"{name}.json"
            path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tables", action="store_true", help="rewrite README.md's generated tables only")
    parser.add_argument("--payloads", action="store_true", help="also write the payloads as docs/img/*.json")
    parser.add_argument(
        "--from-payloads",
        metavar="DIR",
        type=Path,
        help="render slack.json / teams.json from DIR (no sandbox run)",
    )
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        if args.tables:
            README.write_text(with_tables(README.read_text(encoding="utf-8")), encoding="utf-8")
            print(f"wrote the settings and codes tables in {README}")
            return 0
        for path in make_pictures(keep_payloads=args.payloads, payload_dir=args.from_payloads):
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    except PreviewError as exc:
        print(f"previews: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
