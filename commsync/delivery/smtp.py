"""SMTP sessions over smtplib: persistent, RSET after an error, reconnect after a drop.

DATA is sent by hand so the session knows whether the body went out before a connection broke:
before it, the message can safely be retried; after it, delivery is uncertain.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl

from commsync.delivery.transport import SENT, Outcome, SmtpConfig

_CRLF = b"\r\n"


def _dot_stuff(data: bytes) -> bytes:
    body = data.replace(b"\r\n.", b"\r\n..")
    if body.startswith(b"."):
        body = b"." + body
    if not body.endswith(_CRLF):
        body += _CRLF
    return body + b"." + _CRLF


def _reply_outcome(code: int, reply: bytes | str, stage: str) -> Outcome:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    detail = f"{code} {text}".strip() + f" (at {stage})"
    return Outcome("permanent" if 500 <= code < 600 else "transient", detail)


class SmtpSession:
    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self.smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if c.security == "tls":
            smtp = smtplib.SMTP_SSL(
                c.host, c.port, local_hostname=c.helo, timeout=c.timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(c.host, c.port, local_hostname=c.helo, timeout=c.timeout)
        smtp.ehlo()
        if c.security == "starttls":
            smtp.starttls(context=context)
            smtp.ehlo()
        if c.username and c.password:
            smtp.login(c.username, c.password)
        return smtp

    def _drop(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.close()
            finally:
                self.smtp = None

    def _reset(self) -> None:
        if self.smtp is None:
            return
        try:
            self.smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def send(self, sender: str, recipient: str, data: bytes) -> Outcome:
        body_sent = False
        try:
            if self.smtp is None:
                self.smtp = self._connect()
            smtp = self.smtp
            code, reply = smtp.mail(sender)
            if code != 250:
                self._reset()
                return _reply_outcome(code, reply, "MAIL FROM")
            code, reply = smtp.rcpt(recipient)
            if code not in (250, 251):
                self._reset()
                return _reply_outcome(code, reply, "RCPT TO")
            smtp.putcmd("data")
            code, reply = smtp.getreply()
            if code != 354:
                self._reset()
                return _reply_outcome(code, reply, "DATA")
            smtp.send(_dot_stuff(data))
            body_sent = True
            code, reply = smtp.getreply()
        except smtplib.SMTPAuthenticationError as exc:
            self._drop()
            return Outcome(
                "transient", f"authentication failed: {exc.smtp_code} {exc.smtp_error!r}"
            )
        except (TimeoutError, smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            self._drop()
            if body_sent:
                return Outcome("uncertain", f"no reply after the message was sent: {exc}")
            return Outcome("transient", f"connection problem: {exc}")
        if code == 250:
            return SENT
        self._reset()
        return _reply_outcome(code, reply, "end of DATA")

    def close(self) -> None:
        if self.smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self.smtp.quit()
            self._drop()


class SmtpTransport:
    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def open(self) -> SmtpSession:
        return SmtpSession(self.config)

    def describe(self) -> str:
        c = self.config
        scheme = {"none": "smtp", "starttls": "smtp+starttls", "tls": "smtps"}[c.security]
        user = f" as {c.username}" if c.username else ""
        return f"{scheme}://{c.host}:{c.port}{user}"
