"""The WordPress bridge (integrations/wordpress/commsync-bridge) on a real WordPress multisite,
PHP and MariaDB, against a real `commsync serve` delivering to aiosmtpd. Ultimate Multisite's
`wu_event` is fired by tests/wordpress/um-fixtures.php's stand-ins, shaped as its source builds
them. One network is installed for the module and shared by its tests."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.helpers import Repo
from tests.smtp_server import SmtpServer, wait_for
from tests.test_events import _setup
from tests.test_store_outages import ADMIN_KEY, _serving
from tests.wordpress_site import PLUGIN, WordPress, install


@pytest.fixture(scope="module")
def wordpress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WordPress]:
    site = install(tmp_path_factory.mktemp("wp"))
    try:
        yield site
    finally:
        site.drop()


def _events(wp: WordPress) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(wp.php("cron.php").strip().splitlines()[-1])
    return rows


def _received(repo: Repo) -> dict[str, int]:
    """commsync's events by idempotency key: how many times each was stored."""
    engine = sa.create_engine(repo.store_url)
    try:
        with engine.connect() as conn:
            keys = conn.execute(sa.text("SELECT idempotency_key FROM events")).scalars().all()
    finally:
        engine.dispose()
    return dict(Counter(str(k) for k in keys))


def _sent_once(smtp: SmtpServer) -> int:
    ids = Counter(m.parsed()["Message-ID"] for m in smtp.recorder.messages)
    assert set(ids.values()) <= {1}, "a message was delivered twice"
    return len(ids)


def test_every_php_file_of_the_plugin_lints() -> None:
    files = sorted(PLUGIN.rglob("*.php")) + sorted(
        (Path(__file__).parent / "wordpress").glob("*.php")
    )
    for path in files:
        done = subprocess.run(["php", "-l", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_an_event_fired_in_wordpress_is_sent_by_commsync_once(
    wordpress: WordPress, repo: Repo, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    _setup(repo, smtp_server)
    with _serving(repo, tmp_path / "serve.log") as url:
        wordpress.connect(url, ADMIN_KEY)
        before = {e["uuid"] for e in _events(wordpress)}
        assert wordpress.php("fire.php", "1", "ada@example.com", "PAY-WP-1").strip() == "fired"
        rows = [e for e in _events(wordpress) if e["uuid"] not in before]
        assert [(e["event"], e["status"], e["attempts"]) for e in rows] == [
            ("payment_received", "sent", 1)
        ], rows
        key = rows[0]["uuid"]
        assert _received(repo) == {key: 1}  # the UUID made when the hook fired is the key
        wait_for(lambda: len(smtp_server.recorder.messages) >= 3)
        time.sleep(1.5)  # a second copy would arrive now
        count = _sent_once(smtp_server)
        assert {r for m in smtp_server.recorder.messages for r in m.recipients} >= {
            "ada@example.com"
        }
        # another cron run sends nothing again
        _events(wordpress)
        time.sleep(1.5)
        assert _sent_once(smtp_server) == count and _received(repo) == {key: 1}


def test_with_commsync_down_events_wait_in_wordpress_and_are_sent_once_after(
    wordpress: WordPress, repo: Repo, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    _setup(repo, smtp_server)
    wordpress.connect("http://127.0.0.1:9", ADMIN_KEY)  # nothing listens there: commsync is down
    before = {e["uuid"] for e in _events(wordpress)}
    for n in (1, 2):
        wordpress.php("fire.php", "1", "ada@example.com", f"PAY-DOWN-{n}")
    waiting = [e for e in _events(wordpress) if e["uuid"] not in before]
    assert [(e["status"], e["attempts"]) for e in waiting] == [("pending", 1)] * 2, waiting
    assert all(e["last_error"] for e in waiting)
    assert [
        (e["status"], e["attempts"]) for e in _events(wordpress) if e["uuid"] not in before
    ] == [("pending", 1)] * 2  # not due again before its backoff
    with _serving(repo, tmp_path / "serve.log") as url:
        wordpress.connect(url, ADMIN_KEY)
        wordpress.php("due.php")  # the backoff has run out
        sent = [e for e in _events(wordpress) if e["uuid"] not in before]
        assert [(e["status"], e["attempts"]) for e in sent] == [("sent", 2)] * 2, sent
        assert _received(repo) == {e["uuid"]: 1 for e in sent}
        wait_for(lambda: len(smtp_server.recorder.messages) >= 6)
        time.sleep(1.5)
        count = _sent_once(smtp_server)
        wordpress.php("due.php")
        _events(wordpress)
        time.sleep(1.5)
        assert _sent_once(smtp_server) == count


def test_ultimate_multisite_stops_sending_only_what_commsync_covers(
    wordpress: WordPress, repo: Repo, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    _setup(repo, smtp_server)
    with _serving(repo, tmp_path / "serve.log") as url:
        wordpress.connect(url, ADMIN_KEY)
        _events(wordpress)  # a cron run: the bridge learns which events commsync covers
        wordpress.php("forget-um.php")
        wordpress.php("fire-event.php", "payment_received")  # commsync's
        um_sent = json.loads(wordpress.php("fire-event.php", "customer_created").strip())
        assert um_sent == ["customer_created"]  # UM still sends what commsync does not cover
        rows = {e["event"]: e["status"] for e in _events(wordpress)[-2:]}
        assert rows["customer_created"] == "skipped"  # and the bridge does not forward it
        # the take-over can be turned off: UM then sends everything itself again
        wordpress.connect(url, ADMIN_KEY, take_over=False)
        wordpress.php("forget-um.php")
        um_sent = json.loads(wordpress.php("fire-event.php", "payment_received").strip())
        assert um_sent == ["payment_received"]


def _gold_audience(repo: Repo) -> int:
    from commsync.model import Targets
    from commsync.store.sql import open_store

    store = open_store(repo.store_url)
    try:
        gold = Targets(products=("gold",))
        return store.count_audiences([gold], ["active", "trialing"])[gold].total
    finally:
        store.close()


def _sync(wp: WordPress) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(wp.php("um.php", "sync").strip().splitlines()[-1])
    return rows


GOLD_NOTICE = """\
kind: notice
message_type: success
subject: Gold is here
content: Hello {{ customer_first_name }}, welcome to Gold.
targets:
  products: [gold]
"""


def test_customers_products_and_memberships_saved_in_wordpress_follow_in_commsync(
    wordpress: WordPress, repo: Repo, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    _setup(repo, smtp_server)
    with _serving(repo, tmp_path / "serve.log") as url:
        wordpress.connect(url, ADMIN_KEY)
        wordpress.php("um.php", "product", "70", "gold", "Gold")
        assert {(r["kind"], r["item"], r["status"]) for r in _sync(wordpress)} >= {
            ("product", "gold", "done")
        }
        repo.write("broadcasts/notices/gold.yaml", GOLD_NOTICE)
        repo.commit_all("gold")
        assert repo.cli("apply", "--yes").exit_code == 0
        assert _gold_audience(repo) == 0
        # a customer signs up and buys Gold: saved in WordPress, it follows in commsync
        wordpress.php(
            "um.php", "customer", "9001", "mary@example.com", "mary", "Mary", "Somerville"
        )
        wordpress.php("um.php", "membership", "501", "9001", "70", "active")
        done = {(r["kind"], r["item"]): r["status"] for r in _sync(wordpress)}
        assert done[("customer", "9001")] == "done" and done[("memberships", "9001")] == "done"
        assert _gold_audience(repo) == 1
        from commsync.store.sql import open_store

        store = open_store(repo.store_url)
        try:
            mary = store.customer("9001")
        finally:
            store.close()
        assert mary is not None and (mary.email, mary.first_name) == ("mary@example.com", "Mary")
        # a second membership of the same product, cancelled: still one, the most active counts
        wordpress.php("um.php", "membership", "502", "9001", "70", "cancelled")
        _sync(wordpress)
        assert _gold_audience(repo) == 1
        # the customer is deleted in WordPress: gone from the audience
        wordpress.php("um.php", "delete-customer", "9001")
        done = {(r["kind"], r["item"]): (r["action"], r["status"]) for r in _sync(wordpress)}
        assert done[("customer", "9001")] == ("delete", "done")
        assert _gold_audience(repo) == 0
        # the full sync notes every record and sends them again: nothing changes, nothing fails
        assert wordpress.php("um.php", "full-sync").strip() == "noted 1"
        assert all(r["status"] == "done" for r in _sync(wordpress))


PLATINUM_NOTICE = """\
kind: notice
message_type: warning
subject: Platinum maintenance tonight
content: Hello {{ customer_first_name }}, **Platinum** servers restart at 23:00 UTC.
dismissible: true
targets:
  products: [platinum]
"""
WP_WARNING = "rgb(219, 166, 23)"  # WordPress 6.1's .notice-warning border (wp-admin/css/common.css)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    from tests.test_widget_browser import chromium_path

    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            launched.close()


def _log_in(browser: Any, site: str, user: str, password: str) -> Any:
    """A new page, logged in at `site` (the network's or a sub-site's URL), on its dashboard."""
    page = browser.new_page()
    page.goto(f"{site}/wp-login.php")
    page.fill("#user_login", user)
    page.fill("#user_pass", password)
    page.click("#wp-submit")
    page.wait_for_url(f"{site}/wp-admin/**", wait_until="domcontentloaded")
    return page


def test_a_notice_shows_on_the_customers_dashboard_as_a_wordpress_notice_and_dismisses(
    wordpress: WordPress, repo: Repo, smtp_server: SmtpServer, tmp_path: Path, browser: Any
) -> None:
    _setup(repo, smtp_server)
    with _serving(repo, tmp_path / "serve.log") as url:
        wordpress.connect(url, ADMIN_KEY)
        wordpress.php("um.php", "product", "71", "platinum", "Platinum")
        wordpress.php(
            "um.php", "customer", "9100", "grace.h@example.com", "graceh", "Grace", "Hopper"
        )
        wordpress.php("um.php", "membership", "601", "9100", "71", "active")
        assert all(r["status"] == "done" for r in _sync(wordpress))
        wordpress.php("um.php", "password", "graceh", "grace-password-0123")
        wordpress.php("um.php", "site", "graces-site", "601", "graceh")
        repo.write("broadcasts/notices/platinum.yaml", PLATINUM_NOTICE)
        repo.commit_all("platinum")
        assert repo.cli("apply", "--yes").exit_code == 0
        with wordpress.serve() as site:
            page = _log_in(browser, f"{site}/graces-site", "graceh", "grace-password-0123")
            notice = page.locator(".commsync-notice")
            assert notice.count() == 1
            assert "notice-warning" in (notice.get_attribute("class") or "")
            assert "Platinum maintenance tonight" in notice.inner_text()
            assert "Hello Grace" in notice.inner_text()
            colour = notice.evaluate("n => getComputedStyle(n).borderLeftColor")
            assert colour == WP_WARNING, colour
            artifacts = Path(__file__).resolve().parent / "artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "wordpress-notice.png"), full_page=True)
            with page.expect_response("**/admin-ajax.php") as answered:
                page.click(".commsync-notice .notice-dismiss")
            assert answered.value.status == 200, answered.value.text()
            page.reload()
            assert page.locator(".commsync-notice").count() == 0
            page.close()
    status = json.loads(repo.cli("status", "--format", "json").stdout)
    [platinum] = [n for n in status["notices"] if n["id"] == "notices/platinum"]
    assert platinum["dismissals"] == 1


def test_the_dashboard_works_when_commsync_is_down(wordpress: WordPress, browser: Any) -> None:
    wordpress.connect("http://127.0.0.1:9", ADMIN_KEY)
    wordpress.php("um.php", "password", "graceh", "grace-password-0123")
    with wordpress.serve() as site:
        started = time.monotonic()
        page = _log_in(browser, f"{site}/graces-site", "graceh", "grace-password-0123")
        assert page.locator("#wpbody").count() == 1  # the dashboard renders
        assert page.locator(".commsync-notice").count() == 0
        assert time.monotonic() - started < 20
        page.close()


def _stored_key(wp: WordPress) -> str:
    done = subprocess.run(
        [
            "mysql",
            "-h",
            "127.0.0.1",
            "-u",
            "root",
            "-N",
            "-e",
            "SELECT meta_value FROM wp_sitemeta WHERE meta_key = 'commsync_bridge_key'",
            wp.db,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_the_settings_page_connects_keeps_the_key_encrypted_and_shows_what_waits(
    wordpress: WordPress, repo: Repo, smtp_server: SmtpServer, tmp_path: Path, browser: Any
) -> None:
    _setup(repo, smtp_server)
    wordpress.connect(None, None)  # no constants: the page configures the bridge
    with _serving(repo, tmp_path / "serve.log") as url, wordpress.serve() as site:
        page = _log_in(browser, site, "admin", "admin-password-0123")
        settings = f"{site}/wp-admin/network/settings.php?page=commsync-bridge"
        page.goto(settings)
        page.fill("#commsync_url", url)
        page.fill("#commsync_key", ADMIN_KEY)
        assert page.locator("#commsync_take_over").is_checked()  # on by default
        page.click("#commsync-save")
        assert page.locator("#commsync-message").inner_text() == "Saved."
        assert ADMIN_KEY not in page.content()  # never shown again
        assert page.locator("#commsync_key").input_value() == ""
        stored = _stored_key(wordpress)
        assert stored and ADMIN_KEY not in stored and ADMIN_KEY not in base64_text(stored)
        page.click("#commsync-test")
        assert (
            page.locator("#commsync-message")
            .inner_text()
            .startswith("Connected: commsync handles 8 event types")
        )
        # the stored key works for the bridge: an event goes out
        before = {e["uuid"] for e in _events(wordpress)}
        wordpress.php("fire.php", "1", "ada@example.com", "PAY-SETTINGS-1")
        wordpress.php("fire-event.php", "payment_received")  # a payload commsync refuses
        rows = [e for e in _events(wordpress) if e["uuid"] not in before]
        assert [e["status"] for e in rows] == ["sent", "refused"], rows
        page.goto(settings)
        refused = page.locator("#commsync-refused tbody tr")
        assert refused.count() >= 1 and rows[1]["uuid"] in refused.first.inner_text()
        page.click("#commsync-sync")
        assert page.locator("#commsync-message").inner_text().startswith("Full sync: ")
        assert "Last full sync: never" not in page.locator("#commsync-last-sync").inner_text()
        page.close()


def base64_text(value: str) -> str:
    import base64
    import binascii

    try:
        return base64.b64decode(value).decode("latin-1")
    except (binascii.Error, ValueError):
        return ""


class _Answering:
    """A stand-in for commsync that answers every request with one status: for the answers the
    real `serve` cannot be made to give on demand (a 503 from a proxy, 408, 413, 429)."""

    def __init__(self, status: int) -> None:
        import http.server
        import threading

        answer = status

        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                body = b'{"detail": "as told"}'
                if self.path.startswith("/v1/event-types"):
                    body = b'{"event_types": [{"type": "payment_received", "keys": []}]}'
                    self.send_response(200)
                else:
                    self.send_response(answer)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _reply

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (500, "pending"),
        (502, "pending"),
        (503, "pending"),
        (401, "pending"),
        (403, "pending"),
        (408, "pending"),
        (413, "pending"),
        (429, "pending"),
        (400, "refused"),
        (422, "refused"),
    ],
)
def test_each_answer_of_commsync_is_retried_or_refused_as_documented(
    wordpress: WordPress, status: int, outcome: str
) -> None:
    before = {e["uuid"] for e in _events(wordpress)}
    with _Answering(status) as url:
        wordpress.connect(url, ADMIN_KEY)
        wordpress.php("fire.php", "1", "ada@example.com", f"PAY-{status}")
        [row] = [e for e in _events(wordpress) if e["uuid"] not in before]
    assert (row["status"], row["attempts"]) == (outcome, 1), row
    assert f"HTTP {status}" in row["last_error"]
    if outcome == "pending":  # not due again before its backoff
        [again] = [e for e in _events(wordpress) if e["uuid"] == row["uuid"]]
        assert again["attempts"] == 1


def test_a_wrong_admin_key_keeps_events_until_it_is_fixed(
    wordpress: WordPress, repo: Repo, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    _setup(repo, smtp_server)
    with _serving(repo, tmp_path / "serve.log") as url:
        wordpress.connect(url, "a-wrong-key-0123456789")
        before = {e["uuid"] for e in _events(wordpress)}
        wordpress.php("fire.php", "1", "ada@example.com", "PAY-KEY-1")
        [row] = [e for e in _events(wordpress) if e["uuid"] not in before]
        assert (row["status"], row["attempts"]) == ("pending", 1)
        assert "HTTP 401" in row["last_error"]
        wordpress.connect(url, ADMIN_KEY)  # the operator fixes the key
        wordpress.php("due.php")
        [sent] = [e for e in _events(wordpress) if e["uuid"] == row["uuid"]]
        assert (sent["status"], sent["attempts"]) == ("sent", 2)
        # once (events other tests left waiting are this network's too, and go out with it)
        assert _received(repo)[row["uuid"]] == 1
