"""The SMTP client's reading side: bytes from the server cut into replies as they arrive."""

from __future__ import annotations

import asyncio
from collections import deque

_MAX_LINE = 64 * 1024  # bytes of one reply line; more is a broken (or hostile) server
_MAX_LINES = 1_000  # lines of one reply


class Replies(asyncio.Protocol):
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
