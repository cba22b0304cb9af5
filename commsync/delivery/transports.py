"""The transport a `mail.transport` URL names: `maildir:PATH` or an SMTP URL."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from commsync.delivery.maildir import MaildirTransport
from commsync.delivery.smtp import SmtpTransport
from commsync.delivery.transport import Outcome, SmtpConfig, Transport
from commsync.errors import ConfigError

_SECURITY: dict[str, Literal["none", "starttls", "tls"]] = {
    "smtp": "none",
    "smtp+starttls": "starttls",
    "smtps": "tls",
}
_PORTS = {"none": 25, "starttls": 587, "tls": 465}
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def parse_transport(url: str, root: Path, env: Mapping[str, str]) -> Transport:
    """`maildir:PATH` (relative to the project root) or `smtp://`, `smtp+starttls://`, `smtps://`.

    Credentials come only from COMMSYNC_SMTP_USERNAME / COMMSYNC_SMTP_PASSWORD in `env`.
    """
    if url.startswith("maildir:"):
        path = Path(url[len("maildir:") :])
        return MaildirTransport(path if path.is_absolute() else root / path)
    parts = urlsplit(url)
    security = _SECURITY.get(parts.scheme)
    if security is None or not parts.hostname:
        raise ConfigError(
            f"unsupported mail transport {url!r}: use maildir:PATH, smtp://, smtp+starttls:// or smtps://"
        )
    if parts.password:
        raise ConfigError(
            "the mail transport URL holds a password; use COMMSYNC_SMTP_USERNAME / COMMSYNC_SMTP_PASSWORD"
        )
    query = parse_qs(parts.query)
    username = env.get("COMMSYNC_SMTP_USERNAME") or None
    password = env.get("COMMSYNC_SMTP_PASSWORD") or None
    insecure = query.get("insecure_auth", ["false"])[0].lower() == "true"
    plain = security == "none" and parts.hostname not in _LOOPBACK
    if username and password and plain and not insecure:
        raise ConfigError(
            f"refusing to send the SMTP credentials unencrypted to {parts.hostname}: use "
            "smtp+starttls:// or smtps://, or add ?insecure_auth=true to the URL if you must"
        )
    try:
        timeout = float(query.get("timeout", ["30"])[0])
        port = parts.port or _PORTS[security]
    except ValueError as exc:
        raise ConfigError(f"invalid mail transport {url!r}: {exc}") from exc
    config = SmtpConfig(
        host=parts.hostname,
        port=port,
        security=security,
        username=username,
        password=password,
        timeout=timeout,
        helo=query.get("helo", [None])[0],
    )
    return SmtpTransport(config)


def send_one(transport: Transport, envelope_from: str, recipient: str, data: bytes) -> Outcome:
    """Send one message now on a session of its own (`commsync test-send`)."""

    async def send() -> Outcome:
        session = transport.open()
        try:
            return await session.send(envelope_from, recipient, data)
        finally:
            await session.close()

    return asyncio.run(send())
