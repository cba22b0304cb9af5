"""The command line: exit codes, formats, init, imports, emails list, the installed entry point."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from commsync.config.schema import validator
from commsync.store.revision import HEAD
from tests.conftest import EXAMPLES
from tests.helpers import Repo, run_cli

COMMANDS = ["init", "validate", "plan", "emails", "customers", "products", "memberships"]


def test_help_lists_every_command_and_version_prints() -> None:
    result = run_cli("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert f"  {command} " in result.stdout
    assert run_cli("--version").stdout.startswith("commsync, version ")


def test_usage_errors_exit_64() -> None:
    result = run_cli("plan", "--format", "yaml")
    assert result.exit_code == 64
    assert "Invalid value for '--format'" in result.stderr
    assert run_cli("no-such-command").exit_code == 64


def test_a_directory_without_commsync_yaml_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("-C", str(tmp_path), "plan")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: no commsync.yaml in {tmp_path}")
    assert "commsync init" in result.stderr


def test_init_scaffolds_and_commits(tmp_path: Path) -> None:
    result = run_cli("-C", str(tmp_path), "init", "comms")
    assert result.exit_code == 0, result.output
    root = tmp_path / "comms"
    assert (root / "commsync.yaml").exists() and (root / "broadcasts" / "welcome.yaml").exists()
    assert (root / ".gitignore").read_text() == ".commsync/\n"
    log = subprocess.run(
        ["git", "-C", str(root), "log", "--format=%s", "--name-only"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Start managing customer communications with commsync" in log and "commsync.yaml" in log
    assert run_cli("-C", str(root), "validate").exit_code == 0
    again = run_cli("-C", str(tmp_path), "init", "comms")
    assert again.exit_code == 1 and "already exists; nothing was changed" in again.stderr


def test_init_inside_an_existing_repository_leaves_committing_to_the_operator(repo: Repo) -> None:
    result = run_cli("-C", str(repo.root), "init", "ops/comms")
    assert result.exit_code == 0
    assert f"inside the git repository at {repo.root}" in result.stdout
    assert f"git -C {repo.root} add ops/comms" in result.stdout
    assert "ops/comms/commsync.yaml" in repo.git("status", "--porcelain", "--untracked-files=all")


def test_init_demo_seeds_a_store_that_plan_reads(tmp_path: Path) -> None:
    result = run_cli("-C", str(tmp_path), "init", "--demo", "demo")
    assert result.exit_code == 0, result.output
    assert "seeded the store: 320 customers" in result.stdout
    plan = run_cli("-C", str(tmp_path / "demo"), "plan", "--detailed-exitcode")
    assert plan.exit_code == 2, plan.output
    assert (
        "> email.emails/2026-12-holiday-support-hours  send      320 recipients (all customers)"
        in plan.stdout
    )
    assert "\x1b[" not in plan.stdout  # not a TTY: no colour
    assert (
        run_cli("-C", str(tmp_path / "demo"), "plan").exit_code == 0
    )  # without the flag, changes are not an error


def test_plan_out_saves_a_schema_valid_plan_without_personal_data(demo_repo: Repo) -> None:
    result = demo_repo.cli("plan", "--out", "plan.json", "--format", "markdown")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("### commsync plan:")
    saved = (demo_repo.root / "plan.json").read_text()
    document = json.loads(saved)
    validator("plan.schema.json").validate(document)
    assert all(a["fingerprint"] for a in document["actions"])
    with (EXAMPLES / "data" / "customers.csv").open() as f:
        people = list(csv.DictReader(f))
    for person in people:
        full_name = f"{person['first_name']} {person['last_name']}"
        for what in (person["email"], f'"{person["username"]}"', full_name):
            assert what not in saved, f"{what!r} leaked into the plan file"
    # subjects are shown for a made-up recipient (the catalog's examples describe a site called
    # "Lovelace Engines"; no customer's name, address or username)
    assert "Sam Sample" in saved


def test_plan_json_on_stdout_matches_the_schema(demo_repo: Repo) -> None:
    document = demo_repo.plan_json()
    validator("plan.schema.json").validate(document)
    assert document["summary"]["recipients"] == 320


def test_validate_formats(repo: Repo) -> None:
    repo.write(
        "broadcasts/a.yaml",
        "kind: notice\ntargets: {all: true}\nsubject: 'a, b: c'\ncontent: '{{ nope }}'\n",
    )
    text = repo.cli("validate")
    assert text.exit_code == 1
    assert (
        text.stdout
        == "broadcasts/a.yaml:4:14: error: unknown placeholder 'nope' for notices (available: customer_first_name, customer_id, customer_last_name, customer_name, customer_user_email, customer_username, network_name, network_url)\n"
    )
    document = json.loads(repo.cli("validate", "--format", "json").stdout)
    assert document["errors"] == 1 and document["diagnostics"][0]["pointer"] == "/content"
    github = repo.cli("validate", "--format", "github").stdout
    assert github.startswith(
        "::error file=broadcasts/a.yaml,line=4,col=14::unknown placeholder 'nope'"
    )
    repo.remove("broadcasts/a.yaml")
    ok = repo.cli("validate")
    assert ok.exit_code == 0 and ok.stdout == "ok: 0 broadcasts and 0 system emails are valid\n"


def test_github_annotations_use_paths_from_the_git_root(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    project = Repo(tmp_path / "ops" / "comms")
    project.root.mkdir(parents=True)
    project.write("commsync.yaml", (EXAMPLES / "commsync.yaml").read_text())
    project.write("broadcasts/x.yaml", "kind: nope\n")
    out = project.cli("validate", "--format", "github", "--no-store").stdout
    assert "::error file=ops/comms/broadcasts/x.yaml,line=1,col=7::" in out


def test_imports_print_counts_and_upsert(repo: Repo) -> None:
    repo.write("products.csv", "slug,name\npro,Pro\n")
    assert (
        repo.cli("products", "import", "products.csv").stdout == "products: 1 inserted, 0 updated\n"
    )
    repo.write(
        "customers.jsonl",
        '{"id": "1", "email": "a@example.com"}\n{"id": 2, "email": "b@example.com", "locale": "de_DE"}\n',
    )
    assert (
        repo.cli("customers", "import", "customers.jsonl").stdout
        == "customers: 2 inserted, 0 updated\n"
    )
    repo.write("customers.csv", "id,email,first_name\n2,b@example.com,Bea\n3,c@example.com,Cy\n")
    assert (
        repo.cli("customers", "import", "customers.csv").stdout
        == "customers: 1 inserted, 1 updated\n"
    )
    engine = sa.create_engine(repo.store_url)
    with engine.connect() as conn:
        assert conn.execute(
            sa.text("SELECT first_name, locale FROM customers WHERE id = '2'")
        ).one() == ("Bea", None)
    engine.dispose()
    missing = repo.cli("customers", "import", "nope.csv")
    assert missing.exit_code == 1 and "error: cannot read nope.csv" in missing.stderr


def test_emails_list_shows_defaults_installed_customised_and_importable(demo_repo: Repo) -> None:
    engine = sa.create_engine(demo_repo.store_url)
    with (
        engine.begin() as conn
    ):  # as apply will write it: a customised, installed default with stats
        now = "2026-11-20 10:00:00"
        conn.execute(
            sa.text(
                "INSERT INTO system_emails (slug, fields, fields_hash, applied_hash, overrides, base_version, base_fields,"
                " managed_path, sent_count, failed_count, last_sent_at, created_at, updated_at)"
                " VALUES ('payment_failed_admin', :f, 'h', 'h', '[\"active\"]', 1, :f, 'emails/payment_failed_admin.yaml', 7, 1, :now, :now, :now)"
            ),
            {
                "f": json.dumps(
                    {
                        "event": "payment_failed",
                        "target": "admin",
                        "subject": "s",
                        "content": "c",
                        "active": False,
                    }
                ),
                "now": now,
            },
        )
    engine.dispose()
    rows = {
        r["slug"]: r
        for r in json.loads(demo_repo.cli("emails", "list", "--format", "json").stdout)["emails"]
    }
    assert len(rows) == 14  # 13 defaults and the custom site_setup_checklist
    assert (
        rows["site_setup_checklist"]["state"] == "not applied yet"
        and rows["site_setup_checklist"]["source"] == "custom"
    )
    assert (
        rows["confirm_email_address"]["state"] == "not applied yet"
    )  # critical, imports: critical
    assert rows["payment_failed_admin"]["state"] == "customised"
    assert rows["payment_failed_admin"]["customised"] == ["active"]
    assert rows["payment_failed_admin"]["stats"] == {
        "sent": 7,
        "failed": 1,
        "last_sent_at": "2026-11-20T10:00:00+00:00",
        "cancelled": 0,
        "queued": 0,
        "next_due": None,
    }
    assert rows["site_published_admin"]["state"] == "importable"
    assert rows["payment_received_customer"]["file"] == "emails/payment_received_customer.yaml"
    assert rows["confirm_email_address"]["critical"] is True
    text = demo_repo.cli("emails", "list").stdout
    assert text.splitlines()[0].split() == [
        "SLUG",
        "EVENT",
        "TARGET",
        "ACTIVE",
        "STATE",
        "CUSTOMISED",
        "FILE",
        "SENT",
        "FAILED",
        "QUEUED",
        "NEXT",
        "DUE",
        "LAST",
        "SENT",
    ]
    assert "payment_failed_admin" in text and "2026-11-20 10:00" in text
    # on or off at a glance: the demo turns payment_failed_admin off; importable ones are not
    # installed at all
    cells = {line.split()[0]: line.split()[3] for line in text.splitlines()[1:-1]}
    assert cells["payment_failed_admin"] == "no" and cells["payment_received_admin"] == "-"


def test_store_overrides_flag_then_environment_then_file(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.write("products.csv", "slug,name\npro,Pro\n")
    flag, env = tmp_path / "flag.db", tmp_path / "env.db"
    monkeypatch.setenv("COMMSYNC_STORE", f"sqlite:///{env}")
    assert repo.cli("products", "import", "products.csv").exit_code == 0
    assert env.exists() and not (repo.root / ".commsync" / "store.db").exists()
    assert (
        run_cli(
            "-C",
            str(repo.root),
            "--store",
            f"sqlite:///{flag}",
            "products",
            "import",
            "products.csv",
        ).exit_code
        == 0
    )
    assert flag.exists()


def test_a_newer_store_is_refused_with_a_clear_message(repo: Repo) -> None:
    repo.import_data()
    engine = sa.create_engine(repo.store_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE commsync_schema_version SET version_num = '0042'"))
    engine.dispose()
    result = repo.cli("plan")
    assert result.exit_code == 1
    assert (
        f"has schema revision '0042', which this commsync (schema {HEAD}) does not know"
        in result.stderr
    )


def test_an_internal_error_is_reported_without_a_traceback_unless_debug(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    from commsync.api.service import Service

    def broken(
        *args: object, **kwargs: object
    ) -> None:  # a fault the real code cannot be made to raise
        raise RuntimeError("kaboom")

    monkeypatch.setattr(Service, "plan", broken)
    result = repo.cli("plan")
    assert result.exit_code == 1
    assert (
        "internal error: RuntimeError('kaboom')" in result.stderr
        and "Traceback" not in result.stderr
    )
    debug = run_cli("--debug", "-C", str(repo.root), "plan")
    assert "Traceback" in debug.stderr


def test_the_installed_entry_point_runs(repo: Repo) -> None:
    exe = shutil.which(
        "commsync", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    )
    assert exe, "the commsync console script is not installed"
    done = subprocess.run(
        [exe, "-C", str(repo.root), "plan", "--detailed-exitcode"], capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr  # the three critical defaults are to import
    assert done.stdout.strip().endswith("Plan: 3 to import.")
    bad = subprocess.run([exe, "plan", "--nope"], capture_output=True, text=True, cwd=repo.root)
    assert bad.returncode == 64


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "sqlite:///{root}/commsync.yaml/store.db",
            "error: cannot create the store's directory for sqlite:///{root}/commsync.yaml/store.db",
        ),
        (
            "postgresql://nobody@127.0.0.1:1/test",
            "error: cannot open the store postgresql://nobody@127.0.0.1:1/test: connection failed",
        ),
        (
            "mysql://db/x",
            "error: unsupported store URL 'mysql://db/x': use sqlite:/// or postgresql://",
        ),
        ("not a url", "error: invalid store URL 'not a url'"),
    ],
)
def test_unusable_stores_are_clear_errors(repo: Repo, url: str, message: str) -> None:
    root = str(repo.root)
    result = run_cli("-C", root, "--store", url.format(root=root), "plan")
    assert result.exit_code == 1
    assert result.stderr.startswith(message.format(root=root)), result.stderr


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-30, "0s"),
        (45, "45s"),
        (61, "2m"),
        (14 * 60, "14m"),
        (2 * 3600 - 3, "2h"),
        (3600 + 59 * 60, "1h 59m"),
        (3 * 86400 + 4 * 3600, "3d 4h"),
        (5 * 86400, "5d"),
    ],
)
def test_how_long_until_a_message_is_due_is_said_briefly(seconds: int, shown: str) -> None:
    from datetime import UTC, datetime, timedelta

    from commsync.cli.common import due_in, queue_line

    now = datetime(2031, 5, 1, tzinfo=UTC)
    assert due_in(now + timedelta(seconds=seconds), now) == shown
    assert (
        queue_line(0, 3, now + timedelta(seconds=seconds), now)
        == f"0 due, 3 waiting (next in {shown})"
    )
    assert queue_line(0, 0, None, now) == "empty"
