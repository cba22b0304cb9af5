"""The pull-request workflow's helpers: drift, pull (adoption), preview."""

from __future__ import annotations

import json

import sqlalchemy as sa

from commsync.model import LiveBroadcast
from commsync.store.sql import create_store_engine, open_store
from tests.helpers import Repo


def _edit_live(url: str, statements: list[tuple[str, dict[str, str]]]) -> None:
    engine = create_store_engine(url)
    try:
        with engine.begin() as conn:
            for sql, params in statements:
                conn.execute(sa.text(sql), params)
    finally:
        engine.dispose()


def _json_column(url: str, sql: str, params: dict[str, str]) -> dict[str, object]:
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            value = conn.execute(sa.text(sql), params).scalar_one()
    finally:
        engine.dispose()
    return json.loads(value) if isinstance(value, str) else dict(value)


def test_drift_reports_only_out_of_band_changes(demo_repo: Repo) -> None:
    repo = demo_repo
    assert repo.cli("apply", "--yes").exit_code == 0
    clean = repo.cli("drift", "--detailed-exitcode")
    assert clean.exit_code == 0 and "No drift" in clean.stdout
    # a change in the repository is not drift (it is the plan's business)
    repo.write(
        "broadcasts/notices/new-block-editor.yaml",
        (repo.root / "broadcasts/notices/new-block-editor.yaml")
        .read_text()
        .replace("is here", "has landed"),
    )
    assert repo.cli("drift", "--detailed-exitcode").exit_code == 0
    # out-of-band edits in the store are
    spec = _json_column(
        repo.store_url,
        "SELECT spec FROM broadcasts WHERE id = :i",
        {"i": "notices/http3-everywhere"},
    )
    spec["subject"] = "Edited in the database"
    fields = _json_column(
        repo.store_url,
        "SELECT fields FROM system_emails WHERE slug = :s",
        {"s": "payment_failed_customer"},
    )
    fields["subject"] = "Edited subject"
    _edit_live(
        repo.store_url,
        [
            (
                "UPDATE broadcasts SET spec = :v WHERE id = 'notices/http3-everywhere'",
                {"v": json.dumps(spec)},
            ),
            (
                "UPDATE system_emails SET fields = :v WHERE slug = 'payment_failed_customer'",
                {"v": json.dumps(fields)},
            ),
        ],
    )
    store = open_store(repo.store_url)
    try:
        live = store.snapshot().broadcasts["notices/card-expiring"]
        store.put_broadcast(
            LiveBroadcast("notices/from-the-ui", live.spec, "active", live.spec.spec_hash(), False)
        )
    finally:
        store.close()
    result = repo.cli("drift", "--detailed-exitcode", "--format", "json")
    assert result.exit_code == 2
    found = {d["address"]: d for d in json.loads(result.stdout)["drift"]}
    assert set(found) == {
        "notice.notices/http3-everywhere",
        "system_email.payment_failed_customer",
        "notice.notices/from-the-ui",
    }
    assert found["notice.notices/http3-everywhere"]["changes"] == [
        {
            "field": "subject",
            "live": "Edited in the database",
            "file": "Every site on {{ network_name }} is now served over HTTP/3",
        }
    ]
    assert found["notice.notices/from-the-ui"]["kind"] == "unmanaged"
    text = repo.cli("drift")
    assert text.exit_code == 0 and "Drift: 3 object(s) changed outside commsync." in text.stdout

    # pull adopts the unmanaged notice; apply restores the edited ones
    pulled = repo.cli("pull")
    assert pulled.exit_code == 0, pulled.output
    assert "written   broadcasts/notices/from-the-ui.yaml" in pulled.stdout
    repo.commit_all("adopt, and keep the editor wording")
    assert repo.cli("apply", "--yes").exit_code == 0
    assert repo.cli("drift", "--detailed-exitcode").exit_code == 0


def test_pull_writes_valid_files_that_plan_as_no_change_and_never_overwrites(
    demo_repo: Repo,
) -> None:
    repo = demo_repo
    assert repo.cli("apply", "--yes").exit_code == 0
    custom = (repo.root / "emails/site_setup_checklist.yaml").read_text()
    repo.remove("emails/site_setup_checklist.yaml")
    repo.remove("emails/domain_created_admin.yaml")
    repo.remove("broadcasts/notices/php-8-upgrade.yaml")
    repo.write("emails/domain_created_admin.yaml.keep", "")  # unrelated file
    result = repo.cli("pull")
    assert result.exit_code == 0, result.output
    assert sorted(
        line.split()[1] for line in result.stdout.splitlines() if line.startswith("written")
    ) == [
        "broadcasts/notices/php-8-upgrade.yaml",
        "emails/domain_created_admin.yaml",
        "emails/site_setup_checklist.yaml",
    ]
    adopted = (repo.root / "emails/site_setup_checklist.yaml").read_text()
    assert "event: site_published" in adopted and "delay: 3d" in adopted and "email:" not in adopted
    override = (repo.root / "emails/domain_created_admin.yaml").read_text()
    assert "email: domain_created_admin" in override and "delay: 15m" in override
    assert "content:" not in override  # only the customised keys
    assert repo.cli("validate").exit_code == 0
    plan = repo.plan_json()
    assert [a for a in plan["actions"] if a["change"]] == []
    assert custom  # the original is gone; the adopted one plans as no change
    again = repo.cli("pull")
    assert again.exit_code == 0 and "nothing to do" in again.stdout
    (repo.root / "broadcasts/notices/php-8-upgrade.yaml").write_text(
        "# mine\n" + (repo.root / "broadcasts/notices/php-8-upgrade.yaml").read_text()
    )
    assert repo.cli("pull").stdout.strip() == "nothing to do"
