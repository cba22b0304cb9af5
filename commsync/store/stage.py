"""The stage of a bulk import: a temporary table the file's rows are streamed into, in batches
(`COPY` on PostgreSQL, `executemany` on SQLite), for the import to check and merge in SQL."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from commsync.store.roles import ImportProgress as Progress

BATCH = 10_000  # rows per executemany / progress report
STAGE = "commsync_import_stage"
# PostgreSQL keeps a temporary table in the session's own buffers, 8 MB by default: a stage of
# 1.5M memberships (~100 MB with its key index) went through temporary files instead (1.8 s
# of a 17 s import). A session that used a temporary table with other buffers refuses the
# setting: its import goes on with what the session has.
_STAGE_BUFFERS = "256MB"


def create_stage(conn: Connection, columns: Sequence[str], pg: bool) -> None:
    """The stage, empty: a line number and `columns`, all text."""
    # On PostgreSQL bytewise order for the stage's own key index and sorts: abbreviated keys
    # and memcmp instead of the database's collation (1.5M memberships: 2.2 -> 0.8 s);
    # equality, all the merge compares, is bytewise under any deterministic collation.
    text = 'TEXT COLLATE "C"' if pg else "TEXT"
    typed = ", ".join(f"{c} {text}" for c in columns)
    if pg:
        try:
            with conn.begin_nested():
                conn.exec_driver_sql(f"SET LOCAL temp_buffers = '{_STAGE_BUFFERS}'")
        except DBAPIError:  # the session's temporary tables have other buffers already
            pass
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {STAGE} (line INTEGER NOT NULL, {typed}) ON COMMIT DROP"
        )
    else:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{STAGE}")
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {STAGE} (line INTEGER NOT NULL, {typed})")


def fill_stage(
    conn: Connection,
    names: Sequence[str],
    batches: Iterable[list[tuple[Any, ...]]],
    pg: bool,
    progress: Progress | None,
) -> None:
    """Stream `batches` of rows (values for `names`) into the stage."""
    staged = 0
    if pg:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            with cursor.copy(f"COPY {STAGE} ({', '.join(names)}) FROM STDIN") as copy:
                for batch in batches:
                    for row in batch:
                        copy.write_row(row)
                    staged += len(batch)
                    if progress:
                        progress(staged)
        finally:
            cursor.close()
    else:
        insert = f"INSERT INTO {STAGE} VALUES ({', '.join('?' * len(names))})"
        for batch in batches:
            conn.exec_driver_sql(insert, batch)
            staged += len(batch)
            if progress:
                progress(staged)
    if pg:  # autovacuum never sees a temporary table: without statistics the joins plan blind
        conn.exec_driver_sql(f"ANALYZE {STAGE}")
