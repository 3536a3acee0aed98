"""pullwatch as an Azure Functions app (Python v2 programming model).

Every function is thin: it parses its input, calls one method of :class:`shared.app.App`, returns.
No Azure SDK call and no business rule lives here (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import json
import logging

import azure.functions as func

from shared.app import App, ProcessApp
from shared.notify import install_log_redaction

if not hasattr(func, "CloudEvent"):  # the worker loads the app's own azure-functions first
    raise ImportError(
        "azure-functions is too old: its Event Grid converter drops CloudEvents' type and source "
        "(install the version pinned in requirements.txt)"
    )

app = func.FunctionApp()
process_app = ProcessApp()  # this process's App: the composition root's one piece of process state
install_log_redaction()
log = logging.getLogger("pullwatch.functions")


def _app() -> App:
    return process_app.get()


@app.function_name("event_handler")
@app.event_grid_trigger(arg_name="event")
def event_handler(event: func.EventGridEvent) -> None:
    """Event Grid (ACR, AKS, Resource Manager), either schema: plan the re-checks and enqueue them.

    The worker's converter (``azure.functions.eventgrid.EventGridEventInConverter``) hands a
    ``func.CloudEvent`` for a CloudEvents 1.0 event and a ``func.EventGridEvent`` otherwise; the
    worker accepts one class as the annotation, not a union, so the annotation names one of them.
    """
    _app().handle_event_grid(trigger_event_to_dict(event))


@app.function_name("nightly_audit")
@app.timer_trigger(arg_name="timer", schedule="%PULLWATCH_AUDIT_SCHEDULE%", run_on_startup=False)
def nightly_audit(timer: func.TimerRequest) -> None:
    """Discover every watched cluster and fan out one queue message per cluster."""
    if timer.past_due:
        log.info("nightly audit is running late")
    _app().fan_out_nightly()


@app.function_name("audit_worker")
@app.queue_trigger(arg_name="msg", queue_name="%PULLWATCH_AUDIT_QUEUE%", connection="AzureWebJobsStorage")
def audit_worker(msg: func.QueueMessage) -> None:
    """Audit one cluster, store its findings, notify on changes (a failure raises: the host retries)."""
    _app().run_audit_message(msg.get_body(), dequeue_count=msg.dequeue_count or 1, message_id=msg.id)


@app.function_name("audit_poison")
@app.queue_trigger(
    arg_name="msg", queue_name="%PULLWATCH_AUDIT_QUEUE%-poison", connection="AzureWebJobsStorage"
)
def audit_poison(msg: func.QueueMessage) -> None:
    """A message that failed maxDequeueCount times (host.json): its cluster becomes CHECK_INCOMPLETE."""
    _app().record_poison_message(msg.get_body(), message_id=msg.id)


@app.function_name("on_demand_check")
@app.route(route="check", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def on_demand_check(req: func.HttpRequest) -> func.HttpResponse:
    """``POST /api/check`` with ``{"clusters": [resource IDs], "probe": bool, "read_secrets": bool}``."""
    status, body = _app().check_http(req.get_body())
    return func.HttpResponse(json.dumps(body, indent=2), status_code=status, mimetype="application/json")


def trigger_event_to_dict(event: func.EventGridEvent | func.CloudEvent) -> dict[str, object]:
    """The trigger's event back in its wire schema (Event Grid or CloudEvents 1.0), as the parser reads it."""
    try:
        data = event.get_json()
    except ValueError:
        data = None
    if isinstance(event, func.CloudEvent):
        return {
            **event.extension_attrs,
            "specversion": event.specversion,
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "subject": event.subject,
            "time": event.time.isoformat() if event.time else None,
            "data": data,
        }
    return {
        "id": event.id,
        "topic": event.topic,
        "subject": event.subject,
        "eventType": event.event_type,
        "eventTime": event.event_time.isoformat() if event.event_time else None,
        "data": data,
        "dataVersion": event.data_version,
    }
