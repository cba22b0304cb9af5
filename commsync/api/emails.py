"""Use cases: the system email inventory (`emails list`), and Import & Reset as file edits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from commsync.api.core import Project, load, store_session
from commsync.diagnostics import has_errors
from commsync.errors import CommsyncError, ValidationFailed
from commsync.model import (
    DefaultEmail,
    EmailStats,
    LiveSystemEmail,
)
from commsync.repo.edit import import_file, remove_keys
from commsync.repo.emails import EMAILS_DIR
from commsync.repo.loader import LoadedRepository

# -- system email inventory --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmailRow:
    """One line of `commsync emails list`: a registered default or an installed custom email."""

    slug: str
    event: str
    target: str
    source: str
    critical: bool
    default_version: int | None
    installed: bool
    installed_version: int | None
    customised: tuple[str, ...]
    file: str | None
    active: bool | None
    state: str
    sent: int = 0
    failed: int = 0
    last_sent_at: datetime | None = None


def _state(default: DefaultEmail | None, live: LiveSystemEmail | None, wanted: bool) -> str:
    if live is None:
        return "not applied yet" if wanted else "importable"
    if default is None:
        return "custom" if live.base_version is None else "unregistered"
    if live.base_version is not None and default.version > live.base_version:
        return "newer default" if live.overrides else "upgrade pending"
    return "customised" if live.overrides else "default"


def _wanted_by_imports(default: DefaultEmail | None, imports: str) -> bool:
    return default is not None and (
        imports == "all" or (imports == "critical" and default.critical)
    )


def list_emails(project: Project) -> list[EmailRow]:
    """Registered defaults × installed × customised × importable, with delivery stats."""
    loaded = load(project)
    if loaded.settings is None:
        raise ValidationFailed(loaded.diagnostics)
    with store_session(loaded.settings.store_url) as store:
        live = store.snapshot().system_emails
    files = {e.slug: e for e in loaded.emails}
    rows = []
    for slug in sorted(set(loaded.catalog.defaults) | set(live) | set(files)):
        default, installed, file = (
            loaded.catalog.defaults.get(slug),
            live.get(slug),
            files.get(slug),
        )
        fields = (
            installed.fields
            if installed
            else default.fields
            if default
            else file.custom
            if file
            else None
        )
        assert fields is not None
        stats = installed.stats if installed else EmailStats()
        wanted = file is not None or _wanted_by_imports(default, loaded.settings.imports)
        rows.append(
            EmailRow(
                slug=slug,
                event=fields.event,
                target=fields.target,
                source=default.source if default else "custom",
                critical=bool(default and default.critical),
                default_version=default.version if default else None,
                installed=installed is not None,
                installed_version=installed.base_version if installed else None,
                customised=installed.overrides if installed else (),
                file=file.origin.path if file else None,
                active=installed.fields.active if installed else None,
                state=_state(default, installed, wanted),
                sent=stats.sent,
                failed=stats.failed,
                last_sent_at=stats.last_sent_at,
            )
        )
    return rows


# -- Import & Reset as repository edits --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileEdit:
    """What `emails import` / `emails reset` did to one slug."""

    slug: str
    path: str
    outcome: str  # written | reset | unchanged | skipped
    detail: str


def _editable(project: Project) -> tuple[LoadedRepository, Mapping[str, LiveSystemEmail]]:
    loaded = load(project)
    if loaded.settings is None or has_errors(loaded.diagnostics):
        raise ValidationFailed(loaded.diagnostics, "fix the repository first (commsync validate)")
    with store_session(loaded.settings.store_url) as store:
        return loaded, store.snapshot().system_emails


def _unknown(slugs: Iterable[str], known: Iterable[str], what: str) -> None:
    missing = sorted(set(slugs) - set(known))
    if missing:
        raise CommsyncError(
            f"unknown {what} {', '.join(missing)}; known: {', '.join(sorted(known))}"
        )


def import_emails(project: Project, slugs: Sequence[str], every: bool) -> list[FileEdit]:
    """Write emails/SLUG.yaml installing each registered default as it is (`emails import`)."""
    loaded, live = _editable(project)
    defaults = loaded.catalog.defaults
    files = {e.slug: e.origin.path for e in loaded.emails}
    _unknown(slugs, defaults, "registered default(s)")
    wanted = (
        [s for s in sorted(defaults) if s not in files and s not in live] if every else list(slugs)
    )
    edits = []
    for slug in dict.fromkeys(wanted):
        if slug in files:
            edits.append(FileEdit(slug, files[slug], "skipped", "a file already manages it"))
            continue
        rel = f"{EMAILS_DIR}/{slug}.yaml"
        target = project.root / rel
        if target.exists():
            edits.append(FileEdit(slug, rel, "skipped", "the file exists (another email?)"))
            continue
        default = defaults[slug]
        event = loaded.catalog.events.get(default.fields.event)
        description = event.description if event else f"Sent on {default.fields.event}."
        text = import_file(slug, default.source, default.version, description)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        edits.append(FileEdit(slug, rel, "written", "plan shows `import`"))
    return edits


def reset_emails(project: Project, slugs: Sequence[str], every: bool) -> list[FileEdit]:
    """Remove the override keys from each email's file (`emails reset`), keeping everything else."""
    loaded, live = _editable(project)
    defaults = loaded.catalog.defaults
    files = {e.slug: e for e in loaded.emails}
    _unknown(slugs, set(defaults) | set(files), "system email(s)")
    custom = sorted(s for s in slugs if s in files and files[s].custom is not None)
    if custom:
        raise CommsyncError(
            f"{', '.join(custom)}: custom email(s), not a registered default; there is nothing to "
            "reset to (delete the file to delete the email)"
        )
    wanted = (
        [s for s, e in sorted(files.items()) if e.custom is None and e.overrides]
        if every
        else list(slugs)
    )
    edits = []
    for slug in dict.fromkeys(wanted):
        file = files.get(slug)
        installed = live.get(slug)
        if file is None:
            if installed is None or not installed.overrides:
                edits.append(FileEdit(slug, "-", "unchanged", "not customised"))
                continue
            rel = f"{EMAILS_DIR}/{slug}.yaml"  # customised outside any file: manage it, reset
            default = defaults[slug]
            event = loaded.catalog.events.get(default.fields.event)
            description = event.description if event else f"Sent on {default.fields.event}."
            (project.root / rel).write_text(
                import_file(slug, default.source, default.version, description), encoding="utf-8"
            )
            edits.append(FileEdit(slug, rel, "written", "plan shows `reset`"))
            continue
        path = project.root / file.origin.path
        text, removed = remove_keys(
            path.read_text(encoding="utf-8"), list(file.overrides), file.origin.path
        )
        if not removed:
            state = (
                "customised in the store: plan shows `reset`"
                if installed and installed.overrides
                else "not customised"
            )
            edits.append(FileEdit(slug, file.origin.path, "unchanged", state))
            continue
        path.write_text(text, encoding="utf-8")
        edits.append(FileEdit(slug, file.origin.path, "reset", f"removed {', '.join(removed)}"))
    return edits
