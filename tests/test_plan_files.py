"""Saved plans cross versions of commsync only in their own format: another `format_version`
is refused with a request to plan again, and nothing is applied."""

from __future__ import annotations

import json

from tests.helpers import Repo, dump_store

NOTICE = "kind: notice\ntargets: {all: true}\nsubject: Hello\ncontent: Body\n"


def test_a_plan_of_another_format_version_is_refused_and_changes_nothing(repo: Repo) -> None:
    repo.import_data()
    repo.write("broadcasts/hello.yaml", NOTICE)
    repo.commit_all("hello")
    assert repo.cli("plan", "--out", "plan.json").exit_code == 0
    saved = json.loads((repo.root / "plan.json").read_text())
    assert saved["format_version"] == 1
    saved["format_version"] = 2
    (repo.root / "plan.json").write_text(json.dumps(saved))
    before = dump_store(repo.store_url)
    refused = repo.cli("apply", "plan.json")
    assert refused.exit_code == 1
    assert "format version 2" in refused.stderr and "make a new plan" in refused.stderr.lower()
    assert "Traceback" not in refused.stderr
    assert dump_store(repo.store_url) == before


def test_a_saved_plan_round_trips_and_applies(repo: Repo) -> None:
    repo.import_data()
    repo.write("broadcasts/hello.yaml", NOTICE)
    repo.commit_all("hello")
    assert repo.cli("plan", "--out", "plan.json").exit_code == 0
    printed = repo.cli("plan", "--format", "json").stdout
    saved = (repo.root / "plan.json").read_text()
    # the same document, printed or saved (one encoder); only the time planned and the id differ
    different = {k for k, v in json.loads(printed).items() if json.loads(saved)[k] != v}
    assert different <= {"created_at", "plan_id"}
    applied = repo.cli("apply", "plan.json")
    assert applied.exit_code == 0, applied.output
    assert "✓ notice.hello: created" in applied.stdout
