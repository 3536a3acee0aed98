"""A stand-in for the Azure Functions host: it invokes ``function_app.py``'s functions the way the host
does, through their registered entry points (``get_user_function()``) and the ``azure.functions``
types, with Azurite's queue between them.

- Event Grid: a delivery (array) is split into one invocation per event, each decoded from its own
  JSON by the worker's converter (``EventGridEventInConverter.decode``), whose result depends on the
  installed ``azure-functions`` exactly as in Azure; the host answers the subscription-validation
  handshake itself (both schemas: for an ``AzureFunction`` endpoint Event Grid validates a
  CloudEvents subscription with the same validation event);
- timer: one invocation with a ``TimerRequest``;
- queue: every queue-triggered function (its queue name resolved from the app settings) receives
  messages from the real queue; success deletes the message, an exception leaves it to reappear
  after a visibility timeout, and after ``maxDequeueCount`` (host.json) it moves to
  ``<queue>-poison`` — exactly the host's contract;
- HTTP: an ``HttpRequest`` in, the ``HttpResponse`` out.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import os
import re
import socket
import time
import typing
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.meta import Datum
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient

log = logging.getLogger("sandbox.host")
ROOT = Path(__file__).resolve().parent.parent


def isolated_app_settings(connection_string: str, subscription: str, **overrides: str) -> dict[str, str]:
    """App settings for a function_app run by this host outside Azure (tests, bench): its own queue
    and table on the Azurite of ``connection_string``, and every Azure endpoint on a closed local
    port, so nothing it does can leave this machine."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = int(s.getsockname()[1])
    suffix = uuid.uuid4().hex[:10]
    return {
        "AzureWebJobsStorage": connection_string,
        "PULLWATCH_AUDIT_QUEUE": f"audit-{suffix}",
        "PULLWATCH_STATE_TABLE": f"state{suffix}",
        "PULLWATCH_DEBOUNCE_SECONDS": "30",
        "PULLWATCH_SUBSCRIPTIONS": subscription,
        "IDENTITY_ENDPOINT": f"http://127.0.0.1:{dead}/msi/token",
        "IDENTITY_HEADER": "test",
        "PULLWATCH_ARM_ENDPOINT": f"https://127.0.0.1:{dead}",
        "PULLWATCH_GRAPH_ENDPOINT": f"https://127.0.0.1:{dead}",
        "PULLWATCH_HTTP_TIMEOUT_SECONDS": "2",
        "PULLWATCH_RETRIES": "0",
        **overrides,
    }


def load_function_app(path: Path = ROOT / "function_app.py") -> ModuleType:
    spec = importlib.util.spec_from_file_location("function_app", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FunctionsHost:
    def __init__(
        self,
        connection_string: str,
        queue_name: str,
        *,
        module: ModuleType | None = None,
        visibility_retry: float = 0.5,
    ) -> None:
        self.module = module or load_function_app()
        host_json = json.loads((ROOT / "host.json").read_text())
        self.max_dequeue = int(host_json["extensions"]["queues"]["maxDequeueCount"])
        self.visibility_retry = visibility_retry
        app: func.FunctionApp = self.module.app
        registered = app.get_functions()  # once: the library refuses to build the list twice
        self.functions: dict[str, Callable[..., Any]] = {
            str(f.get_function_name()): f.get_user_function() for f in registered
        }
        # Every queue-triggered function, its queue resolved from the app settings (%NAME%) as the
        # host does, and the host's own <queue>-poison beside it.
        self.queue_functions: dict[str, tuple[QueueClient, QueueClient]] = {}
        for f in registered:
            trigger = f.get_trigger()
            if trigger.get_binding_name() == "queueTrigger":
                name = _app_setting_expression(str(trigger.queue_name))
                self.queue_functions[str(f.get_function_name())] = (
                    QueueClient.from_connection_string(connection_string, name),
                    QueueClient.from_connection_string(connection_string, f"{name}-poison"),
                )
        self.queue, self.poison = self.queue_functions["audit_worker"]
        if self.queue.queue_name != queue_name:
            raise ValueError(f"audit_worker listens on {self.queue.queue_name!r}, not {queue_name!r}")
        for clients in self.queue_functions.values():
            for q in clients:
                try:
                    q.create_queue()
                except ResourceExistsError:
                    pass
        _check_event_grid_annotation(self.functions["event_handler"])
        self.invocations: dict[str, int] = {name: 0 for name in self.functions}
        self.failures: list[str] = []

    def close(self) -> None:
        for clients in self.queue_functions.values():
            for q in clients:
                q.close()

    def _call(self, name: str, *args: Any) -> Any:
        self.invocations[name] += 1
        return self.functions[name](*args)

    # --- triggers ---------------------------------------------------------------------------

    def deliver_event_grid(self, body: Any) -> dict[str, int]:
        """POST of an Event Grid delivery to the host's webhook: one invocation per event."""
        items = body if isinstance(body, list) else [body]
        out = {"invoked": 0, "validation": 0, "failed": 0}
        for item in items:
            if not isinstance(item, dict):
                out["failed"] += 1
                continue
            kind = item.get("eventType") or item.get("type")
            if kind == "Microsoft.EventGrid.SubscriptionValidationEvent":
                out["validation"] += 1  # the host answers the handshake; no function runs
                continue
            try:
                event = decode_event_grid_item(item)
                self._call("event_handler", event)
                out["invoked"] += 1
            except Exception as exc:  # the host logs a failed invocation; Event Grid would retry
                log.error("event_handler failed for event %s: %s", item.get("id"), exc)
                self.failures.append(f"event_handler: {type(exc).__name__}: {exc}")
                out["failed"] += 1
        return out

    def fire_timer(self) -> None:
        self._call("nightly_audit", TimerRequest(past_due=False))

    def http(self, method: str, route: str, body: bytes) -> tuple[int, Any]:
        request = func.HttpRequest(
            method, f"http://localhost/api/{route}", body=body, headers={"Content-Type": "application/json"}
        )
        response = self._call("on_demand_check", request)
        text = response.get_body().decode()
        return response.status_code, json.loads(text) if text else None

    def drain(self, timeout: float = 120.0, idle: float = 0.3) -> int:
        """Run the queue-triggered functions until their queues are empty (invisible messages included)."""
        processed = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = False
            for name, (queue, poison) in self.queue_functions.items():
                batch = list(
                    queue.receive_messages(messages_per_page=16, visibility_timeout=300, max_messages=16)
                )
                for message in batch:
                    processed += 1
                    self._run_queue_message(name, queue, poison, message)
                busy = busy or bool(batch) or bool(queue.get_queue_properties().approximate_message_count)
            if not busy:
                return processed
            time.sleep(idle)
        raise TimeoutError(f"the queues did not drain within {timeout:.0f} s")

    def _run_queue_message(self, name: str, queue: QueueClient, poison: QueueClient, message: Any) -> None:
        """Success deletes the message; a failure leaves it to reappear, and the failure that reaches
        ``maxDequeueCount`` moves it to ``<queue>-poison`` (the host's contract)."""
        body = message.content if isinstance(message.content, str) else str(message.content)
        qm = QueueMessage(  # type: ignore[no-untyped-call]
            id=message.id,
            body=body.encode(),
            dequeue_count=message.dequeue_count,
            pop_receipt=message.pop_receipt,
        )
        try:
            self._call(name, qm)
        except Exception as exc:
            self.failures.append(f"{name}: {type(exc).__name__}: {exc}")
            if (message.dequeue_count or 1) >= self.max_dequeue:
                log.error(
                    "message %s moved to %s after %d attempts",
                    message.id,
                    poison.queue_name,
                    message.dequeue_count,
                )
                poison.send_message(body)
                queue.delete_message(message)
            else:
                queue.update_message(message, visibility_timeout=int(self.visibility_retry) or 1)
            return
        queue.delete_message(message)


def _app_setting_expression(expression: str) -> str:
    """``%NAME%`` parts of a binding expression replaced by the app setting's value."""
    return re.sub(r"%([^%]+)%", lambda m: os.environ[m[1]], expression)


def decode_event_grid_item(item: Any) -> Any:
    """One event of a delivery as the Python worker hands it to the function: its JSON through
    ``azure.functions``' own Event Grid converter (a decode error fails the invocation, as in Azure)."""
    return EventGridEventInConverter.decode(Datum(type="json", value=json.dumps(item)), trigger_metadata={})


def _check_event_grid_annotation(function: Callable[..., Any]) -> None:
    """The worker refuses to index a function whose Event Grid parameter the converter cannot fill."""
    hints = typing.get_type_hints(function)
    for name in inspect.signature(function).parameters:
        pytype = hints.get(name)
        if pytype is not None and not EventGridEventInConverter.check_input_type_annotation(pytype):
            raise TypeError(f"type of {name} binding does not match its Python annotation {pytype!r}")
