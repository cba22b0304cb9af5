"""Plan renderers: golden files for text and markdown, the JSON document against its schema.

Regenerate the golden files after an intended change with UPDATE_GOLDEN=1 and review
the diff.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest

from commsync.api.planning import sampler
from commsync.config.schema import validator
from commsync.config.settings import build_settings
from commsync.config.yamlpos import load_yaml
from commsync.model import Provenance, SendProgress, Targets
from commsync.plan.codec import dumps as render_json
from commsync.plan.model import Plan
from commsync.plan.render_markdown import LIMIT, render_markdown
from commsync.plan.render_text import render_text
from tests.planning import (
    CATALOG,
    NOW,
    desired,
    drifted,
    email,
    file_email,
    installed,
    live_of,
    notice,
    plan,
    snapshot,
)

GOLDEN = Path(__file__).parent / "golden"


def _sample_plan() -> Plan:
    old = notice(
        "notices/maintenance",
        "Maintenance tonight",
        content="We upgrade at 22:00.\nExpect 5 minutes of downtime.",
    )
    sent = email("news/october", "October news")
    partial = email("news/november", "November news")
    state = desired(
        [
            notice(
                "notices/maintenance",
                "Maintenance tonight",
                content="We upgrade at 23:00.\nExpect 10 minutes of downtime.\nSorry!",
            ),
            notice(
                "notices/welcome", "Welcome", Targets(products=("pro", "agency"), customers=("12",))
            ),
            notice("notices/old-promo", "Promo", expires_at=NOW - timedelta(days=3)),
            email("news/october", "October news (edited)"),
            partial,
            email("news/december", "December news", Targets(products=("pro",))),
            email("news/launch", "Launch", send_at=NOW + timedelta(days=7)),
        ],
        [
            file_email("paid_admin", active=False),
            file_email("receipt", subject="Your receipt"),
            file_email("paid_customer"),
        ],
        imports="critical",
    )
    applied = Provenance(
        "broadcasts/notices/maintenance.yaml",
        "0123456789abcdef0123456789abcdef01234567",
        "Ada Operator",
        NOW - timedelta(days=2),
    )
    live = snapshot(
        [
            replace(drifted(live_of(old), message_type="error"), provenance=applied),
            live_of(notice("notices/retired", "Retired")),
            live_of(sent),
            live_of(partial, "sending", progress=SendProgress(total=1200, sent=800, queued=400)),
        ],
        [
            installed("receipt", 1, {"subject": "Your receipt"}),
            installed("paid_customer", 1, {"subject": "Thanks!"}),
        ],
    )
    doc, _ = load_yaml(
        "commsync.yaml",
        b"version: 1\nnetwork: {name: Acme Sites, url: https://acme.example}\nmail: {from: hello@acme.example}\n",
    )
    assert doc is not None
    settings = build_settings(doc, Path("/nonexistent"), {})
    outcome = plan(state, live, sample=sampler(CATALOG, settings))
    assert not outcome.errors
    return outcome.plan


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing; run with UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(encoding="utf-8")


def test_text_rendering_matches_golden() -> None:
    _check_golden("plan.txt", render_text(_sample_plan()))


def test_text_rendering_colours_only_when_asked() -> None:
    plain = render_text(_sample_plan())
    coloured = render_text(_sample_plan(), color=True)
    assert "\x1b[" not in plain
    assert "\x1b[32m+\x1b[0m" in coloured
    assert coloured.replace("\x1b[0m", "").count("\x1b[") > 10


def test_markdown_rendering_matches_golden() -> None:
    _check_golden("plan.md", render_markdown(_sample_plan()))


def test_no_changes_reads_plainly() -> None:
    text = render_text(plan(desired()).plan)
    assert text.endswith("No changes. The store matches the repository.\n")


def test_json_document_validates_against_its_schema_and_holds_no_addresses() -> None:
    document = json.loads(render_json(_sample_plan()))
    validator("plan.schema.json").validate(document)
    assert document["format_version"] == 1
    assert document["summary"]["recipients"] == 400 + 10
    assert "@" not in json.dumps(document)


def test_schema_rejects_a_tampered_plan() -> None:
    document = json.loads(render_json(_sample_plan()))
    document["actions"][0]["action"] = "explode"
    with pytest.raises(jsonschema.ValidationError):
        validator("plan.schema.json").validate(document)


def test_markdown_of_a_500_action_plan_stays_under_the_limit_and_says_what_it_cut() -> None:
    long = "\n".join(
        f"Paragraph {i} of a long notice body, long enough to matter." for i in range(40)
    )
    state = desired([notice(f"notices/n{i:03}", f"Notice {i}", content=long) for i in range(520)])
    big = plan(state).plan
    assert len(big.actions) == 520
    text = render_markdown(big)
    assert len(text) <= LIMIT
    assert "Truncated:" in text and "of 520 actions are not shown (" in text
    assert "notice create" in text and "plan --out plan.json" in text
    assert text.index("| create | 520 |") < text.index("<details>")  # the summary comes first
    short = render_markdown(plan(desired([notice("a")])).plan)
    assert "Truncated" not in short


LONG = "\n".join(f"Paragraph {i} of a long notice body, long enough to matter." for i in range(40))


def test_a_cut_comment_keeps_every_send_and_change_and_folds_the_bulk() -> None:
    """600 new notices and one system-email edit: the edit is named and detailed, the notices
    are counted, and the comment stays under the limit."""
    notices = [notice(f"notices/n{i:03}", f"Notice {i}", content=LONG) for i in range(600)]
    edit = file_email("receipt", subject="Your receipt, edited")
    live = snapshot([], [installed("receipt")])
    big = plan(desired(notices, [edit]), live).plan
    assert [a.action for a in big.actions].count("update") == 1
    text = render_markdown(big)
    assert len(text) <= LIMIT
    listed = text.index("**Sends and changes**")
    assert "`~ system_email.receipt` **update**" in text[listed : text.index("<details>")]
    assert text.index("system_email.receipt</code>") < text.index("notice.notices/n000</code>")
    assert "600 × notice create" not in text and "× notice create" in text  # some fit, not all


def test_when_even_the_sends_and_changes_do_not_fit_the_comment_says_so() -> None:
    emails = [email(f"news/e{i:04}", f"Newsletter number {i}", content=LONG) for i in range(2000)]
    big = plan(desired(emails)).plan
    text = render_markdown(big)
    assert len(text) <= LIMIT
    assert "**Too large for one comment:**" in text and "of 2,000 sends and changes" in text
    assert "plan --out plan.json" in text and "<details>" not in text
