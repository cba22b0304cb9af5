"""How the connections record their marks and outcomes: in shared transactions of the ledger
(`GroupCommit`), or appended to an apply's send log (`LoggedCommit`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from commsync.model import Record
from commsync.store.roles import Ledger, SendLog


class GroupCommit:
    """The transitions of the connections share a transaction.

    A commit waits until every running connection has asked for one (they then talk to the
    server together and come back together), or at most `GATHER` seconds after the first
    request, so a connection busy elsewhere (a slow reply, the rate limiter) holds the others up
    only that long; the last to ask commits for all at once. Each connection still waits for its
    own commit before the body of its message goes out: every `sending` mark is committed first.
    """

    def __init__(self, ledger: Ledger, claimer: str | None) -> None:
        self.ledger = ledger
        self.claimer = claimer
        self.waiting: list[tuple[Sequence[Record], int | None, asyncio.Future[bool]]] = []
        self.running = 0  # connections that may still ask for a transition
        self.timer: asyncio.TimerHandle | None = None

    def _flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        waiting, self.waiting = self.waiting, []
        if not waiting:
            return
        try:
            results = self.ledger.transitions(
                [(done, start) for done, start, _ in waiting], self.claimer
            )
        except Exception as exc:  # every waiter learns of it
            for _, _, future in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), started in zip(waiting, results, strict=True):
            if not future.done():  # its connection was cancelled meanwhile
                future.set_result(started)

    async def transition(self, done: Sequence[Record], start: int | None) -> bool:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self.waiting.append((done, start, future))
        if len(self.waiting) >= self.running:
            self._flush()  # the last to ask commits for all, and goes on without waiting
        elif self.timer is None:
            self.timer = loop.call_later(GATHER, self._flush)
        return await future

    def leave(self) -> None:
        """A connection stopped: the others no longer wait for it."""
        self.running -= 1
        if self.waiting and len(self.waiting) >= self.running:
            asyncio.get_running_loop().call_soon(self._flush)

    def flush(self) -> None:
        """A pass ended: every transition is committed already."""

    def close(self) -> None:
        """The send ended."""


class LoggedCommit:
    """The transitions appended to the apply's send log (store/sendlog.py), one write each: a
    connection never waits for another, and the ledger gets them a few hundred at a time."""

    def __init__(self, log: SendLog) -> None:
        self.log = log
        self.running = 0

    async def transition(self, done: Sequence[Record], start: int | None) -> bool:
        return self.log.mark(done, start)

    def leave(self) -> None:
        self.running -= 1

    def flush(self) -> None:
        """A pass ended: the ledger gets everything (the engine then reads what is left)."""
        self.log.fold()

    def close(self) -> None:
        self.log.close()


GATHER = 0.001
