"""`commsync event`, `deliver`, `test-send`, `token` and `serve`."""

from __future__ import annotations

import functools
import json
import os
import signal
import stat
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from commsync import logs
from commsync.cli.common import broadcasts_line, format_option, options, queue_line, service
from commsync.errors import EXIT_ERROR, EXIT_OK, CommsyncError, InvalidInput

if TYPE_CHECKING:
    from commsync.api.service import DeliveryReport
    from commsync.model import EventResult
    from commsync.model.jsontext import PayloadText


def read_payload(source: str, root: Path) -> PayloadText:
    """The payload's bytes, from FILE or from standard input (`-`); the service parses them.

    Never more is read than any payload limit allows.
    """
    # imported here: the model's package costs `--help` and the other commands 50 ms
    from commsync.model.jsontext import MAX_READ, PayloadText

    if source == "-":
        return PayloadText("<stdin>", sys.stdin.buffer.read(MAX_READ + 1))
    path = Path(source) if Path(source).is_absolute() else root / source
    try:
        with path.open("rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise CommsyncError(f"{source}: cannot read: not a regular file")
            return PayloadText(source, handle.read(MAX_READ + 1))
    except OSError as exc:
        raise CommsyncError(f"{source}: cannot read: {exc.strerror or exc}") from exc


def _when(due: datetime, now: datetime) -> str:
    return "now" if due <= now else f"at {due.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _event_text(result: EventResult, key: str | None) -> None:
    now = datetime.now(UTC)
    if result.duplicate:
        click.echo(f"{result.type}: key {key!r} was seen before; nothing new was queued")
    else:
        click.echo(
            f"{result.type}: {len(result.emails)} email(s), {result.messages} message(s) queued"
        )
    for e in result.emails:
        extra = "".join(
            f", {count} {status}"
            for status, count in (("failed", e.failed), ("suppressed", e.suppressed))
            if count
        )
        click.echo(f"  {e.email}: {e.recipients} recipient(s), due {_when(e.due_at, now)}{extra}")
        for reason in e.errors:
            click.echo(f"    failed: {reason}")
    for s in result.skipped:
        click.echo(f"  {s.email}: skipped ({s.reason})")


@click.command("event")
@click.argument("event_type", metavar="TYPE")
@click.option(
    "--data",
    "data",
    required=True,
    metavar="FILE|-",
    help="The payload, a JSON object with the event's keys; `-` reads standard input.",
)
@click.option(
    "--key",
    metavar="KEY",
    help="Idempotency key: firing the same key again queues nothing and shows the first result.",
)
@format_option(
    "text", "json", help="text for people; json: the event's result as the HTTP API returns it."
)
@click.pass_context
def event_command(ctx: click.Context, event_type: str, data: str, key: str | None, fmt: str) -> int:
    """Fire event TYPE: queue every active system email of that event.

    The payload is checked against the event's keys first; a mistyped key, or a key an active
    email uses but the payload lacks, refuses the event and nothing is queued. Emails with a
    `delay` are due later; `commsync deliver` (or `commsync serve`) sends what is due.
    """
    payload = read_payload(data, options(ctx).root)
    try:
        with service(ctx) as s:
            result = s.fire_event(event_type, payload, key)
    except InvalidInput as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        click.echo(f"error: event {event_type} refused; nothing was queued", err=True)
        return EXIT_ERROR
    if fmt == "json":
        click.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
        return EXIT_OK
    _event_text(result, key)
    if result.failed:
        click.echo(
            f"error: {result.failed} message(s) could not be rendered and will not be sent",
            err=True,
        )
        return EXIT_ERROR
    return EXIT_OK


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM and SIGINT ask the worker to stop: in-flight messages finish, the rest stay queued."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            click.echo(f"{signal.Signals(signum).name}: finishing in-flight messages", err=True)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _counts(report: DeliveryReport) -> dict[str, int]:
    return {
        "sent": report.sent,
        "failed": report.failed,
        "suppressed": report.suppressed,
        "uncertain": report.uncertain,
        "cancelled": report.cancelled,
        "to retry later": report.deferred,
    }


def _summary(counts: dict[str, int]) -> str:
    """`3 sent, 0 failed` and whichever other counts are not zero."""
    parts = [f"{counts['sent']} sent", f"{counts['failed']} failed"]
    parts += [f"{n} {what}" for what, n in list(counts.items())[2:] if n]
    return ", ".join(parts)


@click.command("deliver")
@click.option(
    "--once",
    "mode",
    flag_value="once",
    default=True,
    help="Send everything due now, then exit (for cron). The default.",
)
@click.option(
    "--loop",
    "mode",
    flag_value="loop",
    help="Keep running and send messages as they fall due, until SIGTERM or Ctrl-C.",
)
@click.option(
    "--poll",
    type=click.FloatRange(0.05, 3600),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="With --loop: how long to wait when nothing is due.",
)
@click.pass_context
def deliver_command(ctx: click.Context, mode: str, poll: float) -> int:
    """Send the system emails that are due (delayed emails and retries).

    Several workers, on one or several machines, can share a PostgreSQL store: each message is
    claimed by one worker only. On SIGTERM or Ctrl-C, messages being sent finish and the others
    stay queued for the next run.
    """
    last = dict.fromkeys(
        ("sent", "failed", "suppressed", "uncertain", "cancelled", "to retry later"), 0
    )

    def on_round(claimed: int, report: DeliveryReport) -> None:
        now = _counts(report)
        delta = {what: n - last[what] for what, n in now.items()}
        last.update(now)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        click.echo(f"{stamp} {claimed} due: {_summary(delta)}")

    with _stop_on_signals() as stop, service(ctx) as s:
        report = s.deliver(
            loop=mode == "loop",
            stop=stop,
            poll=poll,
            on_round=on_round if mode == "loop" else None,
        )
    for address, reason in report.failures:
        click.echo(f"  failed: {address}: {reason}", err=True)
    click.echo(f"delivered: {_summary(_counts(report))}")
    if report.queue is not None:
        q, now = report.queue, datetime.now(UTC)
        click.echo(f"queue: {queue_line(q.due, q.waiting, q.next_due, now)}")
        if (broadcasts := broadcasts_line(q, now)) is not None:
            click.echo(f"broadcasts: {broadcasts}")
    return EXIT_ERROR if report.failed or report.uncertain else EXIT_OK


@click.command("test-send")
@click.argument("slug")
@click.option("--to", "to", required=True, metavar="ADDR", help="The one address to send to.")
@click.option(
    "--data",
    "data",
    metavar="FILE|-",
    help="Payload keys (JSON) to use instead of the event's mock payload.",
)
@click.pass_context
def test_send_command(ctx: click.Context, slug: str, to: str, data: str | None) -> int:
    """Send system email SLUG once to ADDR, rendered with its event's mock payload.

    The email is taken as the repository's working tree has it, so a change can be tried before
    it is applied. Nothing is recorded in the stats or the ledger.
    """
    payload = read_payload(data, options(ctx).root) if data is not None else None
    with service(ctx) as s:
        where = s.test_send(slug, to, payload)
    click.echo(f"sent {slug} to {to} via {where}")
    return EXIT_OK


@click.command("token")
@click.argument("customer", metavar="CUSTOMER")
@click.option(
    "--ttl",
    default="30d",
    show_default=True,
    metavar="DURATION",
    help="How long the token is valid: 30d, 12h, 90m, 1d12h.",
)
@click.pass_context
def token_command(ctx: click.Context, customer: str, ttl: str) -> int:
    """Issue a token for CUSTOMER's notices feed and dismissals (id, email or username).

    The token is the last line of the output, so `$(commsync token C | tail -n1)` captures it.
    It is signed with the store's key: every `commsync serve` on this store accepts it.
    """
    with service(ctx) as s:
        issued = s.issue_token(customer, ttl)
    click.echo(f"customer: {issued.customer.id} <{issued.customer.email}>")
    click.echo(f"expires: {issued.expires.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
    click.echo(issued.token)
    return EXIT_OK


@click.command("rotate-key")
@click.option(
    "--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal)."
)
@click.pass_context
def rotate_key_command(ctx: click.Context, yes: bool) -> int:
    """Replace the store's signing key: every customer token issued so far stops working.

    Use it when a token may have leaked. Running `commsync serve` processes pick up the new key
    within 10 seconds; dashboards need new tokens from `commsync token`. Unsubscribe links in
    emails already sent keep working.
    """
    if not yes:
        if not sys.stdin.isatty():
            raise CommsyncError(
                "rotate-key invalidates every customer token; pass --yes to confirm"
            )
        click.confirm(
            "Every customer token issued so far stops working. Rotate the key?", abort=True
        )
    with service(ctx) as s:
        s.rotate_key()
    click.echo("signing key rotated: issue new customer tokens with `commsync token`")
    return EXIT_OK


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Server processes (each also runs a delivery worker unless --no-deliver).",
)
@click.option(
    "--deliver/--no-deliver",
    default=True,
    show_default=True,
    help="Run the delivery worker in the background (turn off when `commsync deliver --loop` runs elsewhere).",
)
@click.option(
    "--log-level",
    type=click.Choice(logs.LEVELS),
    default=None,
    help="What serve logs: info (the default) has access lines and every delivery failure; "
    "COMMSYNC_LOG_FORMAT=json for JSON lines. The global --log-level works too.",
)
@click.pass_context
def serve_command(
    ctx: click.Context, host: str, port: int, workers: int, deliver: bool, log_level: str | None
) -> int:
    """Serve the HTTP API: notices feed and dismissals, events, widget, unsubscribe, metrics.

    Admin routes (events, customers, products) need `Authorization: Bearer $COMMSYNC_API_KEY`;
    a customer's feed needs a token from `commsync token`. The OpenAPI document is at
    /openapi.json. SIGTERM stops gracefully: in-flight sends finish, the rest stay queued.
    """
    import uvicorn

    opts = options(ctx)
    log_level = log_level or opts.log_level or "info"
    with service(ctx) as s:
        s.settings()  # fail here, with diagnostics, not inside a worker
    logs.configure(log_level)  # uvicorn is told to keep this configuration (log_config=None)
    from commsync.http.app import SHUTDOWN_GRACE

    run = functools.partial(
        uvicorn.run,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,  # keep commsync's logging configuration
        # access lines are logged at info: above it, uvicorn would still work out each line's
        # client and quoted path only for the logger to drop it (2 % of a kept feed answer)
        access_log=log_level in ("debug", "info"),
        proxy_headers=True,
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE),
    )
    if workers == 1:
        from commsync.http.app import create_app

        run(create_app(opts.project(), deliver=deliver))
    else:
        os.environ["COMMSYNC_SERVE_ROOT"] = str(opts.root)
        os.environ["COMMSYNC_SERVE_DELIVER"] = "1" if deliver else "0"
        os.environ["COMMSYNC_SERVE_LOG_LEVEL"] = log_level
        if opts.store:
            os.environ["COMMSYNC_SERVE_STORE"] = opts.store
        run("commsync.http.app:factory", factory=True, workers=workers)
    return EXIT_OK
