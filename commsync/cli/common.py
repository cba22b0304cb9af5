"""What every command shares: the global options, the one service per run, the `--format` and
`--ref` options, diagnostics on stderr, and colour only on a terminal.

Imported by every command module, so it stays cheap: the service (and with it SQLAlchemy,
Jinja2, …) is imported only when a command runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from commsync.api.project import Project
from commsync.diagnostics import Diagnostic

if TYPE_CHECKING:
    from commsync.api.service import Service
    from commsync.model import QueueState

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class GlobalOptions:
    root: Path
    store: str | None
    debug: bool
    log_level: str | None = None  # the global --log-level, when it was given

    def project(self) -> Project:
        return Project(self.root, self.store, dict(os.environ))

    def path(self, given: Path) -> Path:
        """A path argument, relative to -C DIR like every other path (as `git -C` does)."""
        return given if given.is_absolute() else self.root / given


def options(ctx: click.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    assert isinstance(obj, GlobalOptions)
    return obj


@contextmanager
def service(ctx: click.Context) -> Iterator[Service]:
    """The run's service, closed when the command ends."""
    from commsync.api.service import Service

    with Service(options(ctx).project()) as opened:
        yield opened


def echo_diagnostics(diagnostics: Iterable[Diagnostic]) -> None:
    for d in diagnostics:
        click.echo(d.render(), err=True)


def use_color() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def format_option(*choices: str, help: str) -> Callable[[F], F]:
    """`--format`, the first choice being the default; the value arrives as `fmt`."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=choices[0],
        show_default=True,
        help=help,
    )


REF_OPTION = click.option(
    "--ref",
    metavar="REF",
    help="Read the repository at this git commit, branch or tag instead of the working tree.",
)


def due_in(when: datetime, now: datetime) -> str:
    """`45s`, `14m`, `1h 59m`, `3d 4h`: how long until `when` (`now` if it has passed)."""
    seconds = max(0, int((when - now).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes = (seconds + 59) // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def queue_line(due: int, waiting: int, next_due: datetime | None, now: datetime) -> str:
    """`0 due, 12 waiting (next in 14m)`, or `empty`."""
    if not due and not waiting:
        return "empty"
    later = f" (next in {due_in(next_due, now)})" if waiting and next_due is not None else ""
    return f"{due} due, {waiting} waiting{later}"


def broadcasts_line(queue: QueueState, now: datetime) -> str | None:
    """`1 scheduled (next in 3d), 1 being sent (11,412 recipients left)`, or None."""
    parts = []
    if queue.scheduled:
        at = queue.next_send_at
        when = (
            "" if at is None else f" (next {'due now' if at <= now else 'in ' + due_in(at, now)})"
        )
        parts.append(f"{queue.scheduled} scheduled{when}")
    if queue.sending:
        parts.append(f"{queue.sending} being sent ({queue.recipients_left:,} recipients left)")
    return ", ".join(parts) or None


def table(header: Iterable[str], rows: Iterable[Iterable[object]], indent: int = 0) -> str:
    """A plain table: columns left-aligned, two spaces apart (rich, without borders)."""
    from rich.table import Table

    from commsync.plan.render_text import to_string

    grid = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 2, 0, 0), header_style="")
    for name in header:
        grid.add_column(name, no_wrap=True, overflow="ignore")
    for row in rows:
        grid.add_row(*(str(cell) for cell in row))
    lines = to_string([grid], color=False).splitlines()
    return "".join(" " * indent + line.rstrip() + "\n" for line in lines)
