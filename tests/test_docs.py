"""Documentation stays true: every command documented, doc outputs re-run, README's commands in CI."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from commsync.cli import cli
from tests import docs_runner

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
COMMANDS_DOC = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")


def _leaves(group: click.Group, prefix: str = "commsync") -> list[tuple[str, click.Command]]:
    out = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        out.extend(
            _leaves(command, path) if isinstance(command, click.Group) else [(path, command)]
        )
    return out


LEAVES = _leaves(cli)


def test_there_are_commands() -> None:
    assert {p for p, _ in LEAVES} >= {
        "commsync init",
        "commsync validate",
        "commsync plan",
        "commsync emails list",
    }


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=[p for p, _ in LEAVES])
def test_every_command_has_help_and_is_documented(path: str, command: click.Command) -> None:
    assert command.help and len(command.help) > 40, f"{path} has no real help text"
    assert all(p.help for p in command.params if isinstance(p, click.Option)), (
        f"{path} has an option without help"
    )
    assert f"`{path}" in README, f"README.md does not mention {path}"
    assert f"`{path}" in COMMANDS_DOC, f"docs/commands.md does not document {path}"
    assert (
        re.search(
            rf"^\$ {re.escape(path.replace('commsync ', 'commsync -C demo ', 1))}",
            COMMANDS_DOC,
            re.M,
        )
        or path == "commsync init"
    ), f"docs/commands.md shows no example run of {path}"


def test_command_outputs_in_the_docs_are_what_the_commands_print(tmp_path: Path) -> None:
    assert docs_runner.render(COMMANDS_DOC, tmp_path) == COMMANDS_DOC, (
        "run: python -m tests.docs_runner docs/commands.md --write"
    )


def test_ci_runs_exactly_the_readme_test_command() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    assert "commsync init --demo demo" in blocks[0] and "commsync -C demo plan" in blocks[0]
    assert blocks[0].endswith("commsync -C demo apply --yes")
    test_command = blocks[1]
    assert "pytest" in test_command and "[test]" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_relative_links_in_the_docs_resolve() -> None:
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)  # not in code
        for target in re.findall(r"\]\(([^)#:]+)\)", text):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_events_doc_lists_every_event_key_and_route(tmp_path: Path) -> None:
    from commsync.api import Project
    from commsync.catalog.loader import build_catalog, core_catalog_dir
    from commsync.http.app import create_app

    doc = (ROOT / "docs" / "events.md").read_text(encoding="utf-8")
    catalog, _ = build_catalog([core_catalog_dir()])
    for slug, event in catalog.events.items():
        assert f"| `{slug}` |" in doc, slug
        for key in event.keys:
            assert f"`{key.name}` ({key.type})" in doc, (slug, key.name)
    paths = create_app(Project(tmp_path)).openapi()["paths"]
    for path, operations in paths.items():
        for method in operations:
            route = f"{method.upper()} {path.replace('{customer_id}', '{id}').replace('{notice_id}', '{notice}')}"
            assert f"`{route}`" in doc, route
