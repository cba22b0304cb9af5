"""--ref: the desired state read from a git commit (GitPython), never from the working tree."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.helpers import SETTINGS, Repo, run_cli

NOTICE = "kind: notice\ntargets: {all: true}\nsubject: SUBJECT\ncontent: Body\n"


def notice(subject: str) -> str:
    return NOTICE.replace("SUBJECT", subject)


def _addresses(repo: Repo, *args: str) -> dict[str, str]:
    return {a["address"]: a["action"] for a in repo.plan_json(*args)["actions"]}


def test_ref_reads_the_commit_and_ignores_uncommitted_files(repo: Repo) -> None:
    repo.write("broadcasts/a.yaml", notice("Committed"))
    sha = repo.commit_all("add a")
    repo.write("broadcasts/a.yaml", notice("Uncommitted edit"))
    repo.write("broadcasts/b.yaml", notice("Untracked"))
    repo.write("broadcasts/broken.yaml", "kind: [")
    assert repo.cli("validate").exit_code == 1
    assert repo.cli("validate", "--ref", "HEAD").exit_code == 0
    document = repo.plan_json("--ref", "HEAD")
    assert document["source"] == {
        "label": f"commit {sha[:12]}",
        "commit": sha,
        "author": "Test Operator",
    }
    (action,) = [a for a in document["actions"] if a["kind"] == "notice"]
    assert action["address"] == "notice.a" and action["desired"]["spec"]["subject"] == "Committed"


def test_ref_works_on_a_detached_head_and_older_commits(repo: Repo) -> None:
    repo.write("broadcasts/a.yaml", notice("One"))
    first = repo.commit_all("one")
    repo.write("broadcasts/b.yaml", notice("Two"))
    repo.commit_all("two")
    branch = repo.git("rev-parse", "--abbrev-ref", "HEAD")
    repo.git("checkout", "-q", "--detach", first)
    assert set(_addresses(repo, "--ref", "HEAD")) >= {"notice.a"}
    assert "notice.b" not in _addresses(repo, "--ref", "HEAD")
    assert "notice.b" in _addresses(repo, "--ref", branch)


def test_ref_in_a_project_below_the_git_root(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    project = Repo(tmp_path / "ops" / "comms")
    project.write("commsync.yaml", SETTINGS)
    project.write("broadcasts/a.yaml", notice("Nested"))
    project.commit_all("nested project")
    project.write("broadcasts/a.yaml", "kind: [")
    assert "notice.a" in _addresses(project, "--ref", "HEAD")


def test_bad_refs_are_clear_errors(repo: Repo, tmp_path: Path) -> None:
    result = repo.cli("plan", "--ref", "no-such-branch")
    assert (
        result.exit_code == 1 and result.stderr == "error: unknown git reference 'no-such-branch'\n"
    )
    outside = tmp_path / "plain"
    outside.mkdir()
    (outside / "commsync.yaml").write_text(SETTINGS)
    result = run_cli("-C", str(outside), "validate", "--ref", "HEAD")
    assert result.exit_code == 1 and "--ref needs a git repository" in result.stderr


def test_ref_reads_catalog_directories_from_the_commit_too(repo: Repo) -> None:
    repo.write("commsync.yaml", SETTINGS + "catalogs: [addons/x]\n")
    repo.commit_all("catalogs setting without the directory")
    repo.write("addons/x/events/e.yaml", "event: e\ndescription: E.\n")
    assert repo.cli("validate", "--no-store").exit_code == 0
    result = repo.cli("validate", "--no-store", "--ref", "HEAD")
    assert (
        result.exit_code == 1
        and "catalog directory 'addons/x' is missing or empty" in result.stdout
    )
