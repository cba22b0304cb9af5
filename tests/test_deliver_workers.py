"""Delivery workers as real processes: several sharing one PostgreSQL store, and stopping on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import httpx
import sqlalchemy as sa

from commsync.api import Project
from commsync.api.context import Context
from commsync.events.service import EventService
from commsync.store.sql import create_store_engine, open_store
from tests.helpers import Repo, settings_for
from tests.http_server import ADMIN_KEY
from tests.smtp_server import SmtpServer, free_port, wait_for
from tests.test_events import CATALOG, _setup, payment


def _queue_events(repo: Repo, count: int) -> None:
    """`count` payment_received events, each queuing three messages (customer, copy, admin)."""
    settings = Context(Project(repo.root)).settings()
    store = open_store(settings.store_url)
    try:
        service = EventService(store, settings, CATALOG)
        for i in range(count):
            service.fire(
                "payment_received",
                payment(customer_id=i, customer_user_email=f"u{i}@example.com"),
                key=f"event-{i}",
            )
    finally:
        store.close()


def _statuses(url: str) -> Counter[str]:
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT status, count(*) FROM deliveries GROUP BY status"))
            return Counter({str(s): int(n) for s, n in rows})
    finally:
        engine.dispose()


def _claimers(url: str) -> set[str]:
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT DISTINCT claimed_by FROM deliveries WHERE status = 'sent'")
            )
            return {str(r[0]) for r in rows}
    finally:
        engine.dispose()


def _commsync(repo: Repo, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "commsync", "-C", str(repo.root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _stop(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def test_three_workers_on_one_postgresql_store_send_each_message_once(
    repo: Repo, smtp_server: SmtpServer, pg_url: str
) -> None:
    settings = settings_for(smtp_server.url, connections=2, extra="imports: none\n")
    _setup(repo, smtp_server, settings=settings + f"store: {pg_url}\n")
    _queue_events(repo, 1000)
    assert _statuses(pg_url) == {"queued": 3000}
    smtp_server.recorder.delay = 0.004
    workers = [_commsync(repo, "deliver", "--loop", "--poll", "0.2") for _ in range(3)]
    try:
        wait_for(lambda: len(smtp_server.recorder.messages) >= 3000, timeout=180)
        time.sleep(1.0)  # a second copy of anything would arrive now
    finally:
        results = [_stop(w) for w in workers]
    for code, out, err in results:
        assert code == 0, (out, err)
    ids = Counter(m.parsed()["Message-ID"] for m in smtp_server.recorder.messages)
    assert len(ids) == 3000 and set(ids.values()) == {1}
    assert smtp_server.recorder.by_recipient()["ops@acme.example"] == 1000
    assert _statuses(pg_url) == {"sent": 3000}
    assert len(_claimers(pg_url)) >= 2  # the queue really was shared


def _assert_sent_or_queued(repo: Repo, smtp_server: SmtpServer, total: int) -> None:
    statuses = _statuses(repo.store_url)
    assert set(statuses) <= {"sent", "queued"}, statuses
    assert sum(statuses.values()) == total
    received = Counter(m.parsed()["Message-ID"] for m in smtp_server.recorder.messages)
    assert set(received.values()) <= {1}
    assert statuses["sent"] == len(received)


def test_sigterm_during_delivery_leaves_every_message_sent_or_queued(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(
        repo,
        smtp_server,
        settings=settings_for(smtp_server.url, connections=2, extra="imports: none\n"),
    )
    _queue_events(repo, 150)
    smtp_server.recorder.delay = 0.02
    worker = _commsync(repo, "deliver", "--loop")
    wait_for(lambda: len(smtp_server.recorder.messages) >= 40, timeout=60)
    code, out, err = _stop(worker)
    assert code == 0, (out, err)
    assert "SIGTERM: finishing in-flight messages" in err
    sent_before = len(smtp_server.recorder.messages)
    assert sent_before < 450, "the worker did not stop"
    _assert_sent_or_queued(repo, smtp_server, 450)
    assert _statuses(repo.store_url)["queued"] > 0

    smtp_server.recorder.delay = 0
    finished = _commsync(repo, "deliver", "--once")
    out, err = finished.communicate(timeout=120)
    assert finished.returncode == 0, (out, err)
    assert _statuses(repo.store_url) == {"sent": 450}
    ids = Counter(m.parsed()["Message-ID"] for m in smtp_server.recorder.messages)
    assert len(ids) == 450 and set(ids.values()) == {1}


def test_serve_stops_gracefully_on_sigterm(repo: Repo, smtp_server: SmtpServer) -> None:
    _setup(
        repo,
        smtp_server,
        settings=settings_for(smtp_server.url, connections=2, extra="imports: none\n"),
    )
    smtp_server.recorder.delay = 0.02
    port = free_port()
    server = _commsync(repo, "serve", "--port", str(port), env={"COMMSYNC_API_KEY": ADMIN_KEY})
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _up(url), timeout=60)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
            for i in range(100):
                event = {
                    "type": "payment_received",
                    "key": f"e{i}",
                    "data": payment(customer_id=i, customer_user_email=f"u{i}@example.com"),
                }
                assert client.post("/v1/events", json=event).status_code == 202
        wait_for(lambda: len(smtp_server.recorder.messages) >= 30, timeout=60)
    finally:
        code, out, err = _stop(server)
    # uvicorn re-raises SIGTERM once it has shut down cleanly, as servers conventionally do
    assert code in (0, -signal.SIGTERM), (out, err)
    assert "Application shutdown complete." in err  # the lifespan, and with it the worker, ended
    assert len(smtp_server.recorder.messages) < 300, "the server did not stop"
    _assert_sent_or_queued(repo, smtp_server, 300)


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_serve_with_several_worker_processes(repo: Repo, smtp_server: SmtpServer) -> None:
    _setup(repo, smtp_server, settings=settings_for(smtp_server.url, extra="imports: none\n"))
    repo.write(
        "broadcasts/hello.yaml",
        "kind: notice\nsubject: Hello\ntargets:\n  all: true\ncontent: Hi.\n",
    )
    repo.commit_all("notice")
    assert repo.cli("apply", "--yes").exit_code == 0
    token = repo.cli("token", "1").stdout.strip().splitlines()[-1]
    port = free_port()
    server = _commsync(
        repo, "serve", "--port", str(port), "--workers", "2", env={"COMMSYNC_API_KEY": ADMIN_KEY}
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _up(url), timeout=60)
        with httpx.Client(base_url=url) as client:
            for _ in range(20):  # spread over both processes
                feed = client.get(
                    "/v1/customers/1/notices", headers={"Authorization": f"Bearer {token}"}
                )
                assert [n["id"] for n in feed.json()["notices"]] == ["hello"]
            event = {"type": "payment_received", "key": "w2", "data": payment()}
            admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
            assert client.post("/v1/events", json=event, headers=admin).status_code == 202
        wait_for(lambda: len(smtp_server.recorder.messages) == 3, timeout=60)  # a worker delivered
    finally:
        code, out, err = _stop(server)
    assert code in (0, -signal.SIGTERM), (out, err)
    assert err.count("Application shutdown complete.") == 2
    assert _statuses(repo.store_url) == {"sent": 3}
