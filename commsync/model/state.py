"""Desired state (the operator's files) and live state (the store)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from commsync.model.values import BroadcastSpec, JsonValue, SystemEmailFields, digest
from commsync.model.vocab import BroadcastStatus, Imports

# -- desired state (the operator's files) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Origin:
    """Where in the repository an object is defined."""

    path: str
    line: int = 1
    col: int = 1


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """Which revision of the repository the desired state was read from."""

    label: str
    commit: str | None = None
    author: str | None = None


@dataclass(frozen=True, slots=True)
class DesiredBroadcast:
    id: str
    spec: BroadcastSpec
    origin: Origin


@dataclass(frozen=True, slots=True)
class DesiredSystemEmail:
    """A file in emails/. `overrides` holds the keys present (JSON form); `custom` for non-defaults."""

    slug: str
    overrides: Mapping[str, JsonValue]
    origin: Origin
    custom: SystemEmailFields | None = None


@dataclass(frozen=True, slots=True)
class DesiredState:
    broadcasts: tuple[DesiredBroadcast, ...]
    system_emails: tuple[DesiredSystemEmail, ...]
    imports: Imports = Imports.CRITICAL
    prune: bool = False
    source: SourceInfo = field(default_factory=lambda: SourceInfo("working tree"))


# -- live state (the store) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Provenance:
    path: str | None = None
    commit: str | None = None
    author: str | None = None
    applied_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SendProgress:
    """Ledger counts of one email send, by delivery status."""

    total: int = 0
    queued: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    uncertain: int = 0
    cancelled: int = 0
    by_workers: bool = False  # the delivery workers send it (else the apply that started it)


@dataclass(frozen=True, slots=True)
class LiveBroadcast:
    id: str
    spec: BroadcastSpec
    status: BroadcastStatus
    applied_hash: str
    managed: bool = True
    provenance: Provenance = field(default_factory=Provenance)
    progress: SendProgress | None = None

    @property
    def drift(self) -> bool:
        return self.spec.spec_hash() != self.applied_hash

    def fingerprint(self) -> str:
        return digest(
            {"spec": self.spec.canonical(), "status": self.status, "managed": self.managed}
        )


@dataclass(frozen=True, slots=True)
class EmailStats:
    sent: int = 0
    failed: int = 0
    last_sent_at: datetime | None = None
    cancelled: int = 0  # queued messages taken out (`queue cancel`, or the email changed)


@dataclass(frozen=True, slots=True)
class LiveSystemEmail:
    """An installed system email. `overrides` names the customised fields; `base_*` the default.

    `provenance.path` is the file that manages it; None when `imports:` installed it.
    """

    slug: str
    fields: SystemEmailFields
    applied_hash: str
    overrides: tuple[str, ...] = ()
    base_version: int | None = None
    base_fields: SystemEmailFields | None = None
    stats: EmailStats = field(default_factory=EmailStats)
    provenance: Provenance = field(default_factory=Provenance)

    @property
    def managed_path(self) -> str | None:
        """The file that manages it, as of the last apply (None: installed by `imports:`)."""
        return self.provenance.path

    @property
    def drift(self) -> bool:
        return self.fields.fields_hash() != self.applied_hash

    def fingerprint(self) -> str:
        return digest(
            {
                "fields": self.fields.to_json(),
                "overrides": list(self.overrides),
                "base_version": self.base_version,
                "managed_path": self.managed_path,
            }
        )

    def with_fields(self, fields: SystemEmailFields) -> LiveSystemEmail:
        return replace(self, fields=fields)


@dataclass(frozen=True, slots=True)
class LiveSnapshot:
    store_id: str
    broadcasts: Mapping[str, LiveBroadcast]
    system_emails: Mapping[str, LiveSystemEmail]
    worker_seen_at: datetime | None = None  # the last sign of life of any delivery worker
