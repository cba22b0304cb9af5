"""`commsync apply` and `commsync unlock`."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import click

from commsync.cli.common import REF_OPTION, options, service, use_color
from commsync.errors import EXIT_ERROR, EXIT_OK

if TYPE_CHECKING:
    from commsync.apply.executor import ApplyReport
    from commsync.plan.model import Plan

_PAST = {
    "create": "created",
    "update": "updated",
    "retract": "retracted",
    "send": "sent",
    "resume": "resumed",
    "import": "imported",
    "reset": "reset",
    "upgrade": "upgraded",
    "delete": "deleted",
    "reschedule": "rescheduled",
    "unschedule": "unscheduled",
    "missed": "recorded missed",
}


def _warnings(plan: Plan) -> None:
    """The plan's warnings, repeated: with --yes (CI) the apply log is all anyone reads."""
    if not plan.warnings:
        return
    click.echo(f"Warnings ({len(plan.warnings)}):")
    for w in plan.warnings:
        click.echo(f"  ! {w.address}: {w.message}")


def _confirm(plan: Plan) -> bool:
    from commsync.plan.render_text import render_text

    click.echo(render_text(plan, color=use_color()), nl=False)
    answer = click.prompt(
        "\nApply these changes? Only 'yes' will be accepted", default="", show_default=False
    )
    return bool(answer.strip() == "yes")


def _report(report: ApplyReport) -> None:
    if report.recovered_uncertain:
        click.echo(
            f"! {report.recovered_uncertain:,} messages of an interrupted apply may or may not have been delivered "
            "(uncertain); they are not sent again unless you run `commsync apply --resend-uncertain`"
        )
    if report.requeued:
        click.echo(f"requeued {report.requeued:,} messages")
    if report.nothing_to_do:
        click.echo("Nothing to do: the store matches the repository.")
        _warnings(report.plan)
        return
    failed = [r for r in report.results if not r.ok]
    for result in report.results:
        if result.delivery is None:
            continue
        for address, reason in result.delivery.failures[:20]:
            click.echo(f"    failed: {address}: {reason}")
        for address in result.delivery.uncertain_addresses[:20]:
            click.echo(f"    uncertain: {address}")
    verdict = "Apply complete" if not failed else f"Apply finished with {len(failed)} problem(s)"
    done = Counter(r.action for r in report.results if r.ok)
    parts = [f"{n} {_PAST.get(action, action)}" for action, n in sorted(done.items())]
    waiting = [r for r in failed if r.delivery is not None and r.delivery.deferred]
    if waiting:
        parts.append(f"{len(waiting)} send(s) recorded but not all delivered")
    click.echo(f"{verdict}: {', '.join(parts) or 'nothing changed'}.")
    if report.destination and report.messages():
        click.echo(f"{report.messages():,} messages went to {report.destination}")
    for r in waiting:
        assert r.delivery is not None
        click.echo(
            f"  {r.address}: the send is recorded and {r.delivery.deferred:,} recipient(s) wait "
            "in the ledger: run `commsync apply` again once the mail server answers "
            "(nobody gets it twice)"
        )
    if failed:
        click.echo(
            "Not done: "
            + ", ".join(r.address for r in failed)
            + " — see above; `commsync status` shows details."
        )
    _warnings(report.plan)


@click.command("apply")
@click.argument("planfile", required=False, type=click.Path(dir_okay=False, path_type=Path))
@REF_OPTION
@click.option("--yes", is_flag=True, help="Apply without asking (required when not on a terminal).")
@click.option(
    "--allow-dirty",
    is_flag=True,
    help="Apply the working tree even with uncommitted changes to managed files.",
)
@click.option(
    "--resend-uncertain",
    is_flag=True,
    help="Send again the messages an interrupted apply left uncertain.",
)
@click.option(
    "--retry-failed", is_flag=True, help="Retry the recipients whose delivery failed permanently."
)
@click.pass_context
def apply_command(
    ctx: click.Context,
    planfile: Path | None,
    ref: str | None,
    yes: bool,
    allow_dirty: bool,
    resend_uncertain: bool,
    retry_failed: bool,
) -> int:
    """Make the store match the repository and send what the plan sends.

    With PLANFILE (from `plan --out`), carries out exactly that plan, once; a plan whose objects
    changed since is refused as stale. Without it, plans now, shows the plan and asks — or goes
    ahead with --yes. Order: system emails, notices, then email sends.

    \b
    Examples:
      commsync apply --yes
      commsync plan --out plan.json && commsync apply plan.json
      commsync apply --ref origin/main --yes
      commsync apply --yes --resend-uncertain
    """
    from commsync.api.applying import ApplyRequest
    from commsync.cli.progress import ConsoleListener

    opts = options(ctx)
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    request = ApplyRequest(
        opts.path(planfile) if planfile else None,
        ref,
        yes,
        allow_dirty,
        resend_uncertain,
        retry_failed,
    )
    with service(ctx) as s:
        report = s.apply(request, confirm=_confirm if tty else None, listener=ConsoleListener(tty))
    _report(report)
    return EXIT_OK if report.ok else EXIT_ERROR


@click.command("unlock")
@click.argument("lock_id")
@click.pass_context
def unlock_command(ctx: click.Context, lock_id: str) -> int:
    """Remove the apply lock LOCK_ID left by an apply that is gone.

    An apply run on this host by a process that no longer exists is taken over automatically; use
    this for one that died on another machine. The id is in the message of the refused apply.

    \b
    Example:
      commsync unlock 4f1e9c2a7e41
    """
    with service(ctx) as s:
        holder = s.unlock(lock_id)
    click.echo(f"removed the lock of {holder.describe()}")
    return EXIT_OK
