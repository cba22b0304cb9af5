"""The send log of an apply (store/sendlog.py): marks and outcomes appended to a file beside a
SQLite store, folded into the ledger in batches, and folded exactly once after a crash.

Whole sends through it — killed and re-run included — are in test_crash.py, test_apply_faults.py
and test_send_ahead.py; these tests pin the log's own promises on a real store file.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from commsync.model import (
    BroadcastSpec,
    CustomerRecord,
    LiveBroadcast,
    Record,
    Targets,
)
from commsync.store import sendlog
from commsync.store.roles import FrozenSend
from commsync.store.sql import SqlStore, open_store
from tests.helpers import Repo, news_checked_at_data


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    yield s
    s.close()


def _send(store: SqlStore, customers: int = 5) -> int:
    store.upsert_customers(
        [CustomerRecord(str(n), f"c{n}@example.com", f"user{n}") for n in range(1, customers + 1)]
    )
    spec = BroadcastSpec("email", "News", "Hi", Targets(all=True))
    frozen = store.record_send(LiveBroadcast("news", spec, "sending", spec.spec_hash()), ())
    assert isinstance(frozen, FrozenSend)
    return frozen.send_id


def _rows(path: Path) -> dict[str, tuple[str, int]]:
    with sqlite3.connect(path) as conn:
        found = conn.execute("SELECT email, status, attempts FROM deliveries").fetchall()
    return {email: (status, attempts) for email, status, attempts in found}


def test_marks_reach_the_ledger_when_the_log_is_folded(store: SqlStore, tmp_path: Path) -> None:
    send_id = _send(store)
    db = tmp_path / "store.db"
    ledger = store.ledger()
    try:
        log = ledger.sendlog()
        assert isinstance(log, sendlog.FileSendLog)
        a, b, c, *_ = ledger.next_batch(send_id, 0, 10)
        assert log.mark([], a.id) and log.mark([], b.id)
        assert log.mark([Record(a.id, "sent", message_id="<a@x>")], c.id)
        # logged, not yet in the ledger: one line per mark after the header
        assert len(log.path.read_bytes().splitlines()) == 4
        assert _rows(db)["c1@example.com"] == ("queued", 0)
        log.fold()
        rows = _rows(db)
        assert rows["c1@example.com"] == ("sent", 1)
        assert rows["c2@example.com"] == rows["c3@example.com"] == ("sending", 0)
        assert len(log.path.read_bytes().splitlines()) == 1  # afresh: its header only
        log.mark([Record(b.id, "failed", "550 no"), Record(c.id, "sent", message_id="<c@x>")], None)
        log.close()
        assert not log.path.exists()
        rows = _rows(db)
        assert rows["c2@example.com"] == ("failed", 1) and rows["c3@example.com"] == ("sent", 1)
    finally:
        ledger.close()


def test_a_killed_apply_s_log_is_folded_by_the_next_recovery(
    store: SqlStore, tmp_path: Path
) -> None:
    """What was logged reaches the ledger; a row marked and never finished becomes uncertain;
    a line cut short by the kill is ignored."""
    send_id = _send(store)
    ledger = store.ledger()
    try:
        log = ledger.sendlog()
        assert isinstance(log, sendlog.FileSendLog)
        a, b, c, d, _ = ledger.next_batch(send_id, 0, 10)
        log.mark([], a.id)
        log.mark([], b.id)
        log.mark([Record(a.id, "sent", message_id="<a@x>")], c.id)
        log.mark([Record(b.id, "queued", "421 busy")], d.id)
        log.mark([Record(d.id, "sent", message_id="<d@x>")], None)
        with open(log.path, "ab") as f:
            f.write(b'[5,[[3,"sent"')  # the kill came mid-line
        saved = log.path.read_bytes()
    finally:
        ledger.close()  # the process is gone: nothing more is folded
    log.path.write_bytes(saved)
    assert store.crashed_to_uncertain() == 1
    assert not log.path.exists()
    assert _rows(tmp_path / "store.db") == {
        "c1@example.com": ("sent", 1),
        "c2@example.com": ("queued", 1),  # back in the queue, as a 4xx leaves it
        "c3@example.com": ("uncertain", 0),  # marked, its body maybe sent: nobody knows
        "c4@example.com": ("sent", 1),
        "c5@example.com": ("queued", 0),
    }


def test_a_log_already_folded_is_not_folded_again(store: SqlStore, tmp_path: Path) -> None:
    """Killed between the fold's commit and the log starting afresh: the ledger records the
    log's generation, so its outcomes are not counted twice."""
    send_id = _send(store)
    ledger = store.ledger()
    try:
        log = ledger.sendlog()
        assert isinstance(log, sendlog.FileSendLog)
        a, b, *_ = ledger.next_batch(send_id, 0, 10)
        log.mark([], a.id)
        log.mark([Record(a.id, "queued", "421 busy")], b.id)
        before = log.path.read_bytes()
        log.fold()
    finally:
        ledger.close()
    log.path.write_bytes(before)  # as if the kill came before the log was emptied
    store.crashed_to_uncertain()
    rows = _rows(tmp_path / "store.db")
    assert rows["c1@example.com"] == ("queued", 1)  # one attempt, not two
    assert rows["c2@example.com"] == ("uncertain", 0)
    assert not log.path.exists()


def test_a_row_suppressed_or_cancelled_elsewhere_is_not_marked(
    store: SqlStore, tmp_path: Path
) -> None:
    send_id = _send(store)
    ledger = store.ledger()
    try:
        log = ledger.sendlog()
        assert log is not None
        a, b, c, *_ = ledger.next_batch(send_id, 0, 10)
        assert log.mark([], a.id)
        with sqlite3.connect(tmp_path / "store.db") as other:  # another process writes
            other.execute(
                "INSERT INTO suppressions (email_key, scope, reason, source, created_at)"
                " VALUES ('c2@example.com', 'marketing', 'unsubscribe', 'test', '2026-01-01')"
            )
            other.execute("UPDATE deliveries SET status = 'cancelled' WHERE id = ?", (c.id,))
        time.sleep(2 * sendlog.LOOK_EVERY)
        assert log.mark([Record(a.id, "sent", message_id="<a@x>")], b.id) is False
        assert log.mark([], c.id) is False
        log.close()
    finally:
        ledger.close()
    rows = _rows(tmp_path / "store.db")
    assert rows["c1@example.com"] == ("sent", 1)
    assert rows["c2@example.com"] == ("queued", 0) and rows["c3@example.com"][0] == "cancelled"


@pytest.mark.parametrize("backend", ["sqlite-memory", "postgresql"])
def test_only_a_store_in_a_sqlite_file_has_a_send_log(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = "sqlite://" if backend == "sqlite-memory" else str(request.getfixturevalue("pg_url"))
    s = open_store(url)
    ledger = s.ledger()
    try:
        assert ledger.sendlog() is None
    finally:
        ledger.close()
        s.close()


def test_each_message_is_marked_in_the_log_before_its_body_goes_out(repo: Repo) -> None:
    """End to end against a real SMTP server: when the server is asked to take a message's
    body, its row's `sending` mark is already in the log (or, folded, in the ledger); every
    message goes out once; the send leaves no log behind."""
    store_db = repo.root / ".commsync" / "store.db"
    log = Path(f"{store_db}-sendlog")

    def marked(address: str) -> bool:
        # the log first: a mark gone from it was folded, so the ledger has it by then (and
        # only whole lines: the apply, in this process, may be writing the next)
        starts = {orjson.loads(line)[0] for line in log.read_bytes().split(b"\n")[1:-1]}
        with sqlite3.connect(store_db) as conn:
            row_id, status = conn.execute(
                "SELECT id, status FROM deliveries WHERE email = ?", (address,)
            ).fetchone()
        return bool(status == "sending" or row_id in starts)

    assert news_checked_at_data(repo, 1200, marked) == [True] * 1200
    assert not log.exists()
    with sqlite3.connect(store_db) as conn:
        assert conn.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY 1").fetchall() == [
            ("sent", 1200)
        ]


def test_a_damaged_log_is_reported_and_changes_nothing(store: SqlStore, tmp_path: Path) -> None:
    from commsync.errors import StoreError

    send_id = _send(store)
    ledger = store.ledger()
    try:
        log = ledger.sendlog()
        assert isinstance(log, sendlog.FileSendLog)
        a, *_ = ledger.next_batch(send_id, 0, 10)
        log.mark([], a.id)
        log.mark([Record(a.id, "sent", message_id="<a@x>")], None)
        damaged = log.path.read_bytes().replace(b'"sent"', b'"no such status"')
    finally:
        ledger.close()
    log.path.write_bytes(damaged)
    before = _rows(tmp_path / "store.db")
    with pytest.raises(StoreError, match=r"store\.db-sendlog:3: the send log .* is damaged"):
        store.crashed_to_uncertain()
    assert _rows(tmp_path / "store.db") == before
    assert log.path.exists()  # kept for whoever looks into it
