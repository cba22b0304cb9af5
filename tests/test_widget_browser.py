"""/widget.js in a real browser: headless Chromium on a dashboard page of another origin."""

from __future__ import annotations

import functools
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.helpers import Repo
from tests.http_server import Served

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
COLOURS = {  # message_type → the left border colour the widget must show
    "info": "rgb(29, 78, 216)",
    "success": "rgb(21, 128, 61)",
    "warning": "rgb(194, 65, 12)",
    "error": "rgb(185, 28, 28)",
}
DASHBOARD = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Acme dashboard</title></head>
<body style="font-family:sans-serif;max-width:720px;margin:24px auto">
<h1>Dashboard</h1>
<div id="commsync-notices"></div>
<script src="{api}/widget.js" data-customer="{customer}" data-token="{token}" defer></script>
<p>The rest of the dashboard.</p>
</body></html>
"""


def chromium_path() -> str:
    path = os.environ.get("COMMSYNC_TEST_CHROMIUM") or shutil.which("chromium")
    if not path:
        raise AssertionError(
            "Debian's chromium is needed for the browser test: apt-get install chromium"
        )
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=chromium_path(),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield launched
        finally:
            launched.close()


class Dashboard:
    """A static page on its own origin (so the widget's requests are cross-origin, as in real life)."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_Quiet, directory=str(root))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Dashboard:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _notice(message_type: str, subject: str, content: str, extra: str = "") -> str:
    return (
        f'kind: notice\nmessage_type: {message_type}\nsubject: "{subject}"\n'
        f"targets:\n  all: true\n{extra}content: |\n  {content}\n"
    )


def _boxes(page: Page) -> dict[str, dict[str, str]]:
    page.wait_for_selector("#commsync-notices[data-commsync-loaded]", state="attached")
    return page.eval_on_selector_all(
        "[data-commsync-notice]",
        """els => Object.fromEntries(els.map(e => [e.dataset.commsyncNotice, {
            type: e.dataset.type,
            border: getComputedStyle(e).borderLeftColor,
            heading: e.querySelector('strong').textContent,
            text: e.textContent,
            dismiss: e.querySelector('[data-commsync-dismiss]') ? 'yes' : 'no'}]))""",
    )


def test_the_widget_shows_notices_in_their_colours_and_dismisses_for_good(
    repo: Repo, browser: Browser, tmp_path: Path
) -> None:
    repo.import_data()
    repo.write(
        "broadcasts/a-info.yaml",
        _notice("info", "New editor", "Hi {{ customer_first_name }}, the **new editor** is here."),
    )
    repo.write(
        "broadcasts/b-success.yaml", _notice("success", "HTTP/3 everywhere", "Faster pages.")
    )
    repo.write(
        "broadcasts/c-warning.yaml", _notice("warning", "PHP 8.3 upgrade", "Test your plugins.")
    )
    repo.write(
        "broadcasts/d-error.yaml",
        _notice("error", "Card expiring", "Update your card.", extra="dismissible: false\n"),
    )
    repo.write(
        "broadcasts/e-hostile.yaml",
        _notice(
            "info",
            "<img src=x onerror=window.pwned=1>",
            '<script>window.pwned=2</script><img src="x" onerror="window.pwned=3"> plain',
        ),
    )
    repo.commit_all("notices")
    assert repo.cli("apply", "--yes").exit_code == 0
    token = repo.cli("token", "1").stdout.strip().splitlines()[-1]
    site = tmp_path / "site"
    site.mkdir()
    with Dashboard(site) as dashboard:
        settings = (repo.root / "commsync.yaml").read_text(encoding="utf-8")
        repo.write("commsync.yaml", settings + f"serve:\n  allowed_origins: [{dashboard.url}]\n")
        _browse(browser, repo, site, dashboard, token)


def _browse(browser: Browser, repo: Repo, site: Path, dashboard: Dashboard, token: str) -> None:
    with Served(repo.root) as served:
        (site / "index.html").write_text(
            DASHBOARD.format(api=served.url, customer="1", token=token)
        )
        page = browser.new_page(viewport={"width": 900, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{dashboard.url}/index.html")
        boxes = _boxes(page)
        assert sorted(boxes) == ["a-info", "b-success", "c-warning", "d-error", "e-hostile"]
        for notice_id, box in boxes.items():
            assert box["border"] == COLOURS[box["type"]], (notice_id, box)
        assert boxes["a-info"]["heading"] == "New editor"
        assert "Hi Ada, the new editor is here." in boxes["a-info"]["text"]
        assert boxes["d-error"]["dismiss"] == "no" and boxes["b-success"]["dismiss"] == "yes"
        # operator HTML is sanitised by the server; the heading is text, never markup
        assert boxes["e-hostile"]["heading"] == "<img src=x onerror=window.pwned=1>"
        assert page.evaluate("window.pwned") is None
        assert page.locator("[data-commsync-notice] script").count() == 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "widget.png"), full_page=True)

        page.click('[data-commsync-dismiss="c-warning"]')
        page.wait_for_selector('[data-commsync-notice="c-warning"]', state="detached")
        page.reload()
        assert sorted(_boxes(page)) == ["a-info", "b-success", "d-error", "e-hostile"]
        page.screenshot(path=str(ARTIFACTS / "widget-after-dismiss.png"), full_page=True)
        assert errors == []

        # another customer still sees it
        other = repo.cli("token", "2").stdout.strip().splitlines()[-1]
        (site / "grace.html").write_text(
            DASHBOARD.format(api=served.url, customer="2", token=other)
        )
        page.goto(f"{dashboard.url}/grace.html")
        assert "c-warning" in _boxes(page)

        # a token for someone else shows nothing (the API answers 403) and breaks nothing
        (site / "wrong.html").write_text(
            DASHBOARD.format(api=served.url, customer="2", token=token)
        )
        page.goto(f"{dashboard.url}/wrong.html")
        assert _boxes(page) == {}
        assert page.locator("h1").text_content() == "Dashboard"

        # the same page served from an origin not in serve.allowed_origins: the browser keeps
        # the feed from it (no CORS), and the page still works
        elsewhere = dashboard.url.replace("127.0.0.1", "localhost")
        page.goto(f"{elsewhere}/index.html")
        assert _boxes(page) == {}
        assert page.locator("h1").text_content() == "Dashboard"
        page.close()
