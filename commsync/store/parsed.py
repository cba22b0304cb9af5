"""Broadcast files as a plan parsed them, kept for the next plan, in SQL.

Implements the `ParsedFiles` role of `SqlStore` (what repo/parsecache.py reads and writes).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from datetime import timedelta

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import DBAPIError

from commsync.store import tables as t
from commsync.store.sqlutil import chunks, now, upsert

log = logging.getLogger(__name__)

KEPT_FOR = timedelta(days=30)  # then parsed again once (a row is not touched when it is read)


class ParsedFilesMixin:
    engine: Engine

    def parsed_files(self, keys: Collection[str]) -> dict[str, str]:
        """The kept entries of those `keys` that the store has."""
        c = t.parsed_files.c
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(list(keys)):
                rows = conn.execute(select(c.key, c.entry).where(c.key.in_(chunk)))
                found.update((str(key), str(entry)) for key, entry in rows)
        return found

    def keep_parsed_files(self, entries: Mapping[str, str]) -> None:
        """Keep `entries` (replacing a kept entry of the same key: one that could not be read)
        and drop those older than KEPT_FOR. Best effort: a store that refuses the write (a role
        that may only read, a lock held by an apply) only costs the next plan the parse."""
        if not entries:
            return
        stamp = now()
        rows = [{"key": k, "entry": v, "created_at": stamp} for k, v in entries.items()]
        try:
            with self.engine.begin() as conn:
                old = t.parsed_files.c.created_at < stamp - KEPT_FOR
                conn.execute(delete(t.parsed_files).where(old))
                upsert(conn, t.parsed_files, rows, ["key"])
        except DBAPIError as exc:
            log.debug("parsed files not kept: %s", exc.orig)
