"""Event storms through the Functions host stand-in (one ``event_handler`` invocation per event, as
the host splits a delivery) on a real Azurite: bounded state, oversized input rejected per event."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
from estate import CLUSTER, KNOWN_CLUSTER, SUB, role_assignment_deleted

from sandbox.azurite import Azurite
from sandbox.host import FunctionsHost, isolated_app_settings
from shared.app import App

pytestmark = [pytest.mark.sandbox, pytest.mark.reliability]

STORM = 600  # × 512-character ids: far over one Table property; `make bench` runs 5,000 GUID ids


@pytest.fixture
def host(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[FunctionsHost]:
    # the storm takes longer than a short debounce window
    env = isolated_app_settings(azurite.connection_string, SUB, PULLWATCH_DEBOUNCE_SECONDS="3600")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    functions = FunctionsHost(azurite.connection_string, env["PULLWATCH_AUDIT_QUEUE"])
    functions.module.process_app.get().inventory.save(KNOWN_CLUSTER)
    try:
        yield functions
    finally:
        functions.close()
        functions.module.process_app.close()


def app_of(host: FunctionsHost) -> App:
    """The App the loaded function_app module built from the app settings (its composition root)."""
    app: App = host.module.process_app.get()
    return app


def storm_id() -> str:
    """The longest event id accepted (512 characters)."""
    return (str(uuid.uuid4()) + "-" * 512)[:512]


def test_an_event_storm_and_its_redelivery_fail_no_invocation(host: FunctionsHost) -> None:
    delivery = [role_assignment_deleted(storm_id()) for _ in range(STORM)]
    first = host.deliver_event_grid(delivery)
    assert (first["invoked"], first["failed"]) == (STORM, 0), host.failures[:3]
    assert app_of(host).queue.depth() == 1, "one debounced audit for the one affected cluster"

    again = host.deliver_event_grid(delivery)  # Event Grid retries the whole delivery
    assert (again["invoked"], again["failed"]) == (STORM, 0), host.failures[:3]
    assert app_of(host).queue.depth() == 1, "a redelivery starts no new audit"
    pending = app_of(host).queue.clear_pending(CLUSTER)
    assert pending is not None and pending.event_ids and len(pending.to_json()) < 32_000


def test_an_oversized_event_id_is_rejected_alone_with_a_reason(
    host: FunctionsHost, caplog: pytest.LogCaptureFixture
) -> None:
    huge, fine = role_assignment_deleted("x" * 100_000), role_assignment_deleted(str(uuid.uuid4()))
    with caplog.at_level(logging.WARNING, "pullwatch"):
        for _ in range(2):  # and on every redelivery
            out = host.deliver_event_grid([huge, fine])
            assert out["failed"] == 0, host.failures[:3]
    assert app_of(host).queue.depth() == 1
    pending = app_of(host).queue.clear_pending(CLUSTER)
    assert pending is not None and pending.event_ids == (fine["id"],)
    lines = [r.getMessage() for r in caplog.records if "longer than 512" in r.getMessage()]
    assert len(lines) == 2 and all("'id'" in line and len(line) < 300 for line in lines)


def test_event_ids_and_sent_records_older_than_their_memory_are_purged(azurite: Azurite) -> None:
    """The de-duplication memory stays bounded: ids past Event Grid's retry window (and sent
    records past their keep time) are deleted by the nightly purge; recent ones stay."""
    from datetime import UTC, datetime, timedelta

    from shared.state import StateStore

    store = StateStore(azurite.connection_string, table_name=f"t{uuid.uuid4().hex[:20]}")
    now = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
    for i in range(30):
        store.seen_event(f"old-{i}", timedelta(days=2), now=now - timedelta(days=3))
    store.seen_event("recent", timedelta(days=2), now=now - timedelta(hours=1))
    old = store.enqueue("slack:X", {"text": "old"}, now=now - timedelta(days=40))
    store.record_sent(old, status=200, now=now - timedelta(days=40))
    new = store.enqueue("slack:X", {"text": "new"}, now=now)
    store.record_sent(new, status=200, now=now)

    purged = store.purge(events_before=now - timedelta(days=2), sent_before=now - timedelta(days=30))
    assert purged == 31
    assert store.seen_event("recent", timedelta(days=2), now=now) is True  # still remembered
    assert [m["RowKey"] for m in store.sent_messages()] == [new.message_id]
    assert len(list(store.table.query_entities("PartitionKey eq 'event'"))) == 1
