"""Edits of repository files that keep everything else as it was: `emails import` and `emails reset`.

Removing keys works on lines, not by re-serialising YAML, so every kept line stays byte for byte:
comments, quoting, key order, blank lines. A top-level key owns its own lines (including its
value's, and an end-of-line comment) and the comment lines directly above it; removing the key
removes those. Other comments — the file's header, comments separated from a key by a blank line,
comments at the end — stay.
"""

from __future__ import annotations

from collections.abc import Iterable

import yaml

from commsync.errors import CommsyncError

SCHEMA_COMMENT = "# yaml-language-server: $schema=../schemas/email.schema.json"  # emails/<slug>


class EditError(CommsyncError):
    """The file cannot be edited safely by lines (flow style, several documents, …)."""


def _is_gap(line: str) -> bool:
    """A blank line or a comment at column 0: never part of a top-level key's value."""
    return not line.strip() or line.startswith("#")


def _top_level_keys(text: str, path: str) -> list[tuple[str, int]]:
    """(key, 0-based line) of each top-level key, in order."""
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise EditError(f"{path}: not valid YAML: {exc}") from exc
    if len(nodes) != 1 or not isinstance(nodes[0], yaml.MappingNode):
        raise EditError(f"{path}: expected one YAML mapping")
    root = nodes[0]
    if root.flow_style:
        raise EditError(f"{path}: written in flow style ({{…}}); write it as one key per line")
    keys = []
    for key, _ in root.value:
        if not isinstance(key, yaml.ScalarNode) or key.start_mark.column != 0:
            raise EditError(f"{path}: unexpected layout at line {key.start_mark.line + 1}")
        keys.append((str(key.value), key.start_mark.line))
    return keys


def remove_keys(text: str, remove: Iterable[str], path: str) -> tuple[str, list[str]]:
    """`text` without the top-level keys in `remove`; and the keys that were removed, in order."""
    unwanted = set(remove)
    lines = text.splitlines(keepends=True)
    keys = _top_level_keys(text, path)
    starts = [line for _, line in keys] + [len(lines)]
    drop: set[int] = set()
    removed = []
    for i, (key, start) in enumerate(keys):
        if key not in unwanted:
            continue
        removed.append(key)
        end = starts[i + 1]
        while end > start + 1 and _is_gap(lines[end - 1]):
            end -= 1  # the gap after the value belongs to nobody (or to the next key)
        above = start
        while above > (starts[i - 1] if i else 0) and lines[above - 1].startswith("#"):
            above -= 1  # the comment block directly above the key is the key's
        if i == 0:
            above = start  # the file's header stays
        drop.update(range(above, end))
    kept = [line for n, line in enumerate(lines) if n not in drop]
    out: list[str] = []
    for line in kept:
        if not line.strip() and (not out or not out[-1].strip()):
            continue  # no blank line at the top, none doubled
        out.append(line)
    while out and not out[-1].strip():
        out.pop()
    result = "".join(out)
    if result and not result.endswith("\n"):
        result += "\n"
    return result, removed


def import_file(slug: str, source: str, version: int, description: str) -> str:
    """The file `emails import` writes: the default, installed as it is, ready to customise."""
    return (
        f"{SCHEMA_COMMENT}\n"
        f"# {description}\n"
        f"# The registered default {slug} ({source}, version {version}), installed as it is.\n"
        "# Add keys (subject, content, delay, active, …) to customise it; `commsync emails reset`\n"
        "# removes them again.\n"
        f"email: {slug}\n"
    )
