"""Import & Reset as repository edits: `commsync emails import` and `commsync emails reset`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from commsync.repo.edit import EditError, remove_keys
from tests.helpers import Repo, dump_store, settings_for
from tests.smtp_server import SmtpServer
from tests.test_events import payment

GOLDEN = Path(__file__).resolve().parent / "golden" / "edits"
OVERRIDE_KEYS = ["subject", "content", "active", "delay", "sender"]


@pytest.mark.parametrize(
    "name", sorted(p.name[: -len(".in.yaml")] for p in GOLDEN.glob("*.in.yaml"))
)
def test_removing_override_keys_keeps_every_other_line_as_it_was(name: str) -> None:
    source = (GOLDEN / f"{name}.in.yaml").read_text(encoding="utf-8")
    result, _ = remove_keys(source, OVERRIDE_KEYS, f"{name}.yaml")
    assert result == (GOLDEN / f"{name}.out.yaml").read_text(encoding="utf-8")
    kept = {line for line in result.splitlines() if line.strip()}
    assert kept <= set(source.splitlines())  # lines are kept verbatim, never rewritten
    again, none = remove_keys(result, OVERRIDE_KEYS, f"{name}.yaml")
    assert again == result and none == []


@pytest.mark.parametrize(
    "text",
    ["{email: x, subject: y}\n", "email: x\n---\nemail: y\n", "- email: x\n", "email: [\n"],
)
def test_files_that_cannot_be_edited_by_lines_are_refused(text: str) -> None:
    with pytest.raises(EditError):
        remove_keys(text, ["subject"], "emails/x.yaml")


def _repo(repo: Repo, smtp: SmtpServer) -> None:
    repo.write("commsync.yaml", settings_for(smtp.url, extra="imports: none\n"))
    repo.import_data()
    receipt = (GOLDEN / "commented.in.yaml").read_text()
    receipt = receipt.replace("active: false", "active: true ").replace("delay: 15m", "delay: 0m")
    repo.write("emails/receipt.yaml", receipt)
    repo.write("emails/domain_created_admin.yaml", "email: domain_created_admin\ndelay: 15m\n")
    repo.commit_all("emails")
    result = repo.cli("apply", "--yes")
    assert result.exit_code == 0, result.output


def _plan_actions(repo: Repo) -> dict[str, str]:
    return {a["address"]: a["action"] for a in repo.plan_json()["actions"] if a["change"]}


def test_reset_then_plan_then_apply_keeps_the_stats(repo: Repo, smtp_server: SmtpServer) -> None:
    _repo(repo, smtp_server)
    payload = repo.root.parent / "payment.json"
    payload.write_text(json.dumps(payment()))
    fired = repo.cli("event", "payment_received", "--data", str(payload))
    assert fired.exit_code == 0, fired.output
    assert repo.cli("deliver").exit_code == 0
    result = repo.cli("emails", "reset", "payment_received_customer")
    assert result.exit_code == 0, result.output
    assert (
        "reset     emails/receipt.yaml  payment_received_customer: removed subject, content, active, delay"
        in result.stdout
    )
    assert (repo.root / "emails/receipt.yaml").read_text() == (
        GOLDEN / "commented.out.yaml"
    ).read_text()
    assert repo.git("status", "--porcelain") == "M emails/receipt.yaml"
    assert _plan_actions(repo) == {"system_email.payment_received_customer": "reset"}
    repo.commit_all("reset the receipt")
    assert repo.cli("apply", "--yes").exit_code == 0
    emails = {
        e["slug"]: e
        for e in json.loads(repo.cli("emails", "list", "--format", "json").stdout)["emails"]
    }
    receipt = emails["payment_received_customer"]
    assert receipt["state"] == "default" and receipt["customised"] == []
    assert receipt["stats"]["sent"] == 1  # reset keeps the stats
    assert _plan_actions(repo) == {}


def test_import_writes_a_file_that_plans_as_import(repo: Repo, smtp_server: SmtpServer) -> None:
    _repo(repo, smtp_server)
    result = repo.cli("emails", "import", "site_published_admin", "domain_created_admin")
    assert result.exit_code == 0, result.output
    assert "written   emails/site_published_admin.yaml" in result.stdout
    assert "skipped   emails/domain_created_admin.yaml" in result.stdout
    text = (repo.root / "emails/site_published_admin.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=") and text.endswith(
        "email: site_published_admin\n"
    )
    assert (
        repo.root / "emails/domain_created_admin.yaml"
    ).read_text() == "email: domain_created_admin\ndelay: 15m\n"
    assert _plan_actions(repo) == {"system_email.site_published_admin": "import"}
    repo.commit_all("import")
    assert repo.cli("apply", "--yes").exit_code == 0
    assert _plan_actions(repo) == {}
    everything = repo.cli("emails", "import", "--all")
    assert everything.exit_code == 0
    written = sorted(p.name for p in (repo.root / "emails").glob("*.yaml"))
    assert (
        "membership_expired_customer.yaml" in written and "payment_received_admin.yaml" in written
    )
    assert "payment_received_customer.yaml" not in written  # managed by receipt.yaml already
    assert "import" in set(_plan_actions(repo).values())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["import", "nope", "site_published_admin"],
            "unknown registered default(s) nope; known: confirm_email_address",
        ),
        (["reset", "nope"], "unknown system email(s) nope; known:"),
        (["reset", "welcome"], "welcome: custom email(s), not a registered default"),
        (["import"], "give SLUG… or --all"),
        (["reset", "--all", "payment_received_customer"], "give SLUG… or --all"),
    ],
)
def test_bad_requests_are_refused_and_write_nothing(
    repo: Repo, smtp_server: SmtpServer, args: list[str], message: str
) -> None:
    _repo(repo, smtp_server)
    repo.write(
        "emails/welcome.yaml",
        "event: site_published\ntarget: customer\nsubject: Welcome\ncontent: Hi.\n",
    )
    repo.commit_all("custom")
    before = dump_store(repo.store_url)
    result = repo.cli("emails", *args)
    assert result.exit_code in (1, 64), result.output
    assert message in result.stderr
    assert repo.git("status", "--porcelain") == ""
    assert dump_store(repo.store_url) == before


def test_a_broken_repository_is_not_edited(repo: Repo, smtp_server: SmtpServer) -> None:
    _repo(repo, smtp_server)
    repo.write("emails/broken.yaml", "email: site_published_admin\nsubject: [unclosed\n")
    result = repo.cli("emails", "import", "--all")
    assert result.exit_code == 1
    assert "emails/broken.yaml:3:1: error: invalid YAML" in result.stderr
    assert "fix the repository first (commsync validate); nothing was changed" in result.stderr
    assert (
        subprocess.run(
            ["git", "-C", str(repo.root), "status", "--porcelain"], capture_output=True, text=True
        ).stdout.strip()
        == "?? emails/broken.yaml"
    )
