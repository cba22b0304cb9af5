"""`commsync drift`, `commsync pull` and `commsync preview`: the pull-request workflow's helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from commsync.cli.common import REF_OPTION, format_option, options, service
from commsync.cli.emails import edits_output
from commsync.cli.events import read_payload
from commsync.errors import EXIT_CHANGES, EXIT_OK, CommsyncError

if TYPE_CHECKING:
    from commsync.api.gitops import DriftItem
    from commsync.model import JsonObject


def _drift_json(item: DriftItem) -> dict[str, object]:
    return {
        "address": item.address,
        "kind": item.kind,
        "detail": item.detail,
        "path": item.path,
        "changes": [{"field": c.field, "live": c.before, "file": c.after} for c in item.changes],
    }


@click.command("drift")
@REF_OPTION
@format_option("text", "json", help="text for people; json for tools.")
@click.option(
    "--detailed-exitcode", is_flag=True, help="Exit 2 when there is drift, 0 when there is none."
)
@click.pass_context
def drift_command(ctx: click.Context, ref: str | None, fmt: str, detailed_exitcode: bool) -> int:
    """Report only out-of-band changes: what was edited in the store outside commsync.

    Objects changed since their last apply (with the fields that differ from their file), and
    active notices or customised system emails that no file manages. Nothing else of the plan.
    For a scheduled CI job: `commsync drift --ref origin/main --detailed-exitcode`.
    """
    from commsync.api.gitops import DriftKind
    from commsync.plan.views import show

    with service(ctx) as s:
        items = s.drift(ref)
    if fmt == "json":
        click.echo(json.dumps({"drift": [_drift_json(i) for i in items]}, indent=2))
    elif not items:
        click.echo("No drift: the store holds what commsync applied.")
    else:
        width = max(len(i.address) for i in items)
        for item in items:
            mark = "~" if item.kind == DriftKind.CHANGED else "?"
            where = f" ({item.path})" if item.path else ""
            click.echo(f"  {mark} {item.address.ljust(width)}  {item.detail}{where}")
            for change in item.changes:
                click.echo(
                    f"      {change.field}: live {show(change.before)}; file {show(change.after)}"
                )
        click.echo(f"Drift: {len(items)} object(s) changed outside commsync.")
    return EXIT_CHANGES if detailed_exitcode and items else EXIT_OK


@click.command("pull")
@click.pass_context
def pull_command(ctx: click.Context) -> int:
    """Write files for live objects no file manages: active notices and system emails.

    Adoption: notices go to broadcasts/<id>.yaml, system emails to emails/<slug>.yaml (a custom
    email with every field, a customised default with its overrides). An existing file is never
    overwritten. Review the files, commit them, and `commsync plan` shows the objects as managed.
    """
    with service(ctx) as s:
        return edits_output(s.pull())


@click.command("preview")
@click.argument("file", metavar="FILE")
@click.option(
    "--customer",
    metavar="REF",
    help="Broadcasts: render for this store customer (id, email or username) instead of a sample.",
)
@click.option(
    "--data",
    metavar="JSON|FILE",
    help="System emails: payload keys (inline JSON or a JSON file) over the event's example payload.",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write the preview files into (created if missing).",
)
@click.pass_context
def preview_command(
    ctx: click.Context, file: str, customer: str | None, data: str | None, out: Path
) -> int:
    """Render FILE as its recipients would see it, into files you can open.

    An email (a broadcast, or a system email with its event's example payload) becomes
    NAME.html, NAME.txt and NAME.eml (the whole message: open it in a mail client); a notice
    becomes NAME.html, the fragment as the dashboard widget shows it. Nothing is sent or stored.

    \\b
    Examples:
      commsync preview broadcasts/emails/launch.yaml --customer ada@example.com --out preview/
      commsync preview emails/payment_received_customer.yaml --data '{"payment_total": "$9.00"}' --out preview/
    """
    opts = options(ctx)
    payload = None
    if data is not None:
        payload = _inline(data) if data.lstrip().startswith("{") else read_payload(data, opts.root)
    with service(ctx) as s:
        result = s.preview(file, opts.path(out), customer=customer, data=payload)
    click.echo(f"{result.source}, for {result.recipient}:")
    for written in result.files:
        click.echo(f"  {written}")
    return EXIT_OK


def _inline(text: str) -> JsonObject:
    """--data given as inline JSON."""
    from commsync.model import jsontext  # the model's package: 50 ms that `--help` need not pay
    from commsync.model.limits import DEFAULT_LIMITS

    try:
        value = jsontext.loads(text, DEFAULT_LIMITS.json_depth)
    except jsontext.JsonTextError as exc:
        problem = exc.message.removeprefix("not valid JSON: ")
        raise CommsyncError(f"--data is not valid JSON: {problem} at column {exc.col}") from exc
    if not isinstance(value, dict):
        raise CommsyncError("--data must be a JSON object of the event's keys")
    return value


@click.command("schema")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The directory to write the schemas into (created if need be).",
)
@click.pass_context
def schema_command(ctx: click.Context, out: Path) -> int:
    """Write commsync's JSON Schemas (commsync.yaml, broadcasts, emails, catalogs, plans) into
    DIR, from the installed version. Their `$ref`s are relative, so editors and
    check-jsonschema use them offline; `init` writes them to `schemas/`, where the files'
    `yaml-language-server` lines and `.vscode/settings.json` point. Run it again after
    upgrading commsync.

    \b
    Example:
      commsync schema --out schemas
    """
    with service(ctx) as s:
        written = s.write_schemas(options(ctx).path(out))
    for path in written:
        click.echo(f"wrote {path.name}")
    return 0
