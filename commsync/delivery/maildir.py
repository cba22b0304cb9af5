"""The embedded default transport: a Maildir any mail client can open (tmp/, new/, cur/)."""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path

from commsync.delivery.transport import SENT, Cause, Outcome, OutcomeKind, hostname

_COUNTER = itertools.count()
_LOCK = threading.Lock()


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MaildirSession:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.host = hostname().replace("/", "\\057").replace(":", "\\072")
        self.envelope: tuple[str, str] | None = None  # the message begun

    def _name(self) -> str:
        with _LOCK:
            n = next(_COUNTER)
        now = time.time()
        return f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{n}.{self.host}"

    async def begin(self, sender: str, recipient: str) -> Outcome | None:
        self.envelope = (sender, recipient)
        return None

    async def finish(self, data: bytes, then: tuple[str, str] | None = None) -> Outcome:
        assert self.envelope is not None
        (sender, recipient), self.envelope = self.envelope, None
        return await self.send(sender, recipient, data)

    def abandon(self) -> None:
        self.envelope = None

    async def send(self, sender: str, recipient: str, data: bytes) -> Outcome:
        """Written to tmp/ and flushed to disk, then renamed into new/ and the rename flushed:
        a reader never sees half a message, and a crash never leaves an empty one."""
        name = self._name()
        tmp = self.root / "tmp" / name
        try:
            with tmp.open("wb") as f:
                f.write(f"Return-Path: <{sender}>\r\nDelivered-To: {recipient}\r\n".encode())
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            tmp.rename(self.root / "new" / name)
            _fsync_directory(self.root / "new")
        except OSError as exc:
            return Outcome(
                OutcomeKind.TRANSIENT, f"cannot write to the Maildir: {exc.strerror}", Cause.LOCAL
            )
        return SENT

    async def close(self) -> None:
        pass


class MaildirTransport:
    def __init__(self, root: Path) -> None:
        self.root = root

    def open(self) -> MaildirSession:
        for sub in ("tmp", "new", "cur"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        return MaildirSession(self.root)

    def describe(self) -> str:
        return f"maildir {self.root}"
