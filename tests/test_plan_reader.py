"""`plan` on a SQLite store at this schema reads it over `sqlite3` (store/light.py), not through
`SqlStore`: whatever the store holds, the two must give the same plan."""

from __future__ import annotations

from datetime import UTC, datetime

from commsync.api.context import Context
from commsync.api.planning import PlanResult, make_plan
from commsync.api.project import Project
from commsync.plan.codec import dumps
from commsync.store.light import SqlitePlanReader
from tests.helpers import Repo

NOW = datetime(2031, 1, 1, 9, 0, tzinfo=UTC)


def _plan(repo: Repo, *, through_store: bool) -> PlanResult:
    ctx = Context(Project(repo.root))
    try:
        if through_store:
            ctx.store()  # an open store: the plan reads through it
        else:
            assert isinstance(ctx.planning(ctx.settings()), SqlitePlanReader)
        result = make_plan(ctx, ref=None, now=NOW)
        assert bool(ctx.stores) == through_store  # the light reader never opened the store
        return result
    finally:
        ctx.close()


def test_a_plan_read_over_sqlite3_is_the_plan_the_store_gives(demo_repo: Repo) -> None:
    applied = demo_repo.cli("apply", "--yes")  # notices, a sent email, a scheduled one, emails
    assert applied.exit_code == 0, applied.output
    # then a pull request: a notice changed, one removed, a new email broadcast, an override
    card = demo_repo.root / "broadcasts/notices/card-expiring.yaml"
    card.write_text(card.read_text().replace("subject:", "subject: Reminder -", 1))
    (demo_repo.root / "broadcasts/notices/http3-everywhere.yaml").unlink()
    demo_repo.write(
        "broadcasts/emails/news.yaml",
        "kind: email\ntargets: {products: [agency, starter], customers: [grace@example.com]}\n"
        "subject: News for {{ customer_first_name }}\ncontent: Hi\n",
    )
    paid = demo_repo.root / "emails/payment_received_customer.yaml"
    paid.write_text(paid.read_text().replace("subject:", "subject: Paid -", 1))
    by_light = _plan(demo_repo, through_store=False)
    by_store = _plan(demo_repo, through_store=True)
    assert by_light.plan.has_changes
    assert dumps(by_light.plan) == dumps(by_store.plan)
    assert by_light.warnings == by_store.warnings
    # and once applied, both find nothing to do
    demo_repo.commit_all("the pull request")
    reapplied = demo_repo.cli("apply", "--yes")
    assert reapplied.exit_code == 0, reapplied.output
    again = _plan(demo_repo, through_store=False)
    assert dumps(again.plan) == dumps(_plan(demo_repo, through_store=True).plan)
    assert not again.plan.has_changes
