"""Chat messages: one digest per audit run per channel, rendered for Slack or Teams.

:func:`build_digest` turns changes into a :class:`Digest` — per cluster, "New", "Resolved" (and
"Still open" in reminders) — of diagnoses: one :class:`Line` per root cause (or per finding code per
workload where nothing else explains it), never per pod. A symptom whose root cause
(``Finding.root_cause``, see :mod:`shared.correlate`) is in the same digest is not a line of its
own: it names a workload the root cause affects ("affects N workloads", up to five named) or, when
both resolved, one whose pulls work again. Errors come first, then the lines that affect the most
workloads; a fix is shown as at most two sentences and the command (:func:`brief_fix`), one code
block per paragraph. The Slack and Teams renderers lay a digest out within each service's limits;
what does not fit is summarised as "and N more" (the full list lives in the JSON report).
:func:`scrub` removes anything that looks like a webhook URL or a token from every string of a
payload.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.cloud import active_cloud
from shared.findings import CATALOGUE, Finding, Severity, sort_findings

if TYPE_CHECKING:
    from shared.compare import Changes

NEW, RESOLVED, STILL_OPEN = "new", "resolved", "still_open"
KIND_TITLES = {NEW: "New", RESOLVED: "Resolved", STILL_OPEN: "Still open"}

_ID = re.compile(r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/[^/]+/[^/]+/([^/]+)", re.I)


@dataclass(frozen=True)
class ClusterMeta:
    """What a message shows about a cluster, and what routes match on (tags)."""

    resource_id: str
    name: str
    subscription: str | None = None
    resource_group: str | None = None
    tenant: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_id(
        cls, resource_id: str | None, *, tenant: str | None = None, tags: Mapping[str, str] | None = None
    ) -> ClusterMeta:
        if not resource_id:
            return cls("", "(no cluster)", tenant=tenant, tags=dict(tags or {}))
        m = _ID.match(resource_id)
        if not m:
            return cls(
                resource_id,
                resource_id.rstrip("/").rsplit("/", 1)[-1] or resource_id,
                tenant=tenant,
                tags=dict(tags or {}),
            )
        return cls(resource_id, m.group(3), m.group(1), m.group(2), tenant, dict(tags or {}))

    @property
    def portal_url(self) -> str | None:
        if not self.resource_id.startswith("/"):
            return None
        return active_cloud().portal_link(self.resource_id, self.tenant)


@dataclass(frozen=True)
class Line:
    """One entry of a digest: a root cause (or a finding nothing else explains) for one workload, or
    one registry / node pool when no workload applies, with the workloads it affects."""

    kind: str
    severity: Severity
    code: str
    title: str
    subject: str
    cause: str | None
    message: str
    remediation: str | None
    count: int = 1
    extra_images: int = 0  # other images of the same workload and code, already named in ``subject``
    affected: tuple[str, ...] = ()  # workloads ("namespace/Kind/name") this problem affects
    cleared: tuple[str, ...] = ()  # resolved: workloads whose pull failures cleared with it

    @property
    def count_note(self) -> str:
        """ "(N findings)" where the subject does not already say why there are several."""
        return f"({self.count} findings)" if self.count > 1 and not self.extra_images else ""

    @property
    def fix_blocks(self) -> list[str]:
        """The fix as code blocks: a remediation's paragraphs (e.g. a condition, then the command)."""
        return [b.strip() for b in (self.remediation or "").split("\n\n") if b.strip()]

    @property
    def affects(self) -> str | None:
        """ "affects N workloads: a, b, …" with up to five named."""
        return _named("affects", self.affected)

    @property
    def cleared_note(self) -> str | None:
        return _named("pulls work again for", self.cleared)


MAX_NAMED = 5


def _named(verb: str, workloads: Sequence[str]) -> str | None:
    if not workloads:
        return None
    n = len(workloads)
    names = ", ".join(workloads[:MAX_NAMED])
    more = f" and {n - MAX_NAMED} more" if n > MAX_NAMED else ""
    return f"{verb} {n} workload{'s' if n != 1 else ''}: {names}{more}"


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`])")
_COMMAND = re.compile(r"(?:^|[\s`:])(?:az|kubectl|docker|helm) ")


def brief_fix(remediation: str | None) -> str | None:
    """A fix as a message shows it: at most two sentences and the command. A multi-line block (a
    script) is kept as written; in prose, a later sentence that holds the command is kept too."""
    if not remediation:
        return remediation
    blocks = []
    for block in remediation.split("\n\n"):
        sentences = _SENTENCE_END.split(block.strip())
        if "\n" in block or len(sentences) <= 2:
            blocks.append(block.strip())
            continue
        kept = sentences[:2]
        if not any(_COMMAND.search(s) for s in kept):
            kept += [s for s in sentences[2:] if _COMMAND.search(s)][:1]
        blocks.append(" ".join(kept))
    return "\n\n".join(blocks)


@dataclass(frozen=True)
class ClusterBlock:
    meta: ClusterMeta
    lines: tuple[Line, ...]

    def of(self, kind: str) -> list[Line]:
        return [line for line in self.lines if line.kind == kind]


@dataclass(frozen=True)
class Digest:
    clusters: tuple[ClusterBlock, ...]
    reminder: bool = False

    def count(self, kind: str) -> int:
        return sum(len(c.of(kind)) for c in self.clusters)

    @property
    def total(self) -> int:
        return sum(len(c.lines) for c in self.clusters)

    @property
    def empty(self) -> bool:
        return self.total == 0

    @property
    def title(self) -> str:
        parts = [
            f"{self.count(k)} {KIND_TITLES[k].lower()}" for k in (NEW, RESOLVED, STILL_OPEN) if self.count(k)
        ]
        # "reminder" only when the digest does repeat still-open findings, not for every nightly run.
        label = "pullwatch reminder" if self.reminder and self.count(STILL_OPEN) else "pullwatch"
        return f"{label}: image pulls — {', '.join(parts) or 'nothing to report'}"


def _subject(f: Finding) -> str:
    parts = []
    if f.workload:
        parts.append(f"{f.namespace}/{f.workload}" if f.namespace else f.workload)
    elif f.namespace:
        parts.append(f"namespace {f.namespace}")
    if f.node_pool:
        parts.append(f"node pool {f.node_pool}")
    if f.image:
        parts.append(f.image)
    elif f.registry:
        parts.append(f.registry)
    if f.code == "CHECK_INCOMPLETE" and f.evidence.get("check"):
        parts.append(f"check: {f.evidence.get('check')}")
    return " · ".join(parts) or "cluster-wide"


def _workload(f: Finding) -> str | None:
    if not f.workload:
        return None
    return f"{f.namespace}/{f.workload}" if f.namespace else f.workload


def _lines(
    kind: str, findings: Iterable[Finding], symptoms: Mapping[str, Sequence[Finding]] | None = None
) -> list[Line]:
    """Group findings by (code, namespace, workload) — or (code, registry, node pool) without a
    workload — into one line each, keeping the most urgent finding's text. ``symptoms``: root
    cause id -> the findings it explains that the digest folds into the root's line (they name the
    workloads it affects, or that cleared with it). Errors first, then by workloads affected."""
    groups: dict[tuple[str | None, ...], list[Finding]] = {}
    for f in sort_findings(findings):
        if f.workload:
            key: tuple[str | None, ...] = (f.code, f.namespace, f.workload)
        else:
            key = (f.code, f.registry, f.node_pool, f.namespace, f.image if not f.registry else None)
        groups.setdefault(key, []).append(f)
    out: list[Line] = []
    weights: list[int] = []  # workloads affected, for the order
    for members in groups.values():
        first = members[0]
        subject = _subject(first)
        extra_images = sorted({m.image for m in members[1:] if m.image and m.image != first.image})
        if extra_images:
            subject += f" (+{len(extra_images)} more image{'s' if len(extra_images) > 1 else ''})"
        explained = [s for m in members for s in (symptoms or {}).get(m.id, ())]
        workloads = list(dict.fromkeys(w for w in map(_workload, [*members, *explained]) if w))
        weights.append(len(workloads))
        if len(workloads) == 1 and first.workload:
            workloads = []  # the subject already names the one workload
        out.append(
            Line(
                kind=kind,
                severity=first.level,
                code=first.code,
                title=CATALOGUE[first.code].title,
                subject=subject,
                cause=first.cause,
                message=first.message,
                remediation=brief_fix(first.remediation),
                count=len(members),
                extra_images=len(extra_images),
                affected=tuple(workloads) if kind != RESOLVED else (),
                cleared=tuple(dict.fromkeys(w for w in map(_workload, explained) if w))
                if kind == RESOLVED
                else (),
            )
        )
    order = sorted(range(len(out)), key=lambda i: (out[i].severity is not Severity.ERROR, -weights[i], i))
    return [out[i] for i in order]


def fold_symptoms(
    shown: Mapping[str, Sequence[Finding]],
) -> tuple[dict[str, list[Finding]], dict[str, list[Finding]]]:
    """Split what one digest shows (kind -> findings) into the entries it lists and the symptoms
    folded under their root cause: a symptom whose root cause the same digest shows (both open, or
    both resolved) is not an entry of its own. Returns (kind -> entries, root id -> symptoms)."""
    where = {f.id: kind for kind, fs in shown.items() for f in fs}
    entries: dict[str, list[Finding]] = {kind: [] for kind in shown}
    symptoms: dict[str, list[Finding]] = {}
    for kind, fs in shown.items():
        for f in fs:
            root_kind = where.get(f.root_cause) if f.root_cause else None
            if root_kind is not None and f.root_cause and (root_kind == RESOLVED) == (kind == RESOLVED):
                symptoms.setdefault(f.root_cause, []).append(f)
            else:
                entries[kind].append(f)
    return entries, symptoms


def build_digest(
    changes_by_target: Mapping[str, Changes],
    cluster_meta: Mapping[str, ClusterMeta] | None = None,
    *,
    reminder: bool = False,
    tenant: str | None = None,
) -> Digest:
    """One digest for one channel. Targets are cluster resource IDs; still-open findings appear
    only when ``reminder`` is set."""
    metas = {k.lower(): v for k, v in (cluster_meta or {}).items()}
    blocks = []
    for target in sorted(
        changes_by_target, key=lambda t: (metas.get(t.lower()) or ClusterMeta.from_id(t)).name
    ):
        changes = changes_by_target[target]
        meta = metas.get(target.lower()) or ClusterMeta.from_id(target, tenant=tenant)
        if meta.tenant is None and tenant:
            meta = ClusterMeta(
                meta.resource_id, meta.name, meta.subscription, meta.resource_group, tenant, meta.tags
            )
        shown = {NEW: changes.new, RESOLVED: changes.resolved}
        if reminder:
            shown[STILL_OPEN] = changes.still_open
        entries, symptoms = fold_symptoms(shown)
        lines = [line for kind in shown for line in _lines(kind, entries[kind], symptoms)]
        if lines:
            blocks.append(ClusterBlock(meta, tuple(lines)))
    return Digest(tuple(blocks), reminder)


# --- scrubbing ----------------------------------------------------------------------------------

_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"https?://[^\s\"'<>|]*(?:hooks\.slack\.com|webhook\.office\.com|logic\.azure\.com|"
            r"powerplatform\.com|/services/T[A-Z0-9]+/B[A-Z0-9]+|/workflows/)[^\s\"'<>|]*",
            re.I,
        ),
        "[redacted]",
    ),
    (
        re.compile(r"https?://[^\s\"'<>|]*[?&](?:sig|code|token|access_token)=[^\s\"'<>|]*", re.I),
        "[redacted]",
    ),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{8,}"), "[redacted]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*)?"), "[redacted]"),
    (
        # A value, not a placeholder such as <password> (escaped or not) in a remediation command.
        re.compile(r"(?i)\b(AccountKey|SharedAccessSignature|password|client_secret)=(?!<|&lt;)[^;\s\"']+"),
        r"\1=[redacted]",
    ),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{12,}"), r"\1 [redacted]"),
)
REDACTED = "[redacted]"


def scrub_text(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` without the given secret values, webhook URLs, signed URLs, JWTs and tokens."""
    for value in secrets:
        if value and len(value) >= 6:
            text = text.replace(value, REDACTED)
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def scrub(payload: Any, secrets: Sequence[str] = ()) -> Any:
    """A copy of ``payload`` with every string scrubbed of webhook URLs, tokens and ``secrets``."""
    if isinstance(payload, str):
        return scrub_text(payload, secrets)
    if isinstance(payload, Mapping):
        return {k: scrub(v, secrets) for k, v in payload.items()}
    if isinstance(payload, list | tuple):
        return [scrub(v, secrets) for v in payload]
    return payload


def scrub_finding(finding: Finding) -> Finding:
    """The finding without signed URLs, tokens or JWTs in its message and evidence: they quote
    outside text (kubelet's pull errors cite a layer's SAS URL, signature included)."""
    message, evidence = scrub_text(finding.message), scrub(dict(finding.evidence))
    if message == finding.message and evidence == dict(finding.evidence):
        return finding
    return finding.with_(message=message, evidence=evidence)


def render(fmt: str, digest: Digest, secrets: Sequence[str] = ()) -> dict[str, Any]:
    """The webhook payload for ``digest`` in ``fmt`` (``slack`` or ``teams``), scrubbed."""
    if fmt == "slack":
        from shared.render.slack import slack_payload

        return slack_payload(digest, secrets)
    if fmt == "teams":
        from shared.render.teams import teams_payload

        return teams_payload(digest, secrets)
    raise ValueError(f"unknown message format {fmt!r} (expected slack or teams)")


def payload_for(fmt: str, findings: Sequence[Finding]) -> dict[str, Any]:
    """What ``pullwatch render`` prints: the payload for ``findings``, all treated as new."""
    from shared.compare import Changes

    by_target: dict[str, list[Finding]] = {}
    for f in findings:
        by_target.setdefault(f.cluster or "", []).append(f)
    changes = {t: Changes(new=tuple(fs)) for t, fs in by_target.items()}
    return render(fmt, build_digest(changes))
