"""Editor support that works offline: the JSON Schemas written into the operator's repository
(`commsync schema --out schemas`, and `init`), relative modelines that point at them, and VS
Code's settings mapping files to schemas. Nothing refers to a URL that would have to be served.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from commsync.config.resources import data_dir
from commsync.config.schema import SCHEMA_FILES

SCHEMAS_DIR = "schemas"  # in the operator's repository, committed beside the files they check
EDITOR_SETTINGS = ".vscode/settings.json"
_GLOBS = {
    "commsync.schema.json": ["commsync.yaml"],
    "broadcast.schema.json": ["broadcasts/**/*.yaml", "broadcasts/**/*.yml"],
    "email.schema.json": ["emails/*.yaml", "emails/*.yml"],
}


def schema_for(rel: str) -> str:
    """The schema of a repository file: commsync.yaml, broadcasts/**, emails/*."""
    if rel.startswith("broadcasts/"):
        return "broadcast.schema.json"
    if rel.startswith("emails/"):
        return "email.schema.json"
    return "commsync.schema.json"


def modeline(rel: str) -> str:
    """The yaml-language-server line for the file at `rel` (a path relative to the repository
    root): a relative path to the repository's own copy of the schema."""
    up = "../" * rel.count("/")
    return f"# yaml-language-server: $schema={up}{SCHEMAS_DIR}/{schema_for(rel)}"


def write_schemas(out: Path) -> list[Path]:
    """Every schema of the installed commsync into `out` (relative `$ref`s: they resolve from
    there, offline)."""
    out.mkdir(parents=True, exist_ok=True)
    source = data_dir("schemas")
    written = []
    for name in SCHEMA_FILES:
        shutil.copyfile(source / name, out / name)
        written.append(out / name)
    return written


def editor_settings() -> str:
    """`.vscode/settings.json`: the YAML extension checks each file against the local schemas."""
    schemas = {f"./{SCHEMAS_DIR}/{name}": globs for name, globs in _GLOBS.items()}
    return json.dumps({"yaml.schemas": schemas}, indent=2) + "\n"
