"""apply against a scripted SMTP server: 4xx retried, 5xx failed and listed, dropped connections resumed."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.helpers import Repo, seed, settings_for
from tests.smtp_server import Recorder, SmtpServer

NEWS = "kind: email\nsubject: News\ntargets: {all: true}\ncontent: Hi {{ customer_first_name }}\n"


def _number(address: str) -> int:
    return int(address.split("@")[0][1:])


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
        repo.write(
            "commsync.yaml", settings_for(server.url, connections=3, extra="imports: none\n")
        )
        seed(repo, 100)
        repo.write("broadcasts/news.yaml", NEWS)
        repo.commit_all("news")
        result = repo.cli("apply", "--yes")
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
