"""Read kubelet / container-runtime pull-error text and say what broke (``pullwatch explain``).

The cause codes are the contract in docs/spec/causes.md (catalogue: :mod:`shared.causes`).
Reading a message goes in four steps, each a small pure function:

1. :func:`normalise` undoes JSON escaping (``\\"``, ``\\u0027``), typographic quotes and HTML
   entities, so every later pattern sees plain ASCII quotes.
2. :func:`split_errors` cuts kubelet's aggregate ``[err1, err2]`` (one error per credential tried)
   and CRI-O's ``N errors occurred: * a * b`` into one text per attempt.
3. :func:`classify` reads one attempt against :data:`shared.explain_rules.RULES`, an ordered
   table: the first rule that matches names the cause, so the order is the precedence (``no such
   host`` is ``dns`` before anything could call it ``not_found``; a token fetch's 401 is
   ``auth_failed`` before a later ``not found``). Names are blanked before the rules read a text (an image ``acme/denied:429`` or a
   pod ``web-403-x`` says nothing about why). The first attempt with a cause wins; an anonymous-token
   401 is noise whenever another attempt says more (AKS always tries anonymously too).
4. Text that matches no rule is ``no_detail`` when nothing but wrappers is left once the wrappers
   (``Back-off pulling image "x"``, ``Error: ErrImagePull``, event columns) are removed, and
   ``unknown`` otherwise: never guess.

The patterns, and how they stay fast, are in :mod:`shared.explain_rules`; this module is the
reading. Texts over 64 KB are read as their first 48 KB and last 16 KB. A typical message takes a
millisecond or two, an adversarial 64 KB one under 100 ms (``make bench``, row "explain, worst
adversarial 64 KB message").
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

from shared.causes import BY_CODE, remediation_for
from shared.explain_rules import (
    BOILER_CREDENTIALS,
    HEADER_PATTERNS,
    IMAGE_PATTERNS,
    NAME_PATTERNS,
    NOISE_401,
    RULES,
    WRAPPER_WORDS,
    WRAPPERS,
    Rule,
    ascii_lower,
)
from shared.reference import DOCKER_HUB, DOCKER_HUB_ALIASES, ReferenceError, parse_reference

# --- the result -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Explanation:
    cause: str  # a code from causes.md
    summary: str  # one line, names the registry/image when known
    remediation: str  # what to check / the fix, concrete
    registry: str | None  # registry host named in the text (docker.io for "nginx"), None if none
    image: str | None  # the image reference as named in the text, None if none

    def to_dict(self) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "summary": self.summary,
            "remediation": self.remediation,
            "registry": self.registry,
            "image": self.image,
        }


# --- 1. normalise -----------------------------------------------------------------------------

_TYPOGRAPHIC = str.maketrans(
    {
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u00a0": " ",
        "\u2028": "\n",
        "\u2029": "\n",
    }
)
_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
# A run of backslashes is matched only from its first backslash (the look-behind): trying every start
# inside a run of n backslashes would cost n^2 steps on a text that is one long run.
_ESCAPED_QUOTE = re.compile(r"(?<!\\)\\+([\"'])")
_ESCAPED_SPACE = re.compile(r"(?<!\\)(?:\\+[nrt](?![a-z])|\\+r\\+n)")
_HTML_ENTITY = re.compile(r"&(?:#\d{1,6}|#x[0-9a-fA-F]{1,6}|quot|amp|lt|gt|apos);")


def normalise(text: str) -> str:
    """Plain text: JSON escapes undone (at any depth), typographic quotes made ASCII."""
    if "\\u" in text:
        text = _UNICODE_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    if "&" in text and _HTML_ENTITY.search(text):
        text = html.unescape(text)
    if "\\" in text:
        text = _ESCAPED_QUOTE.sub(r"\1", text)
        text = _ESCAPED_SPACE.sub(" ", text)
    return text.translate(_TYPOGRAPHIC)


# --- 2. split aggregates ----------------------------------------------------------------------

# A new attempt starts after ", " (kubelet's aggregate) or a bullet (CRI-O / podman) with one of
# these openings; commas inside one error never precede them.
_ATTEMPT_START = (
    r"rpc error: code|failed to pull and unpack image|failed to pull image|Error response from daemon"
    r"|failed to resolve reference|failed to authorize|pull access denied|Error initializing source"
    r"|Error reading manifest|reading manifest|unable to pull|initializing source"
)
_SPLIT = re.compile(rf"(?:,\s{{1,4}}|\n\s{{0,12}}\*\s|\s\*\s)(?=(?:{_ATTEMPT_START}))")


def split_errors(text: str) -> list[str]:
    """One text per pull attempt, in the order the runtime reported them."""
    parts = [p for p in _SPLIT.split(text) if p.strip()]
    return parts or [text]


# --- 3. classify ------------------------------------------------------------------------------


_TOKEN = re.compile(r"[a-z0-9][a-z0-9._\-/:@]*")  # words and identifiers (pod names, hashes, paths)
_THREE_LETTERS = re.compile(r"[a-z]{3}")


def _has_cause_words(lowered: str) -> bool:
    """Whether anything but wrappers is left in (lowercased) text."""
    if not _THREE_LETTERS.search(lowered):  # removing wrappers only blanks text: no word can appear
        return False
    residue = WRAPPERS.sub(" ", lowered)
    return any(
        len(token) >= 3 and token.isalpha() and token not in WRAPPER_WORDS
        for token in _TOKEN.findall(residue)
    )


@dataclass(frozen=True)
class Reading:
    """What one attempt's text says: its cause and the words that showed it."""

    cause: str
    evidence: str
    noise: bool = False  # an anonymous-token 401: true, but says nothing when another attempt does


def _mask_names(lowered: str) -> str:
    """``lowered`` with image references, object and pod names, quoted paths and log headers blanked out."""
    spans: list[tuple[int, int]] = []
    for pattern in (*IMAGE_PATTERNS, *NAME_PATTERNS):
        for match in pattern.finditer(lowered):
            spans.extend(match.span(i) for i in range(1, (match.lastindex or 0) + 1) if match.start(i) >= 0)
    for pattern in HEADER_PATTERNS:
        spans.extend(match.span() for match in pattern.finditer(lowered))
    if not spans:
        return lowered
    chars = list(lowered)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def classify(text: str) -> Reading:
    """The cause of one attempt's text (already normalised)."""
    lowered = BOILER_CREDENTIALS.sub(lambda m: " " * len(m.group(0)), ascii_lower(text))
    unnamed = _mask_names(lowered)
    for rule in RULES:
        match = rule.pattern.search(unnamed)
        if match:
            evidence = rule.evidence or _clause(text, _evidence_at(rule, unnamed, match))
            noise = rule.cause == "auth_failed" and bool(NOISE_401.search(unnamed))
            return Reading(rule.cause, evidence, noise)
    if _has_cause_words(lowered):  # the wrappers know the kubelet's phrases around a name
        return Reading("unknown", _last_clause(text))
    return Reading("no_detail", "")


def _evidence_at(rule: Rule, text: str, first: re.Match[str]) -> int:
    for preferred in rule.detail:
        detail = preferred.search(text)
        if detail:
            return detail.start()
    last = first
    for last in rule.pattern.finditer(text, first.end()):  # noqa: B007 - the last one is wanted
        pass
    return last.start()


_CLAUSE_END = re.compile(r"\n|\"(?=[:,}]|\s*$)|</|\. |\s\(0x")


def _clause(text: str, start: int, limit: int = 90) -> str:
    """The words from ``start`` to the end of their clause, cut to ``limit`` characters."""
    window = text[start : start + limit * 2]
    end = _CLAUSE_END.search(window, 1)
    clause = window[: end.start()] if end else window
    clause = clause.strip(" :;,]")
    if clause.count(")") > clause.count("("):
        clause = clause.rstrip(")")
    return _trim(clause, limit)


def _last_clause(text: str) -> str:
    """The last ``: ``-separated clause of the text's first line with words: where runtimes put the why."""
    line = next((ln for ln in text.splitlines() if _has_cause_words(ascii_lower(ln))), text)[-2000:]
    for clause in reversed(line.split(": ")):
        if _has_cause_words(ascii_lower(clause)):
            return _trim(clause.strip(" :;,\"'"))
    return _trim(line)


def _trim(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def read_cause(text: str) -> Reading:
    """The cause of a whole (normalised) message: the first attempt with one, noise skipped."""
    readings = [classify(part) for part in split_errors(text)]
    real = [r for r in readings if r.cause != "no_detail"]
    if not real:
        return readings[0]
    telling = [r for r in real if not r.noise]
    return (telling or real)[0]


# --- 4. registry and image --------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"^(?:<[^<>]*>|\*+|x+|X+|CENSORED|REDACTED|redacted|\.\.\.)$")
_REGISTRY_URL = re.compile(r"https?://([\w.\-<>*]{1,253}(?::\d{1,5})?)/v[12]/")
_REGISTRY_HINT = re.compile(
    r"(?:pinging (?:docker|container) registry|pulling from host|lookup) ([\w.\-<>*]{1,253}(?::\d{1,5})?)"
)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]{0,15}://", re.IGNORECASE)


def find_image(text: str) -> str | None:
    """The image reference as the text names it, kubelet's own name first."""
    fallback: str | None = None
    lowered = ascii_lower(text)
    for pattern in IMAGE_PATTERNS:
        for match in pattern.finditer(lowered):
            groups = [
                text[match.start(i) : match.end(i)]
                for i in range(1, (match.lastindex or 0) + 1)
                if match.start(i) >= 0
            ]
            if len(groups) == 2:  # "Tag T not found in repository R", "reading manifest T in R"
                tag, repository = groups
                candidate = f"{repository}{'@' if ':' in tag else ':'}{tag}"
            else:
                candidate = groups[0].strip().rstrip(".:")
            if not candidate:
                continue
            if _PLACEHOLDER.match(candidate):
                fallback = fallback or candidate
                continue
            return candidate
    return fallback


def _hub(host: str) -> str:
    return DOCKER_HUB if host.lower() in DOCKER_HUB_ALIASES else host


def registry_of(reference: str) -> str | None:
    """The registry host of an image reference, after distribution's normalisation.

    Well-formed references go through :func:`shared.reference.parse_reference` (``nginx`` is
    ``docker.io``). Texts also name references that do not parse - redacted
    (``<acrname>.azurecr.io/<repo:tag>``, ``<your-registry>/app``), templated or with a scheme -
    and for those the same rule applies loosely: a first path component is a host if it holds a
    ``.`` or ``:``, is ``localhost``, or is a placeholder; redacted hosts are kept as written.
    """
    ref = reference.strip()
    try:
        return parse_reference(ref).registry
    except ReferenceError:
        pass
    ref = _SCHEME.sub("", ref)
    if not ref or _PLACEHOLDER.match(ref):
        return None
    if "/" not in ref:
        return DOCKER_HUB
    first = ref.split("/", 1)[0]
    if not first:
        return None
    if "." in first or ":" in first or first == "localhost" or _PLACEHOLDER.match(first):
        return _hub(first)
    return DOCKER_HUB


def find_registry(text: str, image: str | None) -> str | None:
    if image:
        registry = registry_of(image)
        if registry:
            return registry
    for pattern in (_REGISTRY_URL, _REGISTRY_HINT):
        match = pattern.search(text)
        if match:
            return _hub(match.group(1))
    return None


def repository_of(reference: str) -> str | None:
    """``library/nginx`` for ``nginx:1.2``: the path without registry, tag or digest, if it parses."""
    try:
        return parse_reference(reference.strip()).repository
    except ReferenceError:
        return None


# --- 5. put it together -----------------------------------------------------------------------


_LOOKUP = re.compile(r"\blookup ([\w.\-<>*]{1,253})")
_DIAL = re.compile(r"\bdial tcp ((?:\[[0-9a-fA-F:.]{2,45}\]|[\w.\-<>]{1,253}):\d{1,5})")


def _evidence(reading: Reading, text: str) -> str:
    """The matched words, with the name or address they concern where the text gives it."""
    evidence = reading.evidence
    if reading.cause == "dns":
        host = _LOOKUP.search(text)
        if host and host.group(1) not in evidence:
            evidence = f"lookup {host.group(1)}: {evidence}"
    elif reading.cause == "network":
        address = _DIAL.search(text)
        if address and address.group(1) not in evidence:
            evidence = f"{evidence} to {address.group(1)}"
    return evidence


def _summary(reading: Reading, text: str, registry: str | None, image: str | None) -> str:
    if reading.cause == "no_detail":
        subject = image or (f"an image from {registry}" if registry else "an image")
        return f"pulling {subject} failed, but this text does not say why"
    headline = BY_CODE[reading.cause].headline
    headline = headline.replace("registry {registry}", f"registry {registry}" if registry else "the registry")
    parts = [headline]
    evidence = _evidence(reading, text)
    if evidence:
        parts.append(f"({evidence})")
    if image:
        parts.append(f"for {image}")
    elif registry and registry not in headline:
        parts.append(f"at {registry}")
    return " ".join(parts)


_HEAD, _TAIL = 48_000, 16_000  # a cause sits at the start (kubelet) or the end (runtime) of a text


def explain(text: str) -> Explanation:
    """Read pull-error text; see the module docstring for how."""
    if len(text) > _HEAD + _TAIL:  # bounded work whatever the size: a log pasted whole still answers fast
        text = f"{text[:_HEAD]}\n{text[-_TAIL:]}"
    plain = normalise(text)
    reading = read_cause(plain)
    image = find_image(plain)
    registry = find_registry(plain, image)
    repository = repository_of(image) if image else None
    return Explanation(
        cause=reading.cause,
        summary=_summary(reading, plain, registry, image),
        remediation=remediation_for(reading.cause, registry, image, repository),
        registry=registry,
        image=image,
    )
