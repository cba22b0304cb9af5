"""A large send's messages built ahead by a second process (delivery/ahead.py), against a real
SMTP server and real stores: every recipient gets their own message once, the sender keeps every
ledger write, and a builder that fails or dies only means the sender builds the rest itself."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import Result

from commsync.delivery import ahead, sources
from commsync.render.message import MessageFactory, RenderError
from tests.helpers import Repo, seed, settings_for
from tests.smtp_server import Recorder, SmtpServer, wait_for

COUNT = 300
NEWS = (
    "kind: email\nsubject: News for {{ customer_first_name }}\ntargets: {all: true}\n"
    "content: Hello {{ customer_first_name }}\n"
)


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many messages each pass's builder handed over (read as the sender closes it), with
    building ahead from 50 queued rows and batches of 50."""
    monkeypatch.setattr(ahead, "AHEAD_AT", 50)
    monkeypatch.setattr(sources, "BATCH", 50)
    counts: list[int] = []
    close = ahead.AheadSource.close

    def counted(self: ahead.AheadSource) -> None:
        if self.alive:
            counts.append(self.handed)
        close(self)

    monkeypatch.setattr(ahead.AheadSource, "close", counted)
    yield counts


def _builders(monkeypatch: pytest.MonkeyPatch, log: Path, die_after: int | None = None) -> None:
    """Record which process built each message (a file: the child's memory is its own); a
    builder other than this process refuses c7 or, with `die_after`, dies after that many
    messages."""
    build = MessageFactory.build
    me = os.getpid()
    built = [0]

    def recorded(self, address, *args, **kwargs):  # type: ignore[no-untyped-def]
        if os.getpid() != me:
            built[0] += 1
            if die_after is not None and built[0] > die_after:
                os._exit(9)  # as a process killed mid-batch
        if die_after is None and address == "c7@example.com" and os.getpid() != me:
            raise RenderError("c7 cannot be built")
        with log.open("a") as f:
            f.write(f"{os.getpid()} {address}\n")
        return build(self, address, *args, **kwargs)

    monkeypatch.setattr(MessageFactory, "build", recorded)


def _send(repo: Repo, server: SmtpServer) -> Result:
    repo.write("commsync.yaml", settings_for(server.url, extra="imports: none\n"))
    seed(repo, COUNT)
    repo.write("broadcasts/news.yaml", NEWS)
    repo.commit_all("news")
    return repo.cli("apply", "--yes")


def _rows(url: str) -> dict[str, tuple[str, str | None]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            found = conn.execute(sa.text("SELECT email, status, last_error FROM deliveries"))
            return {email: (status, error) for email, status, error in found}
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_large_send_is_built_by_a_second_process_and_sent_once_each(
    repo: Repo,
    handed: list[int],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    url = repo.store_url
    if backend == "postgresql":
        url = str(request.getfixturevalue("pg_url"))
        monkeypatch.setenv("COMMSYNC_STORE", url)
    log = tmp_path / "built.log"
    _builders(monkeypatch, log)
    recorder = Recorder()
    with SmtpServer(recorder) as server:
        result = _send(repo, server)
    assert result.exit_code == 1, result.output  # one message could not be built
    assert "c7@example.com: c7 cannot be built" in result.output
    everyone = {f"c{n}@example.com" for n in range(1, COUNT + 1)}
    received = recorder.by_recipient()
    assert set(received) == everyone - {"c7@example.com"}
    assert set(received.values()) == {1}
    for message in recorder.messages:  # each one built for its own recipient
        (address,) = message.recipients
        n = address.removeprefix("c").split("@")[0]
        parsed = message.parsed()
        assert parsed["To"].addresses[0].addr_spec == address
        assert parsed["Subject"] == f"News for First{n}"
    builders = {line.split()[0] for line in log.read_text().splitlines()}
    assert str(os.getpid()) not in builders  # none was built by the sending process
    assert handed == [COUNT - 1]
    rows = _rows(url)
    assert rows["c7@example.com"] == ("failed", "c7 cannot be built")
    assert {e: s for e, (s, _) in rows.items() if e != "c7@example.com"} == dict.fromkeys(
        everyone - {"c7@example.com"}, "sent"
    )
    # the unsubscribe link of every message resolves: the sender saved the child's tokens
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        saved = dict(conn.execute(sa.text("SELECT token, email_key FROM unsubscribe_tokens")).all())
    engine.dispose()
    for message in recorder.messages:
        link = message.parsed()["List-Unsubscribe"].split(",")[0].strip("<> ")
        assert saved[link.rsplit("/", 1)[-1]] == message.recipients[0]


def test_a_builder_that_dies_leaves_the_rest_to_the_sender(
    repo: Repo, handed: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log = tmp_path / "built.log"
    _builders(monkeypatch, log, die_after=120)  # two batches of 50 handed over, then gone
    recorder = Recorder()
    with SmtpServer(recorder) as server:
        result = _send(repo, server)
    assert result.exit_code == 0, result.output
    assert "the process building messages ahead failed" in result.output  # a warning, no more
    received = recorder.by_recipient()
    assert set(received) == {f"c{n}@example.com" for n in range(1, COUNT + 1)}
    assert set(received.values()) == {1}
    assert handed == [100]
    engine = sa.create_engine(repo.store_url)
    with engine.connect() as conn:
        in_order = list(conn.execute(sa.text("SELECT email FROM deliveries ORDER BY id")).scalars())
        statuses = set(conn.execute(sa.text("SELECT status FROM deliveries")).scalars())
    engine.dispose()
    assert statuses == {"sent"}
    mine = f"{os.getpid()} "
    built_here = [
        line[len(mine) :] for line in log.read_text().splitlines() if line.startswith(mine)
    ]
    assert built_here == in_order[100:]  # from the first row the child had not handed over


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"  # a zombie has ended; only its parent's reaping is left


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_the_builder_ends_with_a_killed_apply(repo: Repo) -> None:
    """`commsync apply` (the real command) killed with SIGKILL mid-send: its builder, left
    behind, ends on its own — it finds its pipes closed — and sends or records nothing."""
    recorder = Recorder(delay=0.002)
    with SmtpServer(recorder) as server:
        repo.write("commsync.yaml", settings_for(server.url, extra="imports: none\n"))
        seed(repo, ahead.AHEAD_AT + 500)
        repo.write("broadcasts/news.yaml", NEWS)
        repo.commit_all("news")
        exe = shutil.which("commsync", path=str(Path(sys.executable).parent))
        assert exe is not None
        proc = subprocess.Popen(
            [exe, "-C", str(repo.root), "apply", "--yes"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: len(recorder.messages) >= 50 or proc.poll() is not None, 120)
            builders = _children(proc.pid)
            assert len(builders) == 1  # the builder, forked for the send
        finally:
            proc.kill()
            proc.wait()
        (builder,) = builders
        wait_for(lambda: not _alive(builder), 30)
        sent = len(recorder.messages)
        time.sleep(0.5)
        assert len(recorder.messages) == sent  # nothing more went out


def test_no_process_to_be_had_means_building_here(
    repo: Repo, handed: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fork refused (a process limit reached: a fault this machine cannot provoke for root,
    so os.fork is replaced) costs a warning, not the send."""

    def refused() -> int:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(ahead.os, "fork", refused)
    pipes_before = _pipes()
    recorder = Recorder()
    with SmtpServer(recorder) as server:
        result = _send(repo, server)
    assert result.exit_code == 0, result.output
    assert "cannot start a process to build messages ahead" in result.output
    assert set(recorder.by_recipient().values()) == {1}
    assert len(recorder.by_recipient()) == COUNT
    assert handed == []
    assert _pipes() <= pipes_before  # the pipes made for the child were closed again


def _pipes() -> set[str]:
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("pipe:"):
                found.add(target)
    return found
