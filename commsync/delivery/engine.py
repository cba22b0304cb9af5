"""The ledger loop: send every queued row of one send, each recipient once.

One producer reads queued rows in batches, drops suppressed addresses, builds each message and
queues it; one worker per connection takes messages, waits for the shared rate limiter, marks the
row `sending` (committed) just before talking to the server, and records the outcome. The record
of one message is committed in the same transaction that marks the next one `sending`, so at any
moment each worker has at most one row `sending`: a crash leaves at most `connections` rows
uncertain. Rows that met a transient error are retried in later passes, with backoff.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from commsync.delivery.ratelimit import RateLimiter
from commsync.delivery.transport import Outcome, Session, Transport
from commsync.render.message import Built, RenderError
from commsync.store.ledger import LedgerRow, Record, SqlLedger

_BATCH = 500
_STOP = object()


class Listener(Protocol):
    def progress(self, done: int, total: int) -> None: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    delays: tuple[float, ...] = (0.5, 2.0, 5.0, 15.0)
    give_up_after: int = 5  # consecutive connection failures before a worker stops

    def delay(self, attempt: int) -> float:
        return self.delays[min(attempt, len(self.delays)) - 1] if attempt > 0 else 0.0


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    uncertain: int = 0
    deferred: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    uncertain_addresses: list[str] = field(default_factory=list)
    stopped: str | None = None

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.suppressed + self.uncertain


@dataclass(frozen=True, slots=True)
class SendJob:
    """One send: where its rows are, how to build each message, who it is from."""

    send_id: int
    envelope_from: str
    build: Callable[[LedgerRow], Built]  # raises RenderError
    tokens: Callable[[Sequence[LedgerRow]], list[tuple[str, str]]] | None = None


class _Run:
    def __init__(
        self,
        job: SendJob,
        ledgers: Sequence[SqlLedger],
        transport: Transport,
        limiter: RateLimiter,
        total: int,
        listener: Listener | None,
        policy: RetryPolicy,
    ) -> None:
        self.job, self.ledgers, self.transport, self.limiter = job, ledgers, transport, limiter
        self.total, self.listener, self.policy = total, listener, policy
        self.report = DeliveryReport()
        self.items: queue.Queue[object] = queue.Queue(maxsize=len(ledgers) * 16)
        self.lock = threading.Lock()
        self.alive = len(ledgers)

    # -- bookkeeping (thread-safe) ----------------------------------------------------------

    def _count(self, row: LedgerRow, record: Record) -> None:
        with self.lock:
            r = self.report
            if record.status == "sent":
                r.sent += 1
            elif record.status == "failed":
                r.failed += 1
                if len(r.failures) < 100:
                    r.failures.append((row.email, record.detail))
            elif record.status == "suppressed":
                r.suppressed += 1
            elif record.status == "uncertain":
                r.uncertain += 1
                r.uncertain_addresses.append(row.email)
            done = r.done
        if self.listener is not None and record.status != "queued":
            self.listener.progress(done, self.total)

    # -- the producer -----------------------------------------------------------------------

    def _prepare(self, ledger: SqlLedger, rows: list[LedgerRow]) -> list[tuple[LedgerRow, Built]]:
        blocked = ledger.suppressed(
            [r.email_key for r in rows]
        )  # checked again just before sending
        if self.job.tokens is not None:
            ledger.save_tokens(self.job.tokens([r for r in rows if r.email_key not in blocked]))
        ready, done = [], []
        for row in rows:
            if row.email_key in blocked:
                done.append((row, Record(row.id, "suppressed", "suppressed before sending")))
                continue
            try:
                ready.append((row, self.job.build(row)))
            except RenderError as exc:
                done.append((row, Record(row.id, "failed", str(exc))))
        if done:
            ledger.transition([record for _, record in done], None)
            for row, record in done:
                self._count(row, record)
        return ready

    def _pass(self, ledger: SqlLedger) -> None:
        after = 0
        while self.alive:
            rows = ledger.next_batch(self.job.send_id, after, _BATCH)
            if not rows:
                break
            after = rows[-1].id
            for item in self._prepare(ledger, rows):
                while self.alive:
                    try:
                        self.items.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
        self.items.join()

    # -- the workers ------------------------------------------------------------------------

    def _record(self, row: LedgerRow, built: Built, outcome: Outcome) -> Record:
        if outcome.kind == "sent":
            return Record(row.id, "sent", message_id=built.message_id)
        if outcome.kind == "transient":
            return Record(row.id, "queued", outcome.detail)
        return Record(
            row.id, "failed" if outcome.kind == "permanent" else "uncertain", outcome.detail
        )

    def _worker(self, ledger: SqlLedger) -> None:
        session: Session | None = None
        pending: tuple[LedgerRow, Record] | None = None
        broken = 0
        try:
            while True:
                try:
                    item = self.items.get(timeout=0.05)
                except queue.Empty:
                    if pending is not None:
                        ledger.transition([pending[1]], None)
                        self._finish(pending)
                        pending = None
                    continue
                if item is _STOP:
                    break
                assert isinstance(item, tuple)
                row, built = item
                self.limiter.acquire()
                started = ledger.transition([pending[1]] if pending else [], start=row.id)
                self._finish(pending)
                if not started:  # suppressed since the batch was prepared
                    pending = (row, Record(row.id, "suppressed", "suppressed just before sending"))
                    continue
                session = session or self.transport.open()
                outcome = session.send(self.job.envelope_from, row.email, built.data)
                pending = (row, self._record(row, built, outcome))
                broken = broken + 1 if outcome.detail.startswith("connection problem") else 0
                if broken >= self.policy.give_up_after:
                    ledger.transition([pending[1]], None)
                    self._finish(pending)
                    pending = None
                    with self.lock:
                        self.report.stopped = (
                            f"giving up on {self.transport.describe()}: {outcome.detail}"
                        )
                    break
                if broken:
                    time.sleep(self.policy.delay(broken))
        finally:
            if pending is not None:
                ledger.transition([pending[1]], None)
                self._finish(pending)
            if session is not None:
                session.close()
            with self.lock:
                self.alive -= 1
            self._drain_if_last()

    def _finish(self, pending: tuple[LedgerRow, Record] | None) -> None:
        if pending is not None:
            self._count(*pending)
            self.items.task_done()

    def _drain_if_last(self) -> None:
        """When no worker is left, empty the queue so the producer is not left waiting."""
        if self.alive:
            return
        while True:
            try:
                item = self.items.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                self.items.task_done()

    # -- the whole send ---------------------------------------------------------------------

    def run(self) -> DeliveryReport:
        workers = [
            threading.Thread(target=self._worker, args=(ledger,), daemon=True)
            for ledger in self.ledgers
        ]
        for w in workers:
            w.start()
        producer = self.ledgers[0]
        for attempt in range(self.policy.max_attempts):
            if attempt:
                left = producer.next_batch(self.job.send_id, 0, 1)
                if not left or not self.alive:
                    break
                time.sleep(self.policy.delay(attempt))
            self._pass(producer)
        for _ in workers:
            self.items.put(_STOP)
        for w in workers:
            w.join()
        self.report.deferred = _count_queued(producer, self.job.send_id)
        return self.report


def _count_queued(ledger: SqlLedger, send_id: int) -> int:
    count, after = 0, 0
    while rows := ledger.next_batch(send_id, after, _BATCH):
        count += len(rows)
        after = rows[-1].id
    return count


def run_send(
    job: SendJob,
    ledgers: Sequence[SqlLedger],
    transport: Transport,
    limiter: RateLimiter,
    total: int,
    listener: Listener | None = None,
    policy: RetryPolicy | None = None,
) -> DeliveryReport:
    """Deliver every queued row of `job`; returns what happened. Never raises for delivery errors."""
    return _Run(job, ledgers, transport, limiter, total, listener, policy or RetryPolicy()).run()
