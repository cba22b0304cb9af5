"""Transports: where messages go. A Transport opens Sessions; a Session sends one message at a time.

Sessions never raise for a delivery problem; they return an Outcome the ledger records:

- `sent`: the server accepted the message (or the file is in the Maildir);
- `transient`: a 4xx reply or a connection problem *before* the message body went out — retried;
- `permanent`: a 5xx reply — recorded as failed, never retried;
- `uncertain`: the body went out but no reply came back — it may or may not have been delivered,
  so it is not re-sent unless the operator asks (`apply --resend-uncertain`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import parse_qs, urlsplit

from commsync.errors import ConfigError

OutcomeKind = Literal["sent", "transient", "permanent", "uncertain"]


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    detail: str = ""


SENT = Outcome("sent", "")


class Session(Protocol):
    """One connection (or one Maildir writer), driven by one coroutine at a time."""

    async def send(self, sender: str, recipient: str, data: bytes) -> Outcome: ...

    async def close(self) -> None: ...


class Transport(Protocol):
    """Opens sessions; `describe()` names it without credentials."""

    def open(self) -> Session: ...

    def describe(self) -> str: ...


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    security: Literal["none", "starttls", "tls"]
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    helo: str | None = None


def parse_transport(url: str, root: Path, env: Mapping[str, str]) -> Transport:
    """`maildir:PATH` (relative to the project root) or `smtp://`, `smtp+starttls://`, `smtps://`."""
    from commsync.delivery.maildir import MaildirTransport
    from commsync.delivery.smtp import SmtpTransport

    if url.startswith("maildir:"):
        path = Path(url[len("maildir:") :])
        return MaildirTransport(path if path.is_absolute() else root / path)
    parts = urlsplit(url)
    security = {"smtp": "none", "smtp+starttls": "starttls", "smtps": "tls"}.get(parts.scheme)
    if security is None or not parts.hostname:
        raise ConfigError(
            f"unsupported mail transport {url!r}: use maildir:PATH, smtp://, smtp+starttls:// or smtps://"
        )
    if parts.password:
        raise ConfigError(
            "the mail transport URL holds a password; use COMMSYNC_SMTP_USERNAME / COMMSYNC_SMTP_PASSWORD"
        )
    query = parse_qs(parts.query)
    default_port = {"none": 25, "starttls": 587, "tls": 465}[security]
    config = SmtpConfig(
        host=parts.hostname,
        port=parts.port or default_port,
        security=security,  # type: ignore[arg-type]
        username=env.get("COMMSYNC_SMTP_USERNAME") or None,
        password=env.get("COMMSYNC_SMTP_PASSWORD") or None,
        timeout=float(query.get("timeout", ["30"])[0]),
        helo=query.get("helo", [None])[0],
    )
    return SmtpTransport(config)


def hostname() -> str:
    return os.uname().nodename or "localhost"
