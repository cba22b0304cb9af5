"""The planner, table-driven over small desired/live pairs (pure: no store, no clock)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from commsync.model import DesiredState, LiveSnapshot, SendProgress, Targets
from commsync.plan.model import EmailAction, FieldChange, Remaining, SystemEmailAction
from tests.planning import (
    CATALOG,
    NOW,
    actions,
    default,
    desired,
    drifted,
    email,
    file_email,
    installed,
    live_of,
    notice,
    plan,
    snapshot,
)

PRO = Targets(products=("pro",))
LATER = NOW + timedelta(days=1)
EARLIER = NOW - timedelta(days=1)
CUSTOM = default("followup").fields.with_values(
    {"subject": "Custom {{ customer_name }}", "delay": "3d"}
)


@dataclass(frozen=True)
class Row:
    name: str
    state: DesiredState
    live: LiveSnapshot = field(default_factory=snapshot)
    expected: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: int = 0


A = notice("a")
E = email("e")
ROWS = [
    Row("new notice is created", desired([A]), expected=[("notice.a", "create")]),
    Row("unchanged notice: nothing", desired([A]), snapshot([live_of(A)])),
    Row(
        "edited notice is updated",
        desired([notice("a", "Hi")]),
        snapshot([live_of(A)]),
        [("notice.a", "update")],
    ),
    Row(
        "same instant in another offset: nothing",
        desired(
            [notice("a", starts_at=datetime(2026, 11, 1, 10, tzinfo=timezone(timedelta(hours=2))))]
        ),
        snapshot([live_of(notice("a", starts_at=datetime(2026, 11, 1, 8, tzinfo=UTC)))]),
    ),
    Row(
        "removed notice is retracted", desired(), snapshot([live_of(A)]), [("notice.a", "retract")]
    ),
    Row("retracted notice stays retracted", desired(), snapshot([live_of(A, "retracted")])),
    Row(
        "re-added notice is created again",
        desired([A]),
        snapshot([live_of(A, "retracted")]),
        [("notice.a", "create")],
    ),
    Row(
        "new notice already expired: not created",
        desired([notice("a", expires_at=EARLIER)]),
        expected=[("notice.a", "expired")],
    ),
    Row(
        "live notice past its window",
        desired([notice("a", expires_at=EARLIER)]),
        snapshot([live_of(notice("a", expires_at=EARLIER))]),
        [("notice.a", "expired")],
    ),
    Row(
        "live notice before its window",
        desired([notice("a", starts_at=LATER)]),
        snapshot([live_of(notice("a", starts_at=LATER))]),
        [("notice.a", "pending")],
    ),
    Row(
        "out-of-band edit is restored",
        desired([A]),
        snapshot([drifted(live_of(A), subject="Edited live")]),
        [("notice.a", "update")],
    ),
    Row(
        "out-of-band edit that matches the file: nothing",
        desired([notice("a", "Edited live")]),
        snapshot([drifted(live_of(A), subject="Edited live")]),
    ),
    Row("new email is sent", desired([E]), expected=[("email.e", "send")]),
    Row(
        "new email with nobody to reach",
        desired([email("e", targets=Targets(products=()))]),
        expected=[("email.e", "send")],
        warnings=["empty_audience"],
    ),
    Row(
        "email with send_at ahead is scheduled (no worker seen: a warning)",
        desired([email("e", send_at=LATER)]),
        expected=[("email.e", "scheduled")],
        warnings=["no_worker"],
    ),
    Row(
        "scheduled, a worker seen a minute ago: no warning",
        desired([email("e", send_at=LATER)]),
        replace(snapshot(), worker_seen_at=NOW - timedelta(minutes=1)),
        [("email.e", "scheduled")],
    ),
    Row(
        "scheduled, the last worker seen an hour ago: a warning",
        desired([email("e", send_at=LATER)]),
        replace(snapshot(), worker_seen_at=NOW - timedelta(hours=1)),
        [("email.e", "scheduled")],
        warnings=["no_worker"],
    ),
    Row(
        "recorded scheduled, unchanged and not due: nothing to do",
        desired([email("e", send_at=LATER)]),
        replace(
            snapshot([live_of(email("e", send_at=LATER), "scheduled")]),
            worker_seen_at=NOW,
        ),
    ),
    Row(
        "recorded scheduled, send_at changed: reschedule",
        desired([email("e", send_at=LATER + timedelta(hours=1))]),
        snapshot([live_of(email("e", send_at=LATER), "scheduled")]),
        [("email.e", "reschedule")],
        warnings=["no_worker"],
    ),
    Row(
        "recorded scheduled, content edited: update (rendered when sent)",
        desired([email("e", "Edited", send_at=LATER)]),
        snapshot([live_of(email("e", send_at=LATER), "scheduled")]),
        [("email.e", "update")],
        warnings=["no_worker"],
    ),
    Row(
        "recorded scheduled, file removed: unschedule",
        desired(),
        snapshot([live_of(email("e", send_at=LATER), "scheduled")]),
        [("email.e", "unschedule")],
    ),
    Row(
        "recorded scheduled and now due: apply sends it",
        desired([email("e", send_at=NOW - timedelta(minutes=5))]),
        snapshot([live_of(email("e", send_at=NOW - timedelta(minutes=5)), "scheduled")]),
        [("email.e", "send")],
    ),
    Row(
        "recorded scheduled, due for longer than max_lateness: missed",
        desired([email("e", send_at=NOW - timedelta(hours=3), max_lateness="2h")]),
        snapshot(
            [live_of(email("e", send_at=NOW - timedelta(hours=3), max_lateness="2h"), "scheduled")]
        ),
        [("email.e", "missed")],
    ),
    Row(
        "recorded scheduled, due for 25 h with the default max_lateness (24h): missed",
        desired([email("e", send_at=NOW - timedelta(hours=25))]),
        snapshot([live_of(email("e", send_at=NOW - timedelta(hours=25)), "scheduled")]),
        [("email.e", "missed")],
    ),
    Row(
        "missed: said on every plan, never sent",
        desired([email("e", send_at=EARLIER)]),
        snapshot([live_of(email("e", send_at=EARLIER), "missed", progress=SendProgress())]),
        warnings=["missed"],
    ),
    Row(
        "cancelled part way (the emergency brake): said, never resumed",
        desired([E]),
        snapshot([live_of(E, "cancelled", progress=SendProgress(10, sent=4, cancelled=6))]),
        warnings=["cancelled"],
    ),
    Row(
        "a send the workers are delivering is not resumed by apply",
        desired([E]),
        snapshot(
            [live_of(E, "sending", progress=SendProgress(10, queued=6, sent=4, by_workers=True))]
        ),
    ),
    Row("sent email, unchanged: nothing", desired([E]), snapshot([live_of(E)])),
    Row(
        "sent email, edited: warning only",
        desired([email("e", "Edited")]),
        snapshot([live_of(E)]),
        warnings=["edited_after_send"],
    ),
    Row(
        "sent email, file removed: warning only",
        desired(),
        snapshot([live_of(E)]),
        warnings=["removed_after_send"],
    ),
    Row(
        "sent email, file removed and acknowledged: nothing",
        desired(),
        snapshot([replace(live_of(E), managed=False)]),
    ),
    Row(
        "partly sent email resumes",
        desired([E]),
        snapshot([live_of(E, "sending", progress=SendProgress(total=10, sent=4, queued=6))]),
        [("email.e", "resume")],
    ),
    Row(
        "renamed sent email is refused",
        desired([email("e2")]),
        snapshot([live_of(E)]),
        warnings=["removed_after_send"],
        errors=1,
    ),
    Row(
        "renamed sent email with allow_resend is sent",
        desired([email("e2", allow_resend=True)]),
        snapshot([live_of(E)]),
        [("email.e2", "send")],
        ["removed_after_send"],
    ),
    Row("same id, another kind", desired([email("a")]), snapshot([live_of(A)]), errors=1),
    Row("imports none: nothing installed", desired(imports="none")),
    Row(
        "imports critical installs critical defaults",
        desired(imports="critical"),
        expected=[("system_email.paid_customer", "import")],
    ),
    Row(
        "imports all installs every default",
        desired(imports="all"),
        expected=[
            ("system_email.paid_admin", "import"),
            ("system_email.paid_customer", "import"),
            ("system_email.receipt", "import"),
        ],
    ),
    Row(
        "import-only file",
        desired(emails=[file_email("paid_admin")]),
        expected=[("system_email.paid_admin", "import")],
    ),
    Row(
        "customised import",
        desired(emails=[file_email("paid_admin", active=False)]),
        expected=[("system_email.paid_admin", "import")],
    ),
    Row(
        "installed and unchanged: nothing",
        desired(emails=[file_email("paid_admin", active=False)]),
        snapshot(emails=[installed("paid_admin", overrides={"active": False})]),
    ),
    Row(
        "override changed: update",
        desired(emails=[file_email("paid_admin", subject="New")]),
        snapshot(emails=[installed("paid_admin", overrides={"subject": "Old"})]),
        [("system_email.paid_admin", "update")],
    ),
    Row(
        "every override removed: reset",
        desired(emails=[file_email("paid_admin")]),
        snapshot(emails=[installed("paid_admin", overrides={"subject": "Old", "active": False})]),
        [("system_email.paid_admin", "reset")],
    ),
    Row(
        "some overrides removed: reset",
        desired(emails=[file_email("paid_admin", active=False)]),
        snapshot(emails=[installed("paid_admin", overrides={"subject": "Old", "active": False})]),
        [("system_email.paid_admin", "reset")],
    ),
    Row(
        "uncustomised copy of an older default: upgrade",
        desired(emails=[file_email("receipt")]),
        snapshot(emails=[installed("receipt", 1)]),
        [("system_email.receipt", "upgrade")],
    ),
    Row(
        "customised copy of an older default: kept, reported",
        desired(emails=[file_email("receipt", subject="Mine")]),
        snapshot(emails=[installed("receipt", 1, {"subject": "Mine"})]),
        warnings=["newer_default"],
    ),
    Row(
        "customised copy reset onto a newer default",
        desired(emails=[file_email("receipt")]),
        snapshot(emails=[installed("receipt", 1, {"subject": "Mine"})]),
        [("system_email.receipt", "reset")],
    ),
    Row(
        "custom email is created",
        desired(emails=[file_email("followup", CUSTOM)]),
        expected=[("system_email.followup", "create")],
    ),
    Row(
        "custom email is updated",
        desired(emails=[file_email("followup", CUSTOM.with_values({"active": False}))]),
        snapshot(
            emails=[
                replace(
                    installed("followup", base=default("followup")),
                    fields=CUSTOM,
                    applied_hash=CUSTOM.fields_hash(),
                    base_version=None,
                    base_fields=None,
                )
            ]
        ),
        [("system_email.followup", "update")],
    ),
    Row(
        "file removed, prune off: kept and released",
        desired(),
        snapshot(emails=[installed("paid_admin")]),
        [("system_email.paid_admin", "update")],
    ),
    Row(
        "file removed, prune on: deleted",
        desired(prune=True),
        snapshot(emails=[installed("paid_admin")]),
        [("system_email.paid_admin", "delete")],
    ),
    Row(
        "installed by imports, no file: never deleted",
        desired(prune=True),
        snapshot(emails=[installed("paid_admin", path=None)]),
    ),
    Row(
        "file of a customised critical default removed: reset by imports: critical",
        desired(imports="critical"),
        snapshot(emails=[installed("paid_customer", overrides={"subject": "Mine"})]),
        [("system_email.paid_customer", "reset")],
    ),
    Row(
        "out-of-band edit of a system email is restored",
        desired(emails=[file_email("paid_admin")]),
        snapshot(
            emails=[
                installed("paid_admin").with_fields(
                    default("paid_admin").fields.with_values({"subject": "Hacked"})
                )
            ]
        ),
        [("system_email.paid_admin", "update")],
    ),
    Row(
        "a default installed by imports gets a file: bookkeeping update",
        desired(emails=[file_email("paid_admin")]),
        snapshot(emails=[installed("paid_admin", path=None)]),
        [("system_email.paid_admin", "update")],
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_planner_table(row: Row) -> None:
    outcome = plan(row.state, row.live)
    assert [(a.address, a.action) for a in outcome.plan.actions] == row.expected
    assert [w.code for w in outcome.plan.warnings] == row.warnings
    assert len(outcome.errors) == row.errors


def test_update_lists_field_changes_as_written() -> None:
    cet = timezone(timedelta(hours=1))
    old = notice("a", "Hello", expires_at=datetime(2027, 1, 1, tzinfo=cet))
    new = notice("a", "Hi", content="New body", expires_at=datetime(2027, 1, 2, tzinfo=cet))
    action = plan(desired([new]), snapshot([live_of(old)])).plan.actions[0]
    assert action.changes == (
        FieldChange("subject", "Hello", "Hi"),
        FieldChange("content", "Body", "New body"),
        FieldChange("expires_at", "2027-01-01T00:00:00+01:00", "2027-01-02T00:00:00+01:00"),
    )
    assert not action.drift and action.reason == "fields changed: subject, content, expires_at"


def test_drift_is_marked_and_explained() -> None:
    action = plan(
        desired([A]), snapshot([drifted(live_of(A), subject="Edited live")])
    ).plan.actions[0]
    assert action.drift
    assert action.changes == (FieldChange("subject", "Edited live", "Hello"),)
    assert "outside commsync" in action.reason


def test_send_carries_the_audience_and_the_plan_counts_recipients() -> None:
    outcome = plan(desired([email("e", targets=Targets(products=("pro", "agency")))]))
    action = outcome.plan.actions[0]
    assert action.audience is not None and action.audience.total == 30
    assert action.audience.products == (
        ("pro", 10),
        ("agency", 20),
    )  # fake counts from tests.planning
    assert outcome.plan.recipients() == 30


def test_resume_reports_what_is_left() -> None:
    live = live_of(E, "sending", progress=SendProgress(total=10, sent=3, queued=5, uncertain=2))
    action = plan(desired([E]), snapshot([live])).plan.actions[0]
    assert isinstance(action, EmailAction)
    assert action.remaining == Remaining(total=10, remaining=5, uncertain=2)
    assert action.reason == "5 of 10 recipients left; 2 uncertain (apply --resend-uncertain)"
    assert plan(desired([E]), snapshot([live])).plan.recipients() == 5


def test_rename_guard_points_at_the_new_file() -> None:
    outcome = plan(desired([email("e2")]), snapshot([live_of(E)]))
    (error,) = outcome.errors
    assert error.path == "broadcasts/e2.yaml"
    assert "same subject, content and targets as email.e" in error.message
    # the safe way out first: keeping the id sends nothing; allow_resend sends to everyone
    keep, resend = error.message.index("`id: e`"), error.message.index("allow_resend: true")
    assert keep < resend and "to everyone" in error.message[resend - 40 :]


NEWSLETTER = (
    "Hello {{ customer_first_name }},\n\nThis month we moved every site to PHP 8.3, added daily "
    "off-site backups for all plans and opened a new data centre in Frankfurt. Thank you for "
    "building with us.\n"
)


@pytest.mark.parametrize(
    ("subject", "content", "refused"),
    [
        ("News", NEWSLETTER.replace("Thank you", "Thanks"), True),  # a one-word edit
        ("NEWS!", NEWSLETTER.replace(".", " ").upper(), True),  # case, punctuation, spacing
        ("News", NEWSLETTER.replace("Frankfurt", "Paris"), True),
        (  # next month's newsletter: same subject, new content
            "News",
            "Hello {{ customer_first_name }},\n\nIn December the support desk keeps shorter "
            "hours, and the new billing portal shows every invoice since you joined.\n",
            False,
        ),
    ],
)
def test_a_near_copy_of_a_sent_email_is_refused_like_a_copy(
    subject: str, content: str, refused: bool
) -> None:
    sent = live_of(email("e", "News", content=NEWSLETTER))
    outcome = plan(desired([email("e2", subject, content=content)]), snapshot([sent]))
    if not refused:
        assert not outcome.errors and actions(outcome) == [("email.e2", "send")]
        return
    (error,) = outcome.errors
    assert "% like email.e, sent" in error.message and "`id: e`" in error.message
    assert actions(outcome) == []


def test_a_near_copy_to_other_targets_or_with_allow_resend_is_sent() -> None:
    sent = live_of(email("e", "News", content=NEWSLETTER))
    edited = NEWSLETTER.replace("Thank you", "Thanks")
    others = email("e2", "News", targets=PRO, content=edited)
    again = email("e3", "News", content=edited, allow_resend=True)
    outcome = plan(desired([others, again]), snapshot([sent]))
    assert not outcome.errors
    assert actions(outcome) == [("email.e2", "send"), ("email.e3", "send")]


def test_newer_default_report_is_three_way() -> None:
    outcome = plan(
        desired(emails=[file_email("receipt", active=False)]),
        snapshot(emails=[installed("receipt", 1, {"active": False})]),
    )
    (warning,) = outcome.plan.warnings
    details = {d.field: (d.old_default, d.new_default, d.live) for d in warning.details}
    assert details == {
        "subject": ("receipt v1", "receipt v2", "receipt v1"),
        "content": ("Body of receipt v1", "Body of receipt v2", "Body of receipt v1"),
    }
    assert "Delete the overrides from emails/receipt.yaml to adopt it" in warning.message


def test_reset_and_upgrade_keep_the_default_version_bookkeeping() -> None:
    reset = plan(
        desired(emails=[file_email("receipt")]),
        snapshot(emails=[installed("receipt", 1, {"subject": "Mine"})]),
    ).plan.actions[0]
    assert isinstance(reset, SystemEmailAction) and reset.install is not None
    assert reset.install.base_version == 2
    assert reset.reason == "fields back to the default: subject (default v1 → v2)"
    upgrade = plan(
        desired(emails=[file_email("receipt")]), snapshot(emails=[installed("receipt", 1)])
    ).plan.actions[0]
    assert upgrade.reason == "default v1 → v2 (not customised)"
    assert [c.field for c in upgrade.changes] == ["subject", "content"]


def test_available_imports_lists_what_is_neither_installed_nor_wanted() -> None:
    outcome = plan(desired(emails=[file_email("receipt")], imports="critical"))
    assert outcome.plan.available_imports == ("paid_admin",)
    assert set(CATALOG.defaults) == {"paid_admin", "paid_customer", "receipt"}


def test_plan_holds_fingerprints_of_the_live_objects_it_touches() -> None:
    live = live_of(A)
    outcome = plan(desired([notice("a", "Hi"), notice("b")]), snapshot([live]))
    by_address = {a.address: a for a in outcome.plan.actions}
    assert by_address["notice.a"].fingerprint == live.fingerprint()
    assert by_address["notice.b"].fingerprint == "absent"


def test_two_new_identical_emails_in_one_change_are_refused() -> None:
    """Otherwise, once the first is sent, the second would look like a rename forever."""
    outcome = plan(desired([email("a"), email("b", send_at=LATER)]))
    (error,) = outcome.errors
    assert error.path == "broadcasts/b.yaml" and "email.a, sent in this change" in error.message
    assert not plan(desired([email("a"), email("b", allow_resend=True)])).errors


@pytest.mark.parametrize(
    ("members", "refused"),
    [
        ([email("a"), email("b")], {"b": "email.a, also new in this change"}),
        (
            [email("a", send_at=LATER), email("b", send_at=LATER)],
            {"b": "email.a, also new in this change"},
        ),
        (
            [email("a", send_at=LATER), email("b", allow_resend=True)],
            {"a": "email.b, sent in this change"},
        ),
        ([email("a"), email("b", allow_resend=True)], {}),
        ([email("a", allow_resend=True), email("b", allow_resend=True)], {}),
        ([email("a"), email("b", subject="Other")], {}),
    ],
)
def test_duplicate_send_group_rule(members: list, refused: dict[str, str]) -> None:
    from commsync.plan.email_broadcasts import Twin, duplicate_sends

    def shown(twins: dict[str, Twin]) -> dict[str, str]:
        return {bid: str(twin) for bid, twin in twins.items()}

    assert shown(duplicate_sends(members, {}, NOW)) == refused
    sent = {members[0].spec.content_signature(): Twin("old", "sent earlier")}
    expected = {
        m.id: "email.old, sent earlier"
        for m in members
        if not m.spec.allow_resend and m.spec.content_signature() in sent
    }
    assert shown(duplicate_sends(members, sent, NOW)) == expected
