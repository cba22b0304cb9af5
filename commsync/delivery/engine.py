"""The ledger loop: send every queued row of one send, each recipient once.

One event loop drives one coroutine per connection. Each takes the next queued row from a shared
source (which reads rows in batches and drops suppressed addresses), builds that recipient's
message, waits for the shared rate limiter, opens the message (its envelope), has the row marked
`sending` (committed) before the body goes out, and records the outcome. The outcome of one
message is committed with the `sending` mark of the next, and the connections' marks share
transactions (group commit: a commit waits until every running connection asks, or at most
`GATHER` after the first). Each connection has at most one row `sending` at any moment, so a
crash leaves at most `connections` rows uncertain. Transient failures are retried in later passes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from commsync.delivery.commits import GroupCommit, LoggedCommit
from commsync.delivery.ratelimit import RateLimiter
from commsync.delivery.retry import APPLY_RETRIES, RetryPolicy
from commsync.delivery.sources import BATCH, Claims, Source
from commsync.delivery.transport import Cause, Outcome, OutcomeKind, Session, Transport
from commsync.model import DeliveryStatus, LedgerRow, QueueState, Record
from commsync.render.message import Built, RenderError
from commsync.store.roles import Ledger

Status = DeliveryStatus


class Listener(Protocol):
    def progress(self, done: int, total: int) -> None: ...


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
    queue: QueueState | None = None  # the worker's queue when it finished (`deliver`)
    cancelled: int = 0  # queued messages whose email no longer wants them

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.suppressed + self.uncertain + self.cancelled


class NotToSend(Exception):
    """A queued message its email no longer wants (deactivated, deleted, another event or
    audience): recorded `cancelled` with this reason, never sent."""


@dataclass(frozen=True, slots=True)
class SendJob:
    """What to send and how to build each message.

    A broadcast send reads its queued rows in order (`send_id`) and retries transient failures
    in later passes of the same run; the delivery worker instead claims due system-email rows as
    `claimer` (`send_id` None) and requeues a transient failure with a due time from its retry
    policy, read on `clock`.
    """

    send_id: int | None
    envelope_from: str
    build: Callable[[LedgerRow], Built]  # raises RenderError
    tokens: Callable[[Sequence[LedgerRow]], list[tuple[str, str]]] | None = None
    claimer: str | None = None
    clock: Callable[[], datetime] | None = None  # the worker's clock, for retry due times


log = logging.getLogger(__name__)
_HELD = 100  # outcomes of rows never sent (not built) held before they are committed


class _Run:
    def __init__(
        self,
        job: SendJob,
        ledger: Ledger,
        transport: Transport,
        limiter: RateLimiter,
        connections: int,
        total: int,
        listener: Listener | None,
        policy: RetryPolicy,
        stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.job, self.ledger, self.transport, self.limiter = job, ledger, transport, limiter
        self.total, self.listener, self.policy, self.stop = total, listener, policy, stop
        self.report = DeliveryReport()
        self.committer: GroupCommit | LoggedCommit = GroupCommit(ledger, job.claimer)
        self.sessions: list[Session | None] = [None] * connections
        self.given_up = [False] * connections
        self.halted = False  # a connection failed: the others finish the message in hand and stop
        self.first_pass: Callable[[_Run], Source] | None = None

    def count(self, row: LedgerRow, record: Record) -> None:
        """Count an outcome and log it: every recipient's outcome at info (serve's default
        level; the command line reports them itself), what was sent at debug."""
        r, what = self.report, row.slug or row.broadcast or "broadcast"
        if record.status == Status.SENT:
            r.sent += 1
            log.debug("sent %s to %s %s", what, row.email, record.message_id or "")
        elif record.status == Status.FAILED:
            r.failed += 1
            if len(r.failures) < 100:
                r.failures.append((row.email, record.detail))
            log.info("failed: %s to %s: %s", what, row.email, record.detail)
        elif record.status == Status.SUPPRESSED:
            r.suppressed += 1
            log.debug("suppressed: %s to %s", what, row.email)
        elif record.status == Status.CANCELLED:
            r.cancelled += 1
            log.info("cancelled: %s to %s: %s", what, row.email, record.detail)
        elif record.status == Status.UNCERTAIN:
            r.uncertain += 1
            r.uncertain_addresses.append(row.email)
            log.info(
                "uncertain whether it was delivered: %s to %s: %s", what, row.email, record.detail
            )
        else:
            if log.isEnabledFor(logging.INFO):
                at = record.retry_at
                later = f"; retry at {at:%Y-%m-%d %H:%M:%S}" if at else ""
                log.info("deferred: %s to %s: %s%s", what, row.email, record.detail, later)
            return
        if self.listener is not None:
            self.listener.progress(r.done, self.total)

    def _not_started(self, row: LedgerRow, done: list[tuple[LedgerRow, Record]]) -> None:
        """Why a row could not be marked `sending`: its address was suppressed since its batch
        was read (recorded), it was cancelled (`queue cancel`: counted), or another worker has it
        now (this one was taken for gone: theirs to send)."""
        status, claimed_by, suppressed = self.ledger.row_state(row.id)
        ours = self.job.claimer is None or claimed_by == self.job.claimer
        if status == Status.QUEUED and suppressed and ours:
            done.append((row, Record(row.id, Status.SUPPRESSED, "suppressed just before sending")))
        if status == Status.CANCELLED:
            self.count(row, Record(row.id, Status.CANCELLED, "cancelled before it was sent"))

    def _record(self, row: LedgerRow, built: Built, outcome: Outcome) -> Record:
        if outcome.kind == OutcomeKind.SENT:
            return Record(row.id, Status.SENT, message_id=built.message_id, slug=row.slug)
        if outcome.kind == OutcomeKind.TRANSIENT:
            return self._retry(row, outcome)
        status = Status.FAILED if outcome.kind == OutcomeKind.PERMANENT else Status.UNCERTAIN
        return Record(row.id, status, outcome.detail, slug=row.slug)

    def _retry(self, row: LedgerRow, outcome: Outcome) -> Record:
        """Queued again: at once for the next pass of an apply, later for the worker."""
        clock = self.job.clock
        if clock is None:
            return Record(row.id, Status.QUEUED, outcome.detail, slug=row.slug)
        attempts, limit = row.attempts + 1, self.policy.max_attempts
        if attempts >= limit:
            detail = f"gave up after {limit} attempts: {outcome.detail}"
            return Record(row.id, Status.FAILED, detail, slug=row.slug)
        retry_at = clock() + timedelta(seconds=self.policy.delay(attempts))
        return Record(row.id, Status.QUEUED, outcome.detail, slug=row.slug, retry_at=retry_at)

    async def _settle(self, done: list[tuple[LedgerRow, Record]], start: int | None) -> bool:
        """Commit the outcomes in hand (and the next `sending` mark, if any) and count them."""
        records = [record for _, record in done]
        started = await self.committer.transition(records, start)
        for row, record in done:
            self.count(row, record)
        done.clear()
        return started

    async def _take(
        self, source: Source | Claims, done: list[tuple[LedgerRow, Record]]
    ) -> tuple[LedgerRow, Built] | None:
        """The next row and its message; rows whose message cannot be built are recorded."""
        while (row := source.next()) is not None:
            try:
                return row, source.build(row)
            except RenderError as exc:
                done.append((row, Record(row.id, Status.FAILED, str(exc), slug=row.slug)))
            except NotToSend as exc:  # its email changed since it was queued: never sent
                done.append((row, Record(row.id, Status.CANCELLED, str(exc), slug=row.slug)))
            if len(done) >= _HELD:
                await self._settle(done, None)
        return None

    def _going(self, slot: int) -> bool:
        return not self.given_up[slot] and not self.halted and not self.stop()

    async def _connection(self, slot: int, source: Source | Claims) -> None:
        """Send rows until the source runs dry. Each message: its envelope (sent ahead with the
        previous body when the server pipelines), then — the server waiting for the body — its
        row committed `sending` together with the previous outcome, then its body, with the
        next message's envelope in the same write."""
        done: list[tuple[LedgerRow, Record]] = []  # outcomes not committed yet
        session: Session | None = None
        taken: tuple[LedgerRow, Built] | None = None
        broken = 0
        sender = self.job.envelope_from
        self.committer.running += 1
        try:
            taken = await self._take(source, done)
            while taken is not None and self._going(slot):
                (row, built), taken = taken, None
                if self.limiter.rate is not None:
                    await self.limiter.wait()
                session = self.sessions[slot] = self.sessions[slot] or self.transport.open()
                outcome = await session.begin(sender, row.email)
                if outcome is None:  # the server waits for the body
                    if not await self._settle(done, row.id):
                        session.abandon()  # never ended: the server discards it
                        self._not_started(row, done)
                        taken = await self._take(source, done)
                        continue
                    if self.limiter.rate is None and self._going(slot):
                        taken = await self._take(source, done)
                    then = (sender, taken[0].email) if taken is not None else None
                    outcome = await session.finish(built.data, then)
                done.append((row, self._record(row, built, outcome)))
                broken = broken + 1 if outcome.cause == Cause.CONNECTION else 0
                if broken >= self.policy.give_up_after:
                    self.given_up[slot] = True
                    self.report.stopped = (
                        f"giving up on {self.transport.describe()}: {outcome.detail}"
                    )
                    log.warning("%s", self.report.stopped)
                elif broken:
                    await asyncio.sleep(self.policy.reconnect_delay(broken))
                if taken is None and self._going(slot):
                    taken = await self._take(source, done)
        finally:
            if taken is not None and session is not None:
                session.abandon()  # its envelope went ahead; it stays queued
            try:
                await self._settle(done, None)
            finally:
                self.committer.leave()

    async def run_due(self, now: datetime) -> int:
        """One round of the delivery worker: send what is due now; returns how many were claimed."""
        assert self.job.claimer is not None
        claims = Claims(self, self.job.claimer, now)
        await self._together([self._connection(slot, claims) for slot in range(len(self.sessions))])
        return claims.claimed

    async def _together(self, connections: list[Coroutine[object, object, None]]) -> None:
        """Run the connections; when one fails (the store went away), the others settle the
        message in hand and stop, and only then is the first failure raised: no connection is
        still using its SMTP session or the store while the caller cleans up."""
        tasks = [asyncio.ensure_future(c) for c in connections]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        self.halted = any(t.done() and not t.cancelled() and t.exception() for t in tasks)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        self.halted = False
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def close(self) -> None:
        for slot, session in enumerate(self.sessions):
            if session is not None:
                await session.close()
                self.sessions[slot] = None

    def _source(self, first: bool) -> Source:
        """A pass's rows (the first pass's from `first_pass`, when given)."""
        return self.first_pass(self) if first and self.first_pass is not None else Source(self)

    async def run(self) -> DeliveryReport:
        send_id = self.job.send_id
        assert send_id is not None
        try:
            for attempt in range(self.policy.max_attempts):
                if attempt:
                    if all(self.given_up) or not self.ledger.next_batch(send_id, 0, 1):
                        break
                    await asyncio.sleep(self.policy.delay(attempt))
                source = self._source(first=attempt == 0)
                live = [slot for slot, gone in enumerate(self.given_up) if not gone]
                try:
                    await self._together([self._connection(slot, source) for slot in live])
                finally:
                    source.close()
                    self.committer.flush()
        finally:
            for session in self.sessions:
                if session is not None:
                    await session.close()
            self.committer.close()
        self.report.deferred = _count_queued(self.ledger, send_id)
        return self.report


class DueRunner:
    """The delivery worker's engine: call `round` repeatedly; connections stay open between rounds."""

    def __init__(
        self,
        job: SendJob,
        ledger: Ledger,
        transport: Transport,
        limiter: RateLimiter,
        connections: int,
        stop: Callable[[], bool],
        policy: RetryPolicy,
        listener: Listener | None = None,
        report: DeliveryReport | None = None,
    ) -> None:
        self.run = _Run(job, ledger, transport, limiter, connections, 0, listener, policy, stop)
        if report is not None:  # counts kept across runners (a worker that reconnected)
            self.run.report = report

    @property
    def report(self) -> DeliveryReport:
        return self.run.report

    async def round(self, now: datetime) -> int:
        return await self.run.run_due(now)

    async def close(self) -> None:
        await self.run.close()


def _count_queued(ledger: Ledger, send_id: int) -> int:
    count, after = 0, 0
    while rows := ledger.next_batch(send_id, after, BATCH):
        count += len(rows)
        after = rows[-1].id
    return count


def run_send(
    job: SendJob,
    ledger: Ledger,
    transport: Transport,
    limiter: RateLimiter,
    connections: int,
    total: int,
    listener: Listener | None = None,
    policy: RetryPolicy = APPLY_RETRIES,
    first_pass: Callable[[_Run], Source] | None = None,
) -> DeliveryReport:
    """Deliver every queued row of `job`; returns what happened. Never raises for delivery errors.

    `first_pass` makes the first pass's source (delivery/ahead.py: messages built by a second
    process)."""
    run = _Run(job, ledger, transport, limiter, connections, total, listener, policy)
    run.first_pass = first_pass
    log = ledger.sendlog()
    if log is not None:  # an apply's send on a SQLite file: no connection waits for another
        run.committer = LoggedCommit(log)
    return asyncio.run(run.run())
