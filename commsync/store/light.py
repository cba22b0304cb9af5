"""Reads of a SQLite store without SQLAlchemy, for `validate`, `token` and `plan`.

`validate` asks the store two things: the product slugs, and which customers the repository's
refs name; `token` asks which customer a ref names, that customer, and the signing key. Loading
SQLAlchemy and the store's tables for them was a third of their start-up. This reader asks them
over the driver directly, read-only — but only of a SQLite file already at this commsync's schema
revision; a store to create or migrate, a PostgreSQL store, or any error on the way answers None,
and the caller opens the store itself (so does `token` when the store has no signing key yet:
making one is a write).

`plan` reads more — the live snapshot, the audience counts, the broadcast files it parsed
before — and keeps two caches (the audience histogram, the parsed files). `SqlitePlanReader`
runs the same plain SQL as `SqlStore` for them (store/plainsql.py: live.py, audience.py,
parsed.py) over `sqlite3`; its only writes are those caches, best effort, on a connection of
their own.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from commsync.errors import StoreError
from commsync.model import Audience, CustomerRecord, LiveSnapshot, Targets
from commsync.store import matching
from commsync.store.audience import count_audiences
from commsync.store.live import read_snapshot
from commsync.store.parsed import ParsedFilesMixin
from commsync.store.plainsql import Statement
from commsync.store.revision import BUSY_TIMEOUT_MS, HEAD, VERSION_TABLE

log = logging.getLogger(__name__)

_PREFIX = "sqlite:///"


class SqliteReferences:
    """The `References` a repository's targets are checked against, and what `token` reads,
    over sqlite3."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection for one question; a failure is the store's (StoreError)."""
        try:
            conn = sqlite3.connect(f"file:{quote(str(self.path))}?mode=ro", uri=True)
            try:
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                yield conn
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the store {self.path}: {exc}") from exc

    def _one(self, sql: str, params: Sequence[object]) -> tuple[Any, ...] | None:
        with self._reading() as conn:
            row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
            return row

    def revision(self) -> str | None:
        row = self._one(f"SELECT version_num FROM {VERSION_TABLE}", ())
        return None if row is None else str(row[0])

    def signing_key(self) -> bytes | None:
        """The store's signing key; None while it has none (the store makes one)."""
        row = self._one("SELECT value FROM commsync_meta WHERE key = 'signing_key'", ())
        return None if row is None else bytes.fromhex(str(row[0]))

    def customer(self, customer_id: str) -> CustomerRecord | None:
        """As the store answers it: None if there is none, or it was marked deleted."""
        row = self._one(
            "SELECT id, email, username, first_name, last_name, display_name, locale"
            " FROM customers WHERE id = ? AND deleted_at IS NULL",
            (customer_id,),
        )
        return None if row is None else CustomerRecord(*row)

    def product_slugs(self) -> frozenset[str]:
        with self._reading() as conn:
            return frozenset(str(r[0]) for r in conn.execute("SELECT slug FROM products"))

    def match_customers(self, refs: Collection[str]) -> Mapping[str, tuple[str, ...]]:
        with self._reading() as conn:

            def fetch(chunk: Sequence[str], lowered: Sequence[str]) -> Iterable[Sequence[Any]]:
                marks = ", ".join("?" * len(chunk))
                sql = (
                    "SELECT id, email_key, username FROM customers"
                    f" WHERE id IN ({marks}) OR email_key IN ({marks}) OR username IN ({marks})"
                )
                return conn.execute(sql, [*chunk, *lowered, *chunk]).fetchall()

            return matching.match_customers(refs, fetch)


class SqliteSql:
    """`plainsql.Sql` over a read-only `sqlite3` connection; `keep` writes on one of its own."""

    pg = False

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def keep(self, statements: Sequence[Statement]) -> bool:
        try:
            conn = sqlite3.connect(
                f"file:{quote(str(self.path))}?mode=rw", uri=True, isolation_level=None
            )
            try:
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                conn.execute("BEGIN IMMEDIATE")
                for sql, many in statements:
                    conn.executemany(sql, many)
                conn.execute("COMMIT")
            finally:
                conn.close()  # without the COMMIT: rolled back
        except sqlite3.Error as exc:
            log.debug("not kept: %s", exc)
            return False
        return True


class SqlitePlanReader(ParsedFilesMixin, SqliteReferences):
    """What `plan` reads from a SQLite store (`roles.PlanSource`), over `sqlite3`."""

    @contextmanager
    def plain_sql(self) -> Iterator[SqliteSql]:
        with self._reading() as conn:
            yield SqliteSql(conn, self.path)

    @property
    def store_id(self) -> str:
        row = self._one("SELECT value FROM commsync_meta WHERE key = 'store_id'", ())
        if row is None:
            raise StoreError(f"the store {self.path} has no id")
        return str(row[0])

    def snapshot(self) -> LiveSnapshot:
        store_id = self.store_id
        with self.plain_sql() as db:
            return read_snapshot(db, store_id)

    def count_audiences(
        self, targets: Collection[Targets], statuses: Sequence[str]
    ) -> Mapping[Targets, Audience]:
        with self.plain_sql() as db:
            return count_audiences(db, targets, statuses)


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite store named by absolute path; None for any other store URL."""
    rest = url[len(_PREFIX) :] if url.startswith(_PREFIX) else ""
    if not rest.startswith("/") or "?" in rest:
        return None
    return Path(rest)


def open_references(url: str) -> SqlitePlanReader | None:
    """A light reader of the store at `url`, or None when the store itself must be opened."""
    path = sqlite_file(url)
    if path is None or not path.is_file():
        return None  # not a SQLite file by absolute path, or opening the store creates it
    reader = SqlitePlanReader(path)
    try:
        if reader.revision() != HEAD:
            return None  # opening the store migrates it (or refuses a newer one)
    except StoreError:
        return None  # not readable as it is: the store says why, if it cannot be used
    return reader
