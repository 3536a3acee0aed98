"""What the audits saw each cluster use (the inventory the event planner reads), and the audit queue.

Both live in Azure Storage: the inventory in the state table (partition ``inventory``), audit
requests in a Storage queue, with a ``pending`` entity per cluster that coalesces the events of one
debounce window into one audit (the message is enqueued invisible for the window; later events in
the window merge into the pending entity instead of enqueuing again).
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from shared.config import Settings
from shared.errors import UpstreamError
from shared.plan import AuditRequest, KnownCluster, known_cluster_from_dict, known_cluster_to_dict
from shared.state import storage_error

if TYPE_CHECKING:
    # azure-storage-queue imports aiohttp (about 0.1 s, for an isinstance check) when it is
    # installed, and kubernetes installs it; :meth:`AuditQueue.from_settings` imports it when a
    # trigger first needs the queue, so the function app's import does not pay for it.
    from azure.storage.queue import QueueClient

log = logging.getLogger("pullwatch.inventory")

INVENTORY = "inventory"
PENDING = "pending"


def _row(cluster_id: str) -> str:
    return hashlib.sha256(cluster_id.lower().rstrip("/").encode()).hexdigest()


def _storage_error(what: str, exc: AzureError) -> UpstreamError:
    return storage_error(what, exc, store="inventory storage")


class InventoryStore:
    def __init__(self, table: TableClient) -> None:
        self.table = table

    def all(self) -> list[KnownCluster]:
        try:
            entities = list(self.table.query_entities(f"PartitionKey eq '{INVENTORY}'"))
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise _storage_error("reading the inventory", exc) from None
        out = []
        for entity in entities:
            try:
                out.append(known_cluster_from_dict(json.loads(str(entity["data"]))))
            except (KeyError, ValueError, TypeError):
                log.warning("inventory entity %s is unreadable; ignored", entity.get("RowKey"))
        return out

    def save(self, cluster: KnownCluster) -> None:
        entity = {
            "PartitionKey": INVENTORY,
            "RowKey": _row(cluster.id),
            "data": json.dumps(known_cluster_to_dict(cluster)),
        }
        try:
            self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        except AzureError as exc:
            raise _storage_error("saving the inventory", exc) from None

    def forget(self, cluster_id: str) -> None:
        try:
            self.table.delete_entity(INVENTORY, _row(cluster_id))
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise _storage_error("forgetting a cluster", exc) from None


class AuditQueue:
    """One message per cluster audit; events within the debounce window coalesce."""

    def __init__(self, queue: QueueClient, table: TableClient) -> None:
        self.queue_client = queue
        self.table = table
        self._ready = False

    @classmethod
    def from_settings(cls, settings: Settings, credential: TokenCredential | None = None) -> AuditQueue:
        from azure.storage.queue import QueueClient

        from shared.state import StateStore

        table = StateStore.from_settings(settings, credential).table
        # every queue call is bounded, like every other network call
        limits: dict[str, Any] = {
            "connection_timeout": settings.http_timeout,
            "read_timeout": settings.http_timeout,
            "retry_total": 3,
        }
        if settings.storage_account:
            queue = QueueClient(
                f"https://{settings.storage_account}.queue.{settings.cloud.storage_suffix}",
                settings.audit_queue,
                credential=credential,
                **limits,
            )
        elif settings.storage_connection:
            queue = QueueClient.from_connection_string(
                settings.storage_connection, settings.audit_queue, **limits
            )
        else:
            raise UpstreamError("queue storage is not configured: set AzureWebJobsStorage")
        return cls(queue, table)

    def close(self) -> None:
        self.queue_client.close()

    def _ensure(self) -> None:
        if self._ready:
            return
        try:
            self.queue_client.create_queue()
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise _storage_error("creating the audit queue", exc) from None
        self._ready = True

    def send(self, request: AuditRequest, delay: float = 0) -> int:
        self._ensure()
        try:
            self.queue_client.send_message(
                request.to_json(), visibility_timeout=int(max(0, round(delay))) or None
            )
        except AzureError as exc:
            raise _storage_error("enqueuing an audit", exc) from None
        return 1

    def schedule(self, request: AuditRequest, debounce: float, *, now: datetime | None = None) -> int:
        """Enqueue ``request`` to run after ``debounce`` s, or merge it into the one already waiting.

        Returns 1 when a message was enqueued, 0 when merged."""
        now = now or datetime.now(UTC)
        row = _row(request.cluster)
        for _ in range(5):
            # Read first: in a burst the mark exists, and most events only merge into it.
            try:
                current = self.table.get_entity(PENDING, row)
            except ResourceNotFoundError:
                current = None
            except AzureError as exc:
                raise _storage_error("reading a pending audit", exc) from None
            if current is None:
                entity = {
                    "PartitionKey": PENDING,
                    "RowKey": row,
                    "request": request.to_json(),
                    "due": now + timedelta(seconds=debounce),
                }
                try:
                    self.table.create_entity(entity)
                except ResourceExistsError:
                    continue
                except AzureError as exc:
                    raise _storage_error("scheduling an audit", exc) from None
                try:
                    return self.send(request, debounce)
                except UpstreamError:
                    # No message carries this mark: drop it, or later events merge into nothing.
                    try:
                        self.table.delete_entity(PENDING, row)
                    except AzureError:
                        log.warning("a pending audit mark could not be removed; it is replaced once stale")
                    raise
            due = current.get("due")
            if (
                isinstance(due, datetime)
                and due.replace(tzinfo=due.tzinfo or UTC) + timedelta(seconds=60) < now
            ):
                # A stale marker (its worker died): replace it and enqueue afresh.
                try:
                    self.table.delete_entity(
                        PENDING,
                        row,
                        etag=current.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                except (ResourceNotFoundError, ResourceModifiedError):
                    pass
                continue
            merged = AuditRequest.from_json(str(current["request"])).merged(request)
            if merged.to_json() == str(current["request"]):
                return 0  # nothing new (a storm past the request's bounds): no write
            current["request"] = merged.to_json()
            try:
                self.table.update_entity(
                    current,
                    mode=UpdateMode.REPLACE,
                    etag=current.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
                return 0
            except (ResourceModifiedError, ResourceNotFoundError):
                continue
            except AzureError as exc:
                raise _storage_error("merging an audit", exc) from None
        return self.send(request, debounce)

    def clear_pending(self, cluster_id: str) -> AuditRequest | None:
        """The worker starts: take the merged request of the window (if any) and clear it."""
        row = _row(cluster_id)
        try:
            current = self.table.get_entity(PENDING, row)
            self.table.delete_entity(PENDING, row)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _storage_error("clearing a pending audit", exc) from None
        try:
            return AuditRequest.from_json(str(current["request"]))
        except Exception:  # an unreadable marker is dropped: the message itself still runs
            return None

    def depth(self) -> int:
        """Messages waiting, visible or not (approximate)."""
        self._ensure()
        props: Any = self.queue_client.get_queue_properties()
        return int(props.approximate_message_count or 0)
