"""Which customers a repository's customer refs name: one rule for every reader of the store."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

CHUNK = 500  # refs per query: well under SQLite's limit of bound parameters

# (refs, the same refs in lower case) -> rows (id, email_key, username) that may match them
Fetch = Callable[[Sequence[str], Sequence[str]], Iterable[Sequence[Any]]]


def match_customers(refs: Collection[str], fetch: Fetch) -> Mapping[str, tuple[str, ...]]:
    """For each ref, the ids of the customers whose id or username it equals, or whose email it
    equals in any case."""
    found: dict[str, set[str]] = {ref: set() for ref in refs}
    by_lower: dict[str, list[str]] = {}  # an email matches in any case
    for ref in found:
        by_lower.setdefault(ref.lower(), []).append(ref)
    ordered = sorted(found)
    for start in range(0, len(ordered), CHUNK):
        chunk = ordered[start : start + CHUNK]
        # each row to the refs it answers, by lookup (a scan of the chunk per row cost 0.1 s of
        # a 2,000-file plan)
        for cid, email_key, username in fetch(chunk, [r.lower() for r in chunk]):
            for ref in {str(cid), str(username)} & found.keys():
                found[ref].add(str(cid))
            for ref in by_lower.get(str(email_key), ()):
                found[ref].add(str(cid))
    return {ref: tuple(sorted(ids)) for ref, ids in found.items()}
