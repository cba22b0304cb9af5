"""`commsync customers|products|memberships import FILE`: platform data into the store."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Literal, TextIO

import click

from commsync.cli.common import options, service

RecordKind = Literal["customers", "products", "memberships"]
_HELP = {
    "customers": ("id,email,username,first_name,last_name,locale", "data/customers.csv"),
    "products": ("slug,name", "data/products.csv"),
    "memberships": ("customer_id,product,status", "data/memberships.jsonl"),
}
_SYNC_HELP = {
    "customers": "customers absent from it are marked deleted and leave every audience",
    "memberships": "memberships absent from it end",
}
_REMOVED = {"customers": "marked deleted", "memberships": "ended"}


class ImportProgress:
    """Rows read and the rate, on one line of a terminal, once an import takes over 2 s."""

    def __init__(self, kind: str, out: TextIO) -> None:
        self.kind, self.out = kind, out
        self.started = self.shown = time.monotonic()
        self.rows, self.visible = 0, False

    def __call__(self, rows: int) -> None:
        self.rows = rows
        now = time.monotonic()
        if now - self.started < 2 or now - self.shown < 0.5:
            return
        self.shown, self.visible = now, True
        rate = rows / (now - self.started)
        self.out.write(f"\r  {self.kind}: {rows:,} rows read ({rate:,.0f} rows/s)…")
        self.out.flush()

    def done(self) -> None:
        if self.visible:
            self.out.write("\n")
            self.out.flush()


def _make_group(kind: RecordKind) -> click.Group:
    columns, example = _HELP[kind]

    @click.group(kind, help=f"Platform {kind}, synced into the store.")
    def group() -> None:
        pass

    sync_help = (
        f"\n\nWith --sync the file is the whole truth: {_SYNC_HELP[kind]}; refused when that "
        "would remove more than --max-remove percent of what the store holds, unless --force."
        f"\n\n\b\nNightly, from the platform's export:\n  commsync {kind} import --sync {example}"
        if kind in _SYNC_HELP
        else ""
    )

    @group.command(
        "import",
        help=(
            f"Upsert {kind} from a CSV file with a header row ({columns}) or JSONL (.jsonl), "
            f"streamed in one transaction. Every bad row is reported as FILE:line and then "
            f"nothing of the file is written. On a terminal, an import of more than 2 s shows "
            f"its progress.{sync_help}\n\n\b\nExample:\n  commsync {kind} import {example}"
        ),
    )
    @click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
    @click.option(
        "--sync",
        is_flag=True,
        hidden=kind not in _SYNC_HELP,
        help="The file is the whole truth: remove what it lacks (see above).",
    )
    @click.option(
        "--max-remove",
        type=click.IntRange(0, 100),
        default=10,
        show_default=True,
        hidden=kind not in _SYNC_HELP,
        metavar="PERCENT",
        help="With --sync: refuse to remove more than this share of what the store holds.",
    )
    @click.option(
        "--force",
        is_flag=True,
        hidden=kind not in _SYNC_HELP,
        help="With --sync: remove however much the file lacks.",
    )
    @click.pass_context
    def import_command(
        ctx: click.Context, file: Path, sync: bool, max_remove: int, force: bool
    ) -> int:
        from commsync.api.service import ImportOptions

        progress = ImportProgress(kind, sys.stderr) if sys.stderr.isatty() else None
        chosen = ImportOptions(
            sync=sync, max_remove=max_remove / 100, force=force, progress=progress
        )
        try:
            with service(ctx) as s:
                counts = s.import_records(kind, options(ctx).path(file), str(file), chosen)
        finally:
            if progress is not None:
                progress.done()
        line = f"{kind}: {counts.inserted} inserted, {counts.updated} updated"
        if sync:
            line += f", {counts.removed} {_REMOVED[kind]}"
        click.echo(line)
        return 0

    return group


GROUPS = [_make_group("customers"), _make_group("products"), _make_group("memberships")]
