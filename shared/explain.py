"""Read kubelet / container-runtime pull-error text and say what broke (``pullwatch explain``).

The cause codes are the contract in docs/spec/causes.md (catalogue: :mod:`shared.causes`).
Reading a message goes in four steps, each a small pure function:

1. :func:`normalise` undoes JSON escaping (``\\"``, ``\\u0027``), typographic quotes and HTML
   entities, so every later pattern sees plain ASCII quotes.
2. :func:`split_errors` cuts kubelet's aggregate ``[err1, err2]`` (one error per credential tried)
   and CRI-O's ``N errors occurred: * a * b`` into one text per attempt.
3. :func:`classify` reads one attempt against :data:`RULES`, an ordered table: the first rule that
   matches names the cause, so the order is the precedence (``no such host`` is ``dns`` before
   anything could call it ``not_found``; a token fetch's 401 is ``auth_failed`` before a later
   ``not found``). Names are blanked before the rules read a text (an image ``acme/denied:429`` or a
   pod ``web-403-x`` says nothing about why). The first attempt with a cause wins; an anonymous-token
   401 is noise whenever another attempt says more (AKS always tries anonymously too).
4. Text that matches no rule is ``no_detail`` when nothing but wrappers is left once the wrappers
   (``Back-off pulling image "x"``, ``Error: ErrImagePull``, event columns) are removed, and
   ``unknown`` otherwise: never guess.

Every pattern is precompiled, bounded (no unbounded ``.*`` between two words) and matched against
ASCII-lowercased text without IGNORECASE (much faster in Python's ``re``), starts with a literal
character where it can (so ``re`` scans ahead fast) and reads a run of one character from its start
only (never quadratic in a run of backslashes); texts over 64 KB are read as their first 48 KB and
last 16 KB. A typical message takes a millisecond or two, an adversarial 64 KB one under 100 ms
(``make bench``, row "explain, worst adversarial 64 KB message").
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any, Final

from shared.causes import BY_CODE, remediation_for
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


@dataclass(frozen=True)
class Rule:
    """One line of the precedence table: a cause and the words that show it.

    The summary quotes the clause around ``detail``'s first match when given, else around the
    pattern's last match (runtimes put the root cause last), unless ``evidence`` is fixed.
    """

    cause: str
    pattern: re.Pattern[str]
    evidence: str = ""
    detail: tuple[re.Pattern[str], ...] = ()


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _lower(text: str) -> str:
    """ASCII lowercase: same length and positions as ``text`` (``str.lower`` may change both)."""
    return text.translate(_ASCII_LOWER)


def _compile_lower(pattern: str) -> re.Pattern[str]:
    """Compile ``pattern`` to match ASCII-lowercased text case-sensitively.

    Python's ``re`` is an order of magnitude slower on long text with IGNORECASE, so classification
    lowercases the text once and every pattern's literal letters are lowered here (escapes such as
    ``\\S`` or ``\\d`` keep their case).
    """
    out, escaped = [], False
    for char in pattern:
        out.append(char if escaped else _lower(char))
        escaped = char == "\\" and not escaped
    return re.compile(_BOUNDARY_AFTER_FIRST.sub(r"\1\2(?<!\\w\2)", "".join(out)))


# ``re`` skips ahead with a fast character scan only when every alternative of a pattern starts with a
# literal character; one that starts with ``\b`` makes it try every alternative at every position (a
# 64 KB text then costs milliseconds per rule). ``\bX`` is the same test as ``X(?<!\wX)`` (X is a
# word character, so a boundary before it means no word character before it), which starts with X.
_BOUNDARY_AFTER_FIRST = re.compile(r"(^|\||\(\?:)\\b([a-z0-9])")


def _rule(cause: str, pattern: str, evidence: str = "", detail: str = "") -> Rule:
    """``detail`` lists alternatives by preference ("a|b": a wherever it is, else b)."""
    details = tuple(_compile_lower(d) for d in detail.split("|") if d)
    return Rule(cause, _compile_lower(pattern), evidence, details)


_GAP = r"[^\n]{0,400}?"  # a bounded stretch of one line between two phrases

RULES: Final[tuple[Rule, ...]] = (
    # The kubelet decided without asking a registry.
    _rule("never_pull", r"ErrImageNeverPull|not present with pull policy of Never", "pull policy Never"),
    _rule(
        "invalid_reference",
        r"InvalidImageName|couldn't parse image (?:reference|name)|invalid reference format"
        r"|Failed to apply default image tag|did not resolve to an alias"
        r"|repository name must be (?:lowercase|canonical)|invalid repository name|failed to parse image",
        detail=r"invalid reference format|did not resolve to an alias|repository name must be|InvalidImageName"
        r"|couldn't parse image",
    ),
    # The runtime's own policy or the node.
    _rule(
        "signature_invalid",
        r"Source image rejected|signatures? (?:validation|verification) failed|signature was required"
        r"|no signature exists|Signature for identity not accepted|invalid signature|untrusted signature|bad signature"
        r"|failed to verify (?:the )?(?:image )?signature|rejected by (?:the )?(?:image )?(?:signature )?policy"
        r"|image policy webhook|no valid signatures? (?:found|for)|SignatureValidationFailed",
        detail=r"Source image rejected|signature",
    ),
    _rule(
        "disk_full",
        r"no space left on device|disk quota exceeded|not enough space on the disk"
        r"|There is not enough space",
        "no space left on device",
    ),
    _rule(
        "platform_mismatch",
        r"no match for platform|no matching manifest for|image operating system \"?\w+\"? cannot be used"
        r"|exec format error|does not match the (?:host|detected|node) (?:platform|operating system|os)"
        r"|container operating system does not match|image's platform \([^)\n]{0,40}\) does not match",
        detail=r"no matching manifest for|image operating system|no match for platform|exec format error",
    ),
    # Unpacking on the node: the registry already answered, so a "denied" (Windows' "Access is denied")
    # or a "403" in a file name within a layer says nothing about the registry.
    _rule(
        "layer_error",
        r"failed to (?:extract|register|apply) layer|Error processing tar file|ApplyLayer|hcsshim::"
        r"|ProcessBaseLayer|ProcessUtilityVMImage|ImportLayer|error unpacking|re-exec error",
    ),
    # Throttling, from a registry or from the kubelet.
    _rule(
        "rate_limited",
        r"toomanyrequests|too many requests|\b429\b|pull rate limit|rate exceeded|QPS exceeded"
        r"|rate limit(?:ed| exceeded)",
        detail=r"toomanyrequests|429 Too Many Requests|QPS exceeded|rate exceeded|too many requests",
    ),
    # Names, then transport, then TLS: nothing later can be true if these failed.
    _rule(
        "dns",
        r"no such host|server misbehaving|Temporary failure in name resolution|Name or service not known"
        r"|name resolution|nodename nor servname|could not resolve host|NXDOMAIN"
        r"|\blookup [\w\-<>*]{1,63}(?:\.[\w\-<>*]{1,63}){1,12}(?::\d{1,5})?(?: on [\w.\-\[\]:%]{1,64})?: ",
    ),
    _rule("network", r"TLS handshake timeout", "TLS handshake timeout"),
    _rule(
        "tls",
        r"x509:|\btls: |certificate signed by unknown authority|certificate has expired"
        r"|certificate is (?:not )?valid for|server gave HTTP response to HTTPS client"
        r"|first record does not look like a TLS handshake|certificate verify failed|SSL routines"
        r"|unknown certificate authority|remote error: tls|bad certificate"
        r"|malformed HTTP response \"?\\x1[56]\\x03",  # plain HTTP sent to a TLS port: a TLS record came back
    ),
    _rule(
        "network",
        r"i/o timeout|connection refused|connection reset|no route to host|network is unreachable"
        r"|host is unreachable|context deadline exceeded|DeadlineExceeded|Client\.Timeout exceeded"
        r"|request canceled|connection timed out|timeout awaiting|context canceled|broken pipe"
        r"|proxyconnect|use of closed network connection|server sent GOAWAY|\bdial tcp\b|\bdial udp\b"
        r"|operation timed out|net/http: timeout",
    ),
    _rule("network", r": EOF\b", "the connection closed before an answer (EOF)"),
    # The registry answered: who it refused, and how.
    _rule(
        "forbidden",
        r"not allowed access|client with IP|aka\.ms/acr/firewall|is not authorized to perform"
        r"|Permission \"[^\"\n]{1,200}\" denied|IP (?:address )?(?:is )?not allowed",
        detail=r"client with IP|not allowed access|is not authorized to perform|Permission \"",
    ),
    _rule(
        "auth_failed",
        r"token (?:has |is )?expired"
        r"|expired (?:authorization |auth |access )?token|Reauthenticate and try again",
        detail=r"token has expired|token is expired|expired",
    ),
    _rule(
        "auth_or_not_found",
        r"pull access denied|does not exist or may require|may require 'docker login'"
        r"|may require authorization|does not exist or no pull access|requested access to the resource is denied"
        r"|insufficient_scope",
        detail=r"pull access denied|does not exist|requested access|insufficient_scope",
    ),
    _rule(
        "auth_failed",
        r"(?:oauth|anonymous) token" + _GAP + r"\b401\b",
        "401 from its token endpoint",
    ),
    _rule(
        "auth_failed",
        r"\b401\b|\bunauthorized\b|authentication required|no basic auth credentials|unauthenticated"
        r"|access to the requested resource is not authorized|invalid username/password"
        r"|incorrect username or password|bad credentials|authorization failed"
        r"|Unable to retrieve (?:some )?image pull secrets|secret \"[^\"\n]{1,253}\" not found",
        detail=r"\bunauthorized: |401 Unauthorized|no basic auth credentials|access to the requested resource"
        r"|unauthenticated|invalid username|incorrect username|Unable to retrieve|secret \"",
    ),
    _rule(
        "forbidden",
        r"\b403\b|\bForbidden\b|\bDENIED\b|AccessDenied|access denied",
        detail=r"403 Forbidden|denied: |AccessDenied|access denied",
    ),
    _rule(
        "layer_error",
        r"failed to register layer|failed to extract layer|failed commit on ref \"?layer"
        r"|failed size validation|unexpected EOF|ApplyLayer|Error processing tar file|hcsshim::"
        r"|ProcessBaseLayer|ImportLayer|filesystem layer verification failed|digest mismatch"
        r"|failed to verify digest|unexpected commit digest|archive/tar|gzip: invalid header"
        r"|input/output error|re-exec error|failed to apply layer|error unpacking|short read",
    ),
    _rule(
        "not_found",
        r"manifest unknown|MANIFEST_UNKNOWN|NAME_UNKNOWN|name unknown|blob unknown|unknown blob"
        r"|not found|\bNotFound\b|\bNOT_FOUND\b|\b404\b|does not exist|No such image|repository name not known"
        r"|no such manifest|unknown: artifact",
    ),
    _rule(
        "registry_error",
        r"\b5\d\d (?:Internal Server Error|Bad Gateway|Service Unavailable|Gateway Time-?out|[A-Z][a-z]+)"
        r"|status(?: code)?[:=\s]{1,3}5\d\d\b|HTTP (?:status|code)[:=\s]{1,3}5\d\d\b|HTTP/\d(?:\.\d)?[:=\s]{1,3}5\d\d\b"
        r"|Internal Server Error|Service Unavailable|Bad Gateway|Gateway Time-?out|INTERNAL_ERROR"
        r"|unexpected status code|unexpected (?:HTTP )?status|error parsing HTTP \d{3} response"
        r"|looking for beginning of value|unexpected end of JSON",
    ),
)

# What is left of a text once the wrappers that say a pull failed (but not why) are gone decides
# between ``no_detail`` and ``unknown``: quoted names (also CSV's ""doubled"" quotes), event columns and
# rows (describe, get events, e2e dumps, JSON, Container Insights' KubeEvents), klog/syslog headers,
# timestamps and these words.
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
_WRAPPERS = _compile_lower(
    r"(?m)\"\"[^\"\s]{1,512}\"\"|\"[^\"\s]{0,512}\"|'[^'\s]{0,512}'|spec\.\w{0,20}containers\{[^}\n]{0,253}\}"
    r"|rpc error: code = \w{1,32} desc =|\b\d+ errors? occurred|(?:unable to|trying to) pull \S{1,512}"
    r"|\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"
    r"|\bcontainer \S{1,253} in pod \S{1,253}|\bfor \S{1,253} with\b"
    r"|\b[iwef]\d{4} \d\d:\d\d:\d\d\.\d{1,9}\s{1,12}\d{1,10} [\w.\-]{1,128}:\d{1,6}\]"  # klog header
    r"|\b" + _MONTH + r" {1,2}\d{1,2} \d\d:\d\d:\d\d"  # syslog header
    r" \S{1,253} [\w.\-/@]{1,253}(?:\[\d{1,10}\])?:"
    # timestamps: ISO 8601 / RFC 3339, "Jan 13 18:23:06.475", "Mon, 16 Mar 2020 21:32:48 +0000"
    r"|\b\d{4}-\d\d-\d\d[t ]\d\d:\d\d(?::\d\d(?:[.,]\d{1,9})?)?(?:z|\s?[+-]\d\d:?\d\d)?(?: utc| gmt)?"
    r"|\b" + _MONTH + r" {1,2}\d{1,2},? (?:\d{4} )?\d\d:\d\d:\d\d(?:\.\d{1,9})?"
    r"|\b(?:mon|tue|wed|thu|fri|sat|sun), \d{1,2} " + _MONTH + r" \d{4}"
    # event sources and rows: "kubelet, node-1" (describe before 1.19), "{kubelet node-1}" (e2e logs),
    # a `kubectl get events -A` row's namespace / last-seen columns, an unknown age
    r"|\bkubelet, [\w.\-]{1,253}|\{kubelet [\w.\-]{1,253}\}|<unknown>|<none>"
    # the names in JSON and structured logs, whatever an unbalanced quote before them did to the pairing
    r"|\b(?:name|namespace|kind|uid|type|reason|component|host|fieldpath|apiversion|resourceversion|pod|poduid"
    r"|container|containername|object|image|node)\"?\s?[:=]\s?\"?[^\"\s,}]{0,253}"
    r"|^[ \t]*[\w.\-]{1,253}[ \t]{1,64}(?=(?:<unknown>|\d[\dsmhd]{0,16})(?: \(x\d{1,9} over [\dsmhd]{1,16}\))?"
    r"[ \t]{1,64}(?:normal|warning)\b)"
)
_WRAPPER_TEXT = """
    back off backoff pulling pull pulled image images failed failing fail error errors err errimagepull
    imagepullbackoff imagepullerror pullimageerror registryunavailable imageinspecterror errimageinspect
    trying and the waiting start startcontainer container pod syncing skipping with for desc response
    from daemon occurred while warning normal kubelet reason message type age over events spec
    containers initcontainers level msg time info debug fatal workers poduid containername name file
    caller logger this may because there are credentials request init ready status restarts
    last seen first count object namespace default source component host subobject involvedobject
    kind apiversion fieldpath uid resourceversion metadata creationtimestamp firsttimestamp lasttimestamp
    eventtime reportingcomponent reportinginstance series items selflink regarding note action event utc
    scheduled successfully assigned created started including size bytes sandbox changed will killed
    pullimage false true null laststate restartcount started imageid containerid state containerstatuses
    initcontainerstatuses timegenerated objectkind kubeeventtype sourcecomponent computer clustername
    clusterid firstseen lastseen tenantid sourcesystem resourceid
"""
_WRAPPER_WORDS: Final[frozenset[str]] = frozenset(_WRAPPER_TEXT.split())
_TOKEN = re.compile(r"[a-z0-9][a-z0-9._\-/:@]*")  # words and identifiers (pod names, hashes, paths)
_THREE_LETTERS = re.compile(r"[a-z]{3}")

_NOISE_401 = _compile_lower(r"anonymous token" + _GAP + r"\b401\b")
_BOILER_CREDENTIALS = _compile_lower(r",? ?this may be because there are no credentials on this request\.?")


def _has_cause_words(lowered: str) -> bool:
    """Whether anything but wrappers is left in (lowercased) text."""
    if not _THREE_LETTERS.search(lowered):  # removing wrappers only blanks text: no word can appear
        return False
    residue = _WRAPPERS.sub(" ", lowered)
    return any(
        len(token) >= 3 and token.isalpha() and token not in _WRAPPER_WORDS
        for token in _TOKEN.findall(residue)
    )


@dataclass(frozen=True)
class Reading:
    """What one attempt's text says: its cause and the words that showed it."""

    cause: str
    evidence: str
    noise: bool = False  # an anonymous-token 401: true, but says nothing when another attempt does


# Names are not causes: an image "acme/denied:429", a pod "web-403-7d9c" or a path must not decide a
# cause. Besides the image references :data:`_IMAGE_PATTERNS` finds, these spans are blanked (same
# length, so positions still point into the original text) before the rules read a text.
_NAME_PATTERNS: Final[tuple[re.Pattern[str], ...]] = tuple(
    _compile_lower(p)
    for p in (
        r"\"([^\"\s]{0,512}/[^\"\s]{0,512})\"",  # quoted paths, URLs and references
        r"\b(?:pods?|deployments?|replicasets?|statefulsets?|daemonsets?|jobs?|cronjobs?)/([\w.\-]{1,253})",
        r"successfully assigned (\S{1,512}) to (\S{1,253})",
        r"\bevent for ([\w.\-]{1,253}):",
        r"(?m)^[ \t]*([\w.\-]{1,253})[ \t]{1,64}\d{1,4}/\d{1,4}[ \t]",  # a `kubectl get pods` row
        r": ([^\s\"',()\[\]/]{1,253}/[^\s\"',()\[\]]{1,512}): not found",  # containerd's "<ref>: not found"
    )
)


# Log headers and timestamps are blanked whole: "kubelet[401]:", "pod_workers.go:429]", "18:23:06.403"
# hold numbers that would read as HTTP statuses.
_HEADER_PATTERNS: Final[tuple[re.Pattern[str], ...]] = tuple(
    _compile_lower(p)
    for p in (
        r"\b[iwef]\d{4} \d\d:\d\d:\d\d\.\d{1,9}\s{1,12}\d{1,10} [\w.\-]{1,128}:\d{1,6}\]",  # klog
        r"\b" + _MONTH + r" {1,2}\d{1,2},? (?:\d{4} )?\d\d:\d\d:\d\d(?:[.,]\d{1,9})?"
        r"(?: [\w.\-]{1,253} [\w.\-/@]{1,253}(?:\[\d{1,10}\])?:)?",  # syslog / journald, e2e logs
        r"\b\d{4}-\d\d-\d\d[t ]\d\d:\d\d(?::\d\d(?:[.,]\d{1,9})?)?(?:z|\s?[+-]\d\d:?\d\d)?",  # RFC 3339
        r"\.go:\d{1,6}\b",  # Go source positions
        r"\bhttps?://[^\s\"'<>]{0,2047}[^\s\"'<>:,.]",  # URLs (a path such as /v2/acme/denied/ is a name)
    )
)


def _mask_names(lowered: str) -> str:
    """``lowered`` with image references, object and pod names, quoted paths and log headers blanked out."""
    spans: list[tuple[int, int]] = []
    for pattern in (*_IMAGE_PATTERNS, *_NAME_PATTERNS):
        for match in pattern.finditer(lowered):
            spans.extend(match.span(i) for i in range(1, (match.lastindex or 0) + 1) if match.start(i) >= 0)
    for pattern in _HEADER_PATTERNS:
        spans.extend(match.span() for match in pattern.finditer(lowered))
    if not spans:
        return lowered
    chars = list(lowered)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def classify(text: str) -> Reading:
    """The cause of one attempt's text (already normalised)."""
    lowered = _BOILER_CREDENTIALS.sub(lambda m: " " * len(m.group(0)), _lower(text))
    unnamed = _mask_names(lowered)
    for rule in RULES:
        match = rule.pattern.search(unnamed)
        if match:
            evidence = rule.evidence or _clause(text, _evidence_at(rule, unnamed, match))
            noise = rule.cause == "auth_failed" and bool(_NOISE_401.search(unnamed))
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
    line = next((ln for ln in text.splitlines() if _has_cause_words(_lower(ln))), text)[-2000:]
    for clause in reversed(line.split(": ")):
        if _has_cause_words(_lower(clause)):
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

_REF = r"[^\s\"',()\[\]]{1,512}"
_QREF = r"[\"']([^\"'\n]{1,512})[\"']"
_IMAGE_PATTERNS: Final[tuple[re.Pattern[str], ...]] = tuple(
    _compile_lower(p)  # searched in lowercased text; the name is cut from the original
    for p in (
        rf"(?:failed to pull image|back-off pulling image|pulling image) {_QREF}",
        rf"Container image {_QREF}",
        rf"(?:Failed to apply default image tag|couldn't parse image (?:reference|name)) {_QREF}",
        rf"(?:failed to pull and unpack image|failed to resolve (?:reference|image)) {_QREF}",
        rf"image={_QREF}",
        rf"(?:short-name|Trying to pull) \"?({_REF}?)\"?(?:\.\.\.|:? )",
        rf"failed to resolve ref ({_REF}): ",
        rf"(?:initializing source|Error initializing source) docker://({_REF}):",
        rf"pull access denied for ({_REF})(?:, |$)",
        rf"(?:manifest for|repository) ({_REF})(?:, | not found)",
        rf"(?:Error reading manifest|reading manifest) (\S{{1,200}}) in ({_REF}):",
        rf"image pull failed for (?!unknown error)({_REF})[, ]",
        rf"failed to pull image ({_REF}):",
        rf"Tag (\S{{1,128}}) not found in repository ({_REF})",
        rf"\bimage ({_REF}) not found",
        rf"(?:artifact|unable to pull) ({_REF})(?: not found|:)",
    )
)
_PLACEHOLDER = re.compile(r"^(?:<[^<>]*>|\*+|x+|X+|CENSORED|REDACTED|redacted|\.\.\.)$")
_REGISTRY_URL = re.compile(r"https?://([\w.\-<>*]{1,253}(?::\d{1,5})?)/v[12]/")
_REGISTRY_HINT = re.compile(
    r"(?:pinging (?:docker|container) registry|pulling from host|lookup) ([\w.\-<>*]{1,253}(?::\d{1,5})?)"
)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]{0,15}://", re.IGNORECASE)


def find_image(text: str) -> str | None:
    """The image reference as the text names it, kubelet's own name first."""
    fallback: str | None = None
    lowered = _lower(text)
    for pattern in _IMAGE_PATTERNS:
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
