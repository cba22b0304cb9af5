"""Run the `$ commsync …` lines of a document's ```console blocks and compare (or rewrite) outputs.

    python -m tests.docs_runner docs/commands.md          # check
    python -m tests.docs_runner docs/commands.md --write  # regenerate the outputs after a change

Every block runs in one fresh temporary directory, in order, so later commands see what earlier
ones created. Random parts (store ids, plan ids, commit hashes, the temp path) are normalised.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import tempfile
from pathlib import Path

from click.testing import CliRunner

from commsync.cli import cli
from commsync.delivery.transport import hostname

BLOCK = re.compile(r"```console\n(.*?)```", re.S)
_NORMALISE = [
    (re.compile(r"\b[0-9a-f]{12}\b"), "0123456789ab"),  # store ids, plan ids, commits
    (re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}"), "2026-11-27 12:00"),
    # the demo's scheduled broadcast is years ahead: how far changes every day
    (re.compile(r"next in \d{3,}d(?: \d+h)?"), "next in 3350d 21h"),
    (
        re.compile(r"\bv1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"),
        "v1.eyJjIjoiMTAwMSIsIngiOjE3OTgzNzk2MDB9.signature",
    ),
]


def _run(command: str, tmp: Path) -> str:
    args = shlex.split(command)
    assert args[0] == "commsync", command
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMSYNC_")}
    identity = {
        f"GIT_{role}_{part}": value
        for role in ("AUTHOR", "COMMITTER")
        for part, value in (("NAME", "Ada Operator"), ("EMAIL", "ada@acme.example"))
    }
    result = CliRunner(env={**env, **identity, "NO_COLOR": "1"}).invoke(
        cli, args[1:], catch_exceptions=False
    )
    text = result.output.replace(str(tmp), "/home/operator").replace(hostname(), "ci-runner")
    for pattern, replacement in _NORMALISE:
        text = pattern.sub(replacement, text)
    return text


def render(document: str, workdir: Path | None = None) -> str:
    """The document with every console block's outputs replaced by what the commands print."""
    with tempfile.TemporaryDirectory(dir=workdir) as name:
        tmp = Path(name).resolve()
        cwd = Path.cwd()
        os.chdir(tmp)
        try:

            def fill(match: re.Match[str]) -> str:
                out = []
                for line in match.group(1).splitlines():
                    if line.startswith("$ "):
                        out.append(line + "\n" + _run(line[2:], tmp))
                return "```console\n" + "".join(out) + "```"

            return BLOCK.sub(fill, document)
        finally:
            os.chdir(cwd)


def main() -> int:
    path = Path(sys.argv[1])
    text = path.read_text(encoding="utf-8")
    fresh = render(text)
    if "--write" in sys.argv:
        path.write_text(fresh, encoding="utf-8")
        return 0
    return 0 if fresh == text else 1


if __name__ == "__main__":
    raise SystemExit(main())
