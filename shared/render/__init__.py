"""Chat messages: one digest per audit run per channel, rendered for Slack or Teams.

:func:`build_digest` turns changes into a :class:`Digest` — per cluster, "New", "Resolved" (and
"Still open" in reminders), one :class:`Line` per finding code per workload (never per pod). The
Slack and Teams renderers lay a digest out within each service's limits; what does not fit is
summarised as "and N more" (the full list lives in the JSON report). :func:`scrub` removes anything
that looks like a webhook URL or a token from every string of a payload.
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
    """One finding code for one workload (or one registry / node pool when no workload applies)."""

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

    @property
    def count_note(self) -> str:
        """ "(N findings)" where the subject does not already say why there are several."""
        return f"({self.count} findings)" if self.count > 1 and not self.extra_images else ""


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


def _lines(kind: str, findings: Iterable[Finding]) -> list[Line]:
    """Group findings by (code, namespace, workload) — or (code, registry, node pool) without a
    workload — into one line each, keeping the most urgent finding's text."""
    groups: dict[tuple[str | None, ...], list[Finding]] = {}
    for f in sort_findings(findings):
        if f.workload:
            key: tuple[str | None, ...] = (f.code, f.namespace, f.workload)
        else:
            key = (f.code, f.registry, f.node_pool, f.namespace, f.image if not f.registry else None)
        groups.setdefault(key, []).append(f)
    out = []
    for members in groups.values():
        first = members[0]
        subject = _subject(first)
        extra_images = sorted({m.image for m in members[1:] if m.image and m.image != first.image})
        if extra_images:
            subject += f" (+{len(extra_images)} more image{'s' if len(extra_images) > 1 else ''})"
        out.append(
            Line(
                kind=kind,
                severity=first.level,
                code=first.code,
                title=CATALOGUE[first.code].title,
                subject=subject,
                cause=first.cause,
                message=first.message,
                remediation=first.remediation,
                count=len(members),
                extra_images=len(extra_images),
            )
        )
    return out


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
        lines = _lines(NEW, changes.new) + _lines(RESOLVED, changes.resolved)
        if reminder:
            lines += _lines(STILL_OPEN, changes.still_open)
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
