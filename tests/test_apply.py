"""apply: converging the store and sending each recipient one message (real aiosmtpd on loopback)."""

from __future__ import annotations

import json
from collections import Counter

import sqlalchemy as sa

from tests.helpers import Repo, seed, settings_for
from tests.smtp_server import SmtpServer

NEWS = """\
kind: email
subject: "News for {{ customer_first_name }}"
targets:
  products: [pro]
  customers: [c2, c3]
content: |
  Hi **{{ customer_first_name }}** ({{ customer_user_email }}),

  Here is the news. [Unsubscribe]({{ unsubscribe_url }})
"""


def _setup(repo: Repo, smtp_server: SmtpServer, count: int) -> None:
    repo.write("commsync.yaml", settings_for(smtp_server.url, extra="imports: none\n"))
    seed(repo, count)
    repo.write("broadcasts/news.yaml", NEWS)
    repo.commit_all("news")


def test_apply_sends_each_recipient_their_own_message_once(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(repo, smtp_server, 4000)
    result = repo.cli("apply", "--yes")
    assert result.exit_code == 0, result.output
    messages = smtp_server.recorder.messages
    expected = {f"c{i}@example.com" for i in range(2, 4001, 2)} | {
        "c3@example.com"
    }  # pro, plus c2 (also pro) and c3
    assert len(messages) == len(expected) == 2001
    assert Counter(r for m in messages for r in m.recipients) == Counter(
        expected
    )  # c2: by id and product, once
    ids = set()
    for received in messages:
        (rcpt,) = received.recipients
        message = received.parsed()  # policy.strict: any header defect raises
        assert message["To"].addresses[0].addr_spec == rcpt and len(message["To"].addresses) == 1
        assert "Bcc" not in message and "Cc" not in message
        n = rcpt.split("@")[0][1:]
        assert message["Subject"] == f"News for First{n}"
        assert message.get_content_type() == "multipart/alternative"
        text, html = message.get_body(("plain",)), message.get_body(("html",))
        assert text is not None and html is not None
        assert f"Hi **First{n}** ({rcpt})" in text.get_content()
        assert f"<strong>First{n}</strong>" in html.get_content()
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        https, mailto = (part.strip(" <>") for part in message["List-Unsubscribe"].split(","))
        assert https.startswith(
            "https://acme.example/commsync/v1/unsubscribe/"
        ) and mailto.startswith("mailto:")
        assert https in html.get_content()
        ids.add(message["Message-ID"])
        assert message["Date"] is not None
    assert len(ids) == 2001
    assert "Apply complete: 1 sent." in result.stdout
    assert f"2,001 messages went to smtp://127.0.0.1:{smtp_server.port}" in result.stdout


def test_a_second_apply_has_nothing_to_do_and_opens_no_connection(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(repo, smtp_server, 20)
    assert repo.cli("apply", "--yes").exit_code == 0
    connections, sent = smtp_server.recorder.connections, len(smtp_server.recorder.messages)
    assert connections >= 1 and sent == 11
    again = repo.cli("apply", "--yes")
    assert again.exit_code == 0
    assert "Nothing to do: the store matches the repository." in again.stdout
    assert smtp_server.recorder.connections == connections
    assert len(smtp_server.recorder.messages) == sent
    assert repo.plan_json("--detailed-exitcode")["summary"]["changes"] == 0


def test_apply_without_a_terminal_needs_yes(repo: Repo, smtp_server: SmtpServer) -> None:
    _setup(repo, smtp_server, 5)
    result = repo.cli("apply")
    assert result.exit_code == 1
    assert (
        "apply asks before it changes anything: run it in a terminal, or pass --yes"
        in result.stderr
    )
    assert smtp_server.recorder.messages == []


def test_order_journal_and_provenance(repo: Repo, smtp_server: SmtpServer) -> None:
    _setup(repo, smtp_server, 6)
    repo.write(
        "broadcasts/hello.yaml", "kind: notice\ntargets: {all: true}\nsubject: Hello\ncontent: Hi\n"
    )
    repo.write("emails/paid.yaml", "email: payment_received_customer\nactive: false\n")
    sha = repo.commit_all("more")
    result = repo.cli("apply", "--yes")
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("✓")]
    assert [line.split(":")[0] for line in lines] == [
        "✓ system_email.payment_received_customer",
        "✓ notice.hello",
        "✓ email.news",
    ]
    engine = sa.create_engine(repo.store_url)
    with engine.connect() as conn:
        journal = conn.execute(
            sa.text('SELECT status, "commit", author, plan_id FROM apply_journal')
        ).one()
        notice = conn.execute(
            sa.text("SELECT \"commit\", author, path FROM broadcasts WHERE id = 'hello'")
        ).one()
    engine.dispose()
    assert (
        journal[0] == "succeeded"
        and journal[1] == sha
        and journal[2] == "Test Operator"
        and journal[3].startswith("sha256:")
    )
    assert tuple(notice) == (sha, "Test Operator", "broadcasts/hello.yaml")
    status = json.loads(repo.cli("status", "--format", "json").stdout)
    (news,) = status["emails"]
    assert (news["recipients"], news["sent"], news["status"]) == (4, 4, "sent")
    assert status["applies"][0]["commit"] == sha


def test_dirty_working_tree_is_refused_unless_allowed(repo: Repo, smtp_server: SmtpServer) -> None:
    _setup(repo, smtp_server, 5)
    repo.write(
        "broadcasts/wip.yaml", "kind: notice\ntargets: {all: true}\nsubject: WIP\ncontent: x\n"
    )
    refused = repo.cli("apply", "--yes")
    assert refused.exit_code == 1
    assert "uncommitted changes under managed paths: broadcasts/wip.yaml" in refused.stderr
    assert smtp_server.recorder.messages == []
    assert repo.cli("apply", "--yes", "--allow-dirty").exit_code == 0
    assert len(smtp_server.recorder.messages) == 3


def test_maildir_transport_writes_a_maildir_mail_clients_read(repo: Repo) -> None:
    import mailbox

    repo.write("commsync.yaml", settings_for("maildir:out", extra="imports: none\n"))
    seed(repo, 10)
    repo.write("broadcasts/news.yaml", NEWS)
    repo.commit_all("news")
    assert repo.cli("apply", "--yes").exit_code == 0
    box = mailbox.Maildir(repo.root / "out", create=False)
    recipients = sorted(message["To"] for message in box)
    assert len(recipients) == 6
    assert all(r.startswith("First") for r in recipients)
    assert list((repo.root / "out" / "tmp").iterdir()) == []


def test_apply_on_a_postgresql_store(
    repo: Repo, smtp_server: SmtpServer, pg_url: str, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COMMSYNC_STORE", pg_url)
    _setup(repo, smtp_server, 300)
    result = repo.cli("apply", "--yes")
    assert result.exit_code == 0, result.output
    assert Counter(smtp_server.recorder.by_recipient().values()) == Counter({1: 151})
    assert not (repo.root / ".commsync" / "store.db").exists()
    assert "Nothing to do" in repo.cli("apply", "--yes").stdout


def test_progress_is_a_line_per_thousand_messages_off_a_terminal(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    _setup(repo, smtp_server, 4000)
    output = repo.cli("apply", "--yes").stdout
    assert "    1,000 of 2,001 messages" in output and "    2,000 of 2,001 messages" in output
    assert "\x1b[" not in output


def test_suppressed_addresses_get_nothing(repo: Repo, smtp_server: SmtpServer) -> None:
    _setup(repo, smtp_server, 10)
    engine = sa.create_engine(repo.store_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO suppressions (email_key, scope, reason, created_at) VALUES ('c4@example.com', 'marketing', 'unsubscribe', '2026-11-01 00:00:00')"
            )
        )
    engine.dispose()
    result = repo.cli("apply", "--yes")
    assert result.exit_code == 0
    assert "c4@example.com" not in smtp_server.recorder.by_recipient()
    assert "5 sent, 1 suppressed" in result.stdout
