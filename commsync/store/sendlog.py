"""An apply's send log: the ledger's per-message marks as appends to a file, folded in batches.

Before a message's body goes out its row must be durably marked `sending`, and its outcome
recorded after the server's reply (docs/delivery.md). In the ledger itself that is a commit per
message — grouped across connections, so each connection waits for the others at every
message. For a store in a SQLite file, an apply's send instead appends each mark, together with
the outcomes before it, to a log beside the database, `STORE.db-sendlog`, in one `write`: it
survives the apply being killed exactly as a commit does (SQLite's WAL with synchronous=NORMAL
makes the same promise: a process crash loses nothing, a power cut may lose the last commits),
and no connection waits for another. Every `FOLD_ROWS` outcomes or `FOLD_SECONDS` the log is
folded into the ledger in one transaction: the outcomes written, the rows still in flight
marked `sending`, and the log's generation recorded in `commsync_meta`; the log then starts afresh.

A crashed apply's log is folded by the next apply before anything else (`recover`): outcomes
recorded, rows marked and never finished left `sending`, which its recovery then reports as
uncertain. A log whose generation `commsync_meta` already records was folded before the crash, and is
not folded twice.

The ledger lags the log by at most one fold while a send runs, so `status` and `queue` may show
a message that is being sent as queued for that long. A row's last check — suppressed or
cancelled since its batch was read? — stays just before its mark: SQLite's `data_version`
tells when another connection has written, and only then are rows checked one by one.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from commsync.errors import StoreError
from commsync.model import DeliveryStatus, Record
from commsync.store.rawconn import Shared, transaction

FOLD_ROWS = 500
FOLD_SECONDS = 0.25
LOOK_EVERY = 0.001
_HEADER = b"commsync-sendlog 1 "
_META = "sendlog"  # the generation of the last log folded
_MARK = (
    "UPDATE deliveries SET status = 'sending', updated_at = ? WHERE id = ? AND status = 'queued'"
)
_MAY_START = (
    "SELECT 1 FROM deliveries d WHERE d.id = ? AND d.status = 'queued'"
    " AND NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.email_key = d.email_key)"
)
_SET_META = (
    "INSERT INTO commsync_meta (key, value) VALUES (?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


class _Ledger(Protocol):
    """What the log needs of the ledger (store/ledger.py)."""

    @property
    def shared(self) -> Shared: ...

    @property
    def read_upto(self) -> int:
        """The highest row id read for sending so far."""
        ...

    def record(self, cursor: Any, records: Sequence[Record], now: Any) -> None: ...


def log_path(ledger: _Ledger) -> Path | None:
    """Where the store's send log lives: beside its SQLite file; None for PostgreSQL or a
    database in memory."""
    db = ledger.shared
    if db.pg:
        return None
    cursor = db.raw.cursor()
    try:
        found = cursor.execute("PRAGMA database_list").fetchall()
    finally:
        cursor.close()
    main = next((row[2] for row in found if row[1] == "main"), "")
    return Path(f"{main}-sendlog") if main else None


def open_sendlog(ledger: _Ledger) -> FileSendLog | None:
    path = log_path(ledger)
    if path is None:
        return None
    recover(ledger, path)  # a crashed apply's log: folded before this one starts
    return FileSendLog(ledger, path)


def _encode(done: Sequence[Record], start: int | None) -> bytes:
    outcomes = [
        [
            r.delivery_id,
            str(r.status),
            r.detail,
            r.message_id,
            r.slug,
            r.retry_at.isoformat() if r.retry_at else None,
        ]
        for r in done
    ]
    return orjson.dumps([start, outcomes]) + b"\n"


def _decode(line: bytes) -> tuple[int | None, list[Record]]:
    start, outcomes = orjson.loads(line)
    records = [
        Record(
            int(i),
            DeliveryStatus(status),
            detail,
            message_id,
            slug,
            datetime.fromisoformat(retry) if retry else None,
        )
        for i, status, detail, message_id, slug, retry in outcomes
    ]
    return (None if start is None else int(start)), records


def _fold(
    ledger: _Ledger, records: Sequence[Record], flying: Sequence[int], generation: str
) -> None:
    """One transaction: the outcomes, the rows in flight marked `sending`, the generation."""
    db = ledger.shared
    now = db.now()
    with transaction(db) as cursor:
        ledger.record(cursor, records, now)
        if flying:
            cursor.executemany(db.sql(_MARK), [(now, i) for i in flying])
        cursor.execute(db.sql(_SET_META), (_META, generation))


def recover(ledger: _Ledger, path: Path) -> int:
    """Fold the log a crashed apply left, if any, and remove it; returns the lines folded."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    header, _, body = data.partition(b"\n")
    lines = body.split(b"\n")[:-1]  # a last line without its newline was never whole
    generation = header.removeprefix(_HEADER).decode("ascii", "replace")
    folded = 0
    if header.startswith(_HEADER) and lines:
        cursor = ledger.shared.raw.cursor()
        try:
            found = cursor.execute(
                "SELECT value FROM commsync_meta WHERE key = ?", (_META,)
            ).fetchall()
        finally:
            cursor.close()
        if not found or found[0][0] != generation:
            records: list[Record] = []
            flying: dict[int, None] = {}
            for number, line in enumerate(lines, start=2):
                try:
                    start, done = _decode(line)
                except (ValueError, TypeError) as exc:  # not what a log line is: damaged
                    raise StoreError(
                        f"{path}:{number}: the send log of an apply that stopped is damaged"
                        f" ({exc}); nothing was changed. Moved aside, what it recorded since"
                        " its last fold is lost to the ledger: messages it saw sent would go"
                        " out again"
                    ) from None
                for r in done:
                    flying.pop(r.delivery_id, None)
                records.extend(done)
                if start is not None:
                    flying[start] = None
            _fold(ledger, records, list(flying), generation)
            folded = len(lines)
    path.unlink(missing_ok=True)
    return folded


class FileSendLog:
    """The `SendLog` role on a file beside a SQLite store (see the module's docstring)."""

    def __init__(self, ledger: _Ledger, path: Path) -> None:
        self.ledger, self.path = ledger, path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        self.cursor = ledger.shared.raw.cursor()  # for the checks before each mark
        self.broken: OSError | None = None
        self.records: list[Record] = []  # outcomes logged since the last fold
        self.flying: dict[int, None] = {}  # rows marked and not finished, in order
        self.folded: set[int] = set()  # of those, the ones already `sending` in the ledger
        self.version = self._data_version()
        self.look_at = 0.0
        self.check_upto = 0  # rows up to this id were read before another connection wrote
        self.due = time.monotonic() + FOLD_SECONDS
        self._begin()

    def _begin(self) -> None:
        self.generation = secrets.token_hex(8)
        self._write(_HEADER + self.generation.encode() + b"\n")

    def _write(self, data: bytes) -> None:
        """Append whole lines; after a failed write (a full disk) nothing more is appended, so
        a line cut short can only be the last one, which recovery ignores."""
        if self.broken is not None:
            raise self.broken
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as exc:
            self.broken = exc
            raise

    def _data_version(self) -> int:
        return int(self.cursor.execute("PRAGMA data_version").fetchone()[0])

    def _may_start(self, row: int) -> bool:
        """The row is still queued and its address not suppressed. Rows were checked when their
        batch was read; only after another connection wrote are they checked again. (Whether
        one did is asked at most every `LOOK_EVERY` seconds: 10 µs a message otherwise.)"""
        now = time.monotonic()
        if now >= self.look_at:
            self.look_at = now + LOOK_EVERY
            version = self._data_version()
            if version != self.version:
                self.version, self.check_upto = version, self.ledger.read_upto
        if row > self.check_upto:
            return True
        return bool(self.cursor.execute(_MAY_START, (row,)).fetchall())

    def mark(self, done: Sequence[Record], start: int | None) -> bool:
        started = start is not None and self._may_start(start)
        self._write(_encode(done, start if started else None))
        flying = self.flying
        for r in done:
            if r.delivery_id in flying:
                del flying[r.delivery_id]
                self.folded.discard(r.delivery_id)
        self.records.extend(done)
        if started:
            assert start is not None
            flying[start] = None
        if len(self.records) >= FOLD_ROWS or time.monotonic() >= self.due:
            self.fold()
        return started or start is None

    def fold(self) -> None:
        self.due = time.monotonic() + FOLD_SECONDS
        if not self.records and not self.flying.keys() - self.folded:
            return
        fresh = [i for i in self.flying if i not in self.folded]
        _fold(self.ledger, self.records, fresh, self.generation)
        self.folded.update(fresh)
        self.records = []
        os.ftruncate(self.fd, 0)
        self._begin()

    def close(self) -> None:
        if self.fd < 0:
            return
        try:
            self.fold()
        finally:
            os.close(self.fd)
            self.fd = -1
            self.cursor.close()
        self.path.unlink(missing_ok=True)  # all of it is in the ledger now
