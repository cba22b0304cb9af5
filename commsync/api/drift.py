"""Use cases: `commsync drift` (out-of-band changes) and `commsync pull` (adoption)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from commsync.api.core import Project, load, plan_against, store_session
from commsync.api.emails import FileEdit
from commsync.diagnostics import has_errors
from commsync.errors import ValidationFailed
from commsync.model import LiveSnapshot
from commsync.plan.model import FieldChange
from commsync.repo.broadcasts import BROADCASTS_DIR
from commsync.repo.emails import EMAILS_DIR
from commsync.repo.write import email_yaml, notice_yaml


@dataclass(frozen=True, slots=True)
class DriftItem:
    """One out-of-band change: an object edited outside commsync, or one no file manages."""

    address: str
    kind: str  # changed | unmanaged
    detail: str
    path: str | None = None
    changes: tuple[FieldChange, ...] = ()


def _unmanaged(
    live: LiveSnapshot, broadcast_ids: set[str], email_slugs: set[str], defaults: set[str]
) -> list[DriftItem]:
    out = []
    for bid, b in sorted(live.broadcasts.items()):
        if bid in broadcast_ids or b.spec.kind != "notice" or b.status != "active":
            continue
        out.append(
            DriftItem(
                f"notice.{bid}",
                "unmanaged",
                "an active notice no file manages; `commsync pull` writes its file",
            )
        )
    for slug, e in sorted(live.system_emails.items()):
        if slug in email_slugs:
            continue
        if slug not in defaults:
            detail = "a custom system email no file manages; `commsync pull` writes its file"
        elif e.overrides:
            detail = (
                f"customised ({', '.join(e.overrides)}) but no file manages it; "
                "`commsync pull` writes its file"
            )
        else:
            continue  # a default installed as it is by `imports:`: nothing out of band
        out.append(DriftItem(f"system_email.{slug}", "unmanaged", detail))
    return out


def drift(project: Project, ref: str | None = None) -> list[DriftItem]:
    """What changed in the store outside commsync, against the repository at `ref`."""
    loaded = load(project, ref)
    if not loaded.ok or loaded.settings is None:
        raise ValidationFailed(loaded.diagnostics)
    with store_session(loaded.settings.store_url) as store:
        result = plan_against(loaded, store, datetime.now(UTC))
        live = store.snapshot()
    items = [
        DriftItem(
            a.address,
            "changed",
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
                DriftItem(address, "changed", "changed outside commsync since the last apply")
            )
    for slug, e in sorted(live.system_emails.items()):
        address = f"system_email.{slug}"
        if e.drift and address not in reported:
            items.append(
                DriftItem(address, "changed", "changed outside commsync since the last apply")
            )
    items += _unmanaged(
        live,
        {b.id for b in loaded.broadcasts},
        {e.slug for e in loaded.emails},
        set(loaded.catalog.defaults),
    )
    return sorted(items, key=lambda i: (i.kind, i.address))


def pull(project: Project) -> list[FileEdit]:
    """Write files for active notices and system emails that no file manages (adoption).

    Never overwrites a file. Defaults installed as they are by `imports:` need no file.
    """
    loaded = load(project)
    if loaded.settings is None or has_errors(loaded.diagnostics):
        raise ValidationFailed(loaded.diagnostics, "fix the repository first (commsync validate)")
    with store_session(loaded.settings.store_url) as store:
        live = store.snapshot()
    known_broadcasts = {b.id for b in loaded.broadcasts}
    known_emails = {e.slug for e in loaded.emails}
    planned: list[tuple[str, str, str, str]] = []  # slug/id, path, text, detail
    for bid, b in sorted(live.broadcasts.items()):
        if bid in known_broadcasts or b.spec.kind != "notice" or b.status != "active":
            continue
        note = "Adopted by `commsync pull` from the live store."
        planned.append(
            (bid, f"{BROADCASTS_DIR}/{bid}.yaml", notice_yaml(b.spec, note), "active notice")
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
        target = project.root / rel
        if target.exists():
            edits.append(FileEdit(name, rel, "skipped", "the file exists; not overwritten"))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        edits.append(FileEdit(name, rel, "written", detail))
    return edits
