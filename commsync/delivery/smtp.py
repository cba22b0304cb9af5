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
from collections import deque

from commsync.delivery.transport import SENT, Cause, Outcome, OutcomeKind, SmtpConfig

_CRLF = b"\r\n"


class _Refused(Exception):
    def __init__(self, code: int, text: str, stage: str) -> None:
        super().__init__(f"{code} {text}")
        self.code, self.text, self.stage = code, text, stage


def dot_stuff(data: bytes) -> bytes:
    """The DATA payload: lines starting with '.' doubled, then the terminating '.' line."""
    body = data.replace(b"\r\n.", b"\r\n..") if b"\r\n." in data else data
    if body.startswith(b"."):
        body = b"." + body
    return body + (b".\r\n" if body.endswith(_CRLF) else b"\r\n.\r\n")


def _outcome(exc: _Refused) -> Outcome:
    detail = f"{exc.code} {exc.text}".strip() + f" (at {exc.stage})"
    kind = OutcomeKind.PERMANENT if 500 <= exc.code < 600 else OutcomeKind.TRANSIENT
    return Outcome(kind, detail, Cause.REPLY)


_MAX_LINE = 64 * 1024  # bytes of one reply line; more is a broken (or hostile) server
_MAX_LINES = 1_000  # lines of one reply


class _Replies(asyncio.Protocol):
    """The connection's reading side: bytes from the server cut into replies as they arrive,
    handed to whoever awaits the next one. Writing goes straight to the transport (`paused` is
    its flow control). A protocol rather than asyncio's streams: one wake-up per round trip
    instead of one per line read (a sixth of a send's CPU went to the streams)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.lines: list[str] = []  # of the reply being read
        self.ready: deque[tuple[int, str] | Exception] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.gone: Exception | None = None  # why no more replies will come
        self.paused: asyncio.Future[None] | None = None
        self.loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self.loop.create_future()
        # The exchange in hand must end by `deadline` (loop time; None: nothing in hand). One
        # timer per connection checks it, rather than a timeout armed for every message.
        self.deadline: float | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            self._line(bytes(buffer[start : end + 1]))
            start = end + 1
        del buffer[:start]
        if len(buffer) > _MAX_LINE:
            self._fail(ConnectionError("malformed reply from the server: a line too long"))
        self._wake()

    def _line(self, line: bytes) -> None:
        if self.gone is not None:
            return
        if len(line) > _MAX_LINE:
            self._fail(ConnectionError("malformed reply from the server: a line too long"))
            return
        if not line[:3].isdigit() or line[3:4] not in (b" ", b"-", b"\r", b"\n"):
            self._fail(ConnectionError(f"malformed reply from the server: {line[:40]!r}"))
            return
        self.lines.append(line[4:].strip().decode("utf-8", "replace"))
        if line[3:4] != b"-":
            self.ready.append((int(line[:3]), "\n".join(self.lines)))
            self.lines = []
        elif len(self.lines) > _MAX_LINES:
            self._fail(ConnectionError("malformed reply from the server: too many lines"))

    def _fail(self, exc: Exception) -> None:
        if self.gone is None:
            self.gone = exc
            self.ready.append(exc)
            if self.transport is not None:
                self.transport.abort()
            self._wake()

    def watch(self, every: float) -> None:
        """Check the deadline every `every` seconds while the connection lasts."""
        if self.gone is not None:
            return
        if self.deadline is not None and self.loop.time() >= self.deadline:
            self._fail(TimeoutError("the server did not answer in time"))
            return
        self.timer = self.loop.call_later(every, self.watch, every)

    def _wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        """The server closed its side: what it sent before still reads, then the error."""
        if self.gone is None:
            self.gone = ConnectionError("connection closed by the server")
        self._wake()
        return False  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self.gone is None:
            self.gone = ConnectionError("connection closed by the server")
            if exc is not None:
                self.gone.__cause__ = exc
        self._wake()
        paused, self.paused = self.paused, None
        if paused is not None and not paused.done():
            paused.set_result(None)
        if not self.closed.done():
            self.closed.set_result(None)
        if self.timer is not None:
            self.timer.cancel()

    def pause_writing(self) -> None:
        if self.paused is None:
            self.paused = self.loop.create_future()

    def resume_writing(self) -> None:
        paused, self.paused = self.paused, None
        if paused is not None and not paused.done():
            paused.set_result(None)

    async def reply(self) -> tuple[int, str]:
        """The next whole reply: its code, and the text of its lines joined by newlines."""
        while not self.ready:
            if self.gone is not None:
                raise self.gone
            self.waiter = self.loop.create_future()
            await self.waiter
        found = self.ready.popleft()
        if isinstance(found, Exception):
            self.ready.appendleft(found)  # and for every later read
            raise found
        return found

    async def drain(self) -> None:
        """Wait while the transport's buffer is full (the server reads slowly)."""
        if self.paused is not None:
            await self.paused
        if self.gone is not None:
            raise self.gone


class SmtpSession:
    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self.conn: _Replies | None = None
        self.extensions: set[str] = set()
        self.auth: set[str] = set()
        # One conversation at a time: a QUIT from `close` never lands inside a transaction.
        self.lock = asyncio.Lock()

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
                _Replies, c.host, c.port, ssl=tls, server_hostname=c.host if tls else None
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

    async def _envelope(self, sender: str, recipient: str) -> None:
        """MAIL, RCPT and DATA; pipelined in one write when the server allows it."""
        steps: tuple[tuple[str, tuple[int, ...], str], ...] = (
            (f"MAIL FROM:<{sender}>", (250,), "MAIL FROM"),
            (f"RCPT TO:<{recipient}>", (250, 251), "RCPT TO"),
            ("DATA", (354,), "DATA"),
        )
        if "PIPELINING" not in self.extensions:
            for command, expect, stage in steps:
                await self._command(command, expect, stage)
            return
        self._write(b"".join(command.encode() + _CRLF for command, _, _ in steps))
        assert self.conn is not None
        reply = self.conn.reply  # the hot path: no frame between this and the protocol
        replies = [await reply(), await reply(), await reply()]
        for (code, text), (_, expect, stage) in zip(replies, steps, strict=True):
            if code not in expect:
                if replies[2][0] == 354:  # DATA accepted although RCPT was refused: end it empty
                    self._write(b"." + _CRLF)
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
        conn, self.conn = self.conn, None
        if conn is not None and conn.transport is not None:
            conn.transport.abort()

    async def _send(self, sender: str, recipient: str, data: bytes) -> Outcome:
        body_sent = False
        limit = self.config.timeout * 3  # one deadline for the exchange
        deadline = asyncio.get_running_loop().time() + limit
        try:
            if self.conn is None:
                async with asyncio.timeout_at(deadline):
                    await self._connect()
                assert self.conn is not None
                self.conn.watch(min(1.0, limit / 10))
            conn = self.conn
            conn.deadline = deadline
            try:
                await self._envelope(sender, recipient)
                body_sent = True  # from the first byte of the body on, a failure is uncertain
                self._write(dot_stuff(data))
                await conn.drain()
                code, text = await conn.reply()
            finally:
                conn.deadline = None
        except _Refused as exc:
            if exc.stage in ("greeting", "EHLO", "STARTTLS", "AUTH"):
                await self._drop()
                detail = f"connection problem: {exc.code} {exc.text} (at {exc.stage})"
                return Outcome(OutcomeKind.TRANSIENT, detail, Cause.CONNECTION)
            await self._reset()
            return _outcome(exc)
        except (TimeoutError, OSError, ConnectionError, ssl.SSLError) as exc:
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
            if self.conn is not None:
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
