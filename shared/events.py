"""Event Grid deliveries → typed events (both the Event Grid and the CloudEvents 1.0 schema).

A delivery is a JSON array (or one object). Every element is parsed on its own: a malformed one is
returned as a :class:`Rejected` with its id and the reason, and never fails the others. Envelopes
are read by the Azure SDK (``azure.eventgrid.EventGridEvent.from_dict``,
``azure.core.messaging.CloudEvent.from_dict``) after the fields pullwatch relies on are checked to
be strings (the SDK coerces ``5`` to ``"5"``). Azure system events pullwatch does not act on (a
``ResourceWriteFailure``, a storage event…) are :attr:`Delivery.ignored`, quietly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, SystemEventNames

ACR_EVENTS = ("ImagePushed", "ImageDeleted", "ChartPushed", "ChartDeleted")
AKS_EVENTS = (
    "NewKubernetesVersionAvailable",
    "ClusterSupportEnding",
    "ClusterSupportEnded",
    "NodePoolRollingStarted",
    "NodePoolRollingSucceeded",
    "NodePoolRollingFailed",
)
RESOURCE_EVENTS = ("ResourceWriteSuccess", "ResourceDeleteSuccess", "ResourceActionSuccess")
VALIDATION_EVENT: str = SystemEventNames.EventGridSubscriptionValidationEventName.value

#: Event types pullwatch reads (the planner decides, per event, whether it matters).
KNOWN_TYPES = frozenset(
    [getattr(SystemEventNames, f"ContainerRegistry{t}EventName").value for t in ACR_EVENTS]
    + [getattr(SystemEventNames, f"ContainerService{t}EventName").value for t in AKS_EVENTS]
    + [getattr(SystemEventNames, f"{t}EventName").value for t in RESOURCE_EVENTS]
    + [VALIDATION_EVENT]
)
#: Every Azure system event type: those pullwatch does not read are ignored without a warning.
SYSTEM_TYPES = frozenset(name.value for name in SystemEventNames)

MAX_EVENT_ID = 512  # Event Grid ids are GUIDs or short strings; longer ones are rejected
MAX_RESOURCE_TEXT = 4096  # a topic/source or subject: a resource ID (ARM IDs are far shorter)

_SHORT_ACR = {t: f"Microsoft.ContainerRegistry.{t}" for t in ACR_EVENTS}  # 2018-2021 docs' short names


@dataclass(frozen=True)
class AzureEvent:
    id: str
    type: str  # full event type, e.g. Microsoft.ContainerRegistry.ImagePushed
    source: str  # Event Grid `topic` / CloudEvents `source`: a resource ID
    subject: str
    time: str | None
    data: Mapping[str, Any] = field(default_factory=dict)
    schema: str = "eventgrid"  # "eventgrid" | "cloudevents"

    @property
    def short_type(self) -> str:
        return self.type.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Rejected:
    index: int
    id: str | None
    reason: str


@dataclass(frozen=True)
class Ignored:
    """A well-formed Azure system event of a type pullwatch does not act on."""

    id: str
    type: str


class IgnoredType(ValueError):
    """Raised by :func:`parse_event` for an Azure system event type pullwatch does not read."""

    def __init__(self, event_id: str, event_type: str) -> None:
        super().__init__(f"{event_type} is not an event pullwatch acts on")
        self.event_id = event_id
        self.event_type = event_type


@dataclass(frozen=True)
class Delivery:
    events: tuple[AzureEvent, ...]
    rejected: tuple[Rejected, ...]
    validation_code: str | None = None
    ignored: tuple[Ignored, ...] = ()


def parse_delivery(body: Any) -> Delivery:
    """Parse a webhook body (already JSON-decoded): an array of events or one event."""
    items: Sequence[Any]
    if isinstance(body, list):
        items = body
    elif isinstance(body, dict):
        items = [body]
    else:
        return Delivery((), (Rejected(0, None, f"delivery is {type(body).__name__}, not an event array"),))
    events: list[AzureEvent] = []
    rejected: list[Rejected] = []
    ignored: list[Ignored] = []
    validation: str | None = None
    for index, item in enumerate(items):
        try:
            event = parse_event(item)
        except IgnoredType as exc:
            ignored.append(Ignored(exc.event_id, exc.event_type))
            continue
        except ValueError as exc:
            event_id = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else None
            if event_id and len(event_id) > MAX_EVENT_ID:
                event_id = event_id[:64] + "…"  # named in the log line, never stored
            rejected.append(Rejected(index, event_id, str(exc)))
            continue
        if event.type == VALIDATION_EVENT:
            code = event.data.get("validationCode")
            if isinstance(code, str):
                validation = code
            continue
        events.append(event)
    return Delivery(tuple(events), tuple(rejected), validation, tuple(ignored))


def _text(item: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = item.get(name)
    if value is None:
        if required:
            raise ValueError(f"missing field {name!r}")
        return None
    if not isinstance(value, str):
        raise ValueError(f"field {name!r} must be a string, not {type(value).__name__}")
    return value


def parse_event(item: Any) -> AzureEvent:
    """One event in either schema; raises ValueError naming what is wrong (:class:`IgnoredType` for
    an Azure system event pullwatch does not act on)."""
    if not isinstance(item, Mapping):
        raise ValueError(f"event is {type(item).__name__}, not an object")
    cloud = "specversion" in item
    names = ("type", "source", "time") if cloud else ("eventType", "topic", "eventTime")
    event_id = _text(item, "id")
    event_type = _text(item, names[0])
    _text(item, names[1], required=cloud)
    time = _text(item, names[2], required=False)
    _text(item, "subject", required=False)
    assert event_id is not None and event_type is not None
    if not event_id.strip():
        raise ValueError("field 'id' is empty")
    if len(event_id) > MAX_EVENT_ID:
        raise ValueError(f"field 'id' is longer than {MAX_EVENT_ID} characters ({len(event_id)})")
    event_type = _SHORT_ACR.get(event_type, event_type)
    if event_type not in KNOWN_TYPES:
        if event_type in SYSTEM_TYPES:
            raise IgnoredType(event_id, event_type)
        raise ValueError(f"unknown event type {event_type!r}")
    data = item.get("data")
    if data is not None and not isinstance(data, Mapping):
        raise ValueError(f"field 'data' must be an object, not {type(data).__name__}")
    try:
        source, subject = _envelope(item, cloud)
    except Exception:  # the SDK raises ValueError, DeserializationError, IndexError…
        if time is None:
            raise ValueError("the envelope does not parse") from None
        # pullwatch never reads the time: an unreadable one (Microsoft's chart samples print
        # "019-03-12…") does not cost the event, the rest of the envelope must still parse.
        try:
            source, subject = _envelope({k: v for k, v in item.items() if k != names[2]}, cloud)
        except Exception:
            raise ValueError("the envelope does not parse") from None
    for name, value in (("source", source), ("subject", subject)):
        if value and len(value) > MAX_RESOURCE_TEXT:
            raise ValueError(f"field {name!r} is longer than {MAX_RESOURCE_TEXT} characters ({len(value)})")
    return AzureEvent(
        id=event_id,
        type=event_type,
        source=source or "",
        subject=subject or "",
        time=time,
        data=dict(data or {}),
        schema="cloudevents" if cloud else "eventgrid",
    )


def _envelope(item: Mapping[str, Any], cloud: bool) -> tuple[str | None, str | None]:
    """(source, subject) as the Azure SDK reads the envelope."""
    if cloud:
        cloud_event: CloudEvent[Any] = CloudEvent.from_dict(dict(item))
        return cloud_event.source, cloud_event.subject
    grid_event: EventGridEvent = EventGridEvent.from_dict(dict(item))
    return grid_event.topic, grid_event.subject


# --- resource IDs ------------------------------------------------------------------------------

_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)(?:/resourcegroups/(?P<rg>[^/]+))?"
    r"(?:/providers/(?P<ns>[^/]+)/(?P<type>[^/]+)/(?P<name>[^/]+)(?P<rest>/.*)?)?/?$",
    re.I,
)


@dataclass(frozen=True)
class ResourceId:
    subscription: str
    resource_group: str | None
    namespace: str | None
    type: str | None
    name: str | None
    rest: str  # child path after the top-level resource, e.g. /agentPools/np1

    @property
    def top(self) -> str:
        """The ID of the top-level resource (no child path), in canonical casing."""
        out = f"/subscriptions/{self.subscription}"
        if self.resource_group:
            out += f"/resourceGroups/{self.resource_group}"
        if self.namespace:
            out += f"/providers/{self.namespace}/{self.type}/{self.name}"
        return out

    @property
    def kind(self) -> str:
        return f"{self.namespace}/{self.type}".lower() if self.namespace else ""


def parse_resource_id(text: str) -> ResourceId | None:
    match = _ID.match(text.strip())
    if not match:
        return None
    return ResourceId(
        subscription=match["sub"],
        resource_group=match["rg"],
        namespace=match["ns"],
        type=match["type"],
        name=match["name"],
        rest=match["rest"] or "",
    )
