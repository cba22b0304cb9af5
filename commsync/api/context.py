"""What every use case starts from, written once: the repository (at a ref or the working tree),
its settings, and the store, opened on first use and kept until the service closes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from commsync.api.project import Project
from commsync.config.files import DirectoryTree, FileTree, GitTree, read_checked
from commsync.config.settings import SETTINGS_FILE, Settings, build_settings, settings_diagnostics
from commsync.config.yamlpos import load_yaml
from commsync.diagnostics import has_errors
from commsync.errors import ConfigError, ValidationFailed
from commsync.store.roles import PlanSource, Store

if TYPE_CHECKING:
    from commsync.repo.broadcasts import References
    from commsync.repo.loader import LoadedRepository
    from commsync.store.light import SqlitePlanReader


@dataclass
class Context:
    project: Project
    pool_size: int = 5  # connections each store keeps open (`serve` asks for more)
    read_timeout: float | None = None  # serve: reads on the event loop give up after this
    stores: dict[str, Store] = field(default_factory=dict)
    _settings: Settings | None = None

    def tree(self, ref: str | None) -> FileTree:
        root = self.project.root
        return GitTree(root, ref) if ref else DirectoryTree(root)

    def load(self, ref: str | None = None, *, cached: bool = False) -> LoadedRepository:
        """The repository at `ref`, or the working tree (with its HEAD commit as provenance).
        `cached` (commands that open the store anyway): broadcast files parsed before are read
        from the store."""
        # imported here: commands that read only commsync.yaml and the store start faster
        from commsync.repo.git import inspect_worktree
        from commsync.repo.loader import load_repository

        p = self.project
        files = self._kept_parses if cached else None
        loaded = load_repository(self.tree(ref), p.root, p.env, p.store_url, files)
        if ref is None:
            catalogs = loaded.settings.catalogs if loaded.settings else ()
            info, dirty = inspect_worktree(p.root, tuple(catalogs))
            loaded = replace(loaded, source=info, uncommitted=tuple(dirty))
        return loaded

    def valid(
        self, ref: str | None = None, message: str | None = None, *, cached: bool = False
    ) -> LoadedRepository:
        """The repository, which must hold no error at all (apply, plan, edits)."""
        loaded = self.load(ref, cached=cached)
        if not loaded.ok:
            raise ValidationFailed(loaded.diagnostics, message)
        return loaded

    def usable(self, ref: str | None = None) -> tuple[LoadedRepository, Settings]:
        """The repository and its settings; errors in other files are tolerated (events, lists)."""
        loaded = self.load(ref)
        if loaded.settings is None:
            raise ValidationFailed(loaded.diagnostics)
        return loaded, loaded.settings

    def settings(self) -> Settings:
        """The working tree's commsync.yaml, for commands that read no other file (read once)."""
        if self._settings is None:
            self._settings = self._read_settings()
        return self._settings

    def _read_settings(self) -> Settings:
        p = self.project
        data, problems = read_checked(DirectoryTree(p.root), SETTINGS_FILE)
        if problems:
            raise ValidationFailed(problems)
        if data is None:
            raise ConfigError(
                f"no {SETTINGS_FILE} in {p.root}; run `commsync init` to create a repository"
            )
        doc, diags = load_yaml(SETTINGS_FILE, data)
        if doc is not None:
            diags += settings_diagnostics(doc)
        if doc is None or has_errors(diags):
            raise ValidationFailed(diags)
        return build_settings(doc, p.root, p.env, p.store_url)

    def store(self, settings: Settings | None = None) -> Store:
        """The store `settings` name (default: the working tree's), opened and migrated on
        first use and kept until `close`."""
        url = (settings or self.settings()).store_url
        store = self.stores.get(url)
        if store is None:
            from commsync.store.sql import open_store  # SQLAlchemy: only once a store is needed

            store = self.stores[url] = open_store(url, self.pool_size, self.read_timeout)
        return store

    def _kept_parses(self, settings: Settings) -> PlanSource | None:
        """Where the broadcast files parsed before are kept; None when the store is a SQLite
        file that does not exist yet: it keeps nothing, and a run that then reports an error
        in a file must not have created it."""
        from commsync.store.light import sqlite_file

        url = settings.store_url
        path = sqlite_file(url)
        if url not in self.stores and path is not None and not path.exists():
            return None
        return self.planning(settings)

    def planning(self, settings: Settings) -> PlanSource:
        """What a plan reads: a SQLite store at this schema read directly (no SQLAlchemy), the
        store itself otherwise (opened, created or migrated)."""
        light = self.light(settings)
        return light if light is not None else self.store(settings)

    def light(self, settings: Settings | None = None) -> SqlitePlanReader | None:
        """A SQLite store at this schema, read directly (no SQLAlchemy), unless the store is
        open already; None: use `store`."""
        from commsync.store.light import open_references

        url = (settings or self.settings()).store_url
        return None if url in self.stores else open_references(url)

    def references(self, settings: Settings) -> References:
        """What a repository's customer and product refs are checked against."""
        light = self.light(settings)
        return light if light is not None else self.store(settings)

    def close(self) -> None:
        stores, self.stores = self.stores, {}
        for store in stores.values():
            store.close()
