"""Broadcast and system-email values, targets, audiences and their canonical forms.

Field defaults live in the dataclasses alone: the JSON readers and the repository's parsers pass
only the keys that are present, so a default is written once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from commsync.model.durations import canonical as canonical_duration
from commsync.model.durations import parse_minutes
from commsync.model.vocab import BroadcastKind, EmailTarget, Format, MessageType, Style

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]
JsonObject = dict[str, JsonValue]

BROADCAST_CONTEXT = (
    "customer_id",
    "customer_name",
    "customer_first_name",
    "customer_last_name",
    "customer_username",
    "customer_user_email",
    "network_name",
    "network_url",
)
EMAIL_BROADCAST_CONTEXT = (*BROADCAST_CONTEXT, "unsubscribe_url")
NETWORK_CONTEXT = ("network_name", "network_url")
SAMPLE_NETWORK = {"network_name": "Acme Sites", "network_url": "https://acme.example"}
SAMPLE_CUSTOMER = {
    "customer_id": "1042",
    "customer_name": "Ada Lovelace",
    "customer_first_name": "Ada",
    "customer_last_name": "Lovelace",
    "customer_username": "ada",
    "customer_user_email": "ada@example.com",
    **SAMPLE_NETWORK,
    "unsubscribe_url": "https://acme.example/unsubscribe/sample-token",
}
SYSTEM_EMAIL_FIELDS = (
    "event",
    "target",
    "subject",
    "content",
    "format",
    "style",
    "active",
    "send_copy_to_admin",
    "delay",
    "sender",
)


def digest(value: JsonValue) -> str:
    """A stable sha256 of a JSON value (sorted keys, compact)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_datetime(text: str) -> datetime | None:
    """An ISO 8601 date-time with an offset, or None when it is not one."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def format_datetime(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _utc(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def field_defaults(cls: type) -> dict[str, Any]:
    """The default of every field of a dataclass that has one (the one place defaults live)."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def _present(
    data: Mapping[str, Any], convert: Mapping[str, Callable[[Any], Any]]
) -> dict[str, Any]:
    """Converted values of the optional keys `data` holds; absent keys keep their defaults."""
    return {name: to(data[name]) for name, to in convert.items() if name in data}


def _when(raw: JsonValue) -> datetime | None:
    return datetime.fromisoformat(raw) if isinstance(raw, str) else None


@dataclass(frozen=True, slots=True)
class Targets:
    """Who a broadcast selects. `customers` are store customer ids, resolved from refs."""

    all: bool = False
    products: tuple[str, ...] = ()
    customers: tuple[str, ...] = ()

    def to_json(self) -> JsonObject:
        return {"all": self.all, "products": list(self.products), "customers": list(self.customers)}

    @classmethod
    def from_json(cls, data: Mapping[str, JsonValue]) -> Targets:
        products = data.get("products") or []
        customers = data.get("customers") or []
        assert isinstance(products, list) and isinstance(customers, list)
        return cls(
            all=bool(data.get("all", False)),
            products=tuple(sorted({str(p) for p in products})),
            customers=tuple(sorted({str(c) for c in customers})),
        )


DEFAULT_MAX_LATENESS_MINUTES = 24 * 60  # a scheduled send starts up to a day late, not later


@dataclass(frozen=True, slots=True)
class BroadcastSpec:
    """The managed fields of a notice or an email broadcast."""

    kind: BroadcastKind
    subject: str
    content: str
    targets: Targets
    format: Format = Format.MARKDOWN
    message_type: MessageType = MessageType.INFO
    dismissible: bool = True
    starts_at: datetime | None = None
    expires_at: datetime | None = None
    send_at: datetime | None = None
    allow_resend: bool = False
    max_lateness: str | None = None  # a duration; None: DEFAULT_MAX_LATENESS

    @property
    def lateness(self) -> timedelta:
        """How late a scheduled send may still start; later, it is missed."""
        minutes = parse_minutes(self.max_lateness) if self.max_lateness else None
        return timedelta(minutes=DEFAULT_MAX_LATENESS_MINUTES if minutes is None else minutes)

    def fields(self) -> JsonObject:
        """Kind-relevant fields as shown to operators (dates keep their offset)."""
        out: JsonObject = {
            "subject": self.subject,
            "content": self.content,
            "format": self.format,
            "targets": self.targets.to_json(),
        }
        if self.kind == BroadcastKind.NOTICE:
            out["message_type"] = self.message_type
            out["dismissible"] = self.dismissible
            out["starts_at"] = format_datetime(self.starts_at)
            out["expires_at"] = format_datetime(self.expires_at)
        else:
            out["send_at"] = format_datetime(self.send_at)
            out["allow_resend"] = self.allow_resend
            if self.max_lateness is not None:  # absent from older specs: their hash is kept
                out["max_lateness"] = self.max_lateness
        return out

    def canonical(self) -> JsonObject:
        """Fields for comparison and hashing: dates as UTC instants."""
        out = self.fields()
        for name in ("starts_at", "expires_at", "send_at"):
            if name in out:
                out[name] = _utc(getattr(self, name))
        out["kind"] = self.kind
        return out

    def spec_hash(self) -> str:
        return digest(self.canonical())

    def content_signature(self) -> str:
        """What makes two email broadcasts "the same send" for the rename guard."""
        return digest(
            {"subject": self.subject, "content": self.content, "targets": self.targets.to_json()}
        )

    def to_json(self) -> JsonObject:
        out = self.fields()
        out["kind"] = self.kind
        return out

    @classmethod
    def from_fields(
        cls, kind: BroadcastKind, targets: Targets, data: Mapping[str, Any]
    ) -> BroadcastSpec:
        """A spec of `kind` from its fields as written (a file's keys or the JSON form)."""
        return cls(
            kind=kind,
            subject=str(data["subject"]),
            content=str(data["content"]),
            targets=targets,
            **_present(data, _SPEC_OPTIONAL),
        )

    @classmethod
    def from_json(cls, data: Mapping[str, JsonValue]) -> BroadcastSpec:
        targets = data["targets"]
        assert isinstance(targets, dict)
        return cls.from_fields(BroadcastKind(str(data["kind"])), Targets.from_json(targets), data)


_SPEC_OPTIONAL: dict[str, Callable[[Any], Any]] = {
    "format": Format,
    "message_type": MessageType,
    "dismissible": bool,
    "starts_at": _when,
    "expires_at": _when,
    "send_at": _when,
    "allow_resend": bool,
    "max_lateness": lambda v: canonical_duration(v) or str(v),
}


@dataclass(frozen=True, slots=True)
class Sender:
    email: str
    name: str | None = None

    def to_json(self) -> JsonObject:
        return {"name": self.name, "email": self.email}

    @classmethod
    def from_json(cls, data: JsonValue) -> Sender | None:
        if not isinstance(data, dict):
            return None
        name = data.get("name")
        return cls(email=str(data["email"]), name=None if name is None else str(name))


@dataclass(frozen=True, slots=True)
class SystemEmailFields:
    """The effective settings of one system email."""

    event: str
    target: EmailTarget
    subject: str
    content: str
    format: Format = Format.MARKDOWN
    style: Style = Style.HTML
    active: bool = True
    send_copy_to_admin: bool = False
    delay: str = "0"
    sender: Sender | None = None

    def to_json(self) -> JsonObject:
        return {
            "event": self.event,
            "target": self.target,
            "subject": self.subject,
            "content": self.content,
            "format": self.format,
            "style": self.style,
            "active": self.active,
            "send_copy_to_admin": self.send_copy_to_admin,
            "delay": self.delay,
            "sender": None if self.sender is None else self.sender.to_json(),
        }

    def fields_hash(self) -> str:
        return digest(self.to_json())

    def with_values(self, values: Mapping[str, JsonValue]) -> SystemEmailFields:
        """A copy with the given fields (in their JSON form) replaced."""
        merged = self.to_json()
        merged.update(values)
        return SystemEmailFields.from_json(merged)

    @classmethod
    def from_json(cls, data: Mapping[str, JsonValue]) -> SystemEmailFields:
        return cls(
            event=str(data["event"]),
            target=EmailTarget(str(data["target"])),
            subject=str(data["subject"]),
            content=str(data["content"]),
            **_present(data, _EMAIL_OPTIONAL),
        )


_EMAIL_OPTIONAL: dict[str, Callable[[Any], Any]] = {
    "format": Format,
    "style": Style,
    "active": bool,
    "send_copy_to_admin": bool,
    "delay": str,
    "sender": Sender.from_json,
}


@dataclass(frozen=True, slots=True)
class Audience:
    """How many distinct customers a target selection reaches, and per target."""

    total: int
    all: bool = False
    customers: int = 0
    products: tuple[tuple[str, int], ...] = ()
    listed_in_products: int = 0  # listed customers the products already count
    suppressed: int = 0  # of `total`, customers whose address is suppressed now (never sent to)

    def to_json(self) -> JsonObject:
        return {
            "total": self.total,
            "all": self.all,
            "customers": self.customers,
            "products": dict(self.products),
            "listed_in_products": self.listed_in_products,
            "suppressed": self.suppressed,
        }


@dataclass(frozen=True, slots=True)
class Theme:
    """Look of the built-in HTML email layout (`mail.theme`)."""

    logo_url: str | None = None
    brand_color: str = "#2563eb"
    footer: str | None = None
    company_address: str | None = None
