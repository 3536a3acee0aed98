"""The patterns ``pullwatch explain`` reads pull-error text with: the cause table and the name masks.

:data:`RULES` is the ordered precedence table (the first rule that matches names the cause);
:data:`NAME_PATTERNS`, :data:`HEADER_PATTERNS` and :data:`IMAGE_PATTERNS` find the names, log headers
and image references that must not decide a cause; :data:`WRAPPERS` and :data:`WRAPPER_WORDS` are what
says a pull failed but not why. :mod:`shared.explain` holds the reading that uses them.

Every pattern is precompiled, bounded (no unbounded ``.*`` between two words) and matched against
ASCII-lowercased text without IGNORECASE (much faster in Python's ``re``), starts with a literal
character where it can (so ``re`` scans ahead fast) and reads a run of one character from its start
only (never quadratic in a run of backslashes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final


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


def ascii_lower(text: str) -> str:
    """ASCII lowercase: same length and positions as ``text`` (``str.lower`` may change both)."""
    return text.translate(_ASCII_LOWER)


def compile_lowered(pattern: str) -> re.Pattern[str]:
    """Compile ``pattern`` to match ASCII-lowercased text case-sensitively.

    Python's ``re`` is an order of magnitude slower on long text with IGNORECASE, so classification
    lowercases the text once and every pattern's literal letters are lowered here (escapes such as
    ``\\S`` or ``\\d`` keep their case).
    """
    out, escaped = [], False
    for char in pattern:
        out.append(char if escaped else ascii_lower(char))
        escaped = char == "\\" and not escaped
    return re.compile(_BOUNDARY_AFTER_FIRST.sub(r"\1\2(?<!\\w\2)", "".join(out)))


# ``re`` skips ahead with a fast character scan only when every alternative of a pattern starts with a
# literal character; one that starts with ``\b`` makes it try every alternative at every position (a
# 64 KB text then costs milliseconds per rule). ``\bX`` is the same test as ``X(?<!\wX)`` (X is a
# word character, so a boundary before it means no word character before it), which starts with X.
_BOUNDARY_AFTER_FIRST = re.compile(r"(^|\||\(\?:)\\b([a-z0-9])")


def _rule(cause: str, pattern: str, evidence: str = "", detail: str = "") -> Rule:
    """``detail`` lists alternatives by preference ("a|b": a wherever it is, else b)."""
    details = tuple(compile_lowered(d) for d in detail.split("|") if d)
    return Rule(cause, compile_lowered(pattern), evidence, details)


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
WRAPPERS = compile_lowered(
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
WRAPPER_WORDS: Final[frozenset[str]] = frozenset(_WRAPPER_TEXT.split())

# An anonymous-token 401 (AKS always tries anonymously too), and Docker's boilerplate after a 401.
NOISE_401 = compile_lowered(r"anonymous token" + _GAP + r"\b401\b")
BOILER_CREDENTIALS = compile_lowered(r",? ?this may be because there are no credentials on this request\.?")


# Names are not causes: an image "acme/denied:429", a pod "web-403-7d9c" or a path must not decide a
# cause. Besides the image references :data:`IMAGE_PATTERNS` finds, these spans are blanked (same
# length, so positions still point into the original text) before the rules read a text.
NAME_PATTERNS: Final[tuple[re.Pattern[str], ...]] = tuple(
    compile_lowered(p)
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
HEADER_PATTERNS: Final[tuple[re.Pattern[str], ...]] = tuple(
    compile_lowered(p)
    for p in (
        r"\b[iwef]\d{4} \d\d:\d\d:\d\d\.\d{1,9}\s{1,12}\d{1,10} [\w.\-]{1,128}:\d{1,6}\]",  # klog
        r"\b" + _MONTH + r" {1,2}\d{1,2},? (?:\d{4} )?\d\d:\d\d:\d\d(?:[.,]\d{1,9})?"
        r"(?: [\w.\-]{1,253} [\w.\-/@]{1,253}(?:\[\d{1,10}\])?:)?",  # syslog / journald, e2e logs
        r"\b\d{4}-\d\d-\d\d[t ]\d\d:\d\d(?::\d\d(?:[.,]\d{1,9})?)?(?:z|\s?[+-]\d\d:?\d\d)?",  # RFC 3339
        r"\.go:\d{1,6}\b",  # Go source positions
        r"\bhttps?://[^\s\"'<>]{0,2047}[^\s\"'<>:,.]",  # URLs (a path such as /v2/acme/denied/ is a name)
    )
)


# Image references as the kubelet and the runtimes name them, kubelet's own wording first: what
# :func:`shared.explain.find_image` reports, and names the rules must not read.
_REF = r"[^\s\"',()\[\]]{1,512}"
_QREF = r"[\"']([^\"'\n]{1,512})[\"']"
IMAGE_PATTERNS: Final[tuple[re.Pattern[str], ...]] = tuple(
    compile_lowered(p)  # searched in lowercased text; the name is cut from the original
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
