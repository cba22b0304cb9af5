"""apply against a scripted SMTP server: 4xx retried, 5xx failed and listed, dropped connections resumed."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter

import pytest
from click.testing import Result

from tests.helpers import Repo, seed, settings_for
from tests.smtp_server import Received, Recorder, SmtpServer

NEWS = "kind: email\nsubject: News\ntargets: {all: true}\ncontent: Hi {{ customer_first_name }}\n"


def _number(address: str) -> int:
    return int(address.split("@")[0][1:])


def _apply_news(repo: Repo, url: str, connections: int, customers: int) -> Result:
    """Customers c1…cN, the news broadcast to all of them, and `commsync apply --yes` to `url`."""
    repo.write("commsync.yaml", settings_for(url, connections=connections, extra="imports: none\n"))
    seed(repo, customers)
    repo.write("broadcasts/news.yaml", NEWS)
    repo.commit_all("news")
    return repo.cli("apply", "--yes")


def script(address: str, seen: int) -> str | None:
    n = _number(address)
    if n % 10 == 1 and seen == 0:
        return "451 4.3.0 greylisted, try again later"
    if n % 10 == 3:
        return "550 5.1.1 no such mailbox"
    if n in (40, 77) and seen == 0:
        return "drop"
    return None


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one command at a time"])
def test_transient_permanent_and_dropped(repo: Repo, pipelining: bool) -> None:
    recorder = Recorder(script=script, pipelining=pipelining)
    with SmtpServer(recorder) as server:
        result = _apply_news(repo, server.url, 3, 100)
        assert result.exit_code == 1, result.output
        received = recorder.by_recipient()
        failing = {f"c{n}@example.com" for n in range(3, 101, 10)}
        assert set(received) == {f"c{n}@example.com" for n in range(1, 101)} - failing
        assert set(received.values()) == {1}  # nobody twice, nobody lost
        assert recorder.offered["c11@example.com"] == 2 and recorder.offered["c40@example.com"] == 2
        assert "✗ email.news: 90 sent, 10 failed" in result.stdout
        assert "failed: c13@example.com: 550 5.1.1 no such mailbox (at RCPT TO)" in result.stdout
        assert "Apply finished with 1 problem(s)" in result.stdout

        listed = repo.cli("status", "--failed", "news")
        assert sorted(line.split("\t")[0] for line in listed.stdout.splitlines()) == sorted(failing)
        assert "550 5.1.1 no such mailbox" in listed.stdout

        recorder.script = None  # the mailboxes exist now
        retry = repo.cli("apply", "--yes", "--retry-failed")
        assert retry.exit_code == 0, retry.output
        assert "requeued 10 messages" in retry.stdout
        assert set(recorder.by_recipient()) == {f"c{n}@example.com" for n in range(1, 101)}
        assert set(recorder.by_recipient().values()) == {1}
        assert repo.cli("status", "--failed", "news").stdout == ""


def _after_the_body(address: str, seen: int) -> str | None:
    n = _number(address)
    if n % 10 == 5:
        return "554 5.7.1 refused as spam"
    if n % 10 == 7 and seen == 0:
        return "452 4.3.1 insufficient storage"
    return None


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one command at a time"])
def test_a_body_refused_ends_only_its_own_message(repo: Repo, pipelining: bool) -> None:
    """The next message's envelope travels with a body when the server pipelines: a refusal at
    the end of DATA (5xx failed, 4xx retried in the next pass) ends that message's transaction
    alone, and the message sent ahead goes out as it should."""
    recorder = Recorder(data_script=_after_the_body, pipelining=pipelining)
    with SmtpServer(recorder) as server:
        result = _apply_news(repo, server.url, 2, 60)
    assert result.exit_code == 1, result.output
    refused = {f"c{n}@example.com" for n in range(5, 61, 10)}
    received = recorder.by_recipient()
    assert set(received) == {f"c{n}@example.com" for n in range(1, 61)} - refused
    assert set(received.values()) == {1}
    assert recorder.ended["c7@example.com"] == 2 and recorder.ended["c5@example.com"] == 1
    assert "✗ email.news: 54 sent, 6 failed" in result.stdout
    assert "failed: c15@example.com: 554 5.7.1 refused as spam (at end of DATA)" in result.stdout


def test_an_address_suppressed_during_the_send_gets_nothing(repo: Repo) -> None:
    """An address suppressed after its batch was read: its row cannot be marked `sending`, so
    the envelope the server already accepted for it (sent ahead with another body) is
    abandoned — the connection closes mid-DATA and the server discards it — and every other
    recipient still gets one message."""
    recorder = Recorder()

    def suppress(received: Received) -> None:
        if len(recorder.messages) == 3:  # early in the send: the whole batch is read already
            with sqlite3.connect(repo.root / ".commsync" / "store.db", timeout=30) as conn:
                conn.execute(
                    "INSERT INTO suppressions (email_key, scope, reason, source, created_at)"
                    " VALUES ('c40@example.com', 'all', 'manual', 'test', '2026-01-01')"
                )

    recorder.on_message = suppress
    with SmtpServer(recorder) as server:
        result = _apply_news(repo, server.url, 2, 60)
    assert result.exit_code == 0, result.output
    received = recorder.by_recipient()
    assert set(received) == {f"c{n}@example.com" for n in range(1, 61)} - {"c40@example.com"}
    assert set(received.values()) == {1}
    assert recorder.offered["c40@example.com"] == 1  # its envelope went ahead, and was dropped
    assert recorder.connections == 3  # the abandoned message's connection was opened again
    with sqlite3.connect(repo.root / ".commsync" / "store.db") as conn:
        row = conn.execute(
            "SELECT status, last_error FROM deliveries WHERE email = 'c40@example.com'"
        ).fetchone()
    assert row == ("suppressed", "suppressed just before sending")


def test_an_unreachable_server_leaves_everything_queued(repo: Repo) -> None:
    from tests.smtp_server import free_port

    repo.write(
        "commsync.yaml",
        settings_for(
            f"smtp://127.0.0.1:{free_port()}?timeout=2", connections=2, extra="imports: none\n"
        ),
    )
    seed(repo, 30)
    repo.write("broadcasts/news.yaml", NEWS)
    repo.commit_all("news")
    result = repo.cli("apply", "--yes")
    assert result.exit_code == 1
    assert "0 sent, 30 left queued — giving up on smtp://127.0.0.1" in result.stdout
    plan = repo.plan_json()
    (resume,) = [a for a in plan["actions"] if a["address"] == "email.news"]
    assert resume["action"] == "resume" and resume["progress"]["remaining"] == 30
    recorder = Recorder()
    with SmtpServer(recorder) as server:
        repo.write(
            "commsync.yaml", settings_for(server.url, connections=2, extra="imports: none\n")
        )
        repo.commit_all("the server is back")
        assert repo.cli("apply", "--yes").exit_code == 0
    assert Counter(recorder.by_recipient().values()) == Counter({1: 30})


class _FewPerConnection(Recorder):
    """A server that takes a few messages per connection, then refuses the next MAIL with 421
    and closes — as providers that cap messages per connection do."""

    def __init__(self, per_connection: int) -> None:
        super().__init__()
        self.per_connection = per_connection
        self.refused = 0

    async def handle_MAIL(self, server, session, envelope, address, options):  # type: ignore[no-untyped-def]
        taken = getattr(session, "taken", 0)
        if taken >= self.per_connection:
            with self.lock:
                self.refused += 1
            assert server.transport is not None
            # closed right after the reply goes out (before it, the client would see no 421)
            asyncio.get_running_loop().call_later(0.01, server.transport.close)
            return "421 4.7.0 too many messages on this connection"
        session.taken = taken + 1
        envelope.mail_from = address
        return "250 OK"


def test_a_server_that_closes_after_a_few_messages_per_connection(repo: Repo) -> None:
    """The envelope sent ahead with a body meets the server's 421 and its close: that message
    goes at once on a new connection (no pass of retries: every row is sent at its first
    attempt), and everyone gets exactly one message."""
    recorder = _FewPerConnection(per_connection=5)
    with SmtpServer(recorder) as server:
        result = _apply_news(repo, server.url, 3, 60)
    assert result.exit_code == 0, result.output
    received = recorder.by_recipient()
    assert set(received) == {f"c{n}@example.com" for n in range(1, 61)}
    assert set(received.values()) == {1}
    assert recorder.refused >= 9 and recorder.connections >= 12  # 5 a connection, 60 in all
    with sqlite3.connect(repo.root / ".commsync" / "store.db") as conn:
        attempts = conn.execute("SELECT DISTINCT attempts FROM deliveries").fetchall()
    assert attempts == [(1,)]
