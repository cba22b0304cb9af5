"""An asyncio SMTP client session: persistent, pipelined, RSET after an error, reconnect after a drop.

Only what commsync needs: EHLO, STARTTLS / implicit TLS, AUTH PLAIN or LOGIN, MAIL + RCPT + DATA
(pipelined per RFC 2920 when the server offers it — and then sent ahead with the previous
message's body), RSET and QUIT. Doing it by hand keeps the
one thing a library would hide: whether the message body went out before a connection broke.
Before it, the message is safely retried; after it, delivery is uncertain.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl

from commsync.delivery.replies import Replies
from commsync.delivery.transport import SENT, Cause, Outcome, OutcomeKind, SmtpConfig

_CRLF = b"\r\n"


class _Refused(Exception):
    def __init__(self, code: int, text: str, stage: str) -> None:
        super().__init__(f"{code} {text}")
        self.code, self.text, self.stage = code, text, stage


def dot_stuff(data: bytes, then: bytes = b"") -> bytes:
    """The DATA payload: lines starting with '.' doubled, then the terminating '.' line (and
    `then`, what follows it in the same write) — copied once."""
    body = data.replace(b"\r\n.", b"\r\n..") if b"\r\n." in data else data
    head = b"." if body.startswith(b".") else b""
    end = b".\r\n" if body.endswith(_CRLF) else b"\r\n.\r\n"
    return b"".join((head, body, end, then))


def _outcome(exc: _Refused) -> Outcome:
    detail = f"{exc.code} {exc.text}".strip() + f" (at {exc.stage})"
    kind = OutcomeKind.PERMANENT if 500 <= exc.code < 600 else OutcomeKind.TRANSIENT
    return Outcome(kind, detail, Cause.REPLY)


class SmtpSession:
    """One SMTP connection. A message goes out in two steps — `begin` (the envelope) and
    `finish` (the body) — so that the engine can commit the row's `sending` mark between them,
    and so that the next message's envelope can travel in the same write as this message's
    body (RFC 2920 allows the message content first in a group): one round trip a message."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self.conn: Replies | None = None
        self.extensions: set[str] = set()
        self.auth: set[str] = set()
        self.limit = config.timeout * 3  # one deadline for each message's exchange
        self.written: tuple[str, str] | None = None  # an envelope sent ahead, replies unread
        self.in_data = False  # the server waits for a body (354 received)

    # -- protocol ---------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        assert self.conn is not None and self.conn.transport is not None
        if self.conn.gone is not None:
            raise self.conn.gone
        self.conn.transport.write(data)

    async def _reply(self) -> tuple[int, str]:
        assert self.conn is not None
        return await self.conn.reply()

    async def _command(self, command: str, expect: tuple[int, ...], stage: str) -> str:
        self._write(command.encode() + _CRLF)
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
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(c.timeout):
            _, self.conn = await loop.create_connection(
                Replies, c.host, c.port, ssl=tls, server_hostname=c.host if tls else None
            )
        code, text = await self._reply()
        if code != 220:
            raise _Refused(code, text, "greeting")
        await self._ehlo()
        if c.security == "starttls":
            assert context is not None
            await self._command("STARTTLS", (220,), "STARTTLS")
            conn = self.conn
            assert conn.transport is not None
            secure = await loop.start_tls(conn.transport, conn, context, server_hostname=c.host)
            if secure is None:
                raise ConnectionError("connection closed by the server during STARTTLS")
            assert isinstance(secure, asyncio.Transport)
            conn.transport = secure
            await self._ehlo()
        if c.username and c.password:
            await self._login(c.username, c.password)

    async def _drop(self) -> None:
        conn, self.conn = self.conn, None
        self.written, self.in_data = None, False
        if conn is not None and conn.transport is not None:
            conn.transport.close()
            with contextlib.suppress(TimeoutError, OSError, ssl.SSLError):
                await asyncio.wait_for(conn.closed, 1.0)

    async def _reset(self) -> None:
        try:
            async with asyncio.timeout(self.config.timeout):
                await self._command("RSET", (250,), "RSET")
        except (TimeoutError, _Refused, OSError, ConnectionError, ssl.SSLError):
            await self._drop()

    async def _envelope(self, sender: str, recipient: str, written: bool) -> None:
        """MAIL, RCPT and DATA: pipelined in one write when the server allows it (already
        written, with the previous body, when `written`), else one command at a time."""
        if "PIPELINING" not in self.extensions:
            for command, expect, stage in _steps(sender, recipient):
                await self._command(command, expect, stage)
            return
        if not written:
            self._write(_envelope_bytes(sender, recipient))
        assert self.conn is not None
        reply = self.conn.reply  # the hot path: no frame between this and the protocol
        replies: list[tuple[int, str]] = []
        try:
            for _ in range(3):
                replies.append(await reply())
        except ConnectionError:
            if replies and replies[-1][0] == 421:  # it said it was closing, and closed
                self._refused(replies, sender, recipient)
            raise
        if replies[0][0] == 250 and replies[1][0] in (250, 251) and replies[2][0] == 354:
            return
        if replies[2][0] == 354:  # DATA accepted although RCPT was refused: end it empty
            self._write(b"." + _CRLF)
            await self._reply()
        self._refused(replies, sender, recipient)

    def _refused(self, replies: list[tuple[int, str]], sender: str, recipient: str) -> None:
        """Raise the first of the envelope's replies that refuses its command."""
        for (code, text), (_, expect, stage) in zip(
            replies, _steps(sender, recipient), strict=False
        ):
            if code not in expect:
                raise _Refused(code, text, stage)

    # -- the session API --------------------------------------------------------------------

    async def begin(self, sender: str, recipient: str) -> Outcome | None:
        """Open a message: None once the server waits for its body, else why not (a refusal,
        or a connection problem: nothing of the message went out). A 421 to the envelope — the
        server closing this connection: a cap on messages per connection, a restart — is tried
        once more at once, on a new connection."""
        outcome = await self._begin(sender, recipient)
        if outcome is not None and outcome.detail.startswith("421 "):
            await self._drop()
            outcome = await self._begin(sender, recipient)
        return outcome

    async def _begin(self, sender: str, recipient: str) -> Outcome | None:
        ahead, self.written = self.written, None
        if ahead is not None and ahead != (sender, recipient):
            self.abandon()  # an envelope sent ahead for a message that did not follow
        try:
            if self.conn is None:
                deadline = asyncio.get_running_loop().time() + self.limit
                async with asyncio.timeout_at(deadline):
                    await self._connect()
                assert self.conn is not None
                self.conn.watch(min(1.0, self.limit / 10))
                self.conn.deadline = deadline
                ahead = None
            elif self.conn.deadline is None:
                self.conn.deadline = asyncio.get_running_loop().time() + self.limit
            await self._envelope(sender, recipient, written=ahead is not None)
        except _Refused as exc:
            if exc.stage in ("greeting", "EHLO", "STARTTLS", "AUTH"):
                await self._drop()
                detail = f"connection problem: {exc.code} {exc.text} (at {exc.stage})"
                return Outcome(OutcomeKind.TRANSIENT, detail, Cause.CONNECTION)
            if exc.code == 421:
                await self._drop()  # it closes the connection: no RSET
            else:
                await self._reset()
                self._idle()
            return _outcome(exc)
        except (TimeoutError, OSError, ConnectionError, ssl.SSLError) as exc:
            await self._drop()
            return _lost(exc, "connection problem", OutcomeKind.TRANSIENT, Cause.CONNECTION)
        except asyncio.CancelledError:
            self.abandon()  # cut off mid-conversation: this connection is not reused
            raise
        self.in_data = True
        return None

    async def finish(self, data: bytes, then: tuple[str, str] | None = None) -> Outcome:
        """Send the body of the message `begin` opened, and with `then` (sender, recipient) the
        next message's envelope in the same write; the outcome of this message."""
        assert self.in_data and self.conn is not None
        conn, self.in_data = self.conn, False
        ahead = b""
        if then is not None and "PIPELINING" in self.extensions:
            ahead, self.written = _envelope_bytes(*then), then
        payload = dot_stuff(data, ahead)
        try:
            self._write(payload)
        except (OSError, ConnectionError) as exc:  # gone before a byte of the body went out
            await self._drop()
            return _lost(exc, "connection problem", OutcomeKind.TRANSIENT, Cause.CONNECTION)
        try:
            await conn.drain()
            code, text = await conn.reply()
        except (TimeoutError, OSError, ConnectionError, ssl.SSLError) as exc:
            await self._drop()
            detail = "no reply after the message was sent"
            return _lost(exc, detail, OutcomeKind.UNCERTAIN, Cause.NO_REPLY)
        except asyncio.CancelledError:
            self.abandon()
            raise
        # the next envelope's exchange, if it went out with this body, starts now
        self._idle()
        if code == 250:
            return SENT
        # the transaction ended with this reply, whatever it was: no RSET needed
        return _outcome(_Refused(code, text, "end of DATA"))

    def _idle(self) -> None:
        conn = self.conn
        if conn is not None:
            conn.deadline = conn.loop.time() + self.limit if self.written is not None else None

    async def send(self, sender: str, recipient: str, data: bytes) -> Outcome:
        """One message, both steps."""
        refused = await self.begin(sender, recipient)
        return refused if refused is not None else await self.finish(data)

    def abandon(self) -> None:
        """Drop the message in hand, if any — an envelope the server answered (it waits for a
        body that will not come) or one sent ahead: the connection closes, so the server
        discards it. A session with nothing in hand is left as it is."""
        if self.in_data or self.written is not None:
            conn, self.conn = self.conn, None
            self.written, self.in_data = None, False
            if conn is not None and conn.transport is not None:
                conn.transport.abort()

    async def close(self) -> None:
        self.abandon()
        if self.conn is not None:
            with contextlib.suppress(
                TimeoutError, _Refused, OSError, ConnectionError, ssl.SSLError
            ):
                await asyncio.wait_for(self._command("QUIT", (221,), "QUIT"), 2.0)
            await self._drop()


def _steps(sender: str, recipient: str) -> tuple[tuple[str, tuple[int, ...], str], ...]:
    return (
        (f"MAIL FROM:<{sender}>", (250,), "MAIL FROM"),
        (f"RCPT TO:<{recipient}>", (250, 251), "RCPT TO"),
        ("DATA", (354,), "DATA"),
    )


def _envelope_bytes(sender: str, recipient: str) -> bytes:
    return f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode()


def _lost(exc: BaseException, what: str, kind: OutcomeKind, cause: Cause) -> Outcome:
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return Outcome(kind, f"{what}: {reason}", cause)


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
