"""Delivery of chat messages: one digest per channel per run, sent once, never lost.

Every message is written to the outbox (Table storage) **before** it is posted, and recorded as
sent (and removed from the outbox) only **after** the webhook accepted it — Slack ``200 ok``, Teams
``2xx``. A crash between post and record can therefore repeat one message, never drop one. A message
that cannot be delivered now (429 / 5xx / connection errors after bounded retries) stays in the
outbox and is retried by :meth:`Notifier.flush_outbox` at the start of the next delivery. Permanent
refusals (Slack error bodies such as ``channel_is_archived``, Teams 4xx) are reported in the
:class:`DeliveryReport` and the log and not retried.

``Notifier.deliver`` writes the run's digests to the outbox, then saves each target's open findings,
then posts: a crash before the outbox write loses nothing (the next run finds the same changes), a
crash after it repeats at most the message in flight.

Concurrent workers (the queue trigger runs several audits at once) share the outbox: a worker posts
a message only under its claim (:meth:`StateStore.claim`, an ETag-conditional update), so each is
posted once. One run's deliveries stay within a budget (a share of ``functionTimeout`` in
``host.json``): a ``Retry-After`` beyond what is left, or a spent budget, keeps the message in the
outbox for the next run.

Webhook URLs are secrets: logs, errors and reports name channels by setting
(``slack:PULLWATCH_SLACK_WEBHOOK_URL``), never by URL.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from shared.compare import Changes
from shared.config import Settings
from shared.errors import reason_of
from shared.findings import Finding, Severity
from shared.render import ClusterMeta, build_digest, render
from shared.render.teams import encode_body
from shared.routing import Channel, Router
from shared.state import OutboxMessage, StateStore

log = logging.getLogger("pullwatch.notify")

SENT, QUEUED, FAILED = "sent", "queued", "failed"
MAX_RETRY_AFTER = 60.0
OUTBOX_MAX_AGE = timedelta(days=3)
HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"
DEFAULT_FUNCTION_TIMEOUT = 300.0  # the Consumption plan's default when host.json sets none
DELIVERY_SHARE = 0.25  # of functionTimeout, for one run's deliveries (the audit takes the rest)
_ERROR_WORD = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class ChannelResult:
    """What happened to one message. ``channel`` is ``kind:SETTING_NAME``, never a URL."""

    channel: str
    outcome: str  # sent | queued (kept in the outbox for the next run) | failed (permanent)
    message_id: str
    attempts: int
    status: int | None = None
    error: str | None = None
    lines: int = 0
    from_outbox: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DeliveryReport:
    results: list[ChannelResult] = field(default_factory=list)

    def _of(self, outcome: str) -> list[ChannelResult]:
        return [r for r in self.results if r.outcome == outcome]

    @property
    def sent(self) -> list[ChannelResult]:
        return self._of(SENT)

    @property
    def queued(self) -> list[ChannelResult]:
        return self._of(QUEUED)

    @property
    def failed(self) -> list[ChannelResult]:
        return self._of(FAILED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": len(self.sent),
            "queued": len(self.queued),
            "failed": len(self.failed),
            "messages": [r.to_dict() for r in self.results],
        }


@dataclass(frozen=True)
class _Answer:
    ok: bool
    retry: bool
    status: int | None
    error: str | None
    retry_after: float | None = None


def _error_word(text: str, fallback: str) -> str:
    word = text.strip().splitlines()[0].strip() if text.strip() else ""
    return word if _ERROR_WORD.match(word) else fallback


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _teams_body_error(body: str) -> str | None:
    """The error a Teams 2xx answer carries in its body, if any. Workflows answer 202 and may put
    ``{"error": …}`` in the body (the card was not posted); legacy connectors answered 200 with
    the throttling text ``Microsoft Teams endpoint returned HTTP error 429`` instead of a 429, and
    ``1`` on success (tests/data/wire/teams/NOTES.md)."""
    text = body.strip()
    if not text or text == "1":
        return None
    if "HTTP error 429" in text:
        return "rate_limited"
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict) and data.get("error"):
        error = data["error"]
        code = error.get("code") if isinstance(error, dict) else None
        return _error_word(str(code), "error in body") if code else "error in body"
    if data is None and re.search(r"(?i)\b(error|failed)\b", text):
        return "error in body"
    return None


SLACK_RETRYABLE = frozenset({"rollup_error", "rate_limited", "internal_error"})


def judge(kind: str, status: int, body: str, retry_after: str | None = None) -> _Answer:
    """Classify a webhook answer: accepted, worth retrying, or a permanent refusal. Slack accepts
    only ``200 ok``; a Teams 2xx is accepted unless its body reports an error."""
    if kind == "slack":
        if status == 200 and body.strip() == "ok":
            return _Answer(True, False, status, None)
        error = _error_word(body, f"HTTP {status}")
        if error in SLACK_RETRYABLE:
            return _Answer(False, True, status, error, _retry_after(retry_after))
    else:
        if 200 <= status < 300:
            problem = _teams_body_error(body)
            if problem is None:
                return _Answer(True, False, status, None)
            error = f"HTTP {status} {problem}"
            return _Answer(False, problem == "rate_limited", status, error, _retry_after(retry_after))
        error = f"HTTP {status}"
        code = re.search(r'"code"\s*:\s*"([A-Za-z0-9_.-]{1,64})"', body)
        if code:
            error += f" {code.group(1)}"
    if status == 429:
        return _Answer(
            False, True, status, error if error != "HTTP 429" else "rate_limited", _retry_after(retry_after)
        )
    if status >= 500 or status == 408:
        return _Answer(False, True, status, error)
    return _Answer(False, False, status, error)


def function_timeout(path: Path = HOST_JSON) -> float:
    """``functionTimeout`` of ``host.json`` in seconds (``hh:mm:ss``); the plan default if unset."""
    try:
        value = json.loads(path.read_text()).get("functionTimeout")
        hours, minutes, seconds = (float(part) for part in str(value).split(":"))
    except (OSError, ValueError, AttributeError):
        return DEFAULT_FUNCTION_TIMEOUT
    total = hours * 3600 + minutes * 60 + seconds
    return total if total > 0 else DEFAULT_FUNCTION_TIMEOUT


class _RedactRequestPaths(logging.Filter):
    """urllib3 logs each request line at DEBUG; a webhook URL's path is its secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                (a.split("/", 2)[0] + "/" + (a.split("/", 2)[1] if a.count("/") > 1 else "") + "/[redacted]")
                if isinstance(a, str) and a.startswith("/")
                else a
                for a in record.args
            )
        return True


def install_log_redaction() -> None:
    """Redact request paths in urllib3's request log (idempotent). Logging is process-wide, so the
    composition root calls this once (``function_app.py``, ``shared/cli.py``), never a constructor."""
    logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _RedactRequestPaths) for f in logger.filters):
        logger.addFilter(_RedactRequestPaths())


class Notifier:
    """Renders, routes and delivers digests; keeps undelivered ones in the outbox."""

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        router: Router | None = None,
        clock: Callable[[], datetime] | None = None,
        budget: float | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.router = router or Router(settings)
        self.session = session or requests.Session()
        self.sleep = sleep
        self.clock = clock or (lambda: datetime.now(UTC))
        self._secrets = settings.secret_values()
        self._unavailable: set[str] = set()
        # One run's deliveries stay within this many seconds, inside the host's functionTimeout.
        self.budget = budget if budget is not None else function_timeout() * DELIVERY_SHARE
        # A message is claimed for as long as a run may spend on it (the budget, then one request's
        # connect and read timeouts): a worker that died loses its claims after that.
        self.claim_seconds = self.budget + 2 * settings.http_timeout + 5

    def close(self) -> None:
        """Close the HTTP session (its pooled connections)."""
        self.session.close()

    # --- sending -------------------------------------------------------------------------------

    def _post(self, channel: Channel, payload: Mapping[str, Any]) -> _Answer:
        try:
            url = self.router.url(channel)
        except Exception:
            return _Answer(False, False, None, "webhook setting not set")
        try:
            response = self.session.post(
                url,
                data=encode_body(payload),
                timeout=(self.settings.http_timeout, self.settings.http_timeout),
                headers={"Content-Type": "application/json; charset=utf-8"},
                allow_redirects=False,
            )
        except requests.Timeout:
            return _Answer(False, True, None, "timeout")
        except requests.ConnectionError as exc:  # never show str(exc): it holds the URL
            return _Answer(False, True, None, reason_of(exc, default="connection failed"))
        except requests.RequestException as exc:
            return _Answer(False, False, None, f"request failed ({type(exc).__name__})")
        with response:
            body = response.text[:2000]
            return judge(channel.kind, response.status_code, body, response.headers.get("Retry-After"))

    def _send(
        self, message: OutboxMessage, deadline: float, *, lines: int = 0, from_outbox: bool = False
    ) -> ChannelResult:
        """Post ``message`` with bounded retries, never past ``deadline`` (``time.monotonic()``)."""
        channel = Channel.parse(message.channel)

        def result(outcome: str, attempts: int, answer: _Answer | None) -> ChannelResult:
            return ChannelResult(
                message.channel,
                outcome,
                message.message_id,
                attempts,
                answer.status if answer else None,
                answer.error if answer else None,
                lines,
                from_outbox,
            )

        if message.channel in self._unavailable:
            self.store.note_attempt(message, "channel unavailable earlier in this run")
            log.warning(
                "notify: %s unavailable in this run; message %s kept in the outbox",
                message.channel,
                message.message_id,
            )
            return result(QUEUED, 0, _Answer(False, True, None, "channel unavailable earlier in this run"))
        if time.monotonic() >= deadline:
            self.store.note_attempt(message, "delivery budget spent")
            log.warning(
                "notify: this run's delivery budget (%.0f s) is spent; message %s for %s kept in the outbox",
                self.budget,
                message.message_id,
                message.channel,
            )
            return result(QUEUED, 0, _Answer(False, True, None, "delivery budget spent"))
        answer: _Answer | None = None
        attempts = 0
        for attempt in range(self.settings.retries + 1):
            attempts = attempt + 1
            answer = self._post(channel, message.payload)
            if answer.ok:
                self.store.record_sent(message, status=answer.status or 0)
                log.info(
                    "notify: %s accepted message %s (HTTP %s, attempt %d)",
                    message.channel,
                    message.message_id,
                    answer.status,
                    attempts,
                )
                return result(SENT, attempts, answer)
            if not answer.retry:
                self.store.record_failed(message, status=answer.status, error=answer.error or "refused")
                log.error(
                    "notify: %s refused message %s: %s (HTTP %s); not retried",
                    message.channel,
                    message.message_id,
                    answer.error,
                    answer.status,
                )
                return result(FAILED, attempts, answer)
            if attempt < self.settings.retries:
                base = self.settings.retry_base_seconds * (2**attempt)
                wait = answer.retry_after if answer.retry_after is not None else base
                delay = min(wait, MAX_RETRY_AFTER)
                left = deadline - time.monotonic()
                if wait > left:
                    log.warning(
                        "notify: %s asks to wait %.0f s (%s), beyond this run's delivery budget "
                        "(%.0f s left); message %s kept in the outbox for the next run",
                        message.channel,
                        wait,
                        answer.error,
                        max(0.0, left),
                        message.message_id,
                    )
                    break
                log.info("notify: %s answered %s; retrying in %.1f s", message.channel, answer.error, delay)
                self.sleep(delay)
        assert answer is not None
        self._unavailable.add(message.channel)
        self.store.note_attempt(message, answer.error or "unavailable")
        log.warning(
            "notify: %s unavailable (%s) after %d attempts; message %s kept in the outbox",
            message.channel,
            answer.error,
            attempts,
            message.message_id,
        )
        return result(QUEUED, attempts, answer)

    def flush_outbox(self, deadline: float | None = None) -> list[ChannelResult]:
        """Send what earlier runs could not deliver, oldest first, until ``deadline``
        (``time.monotonic()``; default: the budget from now). Messages older than three days are
        given up (recorded as failed)."""
        deadline = time.monotonic() + self.budget if deadline is None else deadline
        results = []
        now = self.clock()
        for listed in self.store.outbox():
            message = self.store.claim(listed, self.claim_seconds, now=now)
            if message is None:
                log.debug("notify: message %s is another worker's to send", listed.message_id)
                continue
            if now - message.created > OUTBOX_MAX_AGE:
                self.store.record_failed(message, status=None, error="expired in the outbox")
                log.error(
                    "notify: message %s for %s expired in the outbox after %d attempts",
                    message.message_id,
                    message.channel,
                    message.attempts,
                )
                results.append(
                    ChannelResult(
                        message.channel, FAILED, message.message_id, 0, None, "expired in the outbox", 0, True
                    )
                )
                continue
            results.append(self._send(message, deadline, from_outbox=True))
        return results

    # --- the run's digest ----------------------------------------------------------------------

    def due_reminders(self, changes_by_target: Mapping[str, Changes]) -> dict[str, tuple[Finding, ...]]:
        """Per target, the still-open findings not reminded within ``reminder_hours``."""
        return {
            target: tuple(
                self.store.due_reminders(
                    target, changes.still_open, self.settings.reminder_hours, now=self.clock()
                )
            )
            for target, changes in changes_by_target.items()
            if changes.still_open
        }

    def plan(
        self,
        changes_by_target: Mapping[str, Changes],
        cluster_meta: Mapping[str, ClusterMeta],
        due: Mapping[str, tuple[Finding, ...]] | None = None,
    ) -> dict[Channel, dict[str, Changes]]:
        """Per channel, the changes it should hear about (routes and severities applied); still-open
        findings only where ``due`` (reminders) lists them."""
        metas = {k.lower(): v for k, v in cluster_meta.items()}
        plan: dict[Channel, dict[str, Changes]] = {}
        for target, changes in changes_by_target.items():
            meta = metas.get(target.lower()) or ClusterMeta.from_id(target, tenant=self.settings.tenant_id)
            still_open = (due or {}).get(target, ())
            for channel, least in self.router.channels_for(target, name=meta.name, tags=meta.tags).items():

                def keep(findings: tuple[Finding, ...], least: Severity = least) -> tuple[Finding, ...]:
                    return tuple(f for f in findings if f.level.at_least(least))

                picked = Changes(
                    new=keep(changes.new), still_open=keep(still_open), resolved=keep(changes.resolved)
                )
                if picked.new or picked.resolved or picked.still_open:
                    plan.setdefault(channel, {})[target] = picked
        return plan

    def deliver(
        self,
        changes_by_target: Mapping[str, Changes],
        cluster_meta: Mapping[str, ClusterMeta],
        *,
        reminder: bool,
        save_state: bool = True,
    ) -> DeliveryReport:
        """Flush the outbox, then send one digest per channel for this run's changes.

        Order (so that no message is lost and a crash repeats at most one): every digest is written
        to the outbox, then (``save_state``) each target's open findings (``changes.open``) are saved,
        then the digests are posted. Callers that save the state themselves pass ``save_state=False``
        and must save it only after this returns.
        """
        self._unavailable = set()
        deadline = time.monotonic() + self.budget
        report = DeliveryReport(self.flush_outbox(deadline))
        due = self.due_reminders(changes_by_target) if reminder else {}
        plan = self.plan(changes_by_target, cluster_meta, due)
        outgoing: list[tuple[OutboxMessage, int]] = []
        for channel in sorted(plan):
            digest = build_digest(
                plan[channel], cluster_meta, reminder=reminder, tenant=self.settings.tenant_id
            )
            if digest.empty:
                continue
            payload = render(channel.kind, digest, self._secrets)
            message = self.store.enqueue(
                channel.name, payload, now=self.clock(), claim_seconds=self.claim_seconds
            )
            outgoing.append((message, digest.total))
        now = self.clock()
        if save_state:
            for target, changes in changes_by_target.items():
                self.store.save_open(target, changes.open, now=now)
        for target, findings in due.items():
            if findings:
                self.store.mark_reminded(target, findings, now=now)
        for message, lines in outgoing:
            report.results.append(self._send(message, deadline, lines=lines))
        return report
