"""Use cases shared by the CLI and the HTTP app. They return data and raise CommsyncError."""

from __future__ import annotations

from commsync.api.apply import ApplyRequest, Cancelled, StalePlanError, apply, read_plan
from commsync.api.core import (
    PlanResult,
    Project,
    ValidationReport,
    changed_files,
    load,
    load_settings,
    make_plan,
    open_tree,
    save_plan,
    store_session,
    validate,
)
from commsync.api.data import InitReport, RecordKind, import_records, init_project
from commsync.api.deliver import deliver
from commsync.api.drift import DriftItem, drift, pull
from commsync.api.emails import EmailRow, FileEdit, import_emails, list_emails, reset_emails
from commsync.api.events import EventRejected, fire_event, test_send
from commsync.api.preview import Preview, preview
from commsync.api.preview import read_data as read_preview_data
from commsync.api.status import (
    StatusReport,
    failed_recipients,
    issue_token,
    rotate_key,
    status,
    unlock,
)

__all__ = [
    "ApplyRequest",
    "Cancelled",
    "DriftItem",
    "EmailRow",
    "EventRejected",
    "FileEdit",
    "InitReport",
    "PlanResult",
    "Preview",
    "Project",
    "RecordKind",
    "StalePlanError",
    "StatusReport",
    "ValidationReport",
    "apply",
    "changed_files",
    "deliver",
    "drift",
    "failed_recipients",
    "fire_event",
    "import_emails",
    "import_records",
    "init_project",
    "issue_token",
    "list_emails",
    "load",
    "load_settings",
    "make_plan",
    "open_tree",
    "preview",
    "pull",
    "read_plan",
    "read_preview_data",
    "reset_emails",
    "rotate_key",
    "save_plan",
    "status",
    "store_session",
    "test_send",
    "unlock",
    "validate",
]
