"""Planner properties (hypothesis): deterministic, sorted, and convergent.

Convergence: carrying out a plan's effects on the live model and planning again shows no changes.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from commsync.apply.effects import apply_effects
from commsync.model import (
    DesiredBroadcast,
    DesiredState,
    LiveBroadcast,
    LiveSnapshot,
    LiveSystemEmail,
    SendProgress,
    SourceInfo,
    Targets,
)
from commsync.plan.codec import dumps, plan_from_json, plan_to_json
from tests.planning import (
    CATALOG,
    NOW,
    default,
    email,
    file_email,
    installed,
    live_of,
    notice,
    plan,
)

IDS = ["a", "b", "c", "d", "news/e"]
TARGETS = [
    Targets(all=True),
    Targets(products=("pro",)),
    Targets(products=("pro", "starter"), customers=("7",)),
    Targets(customers=("1", "2")),
]
WHEN = st.sampled_from([None, NOW - timedelta(days=2), NOW + timedelta(days=2)])
SLUGS = ["paid_customer", "paid_admin", "receipt", "followup"]
OVERRIDES = st.dictionaries(
    st.sampled_from(["subject", "active", "delay"]),
    st.sampled_from(["Mine", "Yours", False, True, "2h", "0"]),
    max_size=2,
).map(
    lambda d: {
        k: v
        for k, v in d.items()
        if (k == "active") == isinstance(v, bool) and (k != "delay" or v in ("2h", "0"))
    }
)


@st.composite
def desired_broadcast(draw: st.DrawFn, bid: str) -> DesiredBroadcast:
    subject = draw(st.sampled_from(["Hello", "Hi", "News"]))
    targets = draw(st.sampled_from(TARGETS))
    if draw(st.booleans()):
        start, end = draw(WHEN), draw(WHEN)
        if start and end and end <= start:
            start = None
        return notice(
            bid,
            subject,
            targets,
            starts_at=start,
            expires_at=end,
            message_type=draw(st.sampled_from(["info", "error"])),
        )
    return email(bid, subject, targets, send_at=draw(WHEN), allow_resend=draw(st.booleans()))


@st.composite
def live_broadcast(draw: st.DrawFn, bid: str) -> LiveBroadcast:
    base = draw(desired_broadcast(bid))
    if base.spec.kind == "notice":
        live = live_of(
            base, draw(st.sampled_from(["active", "retracted"])), managed=draw(st.booleans())
        )
    else:
        queued = draw(st.integers(0, 3))
        status = draw(st.sampled_from(["sent", "scheduled", "missed", "cancelled"]))
        if status == "scheduled" or status == "missed":  # recorded for the workers, not started
            live = live_of(base, status, progress=SendProgress())
        elif status == "cancelled":
            live = live_of(base, status, progress=SendProgress(5 + queued, 5, cancelled=queued))
        else:
            live = live_of(
                base,
                "sending" if queued else "sent",
                progress=SendProgress(
                    total=5 + queued, sent=5, queued=queued, by_workers=draw(st.booleans())
                ),
            )
    if draw(st.booleans()):  # edited outside commsync
        live = replace(live, spec=replace(live.spec, content="Edited in the store"))
    return live


@st.composite
def live_email(draw: st.DrawFn, slug: str) -> LiveSystemEmail:
    if slug == "followup":
        fields = default("followup").fields.with_values(draw(OVERRIDES))
        return LiveSystemEmail(
            slug, fields, fields.fields_hash(), provenance=installed(slug).provenance
        )
    version = draw(st.integers(1, CATALOG.defaults[slug].version))
    path = draw(st.sampled_from(["default", None]))
    email_ = installed(slug, version, draw(OVERRIDES), path=path, base=default(slug, version))
    if draw(st.booleans()):
        email_ = email_.with_fields(email_.fields.with_values({"content": "Edited in the store"}))
    return email_


@st.composite
def scenario(draw: st.DrawFn) -> tuple[DesiredState, LiveSnapshot]:
    wanted = draw(st.lists(st.sampled_from(IDS), unique=True))
    present = draw(st.lists(st.sampled_from(IDS), unique=True))
    broadcasts = tuple(draw(desired_broadcast(i)) for i in sorted(wanted))
    lives = {i: draw(live_broadcast(i)) for i in present}
    files = []
    for slug in draw(st.lists(st.sampled_from(SLUGS), unique=True)):
        custom = (
            default("followup").fields.with_values(draw(OVERRIDES)) if slug == "followup" else None
        )
        files.append(file_email(slug, custom, **({} if custom else draw(OVERRIDES))))
    installed_ = {
        s: draw(live_email(s)) for s in draw(st.lists(st.sampled_from(SLUGS), unique=True))
    }
    state = DesiredState(
        broadcasts,
        tuple(sorted(files, key=lambda e: e.slug)),
        draw(st.sampled_from(["none", "critical", "all"])),
        draw(st.booleans()),
        SourceInfo("commit abc", "abc", "Op"),
    )
    return state, LiveSnapshot("store-1", lives, installed_)


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(scenario())
def test_plan_is_deterministic_and_sorted(case: tuple[DesiredState, LiveSnapshot]) -> None:
    state, live = case
    first, second = plan(state, live), plan(state, live)
    assert first == second
    addresses = [a.address for a in first.plan.actions]
    assert addresses == sorted(addresses)
    assert len(addresses) == len(set(addresses))
    warnings = [(w.address, w.code) for w in first.plan.warnings]
    assert warnings == sorted(warnings)


@SETTINGS
@given(scenario())
def test_plan_round_trips_through_json(case: tuple[DesiredState, LiveSnapshot]) -> None:
    outcome = plan(*case)
    assert plan_from_json(plan_to_json(outcome.plan)) == outcome.plan
    # the saved text is what Python's own encoder writes (orjson writes it, faster)
    text = dumps(outcome.plan)
    assert text == json.dumps(plan_to_json(outcome.plan), indent=2, ensure_ascii=False) + "\n"
    assert plan_from_json(json.loads(text)) == outcome.plan


def test_the_plan_text_falls_back_to_python_for_what_orjson_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An integer past 64 bits is written by Python's encoder (no plan field holds one today:
    the document is swapped for one that does, a fault no input provokes)."""
    from commsync.plan import codec
    from commsync.plan.model import Plan

    empty = Plan("sha256:x", datetime(2026, 1, 1, tzinfo=UTC), "s", SourceInfo("l", None, None), ())
    monkeypatch.setattr(codec, "plan_to_json", lambda plan: {"n": 10**30, "s": "é\u0001"})
    assert dumps(empty) == '{\n  "n": 1000000000000000000000000000000,\n  "s": "é\\u0001"\n}\n'


@SETTINGS
@given(scenario())
def test_applying_the_plan_then_replanning_shows_no_changes(
    case: tuple[DesiredState, LiveSnapshot],
) -> None:
    state, live = case
    outcome = plan(state, live)
    assume(not outcome.errors)  # a refused plan (rename guard, kind change) is never applied
    after = apply_effects(outcome.plan, live, NOW)
    again = plan(state, after)
    assert not again.errors
    assert again.plan.changes == (), [(a.address, a.action, a.reason) for a in again.plan.changes]
    assert {w.code for w in again.plan.warnings} <= {
        "edited_after_send",
        "newer_default",
        "empty_audience",
        "missed",
        "cancelled",
        "no_worker",
    }
