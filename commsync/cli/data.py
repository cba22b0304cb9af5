"""`commsync customers|products|memberships import FILE`: platform data into the store."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import click

from commsync.cli.common import options, service

RecordKind = Literal["customers", "products", "memberships"]
_HELP = {
    "customers": ("id,email,username,first_name,last_name,locale", "data/customers.csv"),
    "products": ("slug,name", "data/products.csv"),
    "memberships": ("customer_id,product,status", "data/memberships.jsonl"),
}


def _make_group(kind: RecordKind) -> click.Group:
    columns, example = _HELP[kind]

    @click.group(kind, help=f"Platform {kind}, synced into the store.")
    def group() -> None:
        pass

    @group.command(
        "import",
        help=(
            f"Upsert {kind} from a CSV file with a header row ({columns}) or JSONL (.jsonl). "
            f"Every bad row is reported as FILE:line and then nothing of the file is written.\n\n"
            f"\b\nExample:\n  commsync {kind} import {example}"
        ),
    )
    @click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
    @click.pass_context
    def import_command(ctx: click.Context, file: Path) -> int:
        with service(ctx) as s:
            counts = s.import_records(kind, options(ctx).path(file), str(file))
        click.echo(f"{kind}: {counts.inserted} inserted, {counts.updated} updated")
        return 0

    return group


GROUPS = [_make_group("customers"), _make_group("products"), _make_group("memberships")]
