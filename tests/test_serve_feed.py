"""The notices feed and dismissals over real HTTP (uvicorn on loopback), and customer tokens."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from commsync.auth import issue_token
from commsync.store.sql import open_store
from tests.helpers import Repo
from tests.http_server import Served


def _notice(targets: str, *, message_type: str = "info", extra: str = "", body: str = "") -> str:
    return (
        f"kind: notice\nmessage_type: {message_type}\n"
        f'subject: "Hello {{{{ customer_first_name }}}}"\n'
        f"targets:\n  {targets}\n{extra}"
        f"content: {body or 'Hi {{ customer_first_name }}, <b>bold</b> news.'}\n"
    )


def _token(repo: Repo, customer: str) -> str:
    result = repo.cli("token", customer)
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


def _ids(served: Served, customer: str, token: str) -> list[str]:
    response = served.get(f"/v1/customers/{customer}/notices", headers=served.bearer(token))
    assert response.status_code == 200, response.text
    return [n["id"] for n in response.json()["notices"]]


@pytest.fixture
def feed_repo(repo: Repo) -> Repo:
    repo.import_data()
    now = datetime.now(UTC)
    repo.write("broadcasts/everyone.yaml", _notice("all: true", message_type="success"))
    repo.write("broadcasts/for-ada.yaml", _notice("customers: [ada@example.com]"))
    repo.write("broadcasts/for-grace.yaml", _notice("customers: [grace]"))
    repo.write("broadcasts/pro.yaml", _notice("products: [pro]", message_type="warning"))
    repo.write(
        "broadcasts/later.yaml",
        _notice("all: true", extra=f"starts_at: {(now + timedelta(days=1)).isoformat()}\n"),
    )
    repo.write(
        "broadcasts/soon-over.yaml",
        _notice("all: true", extra=f"expires_at: {(now + timedelta(seconds=4)).isoformat()}\n"),
    )
    repo.write(
        "broadcasts/sticky.yaml",
        _notice("all: true", message_type="error", extra="dismissible: false\n"),
    )
    repo.write("broadcasts/to-retract.yaml", _notice("all: true"))
    repo.commit_all("notices")
    result = repo.cli("apply", "--yes")
    assert result.exit_code == 0, result.output
    return repo


def test_each_customer_sees_exactly_the_notices_meant_for_them(feed_repo: Repo) -> None:
    with Served(feed_repo.root) as served:
        # every active notice was compiled at start-up: no dashboard waits for it
        cached = {notice_id for notice_id, _ in served.app.state.service.feed.cache}
        assert cached == {
            "everyone",
            "for-ada",
            "for-grace",
            "pro",
            "later",
            "soon-over",
            "sticky",
            "to-retract",
        }
        ada, grace, alan = (_token(feed_repo, c) for c in ("1", "2", "3"))
        # ada: pro active; grace: pro trialing; alan: pro *cancelled* (and starter active);
        # the most severe first: sticky (error), pro (warning), the infos, everyone (success)
        for customer, token, own in (("1", ada, ["for-ada"]), ("2", grace, ["for-grace"])):
            ids = _ids(served, customer, token)
            assert ids[:2] == ["sticky", "pro"] and ids[-1] == "everyone"
            assert sorted(ids[2:-1]) == sorted([*own, "soon-over", "to-retract"])
        ids = _ids(served, "3", alan)
        assert ids[0] == "sticky" and ids[-1] == "everyone"
        assert sorted(ids[1:-1]) == ["soon-over", "to-retract"]

        feed = served.get("/v1/customers/1/notices", headers=served.bearer(ada)).json()
        pro = next(n for n in feed["notices"] if n["id"] == "pro")
        assert pro["heading"] == "Hello Ada"
        assert pro["message_type"] == "warning" and pro["dismissible"] is True
        assert "Hi Ada," in pro["html"] and "<b>bold</b>" in pro["html"]
        assert next(n for n in feed["notices"] if n["id"] == "sticky")["dismissible"] is False

        # retracted: the file is deleted and applied
        feed_repo.remove("broadcasts/to-retract.yaml")
        feed_repo.commit_all("retract")
        assert feed_repo.cli("apply", "--yes").exit_code == 0
        assert "to-retract" not in _ids(served, "1", ada)

        # expired: once expires_at passes it is gone without any apply
        deadline = time.monotonic() + 10
        while "soon-over" in _ids(served, "2", grace):
            assert time.monotonic() < deadline, "the expired notice is still served"
            time.sleep(0.25)
        assert _ids(served, "2", grace) == ["sticky", "pro", "for-grace", "everyone"]


def test_dismissing_hides_a_notice_for_that_customer_only_and_for_good(feed_repo: Repo) -> None:
    with Served(feed_repo.root) as served:
        ada, grace = _token(feed_repo, "1"), _token(feed_repo, "2")
        url = "/v1/customers/1/notices/everyone/dismiss"
        assert served.post(url, headers=served.bearer(ada)).status_code == 204
        assert "everyone" not in _ids(served, "1", ada)
        assert "everyone" in _ids(served, "2", grace)
        assert served.post(url, headers=served.bearer(ada)).status_code == 204  # idempotent
        sticky = served.post("/v1/customers/1/notices/sticky/dismiss", headers=served.bearer(ada))
        assert sticky.status_code == 409 and "sticky" in _ids(served, "1", ada)
        for unknown in ("for-grace", "later", "nope"):
            response = served.post(
                f"/v1/customers/1/notices/{unknown}/dismiss", headers=served.bearer(ada)
            )
            assert response.status_code == 404, unknown
    # a dismissal survives a restart and a re-apply of the same notice
    feed_repo.write("broadcasts/everyone.yaml", _notice("all: true", body="Changed text."))
    feed_repo.commit_all("edit")
    assert feed_repo.cli("apply", "--yes").exit_code == 0
    with Served(feed_repo.root) as served:
        assert "everyone" not in _ids(served, "1", _token(feed_repo, "1"))
        assert "everyone" in _ids(served, "2", _token(feed_repo, "2"))


def test_tokens_let_a_customer_read_and_dismiss_only_their_own_notices(feed_repo: Repo) -> None:
    with Served(feed_repo.root) as served:
        ada = _token(feed_repo, "1")
        grace_feed = "/v1/customers/2/notices"
        grace_dismiss = "/v1/customers/2/notices/everyone/dismiss"
        assert served.get(grace_feed, headers=served.bearer(ada)).status_code == 403
        assert served.post(grace_dismiss, headers=served.bearer(ada)).status_code == 403
        assert "everyone" in _ids(served, "2", _token(feed_repo, "2"))

        store = open_store(feed_repo.store_url)
        try:
            key = store.signing_key()
        finally:
            store.close()
        now = datetime.now(UTC)
        forged = issue_token(b"not the store key" * 2, "2", now + timedelta(days=1))
        expired = issue_token(key, "2", now - timedelta(seconds=1))
        payload, signature = ada.split(".")[1:]
        tampered = f"v1.{issue_token(key, '2', now).split('.')[1]}.{signature}"
        for headers in (
            {},
            {"Authorization": "Basic YWRhOnNlY3JldA=="},
            {"Authorization": "Bearer"},
            {"Authorization": "Bearer garbage"},
            served.bearer(forged),
            served.bearer(expired),
            served.bearer(tampered),
            served.bearer(f"v1.{payload}.{signature[:-2]}xx"),
        ):
            assert served.get(grace_feed, headers=headers).status_code == 401, headers
            assert served.post(grace_dismiss, headers=headers).status_code == 401, headers
        assert "everyone" in _ids(served, "2", _token(feed_repo, "2"))


def test_token_command(feed_repo: Repo) -> None:
    result = feed_repo.cli("token", "grace@example.com", "--ttl", "2h")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "customer: 2 <grace@example.com>"
    assert lines[-1].startswith("v1.")
    for bad, message in (
        (["nobody@example.com"], "matches no customer"),
        (["2", "--ttl", "soon"], "invalid --ttl"),
        (["2", "--ttl", "0m"], "invalid --ttl"),
    ):
        failed = feed_repo.cli("token", *bad)
        assert failed.exit_code == 1 and message in failed.stderr, failed.output


def test_a_thousand_active_notices(repo: Repo) -> None:
    repo.import_data()
    targets = ("all: true", "products: [pro]", "customers: [1]", "products: [starter]")
    for i in range(1000):
        repo.write(f"broadcasts/bulk/n{i:04d}.yaml", _notice(targets[i % 4]))
    repo.commit_all("bulk")
    result = repo.cli("apply", "--yes")
    assert result.exit_code == 0, result.output

    def expected(kinds: set[int]) -> list[str]:
        return [f"bulk/n{i:04d}" for i in range(1000) if i % 4 in kinds]

    with Served(repo.root) as served:
        # 1: pro active; 3: pro cancelled, starter active; 5: starter expired
        # (all info: newest first, the order of the dedicated test below)
        assert sorted(_ids(served, "1", _token(repo, "1"))) == expected({0, 1, 2})
        assert sorted(_ids(served, "3", _token(repo, "3"))) == expected({0, 3})
        assert sorted(_ids(served, "5", _token(repo, "5"))) == expected({0})
        token = _token(repo, "1")
        for i in (0, 1, 2, 998):
            response = served.post(
                f"/v1/customers/1/notices/bulk/n{i:04d}/dismiss", headers=served.bearer(token)
            )
            assert response.status_code == 204
        assert sorted(_ids(served, "1", token)) == [
            n
            for n in expected({0, 1, 2})
            if n not in {"bulk/n0000", "bulk/n0001", "bulk/n0002", "bulk/n0998"}
        ]


def test_platform_writes_change_what_the_feed_shows(feed_repo: Repo) -> None:
    with Served(feed_repo.root) as served:
        new = "/v1/customers/9"
        body = {"email": "new@example.com", "first_name": "Nina"}
        assert served.put(new, json=body).status_code == 401
        assert (
            served.put(new, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        )
        created = served.put(new, json=body, headers=served.admin)
        assert created.status_code == 200 and created.json() == {"id": "9", "created": True}
        token = _token(feed_repo, "9")
        assert "pro" not in _ids(served, "9", token)
        memberships = f"{new}/memberships"
        bad = served.put(
            memberships, json=[{"product": "gold", "status": "active"}], headers=served.admin
        )
        assert bad.status_code == 422 and "gold" in bad.text
        ok = served.put(
            memberships, json=[{"product": "pro", "status": "active"}], headers=served.admin
        )
        assert ok.status_code == 200
        assert "pro" in _ids(served, "9", token)
        cancelled = [{"product": "pro", "status": "cancelled"}]
        assert served.put(memberships, json=cancelled, headers=served.admin).status_code == 200
        assert "pro" not in _ids(served, "9", token)
        assert served.put(
            "/v1/products/gold", json={"name": "Gold"}, headers=served.admin
        ).json() == {
            "slug": "gold",
            "created": True,
        }
        invalid = served.put(new, json={"email": "not an address"}, headers=served.admin)
        assert invalid.status_code == 422
        missing = served.put("/v1/customers/404/memberships", json=[], headers=served.admin)
        assert missing.status_code == 404


def test_rotating_the_key_invalidates_issued_tokens(
    feed_repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    from commsync.http import app as http_app

    monkeypatch.setattr(http_app, "KEY_TTL", 0.0)
    old = _token(feed_repo, "1")
    with Served(feed_repo.root) as served:
        assert "everyone" in _ids(served, "1", old)
        refused = feed_repo.cli("rotate-key")  # no terminal: needs --yes
        assert refused.exit_code == 1 and "--yes" in refused.stderr
        assert "everyone" in _ids(served, "1", old)
        rotated = feed_repo.cli("rotate-key", "--yes")
        assert rotated.exit_code == 0, rotated.output
        response = served.get("/v1/customers/1/notices", headers=served.bearer(old))
        assert response.status_code == 401
        assert "everyone" in _ids(served, "1", _token(feed_repo, "1"))


def test_the_feed_shows_the_most_severe_first_and_the_newest_first_within_one(
    repo: Repo,
) -> None:
    repo.import_data()
    token = _token(repo, "1")

    def add(name: str, message_type: str) -> None:
        repo.write(f"broadcasts/{name}.yaml", _notice("all: true", message_type=message_type))
        repo.commit_all(name)
        assert repo.cli("apply", "--yes").exit_code == 0

    add("a-old-info", "info")
    add("b-success", "success")
    add("c-new-info", "info")
    add("d-warning", "warning")
    add("e-error", "error")
    with Served(repo.root) as served:
        assert _ids(served, "1", token) == [
            "e-error",
            "d-warning",
            "c-new-info",
            "a-old-info",
            "b-success",
        ]


def _behind_the_stores_back(repo: Repo, sql: str) -> None:
    """A write the store does not record as a feed change: what a kept response would hide."""
    import sqlite3

    with sqlite3.connect(repo.root / ".commsync" / "store.db") as conn:
        conn.execute(sql)


def test_a_kept_feed_is_answered_until_a_write_changes_that_customers_feed(
    feed_repo: Repo,
) -> None:
    ada, grace = _token(feed_repo, "1"), _token(feed_repo, "2")
    with Served(feed_repo.root) as served:
        first = served.get("/v1/customers/1/notices", headers=served.bearer(ada))
        etag = first.headers["etag"]
        assert first.status_code == 200 and etag.startswith('"') and len(etag) > 8
        assert "cache-control" not in first.headers  # revalidated (no Last-Modified), private
        assert first.headers["x-content-type-options"] == "nosniff"
        # the client holds this version: 304, no body (also weakly compared, and in a list)
        for held in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            again = served.get(
                "/v1/customers/1/notices",
                headers={**served.bearer(ada), "If-None-Match": held},
            )
            assert again.status_code == 304 and again.content == b"", held
            assert again.headers["etag"] == etag
        other = served.get(
            "/v1/customers/1/notices", headers={**served.bearer(ada), "If-None-Match": '"x"'}
        )
        assert other.status_code == 200 and other.headers["etag"] == etag
        assert "everyone" in _ids(served, "2", grace)  # grace's is kept too

        # proof that kept responses answer: changes the store does not record are not seen
        for sql in (
            "UPDATE customers SET first_name = 'Adelaide' WHERE id = '1'",
            "DELETE FROM memberships WHERE customer_id = '2'",
            "UPDATE broadcasts SET status = 'paused' WHERE id = 'everyone'",
        ):
            _behind_the_stores_back(feed_repo, sql)

        def headings(customer: str, token: str) -> dict[str, str]:
            response = served.get(f"/v1/customers/{customer}/notices", headers=served.bearer(token))
            return {n["id"]: n["heading"] for n in response.json()["notices"]}

        assert headings("1", ada)["everyone"] == "Hello Ada"
        assert {"pro", "everyone"} <= set(headings("2", grace))

        # ada dismisses: her feed is built again from her own data (the notices are kept until
        # the store says they changed); grace's is kept
        dismissed = served.post(
            "/v1/customers/1/notices/for-ada/dismiss", headers=served.bearer(ada)
        )
        assert dismissed.status_code == 204
        mine = headings("1", ada)
        assert "for-ada" not in mine and mine["everyone"] == "Hello Adelaide"
        assert {"pro", "everyone"} <= set(headings("2", grace))
        changed = served.get(
            "/v1/customers/1/notices", headers={**served.bearer(ada), "If-None-Match": etag}
        )
        assert changed.status_code == 200 and changed.headers["etag"] != etag

        # another process imports customers (their names back from the file): every feed may
        # change, so every feed and the notices are read again
        imported = feed_repo.cli("customers", "import", "data/customers.csv")
        assert imported.exit_code == 0, imported.output
        theirs = headings("2", grace)
        assert "pro" not in theirs and "everyone" not in theirs
        assert headings("1", ada)["pro"] == "Hello Ada"


def test_a_notice_whose_window_opens_appears_without_any_write(repo: Repo) -> None:
    repo.import_data()
    opens = datetime.now(UTC) + timedelta(seconds=3)
    repo.write(
        "broadcasts/soon.yaml", _notice("all: true", extra=f"starts_at: {opens.isoformat()}\n")
    )
    repo.write("broadcasts/now.yaml", _notice("all: true"))
    repo.commit_all("notices")
    assert repo.cli("apply", "--yes").exit_code == 0
    token = _token(repo, "1")
    with Served(repo.root) as served:
        assert _ids(served, "1", token) == ["now"]  # kept, until `soon` opens
        deadline = time.monotonic() + 15
        while "soon" not in _ids(served, "1", token):
            assert time.monotonic() < deadline, "the opened notice is not served"
            time.sleep(0.25)
        assert datetime.now(UTC) >= opens


def test_a_remembered_token_still_expires(feed_repo: Repo) -> None:
    store = open_store(feed_repo.store_url)
    try:
        key = store.signing_key()
    finally:
        store.close()
    expires = datetime.now(UTC) + timedelta(seconds=2)
    short = issue_token(key, "1", expires)
    with Served(feed_repo.root) as served:
        assert "everyone" in _ids(served, "1", short)
        assert "everyone" in _ids(served, "1", short)  # checked once, remembered
        other = served.get("/v1/customers/2/notices", headers=served.bearer(short))
        assert other.status_code == 403  # remembered for customer 1 only
        while datetime.now(UTC).timestamp() < int(expires.timestamp()) + 1:
            time.sleep(0.2)
        gone = served.get("/v1/customers/1/notices", headers=served.bearer(short))
        assert gone.status_code == 401 and "expired" in gone.text


def test_feed_cache_bytes_zero_keeps_no_response(feed_repo: Repo) -> None:
    settings = (feed_repo.root / "commsync.yaml").read_text()
    feed_repo.write("commsync.yaml", settings + "limits:\n  feed_cache_bytes: 0\n")
    feed_repo.commit_all("no feed cache")
    ada = _token(feed_repo, "1")
    with Served(feed_repo.root) as served:
        assert "pro" in _ids(served, "1", ada)
        _behind_the_stores_back(feed_repo, "DELETE FROM memberships WHERE customer_id = '1'")
        assert "pro" not in _ids(served, "1", ada)  # built again: nothing was kept
