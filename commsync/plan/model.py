"""A Plan is data: frozen, typed values. Their JSON form is in `codec.py` (the plan-file boundary).

Each action kind carries its own payload: a notice or an email broadcast the spec the file asks
for, a system email what it is to become (`EmailInstall`), a resumed send how much is left.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from commsync.model import (
    Audience,
    BroadcastSpec,
    JsonValue,
    Provenance,
    SourceInfo,
    SystemEmailFields,
)

FORMAT_VERSION = 1
ABSENT = "absent"


class ObjectKind(StrEnum):
    """What an address names: `notice.<id>`, `email.<id>`, `system_email.<slug>`."""

    NOTICE = "notice"
    EMAIL = "email"
    SYSTEM_EMAIL = "system_email"


class Verb(StrEnum):
    """What an action does. The first thirteen change something; the rest only inform."""

    CREATE = "create"
    UPDATE = "update"
    RETRACT = "retract"
    SEND = "send"
    RESUME = "resume"
    IMPORT = "import"
    RESET = "reset"
    UPGRADE = "upgrade"
    DELETE = "delete"
    SCHEDULED = "scheduled"  # an email broadcast recorded to be sent by the workers at send_at
    RESCHEDULE = "reschedule"  # a scheduled one's send_at changed
    UNSCHEDULE = "unschedule"  # a scheduled one's file removed before it went out
    MISSED = "missed"  # a scheduled one later than its max_lateness: recorded missed, never sent
    EXPIRED = "expired"
    PENDING = "pending"


CHANGE_VERBS = frozenset(
    {
        Verb.CREATE,
        Verb.UPDATE,
        Verb.RETRACT,
        Verb.SEND,
        Verb.RESUME,
        Verb.IMPORT,
        Verb.RESET,
        Verb.UPGRADE,
        Verb.DELETE,
        Verb.SCHEDULED,
        Verb.RESCHEDULE,
        Verb.UNSCHEDULE,
        Verb.MISSED,
    }
)


class WarningCode(StrEnum):
    EMPTY_AUDIENCE = "empty_audience"
    EDITED_AFTER_SEND = "edited_after_send"
    REMOVED_AFTER_SEND = "removed_after_send"
    NEWER_DEFAULT = "newer_default"
    MISSED = "missed"  # a scheduled email broadcast that was never sent
    CANCELLED = "cancelled"  # an email broadcast stopped by `queue cancel --broadcast`
    NO_WORKER = "no_worker"  # scheduled sends wait, and no delivery worker was seen lately


@dataclass(frozen=True, slots=True)
class FieldChange:
    field: str
    before: JsonValue
    after: JsonValue


@dataclass(frozen=True, slots=True)
class EmailInstall:
    """What an installed system email is to become: its fields and where they came from."""

    fields: SystemEmailFields
    overrides: tuple[str, ...]
    base_version: int | None
    base_fields: SystemEmailFields | None
    managed_path: str | None


@dataclass(frozen=True, slots=True)
class Remaining:
    """An interrupted send: recipients in all, still queued, and uncertain."""

    total: int
    remaining: int
    uncertain: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _Action:
    """What every action has: where, what, why, and the live object it was planned against."""

    kind: ClassVar[ObjectKind]
    name: str
    action: Verb
    reason: str
    changes: tuple[FieldChange, ...] = ()
    drift: bool = False
    fingerprint: str = ABSENT  # digest of the live object before the action
    path: str | None = None
    last_applied: Provenance | None = None  # where the live object was last applied from
    sample_subject: str | None = None  # the subject rendered for sample values (no personal data)

    @property
    def address(self) -> str:
        return f"{self.kind}.{self.name}"

    @property
    def is_change(self) -> bool:
        return self.action in CHANGE_VERBS


@dataclass(frozen=True, slots=True, kw_only=True)
class NoticeAction(_Action):
    """create, update, retract, expired, pending. `spec`: the file's notice (None for retract)."""

    kind: ClassVar[ObjectKind] = ObjectKind.NOTICE
    spec: BroadcastSpec | None = None
    audience: Audience | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailAction(_Action):
    """send, scheduled, update, reschedule (with `spec`), resume (with `remaining`),
    unschedule, missed."""

    kind: ClassVar[ObjectKind] = ObjectKind.EMAIL
    spec: BroadcastSpec | None = None
    audience: Audience | None = None
    remaining: Remaining | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemEmailAction(_Action):
    """import, create, update, reset, upgrade (with `install`), delete."""

    kind: ClassVar[ObjectKind] = ObjectKind.SYSTEM_EMAIL
    install: EmailInstall | None = None


Action = NoticeAction | EmailAction | SystemEmailAction


def audience_of(action: Action) -> Audience | None:
    return None if isinstance(action, SystemEmailAction) else action.audience


@dataclass(frozen=True, slots=True)
class ThreeWay:
    """A field of a customised system email whose default changed: old default, new default, live."""

    field: str
    old_default: JsonValue
    new_default: JsonValue
    live: JsonValue


@dataclass(frozen=True, slots=True)
class PlanWarning:
    kind: ObjectKind
    name: str
    code: WarningCode
    message: str
    path: str | None = None
    details: tuple[ThreeWay, ...] = ()

    @property
    def address(self) -> str:
        return f"{self.kind}.{self.name}"


@dataclass(frozen=True, slots=True)
class Plan:
    plan_id: str
    created_at: datetime
    store_id: str
    source: SourceInfo
    actions: tuple[Action, ...]
    warnings: tuple[PlanWarning, ...] = ()
    available_imports: tuple[str, ...] = ()
    format_version: int = FORMAT_VERSION

    @property
    def changes(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.is_change)

    @property
    def has_changes(self) -> bool:
        return any(a.is_change for a in self.actions)

    def summary(self) -> dict[str, int]:
        counts = Counter(str(a.action) for a in self.actions)
        return dict(sorted(counts.items()))

    def recipients(self) -> int:
        """Emails the plan would send: new sends' audiences plus what resumes have left."""
        total = 0
        for a in self.actions:
            if not isinstance(a, EmailAction):
                continue
            if a.action == Verb.SEND and a.audience is not None:
                total += a.audience.total
            elif a.action == Verb.RESUME and a.remaining is not None:
                total += a.remaining.remaining
        return total
