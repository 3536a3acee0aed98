"""Cold start: loading the function app does not load the Kubernetes client (a trigger that reads no
cluster — an Event Grid role change, the nightly timer's fan-out — never pays for it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _modules_after(code: str) -> set[str]:
    child = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(child.stdout.split())


def test_importing_function_app_does_not_import_kubernetes() -> None:
    modules = _modules_after("import function_app")
    assert "function_app" in modules and "shared.app" in modules
    assert not {m for m in modules if m == "kubernetes" or m.startswith("kubernetes.")}
    assert "shared.clients.kube" not in modules


def test_the_kube_seam_is_what_brings_kubernetes_in() -> None:
    """The check above can fail: importing the cluster client does load ``kubernetes``."""
    assert "kubernetes" in _modules_after("import shared.clients.kube")


def test_importing_function_app_does_not_import_the_queue_sdk() -> None:
    # azure-storage-queue loads aiohttp (installed by kubernetes) at import, about 0.1 s; the
    # triggers that enqueue import it when they first build the queue client.
    modules = _modules_after("import function_app")
    assert "azure.storage.queue" not in modules
    assert "aiohttp" not in modules


def test_building_the_audit_queue_is_what_brings_the_queue_sdk_in() -> None:
    """The check above can fail: the queue client's module is imported where the queue is built."""
    code = (
        "from shared import state\n"
        "from shared.config import Settings\n"
        "from shared.inventory import AuditQueue\n"
        "class NoTable:\n"
        "    table = None\n"
        "state.StateStore.from_settings = classmethod(lambda cls, settings, credential=None: NoTable())\n"
        "AuditQueue.from_settings(Settings(storage_connection='UseDevelopmentStorage=true'))\n"
    )
    assert "azure.storage.queue" in _modules_after(code)
