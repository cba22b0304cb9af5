"""Scheduled email broadcasts, started by the delivery workers when their `send_at` passes.

The workers run as real processes (`deliver --loop`, `deliver --once`, `serve`) against a real
SMTP server; the apply is the real command. Waiting long (max_lateness) uses an injected clock.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from commsync.api import Project
from commsync.api.context import Context
from commsync.delivery.broadcast import WorkerBroadcasts
from commsync.delivery.engine import DeliveryReport
from commsync.delivery.worker import Worker
from commsync.model import BroadcastSpec, LiveBroadcast, Targets
from commsync.store.sql import SqlStore, open_store
from tests.helpers import Repo, seed, settings_for
from tests.http_server import Served
from tests.smtp_server import SmtpServer, free_port, wait_for
from tests.test_deliver_workers import _commsync, _stop, _up

RECIPIENTS = 12


def _schedule(repo: Repo, bid: str, send_at: datetime, extra: str = "") -> None:
    repo.write(
        f"broadcasts/{bid}.yaml",
        f"kind: email\nsubject: {bid.title()} news\ntargets: {{all: true}}\n"
        f"content: Hello {{{{ customer_first_name }}}}.\nsend_at: {send_at.isoformat()}\n{extra}",
    )
    repo.commit_all(f"schedule {bid}")


def _apply(repo: Repo) -> str:
    result = repo.cli("apply", "--yes")
    assert result.exit_code == 0, result.output
    return result.stdout


def _sql(repo: Repo, statement: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(repo.store_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(statement))]
    finally:
        engine.dispose()


def _status(repo: Repo, bid: str) -> str:
    return str(_sql(repo, f"SELECT status FROM broadcasts WHERE id = '{bid}'")[0][0])


def _setup(repo: Repo, smtp_server: SmtpServer) -> None:
    repo.write("commsync.yaml", settings_for(smtp_server.url, extra="imports: none\n"))
    seed(repo, RECIPIENTS)


def _each_once(smtp_server: SmtpServer, subject: str) -> None:
    got = [m for m in smtp_server.recorder.messages if m.parsed()["Subject"] == subject]
    recipients = Counter(r for m in got for r in m.recipients)
    assert recipients == Counter({f"c{i}@example.com": 1 for i in range(1, RECIPIENTS + 1)})


def test_a_running_deliver_loop_sends_a_scheduled_broadcast_when_its_time_comes(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(repo, smtp_server)
    worker = _commsync(repo, "deliver", "--loop", "--poll", "0.2")
    try:
        send_at = datetime.now(UTC) + timedelta(seconds=5)
        _schedule(repo, "soon", send_at)
        plan = repo.plan_json()
        assert [(a["address"], a["action"]) for a in plan["actions"]] == [
            ("email.soon", "scheduled")
        ]
        assert "audience is counted again then" in plan["actions"][0]["reason"]
        assert "scheduled for" in _apply(repo)
        assert _status(repo, "soon") == "scheduled"
        assert smtp_server.recorder.messages == []
        wait_for(lambda: len(smtp_server.recorder.messages) >= RECIPIENTS, timeout=90)
        assert datetime.now(UTC) >= send_at  # not early
        wait_for(lambda: _status(repo, "soon") == "sent", timeout=30)
    finally:
        code, out, err = _stop(worker)
    assert code == 0, (out, err)
    _each_once(smtp_server, "Soon news")
    # a second apply (the next merge) sends nothing: the plan has nothing to do
    assert repo.plan_json()["actions"] == []
    _apply(repo)
    assert len(smtp_server.recorder.messages) == RECIPIENTS
    status = repo.cli("status").stdout
    assert "soon" in status and "sent" in status


def test_serve_sends_a_scheduled_broadcast_when_its_time_comes(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(repo, smtp_server)
    _schedule(repo, "served", datetime.now(UTC) + timedelta(seconds=4))
    _apply(repo)
    port = free_port()
    server = _commsync(repo, "serve", "--port", str(port))
    try:
        wait_for(lambda: _up(f"http://127.0.0.1:{port}"), timeout=60)
        wait_for(lambda: len(smtp_server.recorder.messages) >= RECIPIENTS, timeout=90)
        wait_for(lambda: _status(repo, "served") == "sent", timeout=30)
    finally:
        _stop(server)
    _each_once(smtp_server, "Served news")


def test_a_worker_that_comes_after_send_at_sends_it_once(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(repo, smtp_server)
    send_at = datetime.now(UTC) + timedelta(seconds=2)
    _schedule(repo, "late", send_at)
    _apply(repo)
    wait_for(lambda: datetime.now(UTC) > send_at + timedelta(seconds=1), timeout=10)
    for _ in range(2):  # cron's `deliver --once`, twice: the second finds nothing to do
        once = _commsync(repo, "deliver", "--once")
        out, err = once.communicate(timeout=120)
        assert once.returncode == 0, (out, err)
    assert _status(repo, "late") == "sent"
    _each_once(smtp_server, "Late news")
    _apply(repo)
    assert len(smtp_server.recorder.messages) == RECIPIENTS


def _late_worker_round(repo: Repo, max_lateness: str) -> DeliveryReport:
    """A broadcast scheduled an hour ahead with `max_lateness`, applied; then one worker round
    two hours after its send_at (an injected clock: no waiting)."""
    send_at = datetime.now(UTC) + timedelta(hours=1)
    _schedule(repo, "party", send_at, f"max_lateness: {max_lateness}\n")
    _apply(repo)
    store = open_store(repo.store_url)
    try:
        settings = Context(Project(repo.root)).settings()
        broadcasts = WorkerBroadcasts(store, settings, lambda: None)
        late = send_at + timedelta(hours=2)
        worker = Worker(store, settings, {}, clock=lambda: late, broadcasts=broadcasts)
        return worker.run_blocking(loop=False)
    finally:
        store.close()


def test_past_max_lateness_a_scheduled_send_is_missed_and_never_sent(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(repo, smtp_server)
    report = _late_worker_round(repo, "30m")  # no worker ran for two hours after send_at
    assert report.sent == 0 and smtp_server.recorder.messages == []
    assert _status(repo, "party") == "missed"
    assert _sql(repo, "SELECT count(*) FROM sends") == [(0,)]
    warnings = repo.plan_json()["warnings"]
    assert [w["code"] for w in warnings] == ["missed"]
    assert "never sent" in warnings[0]["message"]
    assert "missed" in repo.cli("status").stdout
    _apply(repo)  # and nothing later sends it
    assert smtp_server.recorder.messages == []


def test_within_max_lateness_a_late_worker_still_sends(repo: Repo, smtp_server: SmtpServer) -> None:
    _setup(repo, smtp_server)
    report = _late_worker_round(repo, "3h")
    assert report.sent == RECIPIENTS
    assert _status(repo, "party") == "sent"
    _each_once(smtp_server, "Party news")


def test_before_it_fires_a_scheduled_broadcast_follows_its_file(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(repo, smtp_server)
    send_at = datetime.now(UTC) + timedelta(days=2)
    _schedule(repo, "promo", send_at)
    _apply(repo)
    repo.write(
        "broadcasts/promo.yaml",
        "kind: email\nsubject: Promo, edited\ntargets: {all: true}\ncontent: New words.\n"
        f"send_at: {send_at.isoformat()}\n",
    )
    repo.commit_all("edit")
    assert [a["action"] for a in repo.plan_json()["actions"]] == ["update"]
    _apply(repo)
    spec = _sql(repo, "SELECT spec FROM broadcasts WHERE id = 'promo'")[0][0]
    assert "Promo, edited" in str(spec)
    later = send_at + timedelta(hours=5)
    repo.write(
        "broadcasts/promo.yaml",
        "kind: email\nsubject: Promo, edited\ntargets: {all: true}\ncontent: New words.\n"
        f"send_at: {later.isoformat()}\n",
    )
    repo.commit_all("move it")
    actions = repo.plan_json()["actions"]
    assert [a["action"] for a in actions] == ["reschedule"]
    assert later.isoformat() in actions[0]["reason"]
    _apply(repo)
    assert _status(repo, "promo") == "scheduled"
    repo.remove("broadcasts/promo.yaml")
    repo.commit_all("drop it")
    assert [a["action"] for a in repo.plan_json()["actions"]] == ["unschedule"]
    assert "unscheduled" in _apply(repo)
    assert _sql(repo, "SELECT count(*) FROM broadcasts") == [(0,)]
    assert repo.plan_json()["actions"] == []
    assert smtp_server.recorder.messages == []


def test_apply_still_sends_a_recorded_schedule_that_is_due(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(repo, smtp_server)
    send_at = datetime.now(UTC) + timedelta(seconds=2)
    _schedule(repo, "due", send_at)
    _apply(repo)
    wait_for(lambda: datetime.now(UTC) > send_at, timeout=10)
    assert [a["action"] for a in repo.plan_json()["actions"]] == ["send"]
    _apply(repo)
    assert _status(repo, "due") == "sent"
    _each_once(smtp_server, "Due news")


def _email(bid: str, send_at: datetime) -> LiveBroadcast:
    spec = BroadcastSpec("email", "Hi", "Body", Targets(all=True), send_at=send_at)
    return LiveBroadcast(bid, spec, "scheduled", spec.spec_hash())


@pytest.mark.parametrize("store_url", ["sqlite-file", "postgresql"], indirect=True)
def test_a_scheduled_send_starts_once_whoever_asks(store_url: str) -> None:
    """Two workers' schedulers and an apply race for the same due broadcast: one starts it."""
    store = open_store(store_url)
    try:
        with store.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO customers (id, email, email_key, updated_at)"
                    " VALUES ('1', 'a@example.com', 'a@example.com', '2026-11-01 00:00:00')"
                )
            )
        now = datetime.now(UTC)
        live = _email("race", now - timedelta(minutes=1))
        assert store.schedule_broadcast(live)
        started: list[object] = []

        def start() -> None:
            started.extend(store.start_due_broadcasts(now, ("active",)))

        threads = [threading.Thread(target=start) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(started) == 1
        sending = LiveBroadcast("race", live.spec, "sending", live.spec.spec_hash())
        assert store.record_send(sending, ("active",)) is None  # apply came second
        assert not store.schedule_broadcast(live)  # so did an edit
        assert not store.end_schedule("race", missed=False)
        assert store.snapshot().broadcasts["race"].status == "sending"
    finally:
        store.close()


def _workers_mode(repo: Repo, smtp_server: SmtpServer, count: int = RECIPIENTS) -> None:
    extra = "  delivery: workers\n  worker_timeout: 5\nimports: none\n"
    repo.write("commsync.yaml", settings_for(smtp_server.url, connections=2, extra=extra))
    seed(repo, count)


def test_the_queue_lists_scheduled_broadcasts_and_cancel_stops_one_before_it_starts(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(repo, smtp_server)
    send_at = datetime.now(UTC) + timedelta(seconds=3)
    _schedule(repo, "oops", send_at)
    _apply(repo)
    listing = repo.cli("queue")
    assert listing.exit_code == 0, listing.output
    assert "email broadcasts:" in listing.stdout
    row = next(line for line in listing.stdout.splitlines() if line.startswith("oops"))
    assert "scheduled" in row and send_at.strftime("%Y-%m-%d %H:%M") in row
    document = repo.cli("queue", "--format", "json")
    assert [b["id"] for b in json.loads(document.stdout)["broadcasts"]] == ["oops"]
    refused = repo.cli("queue", "cancel", "--broadcast", "nope", "--yes")
    assert refused.exit_code == 1 and "no email broadcast has the id 'nope'" in refused.stderr
    done = repo.cli("queue", "cancel", "--broadcast", "oops", "--yes")
    assert done.exit_code == 0, done.output
    assert "cancelled the scheduled broadcast oops" in done.stdout
    assert _status(repo, "oops") == "cancelled"
    wait_for(lambda: datetime.now(UTC) > send_at + timedelta(seconds=1), timeout=10)
    once = _commsync(repo, "deliver", "--once")
    assert once.wait(timeout=120) == 0
    _apply(repo)
    assert smtp_server.recorder.messages == []
    assert [w["code"] for w in repo.plan_json()["warnings"]] == ["cancelled"]
    again = repo.cli("queue", "cancel", "--broadcast", "oops", "--yes")
    assert again.exit_code == 1 and "is cancelled: there is nothing left" in again.stderr


def test_the_emergency_brake_stops_a_send_in_progress_for_good(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    total = 80
    _workers_mode(repo, smtp_server, total)
    repo.write(
        "broadcasts/wrong.yaml",
        "kind: email\nsubject: Wrong price\ntargets: {all: true}\ncontent: 0 EUR\n",
    )
    repo.commit_all("oops")
    out = _apply(repo)
    assert f"{total} recipients queued for the delivery workers" in out
    assert smtp_server.recorder.messages == []  # apply only froze the audience
    smtp_server.recorder.delay = 0.05
    worker = _commsync(repo, "deliver", "--loop", "--poll", "0.2")
    try:
        wait_for(lambda: len(smtp_server.recorder.messages) >= 5, timeout=60)
        listing = repo.cli("queue").stdout
        assert "being sent by the delivery workers" in listing, listing
        done = repo.cli("queue", "cancel", "--broadcast", "wrong", "--yes")
        assert done.exit_code == 0, done.output
        assert "stopped the broadcast wrong" in done.stdout
        time.sleep(2.0)  # what was being sent finishes; nothing more starts
    finally:
        code, out_, err = _stop(worker)
    assert code == 0, (out_, err)
    counts = dict(_sql(repo, "SELECT status, count(*) FROM deliveries GROUP BY status"))
    assert set(counts) <= {"sent", "cancelled"}, counts
    assert counts["cancelled"] > 0 and counts["sent"] + counts["cancelled"] == total
    assert len(smtp_server.recorder.messages) == counts["sent"]
    assert _status(repo, "wrong") == "cancelled"
    plan = repo.plan_json()
    assert plan["actions"] == [] and [w["code"] for w in plan["warnings"]] == ["cancelled"]
    # nothing sends it again: not an apply, not --resend-uncertain, not a worker
    assert repo.cli("apply", "--yes", "--retry-failed", "--resend-uncertain").exit_code == 0
    once = _commsync(repo, "deliver", "--once")
    assert once.wait(timeout=120) == 0
    assert len(smtp_server.recorder.messages) == counts["sent"]
    assert _status(repo, "wrong") == "cancelled"


def test_status_warns_when_scheduled_sends_have_no_worker(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(repo, smtp_server)
    _schedule(repo, "lonely", datetime.now(UTC) + timedelta(days=1))
    _apply(repo)
    status = repo.cli("status").stdout
    assert "Delivery workers: last seen never" in status
    assert "wait for a delivery worker" in status
    assert "scheduled for" in status
    once = _commsync(repo, "deliver", "--once")  # a worker comes by (cron's job)
    assert once.wait(timeout=120) == 0
    status = repo.cli("status").stdout
    assert "wait for a delivery worker" not in status
    assert "last seen never" not in status
    assert [w["code"] for w in repo.plan_json()["warnings"]] == []


def test_waiting_broadcasts_are_shown_by_deliver_queue_status_and_metrics(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(repo, smtp_server)
    _schedule(repo, "later", datetime.now(UTC) + timedelta(days=3))
    _apply(repo)
    once = repo.cli("deliver", "--once")
    assert once.exit_code == 0, once.output
    assert "queue: empty" in once.stdout  # no system-email message waits …
    assert re.search(r"broadcasts: 1 scheduled \(next in (2d23h|3d)", once.stdout), once.stdout
    assert "broadcasts: 1 scheduled" in repo.cli("queue").stdout
    status = repo.cli("status")
    assert "Broadcasts: 1 scheduled" in status.stdout
    document = json.loads(repo.cli("status", "--format", "json").stdout)
    assert document["queue"]["scheduled_broadcasts"] == 1
    assert document["workers_last_seen"] is not None  # the --once worker beat
    with Served(repo.root) as served:
        text = served.get("/metrics").text
    assert 'commsync_broadcasts_pending{state="scheduled"} 1.0' in text
    assert 'commsync_broadcasts_pending{state="sending"} 0.0' in text
    assert "commsync_broadcast_recipients_left 0.0" in text


@pytest.mark.parametrize("store_url", ["sqlite-file", "postgresql"], indirect=True)
def test_workers_beat_are_found_silent_and_are_forgotten_a_week_after_they_stop(
    store_url: str,
) -> None:
    store = open_store(store_url)
    ledger = store.ledger()
    try:
        ledger.heartbeat("host:1:alive", "host", 1)
        ledger.heartbeat("host:2:gone", "host", 2)
        with store.engine.begin() as conn:  # the second one last beat an hour ago
            old = datetime.now(UTC) - timedelta(hours=1)
            stamp = old.replace(tzinfo=None) if "sqlite" in store_url else old
            conn.execute(
                sa.text("UPDATE workers SET seen_at = :t WHERE id = 'host:2:gone'"), {"t": stamp}
            )
        assert store.snapshot().worker_seen_at is not None
        assert ledger.recover_dead(datetime.now(UTC) - timedelta(minutes=1)) == (0, 0)
        rows = dict(_rows(store, "SELECT id, stopped_at FROM workers"))
        assert rows["host:2:gone"] is not None and rows["host:1:alive"] is None  # found gone
        ledger.heartbeat("host:2:gone", "host", 2)  # it was only slow: alive again
        assert dict(_rows(store, "SELECT id, stopped_at FROM workers"))["host:2:gone"] is None
        with store.engine.begin() as conn:
            long_ago = datetime.now(UTC) - timedelta(days=8)
            stamp = long_ago.replace(tzinfo=None) if "sqlite" in store_url else long_ago
            conn.execute(
                sa.text("UPDATE workers SET stopped_at = :t WHERE id = 'host:2:gone'"), {"t": stamp}
            )
        ledger.stopped("host:1:alive")
        assert [r[0] for r in _rows(store, "SELECT id FROM workers")] == ["host:1:alive"]
    finally:
        ledger.close()
        store.close()


def _rows(store: SqlStore, statement: str) -> list[tuple[object, ...]]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(statement))]
