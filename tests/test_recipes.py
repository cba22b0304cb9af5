"""The CI recipes and docs/gitops.md are run, so they cannot rot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
GITHUB = ROOT / "examples" / "ci" / "github-actions.yml"
GITLAB = ROOT / "examples" / "ci" / "gitlab-ci.yml"
# Steps that need the CI provider itself (installing, commenting): checked to be what they are,
# not run here.
NOT_RUN = (
    re.compile(r"^pip install (--quiet )?'commsync\[postgres\]'$"),
    re.compile(r"^gh pr comment "),
    re.compile(r"^curl .*merge_requests/\$CI_MERGE_REQUEST_IID/notes"),
)


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMSYNC_")}
    return {**env, "PATH": f"{bin_dir}:{env['PATH']}", "HOME": str(tmp), **extra}


def _bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _run_all(commands: list[str], cwd: Path, env: dict[str, str]) -> list[str]:
    ran = []
    for command in commands:
        if any(p.match(command) for p in NOT_RUN):
            continue
        done = _bash(command, cwd, env)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        ran.append(command)
    return ran


def _upstream_and_checkout(tmp: Path, env: dict[str, str]) -> tuple[Path, Path, str]:
    """A comms repository with a seeded store, a pull-request branch, and a CI checkout of it."""
    setup = _bash(
        "commsync init --demo upstream > /dev/null\n"
        "cd upstream\n"
        "commsync apply --yes > /dev/null\n"
        "git switch -q -c pr\n"
        "sed -i 's/is here/has landed/' broadcasts/notices/new-block-editor.yaml\n"
        "git commit -q -am 'Reword the editor notice'\n"
        "git switch -q main\n",
        tmp,
        env,
    )
    assert setup.returncode == 0, setup.stderr
    upstream = tmp / "upstream"
    checkout = tmp / "checkout"
    clone = _bash(
        f"git clone -q file://{upstream} {checkout} && cd {checkout} && git checkout -q pr",
        tmp,
        env,
    )
    assert clone.returncode == 0, clone.stderr
    store = f"sqlite:///{upstream / '.commsync' / 'store.db'}"
    return upstream, checkout, store


def _steps(document: dict[str, object]) -> dict[str, list[str]]:
    jobs = document["jobs"]
    assert isinstance(jobs, dict)
    return {
        name: [step["run"] for step in job["steps"] if "run" in step] for name, job in jobs.items()
    }


def _identity() -> dict[str, str]:
    return {
        f"GIT_{role}_{part}": value
        for role in ("AUTHOR", "COMMITTER")
        for part, value in (("NAME", "CI"), ("EMAIL", "ci@example.com"))
    }


def test_the_github_actions_recipe_runs(tmp_path: Path) -> None:
    document = yaml.safe_load(GITHUB.read_text())
    steps = _steps(document)
    assert set(steps) == {"plan", "apply", "drift", "deliver"}
    assert [t["cron"] for t in document[True]["schedule"]] == ["17 6 * * *", "*/5 * * * *"]
    env = _env(tmp_path, **_identity())
    _, checkout, store = _upstream_and_checkout(tmp_path, env)
    head = _bash("git rev-parse HEAD", checkout, env).stdout.strip()
    ci = {**env, "COMMSYNC_STORE": store, "GITHUB_BASE_REF": "main", "GITHUB_SHA": head}

    ran = _run_all(steps["plan"], checkout, ci)
    assert ran == [
        "commsync validate --format github",
        'commsync plan --ref HEAD --format markdown --changed-since "origin/$GITHUB_BASE_REF" > plan.md',
    ]
    comment = (checkout / "plan.md").read_text()
    assert comment.startswith("### commsync plan: 1 to update.")
    assert comment.count("<details>") == 1 and "has landed" in comment

    ran = _run_all(steps["apply"], checkout, ci)
    assert ran == ['commsync apply --ref "$GITHUB_SHA" --yes', "commsync status"]
    assert _run_all(steps["drift"], checkout, ci) == [
        "commsync drift --ref HEAD --detailed-exitcode"
    ]
    again = _bash('commsync apply --ref "$GITHUB_SHA" --yes', checkout, ci)
    assert "Nothing to do" in again.stdout  # a re-run job changes nothing
    _delivers_what_is_due(steps["deliver"], checkout, ci)


def _delivers_what_is_due(commands: list[str], checkout: Path, ci: dict[str, str]) -> None:
    """The scheduled deliver job sends what an event queued, with nobody else running."""
    fired = _bash(
        "commsync event payment_received --data events/payment_received.json --key ci-1",
        checkout,
        ci,
    )
    assert fired.returncode == 0, fired.stderr
    assert "queue: 1 due" in _bash("commsync queue", checkout, ci).stdout
    assert _run_all(commands, checkout, ci) == ["commsync deliver --once"]
    assert _bash("commsync queue", checkout, ci).stdout.startswith("queue: empty")


def test_the_gitlab_recipe_runs(tmp_path: Path) -> None:
    document = yaml.safe_load(GITLAB.read_text())
    before = document["default"]["before_script"]
    jobs = {
        name: job["script"]
        for name, job in document.items()
        if isinstance(job, dict) and "script" in job
    }
    assert set(jobs) == {"plan", "apply", "drift", "deliver"}
    env = _env(tmp_path, **_identity())
    _, checkout, store = _upstream_and_checkout(tmp_path, env)
    head = _bash("git rev-parse HEAD", checkout, env).stdout.strip()
    ci = {
        **env,
        "COMMSYNC_STORE": store,
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        "CI_COMMIT_SHA": head,
    }
    for name in ("plan", "apply", "drift"):  # deliver: below, with something to deliver
        commands = [" ".join(str(c).split()) for c in [*before, *jobs[name]]]
        ran = _run_all(commands, checkout, ci)
        assert any(c.startswith("commsync ") for c in ran), name
    assert (checkout / "plan.md").read_text().startswith("### commsync plan: 1 to update.")
    _delivers_what_is_due([" ".join(str(c).split()) for c in jobs["deliver"]], checkout, ci)


def test_the_pre_commit_hook_validates(tmp_path: Path) -> None:
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "commsync-validate" and hook["pass_filenames"] is False
    files = re.compile(hook["files"])
    for path in (
        "commsync.yaml",
        "broadcasts/notices/a.yaml",
        "emails/x.yml",
        "layouts/email.html",
    ):
        assert files.search(path), path
    assert not files.search("README.md")
    env = _env(tmp_path, **_identity())
    assert _bash("commsync init --demo repo > /dev/null", tmp_path, env).returncode == 0
    repo = tmp_path / "repo"
    assert _bash(hook["entry"], repo, env).returncode == 0
    (repo / "broadcasts/notices/broken.yaml").write_text("kind: notice\nsubject: [\n")
    broken = _bash(hook["entry"], repo, env)
    assert broken.returncode == 1 and "broadcasts/notices/broken.yaml:3:1: error:" in broken.stdout


def test_the_gitops_walkthrough_runs(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "gitops.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", doc, re.S)
    assert len(blocks) >= 5
    env = _env(tmp_path, **_identity())
    done = _bash("\n".join(blocks), tmp_path, env)
    assert done.returncode == 0, (done.stdout, done.stderr)
    out = done.stdout
    assert "\nmain\n" in out  # `git branch --show-current` after init
    assert "written   emails/site_published_admin.yaml" in out
    assert "reset     emails/payment_received_customer.yaml" in out
    assert "summer-sale.html" in out
    assert "\n3\n" in out  # three sections in the pull-request comment
    assert "notices/summer-sale" in out and "Apply complete" in out
    plan = (tmp_path / "comms" / "plan.md").read_text()
    assert "1 to create, 1 to import, 1 to reset." in plan
