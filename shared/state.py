"""What pullwatch remembers between runs, in one Azure Table (``Settings.state_table``).

Partitions (PartitionKey → RowKey):

* ``open~<target>`` → sha256 of ``Finding.key_text``: one entity per open finding of a target
  (a cluster resource ID), with when it was first seen and last reminded;
* ``outbox`` → message id: rendered messages not yet accepted by their webhook, each with a claim
  (``claimed_until``) taken by an ETag-conditional update so one worker at a time posts it;
* ``sent`` → message id: messages a webhook accepted (and permanent failures, ``status=failed``);
* ``event`` → sha256 of the event id: Event Grid event ids already handled (de-duplication), one
  small entity per id, purged nightly once past their memory (:meth:`StateStore.purge`).

Keys are made safe for Table storage (no ``/ \\ # ?`` or control characters). Large JSON values are
split over several string properties (a property holds at most 64 KiB).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared.config import Settings
from shared.errors import UpstreamError
from shared.findings import Finding

log = logging.getLogger("pullwatch.state")

OUTBOX = "outbox"
SENT = "sent"
EVENTS = "event"
_OPEN = "open~"
_CHUNK = 30_000  # characters per string property (UTF-16 limit is 32 K characters)


def safe_key(text: str) -> str:
    """An injective, Table-safe rendering of ``text`` (percent-encoding with ``!`` for ``%``)."""
    return quote(text, safe="").replace("%", "!")


def finding_row_key(finding: Finding) -> str:
    return hashlib.sha256(finding.key_text.encode("utf-8")).hexdigest()


def target_partition(target: str) -> str:
    return _OPEN + safe_key(target.lower())


def _now() -> datetime:
    return datetime.now(UTC)


def _put_text(entity: dict[str, Any], name: str, text: str) -> None:
    chunks = [text[i : i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
    entity[f"{name}_parts"] = len(chunks)
    for i, chunk in enumerate(chunks):
        entity[f"{name}_{i}"] = chunk


def _get_text(entity: Mapping[str, Any], name: str) -> str:
    parts = int(entity.get(f"{name}_parts") or 0)
    return "".join(str(entity.get(f"{name}_{i}") or "") for i in range(parts))


def _as_datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value))


@dataclass(frozen=True)
class OpenFinding:
    finding: Finding
    first_seen: datetime
    last_reminded: datetime | None


@dataclass(frozen=True)
class OutboxMessage:
    """A rendered message waiting for its webhook. ``channel`` is ``kind:SETTING_NAME``.

    ``claimed_until`` is when the claim of the worker posting it ends (None: unclaimed); ``etag`` is
    the outbox entity's version as this worker last saw it (conditional updates use it)."""

    message_id: str
    channel: str
    payload: dict[str, Any]
    created: datetime
    attempts: int = 0
    last_error: str | None = None
    claimed_until: datetime | None = field(default=None, compare=False)
    etag: str | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        return self.channel.split(":", 1)[0]

    @property
    def setting(self) -> str:
        return self.channel.split(":", 1)[1]


def storage_error(what: str, exc: AzureError, store: str = "state storage") -> UpstreamError:
    """A failed Azure Storage call as one line: the store, what it was doing, the HTTP status (or the
    error's type) and Storage's error code; never the response body or the connection string."""
    status = exc.status_code if isinstance(exc, HttpResponseError) else None
    code = getattr(exc, "error_code", None)
    code = getattr(code, "value", code)  # azure-data-tables gives a TableErrorCode enum: its wire value
    detail = f"HTTP {status}" if status else type(exc).__name__
    return UpstreamError(
        f"{store}: {what} failed ({detail}{', ' + str(code) if code else ''})",
        status=status,
        code=str(code) if code else None,
    )


class StateStore:
    """Open findings, the outbox, sent messages and seen events over one ``TableClient``.

    ``StateStore(table_client)``, ``StateStore(connection_string, table_name=…)`` or
    ``StateStore(account_url, credential=…, table_name=…)``. The table is created on first use.
    """

    def __init__(
        self,
        table: TableClient | str,
        *,
        credential: TokenCredential | None = None,
        table_name: str = "pullwatchstate",
        timeout: float = 10.0,
    ) -> None:
        # every storage call is bounded: connect and read timeouts, few SDK retries
        limits: dict[str, Any] = {"connection_timeout": timeout, "read_timeout": timeout, "retry_total": 3}
        if isinstance(table, TableClient):
            self._table = table
        elif "://" in table and "=" not in table:
            if credential is None:
                raise ValueError("StateStore: an account URL needs a credential")
            self._table = TableServiceClient(
                endpoint=table, credential=credential, **limits
            ).get_table_client(table_name)
        else:
            self._table = TableClient.from_connection_string(table, table_name=table_name, **limits)
        self._ready = False

    @classmethod
    def from_settings(cls, settings: Settings, credential: TokenCredential | None = None) -> StateStore:
        """Identity-based when ``AzureWebJobsStorage__accountName`` is set, else the connection string."""
        if settings.storage_account:
            if credential is None:
                raise ValueError("StateStore.from_settings: identity-based storage needs a credential")
            url = f"https://{settings.storage_account}.table.{settings.cloud.storage_suffix}"
            return cls(
                url, credential=credential, table_name=settings.state_table, timeout=settings.http_timeout
            )
        if settings.storage_connection:
            return cls(
                settings.storage_connection, table_name=settings.state_table, timeout=settings.http_timeout
            )
        raise UpstreamError(
            "state storage is not configured: set AzureWebJobsStorage or AzureWebJobsStorage__accountName"
        )

    @property
    def table(self) -> TableClient:
        if not self._ready:
            try:
                self._table.create_table()
            except ResourceExistsError:
                pass
            except AzureError as exc:
                raise storage_error("creating the state table", exc) from None
            self._ready = True
        return self._table

    def close(self) -> None:
        self._table.close()

    # --- entity helpers ------------------------------------------------------------------------

    def _query(self, partition: str) -> Iterator[dict[str, Any]]:
        escaped = partition.replace("'", "''")
        try:
            yield from self.table.query_entities(f"PartitionKey eq '{escaped}'")
        except AzureError as exc:
            raise storage_error(f"reading partition {partition[:60]}", exc) from None

    def _upsert(self, entity: dict[str, Any], what: str) -> None:
        try:
            self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        except AzureError as exc:
            raise storage_error(what, exc) from None

    def _delete(self, partition: str, row: str, what: str) -> None:
        try:
            self.table.delete_entity(partition_key=partition, row_key=row)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise storage_error(what, exc) from None

    # --- open findings -------------------------------------------------------------------------

    def open_entries(self, target: str) -> list[OpenFinding]:
        out = []
        for entity in self._query(target_partition(target)):
            finding = Finding.from_dict(json.loads(_get_text(entity, "finding")))
            out.append(
                OpenFinding(
                    finding,
                    _as_datetime(entity.get("first_seen")) or _now(),
                    _as_datetime(entity.get("last_reminded")),
                )
            )
        return out

    def open_findings(self, target: str) -> list[Finding]:
        """The target's findings that were open after the last audit (``previous`` for compare)."""
        return [e.finding for e in self.open_entries(target)]

    def save_open(self, target: str, findings: Iterable[Finding], *, now: datetime | None = None) -> None:
        """Make ``findings`` the target's open findings: keep first-seen/last-reminded of those
        that were open before, add the others, delete the ones no longer open."""
        now = now or _now()
        partition = target_partition(target)
        existing = {e["RowKey"]: e for e in self._query(partition)}
        keep = set()
        for finding in findings:
            row = finding_row_key(finding)
            keep.add(row)
            old = existing.get(row, {})
            entity: dict[str, Any] = {
                "PartitionKey": partition,
                "RowKey": row,
                "target": target,
                "code": finding.code,
                "severity": finding.level.value,
                "first_seen": _as_datetime(old.get("first_seen")) or now,
                "last_reminded": _as_datetime(old.get("last_reminded")) or "",
            }
            _put_text(entity, "finding", json.dumps(finding.to_dict()))
            self._upsert(entity, "saving an open finding")
        for row in existing.keys() - keep:
            self._delete(partition, row, "deleting a resolved finding")

    def due_reminders(
        self, target: str, findings: Iterable[Finding], hours: float, *, now: datetime | None = None
    ) -> list[Finding]:
        """The findings not reminded (nor first seen) within ``hours``: the ones a reminder repeats."""
        now = now or _now()
        entries = {finding_row_key(e.finding): e for e in self.open_entries(target)}
        due = []
        for finding in findings:
            entry = entries.get(finding_row_key(finding))
            last = (entry.last_reminded or entry.first_seen) if entry else None
            if last is None or now - last >= timedelta(hours=hours):
                due.append(finding)
        return due

    def mark_reminded(self, target: str, findings: Iterable[Finding], *, now: datetime | None = None) -> None:
        now = now or _now()
        partition = target_partition(target)
        for finding in findings:
            entity = {"PartitionKey": partition, "RowKey": finding_row_key(finding), "last_reminded": now}
            try:
                self.table.update_entity(entity, mode=UpdateMode.MERGE)
            except ResourceNotFoundError:
                continue
            except AzureError as exc:
                raise storage_error("marking a reminder", exc) from None

    # --- outbox and sent messages --------------------------------------------------------------

    def enqueue(
        self,
        channel: str,
        payload: Mapping[str, Any],
        *,
        now: datetime | None = None,
        claim_seconds: float = 0,
    ) -> OutboxMessage:
        """Store a message before it is sent (so a crash never drops it). With ``claim_seconds`` it
        is stored claimed by the caller: no other worker's outbox flush posts it meanwhile."""
        now = now or _now()
        # Time-ordered ids keep the outbox in creation order.
        message_id = f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:12]}"
        claimed = now + timedelta(seconds=claim_seconds) if claim_seconds > 0 else None
        message = OutboxMessage(message_id, channel, dict(payload), now, claimed_until=claimed)
        try:
            metadata = self.table.create_entity(self._outbox_entity(message))
        except AzureError as exc:
            raise storage_error("saving an outbox message", exc) from None
        return replace(message, etag=metadata.get("etag"))

    def _outbox_entity(self, message: OutboxMessage) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": OUTBOX,
            "RowKey": message.message_id,
            "channel": message.channel,
            "created": message.created,
            "attempts": message.attempts,
            "last_error": message.last_error or "",
            "claimed_until": message.claimed_until or "",
        }
        _put_text(entity, "payload", json.dumps(message.payload, ensure_ascii=False))
        return entity

    def outbox(self) -> list[OutboxMessage]:
        out = []
        for entity in self._query(OUTBOX):
            metadata = getattr(entity, "metadata", None) or {}
            out.append(
                OutboxMessage(
                    message_id=str(entity["RowKey"]),
                    channel=str(entity["channel"]),
                    payload=json.loads(_get_text(entity, "payload") or "{}"),
                    created=_as_datetime(entity.get("created")) or _now(),
                    attempts=int(entity.get("attempts") or 0),
                    last_error=entity.get("last_error") or None,
                    claimed_until=_as_datetime(entity.get("claimed_until")),
                    etag=metadata.get("etag"),
                )
            )
        return sorted(out, key=lambda m: m.message_id)

    def claim(
        self, message: OutboxMessage, seconds: float, *, now: datetime | None = None
    ) -> OutboxMessage | None:
        """Take ``message`` for ``seconds`` so that no other worker posts it meanwhile.

        An ETag-conditional update of its outbox entity: exactly one of the workers that read the
        same version wins. None when another worker holds a live claim, won the race, or the message
        was delivered already. A claim that ran out (its worker died) is taken over."""
        now = now or _now()
        if message.etag is None or (message.claimed_until is not None and message.claimed_until > now):
            return None
        until = now + timedelta(seconds=seconds)
        entity = {"PartitionKey": OUTBOX, "RowKey": message.message_id, "claimed_until": until}
        try:
            metadata = self.table.update_entity(
                entity,
                mode=UpdateMode.MERGE,
                etag=message.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        except AzureError as exc:
            raise storage_error("claiming an outbox message", exc) from None
        return replace(message, claimed_until=until, etag=metadata.get("etag"))

    def note_attempt(self, message: OutboxMessage, error: str) -> OutboxMessage:
        """A failed attempt: count it and release the claim, so the next run (any worker) retries.
        Conditional on the claim still being this worker's: a message another worker took over is
        left alone (and never written back after it was delivered)."""
        updated = replace(message, attempts=message.attempts + 1, last_error=error, claimed_until=None)
        entity = self._outbox_entity(updated)
        try:
            if message.etag is None:
                self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)
            else:
                metadata = self.table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=message.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
                updated = replace(updated, etag=metadata.get("etag"))
        except (ResourceModifiedError, ResourceNotFoundError):
            log.warning("outbox message %s was taken over by another worker", message.message_id)
        except AzureError as exc:
            raise storage_error("saving an outbox message", exc) from None
        return updated

    def record_sent(self, message: OutboxMessage, *, status: int, now: datetime | None = None) -> None:
        """The webhook accepted ``message``: record it, then drop it from the outbox."""
        self._record(message, "sent", status, None, now)

    def record_failed(
        self, message: OutboxMessage, *, status: int | None, error: str, now: datetime | None = None
    ) -> None:
        """A permanent failure: record it (never retried), then drop it from the outbox."""
        self._record(message, "failed", status, error, now)

    def _record(
        self,
        message: OutboxMessage,
        outcome: str,
        status: int | None,
        error: str | None,
        now: datetime | None,
    ) -> None:
        entity: dict[str, Any] = {
            "PartitionKey": SENT,
            "RowKey": message.message_id,
            "channel": message.channel,
            "status": outcome,
            "http_status": status or 0,
            "error": error or "",
            "created": message.created,
            "at": now or _now(),
            "attempts": message.attempts + 1,
        }
        self._upsert(entity, "recording a sent message")
        self._delete(OUTBOX, message.message_id, "removing a delivered message from the outbox")

    def sent_messages(self) -> list[dict[str, Any]]:
        return sorted((dict(e) for e in self._query(SENT)), key=lambda e: str(e["RowKey"]))

    # --- Event Grid de-duplication -------------------------------------------------------------

    def seen_event(self, event_id: str, ttl: float | timedelta, *, now: datetime | None = None) -> bool:
        """Record-and-test: True when ``event_id`` was already recorded within ``ttl`` (seconds or a
        timedelta), i.e. a duplicate to skip; otherwise record it now and return False."""
        now = now or _now()
        ttl = ttl if isinstance(ttl, timedelta) else timedelta(seconds=ttl)
        row = hashlib.sha256(event_id.encode("utf-8")).hexdigest()
        entity = {"PartitionKey": EVENTS, "RowKey": row, "seen": now}
        try:
            self.table.create_entity(entity)
            return False
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise storage_error("recording an event id", exc) from None
        old: Mapping[str, Any]
        try:
            old = self.table.get_entity(EVENTS, row)
        except ResourceNotFoundError:
            old = {}
        except AzureError as exc:
            raise storage_error("reading an event id", exc) from None
        seen = _as_datetime(old.get("seen"))
        if seen is not None and now - seen < ttl:
            return True
        self._upsert(entity, "recording an event id")
        return False

    def forget_event(self, event_id: str) -> None:
        """Undo :meth:`seen_event`: the event could not be handled, so its redelivery must run."""
        self._delete(EVENTS, hashlib.sha256(event_id.encode("utf-8")).hexdigest(), "forgetting an event id")

    # --- keeping the table bounded -------------------------------------------------------------

    def purge(self, *, events_before: datetime, sent_before: datetime, limit: int = 10_000) -> int:
        """Delete event ids recorded before ``events_before`` and sent records before
        ``sent_before`` (at most ``limit`` entities per call); the number deleted. Run nightly, it
        keeps the de-duplication memory to Event Grid's retry window instead of every id ever."""
        deleted = 0
        for partition, field_name, before in ((EVENTS, "seen", events_before), (SENT, "at", sent_before)):
            try:
                old = self.table.query_entities(
                    f"PartitionKey eq @pk and {field_name} lt @before",
                    parameters={"pk": partition, "before": before},
                    select=["PartitionKey", "RowKey"],
                )
                for entity in old:
                    if deleted >= limit:
                        return deleted
                    self._delete(partition, str(entity["RowKey"]), "purging an old entity")
                    deleted += 1
            except AzureError as exc:
                raise storage_error(f"purging partition {partition}", exc) from None
        return deleted
