"""One apply at a time, the journal of applies and the signing key, in SQL.

Implements the `Control` role of `SqlStore`.
"""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from commsync.errors import CommsyncError
from commsync.model import JournalStatus, JsonObject
from commsync.store import tables as t
from commsync.store.revision import BUSY_TIMEOUT_MS
from commsync.store.roles import JournalEntry, LockHolder

LOCK_NAME = "apply"


class LockHeld(CommsyncError):
    """Another apply holds the lock."""

    def __init__(self, holder: LockHolder) -> None:
        super().__init__(
            f"another apply is running: held by {holder.describe()}. "
            f"If that process is gone, run `commsync unlock {holder.lock_id}`"
        )
        self.holder = holder


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(row: Any) -> LockHolder:
    return LockHolder(
        str(row.lock_id), str(row.holder), str(row.host), int(row.pid), row.started_at
    )


def _entry(row: Any) -> JournalEntry:
    return JournalEntry(
        row.id,
        row.plan_id,
        row.commit,
        row.author,
        row.host,
        row.pid,
        JournalStatus(row.status),
        row.summary,
        row.started_at,
        row.finished_at,
    )


class ControlMixin:
    engine: Engine

    # -- the apply lock ---------------------------------------------------------------------

    def current_lock(self) -> LockHolder | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.apply_lock).where(t.apply_lock.c.name == LOCK_NAME)).first()
        return None if row is None else _holder(row)

    def acquire_lock(self, holder: LockHolder) -> None:
        """Take the lock; a lock left by a dead process on this host is taken over."""
        values = {
            "name": LOCK_NAME,
            "lock_id": holder.lock_id,
            "holder": holder.holder,
            "host": holder.host,
            "pid": holder.pid,
            "started_at": holder.started_at,
        }
        for _ in range(2):
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(t.apply_lock).values(values))
                return
            except IntegrityError:
                current = self.current_lock()
                if current is None:
                    continue
                if current.host != holder.host or pid_alive(current.pid):
                    raise LockHeld(current) from None
                self.unlock(current.lock_id)
        current = self.current_lock()
        raise LockHeld(current) if current else CommsyncError("could not take the apply lock")

    def release_lock(self, lock_id: str) -> None:
        self.unlock(lock_id)

    def unlock(self, lock_id: str) -> LockHolder | None:
        """Remove the lock if `lock_id` names it; returns the holder removed."""
        current = self.current_lock()
        if current is None or current.lock_id != lock_id:
            return None
        with self.engine.begin() as conn:
            conn.execute(delete(t.apply_lock).where(t.apply_lock.c.lock_id == lock_id))
        return current

    # -- the journal ------------------------------------------------------------------------

    def start_journal(
        self, plan_id: str, commit: str | None, author: str | None, host: str, pid: int
    ) -> int:
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            running = conn.execute(
                select(t.apply_journal).where(t.apply_journal.c.status == JournalStatus.RUNNING)
            ).all()
            for row in running:  # earlier applies that died holding the lock
                if row.host != host or not pid_alive(int(row.pid or 0)):
                    conn.execute(
                        update(t.apply_journal)
                        .where(t.apply_journal.c.id == row.id)
                        .values(status=str(JournalStatus.INTERRUPTED), finished_at=now)
                    )
            values = {
                "plan_id": plan_id,
                "plan_hash": plan_id,
                "commit": commit,
                "author": author,
                "host": host,
                "pid": pid,
            }
            result = conn.execute(
                insert(t.apply_journal).values(
                    status=str(JournalStatus.RUNNING), started_at=now, **values
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def finish_journal(self, journal_id: int, status: JournalStatus, summary: JsonObject) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(t.apply_journal)
                .where(t.apply_journal.c.id == journal_id)
                .values(status=str(status), summary=summary, finished_at=datetime.now(UTC))
            )

    def journal_for_plan(self, plan_id: str) -> JournalEntry | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.apply_journal).where(t.apply_journal.c.plan_id == plan_id)
            ).first()
        return None if row is None else _entry(row)

    def recent_applies(self, limit: int = 10) -> list[JournalEntry]:
        query = select(t.apply_journal).order_by(t.apply_journal.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_entry(row) for row in conn.execute(query)]

    # -- health -------------------------------------------------------------------------------

    def probe(self, timeout: float) -> None:
        """Raise unless the store takes a write within `timeout` seconds (`/healthz`).

        On SQLite that is its write lock (readers never wait for it in WAL mode, so a read
        would not notice another process holding it); on PostgreSQL a read of one of its tables.
        """
        if self.engine.dialect.name != "sqlite" or self.engine.url.database in (
            None,
            "",
            ":memory:",
        ):
            with self.engine.connect() as conn:  # a table of ours: its schema must be there
                conn.execute(select(t.meta.c.value).where(t.meta.c.key == "store_id")).one()
            return
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            try:
                cursor.execute("BEGIN IMMEDIATE")
                cursor.execute("ROLLBACK")
            finally:
                cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                cursor.close()
        finally:
            raw.close()

    # -- the signing key --------------------------------------------------------------------

    def signing_key(self) -> bytes:
        """The store's key for tokens and unsubscribe links, generated on first use."""
        query = select(t.meta.c.value).where(t.meta.c.key == "signing_key")
        with self.engine.connect() as conn:
            value = conn.execute(query).scalar_one_or_none()
        if value is None:
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        insert(t.meta).values(key="signing_key", value=secrets.token_hex(32))
                    )
            except IntegrityError:
                pass  # another process created it first: use theirs
            with self.engine.connect() as conn:
                value = conn.execute(query).scalar_one()
        return bytes.fromhex(str(value))

    def rotate_signing_key(self) -> None:
        """A new signing key: customer tokens issued so far stop working.

        Unsubscribe links already sent keep working (their tokens are stored); new sends use
        tokens made with the new key.
        """
        values = {"key": "signing_key", "value": secrets.token_hex(32)}
        with self.engine.begin() as conn:
            updated = conn.execute(
                update(t.meta).where(t.meta.c.key == "signing_key").values(value=values["value"])
            ).rowcount
            if not updated:
                conn.execute(insert(t.meta).values(values))
