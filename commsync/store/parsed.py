"""Broadcast files as a plan parsed them, kept for the next plan (repo/parsecache.py), in plain
SQL (store/plainsql.py): `SqlStore` and the light SQLite reader read and keep them alike.

Implements the `ParsedFiles` role.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta

from commsync.store.plainsql import Sql, driver_stamp, in_list

KEPT_FOR = timedelta(days=30)  # then parsed again once (a row is not touched when it is read)
_CHUNK = 500
_KEEP = (
    "INSERT INTO parsed_files (key, entry, created_at) VALUES (?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET entry = excluded.entry, created_at = excluded.created_at"
)


def read_parsed(db: Sql, keys: Collection[str]) -> dict[str, str]:
    """The kept entries of those `keys` that the store has."""
    found: dict[str, str] = {}
    ordered = list(keys)
    for i in range(0, len(ordered), _CHUNK):
        chosen, params = in_list("key", ordered[i : i + _CHUNK])
        rows = db.rows(f"SELECT key, entry FROM parsed_files WHERE {chosen}", params)
        found.update((str(key), str(entry)) for key, entry in rows)
    return found


def keep_parsed(db: Sql, entries: Mapping[str, str]) -> None:
    """Keep `entries` (replacing a kept entry of the same key: one that could not be read)
    and drop those older than KEPT_FOR. Best effort: a store that refuses the write (a role
    that may only read, a lock held by an apply) only costs the next plan the parse."""
    if not entries:
        return
    now = datetime.now(UTC)
    stamp = driver_stamp(now, db.pg)
    old = driver_stamp(now - KEPT_FOR, db.pg)
    db.keep(
        [
            ("DELETE FROM parsed_files WHERE created_at < ?", [(old,)]),
            (_KEEP, [(key, entry, stamp) for key, entry in entries.items()]),
        ]
    )


class ParsedFilesMixin:
    def plain_sql(self) -> AbstractContextManager[Sql]:
        raise NotImplementedError

    def parsed_files(self, keys: Collection[str]) -> dict[str, str]:
        with self.plain_sql() as db:
            return read_parsed(db, keys)

    def keep_parsed_files(self, entries: Mapping[str, str]) -> None:
        with self.plain_sql() as db:
            keep_parsed(db, entries)
