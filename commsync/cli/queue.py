"""`commsync queue` and `commsync queue cancel`."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from commsync.cli.common import broadcasts_line, format_option, queue_line, service, table
from commsync.errors import EXIT_OK, CommsyncError

if TYPE_CHECKING:
    from commsync.api.service import QueueListing


def _when(at: datetime | None) -> str:
    """In UTC, as every time the command line prints."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if at is not None else "now"


def _broadcasts(listing: QueueListing) -> list[str]:
    if not listing.broadcasts:
        return []
    rows = [
        (
            b.id,
            b.subject if len(b.subject) <= 40 else b.subject[:39] + "…",
            b.status,
            _when(b.send_at),
            f"{b.left:,} of {b.recipients:,}" if b.status == "sending" else "at send time",
            b.why(listing.now),
        )
        for b in listing.broadcasts
    ]
    header = ("BROADCAST", "SUBJECT", "STATUS", "SEND AT", "RECIPIENTS LEFT", "WAITING FOR")
    return ["", "email broadcasts:", *table(header, rows).splitlines()]


def _text(listing: QueueListing) -> str:
    q = listing.state
    lines = [f"queue: {queue_line(q.due, q.waiting, q.next_due, listing.now)}"]
    if (broadcasts := broadcasts_line(q, listing.now)) is not None:
        lines.append(f"broadcasts: {broadcasts}")
    lines += _broadcasts(listing)
    if listing.items:
        rows = [
            (
                item.id,
                item.email,
                item.recipient,
                item.due_at.strftime("%Y-%m-%d %H:%M"),
                item.event_key or "-",
                item.why(listing.now),
            )
            for item in listing.items
        ]
        header = ("ID", "EMAIL", "TO", "DUE", "EVENT KEY", "WAITING FOR")
        lines += ["", *table(header, rows).splitlines()]
        shown, total = len(listing.items), q.due + q.waiting
        if shown < total:
            lines.append(f"(the first {shown:,} of {total:,}; --limit N shows more)")
    return "\n".join(lines) + "\n"


def _json(listing: QueueListing) -> str:
    q = listing.state
    document = {
        "format_version": 1,
        "due": q.due,
        "waiting": q.waiting,
        "next_due": q.next_due.isoformat() if q.next_due else None,
        "broadcasts": [
            {
                "id": b.id,
                "subject": b.subject,
                "status": b.status,
                "send_at": b.send_at.isoformat() if b.send_at else None,
                "recipients": b.recipients,
                "left": b.left,
                "by_workers": b.by_workers,
                "waiting_for": b.why(listing.now),
            }
            for b in listing.broadcasts
        ],
        "messages": [
            {
                "id": item.id,
                "email": item.email,
                "to": item.recipient,
                "due_at": item.due_at.isoformat(),
                "event": item.event,
                "event_key": item.event_key,
                "attempts": item.attempts,
                "last_error": item.last_error,
                "waiting_for": item.why(listing.now),
            }
            for item in listing.items
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


@click.group("queue", invoke_without_command=True)
@format_option("text", "json", help="text: a table; json: a document.")
@click.option(
    "--limit",
    type=click.IntRange(1, 100_000),
    default=100,
    show_default=True,
    help="Show at most this many messages, the soonest due first.",
)
@click.pass_context
def queue_group(ctx: click.Context, fmt: str, limit: int) -> int | None:
    """What waits to be sent: email broadcasts scheduled or still being sent, and system-email
    messages queued by events — due now, waiting for their email's delay, or for a retry —
    soonest due first.

    \b
    Examples:
      commsync queue
      commsync queue --format json --limit 1000
      commsync queue cancel --email payment_received_admin --yes
      commsync queue cancel --broadcast news/black-friday --yes
    """
    if ctx.invoked_subcommand is not None:
        return None
    with service(ctx) as s:
        listing = s.queue(limit)
    click.echo(_json(listing) if fmt == "json" else _text(listing), nl=False)
    return EXIT_OK


@queue_group.command("cancel")
@click.argument("ids", nargs=-1, type=click.IntRange(min=1), metavar="[ID]...")
@click.option("--email", "email", metavar="SLUG", help="Only messages of this system email.")
@click.option(
    "--event", "event_key", metavar="KEY", help="Only messages queued by the event with this key."
)
@click.option(
    "--broadcast",
    metavar="ID",
    help="The emergency brake: stop this email broadcast, scheduled or being sent, for good.",
)
@click.option(
    "--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal)."
)
@click.pass_context
def cancel_command(
    ctx: click.Context,
    ids: tuple[int, ...],
    email: str | None,
    event_key: str | None,
    broadcast: str | None,
    yes: bool,
) -> int:
    """Cancel queued messages: those with these IDs (from `commsync queue`), of one system
    email (--email), or queued by one event (--event); given together, a message must match
    each. A cancelled message is never sent and stays in the ledger as `cancelled`; messages
    already being sent finish.

    --broadcast ID stops one email broadcast: a scheduled one never starts; of one being sent,
    every recipient not yet sent to is cancelled. It stays `cancelled`: plan says so, and no
    apply or worker sends it again.
    """
    if not ids and email is None and event_key is None and broadcast is None:
        raise click.UsageError(
            "say what to cancel: message IDs, --email SLUG, --event KEY or --broadcast ID"
        )
    if not yes:
        if not sys.stdin.isatty():
            raise CommsyncError("queue cancel takes messages out of the queue; pass --yes")
        question = (
            f"Stop the email broadcast {broadcast} for good? Recipients not yet sent to will never get it"
            if broadcast is not None
            else "Cancel the queued messages that match? They will never be sent"
        )
        click.confirm(question, abort=True)
    with service(ctx) as s:
        done = s.cancel_queued(ids, email, event_key, broadcast)
    if done.broadcast is not None:
        b = done.broadcast
        if b.status == "scheduled":
            click.echo(f"cancelled the scheduled broadcast {broadcast}: it will not be sent")
        else:
            click.echo(
                f"stopped the broadcast {broadcast}: {b.cancelled:,} recipients will not get it"
                f" ({b.sent:,} already sent to; any being sent now finish)"
            )
    else:
        n = done.messages
        click.echo(f"cancelled {n} queued message{'s' if n != 1 else ''}")
    return EXIT_OK
