"""Where the operator's repository is, and what overrides its settings (cheap to import)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Project:
    """The repository root, a `--store` override, and the environment (COMMSYNC_*)."""

    root: Path
    store_url: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
