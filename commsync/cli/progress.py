"""What apply shows while it runs: one line per action, and delivery progress."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import click

from commsync.apply.executor import ActionResult
from commsync.plan.model import Action, ObjectKind, Verb

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

_BAR_STEP = 100  # messages between two updates of the bar (it redraws ten times a second)


class ConsoleListener:
    """A rich progress bar on a terminal; otherwise one line per 1,000 messages."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self.lock = threading.Lock()
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        self.last = 0

    def action_started(self, action: Action) -> None:
        if action.kind != ObjectKind.EMAIL or action.action not in (Verb.SEND, Verb.RESUME):
            return
        click.echo(f"  {action.address}: sending…")
        self.last = 0
        if self.tty:  # rich is imported only for a bar on a terminal
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("    "), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
            )
            self.bar.start()

    def progress(self, done: int, total: int) -> None:
        with self.lock:
            if self.bar is not None:
                if self.task is None:
                    self.task = self.bar.add_task("send", total=total)
                elif done - self.last < _BAR_STEP and done < total:
                    return
                self.bar.update(self.task, completed=done, total=total)
            elif done // 1000 > self.last // 1000:
                click.echo(f"    {done:,} of {total:,} messages")
            self.last = done

    def action_finished(self, result: ActionResult) -> None:
        with self.lock:
            if self.bar is not None:
                self.bar.stop()
                self.bar, self.task = None, None
        mark = "✓" if result.ok else "✗"
        click.echo(f"  {mark} {result.address}: {result.detail}")
