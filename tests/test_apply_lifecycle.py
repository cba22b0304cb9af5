"""Every action through a real apply, and the confirmation question on a real terminal."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from tests.helpers import Repo, seed, settings_for
from tests.smtp_server import SmtpServer

NOTICE = "kind: notice\ntargets: {all: true}\nsubject: {subject}\ncontent: Body\n"


def _notice(subject: str) -> str:
    return NOTICE.replace("{subject}", subject)


def _actions(repo: Repo) -> dict[str, str]:
    return {a["address"]: a["action"] for a in repo.plan_json()["actions"]}


def _apply(repo: Repo) -> str:
    result = repo.cli("apply", "--yes")
    assert result.exit_code == 0, result.output
    return result.stdout


def _sql(repo: Repo, statement: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(repo.store_url)
    with engine.begin() as conn:
        result = conn.execute(sa.text(statement))
        rows = [tuple(r) for r in result] if result.returns_rows else []
    engine.dispose()
    return rows


def test_notices_are_created_updated_restored_and_retracted(repo: Repo) -> None:
    repo.write("commsync.yaml", settings_for("maildir:out", extra="imports: none\n"))
    repo.import_data()
    repo.write("broadcasts/a.yaml", _notice("First"))
    repo.commit_all("a")
    assert "✓ notice.a: created" in _apply(repo)
    repo.write("broadcasts/a.yaml", _notice("Second"))
    repo.commit_all("edit")
    assert "✓ notice.a: updated" in _apply(repo)
    _sql(repo, "UPDATE broadcasts SET spec = REPLACE(spec, 'Second', 'Hacked')")
    (drift,) = repo.plan_json()["actions"]
    assert drift["action"] == "update" and drift["drift"] is True
    _apply(repo)
    assert _sql(repo, "SELECT spec FROM broadcasts WHERE id = 'a'")[0][0].count("Second") == 1
    repo.remove("broadcasts/a.yaml")
    repo.commit_all("remove")
    assert "✓ notice.a: retracted" in _apply(repo)
    assert _sql(repo, "SELECT status FROM broadcasts WHERE id = 'a'") == [("retracted",)]
    assert _actions(repo) == {}


def test_scheduled_sends_wait_and_sent_mail_is_never_resent(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    repo.write("commsync.yaml", settings_for(smtp_server.url, extra="imports: none\n"))
    seed(repo, 4)
    repo.write(
        "broadcasts/later.yaml",
        "kind: email\nsubject: Later\ntargets: {all: true}\ncontent: x\nsend_at: 2099-01-01T00:00:00Z\n",
    )
    repo.write(
        "broadcasts/now.yaml", "kind: email\nsubject: Now\ntargets: {all: true}\ncontent: x\n"
    )
    repo.commit_all("emails")
    _apply(repo)
    assert {m.parsed()["Subject"] for m in smtp_server.recorder.messages} == {"Now"}
    # recorded for the delivery workers: the plan has nothing more to do about it
    assert _sql(repo, "SELECT status FROM broadcasts WHERE id = 'later'") == [("scheduled",)]
    assert _actions(repo) == {}
    repo.write(
        "broadcasts/now.yaml",
        "kind: email\nsubject: Now (edited)\ntargets: {all: true}\ncontent: x\n",
    )
    repo.commit_all("edit a sent email")
    # `later` waits for a delivery worker, and none ever ran here: every plan says so
    warnings = [w["code"] for w in repo.plan_json()["warnings"]]
    assert sorted(warnings) == ["edited_after_send", "no_worker"]
    _apply(repo)
    assert len(smtp_server.recorder.messages) == 4
    repo.remove("broadcasts/now.yaml")
    repo.commit_all("remove a sent email")
    assert sorted(w["code"] for w in repo.plan_json()["warnings"]) == [
        "no_worker",
        "removed_after_send",
    ]
    _apply(repo)
    # acknowledged once, not warned forever
    assert [w["code"] for w in repo.plan_json()["warnings"]] == ["no_worker"]
    assert len(smtp_server.recorder.messages) == 4


def test_system_emails_are_released_then_pruned(repo: Repo) -> None:
    repo.write("commsync.yaml", settings_for("maildir:out", extra="imports: none\n"))
    repo.import_data()
    repo.write("emails/site_published_admin.yaml", "email: site_published_admin\nactive: false\n")
    repo.commit_all("import")
    assert "✓ system_email.site_published_admin: imported" in _apply(repo)
    repo.remove("emails/site_published_admin.yaml")
    repo.commit_all("remove")
    assert _actions(repo) == {"system_email.site_published_admin": "update"}
    _apply(repo)
    assert _sql(repo, "SELECT managed_path FROM system_emails") == [(None,)]
    assert _actions(repo) == {}
    repo.write("emails/site_published_admin.yaml", "email: site_published_admin\n")
    repo.commit_all("manage it again")
    _apply(repo)
    repo.remove("emails/site_published_admin.yaml")
    repo.write("commsync.yaml", settings_for("maildir:out", extra="imports: none\nprune: true\n"))
    repo.commit_all("prune")
    assert _actions(repo) == {"system_email.site_published_admin": "delete"}
    assert "✓ system_email.site_published_admin: deleted" in _apply(repo)
    assert _sql(repo, "SELECT COUNT(*) FROM system_emails") == [(0,)]


def _read_until(fd: int, marker: bytes, timeout: float = 60.0) -> bytes:
    buffer = b""
    deadline = time.monotonic() + timeout
    while marker not in buffer:
        if time.monotonic() > deadline:
            raise AssertionError(f"{marker!r} not seen in {buffer.decode(errors='replace')}")
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            buffer += chunk
    return buffer


def _on_a_terminal(repo: Repo, answer: bytes) -> tuple[int, str]:
    exe = shutil.which("commsync", path=str(Path(sys.executable).parent))
    assert exe
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [exe, "-C", str(repo.root), "apply"],
        stdin=child,
        stdout=child,
        stderr=child,
        env={**os.environ, "TERM": "xterm"},
    )
    os.close(child)
    seen = _read_until(main, b"Only 'yes' will be accepted")
    os.write(main, answer + b"\n")
    rest = b""
    while proc.poll() is None or select.select([main], [], [], 0.1)[0]:
        try:
            rest += os.read(main, 4096)
        except OSError:
            break
    proc.wait()
    os.close(main)
    return proc.returncode, (seen + rest).decode(errors="replace")


def test_apply_asks_on_a_terminal(repo: Repo, smtp_server: SmtpServer) -> None:
    repo.write("commsync.yaml", settings_for(smtp_server.url, extra="imports: none\n"))
    seed(repo, 3)
    repo.write(
        "broadcasts/news.yaml", "kind: email\nsubject: News\ntargets: {all: true}\ncontent: x\n"
    )
    repo.commit_all("news")
    code, output = _on_a_terminal(repo, b"no")
    assert (
        code == 1 and "> email.news" in output and "apply cancelled; nothing was changed" in output
    )
    assert smtp_server.recorder.messages == []
    code, output = _on_a_terminal(repo, b"yes")
    assert code == 0, output
    assert "Apply complete: 1 sent." in output
    assert "━" in output and "3/3" in output  # rich's progress bar, on a terminal only
    assert len(smtp_server.recorder.messages) == 3


def test_apply_a_commit_with_ref_ignores_the_working_tree(repo: Repo) -> None:
    repo.write("commsync.yaml", settings_for("maildir:out", extra="imports: none\n"))
    repo.import_data()
    repo.write("broadcasts/a.yaml", _notice("Committed"))
    sha = repo.commit_all("a")
    repo.write("broadcasts/a.yaml", _notice("Not committed"))
    result = repo.cli("apply", "--ref", "HEAD", "--yes")
    assert result.exit_code == 0, result.output
    spec, commit = _sql(repo, "SELECT spec, \"commit\" FROM broadcasts WHERE id = 'a'")[0]
    assert "Committed" in str(spec) and "Not committed" not in str(spec) and commit == sha
