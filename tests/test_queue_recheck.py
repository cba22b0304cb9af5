"""A queued system email is checked again when it comes due (issue 10, the queue).

Each test queues messages with an event, changes the email through the repository and an apply
(as an operator would), then runs `commsync deliver`: the message is cancelled, rendered again
with the email's new version, or failed with a reason — never sent as it was.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import Repo, settings_for
from tests.smtp_server import SmtpServer
from tests.test_events import EVERYTHING, _deliveries, _fire, _setup, payment

OTHER = (
    "event: payment_received\ntarget: customer\n"
    'subject: "Thanks, {{ customer_name }}"\ncontent: "We got {{ payment_total }}."\n'
)


def _change(repo: Repo, edits: dict[str, str | None]) -> None:
    """Write (or, for None, remove) email files, commit and apply."""
    for slug, text in edits.items():
        path = repo.root / "emails" / f"{slug}.yaml"
        if text is None:
            path.unlink()
        else:
            path.write_text(text, encoding="utf-8")
    repo.commit_all("change the emails")
    applied = repo.cli("apply", "--yes")
    assert applied.exit_code == 0, applied.output


def _outcomes(repo: Repo, slug: str) -> list[str]:
    return sorted(status for s, _, status in _deliveries(repo) if s == slug)


def _last_errors(repo: Repo) -> list[str]:
    import sqlalchemy as sa

    from commsync.store.sql import create_store_engine

    engine = create_store_engine(repo.store_url)
    try:
        with engine.connect() as conn:
            return [
                str(e)
                for (e,) in conn.execute(
                    sa.text("SELECT last_error FROM deliveries WHERE last_error IS NOT NULL")
                )
            ]
    finally:
        engine.dispose()


@pytest.fixture
def queued(repo: Repo, smtp_server: SmtpServer) -> Repo:
    """payment_received's customer default, EVERYTHING and OTHER installed (prune on); one event
    queued a message of each (the admin default is not installed)."""
    settings = settings_for(smtp_server.url, extra="imports: none\nprune: true\n")
    _setup(repo, smtp_server, settings=settings, payment_received_admin=None, other=OTHER)
    fired = _fire(repo, payment(), "--key", "e1")
    assert fired.exit_code == 0, fired.output
    return repo


@pytest.mark.parametrize(
    ("edits", "slug", "reason"),
    [
        ({"other": OTHER + "active: false\n"}, "other", "was deactivated after the event"),
        ({"other": None}, "other", "was deleted after the event"),
        (
            {"other": OTHER.replace("target: customer", "target: admin")},
            "other",
            "no longer goes to this address",
        ),
        (
            {"other": OTHER.replace("event: payment_received", "event: payment_failed")},
            "other",
            "now belongs to the event payment_failed",
        ),
    ],
    ids=["deactivated", "deleted", "target", "event"],
)
def test_a_message_whose_email_no_longer_wants_it_is_cancelled(
    queued: Repo, smtp_server: SmtpServer, edits: dict[str, str | None], slug: str, reason: str
) -> None:
    _change(queued, edits)
    delivered = queued.cli("deliver")
    assert delivered.exit_code == 0, delivered.output
    assert "delivered: 2 sent, 0 failed, 1 cancelled" in delivered.stdout, delivered.stdout
    assert _outcomes(queued, slug) == ["cancelled"]
    emails = json.loads(queued.cli("emails", "list", "--format", "json").stdout)["emails"]
    stats = {e["slug"]: e["stats"] for e in emails}
    if slug in stats:  # a deleted email has no stats left to show
        assert stats[slug]["cancelled"] == 1 and stats[slug]["sent"] == 0
    assert any(reason in e for e in _last_errors(queued)), _last_errors(queued)
    subjects = sorted(str(m.parsed()["Subject"]) for m in smtp_server.recorder.messages)
    assert len(subjects) == 2 and not any(s.startswith("Thanks") for s in subjects)
    assert _outcomes(queued, "payment_everything") == ["sent"]  # the others still go


def test_an_edited_email_renders_its_queued_messages_again_from_the_stored_payload(
    queued: Repo, smtp_server: SmtpServer
) -> None:
    edited = OTHER.replace('"Thanks, {{ customer_name }}"', '"Paid in full, {{ customer_name }}"')
    _change(queued, {"other": edited.replace("We got", "We have received")})
    assert queued.cli("deliver").exit_code == 0
    (message,) = [m for m in smtp_server.recorder.messages if "Ada" in str(m.parsed()["Subject"])]
    parsed = message.parsed()
    assert parsed["Subject"] == "Paid in full, Ada Lovelace"
    body = parsed.get_body(("plain",))
    assert body is not None and "We have received €41.50." in body.get_content()
    assert _outcomes(queued, "other") == ["sent"]


def test_a_reset_email_sends_the_default_version(repo: Repo, smtp_server: SmtpServer) -> None:
    custom = "email: payment_received_customer\nsubject: A customised subject\n"
    _setup(repo, smtp_server, payment_received_customer=custom)
    assert _fire(repo, payment(), "--key", "e1").exit_code == 0
    reset = repo.cli("emails", "reset", "payment_received_customer")
    assert reset.exit_code == 0, reset.output
    _change(repo, {})
    assert repo.cli("deliver").exit_code == 0
    subjects = {str(m.parsed()["Subject"]) for m in smtp_server.recorder.messages}
    assert "A customised subject" not in subjects
    assert "Payment received: €41.50 for Pro" in subjects  # the default's subject


def test_a_new_placeholder_the_stored_payload_lacks_fails_the_message_with_the_reason(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    settings = settings_for(smtp_server.url, extra="imports: none\n")
    _setup(
        repo,
        smtp_server,
        settings=settings,
        payment_received_customer=None,
        payment_received_admin=None,
        payment_everything=None,
        other=OTHER,
    )
    data = payment()
    del data["payment_gateway"]  # no email used it when the event came
    assert _fire(repo, data, "--key", "e1").exit_code == 0
    _change(repo, {"other": OTHER.replace("We got", "Paid by {{ payment_gateway }}: we got")})
    delivered = repo.cli("deliver")
    assert delivered.exit_code == 1
    assert "payment_gateway" in delivered.stderr, delivered.output
    assert _outcomes(repo, "other") == ["failed"]
    assert smtp_server.recorder.messages == []  # never a blank where the value should be


def test_an_unchanged_email_sends_the_message_as_it_was_rendered(
    queued: Repo, smtp_server: SmtpServer
) -> None:
    before = {m for _, _, m in _deliveries(queued)}
    _change(queued, {"payment_everything": EVERYTHING})  # the same file: nothing to apply
    assert queued.cli("deliver").exit_code == 0
    assert len(smtp_server.recorder.messages) == 3 and before == {"queued"}


def test_a_changed_delay_moves_the_due_time_of_messages_not_yet_sent(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    from datetime import UTC, datetime, timedelta

    from commsync.api import Project
    from commsync.api.context import Context
    from commsync.delivery.worker import Worker
    from commsync.events.recheck import Recheck
    from commsync.events.service import EventService
    from commsync.store.sql import open_store
    from tests.test_events import CATALOG, Clock

    admin = "email: payment_received_admin\ndelay: 2h\n"
    _setup(repo, smtp_server, payment_received_admin=admin)
    settings = Context(Project(repo.root)).settings()
    t0 = datetime(2031, 5, 1, 9, 0, tzinfo=UTC)
    store = open_store(settings.store_url)
    try:
        events = EventService(store, settings, CATALOG)
        events.fire("payment_received", payment(), key="e1", now=t0)
        events.fire("payment_received", payment(), key="e2", now=t0 + timedelta(minutes=30))
        clock = Clock(t0 + timedelta(minutes=40))

        def deliver() -> list[str]:
            worker = Worker(
                store,
                settings,
                {},
                clock=clock,
                recheck=Recheck(store, settings, lambda: events.factories),
            )
            worker.run_blocking(loop=False)
            return sorted(r for m in smtp_server.recorder.messages for r in m.recipients)

        assert "ops@acme.example" not in deliver()  # 2 h: not yet
        _change(repo, {"payment_received_admin": admin.replace("2h", "35m")})
        # e1 came at 9:00 and is due at 9:35 now; e2 came at 9:30: due at 10:05
        assert deliver().count("ops@acme.example") == 1
        _change(repo, {"payment_received_admin": admin.replace("2h", "1d")})
        clock.now = t0 + timedelta(hours=3)  # past e2's old due time (11:30), before 1 d
        assert deliver().count("ops@acme.example") == 1
        clock.now = t0 + timedelta(days=1, minutes=31)
        assert deliver().count("ops@acme.example") == 2
    finally:
        store.close()
