"""An asyncio SMTP client session: persistent, pipelined, RSET after an error, reconnect after a drop.

Only what commsync needs: EHLO, STARTTLS / implicit TLS, AUTH PLAIN or LOGIN, MAIL + RCPT + DATA
(pipelined per RFC 2920 when the server offers it), RSET and QUIT. Doing it by hand keeps the
one thing a library would hide: whether the message body went out before a connection broke.
Before it, the message is safely retried; after it, delivery is uncertain.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl

from commsync.delivery.transport import SENT, Cause, Outcome, OutcomeKind, SmtpConfig

_CRLF = b"\r\n"


class _Refused(Exception):
    def __init__(self, code: int, text: str, stage: str) -> None:
        super().__init__(f"{code} {text}")
        self.code, self.text, self.stage = code, text, stage


def dot_stuff(data: bytes) -> bytes:
    """The DATA payload: lines starting with '.' doubled, then the terminating '.' line."""
    body = data.replace(b"\r\n.", b"\r\n..")
    if body.startswith(b"."):
        body = b"." + body
    if not body.endswith(_CRLF):
        body += _CRLF
    return body + b"." + _CRLF


def _outcome(exc: _Refused) -> Outcome:
    detail = f"{exc.code} {exc.text}".strip() + f" (at {exc.stage})"
    kind = OutcomeKind.PERMANENT if 500 <= exc.code < 600 else OutcomeKind.TRANSIENT
    return Outcome(kind, detail, Cause.REPLY)


class SmtpSession:
    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.extensions: set[str] = set()
        self.auth: set[str] = set()
        # One conversation at a time: a QUIT from `close` never lands inside a transaction.
        self.lock = asyncio.Lock()

    # -- protocol ---------------------------------------------------------------------------

    async def _reply(self) -> tuple[int, str]:
        assert self.reader is not None
        lines = []
        while True:
            line = await self.reader.readline()
            if not line.endswith(b"\n"):
                raise ConnectionError("connection closed by the server")
            if not line[:3].isdigit() or line[3:4] not in (b" ", b"-", b"\r", b"\n"):
                raise ConnectionError(f"malformed reply from the server: {line[:40]!r}")
            lines.append(line[4:].strip().decode("utf-8", "replace"))
            if line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    async def _command(self, command: str, expect: tuple[int, ...], stage: str) -> str:
        assert self.writer is not None
        self.writer.write(command.encode() + _CRLF)
        code, text = await self._reply()
        if code not in expect:
            raise _Refused(code, text, stage)
        return text

    async def _ehlo(self) -> None:
        text = await self._command(f"EHLO {self.config.helo or 'localhost'}", (250,), "EHLO")
        self.extensions = {line.split(" ", 1)[0].upper() for line in text.splitlines()[1:]}
        auth = next((line for line in text.splitlines() if line.upper().startswith("AUTH")), "")
        self.auth = {mech.upper() for mech in auth.split()[1:]}

    async def _login(self, username: str, password: str) -> None:
        if "PLAIN" in self.auth or not self.auth:
            token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
            await self._command(f"AUTH PLAIN {token}", (235,), "AUTH")
            return
        await self._command("AUTH LOGIN", (334,), "AUTH")
        await self._command(base64.b64encode(username.encode()).decode(), (334,), "AUTH")
        await self._command(base64.b64encode(password.encode()).decode(), (235,), "AUTH")

    async def _connect(self) -> None:
        c = self.config
        context = ssl.create_default_context() if c.security != "none" else None
        tls = context if c.security == "tls" else None
        async with asyncio.timeout(c.timeout):
            self.reader, self.writer = await asyncio.open_connection(
                c.host, c.port, ssl=tls, server_hostname=c.host if tls else None
            )
        code, text = await self._reply()
        if code != 220:
            raise _Refused(code, text, "greeting")
        await self._ehlo()
        if c.security == "starttls":
            assert context is not None
            await self._command("STARTTLS", (220,), "STARTTLS")
            assert self.writer is not None
            await self.writer.start_tls(context, server_hostname=c.host)
            await self._ehlo()
        if c.username and c.password:
            await self._login(c.username, c.password)

    async def _drop(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(TimeoutError, OSError, ssl.SSLError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _reset(self) -> None:
        try:
            async with asyncio.timeout(self.config.timeout):
                await self._command("RSET", (250,), "RSET")
        except (TimeoutError, _Refused, OSError, ConnectionError, ssl.SSLError):
            await self._drop()

    async def _envelope(self, sender: str, recipient: str) -> None:
        """MAIL, RCPT and DATA; pipelined in one write when the server allows it."""
        assert self.writer is not None
        steps: tuple[tuple[str, tuple[int, ...], str], ...] = (
            (f"MAIL FROM:<{sender}>", (250,), "MAIL FROM"),
            (f"RCPT TO:<{recipient}>", (250, 251), "RCPT TO"),
            ("DATA", (354,), "DATA"),
        )
        if "PIPELINING" not in self.extensions:
            for command, expect, stage in steps:
                await self._command(command, expect, stage)
            return
        self.writer.write(b"".join(command.encode() + _CRLF for command, _, _ in steps))
        replies = [await self._reply() for _ in steps]
        for (code, text), (_, expect, stage) in zip(replies, steps, strict=True):
            if code not in expect:
                if replies[2][0] == 354:  # DATA accepted although RCPT was refused: end it empty
                    self.writer.write(b"." + _CRLF)
                    await self._reply()
                raise _Refused(code, text, stage)

    # -- the session API --------------------------------------------------------------------

    async def send(self, sender: str, recipient: str, data: bytes) -> Outcome:
        async with self.lock:
            try:
                return await self._send(sender, recipient, data)
            except asyncio.CancelledError:
                self._abandon()  # cut off mid-conversation: this connection is not reused
                raise

    def _abandon(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.transport.abort()

    async def _send(self, sender: str, recipient: str, data: bytes) -> Outcome:
        body_sent = False
        try:
            async with asyncio.timeout(self.config.timeout * 3):  # one deadline for the exchange
                if self.writer is None:
                    await self._connect()
                assert self.writer is not None
                await self._envelope(sender, recipient)
                body_sent = True  # from the first byte of the body on, a failure is uncertain
                self.writer.write(dot_stuff(data))
                await self.writer.drain()
                code, text = await self._reply()
        except _Refused as exc:
            if exc.stage in ("greeting", "EHLO", "STARTTLS", "AUTH"):
                await self._drop()
                detail = f"connection problem: {exc.code} {exc.text} (at {exc.stage})"
                return Outcome(OutcomeKind.TRANSIENT, detail, Cause.CONNECTION)
            await self._reset()
            return _outcome(exc)
        except (
            TimeoutError,
            OSError,
            ConnectionError,
            ssl.SSLError,
            asyncio.IncompleteReadError,
        ) as exc:
            await self._drop()
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if body_sent:
                detail = f"no reply after the message was sent: {reason}"
                return Outcome(OutcomeKind.UNCERTAIN, detail, Cause.NO_REPLY)
            return Outcome(OutcomeKind.TRANSIENT, f"connection problem: {reason}", Cause.CONNECTION)
        if code == 250:
            return SENT
        await self._reset()
        return _outcome(_Refused(code, text, "end of DATA"))

    async def close(self) -> None:
        async with self.lock:  # after the transaction in hand, if any
            if self.writer is not None:
                with contextlib.suppress(
                    TimeoutError, _Refused, OSError, ConnectionError, ssl.SSLError
                ):
                    await asyncio.wait_for(self._command("QUIT", (221,), "QUIT"), 2.0)
                await self._drop()


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
