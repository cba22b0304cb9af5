"""Saved plans, the lock between concurrent applies, and system emails that keep their stats."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import sqlalchemy as sa

from tests.helpers import Repo, news_to_everyone, run_cli, seed, settings_for
from tests.smtp_server import Recorder, SmtpServer, wait_for


def _exe() -> str:
    exe = shutil.which("commsync", path=str(Path(sys.executable).parent))
    assert exe
    return exe


def test_two_concurrent_applies_one_waits_out_and_nothing_is_sent_twice(repo: Repo) -> None:
    recorder = Recorder(delay=0.004)
    with SmtpServer(recorder) as server:
        news_to_everyone(repo, server.url, 600, connections=2)
        first = subprocess.Popen(
            [_exe(), "-C", str(repo.root), "apply", "--yes"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        wait_for(lambda: len(recorder.messages) >= 20)
        second = repo.cli("apply", "--yes")
        assert second.exit_code == 1
        assert "another apply is running: held by" in second.stderr
        assert f"(pid {first.pid})" in second.stderr and "commsync unlock" in second.stderr
        assert first.wait(timeout=120) == 0
        assert set(recorder.by_recipient().values()) == {1} and len(recorder.by_recipient()) == 600
        third = repo.cli("apply", "--yes")
        assert third.exit_code == 0 and "Nothing to do" in third.stdout


def test_unlock_removes_a_lock_left_on_another_host(repo: Repo) -> None:
    repo.import_data()
    engine = sa.create_engine(repo.store_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO apply_lock (name, lock_id, holder, host, pid, started_at) VALUES ('apply', 'abc123', 'ci', 'runner-7', 4242, '2026-11-27 10:00:00')"
            )
        )
    engine.dispose()
    refused = repo.cli("apply", "--yes")
    assert refused.exit_code == 1 and "held by ci on runner-7 (pid 4242)" in refused.stderr
    wrong = repo.cli("unlock", "nope")
    assert (
        wrong.exit_code == 1
        and "no lock 'nope': the lock is held by ci on runner-7" in wrong.stderr
    )
    unlocked = repo.cli("unlock", "abc123")
    assert unlocked.exit_code == 0 and "removed the lock of ci on runner-7" in unlocked.stdout
    assert repo.cli("apply", "--yes").exit_code == 0


def test_a_lock_left_by_a_dead_process_on_this_host_is_taken_over(repo: Repo) -> None:
    from commsync.delivery.transport import hostname

    repo.import_data()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    engine = sa.create_engine(repo.store_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO apply_lock (name, lock_id, holder, host, pid, started_at) VALUES ('apply', 'old', 'me', :h, :p, '2026-11-27 10:00:00')"
            ),
            {"h": hostname(), "p": dead.pid},
        )
    engine.dispose()
    assert repo.cli("apply", "--yes").exit_code == 0


def test_a_saved_plan_applies_once_and_a_stale_one_is_refused(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    repo.write("commsync.yaml", settings_for(smtp_server.url, extra="imports: none\n"))
    seed(repo, 10)
    repo.write(
        "broadcasts/hello.yaml", "kind: notice\ntargets: {all: true}\nsubject: Hello\ncontent: Hi\n"
    )
    repo.commit_all("hello")
    assert repo.cli("plan", "--out", "one.json").exit_code == 0
    assert repo.cli("plan", "--out", "two.json").exit_code == 0
    applied = repo.cli("apply", "one.json")
    assert applied.exit_code == 0, applied.output
    again = repo.cli("apply", "one.json")
    assert again.exit_code == 1 and "stale plan: it was already applied at" in again.stderr
    stale = repo.cli("apply", "two.json")
    assert (
        stale.exit_code == 1
        and "stale plan: changed since it was made: notice.hello" in stale.stderr
    )
    repo.write(
        "broadcasts/hello.yaml",
        "kind: notice\ntargets: {all: true}\nsubject: Hello again\ncontent: Hi\n",
    )
    repo.commit_all("edit")
    assert repo.cli("plan", "--out", "three.json").exit_code == 0
    engine = sa.create_engine(repo.store_url)
    with engine.begin() as conn:  # someone edits the notice in the store meanwhile
        conn.execute(sa.text("UPDATE broadcasts SET status = 'retracted' WHERE id = 'hello'"))
    engine.dispose()
    refused = repo.cli("apply", "three.json")
    assert refused.exit_code == 1 and "notice.hello" in refused.stderr
    tampered = repo.root / "bad.json"
    tampered.write_text('{"plan_id": "x"}')
    assert "is not a commsync plan" in repo.cli("apply", "bad.json").stderr
    other = run_cli("-C", str(repo.root), "apply", "one.json", "--ref", "HEAD")
    assert other.exit_code == 64


CATALOG_EVENT = """\
event: ticket_opened
description: A support ticket was opened.
payload_groups: [customer]
"""


def _default(version: int, subject: str) -> str:
    return textwrap.dedent(
        f"""\
        email: ticket_opened_customer
        event: ticket_opened
        target: customer
        version: {version}
        subject: "{subject}"
        content: "Hi {{{{ customer_name }}}}, we got your ticket."
        """
    )


def _stats(repo: Repo) -> tuple[int, int, int | None, str]:
    engine = sa.create_engine(repo.store_url)
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT sent_count, failed_count, base_version, fields FROM system_emails WHERE slug = 'ticket_opened_customer'"
            )
        ).one()
    engine.dispose()
    return row[0], row[1], row[2], row[3]


def test_reset_keeps_stats_and_upgrade_adopts_the_newer_default(repo: Repo) -> None:
    repo.write(
        "commsync.yaml", settings_for("maildir:out", extra="imports: none\ncatalogs: [support]\n")
    )
    repo.write("support/events/ticket_opened.yaml", CATALOG_EVENT)
    repo.write("support/emails/ticket_opened_customer.yaml", _default(1, "Ticket received"))
    repo.write(
        "emails/ticket_opened_customer.yaml",
        "email: ticket_opened_customer\nsubject: Custom subject\n",
    )
    repo.commit_all("customised")
    repo.import_data()
    assert repo.cli("apply", "--yes").exit_code == 0
    engine = sa.create_engine(repo.store_url)
    with engine.begin() as conn:  # delivery has been counting
        conn.execute(sa.text("UPDATE system_emails SET sent_count = 41, failed_count = 2"))
    engine.dispose()
    repo.write("emails/ticket_opened_customer.yaml", "email: ticket_opened_customer\n")
    repo.commit_all("reset")
    assert [a["action"] for a in repo.plan_json()["actions"]] == ["reset"]
    assert repo.cli("apply", "--yes").exit_code == 0
    sent, failed, version, fields = _stats(repo)
    assert (sent, failed, version) == (41, 2, 1) and "Ticket received" in str(fields)
    repo.write("support/emails/ticket_opened_customer.yaml", _default(2, "We received your ticket"))
    repo.commit_all("new default")
    (upgrade,) = repo.plan_json()["actions"]
    assert (
        upgrade["action"] == "upgrade" and upgrade["reason"] == "default v1 → v2 (not customised)"
    )
    result = repo.cli("apply", "--yes")
    assert "system_email.ticket_opened_customer: upgraded (stats kept)" in result.stdout
    sent, failed, version, fields = _stats(repo)
    assert (sent, failed, version) == (41, 2, 2) and "We received your ticket" in str(fields)
    assert repo.plan_json()["summary"]["changes"] == 0
