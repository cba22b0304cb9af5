"""The operator's path as shipped (issue 11): what a new operator meets in the first week."""

from __future__ import annotations

from tests.helpers import Repo, settings_for

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
