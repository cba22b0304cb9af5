"""The feed's kept responses, below HTTP: their bound, their windows, the guard against keeping
an answer older than a change already dropped, and serve's one question per event-loop turn."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from commsync.api.access import Caller
from commsync.api.feed import FeedAnswer, FeedResponses
from commsync.api.project import Project
from commsync.api.service import Service
from commsync.auth import issue_token
from commsync.http.feedpath import FeedFastPath
from commsync.http.metrics import Metrics
from commsync.model import CustomerRecord, MembershipRecord, ProductRecord
from commsync.store.sql import SqlStore, open_store
from tests.helpers import Repo


def _answer(size: int, mark: str = "x") -> FeedAnswer:
    return FeedAnswer.of_body(mark.encode() * size)


def test_kept_responses_stay_within_their_budget_least_recently_asked_out_first(
    tmp_path: Path,
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        kept = FeedResponses(budget=3 * (1000 + 200))
        generation, everyone = kept.sync(store)
        assert everyone  # never looked: nothing can be trusted
        for customer in ("a", "b", "c"):
            kept.put(customer, _answer(1000, customer), None, generation)
        assert kept.get("a", 0.0) is not None  # a is now the most recently asked
        kept.put("d", _answer(1000, "d"), None, generation)
        assert kept.get("b", 0.0) is None  # the least recently asked went
        assert all(kept.get(c, 0.0) is not None for c in ("a", "c", "d"))
        assert kept.size <= kept.budget
        kept.put("huge", _answer(10_000), None, generation)  # larger than the budget: not kept
        assert kept.get("huge", 0.0) is None and kept.get("a", 0.0) is not None
        nothing = FeedResponses(budget=0)
        nothing.sync(store)
        nothing.put("a", _answer(1), None, nothing.generation)
        assert nothing.get("a", 0.0) is None
    finally:
        store.close()


def test_a_kept_response_ends_when_a_window_opens_or_closes(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        kept = FeedResponses(budget=1 << 20)
        generation, _ = kept.sync(store)
        edge = datetime(2031, 1, 1, tzinfo=UTC)
        kept.put("a", _answer(10), edge, generation)
        assert kept.get("a", edge.timestamp() - 1) is not None
        assert kept.get("a", edge.timestamp()) is None  # at the edge: built again
        assert kept.get("a", edge.timestamp() - 1) is None  # and dropped
    finally:
        store.close()


def test_an_answer_read_before_a_change_already_seen_is_not_kept(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        store.upsert_products([ProductRecord("pro", "Pro")])
        store.upsert_customers(
            [CustomerRecord("1", "a@example.com"), CustomerRecord("2", "b@example.com")]
        )
        kept = FeedResponses(budget=1 << 20)
        before, _ = kept.sync(store)
        store.upsert_customers([CustomerRecord("1", "a@example.com", first_name="Ada")])
        now, everyone = kept.sync(store)  # another request saw the change (and dropped "1")
        assert now == before + 1 and not everyone
        kept.put("1", _answer(10), None, before)  # an answer read at `before`: stale
        assert kept.get("1", 0.0) is None
        kept.put("1", _answer(10), None, now)
        assert kept.get("1", 0.0) is not None
        store.upsert_memberships([MembershipRecord("2", "pro", "active")])  # someone else's
        assert kept.sync(store) == (now + 1, False) and kept.get("1", 0.0) is not None
    finally:
        store.close()


def _send_into(answers: list[dict[str, Any]]) -> Any:
    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            answers.append(json.loads(message["body"]))

    return send


def test_serve_asks_the_store_once_per_turn_of_its_event_loop(repo: Repo) -> None:
    """Requests answered in one turn share the store's answer to "what changed?" (they all
    arrived before it was asked); the next turn asks again and sees a write made meanwhile."""
    repo.import_data()
    repo.write(
        "broadcasts/hello.yaml",
        "kind: notice\nsubject: Hello\ntargets:\n  all: true\ncontent: Hi\n",
    )
    repo.commit_all("a notice")
    assert repo.cli("apply", "--yes").exit_code == 0
    service = Service(Project(repo.root, None, {}), pool_size=2, read_timeout=2.0)
    other: SqlStore = open_store(repo.store_url)
    try:
        key = other.signing_key()
        token = issue_token(key, "1", datetime.now(UTC) + timedelta(hours=1))
        fast = FeedFastPath(service, Metrics())
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/v1/customers/1/notices",
            "headers": [(b"authorization", f"Bearer {token}".encode())],
        }
        answers: list[dict[str, Any]] = []

        async def requests() -> None:
            assert await fast.answered(dict(scope), _send_into(answers))
            other.dismiss("hello", "1", datetime.now(UTC))  # another process, between requests
            assert await fast.answered(dict(scope), _send_into(answers))  # the same turn
            await asyncio.sleep(0)  # the next turn
            assert await fast.answered(dict(scope), _send_into(answers))

        asyncio.run(requests())
        assert [len(a["notices"]) for a in answers] == [1, 1, 0]
        # and the route's way (recheck, the default) always asks
        assert service.customer_feed("1", Caller.http(f"Bearer {token}")).body.count(b"hello") == 0
    finally:
        other.close()
        service.close()


def test_two_serve_processes_see_each_others_writes(repo: Repo) -> None:
    """Two services on one store (as `serve --workers 2`): a dismissal through one is seen by
    the other's kept response at once; so is a customer written through one."""
    from tests.http_server import Served

    repo.import_data()
    repo.write(
        "broadcasts/hello.yaml",
        'kind: notice\nsubject: "Hello {{ customer_first_name }}"\ntargets:\n  all: true\n'
        "content: Hi\n",
    )
    repo.commit_all("a notice")
    assert repo.cli("apply", "--yes").exit_code == 0
    result = repo.cli("token", "1")
    token = result.stdout.strip().splitlines()[-1]
    with Served(repo.root) as one, Served(repo.root) as two:
        headers = two.bearer(token)
        assert two.get("/v1/customers/1/notices", headers=headers).json()["notices"]
        body = {"email": "ada@example.com", "first_name": "Adelaide"}
        assert one.put("/v1/customers/1", json=body, headers=one.admin).status_code == 200
        notices = two.get("/v1/customers/1/notices", headers=headers).json()["notices"]
        assert notices[0]["heading"] == "Hello Adelaide"
        dismissed = one.post("/v1/customers/1/notices/hello/dismiss", headers=one.bearer(token))
        assert dismissed.status_code == 204
        assert two.get("/v1/customers/1/notices", headers=headers).json()["notices"] == []


def test_an_index_loaded_across_a_reload_is_not_kept(repo: Repo) -> None:
    """A dismissal's thread may load the index of notices while the event loop learns that the
    notices changed: the index that load returns may predate the change, so it is not kept.
    (The store is wrapped only to run `reload` inside the load — a race no test can time.)"""
    from commsync.api.context import Context
    from commsync.api.feed import Feed

    store = open_store(repo.store_url)
    try:
        feed = Feed(store, Context(Project(repo.root)).settings())

        class ReloadWhileLoading:
            def active_notices(self) -> list[Any]:
                feed.reload()  # the loop learned of a change while this load ran
                return store.active_notices()

        feed.store = ReloadWhileLoading()  # type: ignore[assignment]
        first = feed.index()
        feed.store = store
        assert feed.index() is not first  # not kept: loaded again
        assert feed.index() is feed.index()  # a load with no reload meanwhile is kept
    finally:
        store.close()
