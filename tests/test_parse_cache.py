"""A plan keeps the broadcast files it parsed in the store; the next plan reads them from there.

The kept entries must give the same plan as parsing, be used only for the same bytes, path,
limits and code, never be written by a run that reports an error, and never stop a plan when
they cannot be read or written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from commsync.model.limits import DEFAULT_LIMITS
from commsync.repo.broadcasts import parse_broadcast
from commsync.repo.parsecache import decode, encode, file_key
from commsync.store.sql import create_store_engine, open_store
from tests.conftest import EXAMPLES
from tests.helpers import Repo, dump_store

CARD = "broadcasts/notices/card-expiring.yaml"


def _kept(repo: Repo) -> dict[str, str]:
    engine = create_store_engine(repo.store_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT key, entry FROM parsed_files")).all()
    finally:
        engine.dispose()
    return {str(k): str(v) for k, v in rows}


def _execute(repo: Repo, sql: str, **params: Any) -> None:
    engine = create_store_engine(repo.store_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(sql), params)
    finally:
        engine.dispose()


def _actions(document: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(document["actions"], key=lambda a: str(a["address"]))


def test_a_plan_keeps_its_files_and_the_next_plan_reads_them(demo_repo: Repo) -> None:
    first = demo_repo.plan_json()
    kept = _kept(demo_repo)
    assert len(kept) == 6  # every broadcast file of examples/ (none has a diagnostic)
    assert _actions(demo_repo.plan_json()) == _actions(first)
    # proof that the kept entries answered: one changed behind the store's back shows
    (key,) = [k for k, v in kept.items() if "expires this month" in v]
    tampered = kept[key].replace("expires this month", "TAMPERED")
    _execute(demo_repo, "UPDATE parsed_files SET entry = :e WHERE key = :k", e=tampered, k=key)
    subjects = {a["address"]: a["sample_subject"] for a in demo_repo.plan_json()["actions"]}
    assert subjects["notice.notices/card-expiring"] == "Your payment card TAMPERED"
    # an edited file has another key: it is parsed again, and what it says now is planned
    path = demo_repo.root / CARD
    path.write_text(path.read_text().replace("expires this month", "expires soon"))
    subjects = {a["address"]: a["sample_subject"] for a in demo_repo.plan_json()["actions"]}
    assert subjects["notice.notices/card-expiring"] == "Your payment card expires soon"
    assert len(_kept(demo_repo)) == 7


def test_unknown_refs_in_a_kept_file_are_reported_where_the_file_has_them(
    demo_repo: Repo,
) -> None:
    assert demo_repo.cli("plan").exit_code in (0, 2)
    assert len(_kept(demo_repo)) == 6
    # customer 1004 and product ids disappear behind the store's back (PRAGMA: no cascade)
    _execute(demo_repo, "DELETE FROM memberships WHERE customer_id = '1004'")
    _execute(demo_repo, "DELETE FROM customers WHERE id = '1004'")
    planned = demo_repo.cli("plan")
    validated = demo_repo.cli("validate")  # no kept files: it parses
    assert planned.exit_code == 1 and validated.exit_code == 1
    unknown = f"{CARD}:10:7: error: unknown customer '1004'"
    assert unknown in planned.stderr
    assert unknown in validated.stdout


def test_a_run_that_reports_an_error_keeps_nothing(demo_repo: Repo) -> None:
    demo_repo.write("broadcasts/notices/bad.yaml", "kind: notice\nsubject: Hi\ncontent: x\n")
    before = dump_store(demo_repo.store_url)
    assert demo_repo.cli("plan").exit_code == 1  # no targets: an error
    assert dump_store(demo_repo.store_url) == before
    assert _kept(demo_repo) == {}


def test_an_entry_that_cannot_be_read_is_parsed_again_and_replaced(demo_repo: Repo) -> None:
    first = demo_repo.plan_json()
    _execute(demo_repo, "UPDATE parsed_files SET entry = '{'")
    assert _actions(demo_repo.plan_json()) == _actions(first)
    assert all(json.loads(entry)["id"] for entry in _kept(demo_repo).values())


def test_a_file_with_a_warning_is_parsed_every_time(demo_repo: Repo) -> None:
    demo_repo.write(
        "broadcasts/notices/all-and-more.yaml",
        "kind: notice\nsubject: Hi\ncontent: x\ntargets: {all: true, products: [pro]}\n",
    )
    result = demo_repo.cli("plan")
    assert result.exit_code in (0, 2) and "warning: all: true already selects" in result.stderr
    assert not any('"all-and-more"' in e for e in _kept(demo_repo).values())
    assert "warning: all: true already selects" in demo_repo.cli("plan").stderr


def test_the_key_names_the_bytes_the_path_the_limits_and_the_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dataclasses import replace

    from commsync.repo import parsecache

    key = file_key("broadcasts/a.yaml", b"kind: notice\n", DEFAULT_LIMITS)
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert key == file_key("broadcasts/a.yaml", b"kind: notice\n", DEFAULT_LIMITS)
    assert key != file_key("broadcasts/b.yaml", b"kind: notice\n", DEFAULT_LIMITS)
    assert key != file_key("broadcasts/a.yaml", b"kind: notice \n", DEFAULT_LIMITS)
    smaller = replace(DEFAULT_LIMITS, subject_chars=DEFAULT_LIMITS.subject_chars - 1)
    assert key != file_key("broadcasts/a.yaml", b"kind: notice\n", smaller)
    monkeypatch.setattr(parsecache, "code_fingerprint", lambda: "another commsync")
    assert key != file_key("broadcasts/a.yaml", b"kind: notice\n", DEFAULT_LIMITS)


_SOURCES = [
    (path.relative_to(EXAMPLES).as_posix(), path.read_bytes())
    for path in sorted((EXAMPLES / "broadcasts").rglob("*.yaml"))
] + [
    # an integer past 64 bits (orjson refuses to write it, and would read it as a float)
    (
        "broadcasts/big.yaml",
        b"kind: notice\nsubject: Hi\ncontent: x\n"
        b"targets: {customers: [123456789012345678901234567890, 7]}\n",
    ),
    (
        "broadcasts/utf8.yaml",
        "kind: notice\nsubject: Grüße 🎉\ncontent: é\ntargets: {all: true}\n".encode(),
    ),
]


@pytest.mark.parametrize(("rel", "data"), _SOURCES, ids=[rel for rel, _ in _SOURCES])
def test_an_entry_gives_back_what_parsing_gave(rel: str, data: bytes) -> None:
    parsed, diags = parse_broadcast(rel, data)
    assert parsed is not None and diags == []
    again = decode(rel, encode(parsed))
    assert again is not None
    assert (again.id, again.kind, again.fields, again.all, again.origin) == (
        parsed.id,
        parsed.kind,
        parsed.fields,
        parsed.all,
        parsed.origin,
    )
    assert (again.customer_refs, again.products, again.valid) == (
        parsed.customer_refs,
        parsed.products,
        True,
    )
    for _, pointer in (*parsed.customer_refs, *parsed.products):
        assert again.doc.diag(pointer, "x") == parsed.doc.diag(pointer, "x")


def test_keeping_is_best_effort_where_the_store_refuses_the_write(pg_url: str) -> None:
    """A role that may only read (a reviewer's CI token, say) plans without keeping."""
    store = open_store(pg_url)
    store.close()
    role = "commsync_reader_" + pg_url.rsplit("search_path%3D", 1)[-1][-12:]
    schema = pg_url.rsplit("search_path%3D", 1)[-1]
    admin = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(sa.text(f"GRANT USAGE ON SCHEMA {schema} TO {role}"))
        conn.execute(sa.text(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}"))
    try:
        reader = open_store(pg_url.replace("postgres@", f"{role}@"))
        try:
            assert reader.parsed_files(["a" * 64]) == {}
            reader.keep_parsed_files({"a" * 64: "{}"})  # refused: logged, not raised
            assert reader.parsed_files(["a" * 64]) == {}
        finally:
            reader.close()
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
            conn.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()


@pytest.mark.parametrize("keeper", ["store", "light reader"])
def test_entries_older_than_thirty_days_are_dropped_when_others_are_kept(
    tmp_path: Path, keeper: str
) -> None:
    """Kept by the store or by the light reader `plan` uses on SQLite (store/light.py): each
    reads what the other kept, and both drop what is older than thirty days."""
    from datetime import UTC, datetime, timedelta

    from commsync.store.light import open_references

    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = open_store(url)
    try:
        light = open_references(url)
        assert light is not None
        keeping = light if keeper == "light reader" else store
        reading = store if keeper == "light reader" else light
        keeping.keep_parsed_files({"old": "{}", "recent": "{}"})
        with store.engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE parsed_files SET created_at = :at WHERE key = 'old'"),
                {"at": (datetime.now(UTC) - timedelta(days=31)).strftime("%Y-%m-%d %H:%M:%S.%f")},
            )
        assert reading.parsed_files(["old", "recent"]) == {"old": "{}", "recent": "{}"}
        keeping.keep_parsed_files({"new": "{}", "recent": "[]"})
        assert reading.parsed_files(["old", "recent", "new"]) == {"recent": "[]", "new": "{}"}
    finally:
        store.close()


def test_the_light_reader_keeps_nothing_while_another_writer_holds_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Best effort: an apply holding SQLite's write lock makes the plan's keeping give up (after
    the busy timeout), not fail the plan; the next plan keeps what it parses."""
    import sqlite3

    from commsync.store import light as light_module

    url = f"sqlite:///{tmp_path / 'store.db'}"
    open_store(url).close()
    reader = light_module.open_references(url)
    assert reader is not None
    monkeypatch.setattr(light_module, "BUSY_TIMEOUT_MS", 50)
    holder = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        reader.keep_parsed_files({"a": "{}"})  # gives up: logged, not raised
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert reader.parsed_files(["a"]) == {}
    reader.keep_parsed_files({"a": "{}"})
    assert reader.parsed_files(["a"]) == {"a": "{}"}


def test_an_apply_that_plans_keeps_its_files_once_it_is_done(demo_repo: Repo) -> None:
    refused = demo_repo.cli("apply", "--yes", "--ref", "no-such-ref")
    assert refused.exit_code == 1 and _kept(demo_repo) == {}
    applied = demo_repo.cli("apply", "--yes")
    assert applied.exit_code == 0, applied.output
    assert len(_kept(demo_repo)) == 6


def test_a_plan_that_reports_an_error_does_not_create_the_store(repo: Repo) -> None:
    """The kept parses are looked for in an existing store only: a SQLite store that does not
    exist yet keeps nothing, and a plan refused for a file must not have created it."""
    store_file = repo.root / ".commsync" / "store.db"
    repo.write("broadcasts/bad.yaml", "kind: notice\nsubject: Hi\ncontent: x\n")
    assert repo.cli("plan").exit_code == 1
    assert not store_file.exists()
    repo.write(
        "broadcasts/bad.yaml", "kind: notice\nsubject: Hi\ncontent: x\ntargets: {all: true}\n"
    )
    assert repo.cli("plan").exit_code in (0, 2)  # creates the store; nothing to read there yet
    assert store_file.exists() and _kept(repo) == {}
    assert repo.cli("plan").exit_code in (0, 2)
    assert len(_kept(repo)) == 1
