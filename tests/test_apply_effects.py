"""One meaning of apply: what the executor writes to a real store is exactly what the pure
`effects` of the plan say (folded by `apply_effects`, the function the planner's convergence
properties use), for every kind of action."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from commsync.api import Project
from commsync.api.applying import ApplyRequest, apply
from commsync.api.context import Context
from commsync.apply.effects import apply_effects
from commsync.model import LiveSnapshot
from tests.helpers import Repo

NOTICE = "kind: notice\ntargets: {products: [pro]}\nsubject: Hi {{ customer_first_name }}\ncontent: Body\n"


def _view(live: LiveSnapshot) -> dict[str, object]:
    """Everything a plan reads of live state, and where it was applied from."""
    out: dict[str, object] = {}
    for b in live.broadcasts.values():
        progress = b.progress and (b.progress.total, b.progress.sent, b.progress.queued)
        out[f"broadcast {b.id}"] = (b.fingerprint(), b.drift, b.provenance, progress)
    for e in live.system_emails.values():
        out[f"system email {e.slug}"] = (e.fingerprint(), e.drift, e.stats, e.provenance)
    return out


def _apply_and_compare(repo: Repo, now: datetime) -> None:
    ctx = Context(Project(repo.root))
    try:
        store = ctx.store()
        before = store.snapshot()
        report = apply(ctx, ApplyRequest(yes=True), now=now)
        assert report.ok and report.plan.has_changes, [r.detail for r in report.results]
        expected = apply_effects(report.plan, before, now)
        assert _view(store.snapshot()) == _view(expected)
    finally:
        ctx.close()


def test_the_store_after_apply_is_what_the_effects_say(repo: Repo) -> None:
    repo.write(
        "commsync.yaml",
        (repo.root / "commsync.yaml").read_text()
        + "  transport: maildir:out\nimports: critical\nprune: true\n",
    )
    repo.import_data()
    now = datetime(2031, 1, 1, 9, 0, tzinfo=UTC)
    # create (notice), send (email), import (critical defaults), create (custom system email)
    repo.write("broadcasts/hello.yaml", NOTICE)
    repo.write("broadcasts/bye.yaml", NOTICE.replace("Hi", "Bye"))
    repo.write(
        "broadcasts/news.yaml", "kind: email\ntargets: {all: true}\nsubject: News\ncontent: Hi\n"
    )
    repo.write("emails/payment_received_customer.yaml", "subject: Thanks, {{ customer_name }}\n")
    repo.write(
        "emails/welcome.yaml",
        "event: site_published\ntarget: customer\nsubject: Welcome\ncontent: Your site is up\n",
    )
    repo.commit_all("first")
    _apply_and_compare(repo, now)
    # update, retract, reset, delete (prune); the sent email's file removed: released
    repo.write("broadcasts/hello.yaml", NOTICE.replace("Body", "New body"))
    repo.remove("broadcasts/bye.yaml")
    repo.remove("broadcasts/news.yaml")
    repo.write("emails/payment_received_customer.yaml", "email: payment_received_customer\n")
    repo.remove("emails/welcome.yaml")
    repo.commit_all("second")
    _apply_and_compare(repo, now + timedelta(days=1))
    plan = repo.plan_json()
    assert plan["summary"]["changes"] == 0, plan["actions"]
