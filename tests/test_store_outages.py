"""`commsync serve` through a store outage, as a real process while events keep arriving.

PostgreSQL is reached through a TCP proxy that the test cuts for 5 s (every connection reset,
new ones refused); SQLite is locked by another process for 5 s. Afterwards, without a restart:
every event answered 202 has its emails delivered exactly once — or `uncertain` when the cut fell
between the SMTP transaction and the recorded outcome, never silently lost or sent twice; the
refused events were answered 503; `/healthz` answered 503 during the outage and 200 after.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.helpers import Repo, settings_for
from tests.hostile import EXE
from tests.smtp_server import SmtpServer, free_port, wait_for
from tests.tcp_proxy import TcpProxy
from tests.test_events import _setup, payment

ADMIN_KEY = "outage-admin-key-0123456789"
OUTAGE = 5.0


@dataclass
class Traffic:
    """What the clients saw: each event's answer, and /healthz over time."""

    answers: dict[str, int | str] = field(default_factory=dict)  # key -> status or exception
    feed: list[tuple[float, int | str]] = field(default_factory=list)  # a customer's feed reads
    health: list[tuple[float, int | str]] = field(default_factory=list)  # (monotonic, status)
    stop: threading.Event = field(default_factory=threading.Event)


def _fire(url: str, traffic: Traffic, prefix: str, interval: float) -> None:
    with httpx.Client(
        base_url=url, timeout=40, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    ) as c:
        i = 0
        while not traffic.stop.is_set():
            key = f"{prefix}-{i}"
            data = payment(customer_id=i, customer_user_email=f"{key}@example.com")
            try:
                status: int | str = c.post(
                    "/v1/events", json={"type": "payment_received", "data": data, "key": key}
                ).status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            traffic.answers[key] = status
            i += 1
            time.sleep(interval)


def _poll(
    url: str,
    traffic: Traffic,
    path: str,
    into: list[tuple[float, int | str]],
    every: float,
    headers: dict[str, str] | None = None,
) -> None:
    """GET `path` every `every` seconds until stopped: a health check, a dashboard's feed."""
    with httpx.Client(base_url=url, timeout=10, headers=headers) as client:
        while not traffic.stop.is_set():
            try:
                status: int | str = client.get(path).status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            into.append((time.monotonic(), status))
            time.sleep(every)


@contextmanager
def _serving(repo: Repo, log: Path) -> Iterator[str]:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [EXE, "-C", str(repo.root), "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COMMSYNC_API_KEY": ADMIN_KEY},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(url), timeout=60)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            if os.environ.get("DEBUG_SPY"):
                subprocess.run([os.environ["DEBUG_SPY"], "dump", "--pid", str(process.pid)])
            process.kill()
            raise


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _run_through(url: str, outage: Callable[[], None], token: str) -> tuple[Traffic, float, float]:
    """Events from three clients, a feed reader and a health watcher, across `outage()`
    (which blocks)."""
    traffic = Traffic()
    threads = [
        threading.Thread(target=_fire, args=(url, traffic, f"c{n}", 0.1), daemon=True)
        for n in range(3)
    ]
    watch = (url, traffic, "/healthz", traffic.health, 0.2)
    feed = (url, traffic, "/v1/customers/1/notices", traffic.feed, 0.1)
    threads += [
        threading.Thread(target=_poll, args=watch, daemon=True),  # the health check
        threading.Thread(  # a dashboard reading its customer's notices: the feed's pool
            target=_poll, args=(*feed, {"Authorization": f"Bearer {token}"}), daemon=True
        ),
    ]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    began = time.monotonic()
    outage()
    ended = time.monotonic()
    time.sleep(3.0)  # events keep arriving after the store is back
    traffic.stop.set()
    for thread in threads:
        thread.join(timeout=60)
    return traffic, began, ended


def _deliveries(store_url: str) -> dict[str, list[tuple[str, str | None]]]:
    """Each event's (idempotency key) deliveries as (status, Message-ID)."""
    engine = sa.create_engine(store_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT e.idempotency_key, d.status, d.message_id FROM deliveries d "
                    "JOIN sends s ON s.id = d.send_id JOIN events e ON e.id = s.event_id"
                )
            ).all()
    finally:
        engine.dispose()
    out: dict[str, list[tuple[str, str | None]]] = {}
    for key, status, message_id in rows:
        out.setdefault(str(key), []).append((str(status), message_id))
    return out


def _no_traceback(log: str) -> None:
    at = log.find("Traceback")
    assert at < 0, log[max(0, at - 1500) : at + 4000]


def _check(
    url: str,
    log: Path,
    traffic: Traffic,
    began: float,
    ended: float,
    store_url: str,
    smtp: SmtpServer,
) -> None:
    answers = Counter(traffic.answers.values())
    accepted = [k for k, status in traffic.answers.items() if status == 202]
    assert set(answers) <= {202, 503}, answers  # refused while the store was away: 503
    assert len(accepted) >= 30, answers
    during = [s for t, s in traffic.health if began + 2.5 < t < ended]
    assert 503 in during, [(round(t - began, 1), s) for t, s in traffic.health]
    # the feed: 200 or 503 throughout (never a 500 or a hang), and 200 again once the store is back
    assert {s for _, s in traffic.feed} <= {200, 503}, Counter(s for _, s in traffic.feed)
    assert [s for t, s in traffic.feed if t > ended + 1.5][-5:] == [200] * 5, traffic.feed[-10:]
    try:
        wait_for(lambda: _up(url), timeout=45)  # the worker's backoff is 30 s at most
    except AssertionError:
        health = httpx.get(f"{url}/healthz", timeout=10).text
        warnings = [
            line for line in log.read_text().splitlines() if "WARNING" in line or "ERROR" in line
        ]
        raise AssertionError(f"not healthy again: {health}\n" + "\n".join(warnings[-30:])) from None

    def settled() -> bool:
        rows = _deliveries(store_url)
        return all(
            status in ("sent", "uncertain") for key in accepted for status, _ in rows.get(key, [])
        ) and all(len(rows.get(key, [])) == 3 for key in accepted)

    wait_for(settled, timeout=120)
    time.sleep(1.0)  # a second copy of anything would arrive now
    rows = _deliveries(store_url)
    for m in smtp.recorder.messages:
        try:
            m.parsed()
        except Exception as exc:  # a malformed message reached the server: show it
            raise AssertionError(f"{exc!r}: {m.data[:4000]!r}") from None
    received = Counter(m.parsed()["Message-ID"] for m in smtp.recorder.messages)
    assert set(received.values()) == {1}, "a message was delivered twice"
    sent = {mid for deliveries in rows.values() for status, mid in deliveries if status == "sent"}
    maybe = {mid for d in rows.values() for status, mid in d if status == "uncertain"}
    assert sent <= set(received), "a delivery recorded sent never arrived"
    assert set(received) <= sent | maybe, "a message arrived that the store does not know"
    for key in accepted:  # every accepted event: customer, copy and admin, none lost
        assert len(rows[key]) == 3, (key, rows[key])
    # refused events left nothing half-made: either all three messages or nothing
    for key, status in traffic.answers.items():
        if status != 202:
            assert len(rows.get(key, [])) in (0, 3), (key, rows.get(key))


def test_serve_survives_postgresql_cut_off_for_five_seconds(
    repo: Repo, smtp_server: SmtpServer, pg_url: str, tmp_path: Path
) -> None:
    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        proxied = make_url(pg_url).set(port=proxy.port).render_as_string(hide_password=False)
        settings = settings_for(smtp_server.url, connections=2, extra="imports: none\n")
        _setup(repo, smtp_server, settings=settings + f"store: {proxied}\n")
        smtp_server.recorder.delay = 0.01
        log = tmp_path / "serve.log"

        def cut() -> None:
            proxy.cut()
            time.sleep(OUTAGE)
            proxy.restore()

        token = repo.cli("token", "1").output.strip().splitlines()[-1]
        with _serving(repo, log) as url:
            traffic, began, ended = _run_through(url, cut, token)
            _check(url, log, traffic, began, ended, pg_url, smtp_server)
            metrics = httpx.get(f"{url}/metrics").text
        text = log.read_text()
        assert "the store is unavailable" in text, text[-3000:]
        assert "reconnect" in text.lower(), text[-3000:]
        reconnects = [
            line for line in metrics.splitlines() if line.startswith("commsync_worker_reconnects")
        ]
        assert reconnects and float(reconnects[0].split()[-1]) >= 1, metrics
    _no_traceback(text)


def test_serve_survives_another_process_locking_sqlite_for_five_seconds(
    repo: Repo, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    _setup(repo, smtp_server)
    store_url = repo.store_url
    database = make_url(store_url).database
    assert database
    log = tmp_path / "serve.log"
    locker = (
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        f"time.sleep({OUTAGE})\n"
        "c.execute('COMMIT')\n"
    )

    def lock() -> None:
        holder = subprocess.Popen(
            [sys.executable, "-c", locker, database], stdout=subprocess.PIPE, text=True
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert holder.wait(timeout=60) == 0

    token = repo.cli("token", "1").output.strip().splitlines()[-1]
    with _serving(repo, log) as url:
        traffic, began, ended = _run_through(url, lock, token)
        _check(url, log, traffic, began, ended, store_url, smtp_server)
    text = log.read_text()
    _no_traceback(text)


def test_serve_stops_when_postgresql_goes_silent(
    repo: Repo, smtp_server: SmtpServer, pg_url: str, tmp_path: Path
) -> None:
    """A partition, not a reset: the store's connections stay open and nothing answers. A request
    and the delivery worker block on it (the proxy's kernel still acknowledges every packet, so
    TCP keepalives cannot tell); SIGTERM still stops serve within its grace periods (`_serving`
    fails the test when it does not exit in 60 s), saying what it left behind."""
    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        proxied = make_url(pg_url).set(port=proxy.port).render_as_string(hide_password=False)
        settings = settings_for(smtp_server.url, connections=2, extra="imports: none\n")
        _setup(repo, smtp_server, settings=settings + f"store: {proxied}\n")
        log = tmp_path / "serve.log"
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with _serving(repo, log) as url:
            event = {"type": "payment_received", "data": payment(customer_id=1), "key": "before"}
            assert httpx.post(f"{url}/v1/events", json=event, headers=headers).status_code == 202
            proxy.freeze()
            event = {"type": "payment_received", "data": payment(customer_id=2), "key": "during"}
            try:
                status: int | str = httpx.post(
                    f"{url}/v1/events", json=event, headers=headers, timeout=5
                ).status_code
            except httpx.ReadTimeout:
                status = "waiting"
            assert status in ("waiting", 503), status
            stopping = time.monotonic()
        took = time.monotonic() - stopping
        proxy.thaw()
    text = log.read_text()
    assert took < 45, took
    assert "a request still in progress at shutdown was cancelled" in text, text[-3000:]
    assert "the delivery worker did not stop within" in text, text[-3000:]
    _no_traceback(text)
