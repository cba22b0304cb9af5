"""A change from branch to apply, end to end, with real git commits (SPEC §7)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.helpers import Repo, run_cli, settings_for
from tests.smtp_server import SmtpServer

NOTICE = """\
kind: notice
message_type: info
subject: "Maintenance on Sunday, {{ customer_first_name }}"
targets:
  all: true
content: We upgrade the database on Sunday at 06:00 UTC.
"""
NEWS = """\
kind: email
subject: "Autumn news for {{ customer_first_name }}"
targets:
  products: [pro]
content: |
  Hi {{ customer_first_name }}, here is what is new.

  [Unsubscribe]({{ unsubscribe_url }})
"""
RECEIPT = """\
# Our receipt wording.
email: payment_received_customer
subject: "Thanks, {{ customer_name }}: {{ payment_total }} received"
"""


def _changes(plan: dict[str, Any]) -> dict[str, str]:
    return {a["address"]: a["action"] for a in plan["actions"] if a["change"]}


def _applied(status: dict[str, Any]) -> dict[str, str]:
    out = {}
    for group, key in (("notices", "id"), ("emails", "id"), ("system_emails", "slug")):
        for item in status[group]:
            out[f"{group}:{item[key]}"] = item["applied"]["commit"]
    return out


def test_a_change_from_branch_to_apply(repo: Repo, smtp_server: SmtpServer) -> None:
    repo.write("commsync.yaml", settings_for(smtp_server.url, extra="imports: none\n"))
    repo.import_data()
    repo.write("broadcasts/notices/maintenance.yaml", NOTICE)
    repo.write("broadcasts/news/autumn.yaml", NEWS)
    repo.write("emails/receipt.yaml", RECEIPT)
    commit_a = repo.commit_all("A: maintenance notice, autumn news, our receipt")

    plan_a = repo.plan_json("--ref", commit_a)
    assert _changes(plan_a) == {
        "notice.notices/maintenance": "create",
        "email.news/autumn": "send",
        "system_email.payment_received_customer": "import",
    }
    news = next(a for a in plan_a["actions"] if a["address"] == "email.news/autumn")
    assert news["audience"]["total"] == 2 and news["sample_subject"] == "Autumn news for Sam"
    applied = repo.cli("apply", "--ref", commit_a, "--yes")
    assert applied.exit_code == 0, applied.output
    assert len(smtp_server.recorder.messages) == 2

    # commit B: edit the notice, import a default, reset the customised email
    repo.write("broadcasts/notices/maintenance.yaml", NOTICE.replace("06:00", "07:00"))
    assert repo.cli("emails", "import", "site_published_admin").exit_code == 0
    assert repo.cli("emails", "reset", "payment_received_customer").exit_code == 0
    assert (repo.root / "emails/receipt.yaml").read_text() == (
        "# Our receipt wording.\nemail: payment_received_customer\n"
    )
    commit_b = repo.commit_all("B: later maintenance, site_published_admin, default receipt")

    # uncommitted edits in the working tree never leak into --ref plans
    repo.write("broadcasts/news/autumn.yaml", NEWS.replace("Autumn", "Winter"))
    repo.write("broadcasts/notices/draft.yaml", NOTICE.replace("Maintenance", "Draft"))
    plan_b = repo.plan_json("--ref", commit_b)
    assert _changes(plan_b) == {
        "notice.notices/maintenance": "update",
        "system_email.site_published_admin": "import",
        "system_email.payment_received_customer": "reset",
    }
    maintenance = next(a for a in plan_b["actions"] if a["address"] == "notice.notices/maintenance")
    assert maintenance["last_applied"]["commit"] == commit_a
    assert maintenance["last_applied"]["author"] == "Test Operator"
    text = repo.cli("plan", "--ref", commit_b)
    assert f"last applied from {commit_a[:12]} by Test Operator" in text.stdout
    assert "Winter" not in text.stdout and "draft" not in text.stdout

    # the pull-request comment: details for the files the branch changed, summary for all
    markdown = repo.cli(
        "plan", "--ref", commit_b, "--format", "markdown", "--changed-since", commit_a
    )
    assert markdown.exit_code == 0, markdown.output
    assert markdown.stdout.count("<details>") == 3
    assert "1 to import, 1 to update, 1 to reset." in markdown.stdout
    narrower = repo.cli(
        "plan", "--ref", commit_b, "--format", "markdown", "--changed-since", f"{commit_b}~0"
    )
    assert narrower.stdout.count("<details>") == 0
    assert "Details below cover the 0 action(s) in files changed since" in narrower.stdout

    applied = repo.cli("apply", "--ref", commit_b, "--yes")
    assert applied.exit_code == 0, applied.output
    status = json.loads(repo.cli("status", "--format", "json").stdout)
    origins = _applied(status)
    assert origins["notices:notices/maintenance"] == commit_b
    assert origins["emails:news/autumn"] == commit_a
    assert origins["system_emails:site_published_admin"] == commit_b
    assert origins["system_emails:payment_received_customer"] == commit_b
    assert _changes(repo.plan_json("--ref", commit_b)) == {}
    assert len(smtp_server.recorder.messages) == 2  # nothing was sent twice

    # commit C: the sent email's file renamed, with a one-word edit: refused, the id hint first
    repo.git("checkout", "--", ".")  # drop the working-tree edits of above
    repo.remove("broadcasts/notices/draft.yaml")
    repo.git("mv", "broadcasts/news/autumn.yaml", "broadcasts/news/2026-autumn.yaml")
    repo.write("broadcasts/news/2026-autumn.yaml", NEWS.replace("what is new", "what's new"))
    commit_c = repo.commit_all("C: rename the autumn news, and fix a word")
    refused = repo.cli("plan", "--ref", commit_c)
    assert refused.exit_code == 1
    error = next(line for line in refused.output.splitlines() if "2026-autumn.yaml" in line)
    assert "like email.news/autumn, sent" in error
    assert error.index("`id: news/autumn`") < error.index("allow_resend: true")
    assert repo.cli("apply", "--ref", commit_c, "--yes").exit_code == 1
    repo.write(
        "broadcasts/news/2026-autumn.yaml",
        "id: news/autumn\n" + NEWS.replace("what is new", "what's new"),
    )
    commit_d = repo.commit_all("D: keep its id")
    kept = repo.plan_json("--ref", commit_d)
    assert _changes(kept) == {} and [w["code"] for w in kept["warnings"]] == ["edited_after_send"]
    assert repo.cli("apply", "--ref", commit_d, "--yes").exit_code == 0
    assert len(smtp_server.recorder.messages) == 2  # the rename sent nothing

    # commit E: a large pull request — 600 new notices and one system-email edit. The comment
    # stays under GitHub's limit and still names (and details) the system-email change.
    for i in range(600):
        body = "\n".join(f"Line {j} of notice {i}, long enough to matter." for j in range(30))
        repo.write(
            f"broadcasts/bulk/n{i:03}.yaml",
            f"kind: notice\nsubject: Notice {i}\ntargets: {{all: true}}\ncontent: |\n"
            + "".join(f"  {line}\n" for line in body.splitlines()),
        )
    repo.write("emails/receipt.yaml", RECEIPT.replace("Thanks", "Thank you"))
    commit_e = repo.commit_all("E: 600 notices, and our receipt again")
    comment = repo.cli(
        "plan", "--ref", commit_e, "--format", "markdown", "--changed-since", commit_d
    ).stdout
    assert len(comment) <= 65_000
    assert "Truncated:" in comment
    listed = comment[comment.index("**Sends and changes**") : comment.index("<details>")]
    assert "system_email.payment_received_customer" in listed
    # its details come first: changes before new objects
    assert comment[comment.index("<details>") :].startswith(
        "<details><summary><code>~ system_email.payment_received_customer</code>"
    )


def test_ref_plans_work_in_a_shallow_ci_checkout(repo: Repo, tmp_path: Path) -> None:
    repo.import_data()
    repo.write("broadcasts/notices/maintenance.yaml", NOTICE)
    repo.commit_all("notice")
    repo.write("broadcasts/notices/maintenance.yaml", NOTICE.replace("06:00", "07:00"))
    repo.commit_all("later")
    clone = tmp_path / "ci"
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", f"file://{repo.root}", str(clone)], check=True
    )
    (clone / ".commsync").mkdir()
    store = f"sqlite:///{repo.root / '.commsync' / 'store.db'}"
    plan = run_cli("-C", str(clone), "--store", store, "plan", "--ref", "HEAD", "--format", "json")
    assert plan.exit_code == 0, plan.output
    changes = _changes(json.loads(plan.stdout))
    assert changes["notice.notices/maintenance"] == "create"  # (and the critical defaults)
    missing = run_cli("-C", str(clone), "--store", store, "plan", "--changed-since", "HEAD~1")
    assert missing.exit_code == 1 and "unknown git reference 'HEAD~1'" in missing.stderr
    assert "shallow checkout" in missing.stderr
    older = run_cli("-C", str(clone), "--store", store, "plan", "--ref", "HEAD~1")
    assert older.exit_code == 1 and "unknown git reference 'HEAD~1'" in older.stderr
