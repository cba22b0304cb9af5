"""`customers|products|memberships import`: streamed, all-or-nothing, and `--sync` — on SQLite
and PostgreSQL, through the real command line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection

from commsync.model import Targets
from commsync.store.sql import open_store
from tests.helpers import SETTINGS, Repo, dump_store

NOTICE = """\
kind: notice
message_type: info
subject: Hello
content: Hello {{ customer_name }}.
targets:
  customers: ["5"]
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, repo: Repo) -> tuple[Repo, str]:
    """A repository with the standard data imported, on each store backend."""
    url = repo.store_url
    if request.param == "postgresql":
        url = str(request.getfixturevalue("pg_url"))
        repo.write("commsync.yaml", SETTINGS + f"store: {url}\n")
        repo.commit_all("postgresql")
    repo.import_data()
    return repo, url


def _audience(url: str, targets: Targets) -> int:
    store = open_store(url)
    try:
        return store.count_audiences([targets], ["active", "trialing"])[targets].total
    finally:
        store.close()


def _deleted(url: str) -> set[str]:
    rows = dump_store(url)["customers"]
    # columns in table order: id … updated_at, deleted_at
    return {str(r[0]) for r in rows if r[-1] is not None}


def test_sync_marks_absent_customers_deleted_and_they_leave_every_audience(
    backend: tuple[Repo, str],
) -> None:
    repo, url = backend
    everyone, pro = Targets(all=True), Targets(products=("pro",))
    assert (_audience(url, everyone), _audience(url, pro)) == (5, 2)
    repo.write(
        "data/customers-now.csv",
        "id,email\n1,ada@example.com\n3,alan@example.org\n4,kat@example.net\n"
        "5,lin@example.com\n6,barbara@example.com\n",
    )
    done = repo.cli("customers", "import", "--sync", "--force", "data/customers-now.csv")
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == "customers: 1 inserted, 4 updated, 1 marked deleted"
    assert _deleted(url) == {"2"}
    # customer 2 (pro, trialing) left `all` and the product; customer 6 joined `all`
    assert (_audience(url, everyone), _audience(url, pro)) == (5, 1)
    # a file that lists a deleted customer still plans (it is known, and reaches nobody)
    repo.write("broadcasts/notices/to-two.yaml", NOTICE.replace('"5"', '"2"'))
    plan = repo.plan_json()
    [action] = [a for a in plan["actions"] if a["address"].endswith("to-two")]
    assert action["audience"]["total"] == 0
    # importing the customer again (with or without --sync) brings them back
    again = repo.cli("customers", "import", "data/customers.csv")
    assert again.exit_code == 0, again.output
    assert _deleted(url) == set()
    assert _audience(url, everyone) == 6


def test_sync_of_memberships_ends_those_the_file_lacks(backend: tuple[Repo, str]) -> None:
    repo, url = backend
    repo.write(
        "data/memberships-now.csv",
        "customer_id,product,status\n1,pro,active\n2,pro,trialing\n3,pro,cancelled\n"
        "3,starter,active\n4,agency,active\n",
    )
    done = repo.cli("memberships", "import", "--sync", "--force", "data/memberships-now.csv")
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == "memberships: 0 inserted, 5 updated, 1 ended"
    pairs = {(str(r[0]), str(r[1])) for r in dump_store(url)["memberships"]}
    assert ("5", "starter") not in pairs and len(pairs) == 5
    # without --sync nothing is removed
    repo.write("data/one.csv", "customer_id,product,status\n5,starter,active\n")
    assert repo.cli("memberships", "import", "data/one.csv").exit_code == 0
    assert len(dump_store(url)["memberships"]) == 6


def test_sync_refuses_to_remove_more_than_the_share_unless_forced(
    backend: tuple[Repo, str],
) -> None:
    repo, url = backend
    repo.write("data/truncated.csv", "id,email\n1,ada@example.com\n")
    before = dump_store(url)
    refused = repo.cli("customers", "import", "--sync", "data/truncated.csv")
    assert refused.exit_code == 1
    assert (
        "data/truncated.csv: --sync would leave 4 of 5 customers marked deleted (80%), "
        "more than --max-remove 10%; nothing was written" in refused.stderr
    )
    assert dump_store(url) == before
    # the share is the operator's: 80% is within --max-remove 80
    allowed = repo.cli("customers", "import", "--sync", "--max-remove", "80", "data/truncated.csv")
    assert allowed.exit_code == 0, allowed.output
    assert _deleted(url) == {"2", "3", "4", "5"}


def test_bad_rows_name_their_lines_and_nothing_is_written(backend: tuple[Repo, str]) -> None:
    repo, url = backend
    repo.write(
        "data/bad-customers.csv",
        "id,email\n7,new@example.com\n8,not-an-address\n7,again@example.com\n",
    )
    repo.write(
        "data/bad-memberships.csv",
        "customer_id,product,status\n1,pro,active\n99,pro,active\n1,nosuch,active\n",
    )
    before = dump_store(url)
    bad = repo.cli("customers", "import", "--sync", "--force", "data/bad-customers.csv")
    assert bad.exit_code == 1
    assert "data/bad-customers.csv:3:" in bad.stderr and "not an email address" in bad.stderr
    duplicate = repo.write("data/dup.csv", "id,email\n7,new@example.com\n7,again@example.com\n")
    dup = repo.cli("customers", "import", str(duplicate))
    assert dup.exit_code == 1
    assert "dup.csv:3:" in dup.stderr and "duplicate row for 7 (first on line 2)" in dup.stderr
    refs = repo.cli("memberships", "import", "--sync", "--force", "data/bad-memberships.csv")
    assert refs.exit_code == 1
    assert "bad-memberships.csv:3:" in refs.stderr and "unknown customer '99'" in refs.stderr
    assert "bad-memberships.csv:4:" in refs.stderr and "unknown product 'nosuch'" in refs.stderr
    assert dump_store(url) == before


def test_memberships_of_a_deleted_customer_are_refused_until_it_returns(
    backend: tuple[Repo, str],
) -> None:
    repo, _ = backend
    repo.write(
        "data/four.csv",
        "id,email\n1,a@example.com\n2,b@example.com\n3,c@example.com\n4,d@example.com\n",
    )
    assert repo.cli("customers", "import", "--sync", "--force", "data/four.csv").exit_code == 0
    repo.write("data/m.csv", "customer_id,product,status\n5,pro,active\n")
    refused = repo.cli("memberships", "import", "data/m.csv")
    assert refused.exit_code == 1
    assert "m.csv:2:" in refused.stderr and "customer '5' was marked deleted" in refused.stderr


def test_sync_is_only_for_customers_and_memberships(repo: Repo) -> None:
    repo.import_data()
    done = repo.cli("products", "import", "--sync", "data/products.csv")
    assert done.exit_code == 1
    assert "--sync is for customers and memberships imports, not products" in done.stderr


def test_a_large_file_streams_with_the_counts_right(backend: tuple[Repo, str]) -> None:
    """More rows than one staging batch (10,000): inserts, then the same file as updates."""
    repo, url = backend
    rows = "".join(f"c{n},user{n}@example.com\n" for n in range(25_000))
    repo.write("data/many.csv", "id,email\n" + rows)
    first = repo.cli("customers", "import", "data/many.csv")
    assert first.stdout.strip() == "customers: 25000 inserted, 0 updated", first.output
    second = repo.cli("customers", "import", "data/many.csv")
    assert second.stdout.strip() == "customers: 0 inserted, 25000 updated", second.output
    assert _audience(url, Targets(all=True)) == 25_005


def test_changed_rows_are_updated_and_unchanged_ones_kept(backend: tuple[Repo, str]) -> None:
    repo, url = backend
    before = {str(r[0]): r for r in dump_store(url)["customers"]}
    repo.write(
        "data/changed.csv",
        "id,email,username\n1,ada@example.com,ada\n2,grace.hopper@example.com,grace\n",
    )
    done = repo.cli("customers", "import", "data/changed.csv")
    assert done.stdout.strip() == "customers: 0 inserted, 2 updated", done.output
    after = {str(r[0]): r for r in dump_store(url)["customers"]}
    assert after["2"][1] == "grace.hopper@example.com"
    assert after["2"][-2] > before["2"][-2]  # updated_at: when the data last changed
    # customer 1's file row lost first_name, last_name and locale: an update too
    assert (
        after["1"][4:6] == (None, None)
        and after["1"][7] is None
        and after["1"][-2] > before["1"][-2]
    )
    unchanged = repo.cli("customers", "import", "data/changed.csv")
    assert unchanged.exit_code == 0
    assert {str(r[0]): r for r in dump_store(url)["customers"]} == after
    repo.write("data/m.csv", "customer_id,product,status\n1,pro,cancelled\n")
    assert repo.cli("memberships", "import", "data/m.csv").exit_code == 0
    statuses = {(str(r[0]), str(r[1])): r[2] for r in dump_store(url)["memberships"]}
    assert statuses[("1", "pro")] == "cancelled" and statuses[("2", "pro")] == "trialing"


def test_a_row_another_writer_adds_meanwhile_is_merged_not_refused(repo: Repo, pg_url: str) -> None:
    """PostgreSQL: the API inserts a membership the file also has while the import runs (its
    insert waits on the other transaction's row, then meets it): the import still succeeds."""
    import subprocess
    import time

    import sqlalchemy as sa

    from tests.hostile import EXE

    repo.write("commsync.yaml", SETTINGS + f"store: {pg_url}\n")
    repo.import_data()
    repo.write("data/m.csv", "customer_id,product,status\n5,pro,active\n1,pro,active\n")
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as other, engine.connect() as watch:
            watch.execution_options(isolation_level="AUTOCOMMIT")
            with other.begin():
                other.execute(
                    sa.text(
                        "INSERT INTO memberships (customer_id, product_slug, status, updated_at)"
                        " VALUES ('5', 'pro', 'trialing', now())"
                    )
                )
                importing = subprocess.Popen(
                    [EXE, "-C", str(repo.root), "memberships", "import", "data/m.csv"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                deadline = time.monotonic() + 60
                waiting = sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE 'INSERT INTO memberships%'"
                )
                while watch.execute(waiting).scalar_one() == 0:
                    assert importing.poll() is None, importing.communicate()
                    assert time.monotonic() < deadline, "the import never met the other row"
                    time.sleep(0.05)
            out, err = importing.communicate(timeout=60)
    finally:
        engine.dispose()
    assert importing.returncode == 0, err
    # both rows were there when the import merged them
    assert out.strip() == "memberships: 0 inserted, 2 updated", out
    statuses = {(str(r[0]), str(r[1])): r[2] for r in dump_store(pg_url)["memberships"]}
    assert statuses[("5", "pro")] == "active"  # the file's row, merged over the other writer's


def test_progress_shows_rows_and_rate_once_an_import_takes_over_two_seconds() -> None:
    import io

    from commsync.cli.data import ImportProgress

    out = io.StringIO()
    progress = ImportProgress("customers", out)
    progress(10_000)
    assert out.getvalue() == ""  # a quick import says nothing
    progress.started -= 4.0
    progress.shown -= 1.0
    progress(40_000)
    line = out.getvalue()
    assert line.startswith("\r  customers: 40,000 rows read (") and line.endswith(" rows/s)…")
    rate = int(line.split("(")[1].split(" ")[0].replace(",", ""))
    assert 9_000 <= rate <= 10_000  # 40,000 rows in a little over 4 s
    progress(50_000)  # within half a second of the last line: not repeated
    assert out.getvalue() == line
    progress.done()
    assert out.getvalue().endswith("\n")


def test_every_wrong_membership_line_is_named_at_once(backend: tuple[Repo, str]) -> None:
    """A file with several kinds of problems (a repeated row, a deleted customer, an unknown
    customer and product) names every wrong line in one refusal, and writes nothing."""
    repo, url = backend
    repo.write("data/three.csv", "id,email\n1,a@example.com\n2,b@example.com\n3,c@example.com\n")
    assert repo.cli("customers", "import", "--sync", "--force", "data/three.csv").exit_code == 0
    repo.write("data/two.csv", "id,email\n1,a@example.com\n2,b@example.com\n")
    assert repo.cli("customers", "import", "--sync", "--force", "data/two.csv").exit_code == 0
    repo.write(
        "data/m.csv",
        "customer_id,product,status\n1,pro,active\n1,pro,trialing\n3,pro,active\n"
        "99,pro,active\n2,gold,active\n",
    )
    before = dump_store(url)
    refused = repo.cli("memberships", "import", "data/m.csv")
    assert refused.exit_code == 1
    assert "4 errors found; nothing was changed" in refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.startswith("data/m.csv:")]
    assert lines == [
        "data/m.csv:3: error: duplicate row for 1, pro (first on line 2)",
        "data/m.csv:4: error: customer '3' was marked deleted by `customers import --sync`"
        " (import it again first)",
        "data/m.csv:5: error: unknown customer '99' (import customers first)",
        "data/m.csv:6: error: unknown product 'gold' (import products first)",
    ]
    assert dump_store(url) == before


def test_a_sqlite_memberships_import_leaves_every_connection_checking_foreign_keys(
    repo: Repo,
) -> None:
    """The import turns SQLite's per-row foreign-key lookups off for its own transaction (it
    checked every reference itself): after it — merged or refused — each pooled connection
    checks them again, and a membership of an unknown customer is refused by the database."""
    import sqlalchemy as sa

    from commsync.model import MembershipRecord
    from commsync.store.roles import RowsRefused

    repo.import_data()
    store = open_store(repo.store_url)
    try:
        counts = store.import_memberships([(2, MembershipRecord("1", "starter", "active"))])
        assert (counts.inserted, counts.updated) in ((1, 0), (0, 1), (0, 0))
        with pytest.raises(RowsRefused):
            store.import_memberships([(2, MembershipRecord("nobody", "starter", "active"))])
        conns = [store.engine.connect() for _ in range(store.engine.pool.checkedin() + 1)]
        try:
            for conn in conns:
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
                conn.rollback()
            with pytest.raises(sa.exc.IntegrityError), conns[0].begin():
                conns[0].exec_driver_sql(
                    "INSERT INTO memberships (customer_id, product_slug, status, updated_at)"
                    " VALUES ('nobody', 'starter', 'active', '2026-01-01 00:00:00')"
                )
        finally:
            for conn in conns:
                conn.close()
    finally:
        store.close()


def _required_slowly(value: str | None, pattern: re.Pattern[str]) -> str:
    """What `_required` did before its shortcut: every check of `_text`, then the pattern."""
    from commsync.repo.records import RowError, _text

    stripped = _text({} if value is None else {"x": value}, "x")
    if stripped is None:
        raise RowError("x is empty")
    if not pattern.fullmatch(stripped):
        raise RowError("no match")
    return stripped


@settings(max_examples=600, deadline=None)
@given(
    st.one_of(
        st.none(),
        st.text(alphabet="aZ09._:@- \t\n\r\x00é", max_size=140),
        st.text(max_size=8).map(lambda s: " " + "a" * 60 + s),
    ),
    st.sampled_from(["_ID", "_SLUG", "_STATUS"]),
)
def test_a_required_field_is_checked_as_before_its_shortcut(value: str | None, name: str) -> None:
    from commsync.repo import records

    pattern = getattr(records, name)
    try:
        expected: str | None = _required_slowly(value, pattern)
    except records.RowError:
        expected = None
    try:
        got: str | None = records._required({} if value is None else {"x": value}, "x", pattern, "")
    except records.RowError:
        got = None
    assert got == expected


def _schema(conn: Connection) -> dict[str, object]:
    """The indexes and foreign keys of the store's platform tables, as the database has them."""
    inspector = sa.inspect(conn)
    out: dict[str, object] = {}
    for table in ("customers", "memberships", "products"):
        indexes = inspector.get_indexes(table)
        out[f"{table} indexes"] = sorted(
            (str(i["name"]), tuple(i["column_names"]), bool(i["unique"])) for i in indexes
        )
        pk = inspector.get_pk_constraint(table)
        out[f"{table} primary key"] = (str(pk["name"]), tuple(pk["constrained_columns"]))
        keys = inspector.get_foreign_keys(table)
        out[f"{table} keys"] = sorted(
            (
                str(k["name"]),
                tuple(k["constrained_columns"]),
                str(k["referred_table"]),
                str((k.get("options") or {}).get("ondelete")),
            )
            for k in keys
        )
    if conn.dialect.name == "sqlite":  # and the SQL of each index, partial ones included
        rows = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
        out["sql"] = sorted((str(name), str(sql)) for name, sql in rows)
    else:
        rows = conn.exec_driver_sql(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
        )
        out["sql"] = sorted((str(name), str(sql)) for name, sql in rows)
    return out


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
def test_a_first_import_larger_than_the_table_leaves_its_indexes_as_declared(
    tmp_path: Path, request: pytest.FixtureRequest, backend_name: str
) -> None:
    """Past 10,000 rows into a smaller table, the table's secondary indexes (and on PostgreSQL
    its foreign keys and primary key, with the foreign keys that refer to it) are built after
    the merge, in its transaction: they must come back exactly as the schema declares them,
    and the keys must hold again."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from commsync.model import CustomerRecord, MembershipRecord, ProductRecord
    from commsync.store import tables as t
    from commsync.store.revision import VERSION_TABLE

    url = (
        f"sqlite:///{tmp_path / 'store.db'}"
        if backend_name == "sqlite"
        else str(request.getfixturevalue("pg_url"))
    )
    store = open_store(url)
    try:
        with store.engine.connect() as conn:
            declared = _schema(conn)
        store.upsert_products([ProductRecord("pro", "Pro"), ProductRecord("team", "Team")])
        n = 12_000
        store.import_customers(
            [(i, CustomerRecord(str(i), f"c{i}@example.com", f"u{i}")) for i in range(1, n + 1)]
        )
        store.import_memberships(
            [
                (i, MembershipRecord(str(i), "pro" if i % 3 else "team", "active"))
                for i in range(1, n + 1)
            ]
        )
        with store.engine.connect() as conn:
            after = _schema(conn)
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}), t.metadata
            )
            if backend_name == "sqlite":
                plan = conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT count(*) FROM memberships WHERE product_slug = 'pro'"
                    " AND status = 'active'"
                ).all()
                assert "ix_memberships_audience" in str(plan)
        assert after == declared and diff == []
        assert declared["memberships keys"] and declared["customers indexes"]
        # the foreign keys hold again: a membership of nobody is refused by the database
        with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
            if backend_name == "sqlite":
                conn.exec_driver_sql("PRAGMA foreign_keys = ON")
            conn.exec_driver_sql(
                "INSERT INTO memberships (customer_id, product_slug, status, updated_at)"
                " VALUES ('nobody', 'pro', 'active', '2026-01-01 00:00:00')"
            )
        # …and so does the primary key: the same membership twice is refused
        with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO memberships (customer_id, product_slug, status, updated_at)"
                " VALUES ('1', 'pro', 'active', '2026-01-01 00:00:00')"
            )
        assert (
            store.count_audiences([Targets(products=("pro",))], ("active",))[
                Targets(products=("pro",))
            ].total
            == n - n // 3
        )
    finally:
        store.close()


def test_an_import_on_a_session_that_used_temporary_tables_still_stages(pg_url: str) -> None:
    """An import gives its stage larger buffers for temporary tables, a setting a PostgreSQL
    session refuses once it has used a temporary table with other buffers: imports on such a
    session (here one that used one first) go on with the buffers the session has."""
    from commsync.model import CustomerRecord

    store = open_store(pg_url)
    sessions = set()
    try:
        with store.engine.begin() as conn:  # the pool's one session uses 8 MB of buffers
            conn.exec_driver_sql("CREATE TEMPORARY TABLE other (a INTEGER) ON COMMIT DROP")
            conn.exec_driver_sql("INSERT INTO other VALUES (1)")
            sessions.add(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        for round_ in range(3):
            counts = store.import_customers(
                [(i, CustomerRecord(str(i), f"c{i}-{round_}@example.com")) for i in range(1, 50)]
            )
            assert counts.inserted + counts.updated == 49
            with store.engine.connect() as conn:
                sessions.add(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        assert len(sessions) == 1  # one session: every import met its refusal
        emails = {str(r[1]) for r in dump_store(pg_url)["customers"]}
        assert emails == {f"c{i}-2@example.com" for i in range(1, 50)}
    finally:
        store.close()
