"""The project's own errors. Seams raise these; the CLI and triggers turn them into clear messages."""

from __future__ import annotations


class PullwatchError(Exception):
    """Base of every error pullwatch raises on purpose. Its message is safe to show: no secrets."""


class InputError(PullwatchError):
    """Bad input from a user or a caller (file, body, argument): exit 2 / HTTP 400."""


class UpstreamError(PullwatchError):
    """An outside system (ARM, Kubernetes, a registry, a webhook, storage) failed or refused."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
