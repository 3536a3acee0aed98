"""The one pull-credential reader: a workload's pull-secret credentials read from the cluster when
they are needed (``--read-secrets`` / ``PULLWATCH_READ_SECRETS``) and kept no longer than the audit
that uses them. Used by the collect step for registry checks as the workload and for the pull-secret
trials."""

from __future__ import annotations

from typing import Any

from shared.checks.secrets import entry_matches
from shared.clients.registry import RegistryCredential
from shared.reference import ImageRef
from shared.snapshot_builder import parse_docker_config, secret_content
from shared.workloads import Snapshot


class SecretReader:
    """Reads pull-secret credentials at check time (read-secrets on); nothing is kept beyond the
    registry check that needs it: the one pull-credential reader (registry checks as the workload,
    and the pull-secret trials)."""

    def __init__(self, kube: Any) -> None:
        self.kube = kube
        self._auths: dict[tuple[str, str], dict[str, tuple[str | None, str | None]] | None] = {}

    def _entries(self, namespace: str, name: str) -> dict[str, tuple[str | None, str | None]] | None:
        key = (namespace, name)
        if key not in self._auths:
            obj = self.kube.read_secret(namespace, name)
            entries = None
            if obj is not None:
                stype, content, error = secret_content(obj)
                if content is not None and error is None:
                    try:
                        entries = parse_docker_config(stype, content)
                    except ValueError:
                        entries = None
            self._auths[key] = entries
        return self._auths[key]

    def read(self, namespace: str, name: str, auth_key: str) -> tuple[str, str] | None:
        entry = (self._entries(namespace, name) or {}).get(auth_key)
        if entry is None or not entry[0] or not entry[1]:
            return None
        return entry[0], entry[1]

    def credential_for(
        self, snapshot: Snapshot, namespace: str, workload: str, ref: ImageRef
    ) -> RegistryCredential | None:
        """The first of the workload's pull secrets whose auths key serves the image (kubelet's order)."""
        facts = snapshot.workload(namespace, workload)
        if facts is None:
            return None
        names, _ = snapshot.effective_pull_secrets(facts)
        lookup = f"{ref.registry}/{ref.repository}"
        for name in names:
            for key in self._entries(namespace, name) or {}:
                if entry_matches(key, lookup):
                    found = self.read(namespace, name, key)
                    if found:
                        return RegistryCredential(
                            host=ref.registry,
                            username=found[0],
                            password=found[1],
                            label=f"secret:{namespace}/{name}",
                        )
        return None
