"""The ledger loop's group commit: the connections' transitions share transactions, and no
connection talks to the server before its own `sending` mark is committed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from commsync.delivery import commits
from commsync.delivery.commits import GroupCommit
from commsync.model import DeliveryStatus, Record
from commsync.store.ledger import SqlLedger
from tests.helpers import Repo, news_checked_at_data


class _Recording:
    """A ledger that records each transaction's transitions (the unit under test is the
    committer's grouping, not the SQL)."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.batches: list[list[int | None]] = []
        self.fail = fail

    def transitions(
        self, batch: Sequence[tuple[Sequence[Record], int | None]], claimer: str | None = None
    ) -> list[bool]:
        if self.fail is not None:
            raise self.fail
        self.batches.append([start for _, start in batch])
        return [start is None or start % 2 == 0 for _, start in batch]


def _committer(ledger: _Recording, running: int) -> GroupCommit:
    committer = GroupCommit(ledger, None)  # type: ignore[arg-type]
    committer.running = running
    return committer


def test_every_running_connection_shares_one_transaction() -> None:
    ledger = _Recording()

    async def main() -> list[bool]:
        committer = _committer(ledger, 3)
        return list(await asyncio.gather(*(committer.transition([], n) for n in (1, 2, 4))))

    assert asyncio.run(main()) == [False, True, True]  # each learns its own row's result
    assert ledger.batches == [[1, 2, 4]]


def test_a_busy_connection_holds_the_others_up_only_briefly() -> None:
    ledger = _Recording()

    async def main() -> None:
        committer = _committer(ledger, 3)
        busy = asyncio.Event()  # e.g. waiting for a slow reply from the server

        async def late() -> bool:
            await busy.wait()
            return await committer.transition([], 8)

        third = asyncio.ensure_future(late())
        early = asyncio.gather(committer.transition([], 2), committer.transition([], 4))
        await asyncio.wait_for(early, 5)  # only GATHER's timer can commit them: 8 never asked
        assert ledger.batches == [[2, 4]]
        busy.set()
        assert await third

    asyncio.run(main())
    assert ledger.batches == [[2, 4], [8]]


def test_a_connection_that_stops_releases_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commits, "GATHER", 3600.0)  # only `leave` can release the waiter
    ledger = _Recording()

    async def main() -> bool:
        committer = _committer(ledger, 2)
        waiting = asyncio.ensure_future(committer.transition([], 6))
        await asyncio.sleep(0)
        assert not waiting.done()
        committer.leave()
        return await asyncio.wait_for(waiting, 5)

    assert asyncio.run(main())
    assert ledger.batches == [[6]]


def test_a_failed_commit_reaches_every_waiter() -> None:
    ledger = _Recording(fail=RuntimeError("the store went away"))

    async def main() -> list[object]:
        committer = _committer(ledger, 2)
        calls = (committer.transition([], 2), committer.transition([], 4))
        return list(await asyncio.gather(*calls, return_exceptions=True))

    results = asyncio.run(main())
    assert [str(r) for r in results] == ["the store went away"] * 2


def test_a_broadcast_over_four_connections_commits_about_once_per_four_messages(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end against a real SMTP server: with the timer out of the way, transactions are
    formed only by the connections meeting (or leaving), and each message still goes out once,
    after its row was committed `sending`. (A store in a SQLite file has an apply's send log
    instead — test_sendlog.py —; without one, as on PostgreSQL, it commits in groups.)"""
    monkeypatch.setattr(commits, "GATHER", 3600.0)
    monkeypatch.setattr(SqlLedger, "sendlog", lambda self: None)
    transactions: list[int] = []
    real = SqlLedger.transitions

    def counted(self: SqlLedger, batch, claimer=None):  # type: ignore[no-untyped-def]
        transactions.append(len(batch))
        return real(self, batch, claimer)

    monkeypatch.setattr(SqlLedger, "transitions", counted)
    store_url = repo.store_url

    def sending(address: str) -> bool:
        import sqlalchemy as sa

        engine_ = sa.create_engine(store_url)
        with engine_.connect() as conn:
            status = conn.execute(
                sa.text("SELECT status FROM deliveries WHERE email = :e"), {"e": address}
            ).scalar_one()
        engine_.dispose()
        return bool(status == DeliveryStatus.SENDING)

    assert news_checked_at_data(repo, 200, sending) == [True] * 200
    assert sum(transactions) == 200 + 4  # each message's start, then each connection's last
    assert len(transactions) <= 200 / 4 + 8
