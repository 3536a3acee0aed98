"""What every sandbox ARM and Graph request carries and answers: the accepted token audiences, the
caller, ARM's error envelope and its page size.
"""

from __future__ import annotations

from dataclasses import dataclass

ARM_AUDIENCES = ("https://management.azure.com", "https://management.core.windows.net")
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"  # Microsoft Graph's application ID, an audience too
PAGE_SIZE = 20


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


@dataclass
class Caller:
    object_id: str
    tenant: str
