"""Files shipped with commsync: the JSON Schemas and the example repository.

In a wheel they live under `commsync/_data/`; in a source checkout (and editable installs) they
are the top-level `schemas/` and `examples/` directories.
"""

from __future__ import annotations

from pathlib import Path

from commsync.errors import ConfigError

_PACKAGE = Path(__file__).resolve().parent.parent  # commsync/


def data_dir(name: str) -> Path:
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"commsync is installed without its {name}/ directory; reinstall it")
