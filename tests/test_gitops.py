"""The pull-request workflow's helpers: drift, pull (adoption), preview."""

from __future__ import annotations

import email
import email.policy
import json
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa

from commsync.model import LiveBroadcast
from commsync.render.notice import NOTICE_COLOURS
from commsync.store.sql import create_store_engine, open_store
from tests.helpers import Repo, dump_store


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


def _parse(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.strict)
    assert isinstance(message, EmailMessage)
    return message


LAYOUT = """<!DOCTYPE html><html><body><div class="house-layout">{{ content }}</div>
<p>{{ network_name }}{% if unsubscribe_url %} · <a href="{{ unsubscribe_url }}">Unsubscribe</a>{% endif %}</p></body></html>
"""


def test_preview_writes_what_recipients_would_get(demo_repo: Repo, tmp_path: Path) -> None:
    repo = demo_repo
    out = tmp_path / "preview"
    before = dump_store(repo.store_url)
    launch = "broadcasts/emails/agency-white-label-launch.yaml"
    sample = repo.cli("preview", launch, "--out", str(out))
    assert sample.exit_code == 0, sample.output
    assert "for sample customer (Ada Lovelace)" in sample.stdout
    message = _parse(out / "agency-white-label-launch.eml")
    assert message["To"] == "Ada Lovelace <ada@example.com>"
    assert message["Subject"] == "White-label dashboards for your clients"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Hi Ada," in (out / "agency-white-label-launch.txt").read_text()
    assert "<strong>your</strong>" in (out / "agency-white-label-launch.html").read_text()

    grace = repo.cli("preview", launch, "--customer", "grace@example.com", "--out", str(out))
    assert grace.exit_code == 0, grace.output
    assert "for customer 1002 <grace@example.com>" in grace.stdout
    assert _parse(out / "agency-white-label-launch.eml")["To"] == "Grace Hopper <grace@example.com>"

    receipt = repo.cli(
        "preview",
        "emails/payment_received_customer.yaml",
        "--data",
        '{"payment_total": "€9.00"}',
        "--out",
        str(out),
    )
    assert receipt.exit_code == 0, receipt.output
    message = _parse(out / "payment_received_customer.eml")
    assert (
        message["Subject"] == "Thanks! €9.00 received for Pro"
    )  # the file's subject, --data's value
    assert message["List-Unsubscribe"] is None  # transactional
    admin = repo.cli("preview", "emails/domain_created_admin.yaml", "--out", str(out))
    assert admin.exit_code == 0, admin.output
    assert _parse(out / "domain_created_admin.eml")["To"] == "ops@acme.example"

    notice = repo.cli(
        "preview", "broadcasts/notices/card-expiring.yaml", "--customer", "1003", "--out", str(out)
    )
    assert notice.exit_code == 0, notice.output
    fragment = (out / "card-expiring.html").read_text()
    assert "border-left:4px solid #b91c1c" in fragment and 'role="alert"' in fragment
    assert "Alan Turing, the card on file" in fragment and "Dismiss" not in fragment
    assert dump_store(repo.store_url) == before  # a preview sends and stores nothing


def test_preview_uses_the_repository_layout(demo_repo: Repo, tmp_path: Path) -> None:
    demo_repo.write("layouts/email.html", LAYOUT)
    out = tmp_path / "p"
    for file in (
        "broadcasts/emails/agency-white-label-launch.yaml",
        "emails/payment_received_customer.yaml",
    ):
        result = demo_repo.cli("preview", file, "--out", str(out))
        assert result.exit_code == 0, result.output
        html = (out / f"{Path(file).stem}.html").read_text()
        assert 'class="house-layout"' in html


def test_widget_and_previews_use_the_same_colours() -> None:
    script = (Path(__file__).resolve().parent.parent / "commsync/render/widget.js").read_text()
    for message_type, (background, accent) in NOTICE_COLOURS.items():
        assert f'{message_type}: ["{background}", "{accent}"]' in script


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope.yaml"], "nope.yaml: not a broadcast or system email file of this repository"),
        (["broadcasts/notices/card-expiring.yaml", "--data", "{}"], "--data is for system emails"),
        (
            ["emails/payment_received_customer.yaml", "--customer", "1001"],
            "--customer is for broadcasts",
        ),
        (
            ["emails/payment_received_customer.yaml", "--data", '{"payment_total": 9}'],
            "--data: payment_total must be string, got integer",
        ),
        (["emails/payment_received_customer.yaml", "--data", "{oops"], "--data is not valid JSON"),
        (
            ["broadcasts/notices/card-expiring.yaml", "--customer", "nobody"],
            "customer 'nobody' matches no customer",
        ),
    ],
)
def test_preview_refuses_bad_requests(
    demo_repo: Repo, tmp_path: Path, args: list[str], message: str
) -> None:
    result = demo_repo.cli("preview", *args, "--out", str(tmp_path / "p"))
    assert result.exit_code == 1 and message in result.stderr, result.output
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())
