"""Cold start row: ``import function_app`` against importing the SDKs it cannot do without.

A Functions instance imports ``function_app`` before its first invocation, so the import is on
every cold start's path. The reference is what any Python function app that reads AKS clusters
pays: ``import azure.functions, azure.identity, kubernetes`` alone. Each is timed in a fresh
interpreter (``python -c``, median of :data:`RUNS`, alternating, minus a bare interpreter's start),
and the child reports whether ``kubernetes`` was imported: a trigger that needs no Kubernetes
must not load it (``shared/clients/kube.py`` is imported where a cluster is read).
Goal: the app's import at most :data:`GOAL_FACTOR` x the reference (1.3x when this row was added).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.__main__ import Row

ROOT = Path(__file__).resolve().parent.parent
RUNS = 5
GOAL_FACTOR = 1.3
APP = "import function_app, sys; print('kubernetes' in sys.modules)"
REFERENCE = "import azure.functions, azure.identity, kubernetes"
# What a trigger that enqueues audits (Event Grid, the nightly timer, the queue worker) adds on its
# first invocation: the queue SDK, which brings aiohttp (kubernetes installs it).
WITH_QUEUE = "import function_app, azure.storage.queue"


def _timed(code: str) -> tuple[float, str]:
    start = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    return time.perf_counter() - start, child.stdout.strip()


def cold_start() -> Row:
    bare, app, reference, with_queue = [], [], [], []
    loads_kubernetes = ""
    for _ in range(RUNS):
        bare.append(_timed("pass")[0])
        seconds, loads_kubernetes = _timed(APP)
        app.append(seconds)
        reference.append(_timed(REFERENCE)[0])
        with_queue.append(_timed(WITH_QUEUE)[0])
    start = statistics.median(bare)
    ours = statistics.median(app) - start
    base = statistics.median(reference) - start
    queue = statistics.median(with_queue) - start
    return Row(
        "cold start: import function_app",
        ours,
        base,
        "import azure.functions, azure.identity, kubernetes (fresh interpreter each)",
        notes=[
            f"median of {RUNS} fresh interpreters each, minus a bare interpreter's {start:.2f}s; "
            f"function_app / reference = {ours / base:.2f}x",
            f"importing function_app imports kubernetes: {loads_kubernetes}",
            f"a trigger that enqueues loads azure-storage-queue (and aiohttp) on first use: "
            f"function_app + the queue SDK {queue:.2f}s ({queue / base:.2f}x the reference)",
            *(
                [
                    "PYTHONDONTWRITEBYTECODE is set: the app's own modules are compiled from source in "
                    "each interpreter (as from a read-only deployment package); the SDKs have pip's bytecode"
                ]
                if os.environ.get("PYTHONDONTWRITEBYTECODE")
                else []
            ),
        ],
        goals=[
            (f"<={GOAL_FACTOR:g}x reference", ours <= GOAL_FACTOR * base),
            ("no kubernetes", loads_kubernetes == "False"),
        ],
    )
