"""The Functions host stand-in hands each function what the Python worker would, and the world's
``eventSchema`` decides how a change's events are delivered."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import azure.functions as func
import pytest

from sandbox import events as eg
from sandbox.host import _check_event_grid_annotation, decode_event_grid_item
from sandbox.world import WorldError, parse

WIRE = Path(__file__).resolve().parent / "data" / "wire" / "eventgrid"


def test_a_cloudevent_is_decoded_by_the_workers_converter_keeping_type_source_and_time() -> None:
    item = json.loads((WIRE / "acr.cloudevents-schema.docs.json").read_text())[0]
    event = decode_event_grid_item(item)
    assert isinstance(event, func.CloudEvent)
    assert (event.type, event.source, event.specversion) == (item["type"], item["source"], "1.0")
    assert event.time is not None and event.get_json() == item["data"]


def test_an_event_grid_schema_event_is_decoded_as_an_event_grid_event() -> None:
    item = json.loads((WIRE / "acr.eventgrid-schema.current-docs.json").read_text())[0]
    event = decode_event_grid_item(item)
    assert isinstance(event, func.EventGridEvent)
    assert (event.event_type, event.topic) == (item["eventType"], item["topic"])


def test_an_event_time_the_converter_cannot_read_fails_the_invocation_as_in_azure() -> None:
    with pytest.raises(ValueError):
        decode_event_grid_item({"id": "x", "eventType": "t", "eventTime": "019-03-12T22:42:08Z"})


def test_the_host_refuses_a_function_whose_event_annotation_the_converter_cannot_fill() -> None:
    def takes_text(event: str) -> None:
        del event

    with pytest.raises(TypeError, match="does not match"):
        _check_event_grid_annotation(takes_text)


def test_changes_are_delivered_as_cloudevents_for_a_cloudevents_subscription() -> None:
    world = SimpleNamespace(tenant="t")
    sub = "22222222-2222-2222-2222-222222222222"
    grid = eg.resource_event(
        world, sub, f"/subscriptions/{sub}/resourceGroups/rg", "Microsoft.Resources/x/write"
    )  # type: ignore[arg-type]
    [cloud] = eg.as_delivered([grid], "CloudEventSchemaV1_0")
    assert cloud == {
        "id": grid["id"],
        "source": grid["topic"],
        "subject": grid["subject"],
        "type": grid["eventType"],
        "time": grid["eventTime"],
        "data": grid["data"],
        "specversion": "1.0",
    }
    assert eg.as_delivered([grid], "EventGridSchema") == [grid]


def test_an_unknown_event_schema_is_an_error_naming_the_key_and_line() -> None:
    with pytest.raises(WorldError, match=r"w.yaml:2: eventSchema: must be one of .*CloudEventSchemaV1_0"):
        parse("name: w\neventSchema: CloudEvents\n", source="w.yaml")
