"""Helpers shared by the CLI commands."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import click

from commsync.api import Project
from commsync.diagnostics import Diagnostic


@dataclass(frozen=True, slots=True)
class GlobalOptions:
    root: Path
    store: str | None
    debug: bool

    def project(self) -> Project:
        return Project(self.root, self.store, dict(os.environ))

    def path(self, given: Path) -> Path:
        """A path argument, relative to -C DIR like every other path (as `git -C` does)."""
        return given if given.is_absolute() else self.root / given


def options(ctx: click.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    assert isinstance(obj, GlobalOptions)
    return obj


def echo_diagnostics(diagnostics: Iterable[Diagnostic]) -> None:
    for d in diagnostics:
        click.echo(d.render(), err=True)


def use_color() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


REF_OPTION = click.option(
    "--ref",
    metavar="REF",
    help="Read the repository at this git commit, branch or tag instead of the working tree.",
)
