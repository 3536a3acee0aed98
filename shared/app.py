"""The composition root: what each Functions trigger (and the CLI) does, over one pipeline.

``App`` owns the outside systems for a process (credential, state table, audit queue, notifier)
and keeps one :class:`~shared.pipeline.Auditor` warm for a short window, so that a burst of
queue messages (the nightly fan-out) shares subscription-wide ARM lists and registry tokens
instead of re-reading them per cluster.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.credentials import TokenCredential

from shared.compare import Changes, compare
from shared.config import Settings
from shared.errors import InputError, PullwatchError, UpstreamError
from shared.events import AzureEvent, Rejected, parse_delivery, parse_resource_id
from shared.findings import Finding, sort_findings
from shared.inventory import AuditQueue, InventoryStore
from shared.notify import Notifier
from shared.pipeline import (
    AuditOptions,
    Auditor,
    AuditResult,
    ClusterResult,
    connect_auditor,
    incomplete,
    safe_reason,
)
from shared.plan import AuditRequest, Scope, plan_events, plan_nightly
from shared.render import ClusterMeta
from shared.state import StateStore

log = logging.getLogger("pullwatch.app")

AUDITOR_WINDOW_SECONDS = 300.0  # how long a warm Auditor (and its ARM/registry caches) is reused
EVENT_MEMORY_SECONDS = 2 * 24 * 3600  # Event Grid retries for 24 h: remember ids for two days
SENT_MEMORY_DAYS = 30  # how long records of sent messages are kept
ESTATE = "/subscriptions"  # the target of findings about the whole estate (discovery)


def default_credential(settings: Settings) -> TokenCredential:
    """The managed identity in Azure Functions (IDENTITY_ENDPOINT), else DefaultAzureCredential."""
    if os.environ.get("IDENTITY_ENDPOINT") or os.environ.get("MSI_ENDPOINT"):
        from azure.identity import ManagedIdentityCredential

        return (
            ManagedIdentityCredential(client_id=settings.client_id)
            if settings.client_id
            else ManagedIdentityCredential()
        )
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(authority=settings.cloud.authority_host)


class App:
    def __init__(
        self,
        settings: Settings,
        credential: TokenCredential,
        *,
        store: StateStore | None = None,
        queue: AuditQueue | None = None,
        inventory: InventoryStore | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.credential = credential
        self._store = store
        self._queue = queue
        self._inventory = inventory
        self._notifier = notifier
        self._auditor: Auditor | None = None
        self._retired: list[Auditor] = []
        self._auditor_since = 0.0
        self._lock = threading.Lock()
        self.scope = Scope.of(settings.subscriptions, settings.clusters)

    # --- lazily built seams (a CLI audit without --notify needs no storage) -------------------

    @property
    def store(self) -> StateStore:
        if self._store is None:
            self._store = StateStore.from_settings(self.settings, self.credential)
        return self._store

    @property
    def queue(self) -> AuditQueue:
        if self._queue is None:
            self._queue = AuditQueue.from_settings(self.settings, self.credential)
        return self._queue

    @property
    def inventory(self) -> InventoryStore:
        if self._inventory is None:
            self._inventory = InventoryStore(self.store.table)
        return self._inventory

    @property
    def notifier(self) -> Notifier:
        if self._notifier is None:
            self._notifier = Notifier(self.settings, self.store)
        return self._notifier

    def auditor(self, *, warm: bool = False) -> Auditor:
        """An Auditor. ``warm=True`` (the nightly fan-out) reuses one for a short window, so the
        messages of one fan-out share subscription-wide ARM lists and registry probes; an audit
        caused by a change always reads afresh (the change is what it must see)."""
        if not warm:
            return connect_auditor(self.settings, self.credential)
        with self._lock:
            now = time.monotonic()
            if self._auditor is None or now - self._auditor_since > AUDITOR_WINDOW_SECONDS:
                self._retire_auditor()
                self._auditor = connect_auditor(self.settings, self.credential)
                self._auditor_since = now
            return self._auditor

    def _retire_auditor(self) -> None:
        """Replace the warm Auditor without closing it under an invocation still using it: it is
        closed one replacement later (a window or a fan-out on), long after its audits ended."""
        for old in self._retired:
            old.close()
        self._retired = [self._auditor] if self._auditor is not None else []
        self._auditor = None

    def close(self) -> None:
        self._retire_auditor()
        self._retire_auditor()
        for seam in (self._queue, self._store):
            if seam is not None:
                seam.close()

    # --- Event Grid -------------------------------------------------------------------------

    def handle_event_grid(self, body: Any) -> dict[str, Any]:
        """One Event Grid delivery (one event or an array): de-duplicate, plan, enqueue (debounced)."""
        delivery = parse_delivery(body)
        for rejected in delivery.rejected:
            log.warning("event %s skipped: %s", rejected.id or f"#{rejected.index}", rejected.reason)
        for ignored in delivery.ignored:
            log.debug("event %s (%s) ignored: pullwatch does not act on it", ignored.id, ignored.type)
        fresh = []
        for event in delivery.events:
            if self.store.seen_event(event.id, EVENT_MEMORY_SECONDS):
                log.info("event %s already handled: duplicate delivery skipped", event.id)
                continue
            fresh.append(event)
        if not fresh:
            return {"audits": 0, "skipped": len(delivery.events), "rejected": len(delivery.rejected)}
        try:
            return self._plan_and_enqueue(fresh, delivery.rejected)
        except Exception:
            # Event Grid redelivers a failed delivery: it must not be skipped as a duplicate.
            for event in fresh:
                try:
                    self.store.forget_event(event.id)
                except PullwatchError:
                    log.error("event %s could not be forgotten: its redelivery will be skipped", event.id)
            raise

    def _plan_and_enqueue(self, fresh: Sequence[AzureEvent], rejected: Sequence[Rejected]) -> dict[str, Any]:
        plan = plan_events(fresh, self.inventory.all(), self.scope)
        for event_id, why in plan.ignored:
            log.debug("event %s ignored: %s", event_id, why)
        for cluster_id in plan.forget:
            log.info("cluster %s was deleted: forgetting its state", cluster_id)
            self.store.save_open(cluster_id, [])
            self.inventory.forget(cluster_id)
        requests = list(plan.audits)
        for subscription in plan.discover:
            ids, _ = self.auditor(warm=True).discover((subscription,))
            requests.extend(AuditRequest(c, ("role assignments changed; inventory unknown",)) for c in ids)
        enqueued = sum(self.queue.schedule(r, self.settings.debounce_seconds) for r in requests)
        return {
            "audits": enqueued,
            "events": len(fresh),
            "ignored": len(plan.ignored),
            "rejected": len(rejected),
        }

    # --- nightly ----------------------------------------------------------------------------

    def fan_out_nightly(self) -> int:
        """Discover every watched cluster and enqueue one audit message per cluster."""
        with self._lock:  # a fan-out starts its own sharing window: nothing cached by an earlier one
            self._retire_auditor()
        auditor = self.auditor(warm=True)
        try:
            cluster_ids, problems = auditor.discover()
        except PullwatchError as exc:
            cluster_ids, problems = [], [incomplete(None, "all", f"cannot list the subscriptions: {exc}")]
        for problem in problems:
            log.error("nightly discovery: %s", problem.message)
        self._remember_discovery(problems)
        count = 0
        failed: list[str] = []
        for request in plan_nightly(cluster_ids):
            try:  # one message that cannot be enqueued does not stop the others
                count += self.queue.send(request)
            except PullwatchError as exc:
                failed.append(request.cluster)
                log.error("nightly audit: could not enqueue %s: %s", request.cluster, exc)
        log.info("nightly audit: %d clusters enqueued", count)
        self._purge_old_state()
        if failed:  # fail the invocation so the host logs it; the others are enqueued already
            raise UpstreamError(
                f"nightly audit: {len(failed)} of {len(cluster_ids)} clusters could not be enqueued"
            )
        return count

    def _purge_old_state(self) -> None:
        """Keep the state table bounded: event ids past their memory, old sent records."""
        now = datetime.now(UTC)
        try:
            purged = self.store.purge(
                events_before=now - timedelta(seconds=EVENT_MEMORY_SECONDS),
                sent_before=now - timedelta(days=SENT_MEMORY_DAYS),
            )
        except PullwatchError as exc:  # the audits are enqueued; the purge waits for tomorrow
            log.warning("nightly audit: old state could not be purged: %s", exc)
            return
        if purged:
            log.info("nightly audit: %d old event ids and sent records purged", purged)

    def _remember_discovery(self, problems: Sequence[Finding]) -> None:
        """Clusters that could not be discovered cannot be audited: one CHECK_INCOMPLETE for the
        estate (target :data:`ESTATE`), stored and delivered like a cluster's findings, and resolved
        when discovery works again. Never only a log line: the night would look all clear."""
        previous = self.store.open_findings(ESTATE)
        if not previous and not problems:
            return
        now: list[Finding] = []
        if problems:
            reasons = "; ".join(str(p.evidence.get("reason") or p.message) for p in problems)
            subscriptions = [
                str(p.evidence["subscription"]) for p in problems if p.evidence.get("subscription")
            ]
            now = [
                incomplete(
                    None,
                    "all",
                    reasons,
                    message=f"Could not discover the clusters to audit: {reasons}.",
                    subscriptions=subscriptions,
                )
            ]
        meta = ClusterMeta.from_id(ESTATE, tenant=self.settings.tenant_id)
        self.notifier.deliver({ESTATE: compare(previous, now)}, {ESTATE: meta}, reminder=True)

    # --- the audit worker ---------------------------------------------------------------------

    def run_audit_message(
        self, body: bytes | str, *, dequeue_count: int = 1, message_id: str | None = None
    ) -> dict[str, Any]:
        """Audit one queue message. A failure raises: the Functions host retries the message and,
        after ``maxDequeueCount`` (host.json, the one place the limit is set), moves it to
        ``<queue>-poison``, where :meth:`record_poison_message` reports it."""
        try:
            request = AuditRequest.from_json(body)
        except InputError as exc:
            log.error("audit message %s dropped: %s", message_id, exc)
            return {"dropped": str(exc)}
        merged = self.queue.clear_pending(request.cluster)
        if merged is not None:  # events that arrived within the debounce window
            request = merged.merged(request)
        try:
            return self.audit_and_notify([request])
        except Exception as exc:
            log.error(
                "audit of %s failed (attempt %d, message %s): %s",
                request.cluster,
                dequeue_count,
                message_id,
                safe_reason(exc),
            )
            raise

    def record_poison_message(self, body: bytes | str, *, message_id: str | None = None) -> dict[str, Any]:
        """A message the host moved to the poison queue: its cluster could not be audited, which is
        reported (``CHECK_INCOMPLETE``) instead of passing silently."""
        try:
            request = AuditRequest.from_json(body)
        except InputError as exc:
            log.error("poison message %s dropped: %s", message_id, exc)
            return {"dropped": str(exc)}
        reason = (
            "its audit failed on every attempt the Functions host allows (maxDequeueCount in host.json); "
            "the function logs hold each failure"
        )
        log.error("audit message %s for %s is poison: %s", message_id, request.cluster, reason)
        self._record_incomplete(request.cluster, reason)
        return {"poison": reason}

    def _record_incomplete(self, cluster_id: str, reason: str) -> None:
        finding = incomplete(cluster_id, "all", reason)
        previous = self.store.open_findings(cluster_id)
        changes = compare(previous, [*[f for f in previous if f.code != "CHECK_INCOMPLETE"], finding])
        self.store.save_open(cluster_id, changes.open)

    def audit_and_notify(
        self, requests: Sequence[AuditRequest], *, notify: bool = True, options: AuditOptions | None = None
    ) -> dict[str, Any]:
        options = options or AuditOptions(probe=self.settings.probe, read_secrets=self.settings.read_secrets)
        previous_inventory = {c.id.lower(): c for c in self.inventory.all()}
        for r in requests:  # why each audit runs (the events behind it), for whoever reads the logs
            log.info("auditing %s: %s", r.cluster, "; ".join(r.reasons) or "requested")
        warm = all(r.nightly for r in requests)
        auditor = self.auditor(warm=warm)
        try:
            result = auditor.audit_clusters([r.cluster for r in requests], options, previous_inventory)
        finally:
            if not warm:
                auditor.close()
        changes = self.remember(result, save=not notify)
        report: dict[str, Any] = {"clusters": len(result.clusters), "findings": len(result.findings)}
        if notify:
            reminder = any(r.nightly for r in requests)
            metas = {c.cluster_id: _meta(c, self.settings) for c in result.clusters}
            delivery = self.notifier.deliver(changes, metas, reminder=reminder)
            report["delivery"] = delivery.to_dict()
        return report

    def remember(self, result: AuditResult, *, save: bool = True) -> dict[str, Changes]:
        """Compare each cluster's findings with the stored ones and store the inventory.

        ``save=False`` leaves saving the open findings to ``Notifier.deliver``, which saves them only
        after the messages about them are in the outbox: a crash in between repeats a message at
        worst, and never loses one."""
        changes: dict[str, Changes] = {}
        for cluster in result.clusters:
            previous = self.store.open_findings(cluster.cluster_id)
            if cluster.gone:
                change = Changes(resolved=tuple(previous))
                self.inventory.forget(cluster.cluster_id)
            else:
                change = compare(previous, cluster.findings)
                if cluster.inventory is not None:
                    self.inventory.save(cluster.inventory)
            if save:
                self.store.save_open(cluster.cluster_id, change.open)
            changes[cluster.cluster_id] = change
        return changes

    # --- on demand --------------------------------------------------------------------------

    def check_http(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """``POST /api/check``: audit the named clusters and answer their findings."""
        try:
            data = json.loads(body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return 400, {"error": f"body is not JSON: {exc}"}
        except RecursionError:
            return 400, {"error": "body is not usable JSON: nested too deeply"}
        if not isinstance(data, dict):
            return 400, {"error": 'body must be a JSON object like {"clusters": ["/subscriptions/…"]}'}
        clusters = data.get("clusters")
        if not isinstance(clusters, list) or not clusters or not all(isinstance(c, str) for c in clusters):
            return 400, {"error": "'clusters' must be a non-empty list of managedCluster resource IDs"}
        bad = [
            c
            for c in clusters
            if (rid := parse_resource_id(c)) is None
            or rid.kind != "microsoft.containerservice/managedclusters"
        ]
        if bad:
            return 400, {"error": f"not managedCluster resource IDs: {', '.join(bad[:5])}"}
        unknown = set(data) - {"clusters", "probe", "read_secrets", "notify"}
        if unknown:
            return 400, {"error": f"unknown field(s): {', '.join(sorted(unknown))}"}
        flags = {k: data.get(k, False) for k in ("probe", "read_secrets", "notify")}
        if not all(isinstance(v, bool) for v in flags.values()):
            return 400, {"error": "'probe', 'read_secrets' and 'notify' must be true or false"}
        options = AuditOptions(
            clusters=tuple(clusters),
            probe=flags["probe"] or self.settings.probe,
            read_secrets=flags["read_secrets"] or self.settings.read_secrets,
        )
        auditor = self.auditor()
        try:
            result = auditor.audit_clusters(list(clusters), options)
            if flags["notify"]:
                changes = self.remember(result, save=False)
                self.notifier.deliver(
                    changes, {c.cluster_id: _meta(c, self.settings) for c in result.clusters}, reminder=False
                )
        except PullwatchError as exc:
            return 502, {"error": str(exc)}
        finally:
            auditor.close()
        return 200, result.to_dict()

    # --- CLI --------------------------------------------------------------------------------

    def audit_now(self, options: AuditOptions, *, notify: bool) -> AuditResult:
        auditor = self.auditor(warm=True)
        cluster_ids, problems = auditor.discover(options.subscriptions, options.clusters)
        result = auditor.audit_clusters(cluster_ids, options)
        if problems:
            result.clusters.append(ClusterResult("", problems))
        if notify:
            changes = self.remember(result, save=False)
            self.notifier.deliver(
                changes,
                {c.cluster_id: _meta(c, self.settings) for c in result.clusters if c.cluster_id},
                reminder=False,
            )
        return result

    def open_findings(self, cluster_ids: Sequence[str]) -> list[Finding]:
        return sort_findings(f for c in cluster_ids for f in self.store.open_findings(c))


def _meta(cluster: ClusterResult, settings: Settings) -> ClusterMeta:
    tenant = (
        cluster.cluster.tenant_id if cluster.cluster and cluster.cluster.tenant_id else settings.tenant_id
    )
    return ClusterMeta.from_id(cluster.cluster_id, tenant=tenant, tags=dict(cluster.tags))


class ProcessApp:
    """The App of one Functions worker process, built from app settings on first use: a warm worker
    reuses its seams. The one instance lives at ``function_app.py``'s module level (the composition
    root); ``get(reset=True)`` closes it and builds it afresh (the sandbox does after changing settings)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._app: App | None = None

    def get(self, *, reset: bool = False) -> App:
        with self._lock:
            if reset and self._app is not None:
                self._app.close()
                self._app = None
            if self._app is None:
                settings = Settings.from_env()
                _configure_telemetry(settings)
                self._app = App(settings, default_credential(settings))
            return self._app

    def close(self) -> None:
        """Close the App if one was built; the next ``get()`` builds it afresh."""
        with self._lock:
            if self._app is not None:
                self._app.close()
                self._app = None


def _configure_telemetry(settings: Settings) -> None:
    """OpenTelemetry to Application Insights when its connection string is set. The resource has
    local auth disabled, so the exporter authenticates with pullwatch's managed identity."""
    if not settings.appinsights_connection:
        return
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor
    except ImportError:  # pragma: no cover - installed from requirements.txt
        log.info("azure-monitor-opentelemetry is not installed: telemetry stays in the Functions host logs")
        return
    from azure.identity import ManagedIdentityCredential

    credential = ManagedIdentityCredential(client_id=settings.client_id) if settings.client_id else None
    if credential is None:
        configure_azure_monitor(connection_string=settings.appinsights_connection)
    else:
        configure_azure_monitor(connection_string=settings.appinsights_connection, credential=credential)
