"""Azure operation names pullwatch reasons about, and Azure's action matching (pure). Shared by role
evaluation (``shared/rbac.py``) and conditions (``shared/conditions.py``)."""

from __future__ import annotations

import re
from functools import lru_cache

PULL_ACTION = "Microsoft.ContainerRegistry/registries/pull/read"
CONTENT_READ = "Microsoft.ContainerRegistry/registries/repositories/content/read"
METADATA_READ = "Microsoft.ContainerRegistry/registries/repositories/metadata/read"


@lru_cache(maxsize=4096)
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(p) for p in pattern.split("*")), re.IGNORECASE | re.DOTALL)


def action_matches(pattern: str, action: str) -> bool:
    """Azure's action matching: ``*`` is any run of characters; case does not matter."""
    return _pattern(pattern.strip()).fullmatch(action.strip()) is not None
