"""Messages built ahead, by a second process, while this one sends.

The sending process is one Python thread: the ledger's commits, the SMTP exchanges and building
each recipient's message share one core, and building (with minting the unsubscribe tokens) is
a quarter of it. For the first pass of a large broadcast send (`AHEAD_AT` rows or more), a child
forked from the sender builds the messages: the sender reads each batch of queued rows as
before and hands it down a pipe, the child mints the batch's tokens and builds its messages and
hands them back up another, while the sender is busy sending the batch before. The child never
touches the store, the network or the terminal — only its two pipes (commsync/forking.py: how
the child leaves the parent's objects alone) — and everything else stays with the sender as in a
single process (the suppression check, saving the tokens, the `sending` marks, the SMTP
exchanges, the outcomes), and so does every crash guarantee.

If the child fails or dies, the sender builds the rest itself, from the first batch it did not
get back. It ends the child when the pass is over or stops early (Ctrl-C reaches both: the child
ignores it and leaves the stopping to the sender).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Callable, Sequence

from commsync import forking
from commsync.delivery.engine import NotToSend, SendJob
from commsync.delivery.sources import Source, _Run
from commsync.model import LedgerRow
from commsync.render.message import Built, RenderError

AHEAD_AT = 2_000  # queued rows: below this a second process costs more than it saves
log = logging.getLogger(__name__)

# a row as it goes down: the fields `next_batch` reads
_Row = tuple[int, str, str, str | None, int, str | None, str | None, str | None, str | None]
# a message as it comes up: (data, Message-ID, subject), or (None, "failed"|"cancelled", why)
_Item = tuple[bytes | None, str, str]


def first_pass(total: int) -> Callable[[_Run], Source] | None:
    """What builds the first pass of a send of `total` rows: a second process, for a large send
    where processes can fork; else None (this process)."""
    return _start if total >= AHEAD_AT and forking.can_fork() else None


def _start(run: _Run) -> Source:
    try:
        return AheadSource(run)
    except OSError as exc:  # no process or pipe to be had (a limit reached): build here
        log.warning("cannot start a process to build messages ahead (%s): building here", exc)
        return Source(run)


def _fields(r: LedgerRow) -> _Row:
    return (
        r.id, r.email, r.email_key, r.customer_id, r.attempts,
        r.first_name, r.last_name, r.display_name, r.username,
    )  # fmt: skip


def _build(job: SendJob, rows_in: int, built_out: int) -> None:
    """The child: for each batch of rows, its tokens and messages, until the rows end."""
    while (fields := forking.read(rows_in)) is not None:
        rows = [LedgerRow(*f) for f in fields]
        tokens = job.tokens(rows) if job.tokens is not None else []
        items: list[_Item] = []
        for row in rows:
            try:
                built = job.build(row)
                items.append((built.data, built.message_id, built.subject))
            except RenderError as exc:
                items.append((None, "failed", str(exc)))
            except NotToSend as exc:
                items.append((None, "cancelled", str(exc)))
        forking.write(built_out, ("batch", tokens, items))


class AheadSource(Source):
    """The first pass's rows, read here; their messages, built by the child."""

    def __init__(self, run: _Run) -> None:
        super().__init__(run)
        self.sent: deque[list[LedgerRow]] = deque()  # batches handed down, not back yet
        self.read_all = False
        self.last_sent = 0  # the id of the last row handed down
        self.built: dict[int, _Item] = {}  # the batch in hand's messages, by row id
        self.tokens: dict[str, str] = {}  # the batch in hand's tokens, by email_key
        self.handed = 0  # messages the child built and the sender took
        rows_in, self.rows_out = os.pipe()
        self.built_in, built_out = os.pipe()
        forking.grow(built_out)

        def child() -> None:
            os.close(self.rows_out)
            os.close(self.built_in)
            try:
                _build(run.job, rows_in, built_out)  # type: ignore[arg-type]
            except BaseException as exc:  # the sender hears of it, builds the rest itself
                with contextlib.suppress(Exception):
                    forking.write(built_out, ("error", f"{type(exc).__name__}: {exc}", None))
                raise

        try:
            self.pid = forking.fork(child)
        except OSError:
            for fd in (rows_in, self.rows_out, self.built_in, built_out):
                os.close(fd)
            raise
        os.close(rows_in)
        os.close(built_out)
        self.alive = True
        log.debug("messages built ahead by process %d", self.pid)

    def _hand_down(self) -> None:
        """The next batch of rows, down to the child: it builds them while this process sends
        the batch before. (Only ever while the child waits for rows — after it handed a batch
        back — so neither process can block the other on a full pipe.)"""
        if not self.alive or self.read_all:
            return
        rows = self._rows_after(self.last_sent)
        if not rows:
            self.read_all = True
            return
        self.last_sent = rows[-1].id
        self.sent.append(rows)
        try:
            forking.write(self.rows_out, [_fields(r) for r in rows])
        except OSError as exc:  # the child is gone
            self._gone(str(exc))

    def _batch(self) -> list[LedgerRow]:
        if not self.sent:
            self._hand_down()  # the first batch (or, the child gone, nothing)
        if not self.sent:  # every batch handed down came back
            return super()._batch() if not self.alive else []
        rows = self.sent.popleft()
        self.built.clear()
        if self.alive:
            frame = forking.read(self.built_in)
            if frame is not None and frame[0] == "batch":
                _, tokens, items = frame
                self.tokens = {key: token for token, key in tokens}
                self.built = {row.id: item for row, item in zip(rows, items, strict=True)}
                self._hand_down()
            else:
                self._gone(frame[1] if frame is not None else "it ended without a word")
        return rows

    def _gone(self, why: str) -> None:
        log.warning("the process building messages ahead failed (%s): building here", why)
        self.close()

    def _tokens(self, rows: Sequence[LedgerRow]) -> list[tuple[str, str]]:
        if not self.built or self.run.job.tokens is None:
            return super()._tokens(rows)  # a batch the child never built
        return [(self.tokens[r.email_key], r.email_key) for r in rows]

    def build(self, row: LedgerRow) -> Built:
        found = self.built.pop(row.id, None)
        if found is None:
            return super().build(row)
        data, second, third = found
        if data is not None:
            self.handed += 1
            return Built(data, second, third)
        if second == "cancelled":
            raise NotToSend(third)
        raise RenderError(third)

    def close(self) -> None:
        """End the child (at once: it holds nothing but its pipes) and reap it."""
        if not self.alive:
            return
        self.alive = False
        os.close(self.rows_out)
        os.close(self.built_in)
        forking.end(self.pid)
        log.debug("process %d built %d messages ahead", self.pid, self.handed)
