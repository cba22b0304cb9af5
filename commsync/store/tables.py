"""The live store's tables (SQLAlchemy Core). Migrations in `migrations/` create and evolve them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored as UTC and always read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

meta = Table(
    "commsync_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

_QUEUED = text("status = 'queued'")
_DELETED = text("deleted_at IS NOT NULL")

customers = Table(
    "customers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("email", String(320), nullable=False),
    Column("email_key", String(320), nullable=False, index=True),
    Column("username", String(255), index=True),
    Column("first_name", String(255)),
    Column("last_name", String(255)),
    Column("display_name", String(255)),
    Column("locale", String(35)),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("deleted_at", UTCDateTime),  # absent from a `customers import --sync`
    # the few marked deleted, so `all` is counted without reading every customer
    Index("ix_customers_deleted", "deleted_at", sqlite_where=_DELETED),
)

products = Table(
    "products",
    metadata,
    Column("slug", String(128), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

memberships = Table(
    "memberships",
    metadata,
    Column(
        "customer_id", String(64), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    ),
    Column(
        "product_slug", String(128), ForeignKey("products.slug", ondelete="CASCADE"), nullable=False
    ),
    Column("status", String(32), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("customer_id", "product_slug"),
    Index("ix_memberships_audience", "product_slug", "status", "customer_id"),
    sqlite_with_rowid=False,  # clustered by customer: the audience histogram reads it in one pass
)

# How many customers qualify for each exact set of products (slugs sorted, joined by spaces), for
# one list of statuses: the plan's one-pass audience count, kept (store/audience.py); current
# while its generation in audience_histogram_keys is the memberships generation in commsync_meta.
# Writers of a few customers' memberships keep it current (store/histograms.py).
audience_histograms = Table(
    "audience_histograms",
    metadata,
    Column("statuses", String(512), nullable=False),
    Column("products", Text, nullable=False),
    Column("customers", Integer, nullable=False),
    PrimaryKeyConstraint("statuses", "products"),
)

audience_histogram_keys = Table(
    "audience_histogram_keys",
    metadata,
    Column("statuses", String(512), primary_key=True),
    Column("generation", Integer, nullable=False),
)

# Broadcast files as the loader parsed and checked them, by a digest of the file, its path, the
# limits and this commsync's code (repo/parsecache.py): a plan reads the files it has seen before
# from here instead of parsing them again.
parsed_files = Table(
    "parsed_files",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("entry", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Whose notices feed a write changed (customer_id NULL: everyone's), numbered by the
# feed generation in commsync_meta: what `serve` processes drop from their response caches.
feed_changes = Table(
    "feed_changes",
    metadata,
    Column("seq", BigInteger, nullable=False, index=True),
    Column("customer_id", String(64)),
)

broadcasts = Table(
    "broadcasts",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("spec_hash", String(80), nullable=False),
    Column("applied_hash", String(80), nullable=False),
    Column("status", String(16), nullable=False),
    Column("managed", Boolean, nullable=False, default=True),
    Column("path", Text),
    Column("commit", String(64)),
    Column("author", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("applied_at", UTCDateTime),
    Column("sent_at", UTCDateTime),
)

broadcast_targets = Table(
    "broadcast_targets",
    metadata,
    Column(
        "broadcast_id", String(128), ForeignKey("broadcasts.id", ondelete="CASCADE"), nullable=False
    ),
    Column("target_type", String(16), nullable=False),  # all | product | customer
    Column("value", String(128), nullable=False),
    PrimaryKeyConstraint("broadcast_id", "target_type", "value"),
    Index("ix_broadcast_targets_lookup", "target_type", "value"),
)

system_emails = Table(
    "system_emails",
    metadata,
    Column("slug", String(128), primary_key=True),
    Column("fields", JSON, nullable=False),
    Column("fields_hash", String(80), nullable=False),
    Column("applied_hash", String(80), nullable=False),
    Column("overrides", JSON, nullable=False),
    Column("base_version", Integer),
    Column("base_fields", JSON),
    Column("managed_path", Text),
    Column("commit", String(64)),
    Column("author", Text),
    Column("applied_at", UTCDateTime),
    Column("sent_count", Integer, nullable=False, default=0),
    Column("failed_count", Integer, nullable=False, default=0),
    Column("cancelled_count", Integer, nullable=False, default=0, server_default="0"),
    Column("last_sent_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("type", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("idempotency_key", String(255), unique=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("result", JSON),
)

sends = Table(
    "sends",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # broadcast | system_email | test
    Column("broadcast_id", String(128), ForeignKey("broadcasts.id"), unique=True),
    Column("system_email_slug", String(128)),
    # the system email's applied_hash when its event queued this send (None: before 0003)
    Column("email_hash", String(80)),
    Column("event_id", Integer, ForeignKey("events.id")),
    Column("recipients", Integer, nullable=False, default=0),
    Column("status", String(16), nullable=False),
    # Delivery counts by status, kept when a send finishes so plans need not count the ledger.
    Column("counts", JSON),
    Column("created_at", UTCDateTime, nullable=False),
    # a broadcast's send that the delivery workers deliver (not the apply that started it)
    Column("by_workers", Boolean, nullable=False, default=False, server_default=false()),
)

# One row per delivery worker process: its heartbeat (`seen_at`). A worker silent for
# `mail.worker_timeout` is gone: what it claimed goes to the others, what it was sending is
# uncertain. Also how plan and status know whether scheduled sends have a worker to start them.
workers = Table(
    "workers",
    metadata,
    Column("id", String(128), primary_key=True),  # the claimer: host:pid:random
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("seen_at", UTCDateTime, nullable=False),
    Column("stopped_at", UTCDateTime),  # stopped cleanly, or found gone and recovered
)


deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("send_id", Integer, ForeignKey("sends.id", ondelete="CASCADE"), nullable=False),
    Column("customer_id", String(64)),
    Column("email", String(320), nullable=False),
    Column("email_key", String(320), nullable=False),
    # queued | sending | sent | failed | suppressed | uncertain
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("message_id", String(255)),
    Column("due_at", UTCDateTime, nullable=False),
    Column("claimed_by", String(128)),
    Column("claimed_at", UTCDateTime),
    Column("sent_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    # System emails are rendered when their event arrives; broadcasts are built when sent.
    Column("message", LargeBinary),
    UniqueConstraint("send_id", "email_key"),
    # Partial indexes over queued rows only: a row leaves them once, when it starts sending, so
    # the per-message status changes touch as few index pages as possible. (PostgreSQL's WHERE:
    # `declare_postgresql`.)
    Index("ix_deliveries_queued", "send_id", "id", sqlite_where=_QUEUED),
    Index("ix_deliveries_due", "due_at", sqlite_where=_QUEUED),
)


def declare_postgresql() -> None:
    """The PostgreSQL side of the partial indexes, declared when a PostgreSQL store is opened:
    naming a dialect's option loads that dialect (20–45 ms of every command's start-up), which
    a SQLite store never needs. The migrations create the indexes either way."""
    for index in deliveries.indexes:
        if index.name in ("ix_deliveries_queued", "ix_deliveries_due"):
            index.dialect_kwargs["postgresql_where"] = _QUEUED
    for index in customers.indexes:
        if index.name == "ix_customers_deleted":
            index.dialect_kwargs["postgresql_where"] = _DELETED


dismissals = Table(
    "dismissals",
    metadata,
    Column(
        "broadcast_id", String(128), ForeignKey("broadcasts.id", ondelete="CASCADE"), nullable=False
    ),
    Column("customer_id", String(64), nullable=False),
    Column("dismissed_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("broadcast_id", "customer_id"),
    Index("ix_dismissals_customer", "customer_id", "broadcast_id"),  # a customer's, for the feed
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("email_key", String(320), primary_key=True),
    Column("scope", String(16), nullable=False),  # marketing | all
    Column("reason", String(32), nullable=False),  # unsubscribe | hard_bounce | manual
    Column("source", Text),
    Column("created_at", UTCDateTime, nullable=False),
)

unsubscribe_tokens = Table(
    "unsubscribe_tokens",
    metadata,
    Column("token", String(64), primary_key=True),
    Column("email_key", String(320), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

apply_journal = Table(
    "apply_journal",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plan_id", String(80), unique=True),
    Column("plan_hash", String(80)),
    Column("commit", String(64)),
    Column("author", Text),
    Column("host", Text),
    Column("pid", Integer),
    Column("status", String(16), nullable=False),  # running | succeeded | failed
    Column("summary", JSON),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
)

apply_lock = Table(
    "apply_lock",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("lock_id", String(64), nullable=False),
    Column("holder", Text, nullable=False),
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
)
