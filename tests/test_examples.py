"""examples/ is a complete, realistic repository: it validates and plans against its own data."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

from commsync.config.schema import schema_diagnostics
from commsync.config.yamlpos import load_yaml
from tests.conftest import EXAMPLES
from tests.helpers import Repo, run_cli


def test_examples_validate(demo_repo: Repo) -> None:
    result = demo_repo.cli("validate")
    assert result.exit_code == 0, result.output
    assert result.stdout == "ok: 6 broadcasts and 5 system emails are valid\n"


def test_examples_cover_every_kind_of_file() -> None:
    notices = [
        load_yaml(str(p), p.read_bytes())[0]
        for p in sorted((EXAMPLES / "broadcasts").rglob("*.yaml"))
    ]
    kinds = [(d.value["kind"], d.value.get("message_type")) for d in notices if d is not None]  # type: ignore[union-attr,index]
    assert {t for k, t in kinds if k == "notice"} == {"info", "success", "warning", "error"}
    assert sum(1 for k, _ in kinds if k == "email") == 2
    emails = {p.stem: p.read_text() for p in (EXAMPLES / "emails").glob("*.yaml")}
    assert "active: false" in emails["payment_failed_admin"]  # an override
    assert (
        emails["site_published_customer"].strip().endswith("email: site_published_customer")
    )  # import-only
    assert "event: site_published" in emails["site_setup_checklist"]  # a custom system email


def test_examples_plan_with_real_audiences(demo_repo: Repo) -> None:
    document = demo_repo.plan_json()
    actions = {a["address"]: a for a in document["actions"]}
    assert {a: x["action"] for a, x in actions.items()} == {
        "email.launches/agency-white-label": "scheduled",
        "email.emails/2026-12-holiday-support-hours": "send",
        "notice.notices/card-expiring": "create",
        "notice.notices/http3-everywhere": "create",
        "notice.notices/new-block-editor": "create",
        "notice.notices/php-8-upgrade": "create",
        "system_email.confirm_email_address": "import",
        "system_email.domain_created_admin": "import",
        "system_email.payment_failed_admin": "import",
        "system_email.payment_failed_customer": "import",
        "system_email.payment_received_customer": "import",
        "system_email.site_published_customer": "import",
        "system_email.site_setup_checklist": "create",
    }
    assert actions["email.emails/2026-12-holiday-support-hours"]["audience"]["total"] == 320
    assert actions["notice.notices/card-expiring"]["audience"]["total"] == 3
    block_editor = actions["notice.notices/new-block-editor"]["audience"]
    with (EXAMPLES / "data" / "memberships.csv").open() as f:
        rows = list(csv.DictReader(f))
    counted = {
        r["customer_id"]
        for r in rows
        if r["product"] in ("pro", "agency") and r["status"] in ("active", "trialing")
    }
    assert block_editor["total"] == len(counted)  # customers on both plans count once
    assert block_editor["total"] < sum(block_editor["products"].values())


def test_example_files_declare_their_schema_for_editors_and_it_resolves_offline(
    tmp_path: Path,
) -> None:
    """In a demo repository (`init --demo`), each file's yaml-language-server line points at the
    repository's own copy of its schema, and check-jsonschema validates every file with the
    local files alone: no schema refers to a URL."""
    demo = tmp_path / "demo"
    assert run_cli("init", "--demo", str(demo)).exit_code == 0
    checker = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert checker, "check-jsonschema is part of the test extras"
    for path in sorted(demo.glob("**/*.yaml")):
        rel = path.relative_to(demo).as_posix()
        if rel.startswith((".commsync/", "schemas/")):
            continue
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), rel
        target = (path.parent / first.split("$schema=", 1)[1]).resolve()
        assert target.is_file() and target.parent == (demo / "schemas").resolve(), rel
        doc, problems = load_yaml(path.name, path.read_bytes())
        assert doc is not None and not problems
        assert schema_diagnostics(doc, target.name) == []
        done = subprocess.run(
            [checker, "--schemafile", str(target), str(path)], capture_output=True, text=True
        )
        assert done.returncode == 0, (rel, done.stdout, done.stderr)
    for schema in (demo / "schemas").glob("*.json"):
        assert "commsync.dev" not in schema.read_text() and "$id" not in json.loads(
            schema.read_text()
        )
    settings = json.loads((demo / ".vscode" / "settings.json").read_text())
    assert settings["yaml.schemas"]["./schemas/broadcast.schema.json"][0] == "broadcasts/**/*.yaml"
    # the catalogs' schemas refer to each other by relative file names, resolved offline
    core = Path(__file__).resolve().parent.parent / "commsync" / "catalog" / "core"
    for kind in ("events", "emails", "groups"):
        schema = demo / "schemas" / f"catalog-{kind[:-1]}.schema.json"
        files = sorted(str(p) for p in (core / kind).glob("*.yaml"))
        done = subprocess.run(
            [checker, "--schemafile", str(schema), *files], capture_output=True, text=True
        )
        assert done.returncode == 0, (kind, done.stdout, done.stderr)
