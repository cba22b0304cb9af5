"""Crash safety: `commsync apply` killed with SIGKILL mid-send, then re-run.

Every recipient gets exactly one message, except those reported uncertain (at most
`mail.connections` per kill), which `apply --resend-uncertain` then delivers.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from commsync.store.sql import open_store
from tests.helpers import Repo, seed, settings_for
from tests.smtp_server import Recorder, SmtpServer, wait_for

CONNECTIONS = 3
RECIPIENTS = 5000
KILL_AT = [1, 700, 1900, 3100, 4400]  # messages received when each apply is killed


def _commsync() -> str:
    exe = shutil.which("commsync", path=str(Path(sys.executable).parent))
    assert exe
    return exe


def _count(repo: Repo, status: str) -> set[str]:
    engine = sa.create_engine(repo.store_url)
    with engine.connect() as conn:
        rows = (
            conn.execute(sa.text("SELECT email FROM deliveries WHERE status = :s"), {"s": status})
            .scalars()
            .all()
        )
    engine.dispose()
    return set(rows)


def test_sigkill_at_five_points_loses_nothing_and_sends_nothing_twice(repo: Repo) -> None:
    recorder = Recorder(delay=0.0005)
    with SmtpServer(recorder) as server:
        repo.write(
            "commsync.yaml",
            settings_for(server.url, connections=CONNECTIONS, extra="imports: none\n"),
        )
        seed(repo, RECIPIENTS)
        repo.write(
            "broadcasts/news.yaml",
            "kind: email\nsubject: News\ntargets: {all: true}\ncontent: Hi {{ customer_first_name }}\n",
        )
        repo.commit_all("news")
        env = {**os.environ, "NO_COLOR": "1"}
        command = [_commsync(), "-C", str(repo.root), "apply", "--yes"]
        left_sending = 0
        for kill_at in KILL_AT:
            proc = subprocess.Popen(
                command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            wait_for(
                lambda at=kill_at, p=proc: len(recorder.messages) >= at or p.poll() is not None, 120
            )
            assert proc.poll() is None, "apply finished before it could be killed"
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            # What the next apply does first: the killed apply's send log folded into the
            # ledger, and the rows it left `sending` made uncertain.
            before = len(_count(repo, "uncertain"))
            store = open_store(repo.store_url)
            try:
                store.crashed_to_uncertain()
            finally:
                store.close()
            assert not (repo.root / ".commsync" / "store.db-sendlog").exists()
            assert not _count(repo, "sending")
            sending = len(_count(repo, "uncertain")) - before
            assert sending <= CONNECTIONS, f"{sending} rows left sending by one kill"
            left_sending += sending
        final = subprocess.run(command, env=env, capture_output=True, text=True)
        assert final.returncode == 0, final.stdout + final.stderr
        uncertain = _count(repo, "uncertain")
        assert len(uncertain) == left_sending > 0
        received = recorder.by_recipient()
        everyone = {f"c{i}@example.com" for i in range(1, RECIPIENTS + 1)}
        for address in everyone - uncertain:
            assert received[address] == 1, f"{address} received {received[address]} messages"
        for address in uncertain:
            assert received[address] <= 1

        resent = subprocess.run(
            [*command, "--resend-uncertain"], env=env, capture_output=True, text=True
        )
        assert resent.returncode == 0, resent.stdout + resent.stderr
        assert f"requeued {len(uncertain)} messages" in resent.stdout
        received = recorder.by_recipient()
        assert set(received) == everyone
        assert all(received[a] == 1 for a in everyone - uncertain)
        engine = sa.create_engine(repo.store_url)
        with engine.connect() as conn:
            statuses = dict(
                conn.execute(
                    sa.text("SELECT status, COUNT(*) FROM deliveries GROUP BY status")
                ).all()
            )
            journal = (
                conn.execute(sa.text("SELECT status FROM apply_journal ORDER BY id"))
                .scalars()
                .all()
            )
        engine.dispose()
        assert statuses == {"sent": RECIPIENTS}
        assert journal[: len(KILL_AT)] == ["interrupted"] * len(KILL_AT)
