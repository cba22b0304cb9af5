"""`commsync init`."""

from __future__ import annotations

from pathlib import Path

import click

from commsync.cli.common import options, service


@click.command("init")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--demo",
    is_flag=True,
    help="Create the demo repository and seed its store with demo customers.",
)
@click.pass_context
def init_command(ctx: click.Context, directory: Path | None, demo: bool) -> int:
    """Create a commsync repository in DIRECTORY (default: the current one).

    Writes commsync.yaml, example files and a .gitignore for .commsync/, then runs
    `git init` and makes the first commit when DIRECTORY is not in a git repository yet.

    \b
    Examples:
      commsync init comms
      commsync init --demo demo && commsync -C demo plan
    """
    root = (options(ctx).root / directory) if directory else options(ctx).root
    with service(ctx) as s:
        report = s.init_project(root.resolve(), demo=demo)
    result = report.result
    click.echo(f"created {len(result.files)} files in {result.root}")
    for name in result.files:
        click.echo(f"  {name}")
    click.echo(result.git_note)
    for kind, counts in report.imported:
        click.echo(f"seeded the store: {counts.inserted} {kind}")
    where = "" if directory is None else f" -C {directory}"
    click.echo(f"next: commsync{where} plan")
    return 0
