"""`commsync validate`."""

from __future__ import annotations

import click

from commsync import diagnostics
from commsync.cli.common import REF_OPTION, format_option, service
from commsync.errors import EXIT_ERROR, EXIT_OK


@click.command("validate")
@REF_OPTION
@format_option(
    "text",
    "json",
    "github",
    help="text: path:line:col lines; json: a document; github: workflow annotations.",
)
@click.option(
    "--no-store",
    is_flag=True,
    help="Skip the checks that need the store (customer and product refs).",
)
@click.pass_context
def validate_command(ctx: click.Context, ref: str | None, fmt: str, no_store: bool) -> int:
    """Check every file of the repository and report every problem at path:line:col.

    \b
    Example:
      commsync validate
      commsync validate --ref origin/main --format github
    """
    with service(ctx) as s:
        report = s.validate(ref=ref, use_store=not no_store, git_paths=fmt == "github")
    found = list(report.diagnostics)
    if fmt == "json":
        click.echo(diagnostics.render_json(found), nl=False)
    elif fmt == "github":
        click.echo(diagnostics.render_github(found, report.path_prefix), nl=False)
    else:
        click.echo(diagnostics.render_text(found), nl=False)
        errors = sum(1 for d in found if d.severity == "error")
        store = "" if report.store_checked else " (store checks skipped)"
        if errors:
            click.echo(f"{errors} error{'s' if errors != 1 else ''}{store}", err=True)
        else:
            click.echo(
                f"ok: {report.broadcasts} broadcasts and {report.emails} system emails are valid{store}"
            )
    return EXIT_OK if report.ok else EXIT_ERROR
