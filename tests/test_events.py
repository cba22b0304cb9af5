"""Events: `commsync event` queues the active system emails of an event, `deliver` sends them."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from commsync.api import Project
from commsync.api.context import Context
from commsync.catalog.loader import build_catalog, core_catalog_dir
from commsync.config.settings import Settings
from commsync.delivery.smtp import SmtpSession
from commsync.delivery.transport import Outcome
from commsync.delivery.worker import Worker
from commsync.events.service import EventRejected, EventService
from commsync.model import JsonObject
from commsync.store.roles import Store
from commsync.store.sql import create_store_engine, open_store
from tests.helpers import SETTINGS, Repo, dump_store, settings_for
from tests.http_server import Served
from tests.smtp_server import SmtpServer, wait_for

CATALOG, _ = build_catalog([core_catalog_dir()])
PAYMENT = CATALOG.events["payment_received"]

# A custom email of payment_received that shows every key of the event's payload.
EVERYTHING = (
    'event: payment_received\ntarget: customer\nsubject: "Receipt {{ payment_reference_code }}"\ncontent: |\n'
    + "".join(f"  - {k} = {{{{ {k} }}}}\n" for k in sorted(PAYMENT.key_names))
)


def payment(**changes: Any) -> JsonObject:
    data: JsonObject = {
        **PAYMENT.mock_payload(),
        "customer_id": 1,
        "customer_name": "Ada Lovelace",
        "customer_user_email": "ada@example.com",
        "payment_total": "€41.50",
        "payment_reference_code": "PAY-ADA-0001",
    }
    data.update(changes)
    return data


def _setup(repo: Repo, smtp: SmtpServer, settings: str | None = None, **files: str | None) -> None:
    """Install payment_received's two defaults and EVERYTHING; `files` replace or add emails."""
    repo.write("commsync.yaml", settings or settings_for(smtp.url, extra="imports: none\n"))
    repo.import_data()
    emails = {
        "payment_received_customer": "email: payment_received_customer\n",
        "payment_received_admin": "email: payment_received_admin\n",
        "payment_everything": EVERYTHING,
        **files,
    }
    for slug, text in emails.items():
        if text is not None:  # None: leave that email out
            repo.write(f"emails/{slug}.yaml", text)
    repo.commit_all("emails")
    result = repo.cli("apply", "--yes")
    assert result.exit_code == 0, result.output


def _fire(repo: Repo, data: JsonObject, *args: str, event: str = "payment_received") -> Any:
    path = repo.write("payload.json", json.dumps(data))
    return repo.cli("event", event, "--data", str(path), *args)


def _deliveries(repo: Repo) -> list[tuple[str, str, str]]:
    engine = create_store_engine(repo.store_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT s.system_email_slug, d.email, d.status FROM deliveries d"
                    " JOIN sends s ON s.id = d.send_id WHERE s.kind = 'system_email'"
                    " ORDER BY 1, 2"
                )
            ).all()
    finally:
        engine.dispose()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


def _stats(repo: Repo) -> dict[str, dict[str, Any]]:
    result = repo.cli("emails", "list", "--format", "json")
    assert result.exit_code == 0, result.output
    return {row["slug"]: row["stats"] for row in json.loads(result.stdout)["emails"]}


def test_payment_received_sends_customer_and_admin_emails_with_every_placeholder_filled(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(repo, smtp_server)
    data = payment()
    fired = _fire(repo, data, "--key", "pay-1")
    assert fired.exit_code == 0, fired.output
    assert "payment_received: 3 email(s), 3 message(s) queued" in fired.stdout
    assert smtp_server.recorder.messages == []  # queued, not sent: deliver sends

    delivered = repo.cli("deliver")
    assert delivered.exit_code == 0, delivered.output
    assert "delivered: 3 sent, 0 failed" in delivered.stdout
    by_subject = {m.parsed()["Subject"]: m for m in smtp_server.recorder.messages}
    assert set(by_subject) == {
        "Payment received: €41.50 for Pro",
        "New payment: €41.50 from Ada Lovelace",
        "Receipt PAY-ADA-0001",
    }
    admin = by_subject["New payment: €41.50 from Ada Lovelace"]
    assert admin.recipients == ["ops@acme.example"]
    for subject in ("Payment received: €41.50 for Pro", "Receipt PAY-ADA-0001"):
        assert by_subject[subject].recipients == ["ada@example.com"]
        assert by_subject[subject].parsed()["To"] == "Ada Lovelace <ada@example.com>"
    for received in smtp_server.recorder.messages:
        message = received.parsed()
        assert message["List-Unsubscribe"] is None  # transactional: no unsubscribe
        for part in ("plain", "html"):
            body = message.get_body((part,))
            assert body is not None
            content = body.get_content()
            assert "{{" not in content and "}}" not in content and "zq" not in content
    text = by_subject["Receipt PAY-ADA-0001"].parsed().get_body(("plain",))
    assert text is not None
    for key in PAYMENT.key_names:
        value = data[key]
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        assert f"- {key} = {shown}" in text.get_content().replace("\\", ""), key

    # stats: sent and last sent, per email
    stats = _stats(repo)
    for slug in ("payment_received_customer", "payment_received_admin", "payment_everything"):
        assert stats[slug]["sent"] == 1 and stats[slug]["last_sent_at"], stats[slug]
    # the same key again: nothing new, the first result
    again = _fire(repo, payment(payment_total="$1"), "--key", "pay-1")
    assert again.exit_code == 0 and "was seen before; nothing new was queued" in again.stdout
    assert repo.cli("deliver").exit_code == 0
    assert len(smtp_server.recorder.messages) == 3
    assert len(_deliveries(repo)) == 3


def test_an_inactive_email_never_sends(repo: Repo, smtp_server: SmtpServer) -> None:
    _setup(repo, smtp_server)
    repo.write(
        "emails/payment_received_admin.yaml", "email: payment_received_admin\nactive: false\n"
    )
    repo.commit_all("off")
    assert repo.cli("apply", "--yes").exit_code == 0
    fired = _fire(repo, payment(), "--format", "json")
    assert fired.exit_code == 0, fired.output
    assert {e["email"] for e in json.loads(fired.stdout)["emails"]} == {
        "payment_received_customer",
        "payment_everything",
    }
    assert repo.cli("deliver").exit_code == 0
    assert sorted(r for m in smtp_server.recorder.messages for r in m.recipients) == [
        "ada@example.com",
        "ada@example.com",
    ]
    assert all(slug != "payment_received_admin" for slug, _, _ in _deliveries(repo))


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def service(repo: Repo, smtp_server: SmtpServer) -> Iterator[tuple[EventService, Settings, Store]]:
    _setup(repo, smtp_server, payment_received_admin="email: payment_received_admin\ndelay: 2h\n")
    settings = Context(Project(repo.root)).settings()
    store = open_store(settings.store_url)
    try:
        yield EventService(store, settings, CATALOG), settings, store
    finally:
        store.close()


def test_a_delayed_email_goes_out_once_the_clock_passes_its_delay(
    service: tuple[EventService, Settings, Store], smtp_server: SmtpServer
) -> None:
    events, settings, store = service
    t0 = datetime(2031, 5, 1, 9, 0, tzinfo=UTC)
    result = events.fire("payment_received", payment(), now=t0)
    due = {e.email: e.due_at for e in result.emails}
    assert due["payment_received_admin"] == t0 + timedelta(hours=2)
    clock = Clock(t0)
    worker = Worker(store, settings, {}, clock=clock)

    def sent_to() -> list[str]:
        return sorted(r for m in smtp_server.recorder.messages for r in m.recipients)

    assert worker.run_blocking(loop=False).sent == 2
    assert sent_to() == ["ada@example.com", "ada@example.com"]
    clock.now = t0 + timedelta(hours=1, minutes=59)
    assert worker.run_blocking(loop=False).sent == 0
    assert "ops@acme.example" not in sent_to()
    clock.now = t0 + timedelta(hours=2, seconds=1)
    assert worker.run_blocking(loop=False).sent == 1
    clock.now = t0 + timedelta(hours=5)
    assert worker.run_blocking(loop=False).sent == 0
    assert sent_to() == ["ada@example.com", "ada@example.com", "ops@acme.example"]


def test_transient_failures_are_retried_later_and_permanent_ones_recorded(
    service: tuple[EventService, Settings, Store], smtp_server: SmtpServer, repo: Repo
) -> None:
    events, settings, store = service
    busy = [True]
    smtp_server.recorder.script = lambda rcpt, seen: (
        "550 5.1.1 no such user"
        if rcpt.startswith("ops@")
        else ("451 4.3.0 try later" if busy[0] else None)
    )
    t0 = datetime(2031, 5, 1, 9, 0, tzinfo=UTC)
    events.fire("payment_received", payment(), now=t0)
    clock = Clock(t0 + timedelta(hours=3))
    worker = Worker(store, settings, {}, clock=clock)
    first = worker.run_blocking(loop=False)
    assert (first.sent, first.failed) == (0, 1)  # 550 for ops@; both of ada's deferred
    busy[0] = False
    assert worker.run_blocking(loop=False).sent == 0  # ada's retries are not due yet
    clock.now += timedelta(minutes=2)
    assert worker.run_blocking(loop=False).sent == 2
    rows = _deliveries(repo)
    assert ("payment_received_admin", "ops@acme.example", "failed") in rows
    assert [status for _, email, status in rows if email == "ada@example.com"] == ["sent", "sent"]
    stats = _stats(repo)
    assert stats["payment_received_admin"]["failed"] == 1
    assert stats["payment_received_admin"]["sent"] == 0
    assert stats["payment_received_customer"]["sent"] == 1


def test_a_render_failure_is_recorded_and_never_blocks_the_other_emails(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(
        repo,
        smtp_server,
        per_thousand="event: payment_received\ntarget: customer\nsubject: Ratio\n"
        'content: "{{ 1000 // payment_id }} per thousand"\n',
    )
    fired = _fire(repo, payment(payment_id=0))
    assert fired.exit_code == 1
    assert "per_thousand: 1 recipient(s), due now, 1 failed" in fired.stdout
    assert "ZeroDivisionError" in fired.stdout
    assert "1 message(s) could not be rendered" in fired.stderr
    assert repo.cli("deliver").exit_code == 0
    assert len(smtp_server.recorder.messages) == 3
    assert ("per_thousand", "ada@example.com", "failed") in _deliveries(repo)
    assert _stats(repo)["per_thousand"]["failed"] == 1


def test_an_email_without_recipients_is_skipped_and_the_others_still_go(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    no_admins = SETTINGS.replace("  admins: [ops@acme.example]\n", "")
    assert no_admins != SETTINGS
    _setup(
        repo,
        smtp_server,
        settings=no_admins + f"  transport: {smtp_server.url}\nimports: none\n",
    )
    fired = _fire(repo, payment())
    assert fired.exit_code == 0, fired.output
    assert "payment_received_admin: skipped (no admins in mail.admins)" in fired.stdout
    assert repo.cli("deliver").exit_code == 0
    assert sorted(r for m in smtp_server.recorder.messages for r in m.recipients) == [
        "ada@example.com",
        "ada@example.com",
    ]


@pytest.mark.parametrize("customer_id", [2, "2"])
def test_ids_are_opaque_42_and_the_string_42_name_one_customer(
    repo: Repo, smtp_server: SmtpServer, customer_id: int | str
) -> None:
    _setup(repo, smtp_server)
    data = payment(customer_id=customer_id, payment_id="pay_7f3a", site_id="3f2b-uuid")
    del data["customer_user_email"], data["customer_name"]
    fired = _fire(repo, data, "--format", "json")
    assert fired.exit_code == 0, fired.output
    assert repo.cli("deliver").exit_code == 0
    assert {r for m in smtp_server.recorder.messages for r in m.recipients} == {
        "grace@example.com",
        "ops@acme.example",
    }


def test_string_ids_like_a_saas_uses_name_imported_customers(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    """Customers imported with ids such as `c2` (or UUIDs) are found by an event naming them."""
    repo.write("commsync.yaml", settings_for(smtp_server.url, extra="imports: none\n"))
    repo.write(
        "data/customers.csv",
        "id,email,username,first_name,last_name\n"
        "c2,cee@example.com,cee,Cee,Two\n"
        "0b6f1c9e-5d4a-4c1e-9d7a-2f3b4c5d6e7f,uu@example.com,uu,Uu,Id\n",
    )
    assert repo.cli("customers", "import", "data/customers.csv").exit_code == 0
    repo.write("emails/payment_received_customer.yaml", "email: payment_received_customer\n")
    repo.commit_all("emails")
    assert repo.cli("apply", "--yes").exit_code == 0
    for cid in ("c2", "0b6f1c9e-5d4a-4c1e-9d7a-2f3b4c5d6e7f"):
        data = payment(customer_id=cid)
        del data["customer_user_email"], data["customer_name"]
        fired = _fire(repo, data)
        assert fired.exit_code == 0, fired.output
    assert repo.cli("deliver").exit_code == 0
    assert sorted(r for m in smtp_server.recorder.messages for r in m.recipients) == [
        "cee@example.com",
        "uu@example.com",
    ]
    names = sorted(str(m.parsed()["To"]) for m in smtp_server.recorder.messages)
    assert names == ["Cee Two <cee@example.com>", "Uu Id <uu@example.com>"]


def test_the_customer_is_completed_from_the_store_and_admins_copied(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(
        repo,
        smtp_server,
        payment_received_customer="email: payment_received_customer\nsend_copy_to_admin: true\n",
    )
    data = payment(customer_id=2)
    del data["customer_user_email"], data["customer_name"]
    fired = _fire(repo, data)
    assert fired.exit_code == 0, fired.output
    assert repo.cli("deliver").exit_code == 0
    got = sorted((m.recipients[0], m.parsed()["Subject"]) for m in smtp_server.recorder.messages)
    assert got == [
        ("grace@example.com", "Payment received: €41.50 for Pro"),
        ("grace@example.com", "Receipt PAY-ADA-0001"),
        ("ops@acme.example", "New payment: €41.50 from Grace Hopper"),
        ("ops@acme.example", "Payment received: €41.50 for Pro"),
    ]


def test_bounced_addresses_are_suppressed_but_marketing_unsubscribes_are_not(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(repo, smtp_server)
    store = open_store(repo.store_url)
    try:
        now = datetime.now(UTC)
        store.suppress("ada@example.com", "marketing", "unsubscribe", "test", now)
        store.suppress("ops@acme.example", "all", "bounce", "test", now)
    finally:
        store.close()
    fired = _fire(repo, payment())
    assert fired.exit_code == 0, fired.output
    assert "payment_received_admin: 1 recipient(s), due now, 1 suppressed" in fired.stdout
    assert repo.cli("deliver").exit_code == 0
    assert sorted(r for m in smtp_server.recorder.messages for r in m.recipients) == [
        "ada@example.com",
        "ada@example.com",
    ]
    assert ("payment_received_admin", "ops@acme.example", "suppressed") in _deliveries(repo)


@pytest.mark.parametrize(
    ("event", "data", "messages"),
    [
        ("payment_recieved", payment(), ["unknown event 'payment_recieved'"]),
        (
            "payment_received",
            payment(payment_total=41.5),
            ["payment_total must be string, got number"],
        ),
        (
            "payment_received",
            payment(payment_id=51.2),
            ["payment_id must be an id (an integer or a string), got number"],
        ),
        (
            "payment_received",
            payment(customer_id=True),
            ["customer_id must be an id (an integer or a string), got boolean"],
        ),
        (
            "payment_received",
            payment(customer_id="", customer_user_id="a\nb", membership_id="x" * 256),
            [
                f"{key} must be an id: a one-line string of 1 to 255 characters, or an integer"
                for key in ("customer_id", "customer_user_id", "membership_id")
            ],
        ),
        (
            "payment_received",
            {k: v for k, v in payment().items() if k != "payment_reference_code"},
            ["payment_reference_code is missing, and an active email of payment_received uses it"],
        ),
        (
            "payment_received",
            payment(payment_invoice_url=None, membership_status=["active"]),
            [
                "membership_status must be string, got list",
                "payment_invoice_url is missing",
            ],
        ),
    ],
)
def test_a_bad_payload_is_refused_naming_the_key_and_queues_nothing(
    repo: Repo, smtp_server: SmtpServer, event: str, data: JsonObject, messages: list[str]
) -> None:
    _setup(repo, smtp_server)
    before = dump_store(repo.store_url)
    fired = _fire(repo, data, "--key", "k", event=event)
    assert fired.exit_code == 1
    for message in messages:
        assert f"error: {message}" in fired.stderr
    assert f"error: event {event} refused; nothing was queued" in fired.stderr
    assert dump_store(repo.store_url) == before


def test_a_payload_that_is_not_a_json_object_is_refused_with_its_position(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(repo, smtp_server)
    before = dump_store(repo.store_url)
    for text, where in (
        ('{\n  "payment_id": 1,\n  oops\n}', "payload.json:3:3: error: not valid JSON"),
        ("[1, 2]", "payload.json:1:1: error: the payload must be a JSON object"),
    ):
        repo.write("payload.json", text)
        result = repo.cli("event", "payment_received", "--data", "payload.json")
        assert result.exit_code == 1 and where in result.stderr, result.output
    missing = repo.cli("event", "payment_received", "--data", "absent.json")
    assert missing.exit_code == 1 and "absent.json: cannot read" in missing.stderr
    from_stdin = repo.cli("event", "payment_received", "--data", "-", input="nope")
    assert from_stdin.exit_code == 1 and "<stdin>:1:1: error: not valid JSON" in from_stdin.stderr
    assert dump_store(repo.store_url) == before


def test_events_are_refused_in_the_service_with_every_problem(
    service: tuple[EventService, Settings, Store],
) -> None:
    events, _, _ = service
    with pytest.raises(EventRejected) as refused:
        events.fire("payment_received", {"payment_total": 1, "payment_id": ["x"]})
    assert "payment_total must be string, got integer" in refused.value.problems
    assert "payment_id must be an id (an integer or a string), got list" in refused.value.problems
    assert any(p.startswith("customer_name is missing") for p in refused.value.problems)


def test_test_send_renders_with_the_mock_payload_and_records_nothing(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(repo, smtp_server)
    repo.write("emails/payment_everything.yaml", EVERYTHING.replace("Receipt", "Draft receipt"))
    before = dump_store(repo.store_url)
    result = repo.cli("test-send", "payment_everything", "--to", "me@example.org")
    assert result.exit_code == 0, result.output
    assert (
        f"sent payment_everything to me@example.org via smtp://127.0.0.1:{smtp_server.port}"
        in result.stdout
    )
    (received,) = smtp_server.recorder.messages
    assert received.recipients == ["me@example.org"]
    message = received.parsed()
    mock = PAYMENT.mock_payload()
    # the working tree's subject, marked as a test; To is the operator's address alone (not the
    # example customer's name on it)
    assert message["Subject"] == f"[test] Draft receipt {mock['payment_reference_code']}"
    assert message["To"] == "me@example.org"
    body = message.get_body(("plain",))
    assert body is not None and f"payment_total = {mock['payment_total']}" in body.get_content()
    assert dump_store(repo.store_url) == before
    for args, problem in (
        (["nope", "--to", "me@example.org"], "unknown system email 'nope'"),
        (["payment_everything", "--to", "not-an-address"], "is not an email address"),
        (
            ["payment_everything", "--to", "me@example.org\r\nBcc: x@example.org"],
            "is not an email address",
        ),
    ):
        failed = repo.cli("test-send", *args)
        assert failed.exit_code == 1 and problem in failed.stderr, failed.output
    assert len(smtp_server.recorder.messages) == 1


def test_deliver_reports_failures_and_exits_1(repo: Repo, smtp_server: SmtpServer) -> None:
    _setup(repo, smtp_server)
    smtp_server.recorder.script = lambda rcpt, seen: (
        "550 5.1.1 gone" if rcpt.startswith("ops") else None
    )
    assert _fire(repo, payment()).exit_code == 0
    result = repo.cli("deliver")
    assert result.exit_code == 1
    assert "delivered: 2 sent, 1 failed" in result.stdout
    assert re.search(r"failed: ops@acme.example: .*550 5.1.1 gone", result.stderr), result.output


def test_what_waits_in_the_queue_is_shown_by_deliver_status_emails_list_and_metrics(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(repo, smtp_server, payment_received_admin="email: payment_received_admin\ndelay: 2h\n")
    assert _fire(repo, payment(), "--key", "p1").exit_code == 0
    assert _fire(repo, payment(payment_reference_code="PAY-2"), "--key", "p2").exit_code == 0
    delivered = repo.cli("deliver")
    assert delivered.exit_code == 0, delivered.output
    assert "delivered: 4 sent, 0 failed" in delivered.stdout
    # the two admin copies wait for their delay: nothing is due, and the CLI says when
    assert "queue: 0 due, 2 waiting (next in 2h)" in delivered.stdout, delivered.stdout

    status = repo.cli("status")
    line = next(x for x in status.stdout.splitlines() if "payment_received_admin" in x)
    assert re.search(
        r"payment_received_admin\s+yes\s+delay\s+0\s+0\s+0\s+2\s+\d{4}-\d\d-\d\d ", line
    )
    assert "Queue: 0 due, 2 waiting (next in 2h)" in status.stdout
    document = json.loads(repo.cli("status", "--format", "json").stdout)
    assert document["queue"]["due"] == 0 and document["queue"]["waiting"] == 2
    admin = next(e for e in document["system_emails"] if e["slug"] == "payment_received_admin")
    due = datetime.fromisoformat(admin["next_due"])
    assert admin["queued"] == 2 and timedelta(hours=1, minutes=59) < due - datetime.now(UTC)
    customer = next(e for e in document["system_emails"] if e["slug"] != admin["slug"])
    assert customer["queued"] == 0 and customer["next_due"] is None

    listed = json.loads(repo.cli("emails", "list", "--format", "json").stdout)
    stats = {e["slug"]: e["stats"] for e in listed["emails"]}
    assert stats["payment_received_admin"]["queued"] == 2
    assert stats["payment_received_customer"]["queued"] == 0

    with Served(repo.root) as served:
        text = served.get("/metrics").text
    assert 'commsync_queue_depth{state="due"} 0.0' in text
    assert 'commsync_queue_depth{state="waiting"} 2.0' in text
    next_due = re.search(r"^commsync_queue_next_due_timestamp_seconds (\S+)$", text, re.M)
    assert next_due and abs(float(next_due.group(1)) - due.timestamp()) < 1


def test_a_vanished_workers_claims_are_taken_over_and_its_sending_rows_become_uncertain(
    service: tuple[EventService, Settings, Store], smtp_server: SmtpServer, repo: Repo
) -> None:
    events, settings, store = service
    t0 = datetime.now(UTC)
    events.fire("payment_received", payment(), now=t0)
    dead = store.ledger()
    try:
        claimed = dead.claim_due("gone-host:1:dead", t0, 50, t0 - timedelta(minutes=10))
        assert len(claimed) == 2  # the two customer emails; the admin's is 2 h away
        assert dead.transitions([((), claimed[0].id)], claimer="gone-host:1:dead") == [True]
    finally:
        dead.close()  # the worker dies: one row `sending`, one claimed but never started

    live = Worker(store, settings, {}, clock=Clock(t0 + timedelta(minutes=5)))
    assert live.run_blocking(loop=False).sent == 0  # too early to take another worker's claims
    assert smtp_server.recorder.messages == []
    later = Worker(store, settings, {}, clock=Clock(t0 + timedelta(minutes=11)))
    assert later.run_blocking(loop=False).sent == 1
    statuses = sorted(
        status for _, email, status in _deliveries(repo) if email == "ada@example.com"
    )
    assert statuses == ["sent", "uncertain"]
    assert len(smtp_server.recorder.messages) == 1


def test_a_worker_outlives_a_defect_and_its_other_connections_finish_first(
    service: tuple[EventService, Settings, Store],
    smtp_server: SmtpServer,
    repo: Repo,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A defect (not a store failure) in one connection: the connections still in an SMTP
    transaction finish it and record it before the sessions close, the defect is logged in
    full, and the worker starts again instead of dying with its thread."""
    events, settings, store = service
    t0 = datetime.now(UTC)
    for who in ("ada", "bob", "cy"):
        events.fire("payment_received", payment(customer_user_email=f"{who}@example.com"), now=t0)
    smtp_server.recorder.delay = 0.4  # the other connections are inside DATA when bob's fails
    original = SmtpSession.begin
    broke: list[str] = []

    async def defective(self: SmtpSession, sender: str, recipient: str) -> Outcome | None:
        if recipient == "bob@example.com" and not broke:
            broke.append(recipient)
            await asyncio.sleep(0.1)
            raise RuntimeError("a defect in the transport")
        return await original(self, sender, recipient)

    monkeypatch.setattr(SmtpSession, "begin", defective)
    stop = threading.Event()
    worker = Worker(store, settings, {}, clock=lambda: datetime.now(UTC))
    thread = threading.Thread(
        target=worker.run_blocking, kwargs={"loop": True, "stop": stop, "poll": 0.1}
    )
    caplog.set_level(logging.WARNING, logger="commsync")
    thread.start()
    try:
        wait_for(lambda: len(smtp_server.recorder.messages) >= 5, timeout=60)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert worker.health.reconnects >= 1
    assert any(
        "delivery worker failed; restarting" in r.getMessage() and r.exc_info
        for r in caplog.records
    ), caplog.text
    assert "readuntil" not in caplog.text, caplog.text
    received = Counter(m.parsed()["Message-ID"] for m in smtp_server.recorder.messages)
    assert set(received.values()) == {1}  # nothing twice
    bob = sorted(status for _, email, status in _deliveries(repo) if email == "bob@example.com")
    assert bob in (["sent", "uncertain"], ["sent", "sent"]), bob  # the broken one: uncertain
    others = [status for _, email, status in _deliveries(repo) if email != "bob@example.com"]
    assert others.count("sent") == 4, others


def test_system_emails_on_events_use_the_repository_layout(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    repo.write(
        "layouts/email.html",
        '<html><body><div class="house">{{ content }}</div><p>{{ network_name }}</p></body></html>\n',
    )
    _setup(repo, smtp_server)
    assert _fire(repo, payment()).exit_code == 0
    assert repo.cli("deliver").exit_code == 0
    for received in smtp_server.recorder.messages:
        html = received.parsed().get_body(("html",))
        assert html is not None and 'class="house"' in html.get_content()
