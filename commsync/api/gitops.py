"""Use cases: `commsync drift` (out-of-band changes) and `commsync pull` (adoption)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from commsync.api.context import Context
from commsync.api.inventory import EditOutcome, FileEdit
from commsync.api.planning import plan_against
from commsync.model import BroadcastKind, BroadcastStatus, LiveSnapshot
from commsync.plan.model import FieldChange
from commsync.repo.broadcasts import BROADCASTS_DIR
from commsync.repo.emails import EMAILS_DIR
from commsync.repo.write import email_yaml, notice_yaml


class DriftKind(StrEnum):
    CHANGED = "changed"  # edited outside commsync since the last apply
    UNMANAGED = "unmanaged"  # live, and no file manages it


@dataclass(frozen=True, slots=True)
class DriftItem:
    """One out-of-band change: an object edited outside commsync, or one no file manages."""

    address: str
    kind: DriftKind
    detail: str
    path: str | None = None
    changes: tuple[FieldChange, ...] = ()


def _unmanaged(
    live: LiveSnapshot, broadcast_ids: set[str], email_slugs: set[str], defaults: set[str]
) -> list[DriftItem]:
    out = []
    for bid, b in sorted(live.broadcasts.items()):
        if bid in broadcast_ids or not _active_notice(b.spec.kind, b.status):
            continue
        out.append(
            DriftItem(
                f"notice.{bid}",
                DriftKind.UNMANAGED,
                "an active notice no file manages; `commsync pull` writes its file",
            )
        )
    for slug, e in sorted(live.system_emails.items()):
        if slug in email_slugs:
            continue
        if e.provenance.applied_at is not None and not e.drift:
            continue  # commsync left it so: its file was removed with prune off (said once, by plan)
        if slug not in defaults:
            detail = "a custom system email no file manages; `commsync pull` writes its file"
        elif e.overrides:
            detail = (
                f"customised ({', '.join(e.overrides)}) but no file manages it; "
                "`commsync pull` writes its file"
            )
        else:
            continue  # a default installed as it is by `imports:`: nothing out of band
        out.append(DriftItem(f"system_email.{slug}", DriftKind.UNMANAGED, detail))
    return out


def _active_notice(kind: BroadcastKind, status: BroadcastStatus) -> bool:
    return kind == BroadcastKind.NOTICE and status == BroadcastStatus.ACTIVE


def drift(ctx: Context, ref: str | None = None) -> list[DriftItem]:
    """What changed in the store outside commsync, against the repository at `ref`."""
    loaded = ctx.valid(ref)
    assert loaded.settings is not None
    store = ctx.store(loaded.settings)
    result = plan_against(loaded, store, datetime.now(UTC))
    live = store.snapshot()
    changed = DriftKind.CHANGED
    items = [
        DriftItem(
            a.address,
            changed,
            "changed outside commsync since the last apply; apply restores the repository's values",
            a.path,
            a.changes,
        )
        for a in result.plan.actions
        if a.drift
    ]
    reported = {i.address for i in items}
    for bid, b in sorted(live.broadcasts.items()):
        address = f"{b.spec.kind}.{bid}"
        if b.drift and address not in reported:
            items.append(
                DriftItem(address, changed, "changed outside commsync since the last apply")
            )
    for slug, e in sorted(live.system_emails.items()):
        address = f"system_email.{slug}"
        if e.drift and address not in reported:
            items.append(
                DriftItem(address, changed, "changed outside commsync since the last apply")
            )
    items += _unmanaged(
        live,
        {b.id for b in loaded.broadcasts},
        {e.slug for e in loaded.emails},
        set(loaded.catalog.defaults),
    )
    return sorted(items, key=lambda i: (str(i.kind), i.address))


def pull(ctx: Context) -> list[FileEdit]:
    """Write files for active notices and system emails that no file manages (adoption).

    Never overwrites a file. Defaults installed as they are by `imports:` need no file.
    """
    loaded = ctx.valid(message="fix the repository first (commsync validate)")
    assert loaded.settings is not None
    live = ctx.store(loaded.settings).snapshot()
    known_broadcasts = {b.id for b in loaded.broadcasts}
    known_emails = {e.slug for e in loaded.emails}
    planned: list[tuple[str, str, str, str]] = []  # slug/id, path, text, detail
    for bid, b in sorted(live.broadcasts.items()):
        if bid in known_broadcasts or not _active_notice(b.spec.kind, b.status):
            continue
        note = "Adopted by `commsync pull` from the live store."
        planned.append(
            (
                bid,
                f"{BROADCASTS_DIR}/{bid}.yaml",
                notice_yaml(b.spec, note, f"{BROADCASTS_DIR}/{bid}.yaml"),
                "active notice",
            )
        )
    for slug, e in sorted(live.system_emails.items()):
        if slug in known_emails:
            continue
        default = loaded.catalog.defaults.get(slug)
        if default is not None and not e.overrides:
            continue
        note = "Adopted by `commsync pull` from the live store."
        if default is None:
            text, detail = email_yaml(slug, e.fields, None, note), "custom system email"
        else:
            text = email_yaml(slug, e.fields, e.overrides, note)
            detail = f"customised: {', '.join(e.overrides)}"
        planned.append((slug, f"{EMAILS_DIR}/{slug}.yaml", text, detail))
    edits = []
    for name, rel, text, detail in planned:
        target = ctx.project.root / rel
        if target.exists():
            detail = "the file exists; not overwritten"
            edits.append(FileEdit(name, rel, EditOutcome.SKIPPED, detail))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        edits.append(FileEdit(name, rel, EditOutcome.WRITTEN, detail))
    return edits
