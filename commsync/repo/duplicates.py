"""One identity, one file: diagnostics for ids or slugs defined in several files."""

from __future__ import annotations

from collections.abc import Iterable

from commsync.diagnostics import Diagnostic
from commsync.model import Origin


def duplicate_diagnostics(items: Iterable[tuple[str, Origin]], what: str) -> list[Diagnostic]:
    """An error at every definition of an identity defined more than once, naming the others."""
    by_key: dict[str, list[Origin]] = {}
    for key, origin in items:
        by_key.setdefault(key, []).append(origin)
    out = []
    for key, origins in by_key.items():
        for origin in origins if len(origins) > 1 else []:
            others = ", ".join(o.path for o in origins if o is not origin)
            message = f"duplicate {what} {key!r} (also in {others})"
            out.append(Diagnostic(origin.path, origin.line, origin.col, message))
    return out
