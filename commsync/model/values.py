"""Broadcast and system-email values, targets, audiences and their canonical forms."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]
JsonObject = dict[str, JsonValue]

BroadcastKind = Literal["notice", "email"]
NOTICE_TYPES = ("info", "success", "warning", "error")
FORMATS = ("markdown", "html", "text")
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


_DELAY = re.compile(r"(?=\d)(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?")


def parse_delay(value: JsonValue) -> int | None:
    """Minutes of a delay written as 0, 90m, 2h, 3d or 1d12h; None when it is not one."""
    if value == 0 or value == "0":
        return 0
    match = _DELAY.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    days, hours, minutes = (int(g) if g else 0 for g in match.groups())
    return days * 1440 + hours * 60 + minutes


def format_delay(minutes: int) -> str:
    """The canonical spelling of a delay: 0, 1h30m, 3d, 1d12h."""
    if minutes == 0:
        return "0"
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (mins, "m")) if n)


def canonical_delay(value: JsonValue) -> str | None:
    minutes = parse_delay(value)
    return None if minutes is None else format_delay(minutes)


def _utc(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


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


@dataclass(frozen=True, slots=True)
class BroadcastSpec:
    """The managed fields of a notice or an email broadcast."""

    kind: BroadcastKind
    subject: str
    content: str
    targets: Targets
    format: str = "markdown"
    message_type: str = "info"
    dismissible: bool = True
    starts_at: datetime | None = None
    expires_at: datetime | None = None
    send_at: datetime | None = None
    allow_resend: bool = False

    def fields(self) -> JsonObject:
        """Kind-relevant fields as shown to operators (dates keep their offset)."""
        out: JsonObject = {
            "subject": self.subject,
            "content": self.content,
            "format": self.format,
            "targets": self.targets.to_json(),
        }
        if self.kind == "notice":
            out["message_type"] = self.message_type
            out["dismissible"] = self.dismissible
            out["starts_at"] = format_datetime(self.starts_at)
            out["expires_at"] = format_datetime(self.expires_at)
        else:
            out["send_at"] = format_datetime(self.send_at)
            out["allow_resend"] = self.allow_resend
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
    def from_json(cls, data: Mapping[str, JsonValue]) -> BroadcastSpec:
        def when(name: str) -> datetime | None:
            raw = data.get(name)
            return datetime.fromisoformat(raw) if isinstance(raw, str) else None

        targets = data["targets"]
        assert isinstance(targets, dict)
        kind: BroadcastKind = "email" if data["kind"] == "email" else "notice"
        return cls(
            kind=kind,
            subject=str(data["subject"]),
            content=str(data["content"]),
            targets=Targets.from_json(targets),
            format=str(data.get("format", "markdown")),
            message_type=str(data.get("message_type", "info")),
            dismissible=bool(data.get("dismissible", True)),
            starts_at=when("starts_at"),
            expires_at=when("expires_at"),
            send_at=when("send_at"),
            allow_resend=bool(data.get("allow_resend", False)),
        )


@dataclass(frozen=True, slots=True)
class Sender:
    email: str
    name: str | None = None

    def to_json(self) -> JsonObject:
        return {"name": self.name, "email": self.email}


@dataclass(frozen=True, slots=True)
class SystemEmailFields:
    """The effective settings of one system email."""

    event: str
    target: str
    subject: str
    content: str
    format: str = "markdown"
    style: str = "html"
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
        sender = data.get("sender")
        return cls(
            event=str(data["event"]),
            target=str(data["target"]),
            subject=str(data["subject"]),
            content=str(data["content"]),
            format=str(data.get("format", "markdown")),
            style=str(data.get("style", "html")),
            active=bool(data.get("active", True)),
            send_copy_to_admin=bool(data.get("send_copy_to_admin", False)),
            delay=str(data.get("delay", "0")),
            sender=(
                Sender(email=str(sender["email"]), name=_opt_str(sender.get("name")))
                if isinstance(sender, dict)
                else None
            ),
        )


def _opt_str(value: JsonValue) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Audience:
    """How many distinct customers a target selection reaches, and per target."""

    total: int
    all: bool = False
    customers: int = 0
    products: tuple[tuple[str, int], ...] = ()

    def to_json(self) -> JsonObject:
        return {
            "total": self.total,
            "all": self.all,
            "customers": self.customers,
            "products": dict(self.products),
        }


@dataclass(frozen=True, slots=True)
class Theme:
    """Look of the built-in HTML email layout (`mail.theme`)."""

    logo_url: str | None = None
    brand_color: str = "#2563eb"
    footer: str | None = None
    company_address: str | None = None
