"""Use cases shared by the CLI and the HTTP app. They return data and raise CommsyncError."""

from __future__ import annotations

from commsync.api.core import (
    PlanResult,
    Project,
    ValidationReport,
    load,
    load_settings,
    make_plan,
    open_tree,
    save_plan,
    store_session,
    validate,
)
from commsync.api.data import InitReport, RecordKind, import_records, init_project
from commsync.api.emails import EmailRow, list_emails

__all__ = [
    "EmailRow",
    "InitReport",
    "PlanResult",
    "Project",
    "RecordKind",
    "ValidationReport",
    "import_records",
    "init_project",
    "list_emails",
    "load",
    "load_settings",
    "make_plan",
    "open_tree",
    "save_plan",
    "store_session",
    "validate",
]
