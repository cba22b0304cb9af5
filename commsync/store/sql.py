"""The SQL store (SQLite or PostgreSQL through SQLAlchemy Core)."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import StaticPool

from commsync.errors import ConfigError, StoreError
from commsync.model import (
    Audience,
    BroadcastSpec,
    CustomerRecord,
    EmailStats,
    ImportCounts,
    LiveBroadcast,
    LiveSnapshot,
    LiveSystemEmail,
    MembershipRecord,
    ProductRecord,
    Provenance,
    SendProgress,
    SystemEmailFields,
    Targets,
)
from commsync.store import tables as t
from commsync.store.audience import count_audiences
from commsync.store.events import EventsMixin
from commsync.store.feed import FeedMixin
from commsync.store.migrate import ensure_schema
from commsync.store.ops import OpsMixin
from commsync.store.sends import SendsMixin

_CHUNK = 500


def _now() -> datetime:
    return datetime.now(UTC)


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Take transactions out of pysqlite's hands (it would run DDL outside them); `_sqlite_begin`
    # emits BEGIN itself. SQLAlchemy documents this recipe for SQLite.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    """BEGIN, or BEGIN IMMEDIATE (take the write lock now) when the connection asks for it."""
    immediate = conn.get_execution_options().get("sqlite_immediate", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_store_engine(url: str, pool_size: int = 5) -> Engine:
    """An engine for a store URL; `postgresql://` uses psycopg 3.

    `pool_size` connections stay open; as many again may open under load (`commsync serve`
    asks for more than the CLI: its thread pool runs many requests at once).
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"invalid store URL {url!r}: {exc}") from exc
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername.startswith("postgresql"):
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                "a PostgreSQL store needs `pip install 'commsync[postgres]'`"
            ) from exc
        return create_engine(
            parsed, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size * 2
        )
    if parsed.drivername != "sqlite":
        raise ConfigError(f"unsupported store URL {url!r}: use sqlite:/// or postgresql://")
    if parsed.database in (None, "", ":memory:"):
        engine = create_engine(
            "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        try:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the store's directory for {url}: {exc.strerror}"
            ) from exc
        engine = create_engine(parsed, pool_size=pool_size, max_overflow=pool_size * 2)
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _upsert(
    conn: Connection, table: Table, rows: list[dict[str, Any]], keys: Sequence[str]
) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    for chunk in _chunks(rows, 2000):
        stmt = dialect.insert(table).values(list(chunk))
        changing = {c: stmt.excluded[c] for c in chunk[0] if c not in keys}
        conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=changing))


class SqlStore(OpsMixin, SendsMixin, EventsMixin, FeedMixin):
    """A Store on SQLite or PostgreSQL. Migrates the schema on first use."""

    def __init__(self, engine: Engine, display_url: str) -> None:
        self.engine = engine
        # Single-statement reads (the feed's hot path) need no transaction: on PostgreSQL that
        # saves the BEGIN and ROLLBACK round trips, more than half of a feed request's time.
        self.reader = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql"
            else engine
        )
        self._display_url = display_url
        try:
            ensure_schema(engine, display_url)
            with engine.connect() as conn:
                value = conn.execute(
                    select(t.meta.c.value).where(t.meta.c.key == "store_id")
                ).scalar_one()
        except OperationalError as exc:
            raise StoreError(f"cannot open the store {display_url}: {exc.orig}") from exc
        self._store_id = str(value)

    @property
    def store_id(self) -> str:
        return self._store_id

    @property
    def display_url(self) -> str:
        return self._display_url

    def close(self) -> None:
        self.engine.dispose()

    # -- reference data ---------------------------------------------------------------------

    def product_slugs(self) -> frozenset[str]:
        with self.engine.connect() as conn:
            return frozenset(str(s) for s in conn.execute(select(t.products.c.slug)).scalars())

    def match_customers(self, refs: Collection[str]) -> Mapping[str, tuple[str, ...]]:
        found: dict[str, set[str]] = {ref: set() for ref in refs}
        c = t.customers.c
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(found)):
                lowered = [r.lower() for r in chunk]
                query = select(c.id, c.email_key, c.username).where(
                    c.id.in_(chunk) | c.email_key.in_(lowered) | c.username.in_(chunk)
                )
                for cid, email_key, username in conn.execute(query):
                    for ref in chunk:
                        if ref in (cid, username) or ref.lower() == email_key:
                            found[ref].add(str(cid))
        return {ref: tuple(sorted(ids)) for ref, ids in found.items()}

    def existing_customer_ids(self, ids: Collection[str]) -> frozenset[str]:
        out: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(ids))):
                out.update(
                    conn.execute(
                        select(t.customers.c.id).where(t.customers.c.id.in_(chunk))
                    ).scalars()
                )
        return frozenset(out)

    def count_audiences(
        self, targets: Collection[Targets], statuses: Sequence[str]
    ) -> Mapping[Targets, Audience]:
        with self.engine.connect() as conn:
            return count_audiences(conn, targets, statuses)

    # -- platform data ----------------------------------------------------------------------

    def _upsert_counted(
        self, table: Table, rows: list[dict[str, Any]], keys: Sequence[str]
    ) -> ImportCounts:
        key_cols = [table.c[k] for k in keys]
        wanted = {tuple(r[k] for k in keys) for r in rows}
        existing = 0
        with self.engine.begin() as conn:
            for chunk in _chunks(sorted(wanted)):
                if len(keys) == 1:
                    cond = key_cols[0].in_([k[0] for k in chunk])
                else:
                    cond = tuple_(*key_cols).in_(list(chunk))
                existing += int(
                    conn.execute(select(func.count()).select_from(table).where(cond)).scalar_one()
                )
            if rows:
                _upsert(conn, table, rows, keys)
        return ImportCounts(inserted=len(wanted) - existing, updated=existing)

    def upsert_customers(self, rows: Sequence[CustomerRecord]) -> ImportCounts:
        now = _now()
        values = [
            {
                "id": r.id,
                "email": r.email,
                "email_key": r.email.lower(),
                "username": r.username,
                "first_name": r.first_name,
                "last_name": r.last_name,
                "display_name": r.display_name,
                "locale": r.locale,
                "updated_at": now,
            }
            for r in rows
        ]
        return self._upsert_counted(t.customers, values, ["id"])

    def upsert_products(self, rows: Sequence[ProductRecord]) -> ImportCounts:
        now = _now()
        values = [{"slug": r.slug, "name": r.name, "updated_at": now} for r in rows]
        return self._upsert_counted(t.products, values, ["slug"])

    def upsert_memberships(self, rows: Sequence[MembershipRecord]) -> ImportCounts:
        now = _now()
        values = [
            {
                "customer_id": r.customer_id,
                "product_slug": r.product,
                "status": r.status,
                "updated_at": now,
            }
            for r in rows
        ]
        return self._upsert_counted(t.memberships, values, ["customer_id", "product_slug"])

    # -- managed objects --------------------------------------------------------------------

    def system_emails(self) -> dict[str, LiveSystemEmail]:
        with self.reader.connect() as conn:
            return {
                str(row.slug): _live_system_email(row)
                for row in conn.execute(select(t.system_emails))
            }

    def snapshot(self) -> LiveSnapshot:
        with self.engine.connect() as conn:
            progress = _progress(conn)
            broadcasts = {
                str(row.id): _live_broadcast(row, progress.get(str(row.id)))
                for row in conn.execute(select(t.broadcasts))
            }
            emails = {
                str(row.slug): _live_system_email(row)
                for row in conn.execute(select(t.system_emails))
            }
        return LiveSnapshot(self._store_id, broadcasts, emails)

    def put_broadcast(self, live: LiveBroadcast) -> None:
        with self.engine.begin() as conn:
            self._write_broadcast(conn, live)

    def _write_broadcast(self, conn: Connection, live: LiveBroadcast) -> None:
        now = _now()
        p = live.provenance
        values = {
            "kind": live.spec.kind,
            "spec": live.spec.to_json(),
            "spec_hash": live.spec.spec_hash(),
            "applied_hash": live.applied_hash,
            "status": live.status,
            "managed": live.managed,
            "path": p.path,
            "commit": p.commit,
            "author": p.author,
            "applied_at": p.applied_at,
            "updated_at": now,
        }
        found = conn.execute(select(t.broadcasts.c.id).where(t.broadcasts.c.id == live.id)).first()
        if found:
            conn.execute(update(t.broadcasts).where(t.broadcasts.c.id == live.id).values(values))
        else:
            conn.execute(insert(t.broadcasts).values(id=live.id, created_at=now, **values))
        conn.execute(
            delete(t.broadcast_targets).where(t.broadcast_targets.c.broadcast_id == live.id)
        )
        rows = _target_rows(live.id, live.spec.targets)
        if rows:
            conn.execute(insert(t.broadcast_targets), rows)

    def put_system_email(self, live: LiveSystemEmail) -> None:
        now = _now()
        p = live.provenance
        values = {
            "fields": live.fields.to_json(),
            "fields_hash": live.fields.fields_hash(),
            "applied_hash": live.applied_hash,
            "overrides": list(live.overrides),
            "base_version": live.base_version,
            "base_fields": None if live.base_fields is None else live.base_fields.to_json(),
            "managed_path": p.path,
            "commit": p.commit,
            "author": p.author,
            "applied_at": p.applied_at,
            "updated_at": now,
        }
        c = t.system_emails.c
        with self.engine.begin() as conn:
            if conn.execute(select(c.slug).where(c.slug == live.slug)).first():
                conn.execute(update(t.system_emails).where(c.slug == live.slug).values(values))
            else:
                conn.execute(
                    insert(t.system_emails).values(slug=live.slug, created_at=now, **values)
                )

    def delete_system_email(self, slug: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(t.system_emails).where(t.system_emails.c.slug == slug))


def _target_rows(broadcast_id: str, targets: Targets) -> list[dict[str, str]]:
    rows = (
        [{"broadcast_id": broadcast_id, "target_type": "all", "value": "*"}] if targets.all else []
    )
    rows += [
        {"broadcast_id": broadcast_id, "target_type": "product", "value": p}
        for p in targets.products
    ]
    rows += [
        {"broadcast_id": broadcast_id, "target_type": "customer", "value": c}
        for c in targets.customers
    ]
    return rows


def _progress(conn: Connection) -> dict[str, SendProgress]:
    """Counts by status of every broadcast send: kept ones for finished sends, counted for the rest."""
    counts: dict[str, dict[str, int]] = {}
    open_sends = []
    for send_id, broadcast_id, status, kept in conn.execute(
        select(t.sends.c.id, t.sends.c.broadcast_id, t.sends.c.status, t.sends.c.counts).where(
            t.sends.c.broadcast_id.is_not(None)
        )
    ):
        if status == "sent" and isinstance(kept, dict):
            counts[str(broadcast_id)] = {str(k): int(v) for k, v in kept.items()}
        else:
            open_sends.append(int(send_id))
            counts[str(broadcast_id)] = {}
    if open_sends:
        query = (
            select(t.sends.c.broadcast_id, t.deliveries.c.status, func.count())
            .join(t.deliveries, t.deliveries.c.send_id == t.sends.c.id)
            .where(t.sends.c.id.in_(open_sends))
            .group_by(t.sends.c.broadcast_id, t.deliveries.c.status)
        )
        for broadcast_id, status, n in conn.execute(query):
            counts[str(broadcast_id)][str(status)] = int(n)
    return {bid: SendProgress(total=sum(c.values()), **c) for bid, c in counts.items()}


def _provenance(row: Any, path: str | None) -> Provenance:
    return Provenance(path=path, commit=row.commit, author=row.author, applied_at=row.applied_at)


def _live_broadcast(row: Any, progress: SendProgress | None) -> LiveBroadcast:
    spec = BroadcastSpec.from_json(row.spec)
    if spec.kind == "email" and progress is None:
        progress = SendProgress()
    return LiveBroadcast(
        id=str(row.id),
        spec=spec,
        status=str(row.status),
        applied_hash=str(row.applied_hash),
        managed=bool(row.managed),
        provenance=_provenance(row, row.path),
        progress=progress if spec.kind == "email" else None,
    )


def _live_system_email(row: Any) -> LiveSystemEmail:
    return LiveSystemEmail(
        slug=str(row.slug),
        fields=SystemEmailFields.from_json(row.fields),
        applied_hash=str(row.applied_hash),
        overrides=tuple(sorted(row.overrides)),
        base_version=row.base_version,
        base_fields=None
        if row.base_fields is None
        else SystemEmailFields.from_json(row.base_fields),
        stats=EmailStats(int(row.sent_count), int(row.failed_count), row.last_sent_at),
        provenance=_provenance(row, row.managed_path),
    )


def open_store(url: str, pool_size: int = 5) -> SqlStore:
    """Open (and migrate on first use) the store at `url`."""
    try:
        display = make_url(url).render_as_string(hide_password=True)
    except ArgumentError as exc:
        raise ConfigError(f"invalid store URL {url!r}: {exc}") from exc
    return SqlStore(create_store_engine(url, pool_size), display)
