"""Running hostile inputs against the installed `commsync`, one scratch copy of the demo each.

Each case changes a copy of the demo repository (applied once, so the store and the outbox hold
data), runs its commands as subprocesses of the real entry point, and records for each: exit
status, output, peak memory (`ru_maxrss`), whether it ran out of time — and whether the store's
data or the outbox changed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import dump_store

TIMEOUT = 60.0  # generous: a hang fails, a slow machine does not
MAX_RSS_MB = 512
EXE = shutil.which("commsync", path=str(Path(sys.executable).parent)) or "commsync"
APPLY = ("apply", "--yes", "--allow-dirty")
FILES = (("validate",), APPLY)


@dataclass(frozen=True)
class Case:
    """One hostile input. `expect` must match a line of the output (stdout and stderr)."""

    name: str
    expect: str
    commands: tuple[tuple[str, ...], ...] = FILES
    files: Mapping[str, str | bytes] = field(default_factory=dict)
    settings: str = ""  # appended to commsync.yaml
    links: Mapping[str, str] = field(
        default_factory=dict
    )  # link path -> target ({root}, {outside})
    fifos: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: bytes | None = None
    commit: bool = False  # commit the changes first (for --ref)
    exit: int = 1
    setup: Callable[[Path, Path], None] | None = None  # (repository, a directory outside it)
    forbidden: tuple[str, ...] = ()  # strings that must not appear in any output (secrets)


@dataclass
class Run:
    args: tuple[str, ...]
    code: int
    output: str
    rss_mb: float
    seconds: float
    timed_out: bool


@dataclass
class Result:
    runs: list[Run]
    store_changed: bool
    outbox_changed: bool


def _run(root: Path, args: tuple[str, ...], env: Mapping[str, str], stdin: bytes | None) -> Run:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            [EXE, "-C", str(root), *args],
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env={**os.environ, "NO_COLOR": "1", **env},
        )
        timer = threading.Timer(TIMEOUT, proc.kill)
        timer.start()
        try:
            if stdin is not None and proc.stdin is not None:
                with contextlib.suppress(BrokenPipeError):  # it stopped reading: a limit
                    proc.stdin.write(stdin)
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        text = out.read().decode("utf-8", "replace") + err.read().decode("utf-8", "replace")
    return Run(args, proc.returncode, text, usage.ru_maxrss / 1024, seconds, seconds >= TIMEOUT)


def _outbox(root: Path) -> list[tuple[str, int]]:
    box = root / ".commsync" / "outbox"
    if not box.exists():
        return []
    return sorted(
        (str(p.relative_to(box)), p.stat().st_size) for p in box.rglob("*") if p.is_file()
    )


def _prepare(case: Case, root: Path, outside: Path) -> None:
    if case.settings:
        with (root / "commsync.yaml").open("a", encoding="utf-8") as settings:
            settings.write(case.settings)
    for rel, content in case.files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    for rel, target in case.links.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target.format(root=root, outside=outside), path)
    for rel in case.fifos:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(root / rel)
    if case.setup is not None:
        case.setup(root, outside)
    if case.commit:
        subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
        subprocess.run(
            ["git", "-C", str(root), "commit", "-q", "--no-verify", "-m", case.name], check=True
        )


def run_case(case: Case, template: Path, work: Path) -> Result:
    """The case on its own copy of the demo repository."""
    root, outside = work / "repo", work / "outside"
    shutil.copytree(template, root, symlinks=True)
    outside.mkdir()
    store = f"sqlite:///{root / '.commsync' / 'store.db'}"
    before, box = dump_store(store), _outbox(root)
    _prepare(case, root, outside)
    runs = [_run(root, args, case.env, case.stdin) for args in case.commands]
    return Result(runs, dump_store(store) != before, _outbox(root) != box)


def problems(case: Case, result: Result) -> list[str]:
    """What the case's runs did wrong: an empty list when it was refused as it should be."""
    out = []
    for run in result.runs:
        where = f"commsync {' '.join(run.args)}"
        if run.timed_out:
            out.append(f"{where}: still running after {TIMEOUT:.0f} s")
        if run.code != case.exit:
            out.append(f"{where}: exit {run.code}, not {case.exit}: {run.output[-600:]}")
        if run.rss_mb > MAX_RSS_MB:
            out.append(f"{where}: peak memory {run.rss_mb:.0f} MB")
        if "Traceback" in run.output or "internal error" in run.output:
            out.append(f"{where}: an internal error: {run.output[-1200:]}")
        if not any(re.search(case.expect, line) for line in run.output.splitlines()):
            out.append(f"{where}: no line matches {case.expect!r}: {run.output[-600:]}")
        for secret in case.forbidden:
            if secret in run.output:
                out.append(f"{where}: the output shows {secret!r}")
    if result.store_changed:
        out.append("the store's data changed")
    if result.outbox_changed:
        out.append("the outbox changed")
    return out
