"""Use cases: the system email inventory (`emails list`), and Import & Reset as file edits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from commsync.api.context import Context
from commsync.errors import CommsyncError
from commsync.model import DefaultEmail, EmailStats, EmailTarget, Imports, LiveSystemEmail
from commsync.repo.edit import import_file, remove_keys
from commsync.repo.emails import EMAILS_DIR
from commsync.repo.loader import LoadedRepository

# -- system email inventory --------------------------------------------------------------------


class EmailState(StrEnum):
    """Where a system email stands: registered, installed, customised."""

    IMPORTABLE = "importable"
    NOT_APPLIED = "not applied yet"
    CUSTOM = "custom"
    UNREGISTERED = "unregistered"
    NEWER_DEFAULT = "newer default"
    UPGRADE_PENDING = "upgrade pending"
    CUSTOMISED = "customised"
    DEFAULT = "default"


class EditOutcome(StrEnum):
    WRITTEN = "written"
    RESET = "reset"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class EmailRow:
    """One line of `commsync emails list`: a registered default or an installed custom email."""

    slug: str
    event: str
    target: EmailTarget
    source: str
    critical: bool
    default_version: int | None
    installed: bool
    installed_version: int | None
    customised: tuple[str, ...]
    file: str | None
    active: bool | None
    state: EmailState
    sent: int = 0
    failed: int = 0
    last_sent_at: datetime | None = None
    cancelled: int = 0
    queued: int = 0  # messages waiting or due
    next_due: datetime | None = None  # the first of them not due yet


def _state(default: DefaultEmail | None, live: LiveSystemEmail | None, wanted: bool) -> EmailState:
    if live is None:
        return EmailState.NOT_APPLIED if wanted else EmailState.IMPORTABLE
    if default is None:
        return EmailState.CUSTOM if live.base_version is None else EmailState.UNREGISTERED
    if live.base_version is not None and default.version > live.base_version:
        return EmailState.NEWER_DEFAULT if live.overrides else EmailState.UPGRADE_PENDING
    return EmailState.CUSTOMISED if live.overrides else EmailState.DEFAULT


def list_emails(ctx: Context) -> list[EmailRow]:
    """Registered defaults × installed × customised × importable, with delivery stats."""
    loaded, settings = ctx.usable()
    store = ctx.store(settings)
    live = store.system_emails()
    queue = store.queue_state(datetime.now(UTC)).by_email
    imports = Imports(settings.imports)
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
        wanted = file is not None or (default is not None and imports.installs(default.critical))
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
                cancelled=stats.cancelled,
                queued=queue[slug].count if slug in queue else 0,
                next_due=queue[slug].next_due if slug in queue else None,
            )
        )
    return rows


# -- Import & Reset as repository edits --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileEdit:
    """What `emails import` / `emails reset` did to one slug."""

    slug: str
    path: str
    outcome: EditOutcome
    detail: str


def _editable(ctx: Context) -> tuple[LoadedRepository, Mapping[str, LiveSystemEmail]]:
    loaded = ctx.valid(message="fix the repository first (commsync validate)")
    assert loaded.settings is not None
    return loaded, ctx.store(loaded.settings).system_emails()


def _unknown(slugs: Iterable[str], known: Iterable[str], what: str) -> None:
    missing = sorted(set(slugs) - set(known))
    if missing:
        raise CommsyncError(
            f"unknown {what} {', '.join(missing)}; known: {', '.join(sorted(known))}"
        )


def _import_text(loaded: LoadedRepository, slug: str) -> str:
    """The file that installs default `slug` as it is: `email: SLUG` under a short comment."""
    default = loaded.catalog.defaults[slug]
    event = loaded.catalog.events.get(default.fields.event)
    description = event.description if event else f"Sent on {default.fields.event}."
    return import_file(slug, default.source, default.version, description)


def import_emails(ctx: Context, slugs: Sequence[str], every: bool) -> list[FileEdit]:
    """Write emails/SLUG.yaml installing each registered default as it is (`emails import`)."""
    root = ctx.project.root
    loaded, live = _editable(ctx)
    defaults = loaded.catalog.defaults
    files = {e.slug: e.origin.path for e in loaded.emails}
    _unknown(slugs, defaults, "registered default(s)")
    wanted = (
        [s for s in sorted(defaults) if s not in files and s not in live] if every else list(slugs)
    )
    edits = []
    for slug in dict.fromkeys(wanted):
        if slug in files:
            edits.append(
                FileEdit(slug, files[slug], EditOutcome.SKIPPED, "a file already manages it")
            )
            continue
        rel = f"{EMAILS_DIR}/{slug}.yaml"
        target = root / rel
        if target.exists():
            detail = "the file exists (another email?)"
            edits.append(FileEdit(slug, rel, EditOutcome.SKIPPED, detail))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_import_text(loaded, slug), encoding="utf-8")
        edits.append(FileEdit(slug, rel, EditOutcome.WRITTEN, "plan shows `import`"))
    return edits


def reset_emails(ctx: Context, slugs: Sequence[str], every: bool) -> list[FileEdit]:
    """Remove the override keys from each email's file (`emails reset`), keeping everything else."""
    root = ctx.project.root
    loaded, live = _editable(ctx)
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
                edits.append(FileEdit(slug, "-", EditOutcome.UNCHANGED, "not customised"))
                continue
            rel = f"{EMAILS_DIR}/{slug}.yaml"  # customised outside any file: manage it, reset
            (root / rel).write_text(_import_text(loaded, slug), encoding="utf-8")
            edits.append(FileEdit(slug, rel, EditOutcome.WRITTEN, "plan shows `reset`"))
            continue
        path = root / file.origin.path
        text, removed = remove_keys(
            path.read_text(encoding="utf-8"), list(file.overrides), file.origin.path
        )
        if not removed:
            state = (
                "customised in the store: plan shows `reset`"
                if installed and installed.overrides
                else "not customised"
            )
            edits.append(FileEdit(slug, file.origin.path, EditOutcome.UNCHANGED, state))
            continue
        path.write_text(text, encoding="utf-8")
        detail = f"removed {', '.join(removed)}"
        edits.append(FileEdit(slug, file.origin.path, EditOutcome.RESET, detail))
    return edits
