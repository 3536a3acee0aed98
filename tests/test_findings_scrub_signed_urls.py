"""A signed URL (``sig=``) that kubelet writes into a pod's pull error does not reach the findings
(stored in the state table, answered by POST /api/check, printed by the CLI).

Real case: ACR redirects layer downloads to Azure Blob Storage with a SAS URL; when that download
fails, containerd's error (the pod's waiting message and the kubelet event) quotes the URL, SAS
signature included. The world is built from real parts (sandbox.runner.Sandbox); the failing pods get
the SAS error text through the simulated API server, then the product runs its nightly audit through
the Functions entry points."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from sandbox.runner import Sandbox
from sandbox.world import load

pytestmark = pytest.mark.sandbox

ROOT = Path(__file__).resolve().parent.parent
SIGNATURE = "Zm9vYmFyU0FTc2lnbmF0dXJlMTIzNDU2Nzg5MA%3D"
SAS_URL = (
    "https://contosoacrstore.blob.core.windows.net/docker/blobs/sha256/ab?sv=2021-08-06"
    f"&se=2026-11-26T03%3A00%3A00Z&sr=b&sp=r&sig={SIGNATURE}"
)
ERROR = (
    'failed to pull and unpack image "contosoacr.azurecr.io/shop/web:1.4.2": failed to copy: '
    f'httpReadSeeker: failed open: failed to do request: Get "{SAS_URL}": dial tcp 20.60.1.1:443: i/o timeout'
)


def test_a_sas_signature_in_kubelet_pull_errors_does_not_reach_the_findings() -> None:
    world = load(ROOT / "sandbox" / "worlds" / "role-missing.yaml")
    with Sandbox(world) as box:
        changed = 0
        for cluster in box.clusters.values():
            for pod in cluster.pods():
                status = copy.deepcopy(pod.get("status") or {})
                for container in status.get("containerStatuses") or []:
                    waiting = (container.get("state") or {}).get("waiting")
                    if waiting:
                        waiting.update(reason="ErrImagePull", message=ERROR)
                        changed += 1
                cluster.set_pod_status(pod, status)
                cluster.record_event(
                    pod, reason="Failed", type_="Warning", message=f"Failed to pull image: {ERROR}"
                )
        assert changed, "the world has no failing pod to carry the error"
        box.nightly()
        findings = box.open_findings()
    text = json.dumps(findings)
    assert "PODS_IMAGE_PULL_FAILING" in text  # the pods are still reported …
    assert "blob.core.windows.net" in text or "i/o timeout" in text  # … with what went wrong
    assert SIGNATURE not in text and "sig=Zm9v" not in text, "the SAS signature reached a finding"
