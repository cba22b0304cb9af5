"""`commsync status`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from commsync.cli.common import broadcasts_line, format_option, queue_line, service, table

if TYPE_CHECKING:
    from commsync.api.service import JournalEntry, StatusReport
    from commsync.model import JsonValue, Provenance, Waiting


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def _from(p: Provenance) -> str:
    commit = (p.commit or "")[:12] or "-"
    return f"{commit} by {p.author}" if p.author else commit


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    return table(header, rows, indent=2).splitlines()


def _text(report: StatusReport) -> str:
    lines = ["Email broadcasts"]
    rows: list[Sequence[object]] = []
    for b in report.emails:
        p = report.progress(b)
        at = b.spec.send_at
        rows.append(
            (
                b.id,
                f"{b.status} for {_when(at.astimezone(UTC))}"
                if b.status == "scheduled" and at
                else b.status,
                p.total,
                p.sent,
                p.failed,
                p.suppressed,
                p.uncertain,
                p.queued,
                _from(b.provenance),
            )
        )
    header = (
        "ID",
        "STATUS",
        "RECIPIENTS",
        "SENT",
        "FAILED",
        "SUPPRESSED",
        "UNCERTAIN",
        "QUEUED",
        "APPLIED FROM",
    )
    lines += _table(header, rows) if rows else ["  none yet"]
    lines += ["", "Notices"]
    rows = [
        (b.id, b.status, b.spec.message_type, n, _from(b.provenance)) for b, n in report.notices
    ]
    lines += (
        _table(("ID", "STATUS", "TYPE", "DISMISSED", "APPLIED FROM"), rows)
        if rows
        else ["  none yet"]
    )
    lines += ["", "System emails"]
    rows = [
        (
            e.slug,
            "yes" if e.fields.active else "no",
            ",".join(e.overrides) or "-",
            e.stats.sent,
            e.stats.failed,
            e.stats.cancelled,
            _waiting(report, e.slug).count,
            _when(_waiting(report, e.slug).next_due),
            _when(e.stats.last_sent_at),
            _from(e.provenance),
        )
        for e in report.system_emails
    ]
    header2 = (
        "SLUG",
        "ACTIVE",
        "CUSTOMISED",
        "SENT",
        "FAILED",
        "CANCELLED",
        "QUEUED",
        "NEXT DUE",
        "LAST SENT",
        "APPLIED FROM",
    )
    lines += _table(header2, rows) if rows else ["  none installed"]
    q = report.queue
    now = datetime.now(UTC)
    lines += ["", f"Queue: {queue_line(q.due, q.waiting, q.next_due, now)}"]
    if (broadcasts := broadcasts_line(q, now)) is not None:
        lines.append(f"Broadcasts: {broadcasts}")
    lines += ["", "Recent applies"]
    rows = [
        (_when(a.started_at), a.status, (a.commit or "-")[:12], a.author or "-")
        for a in report.applies
    ]
    lines += _table(("STARTED", "RESULT", "COMMIT", "AUTHOR"), rows) if rows else ["  none yet"]
    seen = report.worker_seen_at
    lines += ["", f"Delivery workers: last seen {_when(seen) if seen else 'never'}"]
    lines += ["", f"Lock: {report.lock.describe() if report.lock else 'free'}"]
    if report.warnings:
        lines += ["", "Warnings", *(f"  ! {w}" for w in report.warnings)]
    return "\n".join(lines) + "\n"


def _apply_json(a: JournalEntry) -> JsonValue:
    return {
        "started_at": a.started_at.isoformat(),
        "finished_at": a.finished_at.isoformat() if a.finished_at else None,
        "status": a.status,
        "commit": a.commit,
        "author": a.author,
        "host": a.host,
        "plan_id": a.plan_id,
    }


def _provenance_json(p: Provenance) -> JsonValue:
    return {
        "path": p.path,
        "commit": p.commit,
        "author": p.author,
        "applied_at": p.applied_at.isoformat() if p.applied_at else None,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _waiting(report: StatusReport, slug: str) -> Waiting:
    from commsync.model import Waiting  # here: the model's package costs `--help` 50 ms

    return report.queue.by_email.get(slug) or Waiting()


def _json(report: StatusReport) -> str:
    emails = []
    for b in report.emails:
        p = report.progress(b)
        counts = {
            "recipients": p.total,
            "sent": p.sent,
            "failed": p.failed,
            "suppressed": p.suppressed,
            "uncertain": p.uncertain,
            "queued": p.queued,
            "cancelled": p.cancelled,
        }
        emails.append(
            {
                "id": b.id,
                "status": b.status,
                "send_at": _iso(b.spec.send_at),
                **counts,
                "applied": _provenance_json(b.provenance),
            }
        )
    document = {
        "format_version": 1,
        "emails": emails,
        "notices": [
            {
                "id": b.id,
                "status": b.status,
                "message_type": b.spec.message_type,
                "dismissals": n,
                "applied": _provenance_json(b.provenance),
            }
            for b, n in report.notices
        ],
        "system_emails": [
            {
                "slug": e.slug,
                "active": e.fields.active,
                "customised": list(e.overrides),
                "sent": e.stats.sent,
                "failed": e.stats.failed,
                "cancelled": e.stats.cancelled,
                "queued": _waiting(report, e.slug).count,
                "next_due": _iso(_waiting(report, e.slug).next_due),
                "last_sent_at": _iso(e.stats.last_sent_at),
                "applied": _provenance_json(e.provenance),
            }
            for e in report.system_emails
        ],
        "queue": {
            "due": report.queue.due,
            "waiting": report.queue.waiting,
            "next_due": _iso(report.queue.next_due),
            "scheduled_broadcasts": report.queue.scheduled,
            "next_send_at": _iso(report.queue.next_send_at),
            "broadcasts_sending": report.queue.sending,
            "broadcast_recipients_left": report.queue.recipients_left,
        },
        "applies": [_apply_json(a) for a in report.applies],
        "lock": report.lock.describe() if report.lock else None,
        "workers_last_seen": _iso(report.worker_seen_at),
        "warnings": list(report.warnings),
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


@click.command("status")
@format_option("text", "json", help="text: tables; json: a document.")
@click.option(
    "--failed",
    "failed",
    metavar="BROADCAST",
    help="List the recipients of this email broadcast whose delivery failed.",
)
@click.pass_context
def status_command(ctx: click.Context, fmt: str, failed: str | None) -> int:
    """What is live: email sends and their delivery, notices, system emails, recent applies.

    \b
    Examples:
      commsync status
      commsync status --format json
      commsync status --failed news/2026-12-holiday-hours
    """
    if failed is not None:
        with service(ctx) as s:
            rows = s.failed_recipients(failed)
        if fmt == "json":
            click.echo(
                json.dumps(
                    [{"email": r.email, "attempts": r.attempts, "error": r.error} for r in rows],
                    indent=2,
                )
            )
        else:
            for r in rows:
                click.echo(f"{r.email}\t{r.attempts} attempt(s)\t{r.error or ''}")
            click.echo(
                f"{len(rows)} failed recipient(s); `commsync apply --retry-failed` retries them",
                err=True,
            )
        return 0
    with service(ctx) as s:
        report = s.status()
    click.echo(_json(report) if fmt == "json" else _text(report), nl=False)
    return 0
