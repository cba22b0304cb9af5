"""`commsync suppressions list|add|remove|import`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from commsync.cli.common import format_option, options, service, table

REASONS = ("unsubscribe", "hard_bounce", "complaint", "manual")


@click.group("suppressions")
def suppressions_group() -> None:
    """The addresses commsync does not email: unsubscribes (recorded by themselves when the
    link or one-click is used), and what you record here — unsubscribe requests that arrived by
    mail, hard bounces, complaints. `marketing` keeps an address out of broadcasts; `all` out of
    every email (the default for hard_bounce). Plans count suppressed recipients, and nothing is
    ever sent to them.

    \b
    Examples:
      commsync suppressions add ada@example.com --reason unsubscribe
      commsync suppressions import bounces.csv
      commsync suppressions list
      commsync suppressions remove ada@example.com
    """


@suppressions_group.command("list")
@format_option("text", "json", help="text: a table; json: a document.")
@click.option(
    "--limit",
    type=click.IntRange(1, 1_000_000),
    default=100,
    show_default=True,
    help="Show at most this many, the newest first.",
)
@click.pass_context
def list_command(ctx: click.Context, fmt: str, limit: int) -> int:
    """The suppressed addresses, the newest first: address, scope, reason, source, since when."""
    with service(ctx) as s:
        listing = s.suppressions(limit)
    if fmt == "json":
        document = {
            "format_version": 1,
            "total": listing.total,
            "suppressions": [
                {
                    "address": r.address,
                    "scope": r.scope,
                    "reason": r.reason,
                    "source": r.source,
                    "since": r.created_at.isoformat(),
                }
                for r in listing.rows
            ],
        }
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return 0
    if not listing.rows:
        click.echo("no suppressed addresses")
        return 0
    rows = [
        (r.address, r.scope, r.reason, r.source or "-", r.created_at.strftime("%Y-%m-%d %H:%M"))
        for r in listing.rows
    ]
    click.echo(table(("ADDRESS", "SCOPE", "REASON", "SOURCE", "SINCE"), rows), nl=False)
    if len(listing.rows) < listing.total:
        click.echo(f"(the newest {len(listing.rows):,} of {listing.total:,}; --limit N shows more)")
    return 0


def _said(added: int, strengthened: int, unchanged: int) -> str:
    parts = [f"{added} added"]
    if strengthened:
        parts.append(f"{strengthened} now kept from every email")
    if unchanged:
        parts.append(f"{unchanged} already suppressed")
    return "suppressions: " + ", ".join(parts)


@suppressions_group.command("add")
@click.argument("addresses", nargs=-1, metavar="ADDRESS...")
@click.option(
    "--reason", type=click.Choice(REASONS), default="unsubscribe", show_default=True, help="Why."
)
@click.option(
    "--scope",
    type=click.Choice(("marketing", "all")),
    help="marketing: no broadcasts; all: no email at all. Default: all for hard_bounce, else marketing.",
)
@click.pass_context
def add_command(
    ctx: click.Context, addresses: tuple[str, ...], reason: str, scope: str | None
) -> int:
    """Suppress ADDRESS… (all of them, or none when one is not an address)."""
    with service(ctx) as s:
        done = s.suppress(addresses, reason, scope)
    click.echo(_said(done.added, done.strengthened, done.unchanged))
    return 0


@suppressions_group.command("remove")
@click.argument("addresses", nargs=-1, metavar="ADDRESS...")
@click.pass_context
def remove_command(ctx: click.Context, addresses: tuple[str, ...]) -> int:
    """ADDRESS… get email again (all of them, or none when one is not suppressed)."""
    with service(ctx) as s:
        removed = s.unsuppress(addresses)
    click.echo(f"suppressions: {removed} removed")
    return 0


@suppressions_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def import_command(ctx: click.Context, file: Path) -> int:
    """Suppress the addresses of a CSV file with a header row (address[,reason][,scope]) or
    JSONL (.jsonl). Every bad row is reported as FILE:line and then nothing is recorded."""
    with service(ctx) as s:
        done = s.import_suppressions(options(ctx).path(file), str(file))
    click.echo(_said(done.added, done.strengthened, done.unchanged))
    return 0
