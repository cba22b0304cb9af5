"""`commsync queue`: what waits, and cancelling exactly what is named."""

from __future__ import annotations

import json
import re

from tests.helpers import Repo, dump_store
from tests.smtp_server import SmtpServer
from tests.test_events import _deliveries, _fire, _setup, payment


def _queue(repo: Repo) -> dict[str, object]:
    listed = repo.cli("queue", "--format", "json")
    assert listed.exit_code == 0, listed.output
    document: dict[str, object] = json.loads(listed.stdout)
    return document


def test_the_queue_lists_what_waits_and_cancel_removes_exactly_what_it_names(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(repo, smtp_server, payment_received_admin="email: payment_received_admin\ndelay: 2h\n")
    for key in ("k1", "k2", "k3"):
        data = payment(
            payment_reference_code=f"PAY-{key}", customer_user_email=f"{key}@example.com"
        )
        assert _fire(repo, data, "--key", key).exit_code == 0
    document = _queue(repo)
    assert (document["due"], document["waiting"]) == (6, 3)
    messages = document["messages"]
    assert isinstance(messages, list) and len(messages) == 9
    assert [m["waiting_for"] for m in messages[-3:]] == ["its email's delay"] * 3
    assert {m["event_key"] for m in messages} == {"k1", "k2", "k3"}
    text = repo.cli("queue").stdout
    assert text.startswith("queue: 6 due, 3 waiting (next in 2h)\n"), text
    assert re.search(
        r"payment_received_admin +ops@acme\.example +\S+ \S+ +k3 +its email's delay", text
    )
    assert len(repo.cli("queue", "--limit", "2").stdout.splitlines()) == 6  # 2 rows + notes

    def cancel(*args: str) -> str:
        result = repo.cli("queue", "cancel", *args, "--yes")
        assert result.exit_code == 0, result.output
        return result.stdout.strip()

    assert cancel("--event", "k2") == "cancelled 3 queued messages"
    k1_admin = next(
        m["id"]
        for m in messages
        if m["event_key"] == "k1" and m["email"] == "payment_received_admin"
    )
    assert cancel(str(k1_admin)) == "cancelled 1 queued message"
    assert (
        cancel("--email", "payment_received_admin", "--event", "k3") == "cancelled 1 queued message"
    )
    assert cancel("--event", "k2") == "cancelled 0 queued messages"  # nothing twice
    left = _queue(repo)
    assert (left["due"], left["waiting"]) == (4, 0)
    assert {(m["event_key"], m["email"]) for m in left["messages"]} == {  # type: ignore[union-attr]
        (key, email)
        for key in ("k1", "k3")
        for email in ("payment_received_customer", "payment_everything")
    }

    delivered = repo.cli("deliver")
    assert "delivered: 4 sent, 0 failed" in delivered.stdout
    assert sorted(r for m in smtp_server.recorder.messages for r in m.recipients) == [
        "k1@example.com",
        "k1@example.com",
        "k3@example.com",
        "k3@example.com",
    ]
    statuses = sorted(status for _, _, status in _deliveries(repo))
    assert statuses == ["cancelled"] * 5 + ["sent"] * 4
    listed = json.loads(repo.cli("status", "--format", "json").stdout)["system_emails"]
    assert {e["slug"]: e["cancelled"] for e in listed} == {
        "payment_everything": 1,
        "payment_received_admin": 3,
        "payment_received_customer": 1,
    }


def test_cancel_needs_a_criterion_and_a_confirmation_and_changes_nothing_without_them(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(repo, smtp_server)
    assert _fire(repo, payment(), "--key", "k1").exit_code == 0
    before = dump_store(repo.store_url)
    typo = repo.cli("queue", "cancel", "--email", "payment_recieved_admin", "--yes")
    assert typo.exit_code == 1
    assert "unknown system email 'payment_recieved_admin' (installed: " in typo.stderr
    nokey = repo.cli("queue", "cancel", "--event", "k9", "--yes")
    assert nokey.exit_code == 1 and "no event has the key 'k9'" in nokey.stderr
    bare = repo.cli("queue", "cancel", "--yes")
    assert bare.exit_code == 64 and "say what to cancel" in bare.output
    unconfirmed = repo.cli("queue", "cancel", "--event", "k1")  # no terminal to ask on
    assert unconfirmed.exit_code == 1 and "pass --yes" in unconfirmed.stderr
    assert dump_store(repo.store_url) == before
