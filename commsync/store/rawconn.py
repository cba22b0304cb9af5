"""The ledger's raw DB-API connection, shared by its users in turns, and its transactions.

The delivery ledger (store/ledger.py) and an apply's send log (store/sendlog.py) talk to the
driver directly: SQLAlchemy's per-statement overhead would cost more than an SMTP exchange.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from commsync.store.plainsql import driver_sql, driver_stamp


class Shared:
    """A raw DB-API connection and the lock that serialises its users."""

    def __init__(self, engine: Engine) -> None:
        self.raw = engine.raw_connection()
        self.lock = threading.Lock()
        self.pg = engine.dialect.name == "postgresql"
        self.closed = False
        self._second, self._text = -1, ""
        self._sql: dict[str, str] = {}

    def sql(self, text: str) -> str:
        """`text` in the driver's placeholder style (converted once per statement)."""
        converted = self._sql.get(text)
        if converted is None:
            converted = self._sql[text] = driver_sql(text, self.pg)
        return converted

    def stamp(self, when: datetime) -> Any:
        return driver_stamp(when, self.pg)

    def now(self) -> Any:
        """The current time as the column stores it (formatted once per second on SQLite)."""
        when = datetime.now(UTC)
        if self.pg:
            return when
        second = int(when.timestamp())
        if second != self._second:
            self._second, self._text = second, driver_stamp(when.replace(microsecond=0), False)
        return self._text


@contextmanager
def transaction(db: Shared) -> Iterator[Any]:
    """A cursor in a transaction of its own on the ledger's connection: committed at the end,
    rolled back on any exception (the connection's users take turns)."""
    with db.lock:
        cursor = db.raw.cursor()
        try:
            if not db.pg:
                cursor.execute("BEGIN")
            yield cursor
            db.raw.commit() if db.pg else cursor.execute("COMMIT")
        except BaseException:
            db.raw.rollback() if db.pg else cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.close()
