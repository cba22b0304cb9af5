"""The HTTP API beyond the feed: events, unsubscribe, metrics, health, OpenAPI, the widget script."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from commsync.store.sql import open_store
from tests.helpers import Repo, pg_admin_url, seed, settings_for
from tests.http_server import Served
from tests.smtp_server import SmtpServer, wait_for
from tests.test_events import _setup, payment

NEWS = """\
kind: email
subject: "News for {{ customer_first_name }}"
targets:
  products: [pro]
content: Hi {{ customer_first_name }}, here is the news.
"""


def _event(key: str | None = None, **changes: Any) -> dict[str, Any]:
    return {"type": "payment_received", "data": payment(**changes), "key": key}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_one_idempotency_key_fired_ten_times_concurrently_sends_one_set(
    repo: Repo, smtp_server: SmtpServer, backend: str, request: pytest.FixtureRequest
) -> None:
    settings = settings_for(smtp_server.url, extra="imports: none\n")
    if backend == "postgresql":
        settings += f"store: {request.getfixturevalue('pg_url')}\n"
    _setup(repo, smtp_server, settings=settings)
    with Served(repo.root, deliver=True) as served:
        barrier = threading.Barrier(10)
        responses: list[httpx.Response] = []
        lock = threading.Lock()

        def fire() -> None:
            with httpx.Client(base_url=served.url, timeout=60) as client:
                barrier.wait()
                response = client.post("/v1/events", json=_event("order-77"), headers=served.admin)
            with lock:
                responses.append(response)

        threads = [threading.Thread(target=fire) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(r.status_code for r in responses) == [200] * 9 + [202], [
            r.text for r in responses
        ]
        bodies = [r.json() for r in responses]
        assert len({b["event_id"] for b in bodies}) == 1
        assert Counter(b["duplicate"] for b in bodies) == {True: 9, False: 1}
        wait_for(lambda: len(smtp_server.recorder.messages) >= 3)
        time.sleep(1.5)  # the worker polls every second: give a second set the chance to appear
    assert sorted(smtp_server.recorder.by_recipient().items()) == [
        ("ada@example.com", 2),
        ("ops@acme.example", 1),
    ]
    assert len({m.parsed()["Message-ID"] for m in smtp_server.recorder.messages}) == 3


def test_events_over_http_need_the_admin_key_and_a_valid_payload(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(repo, smtp_server)
    with Served(repo.root) as served:
        assert served.post("/v1/events", json=_event()).status_code == 401
        wrong = {"Authorization": "Bearer not-the-key"}
        assert served.post("/v1/events", json=_event(), headers=wrong).status_code == 401
        bad = served.post("/v1/events", json=_event(payment_total=12), headers=served.admin)
        assert bad.status_code == 422
        assert bad.json()["detail"] == ["payment_total must be string, got integer"]
        unknown = served.post("/v1/events", json={"type": "nope", "data": {}}, headers=served.admin)
        assert unknown.status_code == 422 and "unknown event 'nope'" in unknown.text
        for body in ({"type": "payment_received"}, {"data": {}}, {"type": "x", "data": [1]}):
            assert served.post("/v1/events", json=body, headers=served.admin).status_code == 422
        garbage = served.post(
            "/v1/events",
            content=b"{not json",
            headers={**served.admin, "Content-Type": "application/json"},
        )
        assert garbage.status_code == 422
        ok = served.post("/v1/events", json=_event("k1"), headers=served.admin)
        assert ok.status_code == 202 and ok.json()["duplicate"] is False
        assert [e["email"] for e in ok.json()["emails"]] == [
            "payment_everything",
            "payment_received_admin",
            "payment_received_customer",
        ]
        again = served.post("/v1/events", json=_event("k1"), headers=served.admin)
        assert again.status_code == 200 and again.json()["duplicate"] is True
        assert again.json()["event_id"] == ok.json()["event_id"]
    assert smtp_server.recorder.messages == []  # deliver=False: queued only
    assert repo.cli("deliver").exit_code == 0
    assert len(smtp_server.recorder.messages) == 3


def test_admin_routes_are_closed_without_a_configured_key(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(repo, smtp_server)
    with Served(repo.root, env={"COMMSYNC_API_KEY": ""}) as served:
        for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer x"}):
            response = served.post("/v1/events", json=_event(), headers=headers)
            assert response.status_code == 401
        assert "COMMSYNC_API_KEY" in response.text
    with Served(repo.root) as served:  # a malformed body: 401 first, 422 only with the key
        for path, method in (("/v1/events", "POST"), ("/v1/customers/9", "PUT")):
            for headers in ({}, {"Authorization": "Bearer wrong-key-0123456789"}):
                bad = served.client.request(
                    method,
                    path,
                    content=b"{not json",
                    headers={**headers, "Content-Type": "application/json"},
                )
                assert bad.status_code == 401, (path, bad.text)
                assert "loc" not in bad.text  # no validation detail
            bad = served.client.request(
                method,
                path,
                content=b"{not json",
                headers={**served.admin, "Content-Type": "application/json"},
            )
            assert bad.status_code == 422, (path, bad.text)
            # bytes that are not UTF-8, under a content type FastAPI does not parse as JSON: the
            # validation error holds them; it must still be a 4xx, without echoing them
            for kind in ("text/plain", "application/octet-stream", "x/\u00b5"):
                odd = served.client.request(
                    method,
                    path,
                    content=b"\xb5\x80{",
                    headers={**served.admin, "Content-Type": kind.encode("latin-1")},
                )
                assert 400 <= odd.status_code < 500, (path, kind, odd.text)
                assert "input" not in odd.text, odd.text
    with Served(repo.root, env={"COMMSYNC_API_KEY": "short-key"}) as served:
        response = served.post(
            "/v1/events", json=_event(), headers={"Authorization": "Bearer short-key"}
        )
        assert response.status_code == 401 and "shorter than 16" in response.text


def _broadcast_tokens(smtp_server: SmtpServer) -> dict[str, str]:
    tokens = {}
    for received in smtp_server.recorder.messages:
        header = received.parsed()["List-Unsubscribe"]
        if header:
            match = re.search(r"/v1/unsubscribe/([^>]+)>", header)
            assert match
            tokens[received.recipients[0]] = match.group(1)
    return tokens


def test_unsubscribe_get_asks_and_post_records_for_broadcasts_only(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    repo.write("commsync.yaml", settings_for(smtp_server.url, extra="imports: none\n"))
    seed(repo, 6)  # pro: c2, c4, c6
    repo.write("emails/payment_received_customer.yaml", "email: payment_received_customer\n")
    repo.write("broadcasts/news.yaml", NEWS)
    repo.commit_all("news")
    assert repo.cli("apply", "--yes").exit_code == 0
    tokens = _broadcast_tokens(smtp_server)
    assert sorted(tokens) == ["c2@example.com", "c4@example.com", "c6@example.com"]
    with Served(repo.root) as served:
        page = served.get(f"/v1/unsubscribe/{tokens['c2@example.com']}")
        assert page.status_code == 200 and '<form method="post"' in page.text
        assert "c2@example.com" not in page.text and "c2•" in page.text  # masked
        for _ in range(3):  # link scanners GET links: a GET never unsubscribes
            assert served.get(f"/v1/unsubscribe/{tokens['c4@example.com']}").status_code == 200
        # RFC 8058 one-click from the mailbox provider; and the page's own form
        one_click = served.post(
            f"/v1/unsubscribe/{tokens['c2@example.com']}",
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert one_click.status_code == 200 and "unsubscribed" in one_click.text
        assert served.post(f"/v1/unsubscribe/{tokens['c6@example.com']}").status_code == 200
        assert served.get("/v1/unsubscribe/not-a-token").status_code == 404
        assert served.post("/v1/unsubscribe/not-a-token").status_code == 404
    store = open_store(repo.store_url)
    try:
        assert store.suppressed_for_all(["c2@example.com"]) == set()  # marketing only
    finally:
        store.close()

    # the next broadcast skips the two who unsubscribed
    smtp_server.recorder.messages.clear()
    more = NEWS.replace("News", "More news").replace(
        "here is the news", "our billing portal now lists every invoice"
    )
    repo.write("broadcasts/more-news.yaml", more)
    repo.commit_all("more")
    assert repo.cli("apply", "--yes").exit_code == 0
    assert sorted(r for m in smtp_server.recorder.messages for r in m.recipients) == [
        "c4@example.com"
    ]
    status = json.loads(repo.cli("status", "--format", "json").stdout)
    more = next(b for b in status["emails"] if b["id"] == "more-news")
    assert (more["sent"], more["suppressed"]) == (1, 2)

    # a system email (transactional) still reaches an unsubscribed customer
    smtp_server.recorder.messages.clear()
    data = payment(customer_id=2, customer_user_email="c2@example.com")
    path = repo.write("payload.json", json.dumps(data))
    assert repo.cli("event", "payment_received", "--data", str(path)).exit_code == 0
    assert repo.cli("deliver").exit_code == 0
    assert [m.recipients for m in smtp_server.recorder.messages] == [["c2@example.com"]]


def test_metrics_and_health(repo: Repo, smtp_server: SmtpServer) -> None:
    _setup(repo, smtp_server)
    with Served(repo.root, deliver=True) as served:
        health = served.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        for i in range(2):
            response = served.post("/v1/events", json=_event(f"m{i}"), headers=served.admin)
            assert response.status_code == 202
        wait_for(lambda: len(smtp_server.recorder.messages) == 6)
        token = repo.cli("token", "1").stdout.strip().splitlines()[-1]
        for _ in range(3):
            assert (
                served.get("/v1/customers/1/notices", headers=served.bearer(token)).status_code
                == 200
            )

        def metric(name: str) -> float:
            text = served.get("/metrics").text
            match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
            assert match, (name, text)
            return float(match.group(1))

        wait_for(lambda: metric('commsync_messages_sent_total{kind="system_email"}') == 6)
        assert metric('commsync_events_received_total{event="payment_received"}') == 2
        assert metric('commsync_messages_failed_total{kind="system_email"}') == 0
        assert metric("commsync_feed_requests_total") == 3
        assert metric("commsync_feed_request_seconds_count") == 3
        assert metric('commsync_queue_depth{state="due"}') == 0
        assert metric('commsync_queue_depth{state="waiting"}') == 0
        response = served.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain")


def test_openapi_document_and_widget_script(repo: Repo, smtp_server: SmtpServer) -> None:
    _setup(repo, smtp_server)
    with Served(repo.root) as served:
        spec = served.get("/openapi.json").json()
        assert {
            "/v1/customers/{customer_id}/notices",
            "/v1/customers/{customer_id}/notices/{notice_id}/dismiss",
            "/v1/events",
            "/v1/customers/{customer_id}",
            "/v1/products/{slug}",
            "/v1/customers/{customer_id}/memberships",
            "/v1/unsubscribe/{token}",
            "/healthz",
            "/metrics",
            "/widget.js",
        } <= set(spec["paths"])
        widget = served.get("/widget.js")
        assert widget.status_code == 200
        assert widget.headers["content-type"].startswith("text/javascript")
        assert len(widget.content) < 10 * 1024
        assert "require(" not in widget.text and "import " not in widget.text


def test_healthz_says_503_when_the_store_is_gone(
    repo: Repo, smtp_server: SmtpServer, pg_url: str
) -> None:
    _setup(
        repo,
        smtp_server,
        settings=settings_for(smtp_server.url, extra="imports: none\n") + f"store: {pg_url}\n",
    )
    with Served(repo.root) as served:
        assert served.get("/healthz").status_code == 200
        schema = pg_url.rsplit("search_path%3D", 1)[1]
        admin = sa.create_engine(pg_admin_url())
        try:
            with admin.begin() as conn:
                conn.execute(sa.text(f"ALTER SCHEMA {schema} RENAME TO {schema}_gone"))
            response = served.get("/healthz")
            assert response.status_code == 503 and response.json()["status"] == "unavailable"
        finally:
            with admin.begin() as conn:
                conn.execute(sa.text(f"ALTER SCHEMA {schema}_gone RENAME TO {schema}"))
            admin.dispose()
        assert served.get("/healthz").status_code == 200


def test_past_requests_in_flight_serve_answers_503_with_retry_after_and_resets_nothing(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    """Saturated (48 clients at once against `limits.requests_in_flight: 2`), serve sheds load:
    each request is answered — 202, or 503 with Retry-After at once — no connection is reset,
    /metrics still answers and counts the shed ones, and the event of every 202 is queued."""
    settings = settings_for(
        smtp_server.url, extra="imports: none\nlimits:\n  requests_in_flight: 2\n"
    )
    _setup(repo, smtp_server, settings=settings)
    with Served(repo.root, deliver=False) as served:
        barrier = threading.Barrier(48)
        answers: list[int | str] = []
        shed: list[httpx.Response] = []
        lock = threading.Lock()

        def fire(n: int) -> None:
            with httpx.Client(base_url=served.url, timeout=60) as client:
                barrier.wait()
                for i in range(5):
                    try:
                        r = client.post(
                            "/v1/events", json=_event(f"sat-{n}-{i}"), headers=served.admin
                        )
                        status: int | str = r.status_code
                        if status == 503:
                            with lock:
                                shed.append(r)
                    except httpx.HTTPError as exc:  # a reset or a dropped connection
                        status = type(exc).__name__
                    with lock:
                        answers.append(status)

        threads = [threading.Thread(target=fire, args=(n,)) for n in range(48)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        counts = Counter(answers)
        assert set(counts) <= {202, 503}, counts
        assert counts[202] > 0 and counts[503] > 0, counts
        assert all(r.headers.get("retry-after") == "1" for r in shed)
        assert all(r.headers.get("x-content-type-options") == "nosniff" for r in shed)
        assert shed[0].json() == {"detail": "serve is at capacity; try again shortly"}
        metrics = served.get("/metrics").text
        line = next(x for x in metrics.splitlines() if x.startswith("commsync_requests_shed_total"))
        assert float(line.split()[-1]) == counts[503]
    store = open_store(repo.store_url)
    try:
        with store.engine.connect() as conn:
            events = conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one()
    finally:
        store.close()
    assert events == counts[202]
