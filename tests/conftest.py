"""Fixtures: isolated git and environment, real stores (SQLite file/memory, PostgreSQL), repositories."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from commsync.delivery import smtp
from commsync.store import sql
from tests.helpers import Repo, pg_admin_url
from tests.smtp_server import Recorder, SmtpServer

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's git config, HOME or COMMSYNC_* variables."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Test Operator")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "operator@test.example")
    for name in list(os.environ):
        if name.startswith("COMMSYNC_") and name != "COMMSYNC_TEST_PG":
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.fixture(autouse=True)
def guard_stores(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Opening a store outside the test's temp dirs, or a PostgreSQL database but `test`, fails loudly."""
    base = tmp_path_factory.getbasetemp().resolve()
    real = sql.create_store_engine

    def guarded(url: str, pool_size: int = 5) -> sa.Engine:
        parsed = make_url(url)
        on_disk = parsed.drivername.startswith("sqlite") and parsed.database not in (
            None,
            "",
            ":memory:",
        )
        if on_disk and not Path(str(parsed.database)).resolve().is_relative_to(base):
            raise AssertionError(f"a test tried to open a store outside its temp dir: {url}")
        if parsed.drivername.startswith("postgresql") and parsed.database != "test":
            raise AssertionError(
                f"a test tried to open a PostgreSQL database other than test: {url}"
            )
        return real(url, pool_size)

    monkeypatch.setattr(sql, "create_store_engine", guarded)


@pytest.fixture(autouse=True)
def guard_smtp(monkeypatch: pytest.MonkeyPatch) -> None:
    """An SMTP connection to anything but loopback fails loudly inside tests."""
    real = smtp.SmtpSession._connect

    async def guarded(self: smtp.SmtpSession) -> None:
        if self.config.host not in ("127.0.0.1", "localhost", "::1"):
            raise AssertionError(f"a test tried to reach the SMTP server {self.config.host}")
        await real(self)

    monkeypatch.setattr(smtp.SmtpSession, "_connect", guarded)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with SmtpServer(Recorder()) as server:
        yield server


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from this tree (the packaging and CI-recipe tests install it)."""
    out = tmp_path_factory.mktemp("dist")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*build, "-w", str(out), str(REPO_ROOT)], check=True)
    (built,) = out.glob("commsync-*.whl")
    return built


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL store URL on a fresh schema of the `test` database, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_admin_url())
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    base = make_url(pg_admin_url().replace("+psycopg", ""))
    yield base.set(query={"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )
    _drop_schema(admin, schema)
    admin.dispose()


def _drop_schema(admin: sa.Engine, schema: str) -> None:
    """Drop a test's schema even when a session it left behind still holds locks in it.

    A backend whose client vanished without closing (a process killed mid-transaction, a
    connection cut by a test's proxy) keeps its locks until TCP notices; `DROP SCHEMA` would wait
    for it with no limit. Such holders are terminated, and the drop waits 10 s at most per try.
    """
    holders = sa.text(
        "SELECT DISTINCT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = :schema AND l.pid <> pg_backend_pid()"
    )
    for attempt in range(5):
        with admin.begin() as conn:
            for pid in conn.execute(holders, {"schema": schema}).scalars():
                conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        try:
            with admin.begin() as conn:
                conn.execute(sa.text("SET LOCAL lock_timeout = '10s'"))
                conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
            return
        except sa.exc.OperationalError:
            if attempt == 4:
                raise


@pytest.fixture(params=["sqlite-file", "sqlite-memory", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every store backend: the contract suite runs against each."""
    if request.param == "sqlite-file":
        return f"sqlite:///{tmp_path / 'store.db'}"
    if request.param == "sqlite-memory":
        return "sqlite://"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    """An empty operator repository (commsync.yaml only) with a SQLite store in it, git-initialised."""
    r = Repo(tmp_path / "repo")
    r.init()
    return r


@pytest.fixture
def demo_repo(tmp_path: Path) -> Repo:
    """A copy of examples/ with its demo data imported into the store."""
    root = tmp_path / "demo"
    shutil.copytree(EXAMPLES, root, ignore=shutil.ignore_patterns("ci", ".commsync"))
    r = Repo(root)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    r.commit_all("examples")
    r.import_data(EXAMPLES / "data")
    return r


# Long end-to-end tests (several seconds each: real processes, a browser, thousands of messages).
# They are marked here rather than in their files, so the black-box suites stay exactly as they
# were written. Everyday work: `python -m pytest -m "not slow"`; CI runs everything.
SLOW_MODULES = {
    "test_crash.py",
    "test_hostile_inputs.py",
    "test_log_secrets.py",
    "test_store_outages.py",
    "test_deliver_workers.py",
    "test_packaging.py",
    "test_recipes.py",
    "test_serve_fuzz.py",
    "test_widget_browser.py",
    "test_worker_pool.py",
    "test_scheduled.py",
    "test_wordpress_bridge.py",
}
SLOW_TESTS = {
    "test_apply.py::test_apply_sends_each_recipient_their_own_message_once",
    "test_apply.py::test_progress_is_a_line_per_thousand_messages_off_a_terminal",
    "test_apply_faults.py::test_an_unreachable_server_leaves_everything_queued",
    "test_apply_faults.py::test_a_server_that_closes_after_a_few_messages_per_connection",
    "test_apply_lifecycle.py::test_apply_asks_on_a_terminal",
    "test_apply_plans.py::test_two_concurrent_applies_one_waits_out_and_nothing_is_sent_twice",
    "test_cli.py::test_the_installed_entry_point_runs",
    "test_send_ahead.py::test_the_builder_ends_with_a_killed_apply",
    "test_serve_feed.py::test_a_thousand_active_notices",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.path.name
        if module in SLOW_MODULES or f"{module}::{item.originalname}" in SLOW_TESTS:  # type: ignore[attr-defined]
            item.add_marker(pytest.mark.slow)
