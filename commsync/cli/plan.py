"""`commsync plan`."""

from __future__ import annotations

from pathlib import Path

import click

from commsync.cli.common import (
    REF_OPTION,
    echo_diagnostics,
    format_option,
    options,
    service,
    use_color,
)
from commsync.errors import EXIT_CHANGES, EXIT_OK


@click.command("plan")
@REF_OPTION
@format_option(
    "text",
    "json",
    "markdown",
    help="text for terminals, json for tools, markdown for a pull-request comment.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also save the plan (JSON, no personal data) for `commsync apply FILE`.",
)
@click.option(
    "--detailed-exitcode", is_flag=True, help="Exit 2 when the plan has changes, 0 when none."
)
@click.option(
    "--changed-since",
    metavar="REF",
    help="text/markdown: details only for files changed since REF (e.g. the pull request's base); the summary covers everything.",
)
@click.pass_context
def plan_command(
    ctx: click.Context,
    ref: str | None,
    fmt: str,
    out: Path | None,
    detailed_exitcode: bool,
    changed_since: str | None,
) -> int:
    """Show what apply would change: notices, email sends, system emails, audiences.

    \b
    Examples:
      commsync plan
      commsync plan --format markdown > plan.md
      commsync plan --ref origin/main --out plan.json --detailed-exitcode
      commsync plan --ref HEAD --format markdown --changed-since origin/main
    """
    target = options(ctx).path(out) if out is not None else None
    with service(ctx) as s:
        result = s.plan(ref=ref, changed_since=changed_since, out=target)
    echo_diagnostics(result.warnings)
    plan, changed, since = result.plan, result.changed, changed_since or ""
    if fmt == "json":  # each renderer imported only when used: rich costs 25 ms of start-up
        from commsync.plan.codec import dumps

        click.echo(dumps(plan), nl=False)
    elif fmt == "markdown":
        from commsync.plan.render_markdown import render_markdown

        click.echo(render_markdown(plan, changed=changed, since=since), nl=False)
    else:
        from commsync.plan.render_text import render_text

        click.echo(render_text(plan, color=use_color(), changed=changed, since=since), nl=False)
    if out is not None:
        click.echo(f"saved the plan to {out}", err=True)
    return EXIT_CHANGES if detailed_exitcode and plan.has_changes else EXIT_OK
