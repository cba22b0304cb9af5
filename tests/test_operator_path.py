"""The operator's path as shipped (issue 11): what a new operator meets in the first week."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import sqlalchemy as sa

from tests.helpers import Repo, dump_store, settings_for
from tests.smtp_server import SmtpServer

ROOT = Path(__file__).resolve().parent.parent
NOTICE = "kind: notice\ntargets: {all: true}\nsubject: Hello\ncontent: Hi.\n"


def test_yml_files_are_read_like_yaml_files(repo: Repo) -> None:
    repo.write("commsync.yaml", settings_for("maildir:out", extra="imports: none\n"))
    repo.import_data()
    repo.write("broadcasts/notices/hello.yml", NOTICE)
    repo.write("emails/site_published_customer.yml", "subject: Your site is live\n")
    repo.commit_all("yml files")
    plan = repo.plan_json()
    assert {(a["address"], a["action"]) for a in plan["actions"]} == {
        ("notice.notices/hello", "create"),
        ("system_email.site_published_customer", "import"),
    }
    assert all(a["path"].endswith(".yml") for a in plan["actions"])
    applied = repo.cli("apply", "--yes")
    assert applied.exit_code == 0, applied.output
    assert repo.plan_json()["actions"] == []


def test_one_name_with_both_endings_is_an_error(repo: Repo) -> None:
    repo.write("commsync.yaml", settings_for("maildir:out", extra="imports: none\n"))
    repo.write("broadcasts/hello.yaml", NOTICE)
    repo.write("broadcasts/hello.yml", NOTICE.replace("Hello", "Hello again"))
    repo.commit_all("twice")
    result = repo.cli("validate")
    assert result.exit_code == 1
    assert (
        "broadcasts/hello.yml:1:1: error: broadcasts/hello.yaml and broadcasts/hello.yml name "
        "the same object: keep one of them"
    ) in result.output


def test_apply_repeats_the_plans_warnings(repo: Repo) -> None:
    repo.write("commsync.yaml", settings_for("maildir:out", extra="imports: none\n"))
    repo.import_data()
    email = "kind: email\ntargets: {all: true}\nsubject: News\ncontent: Hi.\n"
    repo.write("broadcasts/news.yaml", email)
    repo.commit_all("news")
    assert repo.cli("apply", "--yes").exit_code == 0
    repo.write("broadcasts/news.yaml", email.replace("News", "News (edited)"))
    repo.commit_all("edit a sent email")
    result = repo.cli("apply", "--ref", "HEAD", "--yes")
    assert result.exit_code == 0, result.output
    assert "Nothing to do: the store matches the repository." in result.stdout
    assert "Warnings (1):\n  ! email.news: edited after it was sent (subject)" in result.stdout


def test_only_commands_that_write_say_nothing_was_changed(repo: Repo) -> None:
    repo.write("commsync.yaml", settings_for("maildir:out", extra="imports: none\n"))
    repo.write("broadcasts/broken.yaml", "kind: notice\nsubject: [\n")
    repo.commit_all("broken")
    for command in (["plan"], ["validate"]):
        result = repo.cli(*command)
        assert result.exit_code == 1 and "broadcasts/broken.yaml:3:1: error:" in result.output
        assert "nothing was changed" not in result.stderr, command
    applied = repo.cli("apply", "--yes")
    assert applied.exit_code == 1 and "nothing was changed" in applied.stderr


def test_an_unknown_event_is_suggested_only_when_it_looks_like_a_typo(repo: Repo) -> None:
    repo.write("commsync.yaml", settings_for("maildir:out", extra="imports: none\n"))
    custom = "event: {event}\ntarget: customer\nsubject: Hi\ncontent: Hello.\n"
    repo.write("emails/welcome.yaml", custom.format(event="customer_created"))
    repo.write("emails/receipt_copy.yaml", custom.format(event="paymnet_received"))
    result = repo.cli("validate")
    assert result.exit_code == 1
    assert "unknown event 'paymnet_received' (did you mean 'payment_received'?)" in result.output
    welcome = next(line for line in result.output.splitlines() if "welcome.yaml" in line)
    assert "did you mean" not in welcome and "known: " in welcome and "domain_created" in welcome


def test_suppressions_are_listed_added_imported_and_removed_all_or_nothing(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    repo.write("commsync.yaml", settings_for(smtp_server.url, extra="imports: none\n"))
    repo.import_data()
    added = repo.cli("suppressions", "add", "Ada@Example.com", "grace@example.com")
    assert added.exit_code == 0, added.output
    assert added.stdout.strip() == "suppressions: 2 added"
    stronger = repo.cli("suppressions", "add", "ada@example.com", "--reason", "hard_bounce")
    assert stronger.stdout.strip() == "suppressions: 0 added, 1 now kept from every email"
    document = json.loads(repo.cli("suppressions", "list", "--format", "json").stdout)
    rows = {r["address"]: r for r in document["suppressions"]}
    assert document["total"] == 2 and set(rows) == {"ada@example.com", "grace@example.com"}
    assert rows["ada@example.com"]["scope"] == "all"
    assert rows["grace@example.com"]["reason"] == "unsubscribe"
    assert rows["grace@example.com"]["scope"] == "marketing"
    assert rows["grace@example.com"]["source"] == "commsync suppressions add"
    text = repo.cli("suppressions", "list").stdout
    assert text.splitlines()[0].split() == ["ADDRESS", "SCOPE", "REASON", "SOURCE", "SINCE"]

    before = dump_store(repo.store_url)
    bad = repo.cli("suppressions", "add", "alan@example.org", "not-an-address")
    assert bad.exit_code == 1 and "not an email address: 'not-an-address'" in bad.stderr
    repo.write("bounces.csv", "address,reason\nalan@example.org,hard_bounce\nnope,unsubscribe\n")
    refused = repo.cli("suppressions", "import", "bounces.csv")
    assert refused.exit_code == 1 and "bounces.csv:3" in refused.output
    gone = repo.cli("suppressions", "remove", "grace@example.com", "kat@example.net")
    assert gone.exit_code == 1 and "not suppressed: kat@example.net" in gone.stderr
    assert dump_store(repo.store_url) == before  # nothing of any of them was recorded

    repo.write("bounces.csv", "address,reason\nalan@example.org,hard_bounce\n")
    imported = repo.cli("suppressions", "import", "bounces.csv")
    assert imported.stdout.strip() == "suppressions: 1 added", imported.output
    assert repo.cli("suppressions", "remove", "GRACE@example.com").exit_code == 0

    # a broadcast to everyone skips ada and alan; grace gets it again
    repo.write(
        "broadcasts/news.yaml", "kind: email\ntargets: {all: true}\nsubject: News\ncontent: Hi.\n"
    )
    repo.commit_all("news")
    assert repo.cli("apply", "--yes").exit_code == 0
    got = {r for m in smtp_server.recorder.messages for r in m.recipients}
    assert "grace@example.com" in got and not {"ada@example.com", "alan@example.org"} & got


def test_the_plan_says_who_is_counted_twice_and_who_is_suppressed(
    repo: Repo, smtp_server: SmtpServer
) -> None:
    repo.write("commsync.yaml", settings_for(smtp_server.url, extra="imports: none\n"))
    repo.import_data()  # alan (3): pro cancelled, starter active; lin (5): starter expired
    repo.write(
        "broadcasts/starter.yaml",
        "kind: email\ntargets: {products: [starter], customers: ['3', '4']}\n"
        "subject: Starter news\ncontent: Hi.\n",
    )
    repo.commit_all("starter news")
    assert repo.cli("suppressions", "add", "kat@example.net").exit_code == 0
    (action,) = repo.plan_json()["actions"]
    audience = action["audience"]
    assert (audience["total"], audience["customers"]) == (2, 2)  # alan and kat
    assert audience["listed_in_products"] == 1 and audience["suppressed"] == 1
    text = repo.cli("plan").stdout
    assert (
        "2 recipients (starter 1; 2 listed customers, 1 of them counted in the products), "
        "1 of them suppressed (not sent to)"
    ) in text
    applied = repo.cli("apply", "--yes")
    assert "1 sent, 1 suppressed" in applied.stdout, applied.stdout


def test_a_system_email_whose_file_is_removed_with_prune_off_is_released_once(
    repo: Repo,
) -> None:
    repo.write("commsync.yaml", settings_for("maildir:out", extra="imports: none\n"))
    repo.write("emails/site_published_admin.yaml", "subject: Site up\n")
    custom = "event: site_published\ntarget: customer\nsubject: Checklist\ncontent: Do this.\n"
    repo.write("emails/checklist.yaml", custom)
    repo.commit_all("emails")
    assert repo.cli("apply", "--yes").exit_code == 0
    repo.remove("emails/site_published_admin.yaml")
    repo.remove("emails/checklist.yaml")
    repo.commit_all("remove both")
    actions = repo.plan_json()["actions"]
    assert [a["action"] for a in actions] == ["update", "update"]
    assert all("no longer managed by a file" in a["reason"] for a in actions)
    assert repo.cli("apply", "--yes").exit_code == 0
    # said once: afterwards plan and drift agree there is nothing to report, and both stay live
    assert repo.plan_json()["actions"] == []
    drift = repo.cli("drift", "--detailed-exitcode")
    assert drift.exit_code == 0 and "No drift" in drift.stdout, drift.output
    listed = repo.cli("emails", "list").stdout
    assert "checklist" in listed and "site_published_admin" in listed
    # one that commsync did not leave so (written into the store by another tool: no apply
    # recorded) is still reported, with the way to adopt it
    engine = sa.create_engine(repo.store_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE system_emails SET applied_at = NULL WHERE slug = 'site_published_admin'"
            )
        )
    engine.dispose()
    drift = repo.cli("drift", "--detailed-exitcode")
    assert drift.exit_code == 2 and "system_email.site_published_admin" in drift.stdout
    assert "customised (subject) but no file manages it" in drift.stdout


def _bash(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "NO_COLOR": "1",
        **{
            f"GIT_{r}_{p}": v
            for r in ("AUTHOR", "COMMITTER")
            for p, v in (("NAME", "Ada"), ("EMAIL", "ada@acme.example"))
        },
    }
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True)


def test_the_readmes_first_command_works_from_the_root_of_a_git_checkout(tmp_path: Path) -> None:
    """As a newcomer runs it: inside a clone of commsync (a git repository of its own)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first = re.findall(r"```sh\n(.*?)\n```", readme, re.S)[0]
    commands = first[first.index("commsync init") :]  # the install part is this test's venv
    checkout = tmp_path / "commsync"
    checkout.mkdir()
    assert (
        _bash(
            "git init -q . && echo x > README.md && git add . && git commit -qm x", checkout
        ).returncode
        == 0
    )
    done = _bash(commands, checkout)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "Apply complete" in done.stdout
    assert len(list((checkout / "demo" / ".commsync" / "outbox" / "new").iterdir())) == 320
    assert (checkout / "demo" / ".git").is_dir()  # the demo is a repository of its own


def test_a_plain_init_inside_a_repository_says_how_to_commit(tmp_path: Path) -> None:
    mono = tmp_path / "platform"
    mono.mkdir()
    assert (
        _bash("git init -q . && echo x > x && git add . && git commit -qm x", mono).returncode == 0
    )
    done = _bash("commsync init ops/comms", mono)
    assert done.returncode == 0, done.stderr
    assert not (mono / "ops" / "comms" / ".git").exists()  # the monorepo keeps it
    assert f"git -C {mono} add ops/comms" in done.stdout
    steps = [line.strip() for line in done.stdout.splitlines() if line.strip().startswith("git -C")]
    assert _bash(" && ".join(steps), mono).returncode == 0  # the printed commands work as given
    applied = _bash("commsync -C ops/comms apply --yes", mono)
    assert applied.returncode == 0, (applied.stdout, applied.stderr)
