"""One contract for every store backend: SQLite file, SQLite in memory, PostgreSQL."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from commsync.errors import StoreTooNew
from commsync.model import (
    Audience,
    BroadcastSpec,
    CustomerRecord,
    EmailStats,
    LiveBroadcast,
    LiveSnapshot,
    LiveSystemEmail,
    MembershipRecord,
    ProductRecord,
    Provenance,
    SystemEmailFields,
    Targets,
)
from commsync.store import tables as t
from commsync.store.light import SqlitePlanReader, open_references
from commsync.store.migrate import HEAD, VERSION_TABLE, known_revisions
from commsync.store.sql import SqlStore, open_store

STATUSES = ("active", "trialing")


@pytest.fixture
def store(store_url: str) -> SqlStore:
    s = open_store(store_url)
    yield s
    s.close()


def _light(store: SqlStore) -> SqlitePlanReader | None:
    """The light reader of a SQLite file store (store/light.py); None for the other backends."""
    url = store.engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    light = open_references(f"sqlite:///{url.database}")
    assert light is not None
    return light


def _snapshot(store: SqlStore) -> LiveSnapshot:
    """The store's snapshot; on a SQLite file, the light reader's (which `plan` reads) must
    be the same."""
    found = store.snapshot()
    light = _light(store)
    if light is not None:
        assert light.snapshot() == found
        assert light.store_id == store.store_id
    return found


def _counts(
    store: SqlStore, selections: Collection[Targets], statuses: Sequence[str]
) -> Mapping[Targets, Audience]:
    """The store's audience counts; on a SQLite file the light reader counts first (and keeps
    the histogram it counts, which the store then reads) and must agree."""
    light = _light(store)
    first = None if light is None else light.count_audiences(selections, statuses)
    found = store.count_audiences(selections, statuses)
    if first is not None:
        assert first == found
    return found


def _seed(store: SqlStore) -> None:
    store.upsert_products(
        [
            ProductRecord("pro", "Pro"),
            ProductRecord("starter", "Starter"),
            ProductRecord("empty", "Empty"),
        ]
    )
    store.upsert_customers(
        [
            CustomerRecord("1", "Ada@Example.com", "ada", "Ada", "Lovelace"),
            CustomerRecord("2", "grace@example.com", "grace"),
            CustomerRecord("3", "alan@example.org", "aturing"),
            CustomerRecord("4", "kat@example.net", "1"),  # username equal to another customer's id
        ]
    )
    store.upsert_memberships(
        [
            MembershipRecord("1", "pro", "active"),
            MembershipRecord("1", "starter", "active"),
            MembershipRecord("2", "pro", "trialing"),
            MembershipRecord("3", "pro", "cancelled"),
            MembershipRecord("3", "starter", "expired"),
        ]
    )


def test_schema_is_migrated_to_head_and_store_id_is_stable(store_url: str) -> None:
    first = open_store(store_url)
    with first.engine.connect() as conn:
        version = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one()
    assert version == HEAD
    assert max(known_revisions()) == HEAD
    if store_url != "sqlite://":  # a memory store lives and dies with its engine
        again = open_store(store_url)
        assert again.store_id == first.store_id
        again.close()
    assert len(first.store_id) == 32
    first.close()


def test_upserts_count_inserts_and_updates(store: SqlStore) -> None:
    counts = store.upsert_customers(
        [CustomerRecord("1", "a@example.com"), CustomerRecord("2", "b@example.com")]
    )
    assert (counts.inserted, counts.updated) == (2, 0)
    counts = store.upsert_customers(
        [CustomerRecord("2", "new@example.com", "bee"), CustomerRecord("3", "c@example.com")]
    )
    assert (counts.inserted, counts.updated) == (1, 1)
    assert store.match_customers(["new@example.com", "b@example.com"]) == {
        "new@example.com": ("2",),
        "b@example.com": (),
    }
    store.upsert_products([ProductRecord("pro", "Pro")])
    store.upsert_memberships([MembershipRecord("2", "pro", "active")])
    counts = store.upsert_memberships([MembershipRecord("2", "pro", "cancelled")])
    assert (counts.inserted, counts.updated) == (0, 1)
    audience = _counts(store, [Targets(products=("pro",))], STATUSES)
    assert audience[Targets(products=("pro",))].total == 0


def test_customer_refs_match_id_email_any_case_and_username(store: SqlStore) -> None:
    _seed(store)
    found = store.match_customers(["ada@example.COM", "grace", "3", "nobody", "1"])
    assert found["ada@example.COM"] == ("1",)
    assert found["grace"] == ("2",)
    assert found["3"] == ("3",)
    assert found["nobody"] == ()
    assert found["1"] == ("1", "4")  # ambiguous: an id and another customer's username
    assert store.existing_customer_ids(["1", "3", "99"]) == frozenset({"1", "3"})
    assert store.product_slugs() == frozenset({"pro", "starter", "empty"})


def test_the_light_sqlite_reader_answers_references_as_the_store_does(tmp_path: Path) -> None:
    """`validate` reads a SQLite store's references without SQLAlchemy: the same answers as the
    store's, for ids, emails in any case, usernames, ambiguous and unknown refs (more refs than
    one query's chunk)."""
    from commsync.store.light import open_references

    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = open_store(url)
    try:
        _seed(store)
        refs = ["ada@example.COM", "grace", "3", "nobody", "1", "KAT@example.net", "aturing"]
        refs += [f"missing-{i}" for i in range(700)]
        light = open_references(url)
        assert light is not None
        assert light.match_customers(refs) == store.match_customers(refs)
        assert light.product_slugs() == store.product_slugs()
        for customer_id in ("1", "2", "4", "99"):
            assert light.customer(customer_id) == store.customer(customer_id)
        assert light.signing_key() is None  # `token` then opens the store, which makes one
        key = store.signing_key()
        assert light.signing_key() == key
        store.delete_customer("2")
        assert light.customer("2") is None and store.customer("2") is None
    finally:
        store.close()


def test_the_light_reader_steps_aside_for_any_store_it_cannot_read_as_it_is(
    tmp_path: Path, pg_url: str
) -> None:
    """A store to create, to migrate, or not a SQLite file: the store itself is opened (which
    creates, migrates or refuses it)."""
    from commsync.store.light import open_references

    assert open_references(f"sqlite:///{tmp_path / 'none.db'}") is None
    assert open_references("sqlite://") is None
    assert open_references("sqlite:///relative.db") is None
    assert open_references(pg_url) is None
    url = f"sqlite:///{tmp_path / 'store.db'}"
    open_store(url).close()
    assert open_references(url) is not None
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '0007'"))
    engine.dispose()
    assert open_references(url) is None
    (tmp_path / "junk.db").write_bytes(b"not a database")
    assert open_references(f"sqlite:///{tmp_path / 'junk.db'}") is None


def test_a_store_the_light_reader_cannot_read_is_a_store_error(tmp_path: Path) -> None:
    """Past the revision check, a failing read is named as the store's, not a crash."""
    import sqlite3

    from commsync.errors import StoreError
    from commsync.store.light import open_references

    url = f"sqlite:///{tmp_path / 'store.db'}"
    open_store(url).close()
    light = open_references(url)
    assert light is not None
    with sqlite3.connect(tmp_path / "store.db") as conn:
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("DROP TABLE customers")
    with pytest.raises(StoreError, match=r"cannot read the store .*no such table: customers"):
        light.match_customers(["1"])
    assert light.product_slugs() == frozenset()


def test_audiences_follow_statuses_and_count_each_customer_once(store: SqlStore) -> None:
    _seed(store)
    selections = {
        "pro": Targets(products=("pro",)),
        "pro+starter": Targets(products=("pro", "starter")),
        "pro+listed": Targets(products=("pro",), customers=("1", "3")),
        "listed": Targets(customers=("2", "3")),
        "all": Targets(all=True),
        "empty": Targets(products=("empty",)),
    }
    counts = _counts(store, list(selections.values()), STATUSES)
    assert counts[selections["pro"]].total == 2  # 1 active, 2 trialing; 3 cancelled is out
    assert counts[selections["pro+starter"]].total == 2  # customer 1 is in both, counted once
    assert counts[selections["pro+starter"]].products == (("pro", 2), ("starter", 1))
    assert counts[selections["pro+listed"]].total == 3  # 1 (both ways), 2, 3 (listed)
    assert counts[selections["listed"]].total == 2
    assert counts[selections["all"]].total == 4
    assert counts[selections["empty"]].total == 0
    wider = _counts(store, [selections["pro"]], ("active", "trialing", "cancelled"))
    assert wider[selections["pro"]].total == 3
    # listed customers the products already count, and suppressed addresses among the audience
    assert counts[selections["pro+listed"]].listed_in_products == 1  # customer 1
    assert all(a.suppressed == 0 for a in counts.values())
    from commsync.model import SuppressionReason, SuppressionRecord

    store.add_suppressions(
        [
            SuppressionRecord("ada@example.com", SuppressionReason.UNSUBSCRIBE),  # customer 1
            SuppressionRecord("nobody@example.com", SuppressionReason.HARD_BOUNCE),
        ],
        "test",
        datetime.now(UTC),
    )
    counts = _counts(store, list(selections.values()), STATUSES)
    suppressed = {name: counts[t].suppressed for name, t in selections.items()}
    assert suppressed == {
        "pro": 1,
        "pro+starter": 1,
        "pro+listed": 1,
        "listed": 0,
        "all": 1,
        "empty": 0,
    }


def _notice(subject: str = "Hello", **kw: object) -> BroadcastSpec:
    cet = timezone(timedelta(hours=1))
    base = {
        "kind": "notice",
        "subject": subject,
        "content": "Body **markdown**",
        "targets": Targets(products=("pro",), customers=("2",)),
        "message_type": "warning",
        "starts_at": datetime(2026, 12, 1, 9, tzinfo=cet),
    }
    base.update(kw)
    return BroadcastSpec(**base)  # type: ignore[arg-type]


def test_broadcasts_round_trip_with_targets_and_provenance(store: SqlStore) -> None:
    _seed(store)
    spec = _notice()
    applied = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    live = LiveBroadcast(
        "notices/a",
        spec,
        "active",
        spec.spec_hash(),
        True,
        Provenance("broadcasts/notices/a.yaml", "abc123", "Op", applied),
    )
    store.put_broadcast(live)
    got = _snapshot(store).broadcasts["notices/a"]
    assert got == live
    assert got.spec.starts_at is not None and got.spec.starts_at.utcoffset() == timedelta(hours=1)
    assert not got.drift
    changed = LiveBroadcast(
        "notices/a", _notice(targets=Targets(all=True)), "retracted", "h", False
    )
    store.put_broadcast(changed)
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.broadcast_targets.c.target_type, t.broadcast_targets.c.value)
        ).all()
    assert rows == [("all", "*")]
    assert _snapshot(store).broadcasts["notices/a"].status == "retracted"


def test_out_of_band_edit_shows_as_drift(store: SqlStore) -> None:
    spec = _notice()
    store.put_broadcast(LiveBroadcast("n", spec, "active", spec.spec_hash()))
    edited = {**spec.to_json(), "subject": "Edited in the database"}
    with store.engine.begin() as conn:
        conn.execute(sa.update(t.broadcasts).values(spec=edited))
    got = _snapshot(store).broadcasts["n"]
    assert got.spec.subject == "Edited in the database"
    assert got.drift


def _insert_send(store: SqlStore, broadcast_id: str, statuses: list[str]) -> None:
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        send_id = conn.execute(
            sa.insert(t.sends).values(
                kind="broadcast",
                broadcast_id=broadcast_id,
                recipients=len(statuses),
                status="sending",
                created_at=now,
            )
        ).inserted_primary_key[0]
        conn.execute(
            sa.insert(t.deliveries),
            [
                {
                    "send_id": send_id,
                    "email": f"r{i}@example.com",
                    "email_key": f"r{i}@example.com",
                    "status": s,
                    "due_at": now,
                    "updated_at": now,
                }
                for i, s in enumerate(statuses)
            ],
        )


def test_email_progress_comes_from_the_ledger(store: SqlStore) -> None:
    spec = BroadcastSpec("email", "News", "Body", Targets(all=True))
    store.put_broadcast(LiveBroadcast("e", spec, "sending", spec.spec_hash()))
    assert _snapshot(store).broadcasts["e"].progress is not None
    _insert_send(
        store, "e", ["sent", "sent", "queued", "failed", "suppressed", "uncertain", "queued"]
    )
    progress = _snapshot(store).broadcasts["e"].progress
    assert progress is not None
    assert (
        progress.total,
        progress.sent,
        progress.queued,
        progress.failed,
        progress.suppressed,
        progress.uncertain,
    ) == (7, 2, 2, 1, 1, 1)


def test_the_snapshot_reads_the_workers_sends_and_their_last_heartbeat(store: SqlStore) -> None:
    """What plan shows of scheduled sends: a send the delivery workers deliver, and when a
    worker was last seen (timezone-aware, as written)."""
    spec = BroadcastSpec("email", "News", "Body", Targets(all=True))
    live = LiveBroadcast("w", spec, "sending", spec.spec_hash())
    store.upsert_customers([CustomerRecord("1", "a@example.com"), CustomerRecord("2", "b@x.org")])
    assert store.record_send(live, STATUSES, by_workers=True) is not None
    assert _snapshot(store).worker_seen_at is None
    before = datetime.now(UTC)
    ledger = store.ledger()
    try:
        ledger.heartbeat("host:1:x", "host", 1)
    finally:
        ledger.close()
    snapshot = _snapshot(store)
    seen = snapshot.worker_seen_at
    assert seen is not None and seen.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=5) <= seen <= datetime.now(UTC) + timedelta(seconds=5)
    progress = snapshot.broadcasts["w"].progress
    assert progress is not None and progress.by_workers
    assert (progress.total, progress.queued) == (2, 2)


def test_system_emails_round_trip_and_keep_stats(store: SqlStore) -> None:
    base = SystemEmailFields("payment_received", "customer", "Paid {{ payment_total }}", "Thanks")
    fields = base.with_values({"subject": "Thanks!", "delay": "1h30m"})
    provenance = Provenance("emails/p.yaml", "c0ffee", "Op", datetime(2026, 11, 2, tzinfo=UTC))
    live = LiveSystemEmail(
        "payment_received_customer",
        fields,
        fields.fields_hash(),
        ("delay", "subject"),
        1,
        base,
        provenance=provenance,
    )
    store.put_system_email(live)
    assert _snapshot(store).system_emails["payment_received_customer"] == live
    last = datetime(2026, 11, 1, tzinfo=UTC)
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(t.system_emails).values(sent_count=41, failed_count=2, last_sent_at=last)
        )
    store.put_system_email(
        LiveSystemEmail("payment_received_customer", base, base.fields_hash(), (), 2, base)
    )
    got = _snapshot(store).system_emails["payment_received_customer"]
    assert got.stats == EmailStats(41, 2, last)
    assert got.fields == base and got.overrides == () and got.base_version == 2
    store.delete_system_email("payment_received_customer")
    assert _snapshot(store).system_emails == {}


@pytest.fixture(params=["sqlite-file", "postgresql"])
def persistent_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite-file":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_a_store_from_a_newer_commsync_is_refused(persistent_url: str) -> None:
    open_store(persistent_url).close()
    engine = sa.create_engine(persistent_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(
        StoreTooNew, match=r"schema revision '9999'.*newer commsync.*nothing was changed"
    ):
        open_store(persistent_url)


def _open_and_report(url: str) -> str:
    store = open_store(url)
    store.close()
    return store.store_id


def test_concurrent_first_use_migrates_once(persistent_url: str) -> None:
    """Processes and threads that open a fresh store at the same moment agree on one schema."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        from_processes = pool.map(_open_and_report, [persistent_url] * 4)
    ids: list[str] = []
    threads = [
        threading.Thread(target=lambda: ids.append(_open_and_report(persistent_url)))
        for _ in range(3)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(set(from_processes + ids)) == 1 and len(ids) == 3


def test_sqlite_file_store_uses_wal(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    store.close()


def test_relative_sqlite_paths_are_relative_to_the_project(tmp_path: Path) -> None:
    from commsync.config.settings import resolve_store_url

    assert (
        resolve_store_url("sqlite:///.commsync/store.db", tmp_path)
        == f"sqlite:///{tmp_path.resolve()}/.commsync/store.db"
    )
    assert resolve_store_url("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    assert resolve_store_url("postgresql://h/db", tmp_path) == "postgresql://h/db"


def test_histogram_and_distinct_strategies_agree(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from commsync.store import audience

    store.upsert_products([ProductRecord(p, p) for p in ("a", "b", "c", "d")])
    customers = [CustomerRecord(str(n), f"c{n}@example.com") for n in range(1, 61)]
    store.upsert_customers(customers)
    rows = []
    for n in range(1, 61):
        for i, product in enumerate(("a", "b", "c", "d")):
            if (n + i) % (i + 2) == 0:
                rows.append(
                    MembershipRecord(
                        str(n), product, ("active", "trialing", "cancelled")[(n * (i + 1)) % 3]
                    )
                )
    store.upsert_memberships(rows)
    selections = [
        Targets(products=("a", "b")),
        Targets(products=("a", "b", "c", "d")),
        Targets(products=("b", "d"), customers=("1", "2", "59")),
        Targets(products=("c",), customers=("3", "4")),
        Targets(products=("a", "c", "d")),
    ]
    by_distinct = _counts(store, selections, STATUSES)
    monkeypatch.setattr(audience, "_HISTOGRAM_MIN_ROWS", 0)
    monkeypatch.setattr(audience, "_HISTOGRAM_RATIO", 0)
    by_histogram = _counts(store, selections, STATUSES)
    assert by_histogram == by_distinct
    # then kept: every count of the next plan comes from it, per-product counts included
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM audience_histograms")).scalar_one() > 0
    selections.append(Targets(products=("b",)))
    monkeypatch.setattr(audience, "_product_counts", None)  # proof: no pass over memberships
    by_kept = _counts(store, selections, STATUSES)
    assert {t: by_kept[t] for t in by_distinct} == by_distinct
    # and both equal a count done the slow, obvious way
    qualifying = {(r.customer_id, r.product) for r in rows if r.status in STATUSES}
    for selection in selections:
        expected = {c for c, p in qualifying if p in selection.products} | set(selection.customers)
        assert by_kept[selection].total == len(expected), selection


def test_migrations_create_exactly_the_declared_tables(store_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    store = open_store(store_url)
    with store.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}), t.metadata
        )
    store.close()
    assert diff == []


def _seed_ledger(store: SqlStore) -> tuple[LiveBroadcast, int]:
    from commsync.store.roles import FrozenSend

    store.upsert_products([ProductRecord("pro", "Pro")])
    store.upsert_customers(
        [
            CustomerRecord("1", "a@example.com", "a", "Ann"),
            CustomerRecord("2", "B@example.com", "b"),
            CustomerRecord("3", "c@example.com", "c"),
            CustomerRecord("4", "b@EXAMPLE.com", "b2"),  # the same address as customer 2
            CustomerRecord("5", "e@example.com", "e"),
        ]
    )
    store.upsert_memberships([MembershipRecord(c, "pro", "active") for c in ("1", "2", "3", "4")])
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(t.suppressions).values(
                email_key="c@example.com",
                scope="marketing",
                reason="unsubscribe",
                created_at=datetime.now(UTC),
            )
        )
    spec = BroadcastSpec("email", "News", "Hi", Targets(products=("pro",), customers=("1", "5")))
    live = LiveBroadcast("news", spec, "sending", spec.spec_hash())
    frozen = store.record_send(live, STATUSES)
    assert isinstance(frozen, FrozenSend)
    return live, frozen.send_id


def test_freezing_an_audience_dedupes_addresses_and_marks_suppressions(store: SqlStore) -> None:
    _, send_id = _seed_ledger(store)
    with store.engine.connect() as conn:
        rows = dict(
            conn.execute(
                sa.select(t.deliveries.c.email_key, t.deliveries.c.status).where(
                    t.deliveries.c.send_id == send_id
                )
            ).all()
        )
    assert rows == {
        "a@example.com": "queued",
        "b@example.com": "queued",
        "c@example.com": "suppressed",
        "e@example.com": "queued",
    }
    snapshot = _snapshot(store).broadcasts["news"]
    assert (
        snapshot.status == "sending"
        and snapshot.progress is not None
        and snapshot.progress.total == 4
    )


def test_the_ledger_hot_path(store: SqlStore) -> None:
    from commsync.model import Record

    _, send_id = _seed_ledger(store)
    ledger = store.ledger()
    try:
        batch = ledger.next_batch(send_id, 0, 10)
        assert [r.email_key for r in batch] == ["a@example.com", "b@example.com", "e@example.com"]
        assert batch[0].first_name == "Ann"
        a, b, e = batch
        assert ledger.transitions([([], a.id), ([], b.id)]) == [True, True]
        with store.engine.begin() as conn:  # e unsubscribes while the send runs
            conn.execute(
                sa.insert(t.suppressions).values(
                    email_key="e@example.com",
                    scope="marketing",
                    reason="unsubscribe",
                    created_at=datetime.now(UTC),
                )
            )
        started = ledger.transitions(
            [
                ([Record(a.id, "sent", message_id="<m@x>")], e.id),
                ([Record(b.id, "failed", "550 no")], None),
            ]
        )
        assert started == [False, True]  # e was suppressed just before sending
        ledger.transition([Record(e.id, "suppressed", "suppressed just before sending")], None)
        assert ledger.suppressed(["e@example.com", "a@example.com"]) == {"e@example.com"}
        ledger.save_tokens([("tok1", "a@example.com"), ("tok1", "a@example.com")])  # idempotent
        assert ledger.next_batch(send_id, 0, 10) == []
    finally:
        ledger.close()
    progress = _snapshot(store).broadcasts["news"].progress
    assert progress is not None and (progress.sent, progress.failed, progress.suppressed) == (
        1,
        1,
        2,
    )
    assert [f.email for f in store.failed_recipients("news")] == ["B@example.com"]
    assert store.finish_send("news")
    assert _snapshot(store).broadcasts["news"].status == "sent"
    with (
        store.engine.connect() as conn
    ):  # a finished send keeps its counts: plans need not count rows
        kept = conn.execute(sa.select(t.sends.c.counts)).scalar_one()
    assert kept == {"sent": 1, "failed": 1, "suppressed": 2}
    assert store.requeue(["failed"]) == 1
    reopened = _snapshot(store).broadcasts["news"]
    assert reopened.status == "sending" and reopened.progress is not None
    assert (reopened.progress.queued, reopened.progress.failed, reopened.progress.sent) == (1, 0, 1)


def test_rows_left_sending_by_a_crash_become_uncertain(store: SqlStore) -> None:
    _, send_id = _seed_ledger(store)
    ledger = store.ledger()
    (first, *_rest) = ledger.next_batch(send_id, 0, 10)
    ledger.transition([], first.id)  # marked sending, then the process "dies"
    ledger.close()
    assert store.crashed_to_uncertain() == 1
    progress = _snapshot(store).broadcasts["news"].progress
    assert progress is not None and progress.uncertain == 1 and progress.sending == 0
    assert store.requeue(["uncertain"]) == 1


def test_lock_and_journal(store: SqlStore) -> None:
    from commsync.store.control import LockHeld
    from commsync.store.roles import LockHolder

    holder = LockHolder("L1", "ci", "elsewhere", 99999999, datetime(2026, 11, 27, tzinfo=UTC))
    store.acquire_lock(holder)
    with pytest.raises(LockHeld, match="held by ci on elsewhere"):
        store.acquire_lock(LockHolder("L2", "me", "here", 1, datetime(2026, 11, 27, tzinfo=UTC)))
    assert store.unlock("nope") is None and store.unlock("L1") == holder
    journal = store.start_journal("sha256:abc", "c0ffee", "Op", "here", os.getpid())
    store.finish_journal(journal, "succeeded", {"actions": []})
    entry = store.journal_for_plan("sha256:abc")
    assert entry is not None and entry.status == "succeeded" and entry.summary == {"actions": []}
    assert [e.plan_id for e in store.recent_applies()] == ["sha256:abc"]
    assert store.signing_key() == store.signing_key() and len(store.signing_key()) == 32


def test_an_older_store_is_migrated_on_first_use_and_keeps_its_data(persistent_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    from commsync.store.migrate import _SCRIPTS
    from commsync.store.sql import create_store_engine

    engine = create_store_engine(persistent_url)
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(
            sa.text(
                "INSERT INTO products (slug, name, updated_at) VALUES ('pro', 'Pro', '2026-11-01 00:00:00')"
            )
        )
    with engine.connect() as conn:
        assert (
            conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one() == "0001"
        )
        assert "message" not in {c["name"] for c in sa.inspect(conn).get_columns("deliveries")}
    engine.dispose()
    store = open_store(persistent_url)
    with store.engine.connect() as conn:
        assert (
            conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one()
            == HEAD
            == "0011"
        )
        assert "feed_changes" in sa.inspect(conn).get_table_names()
        assert "audience_histogram_keys" in sa.inspect(conn).get_table_names()
        histogram = {c["name"] for c in sa.inspect(conn).get_columns("audience_histograms")}
        assert histogram == {"statuses", "products", "customers"}
        assert "deleted_at" in {c["name"] for c in sa.inspect(conn).get_columns("customers")}
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("customers")}
        assert "ix_customers_deleted" in indexes
        assert "message" in {c["name"] for c in sa.inspect(conn).get_columns("deliveries")}
        sends = {c["name"] for c in sa.inspect(conn).get_columns("sends")}
        assert {"email_hash", "by_workers"} <= sends
        assert "workers" in sa.inspect(conn).get_table_names()
    assert store.product_slugs() == frozenset({"pro"})
    store.close()


def test_the_feed_reads_targeted_active_undismissed_notices(store: SqlStore) -> None:
    _seed(store)

    def put(notice_id: str, status: str = "active", **kw: object) -> None:
        spec = _notice(subject=notice_id, **kw)
        store.put_broadcast(LiveBroadcast(notice_id, spec, status, spec.spec_hash(), True))

    put("n/all", targets=Targets(all=True))
    put("n/pro", targets=Targets(products=("pro",)))
    put("n/starter-or-3", targets=Targets(products=("starter",), customers=("3",)))
    put("n/retracted", status="retracted", targets=Targets(all=True))
    store.put_broadcast(
        LiveBroadcast("e/mail", _notice(kind="email"), "active", "h", True)
    )  # an email broadcast is never a notice
    store.dismiss("n/all", "2", datetime.now(UTC))

    def ids(customer: str) -> list[str]:
        return [i for i, _ in store.notices_for(customer, STATUSES)]

    # the newest first (the feed then orders by severity, keeping this order within one)
    assert ids("1") == ["n/starter-or-3", "n/pro", "n/all"]
    assert ids("2") == ["n/pro"]  # trialing pro; dismissed n/all
    assert ids("3") == ["n/starter-or-3", "n/all"]  # pro cancelled, starter expired; listed
    assert ids("4") == ["n/all"]
    assert (
        dict(store.notices_for("1", STATUSES))["n/pro"]
        == _notice(subject="n/pro", targets=Targets(products=("pro",))).spec_hash()
    )
    # what the serve feed reads: the active notices in that order, and each customer's own
    assert [i for i, _ in store.active_notices()] == ["n/starter-or-3", "n/pro", "n/all"]
    assert store.feed_customer("nobody", STATUSES) is None
    found = store.feed_customer("1", STATUSES)
    assert found == (store.customer("1"), frozenset({"pro", "starter"}), frozenset())
    assert store.feed_customer("2", STATUSES)[1:] == ({"pro"}, {"n/all"})  # type: ignore[index]
    assert store.feed_customer("3", STATUSES)[1] == frozenset()  # type: ignore[index]
    assert store.feed_customer("1", ())[1] == frozenset()  # type: ignore[index]
    assert store.dismissed("n/all", "2") and not store.dismissed("n/all", "1")
    store.dismiss("n/all", "2", datetime.now(UTC))  # twice is once
    assert ids("2") == ["n/pro"]


def test_the_queue_state_counts_due_and_waiting_system_email_messages(store: SqlStore) -> None:
    from commsync.model import DeliveryStatus, EventResult, QueuedEmail, QueuedMessage

    now = datetime(2031, 5, 1, 9, 0, tzinfo=UTC)
    assert store.queue_state(now).due == 0 and store.queue_state(now).next_due is None

    def queued(slug: str, due_at: datetime, *emails: str) -> QueuedEmail:
        messages = tuple(
            QueuedMessage(e, None, DeliveryStatus.QUEUED, b"Subject: x\r\n\r\nx", f"<{e}>")
            for e in emails
        )
        return QueuedEmail(slug, due_at, messages)

    emails = [
        queued("welcome", now - timedelta(minutes=1), "a@example.com", "b@example.com"),
        queued("admin_copy", now + timedelta(hours=2), "ops@example.com"),
        queued("reminder", now + timedelta(minutes=14), "a@example.com"),
    ]
    store.record_event("e", {}, "k1", emails, EventResult(0, "e", (), ()), now)
    state = store.queue_state(now)
    assert (state.due, state.waiting) == (2, 2)
    assert state.next_due == now + timedelta(minutes=14)
    assert {slug: w.count for slug, w in state.by_email.items()} == {
        "welcome": 2,
        "admin_copy": 1,
        "reminder": 1,
    }
    assert state.by_email["welcome"].next_due is None  # all of it is due
    assert state.by_email["admin_copy"].next_due == now + timedelta(hours=2)
    later = store.queue_state(now + timedelta(hours=3))
    assert (later.due, later.waiting, later.next_due) == (4, 0, None)


def test_a_message_cancelled_while_a_worker_holds_it_is_never_started(store: SqlStore) -> None:
    from commsync.model import (
        DeliveryStatus,
        EventResult,
        QueuedEmail,
        QueuedMessage,
        Record,
    )

    now = datetime(2031, 5, 1, 9, 0, tzinfo=UTC)
    message = QueuedMessage("a@example.com", None, DeliveryStatus.QUEUED, b"x", "<a@x>")
    store.record_event(
        "e", {}, "k1", [QueuedEmail("welcome", now, (message,))], EventResult(0, "e", (), ()), now
    )
    ledger = store.ledger()
    try:
        (row,) = ledger.claim_due("w1", now, 10, now - timedelta(minutes=10))
        assert store.cancel_queued(now, event_key="k1") == 1  # while the worker holds it
        # the worker tries to start it, fails, and records its fallback: the cancellation stays
        assert ledger.transition([], row.id, claimer="w1") is False
        ledger.transition([Record(row.id, DeliveryStatus.SUPPRESSED, "just before")], None)
    finally:
        ledger.close()
    with store.engine.connect() as conn:
        status = conn.execute(sa.select(t.deliveries.c.status)).scalar_one()
    assert status == "cancelled"
    assert store.queue_state(now).due == 0 and store.queued_messages(10) == []


def test_postgresql_connections_give_up_on_a_silent_peer(pg_url: str) -> None:
    """A partition must not hold a request forever: every PostgreSQL connection the store opens,
    the writer's and serve's readers', asks libpq for TCP keepalives and a user timeout."""
    store = open_store(pg_url, read_timeout=2.0)
    try:
        for engine in (store.engine, store.reader):
            with engine.connect() as conn:
                dbapi = conn.connection.dbapi_connection
                assert dbapi is not None
                params = dbapi.info.get_parameters()  # type: ignore[attr-defined]
                assert params["keepalives"] == "1"
                assert int(params["keepalives_idle"]) + 3 * int(params["keepalives_interval"]) <= 60
                assert 0 < int(params["tcp_user_timeout"]) <= 60_000
    finally:
        store.close()


def _histogram_state(
    store: SqlStore, statuses: Sequence[str]
) -> tuple[bool, dict[str, int], dict[str, int]]:
    """Whether the kept histogram for `statuses` is current, its rows, and the histogram a count
    done the obvious way gives (each customer's qualifying products, as one sorted set)."""
    from commsync.store.audience import products_key, statuses_key

    key = statuses_key(statuses)
    with store.engine.connect() as conn:
        generation = conn.execute(
            sa.text("SELECT value FROM commsync_meta WHERE key = 'memberships_generation'")
        ).scalar_one()
        at = conn.execute(
            sa.text("SELECT generation FROM audience_histogram_keys WHERE statuses = :k"),
            {"k": key},
        ).scalar_one_or_none()
        kept = dict(
            conn.execute(
                sa.text("SELECT products, customers FROM audience_histograms WHERE statuses = :k"),
                {"k": key},
            ).all()
        )
        rows = conn.execute(
            sa.text("SELECT customer_id, product_slug, status FROM memberships")
        ).all()
    sets: dict[str, set[str]] = {}
    for cid, slug, status in rows:
        if status in statuses:
            sets.setdefault(str(cid), set()).add(str(slug))
    fresh: dict[str, int] = {}
    for products in sets.values():
        fresh[products_key(products)] = fresh.get(products_key(products), 0) + 1
    return at is not None and int(at) == int(generation), kept, fresh


def test_writers_keep_the_histogram_current_or_leave_it_for_the_next_plan(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted once and kept; a write to a few customers' memberships adjusts it in its own
    transaction, a product's removal takes the product out of it, and an import or a larger
    write counts it again at its end (the next plan reads it: no pass over memberships). No
    plan sees a wrong audience."""
    from commsync.store import audience, histograms
    from commsync.store.imports import ImportsMixin

    monkeypatch.setattr(audience, "_HISTOGRAM_MIN_ROWS", 0)
    monkeypatch.setattr(audience, "_HISTOGRAM_RATIO", 0)
    store.upsert_products([ProductRecord(p, p) for p in ("a", "b", "c")])
    store.upsert_customers([CustomerRecord(str(n), f"c{n}@example.com") for n in range(1, 9)])
    store.upsert_memberships(
        [MembershipRecord(str(n), "a" if n % 2 else "b", "active") for n in range(1, 9)]
    )
    both = Targets(products=("a", "b"))
    ab_c = Targets(products=("a", "c"))
    only_a = Targets(products=("a",))
    everyone = Targets(all=True)

    def counts() -> tuple[int, int]:
        found = _counts(store, [both, ab_c, only_a, everyone], STATUSES)
        with store.engine.connect() as conn:
            a = conn.execute(
                sa.text(
                    "SELECT count(*) FROM memberships WHERE product_slug = 'a'"
                    " AND status IN ('active', 'trialing')"
                )
            ).scalar_one()
            living = conn.execute(
                sa.text("SELECT count(*) FROM customers WHERE deleted_at IS NULL")
            ).scalar_one()
        assert found[only_a].total == a - behind_the_back[0]
        assert found[everyone].total == living
        return found[both].total, found[ab_c].total

    behind_the_back = [0]

    def kept_current() -> bool:
        current, kept, fresh = _histogram_state(store, STATUSES)
        if current:
            assert kept == fresh  # a current histogram is exactly what a count gives
        return current

    assert counts() == (8, 4) and kept_current()
    # kept: a write behind the store's back (no generation moved) is not seen — proof that
    # the kept rows are what answers; then put back as it was
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM memberships WHERE customer_id = '1'"))
    behind_the_back[0] = -1  # the kept histogram still counts customer 1 in a
    assert counts() == (8, 4)
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO memberships (customer_id, product_slug, status, updated_at)"
                " VALUES ('1', 'a', 'active', '2026-01-01 00:00:00.000000')"
                if store.engine.dialect.name == "sqlite"
                else "INSERT INTO memberships (customer_id, product_slug, status, updated_at)"
                " VALUES ('1', 'a', 'active', now())"
            )
        )
    behind_the_back[0] = 0
    # a few customers' writes keep it current, and the counts follow them
    monkeypatch.setattr(audience, "_count_histogram", None)  # proof: never counted again
    store.upsert_memberships([MembershipRecord("2", "c", "active")])
    assert kept_current() and counts() == (8, 5)  # 2 is in b and c now
    store.replace_memberships("3", [MembershipRecord("3", "c", "active")])
    assert kept_current() and counts() == (7, 5)  # a: 1, 5, 7; c: 2, 3
    store.upsert_memberships([MembershipRecord("4", "b", "cancelled")])
    assert kept_current() and counts() == (6, 5)  # 4 no longer qualifies
    assert store.delete_customer("5")
    assert kept_current() and counts() == (5, 4)
    store.replace_memberships("6", [])
    assert kept_current() and counts() == (4, 4)

    # an import counts it again at its end (a nightly sync pays for it, not the next plan)
    def counting_allowed() -> None:
        monkeypatch.undo()
        monkeypatch.setattr(audience, "_HISTOGRAM_MIN_ROWS", 0)
        monkeypatch.setattr(audience, "_HISTOGRAM_RATIO", 0)

    counting_allowed()
    ImportsMixin.import_memberships(store, [(2, MembershipRecord("8", "c", "active"))])
    assert kept_current()
    monkeypatch.setattr(audience, "_count_histogram", None)  # proof: the next plan reads it
    assert counts() == (4, 5)  # c: 2, 3, 8
    counting_allowed()
    ImportsMixin.import_customers(
        store,
        [(n, CustomerRecord(str(n), f"c{n}@example.com")) for n in (2, 3, 4, 6)],
        sync=lambda removing, existing: None,
    )
    assert kept_current()
    monkeypatch.setattr(audience, "_count_histogram", None)
    assert counts() == (1, 2)  # 1, 7, 8 deleted by the sync: b: 2; c: 2, 3
    # a product's removal takes it out of every set: still current, no count
    monkeypatch.setattr(audience, "_count_histogram", None)
    assert store.delete_product("c")
    assert kept_current()
    assert counts() == (1, 0)
    # a write naming more customers than FEW counts it again in its transaction
    counting_allowed()
    monkeypatch.setattr(histograms, "FEW", 1)
    store.upsert_memberships([MembershipRecord(c, "a", "active") for c in ("2", "3")])
    monkeypatch.setattr(audience, "_count_histogram", None)
    assert kept_current()
    assert counts() == (2, 2)  # a: 2, 3; b: 2
    # down to no qualifying membership at all
    counting_allowed()
    for c in ("2", "3", "4", "6"):
        store.replace_memberships(c, [])
    assert counts() == (0, 0)


def test_an_import_counts_the_histogram_for_the_statuses_it_is_given(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store's first import keeps a histogram for the configured statuses, though no plan
    counted one yet: the first plan reads it."""
    from commsync.store import audience
    from commsync.store.imports import ImportsMixin

    monkeypatch.setattr(audience, "_HISTOGRAM_MIN_ROWS", 0)
    monkeypatch.setattr(audience, "_HISTOGRAM_RATIO", 0)
    ImportsMixin.import_products(store, [(2, ProductRecord(p, p)) for p in ("a", "b")])
    customers = [(n, CustomerRecord(str(n), f"c{n}@example.com")) for n in range(2, 8)]
    ImportsMixin.import_customers(store, customers, statuses=STATUSES)
    assert not _histogram_state(store, STATUSES)[0]  # no memberships: nothing to keep
    rows = [(n, MembershipRecord(str(n), "a", "active")) for n in range(2, 8)]
    rows += [(n + 10, MembershipRecord(str(n), "b", "trialing")) for n in range(2, 5)]
    ImportsMixin.import_memberships(store, rows, statuses=STATUSES)
    current, kept, fresh = _histogram_state(store, STATUSES)
    assert current and kept == fresh == {"a": 3, "a b": 3}
    monkeypatch.setattr(audience, "_count_histogram", None)  # the plan reads it
    found = _counts(store, [Targets(products=("a", "b")), Targets(products=("b",))], STATUSES)
    assert found[Targets(products=("a", "b"))].total == 6
    assert found[Targets(products=("b",))].total == 3
    # statuses nobody asked for are not counted
    assert not _histogram_state(store, ["cancelled"])[0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_histogram_kept_current_by_writers_is_always_a_fresh_count(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Random sequences of the writes that keep it current (upserts of a few memberships,
    replacing a customer's, deleting a customer, removing a product): after each, the kept histogram is current
    and equal to counting every membership again."""
    import random

    from commsync.store import audience

    monkeypatch.setattr(audience, "_HISTOGRAM_MIN_ROWS", 0)
    monkeypatch.setattr(audience, "_HISTOGRAM_RATIO", 0)
    rng = random.Random(seed)
    products = ["a", "b", "c", "d"]
    store.upsert_products([ProductRecord(p, p) for p in products])
    ids = [str(n) for n in range(1, 16)]
    store.upsert_customers([CustomerRecord(c, f"c{c}@example.com") for c in ids])
    statuses = ["active", "trialing", "cancelled"]
    store.upsert_memberships(
        [
            MembershipRecord(c, p, rng.choice(statuses))
            for c in ids
            for p in products
            if rng.random() < 0.5
        ]
    )
    _counts(store, [Targets(products=("a", "b")), Targets(products=("c", "d"))], STATUSES)
    assert _histogram_state(store, STATUSES)[0]
    for _ in range(40):
        who = rng.sample(ids, rng.randint(1, 3))
        pick = rng.random()
        if pick < 0.5:
            store.upsert_memberships(
                [MembershipRecord(c, rng.choice(products), rng.choice(statuses)) for c in who]
            )
        elif pick < 0.85:
            store.replace_memberships(
                who[0],
                [
                    MembershipRecord(who[0], p, rng.choice(statuses))
                    for p in products
                    if rng.random() < 0.5
                ],
            )
        elif pick < 0.95:
            store.delete_customer(who[0])
        else:  # a product's removal, then the product back, as a platform's catalogue moves
            gone = rng.choice(products)
            store.delete_product(gone)
            store.upsert_products([ProductRecord(gone, gone)])
        current, kept, fresh = _histogram_state(store, STATUSES)
        assert current and kept == fresh


def test_every_write_that_changes_a_feed_says_whose(store: SqlStore) -> None:
    """`feed_changes` is what lets `serve` keep feed responses: each way a feed can change
    through the store names whose (or everyone's); writes no feed shows name nobody."""
    from commsync.model import SuppressionScope
    from commsync.store.imports import ImportsMixin
    from commsync.store.sqlutil import FEED_CHANGES_KEPT

    _seed(store)
    seen, changed = store.feed_changes(None)
    assert changed is None  # never looked: everything

    def since() -> frozenset[str] | None:
        nonlocal seen
        seen, found = store.feed_changes(seen)
        return found

    assert since() == frozenset()  # nothing, and cheaply again
    assert since() == frozenset()
    store.upsert_customers([CustomerRecord("2", "grace@example.com", "grace", "Grace")])
    assert since() == {"2"}
    store.upsert_memberships([MembershipRecord("3", "pro", "active")])
    assert since() == {"3"}
    store.replace_memberships("4", [MembershipRecord("4", "starter", "active")])
    assert since() == {"4"}
    notice = BroadcastSpec("notice", "Hi", "Body", Targets(all=True))
    store.put_broadcast(LiveBroadcast("n", notice, "active", notice.spec_hash()))
    assert since() is None  # a notice: every feed
    store.dismiss("n", "1", datetime.now(UTC))
    store.dismiss("n", "2", datetime.now(UTC))
    assert since() == {"1", "2"}  # two writes, seen at once
    store.dismiss("n", "1", datetime.now(UTC))  # again: nothing written
    assert since() == frozenset()
    assert store.delete_customer("4")
    assert since() == {"4"}
    # writes no feed shows
    store.upsert_products([ProductRecord("pro", "Pro Plan")])
    email = BroadcastSpec("email", "News", "Body", Targets(all=True))
    store.put_broadcast(LiveBroadcast("e", email, "draft", email.spec_hash()))
    store.suppress("x@example.com", SuppressionScope.ALL, "bounce", "test", datetime.now(UTC))
    assert since() == frozenset()
    # an email that becomes a notice (or back) changes feeds
    store.put_broadcast(LiveBroadcast("e", notice, "active", notice.spec_hash()))
    assert since() is None
    ImportsMixin.import_customers(store, [(2, CustomerRecord("1", "ada@example.com", "ada"))])
    assert since() is None
    ImportsMixin.import_memberships(store, [(2, MembershipRecord("1", "pro", "active"))])
    assert since() is None
    ImportsMixin.import_products(store, [(2, ProductRecord("new", "New"))])
    assert since() == frozenset()
    assert store.delete_product("empty")
    assert since() is None
    # a reader further behind than the rows writers keep cannot know whose: everything
    with store.engine.begin() as conn:  # as thousands of writes would leave it
        conn.execute(
            sa.text("UPDATE commsync_meta SET value = :v WHERE key = 'feed_generation'"),
            {"v": str((seen + FEED_CHANGES_KEPT) // 100 * 100 + 99)},  # writers prune at 100s
        )
    assert store.feed_changes(seen)[1] is None
    # and writers keep only the newest rows
    store.dismiss("n", "3", datetime.now(UTC))
    with store.engine.connect() as conn:
        oldest = conn.execute(sa.text("SELECT min(seq) FROM feed_changes")).scalar_one()
    assert oldest is None or oldest > seen
