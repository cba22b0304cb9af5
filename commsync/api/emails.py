"""Use case: the system email inventory (`emails list`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from commsync.api.core import Project, load, store_session
from commsync.errors import ValidationFailed
from commsync.model import (
    DefaultEmail,
    EmailStats,
    LiveSystemEmail,
)

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
