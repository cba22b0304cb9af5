"""Broadcast files parsed before: the key a file is kept under, and what is kept of it.

A plan parses and checks every broadcast file (YAML with positions, the schema, the templates):
0.2 s for 2,000 files, paid again by every plan of a repository that did not change. The store
keeps what the loader made of each file that had nothing to report (`FileCache`), under a digest
of the file's bytes, its path, the limits and this commsync's code, so a file is read from there
only when parsing it again would give the same result. A file with any diagnostic is never kept:
it is parsed again, and reported, every time.

What is kept is what the plan uses: the fields, the refs with their pointers, where the file
defines its broadcast, and the positions of the refs (for an unknown customer or product, which
the store decides later).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from functools import cache
from pathlib import Path
from typing import Protocol

import orjson

from commsync.config.resources import data_dir
from commsync.config.yamlpos import Mark, YamlDoc
from commsync.model import BroadcastKind, Origin
from commsync.model.limits import Limits
from commsync.repo.broadcasts import ParsedBroadcast


class FileCache(Protocol):
    """Where parsed files are kept (the store's `ParsedFiles` role)."""

    def parsed_files(self, keys: Collection[str]) -> dict[str, str]: ...

    def keep_parsed_files(self, entries: Mapping[str, str]) -> None: ...


@cache
def code_fingerprint() -> str:
    """A digest of the code a parse depends on: commsync's own sources and schemas (their
    bytes: an edited checkout, or a reinstall of another version, never reads what other code
    wrote; 10 ms) and the versions of the parsers it calls."""
    import jinja2
    import yaml

    import commsync

    digest = hashlib.sha256(f"yaml {yaml.__version__}\0jinja2 {jinja2.__version__}\0".encode())
    for base in (Path(commsync.__file__).parent, data_dir("schemas")):
        for path in sorted(base.rglob("*")):
            if path.suffix in (".py", ".json", ".yaml"):
                digest.update(f"{path.relative_to(base)}\0".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def file_key(path: str, data: bytes, limits: Limits) -> str:
    digest = hashlib.sha256(f"{code_fingerprint()}\0{path}\0{limits!r}\0".encode())
    digest.update(data)
    return digest.hexdigest()


def encode(parsed: ParsedBroadcast) -> str:
    """The entry kept for a parsed file: JSON, by orjson (a quarter of Python's encoder's time,
    which was 30 µs a file), or by Python's encoder for what orjson refuses (an integer past 64
    bits, a key that is not a string)."""
    pointers = [pointer for _, pointer in (*parsed.customer_refs, *parsed.products)]
    marks = {pointer: parsed.doc.mark(pointer) for pointer in pointers}
    entry = {
        "id": parsed.id,
        "kind": parsed.kind.value,
        "fields": parsed.fields,
        "customers": parsed.customer_refs,
        "products": parsed.products,
        "all": parsed.all,
        "origin": [parsed.origin.line, parsed.origin.col],
        "marks": {pointer: [m.line, m.col] for pointer, m in marks.items()},
    }
    try:
        return orjson.dumps(entry).decode()
    except orjson.JSONEncodeError:
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


def decode(path: str, entry: str) -> ParsedBroadcast | None:
    """The parsed file again; None when the entry cannot be read (then the file is parsed)."""
    try:
        e = json.loads(entry)  # not orjson: it reads an integer past 64 bits as a float
        fields = e["fields"]
        if not isinstance(fields, dict):
            return None
        marks = {str(p): Mark(int(line), int(col)) for p, (line, col) in e["marks"].items()}
        line, col = e["origin"]
        return ParsedBroadcast(
            str(e["id"]),
            YamlDoc(path, fields, marks, {}),
            BroadcastKind(e["kind"]),
            fields,
            tuple((str(ref), str(pointer)) for ref, pointer in e["customers"]),
            tuple((str(slug), str(pointer)) for slug, pointer in e["products"]),
            e["all"] is True,
            Origin(path, int(line), int(col)),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
