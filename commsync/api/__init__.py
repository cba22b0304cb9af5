"""The service layer: every use case of commsync, shared by the command line and the HTTP API.

`Service` (in `service.py`) is opened once per process. This package's top stays cheap to
import: `Project` is plain data, and the rest is imported when first asked for, so that the
command line starts without loading SQLAlchemy, Jinja2 or the web framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from commsync.api.project import Project

if TYPE_CHECKING:
    from commsync.api.service import Service

__all__ = ["Project", "Service"]


def __getattr__(name: str) -> Any:
    if name == "Service":
        from commsync.api.service import Service

        return Service
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
