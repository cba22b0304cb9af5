"""`commsync emails …`: the system email inventory."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from commsync.cli.common import format_option, service, table

if TYPE_CHECKING:
    from commsync.api.inventory import EmailRow, FileEdit


@click.group("emails")
def emails_group() -> None:
    """System emails: registered defaults, installed copies, overrides."""


def _row_json(row: EmailRow) -> dict[str, object]:
    return {
        "slug": row.slug,
        "event": row.event,
        "target": row.target,
        "source": row.source,
        "critical": row.critical,
        "default_version": row.default_version,
        "installed": row.installed,
        "installed_version": row.installed_version,
        "customised": list(row.customised),
        "file": row.file,
        "active": row.active,
        "state": row.state,
        "stats": {
            "sent": row.sent,
            "failed": row.failed,
            "last_sent_at": row.last_sent_at.isoformat() if row.last_sent_at else None,
            "cancelled": row.cancelled,
            "queued": row.queued,
            "next_due": row.next_due.isoformat() if row.next_due else None,
        },
    }


def _table(rows: list[EmailRow]) -> str:
    header = (
        "SLUG",
        "EVENT",
        "TARGET",
        "ACTIVE",
        "STATE",
        "CUSTOMISED",
        "FILE",
        "SENT",
        "FAILED",
        "QUEUED",
        "NEXT DUE",
        "LAST SENT",
    )
    body = [
        (
            r.slug + (" *" if r.critical else ""),
            r.event,
            r.target,
            "-" if r.active is None else ("yes" if r.active else "no"),
            r.state,
            ",".join(r.customised) or "-",
            r.file or "-",
            str(r.sent),
            str(r.failed),
            str(r.queued),
            r.next_due.strftime("%Y-%m-%d %H:%M") if r.next_due else "-",
            r.last_sent_at.strftime("%Y-%m-%d %H:%M") if r.last_sent_at else "-",
        )
        for r in rows
    ]
    return table(header, body) + "* critical: installed without a file under `imports: critical`\n"


@emails_group.command("list")
@format_option("text", "json", help="text: a table; json: a document with every field.")
@click.pass_context
def list_command(ctx: click.Context, fmt: str) -> int:
    """Registered defaults × installed × customised × importable, with stats.

    \b
    Example:
      commsync emails list
      commsync emails list --format json
    """
    with service(ctx) as s:
        rows = s.list_emails()
    if fmt == "json":
        click.echo(
            json.dumps({"format_version": 1, "emails": [_row_json(r) for r in rows]}, indent=2)
        )
    else:
        click.echo(_table(rows), nl=False)
    return 0


def edits_output(edits: list[FileEdit]) -> int:
    if not edits:
        click.echo("nothing to do")
        return 0
    width = max(len(e.path) for e in edits)
    for e in edits:
        click.echo(f"{e.outcome:9} {e.path.ljust(width)}  {e.slug}: {e.detail}")
    if any(e.outcome in ("written", "reset") for e in edits):
        click.echo("Review with `git diff`, then `commsync plan`; commit to carry the change.")
    return 0


def _slugs(slugs: tuple[str, ...], every: bool) -> None:
    if bool(slugs) == every:
        raise click.UsageError("give SLUG… or --all (not both)")


@emails_group.command("import")
@click.argument("slugs", nargs=-1, metavar="SLUG…")
@click.option("--all", "every", is_flag=True, help="Every registered default not installed yet.")
@click.pass_context
def import_command(ctx: click.Context, slugs: tuple[str, ...], every: bool) -> int:
    """Write emails/SLUG.yaml for registered defaults, so apply installs them.

    The file holds only `email: SLUG` under a short comment: the default as it is, ready to
    customise. Existing files are never overwritten. Nothing is applied: the pull request carries
    the new files and `commsync plan` shows `import`.

    \b
    Example:
      commsync emails import payment_received_admin site_published_admin
      commsync emails import --all
    """
    _slugs(slugs, every)
    with service(ctx) as s:
        return edits_output(s.import_emails(slugs, every))


@emails_group.command("reset")
@click.argument("slugs", nargs=-1, metavar="SLUG…")
@click.option("--all", "every", is_flag=True, help="Every email whose file customises it.")
@click.pass_context
def reset_command(ctx: click.Context, slugs: tuple[str, ...], every: bool) -> int:
    """Remove the override keys from the email files, so apply resets them to their defaults.

    Only the customised keys and the comment lines directly above them go; the file's other
    comments, key order and formatting stay as they were. Nothing is applied: `commsync plan`
    then shows `reset`, which keeps the email's stats.

    \b
    Example:
      commsync emails reset payment_received_customer
      commsync emails reset --all
    """
    _slugs(slugs, every)
    with service(ctx) as s:
        return edits_output(s.reset_emails(slugs, every))
