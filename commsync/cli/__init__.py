"""The `commsync` command line: parse flags, call one api function, render. No SQL, SMTP or YAML."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from commsync import __version__, logs
from commsync.cli.common import GlobalOptions, echo_diagnostics
from commsync.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CommsyncError,
    ValidationFailed,
)

# Commands that only read: "nothing was changed" after their errors would suggest otherwise.
_READ_ONLY = frozenset({"plan", "validate", "drift", "preview", "status", "schema"})


def _handle(exc: BaseException, debug: bool, command: str | None = None) -> int:
    """The one place that maps errors to messages and exit codes."""
    if isinstance(exc, click.exceptions.Exit):
        return exc.exit_code
    if isinstance(exc, click.UsageError):
        exc.show()
        return EXIT_USAGE
    if isinstance(exc, click.ClickException):
        exc.show()
        return EXIT_ERROR
    if isinstance(exc, KeyboardInterrupt | click.Abort):
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    if isinstance(exc, ValidationFailed):
        echo_diagnostics(exc.diagnostics)
        unchanged = "" if command in _READ_ONLY else "; nothing was changed"
        click.echo(f"error: {exc.message}{unchanged}", err=True)
        return exc.exit_code
    if isinstance(exc, CommsyncError):
        click.echo(f"error: {exc.message}", err=True)
        return exc.exit_code
    if debug:
        traceback.print_exception(exc)
    else:
        click.echo(
            f"internal error: {exc!r} — this is a bug; run with --debug for the traceback", err=True
        )
    return EXIT_ERROR


class CommsyncGroup(click.Group):
    """A group whose `main` turns every outcome into one exit code."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> int:
        argv = list(sys.argv[1:] if args is None else args)
        try:
            result = super().main(
                argv, prog_name or "commsync", complete_var, standalone_mode=False, **extra
            )
            code = result if isinstance(result, int) else EXIT_OK
        except BaseException as exc:
            if isinstance(exc, SystemExit):
                raise
            command = next((a for a in argv if a in self.commands), None)
            code = _handle(exc, "--debug" in argv, command)
        if standalone_mode:
            sys.exit(code)
        return code


@click.group(cls=CommsyncGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="commsync")
@click.option(
    "-C",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    help="Run as if started in DIR (the repository root holding commsync.yaml).",
)
@click.option(
    "--store", "store", metavar="URL", help="Store URL; overrides COMMSYNC_STORE and commsync.yaml."
)
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.option(
    "--log-level",
    type=click.Choice(logs.LEVELS),
    default="warning",
    show_default=True,
    help="What commsync logs to standard error (COMMSYNC_LOG_FORMAT=json: one JSON object a line).",
)
@click.pass_context
def cli(
    ctx: click.Context, directory: Path, store: str | None, debug: bool, log_level: str
) -> None:
    """Customer communications as code: notices, email broadcasts and system emails.

    Exit status: 0 ok, 1 error, 2 changes (plan --detailed-exitcode), 64 usage, 130 interrupted.
    """
    logs.configure(log_level)
    given = ctx.get_parameter_source("log_level") != click.core.ParameterSource.DEFAULT
    ctx.obj = GlobalOptions(
        root=directory.resolve(), store=store, debug=debug, log_level=log_level if given else None
    )


def _register() -> None:
    from commsync.cli import (
        apply,
        data,
        emails,
        events,
        gitops,
        init,
        plan,
        queue,
        status,
        suppressions,
        validate,
    )

    cli.add_command(init.init_command)
    cli.add_command(validate.validate_command)
    cli.add_command(plan.plan_command)
    cli.add_command(apply.apply_command)
    cli.add_command(apply.unlock_command)
    cli.add_command(status.status_command)
    cli.add_command(emails.emails_group)
    cli.add_command(events.event_command)
    cli.add_command(events.deliver_command)
    cli.add_command(queue.queue_group)
    cli.add_command(suppressions.suppressions_group)
    cli.add_command(events.test_send_command)
    cli.add_command(events.token_command)
    cli.add_command(events.rotate_key_command)
    cli.add_command(events.serve_command)
    cli.add_command(gitops.drift_command)
    cli.add_command(gitops.pull_command)
    cli.add_command(gitops.preview_command)
    cli.add_command(gitops.schema_command)
    for group in data.GROUPS:
        cli.add_command(group)


_register()


def main() -> None:
    cli.main()
