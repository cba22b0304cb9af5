"""Registered defaults and events: commsync's core catalog, add-ons and `catalogs:` directories.

A catalog is a directory with `groups/*.yaml` (shared payload keys), `events/*.yaml` and
`emails/*.yaml` (default system emails). Add-ons register one through the `commsync.catalog`
entry-point group; the entry point names a directory, or a callable returning one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from commsync.catalog.payload import value_problem
from commsync.config.files import (
    YAML_SUFFIXES,
    DirectoryTree,
    FileTree,
    check_listed,
    read_checked,
)
from commsync.config.schema import schema_diagnostics
from commsync.config.yamlpos import YamlDoc, as_list, load_yaml
from commsync.diagnostics import Diagnostic
from commsync.model import (
    NETWORK_CONTEXT,
    SAMPLE_NETWORK,
    Catalog,
    DefaultEmail,
    EventDef,
    PayloadKey,
    PayloadType,
    SystemEmailFields,
)
from commsync.model.durations import canonical
from commsync.render.checks import subject_diagnostics, template_diagnostics

ENTRY_POINT_GROUP = "commsync.catalog"
CORE_DIR = Path(__file__).resolve().parent / "core"


@dataclass(frozen=True, slots=True)
class CatalogDir:
    """One catalog to load: a label naming it, a tree, and its directory inside the tree."""

    label: str
    tree: FileTree
    base: str = ""

    def path(self, sub: str) -> str:
        return f"{self.base}/{sub}" if self.base else sub


@dataclass
class _Loaded:
    doc: YamlDoc
    source: str


def _docs(cat: CatalogDir, sub: str, schema: str, diags: list[Diagnostic]) -> list[YamlDoc]:
    out = []
    for path in cat.tree.files(cat.path(sub), recursive=False):
        if not path.endswith(YAML_SUFFIXES):
            diags.extend(check_listed(cat.tree, path))
            continue
        data, problems = read_checked(cat.tree, path)
        if data is None:
            diags.extend(problems)
            continue
        doc, problems = load_yaml(path, data)
        diags.extend(problems)
        if doc is None or problems:
            continue
        schema_problems = schema_diagnostics(doc, schema)
        diags.extend(schema_problems)
        if not schema_problems:
            out.append(doc)
    return out


def _register(
    table: dict[str, _Loaded],
    slug: str,
    doc: YamlDoc,
    source: str,
    what: str,
    diags: list[Diagnostic],
) -> bool:
    first = table.get(slug)
    if first is not None:
        msg = f"{what} {slug!r} is registered twice: by {first.source} ({first.doc.path}) and by {source}"
        diags.append(doc.diag("", msg))
        return False
    table[slug] = _Loaded(doc, source)
    return True


def _payload_keys(raw: object) -> list[PayloadKey]:
    assert isinstance(raw, dict)
    return [
        PayloadKey(
            name,
            PayloadType(spec["type"]),
            str(spec["description"]),
            spec["example"],
            spec.get("format"),
        )
        for name, spec in raw.items()
    ]


def _build_event(entry: _Loaded, groups: dict[str, _Loaded], diags: list[Diagnostic]) -> EventDef:
    value = entry.doc.value
    assert isinstance(value, dict)
    keys: dict[str, PayloadKey] = {}
    for i, name in enumerate(as_list(value.get("payload_groups"))):
        group = groups.get(str(name))
        if group is None:
            known = ", ".join(sorted(groups)) or "none"
            diags.append(
                entry.doc.diag(
                    f"/payload_groups/{i}", f"unknown payload group {name!r} (known: {known})"
                )
            )
            continue
        group_value = group.doc.value
        assert isinstance(group_value, dict)
        keys.update({k.name: k for k in _payload_keys(group_value["keys"])})
    keys.update({k.name: k for k in _payload_keys(value.get("payload") or {})})
    return EventDef(
        str(value["event"]), str(value["description"]), tuple(keys.values()), entry.source
    )


def _build_default(
    entry: _Loaded, events: dict[str, EventDef], diags: list[Diagnostic]
) -> DefaultEmail | None:
    doc, value = entry.doc, entry.doc.value
    assert isinstance(value, dict)
    event = events.get(str(value["event"]))
    if event is None:
        diags.append(doc.diag("/event", f"unknown event {value['event']!r}"))
        return None
    allowed = event.key_names | frozenset(NETWORK_CONTEXT)
    context = f"event {event.slug}"
    sample = {**event.mock_payload(), **SAMPLE_NETWORK}
    problems = subject_diagnostics(doc, "/subject", str(value["subject"]))
    for field in ("subject", "content"):
        problems += template_diagnostics(
            doc, f"/{field}", str(value[field]), allowed, context, sample
        )
    diags.extend(problems)
    if problems:
        return None
    fields = SystemEmailFields.from_json({**value, "delay": canonical(value.get("delay", 0))})
    critical, version = value.get("critical") is True, value["version"]
    assert isinstance(version, int)
    return DefaultEmail(str(value["email"]), fields, critical, version, entry.source)


def build_catalog(dirs: Sequence[CatalogDir]) -> tuple[Catalog, list[Diagnostic]]:
    """Load every catalog; a slug registered twice is an error naming both sources."""
    diags: list[Diagnostic] = []
    groups: dict[str, _Loaded] = {}
    events_raw: dict[str, _Loaded] = {}
    emails_raw: dict[str, _Loaded] = {}
    for cat in dirs:
        for doc in _docs(cat, "groups", "catalog-group.schema.json", diags):
            _register(groups, str(_get(doc, "group")), doc, cat.label, "payload group", diags)
            diags.extend(_example_problems(doc, "/keys", _get(doc, "keys")))
        for doc in _docs(cat, "events", "catalog-event.schema.json", diags):
            _register(events_raw, str(_get(doc, "event")), doc, cat.label, "event", diags)
            diags.extend(_example_problems(doc, "/payload", _optional(doc, "payload")))
        for doc in _docs(cat, "emails", "catalog-email.schema.json", diags):
            _register(emails_raw, str(_get(doc, "email")), doc, cat.label, "default email", diags)
    events = {slug: _build_event(e, groups, diags) for slug, e in sorted(events_raw.items())}
    defaults = {}
    for slug, entry in sorted(emails_raw.items()):
        default = _build_default(entry, events, diags)
        if default is not None:
            defaults[slug] = default
    return Catalog(events, defaults), diags


def _get(doc: YamlDoc, key: str) -> object:
    assert isinstance(doc.value, dict)
    return doc.value[key]


def _optional(doc: YamlDoc, key: str) -> object:
    assert isinstance(doc.value, dict)
    return doc.value.get(key) or {}


def _example_problems(doc: YamlDoc, pointer: str, raw: object) -> list[Diagnostic]:
    """Each key's example must be a value of its type: it is the mock payload of previews, test
    sends and validate's sample rendering."""
    return [
        doc.diag(f"{pointer}/{key.name}/example", f"the example {problem}")
        for key in _payload_keys(raw)
        if (problem := value_problem(key, key.example))
    ]


def core_catalog_dir() -> CatalogDir:
    return CatalogDir("commsync (core)", DirectoryTree(CORE_DIR))


def addon_catalog_dirs() -> tuple[list[CatalogDir], list[Diagnostic]]:
    """Catalogs registered by installed add-ons through the `commsync.catalog` entry points."""
    dirs: list[CatalogDir] = []
    diags: list[Diagnostic] = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "unknown distribution"
        label = f"add-on {dist} (entry point {ep.name!r})"
        try:
            target = ep.load()
            path = Path(str(target() if callable(target) else target))
        except Exception as exc:  # an add-on's bug must not hide which add-on it is
            diags.append(Diagnostic(f"<{label}>", 1, 1, f"cannot load the catalog: {exc}"))
            continue
        if not path.is_dir():
            diags.append(Diagnostic(f"<{label}>", 1, 1, f"catalog directory {path} does not exist"))
            continue
        dirs.append(CatalogDir(label, DirectoryTree(path)))
    return dirs, diags


def project_catalog_dirs(tree: FileTree, catalogs: Iterable[str]) -> list[CatalogDir]:
    """The `catalogs:` directories of the operator's repository, read from the same tree."""
    return [CatalogDir(f"catalogs: {c}", tree, c.strip("/")) for c in catalogs]
