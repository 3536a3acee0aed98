"""An Event Grid delivery that fails part-way (the audit queue is down) is not lost.

Event Grid redelivers a delivery its handler failed. pullwatch records each event id (to skip
duplicates) and marks a pending audit per cluster (to debounce); both are undone when the audit
could not be enqueued, so the redelivery is neither skipped as a duplicate nor merged into an audit
that was never sent. Real Azurite for tables and queues; the broken queue is a real QueueClient
pointed at a closed local port."""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.storage.queue import QueueClient
from estate import CLUSTER, KNOWN_CLUSTER, SUB, role_assignment_deleted

from sandbox.azurite import Azurite
from shared.app import App
from shared.config import Settings
from shared.errors import UpstreamError
from shared.inventory import AuditQueue
from shared.plan import AuditRequest
from shared.state import StateStore

pytestmark = pytest.mark.sandbox


class _NoCredential:
    """pullwatch's identity is not needed to plan a role-assignment event for a known cluster."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise AssertionError("no token may be asked for while planning a known cluster's event")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dead_queue(name: str) -> QueueClient:
    port = _closed_port()
    conn = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        f"QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    return QueueClient.from_connection_string(conn, name, retry_total=0, connection_timeout=2)


def test_a_delivery_that_could_not_be_enqueued_is_handled_when_event_grid_redelivers_it(
    azurite: Azurite,
) -> None:
    suffix = uuid.uuid4().hex[:10]
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "PULLWATCH_SUBSCRIPTIONS": SUB,
            "PULLWATCH_DEBOUNCE_SECONDS": "30",
        }
    )
    store = StateStore(azurite.connection_string, table_name=f"redelivery{suffix}")
    working = QueueClient.from_connection_string(azurite.connection_string, f"redelivery-{suffix}")
    broken = AuditQueue(_dead_queue(f"redelivery-{suffix}"), store.table)
    app = App(settings, _NoCredential(), store=store, queue=broken)  # type: ignore[arg-type]
    try:
        app.inventory.save(KNOWN_CLUSTER)
        event = role_assignment_deleted("ev-redelivered-1")
        with pytest.raises(UpstreamError):  # the queue is down: the function fails, Event Grid retries
            app.handle_event_grid([event])

        # The queue is back; Event Grid redelivers the same event.
        app = App(settings, _NoCredential(), store=store, queue=AuditQueue(working, store.table))  # type: ignore[arg-type]
        answer = app.handle_event_grid([event])
        assert answer["audits"] == 1, f"the redelivered event was dropped: {answer}"
        assert working.get_queue_properties().approximate_message_count == 1
        pending = app.queue.clear_pending(CLUSTER)
        assert pending is not None and "ev-redelivered-1" in pending.event_ids
    finally:
        working.close()
        store.close()


def test_a_pending_mark_is_not_left_behind_when_its_message_could_not_be_sent(azurite: Azurite) -> None:
    suffix = uuid.uuid4().hex[:10]
    store = StateStore(azurite.connection_string, table_name=f"redelivery{suffix}")
    working = QueueClient.from_connection_string(azurite.connection_string, f"redelivery-{suffix}")
    try:
        request = AuditRequest.from_json(json.dumps({"cluster": CLUSTER, "reasons": ["role removed"]}))
        with pytest.raises(UpstreamError):
            AuditQueue(_dead_queue(f"redelivery-{suffix}"), store.table).schedule(request, 30)
        # The next try (queue back) must enqueue, not merge into a mark whose message never left.
        assert AuditQueue(working, store.table).schedule(request, 30) == 1
        assert working.get_queue_properties().approximate_message_count == 1
    finally:
        working.close()
        store.close()
