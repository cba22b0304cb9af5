"""Where a delivery run's rows come from: one send's queued rows in order (an apply's send), or
due rows claimed in small batches (the delivery worker), handed to whichever connection asks."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from commsync.model import DeliveryStatus, LedgerRow, Record
from commsync.render.message import Built
from commsync.store.roles import Ledger

BATCH = 500
STALE_CLAIM = timedelta(minutes=10)  # a claim this old belongs to a worker that is gone
Status = DeliveryStatus


class _Job(Protocol):
    @property
    def send_id(self) -> int | None: ...

    @property
    def tokens(self) -> Callable[[Sequence[LedgerRow]], list[tuple[str, str]]] | None: ...

    @property
    def build(self) -> Callable[[LedgerRow], Built]: ...


class _Run(Protocol):
    """What a source needs of the run it feeds."""

    ledger: Ledger

    @property
    def job(self) -> _Job: ...

    def count(self, row: LedgerRow, record: Record) -> None: ...


class Claims:
    """Due rows (system emails, the workers' broadcast sends), claimed in small batches so
    several workers share the queue."""

    def __init__(self, run: _Run, claimer: str, now: datetime) -> None:
        self.run, self.claimer, self.now = run, claimer, now
        self.rows: deque[LedgerRow] = deque()
        self.exhausted = False
        self.claimed = 0

    def next(self) -> LedgerRow | None:
        if not self.rows and not self.exhausted:
            stale = self.now - STALE_CLAIM
            rows = self.run.ledger.claim_due(self.claimer, self.now, 50, stale)
            self.claimed += len(rows)
            self.exhausted = not rows
            tokens = self.run.job.tokens
            broadcasts = [r for r in rows if r.broadcast is not None]
            if tokens is not None and broadcasts:  # their unsubscribe links must resolve
                self.run.ledger.save_tokens(tokens(broadcasts))
            self.rows.extend(rows)
        return self.rows.popleft() if self.rows else None

    def build(self, row: LedgerRow) -> Built:
        """The row's message (raises RenderError, or NotToSend)."""
        return self.run.job.build(row)


class Source:
    """Queued rows of one pass, handed out one at a time to whichever connection asks."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.rows: deque[LedgerRow] = deque()
        self.after = 0
        self.exhausted = False

    def _rows_after(self, after: int) -> list[LedgerRow]:
        """The next batch of queued rows after the row `after`."""
        assert self.run.job.send_id is not None
        return self.run.ledger.next_batch(self.run.job.send_id, after, BATCH)

    def _batch(self) -> list[LedgerRow]:
        """The next queued rows, after `self.after`."""
        return self._rows_after(self.after)

    def _tokens(self, rows: Sequence[LedgerRow]) -> list[tuple[str, str]]:
        """The unsubscribe tokens (token, email_key) of rows about to be sent."""
        tokens = self.run.job.tokens
        return tokens(rows) if tokens is not None else []

    def build(self, row: LedgerRow) -> Built:
        """The row's message (raises RenderError, or NotToSend)."""
        return self.run.job.build(row)

    def _refill(self) -> None:
        ledger = self.run.ledger
        while not self.rows and not self.exhausted:
            rows = self._batch()
            if not rows:
                self.exhausted = True
                return
            self.after = rows[-1].id
            blocked = ledger.suppressed([r.email_key for r in rows])
            tokens = self._tokens([r for r in rows if r.email_key not in blocked])
            if tokens:
                ledger.save_tokens(tokens)
            if blocked:
                dropped = [
                    (r, Record(r.id, Status.SUPPRESSED, "suppressed before sending"))
                    for r in rows
                    if r.email_key in blocked
                ]
                ledger.transition([record for _, record in dropped], None)
                for row, record in dropped:
                    self.run.count(row, record)
            self.rows.extend(r for r in rows if r.email_key not in blocked)

    def next(self) -> LedgerRow | None:
        if not self.rows:
            self._refill()
        return self.rows.popleft() if self.rows else None

    def close(self) -> None:
        """The pass is over (or stopped)."""
