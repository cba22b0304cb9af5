"""Read a whole operator repository into checked documents, collecting every diagnostic."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from commsync.catalog.loader import (
    addon_catalog_dirs,
    build_catalog,
    core_catalog_dir,
    project_catalog_dirs,
)
from commsync.config.files import (
    YAML_SUFFIXES,
    FileTree,
    check_listed,
    read_checked,
    strip_yaml_suffix,
)
from commsync.config.settings import (
    SETTINGS_FILE,
    Settings,
    build_settings,
    inside,
    settings_diagnostics,
)
from commsync.config.yamlpos import YamlDoc, load_yaml
from commsync.diagnostics import Diagnostic, has_errors, sort_diagnostics
from commsync.errors import ConfigError
from commsync.model import Catalog, DesiredState, DesiredSystemEmail, Imports, SourceInfo
from commsync.model.limits import DEFAULT_LIMITS, Limits
from commsync.render.message import LAYOUT_NAMES, LAYOUT_SAMPLE
from commsync.render.sandbox import check_template, placeholders, trial_render
from commsync.repo.broadcasts import (
    BROADCASTS_DIR,
    ParsedBroadcast,
    References,
    parse_broadcast,
    resolve_targets,
)
from commsync.repo.duplicates import duplicate_diagnostics
from commsync.repo.emails import EMAILS_DIR, EmailContext, parse_system_email
from commsync.repo.parsecache import FileCache, decode, encode, file_key

LAYOUT_FILE = "layouts/email.html"


@dataclass(frozen=True, slots=True)
class LoadedRepository:
    """Everything read from one revision of the repository, before targets meet the store."""

    settings: Settings | None
    catalog: Catalog
    broadcasts: tuple[ParsedBroadcast, ...]
    emails: tuple[DesiredSystemEmail, ...]
    diagnostics: tuple[Diagnostic, ...]
    source: SourceInfo
    layout: str | None = None
    uncommitted: tuple[str, ...] = ()  # managed paths with uncommitted changes (working tree only)
    # broadcast files parsed now that the file cache did not have: kept once a plan is made
    # (never by a run that reports an error: bad input changes nothing in the store)
    parsed: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return self.settings is not None and not has_errors(self.diagnostics)


def _load_settings(
    tree: FileTree, root: Path, env: Mapping[str, str], store: str | None
) -> tuple[YamlDoc | None, Settings | None, list[Diagnostic]]:
    data, diags = read_checked(tree, SETTINGS_FILE)
    if diags:
        return None, None, diags
    if data is None:
        where = f"{root} ({tree.info.label})"
        raise ConfigError(
            f"no {SETTINGS_FILE} in {where}; run `commsync init` to create a repository"
        )
    doc, diags = load_yaml(SETTINGS_FILE, data)
    if doc is None:
        return None, None, diags
    diags += settings_diagnostics(doc)
    settings = None if has_errors(diags) else build_settings(doc, root, env, store)
    return doc, settings, diags


def _catalogs_setting(doc: YamlDoc | None, settings: Settings | None) -> list[str]:
    if settings is not None:
        return list(settings.catalogs)
    raw = doc.value.get("catalogs") if doc is not None and isinstance(doc.value, dict) else None
    return [c for c in raw if isinstance(c, str) and inside(c)] if isinstance(raw, list) else []


def _load_catalog(
    tree: FileTree, doc: YamlDoc | None, settings: Settings | None
) -> tuple[Catalog, list[Diagnostic]]:
    addons, diags = addon_catalog_dirs()
    catalogs = _catalogs_setting(doc, settings)
    for i, directory in enumerate(catalogs):
        if not tree.files(directory.strip("/")) and doc is not None:
            diags.append(
                doc.diag(f"/catalogs/{i}", f"catalog directory {directory!r} is missing or empty")
            )
    catalog, problems = build_catalog(
        [core_catalog_dir(), *addons, *project_catalog_dirs(tree, catalogs)]
    )
    return catalog, diags + problems


def _yaml_files(
    tree: FileTree, directory: str, recursive: bool
) -> tuple[list[str], list[Diagnostic]]:
    """The YAML files of `directory` (`.yaml` and `.yml` alike); anything there that must not be
    read is an error, and so is one stem with both endings (which file would count?)."""
    paths, diags = [], []
    for path in tree.files(directory, recursive=recursive):
        if path.endswith(YAML_SUFFIXES):
            paths.append(path)
            continue
        diags += check_listed(tree, path)
    stems: dict[str, str] = {}
    for path in sorted(paths):
        stem = strip_yaml_suffix(path)
        if stem in stems:
            msg = f"{stems[stem]} and {path} name the same object: keep one of them"
            diags.append(Diagnostic(path, 1, 1, msg))
        stems.setdefault(stem, path)
    return [p for p in paths if stems[strip_yaml_suffix(p)] == p], diags


def load_layout(
    tree: FileTree, limits: Limits = DEFAULT_LIMITS
) -> tuple[str | None, list[Diagnostic]]:
    """layouts/email.html, checked: a sandboxed template that places {{ content }}."""
    data, problems = read_checked(tree, LAYOUT_FILE, limits.file_bytes)
    if problems or data is None:
        return None, problems
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, [Diagnostic(LAYOUT_FILE, 1, 1, "file is not valid UTF-8")]
    issues = check_template(text, LAYOUT_NAMES, "the email layout") or trial_render(
        text, LAYOUT_SAMPLE, limits
    )
    diags = [Diagnostic(LAYOUT_FILE, i.line, i.col, i.message) for i in issues]
    if not issues and "content" not in placeholders(text):
        diags.append(
            Diagnostic(LAYOUT_FILE, 1, 1, "the layout must place the message with {{ content }}")
        )
    return (None if diags else text), diags


def _parse_broadcasts(
    tree: FileTree, paths: list[str], limits: Limits, files: FileCache | None
) -> tuple[list[ParsedBroadcast], list[Diagnostic], dict[str, str]]:
    """Every broadcast file parsed and checked, or read from `files` when it was before; and
    the entries of the files parsed now, to keep once the plan is made."""
    diags: list[Diagnostic] = []
    read: list[tuple[str, bytes]] = []
    for path in paths:
        data, problems = read_checked(tree, path, limits.file_bytes)
        diags += problems
        if data is not None:
            read.append((path, data))
    keys = [file_key(path, data, limits) for path, data in read] if files is not None else []
    kept = files.parsed_files(keys) if files is not None and keys else {}
    fresh: dict[str, str] = {}
    broadcasts = []
    for i, (path, data) in enumerate(read):
        entry = kept.get(keys[i]) if keys else None
        parsed = decode(path, entry) if entry is not None else None
        if parsed is None:
            parsed, problems = parse_broadcast(path, data, limits)
            diags += problems
            if keys and parsed is not None and not problems:
                fresh[keys[i]] = encode(parsed)
        if parsed is not None:
            broadcasts.append(parsed)
    return broadcasts, diags, fresh


def load_repository(
    tree: FileTree,
    root: Path,
    env: Mapping[str, str],
    store: str | None = None,
    files: Callable[[Settings], FileCache | None] | None = None,
) -> LoadedRepository:
    """Parse and check every file; never stops at the first error. With `files`, broadcast files
    parsed before are read from the cache it gives for the settings (repo/parsecache.py), and
    the others are in `parsed`, for the caller to keep."""
    doc, settings, diags = _load_settings(tree, root, env, store)
    catalog, problems = _load_catalog(tree, doc, settings)
    diags += problems
    broadcast_paths, problems = _yaml_files(tree, BROADCASTS_DIR, recursive=True)
    diags += problems
    limits = settings.limits if settings is not None else DEFAULT_LIMITS
    cache = files(settings) if files is not None and settings is not None else None
    broadcasts, problems, parsed = _parse_broadcasts(tree, broadcast_paths, limits, cache)
    diags += problems
    diags += duplicate_diagnostics(((b.id, b.origin) for b in broadcasts), "broadcast id")
    email_paths, problems = _yaml_files(tree, EMAILS_DIR, recursive=False)
    diags += problems
    has_admins = settings is None or bool(settings.mail.admins)
    ctx = EmailContext(catalog, has_admins=has_admins, limits=limits)
    emails = []
    for path in email_paths:
        data, problems = read_checked(tree, path, limits.file_bytes)
        if data is not None:
            email, problems = parse_system_email(path, data, ctx)
            if email is not None:
                emails.append(email)
        diags += problems
    diags += duplicate_diagnostics(((e.slug, e.origin) for e in emails), "system email")
    layout, problems = load_layout(tree, limits)
    diags += problems
    return LoadedRepository(
        settings,
        catalog,
        tuple(broadcasts),
        tuple(emails),
        tuple(sort_diagnostics(diags)),
        tree.info,
        layout,
        parsed=tuple(parsed.items()),
    )


def resolve_desired(
    loaded: LoadedRepository, refs: References
) -> tuple[DesiredState | None, list[Diagnostic]]:
    """The desired state, with customer refs resolved; None when any ref or slug is unknown."""
    broadcasts, diags = resolve_targets(loaded.broadcasts, refs)
    if not loaded.ok or has_errors(diags):
        return None, diags
    assert loaded.settings is not None
    state = DesiredState(
        broadcasts=tuple(sorted(broadcasts, key=lambda b: b.id)),
        system_emails=tuple(sorted(loaded.emails, key=lambda e: e.slug)),
        imports=Imports(loaded.settings.imports),
        prune=loaded.settings.prune,
        source=loaded.source,
    )
    return state, diags
