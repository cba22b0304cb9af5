"""SQL written once for every backend and run over the database driver.

What a plan reads from the store — the live snapshot (store/live.py), the audience counts
(store/audience.py) and the parsed files it kept (store/parsed.py) — is written here once, as
plain SQL, and run two ways: by `SqlStore` over its SQLAlchemy connection (`ConnectionSql` in
store/sqlutil.py, on SQLite and PostgreSQL), and by the light reader over `sqlite3` directly
(`SqliteSql` in store/light.py), so `plan` on a SQLite store need not load SQLAlchemy (a fifth
of its start-up). The store's contract tests hold both to the same answers.

Statements use `?` placeholders (the SQLAlchemy side gives psycopg its `%s`) and never a `%`
literal. Values come back as the driver gives them: JSON columns as text on SQLite and as
objects on PostgreSQL, timestamps as SQLAlchemy's text on SQLite; `json_value` and `stamp`
read both.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

# Placeholders: `?`; psycopg wants `%s`. Timestamps: PostgreSQL takes datetimes, SQLite stores
# UTC text in the format SQLAlchemy's DateTime type writes and reads.
SQLITE_STAMP = "%Y-%m-%d %H:%M:%S.%f"


def driver_sql(text: str, pg: bool) -> str:
    """`text` with the driver's placeholder style."""
    return text.replace("?", "%s") if pg else text


def driver_stamp(when: datetime, pg: bool) -> Any:
    """A timestamp as the driver passes it for a UTCDateTime column."""
    return when if pg else when.astimezone(UTC).strftime(SQLITE_STAMP)


Statement = tuple[str, Sequence[Sequence[object]]]  # SQL and its parameter sets (executemany)


class Sql(Protocol):
    @property
    def pg(self) -> bool:
        """PostgreSQL (the few spellings that differ: `string_agg`, not `group_concat`)."""
        ...

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Every row of one query."""
        ...

    def keep(self, statements: Sequence[Statement]) -> bool:
        """Run `statements` in one transaction of their own, best effort: a store that refuses
        the write (a role that may only read, a lock held by an apply) returns False, and what
        was to be kept is just worked out again next time."""
        ...


def in_list(column: str, values: Collection[object]) -> tuple[str, list[object]]:
    """`column IN (?, …)` and its parameters; never true for no values (`IN ()` is not SQL)."""
    if not values:
        return "1 = 0", []
    return f"{column} IN ({', '.join('?' * len(values))})", list(values)


def json_value(value: Any) -> Any:
    """A JSON column's value: SQLite gives its text, psycopg the decoded object. (No column
    read here holds a bare JSON string.)"""
    return json.loads(value) if isinstance(value, str | bytes) else value


def stamp(value: Any) -> datetime | None:
    """A `UTCDateTime` column's value, timezone-aware: SQLite keeps SQLAlchemy's UTC text."""
    if value is None:
        return None
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(when, datetime)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
