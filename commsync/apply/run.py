"""One apply, start to end: the lock, crash recovery, the stale check, the journal, the executor.

A saved plan is carried out exactly, once; without one, the caller's planner makes the plan now
(under the lock, so nothing changes between planning and applying) and the operator confirms it.
"""

from __future__ import annotations

import getpass
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from commsync.apply.effects import ResumeSend, StartSend, effects
from commsync.apply.executor import ApplyListener, ApplyReport, Executor, ExecutorStore, SendRunner
from commsync.delivery.transport import hostname
from commsync.errors import CommsyncError
from commsync.model import DeliveryStatus, JournalStatus, JsonObject, JsonValue, LiveSnapshot
from commsync.plan.model import ABSENT, Action, ObjectKind, Plan
from commsync.store.roles import Control, Identity, LockHolder

Confirm = Callable[[Plan], bool]


class StalePlanError(CommsyncError):
    """A saved plan that no longer matches the store, or was already applied."""


class Cancelled(CommsyncError):
    """The operator said no."""


class ApplyStore(ExecutorStore, Control, Identity, Protocol):
    """The store roles an apply uses."""


@dataclass(frozen=True, slots=True)
class ApplyRun:
    """How to run one apply. `plan` is a saved plan, or the planner to call under the lock."""

    plan: Plan | Callable[[], Plan]
    statuses: tuple[str, ...]  # membership statuses that count for products: targets
    now: datetime
    yes: bool = False
    resend_uncertain: bool = False
    retry_failed: bool = False
    by_workers: bool = False  # `mail.delivery: workers`: sends are left to the delivery workers


def _fingerprint(action: Action, live: LiveSnapshot) -> str:
    objects = live.system_emails if action.kind == ObjectKind.SYSTEM_EMAIL else live.broadcasts
    found = objects.get(action.name)
    return found.fingerprint() if found is not None else ABSENT


def stale_addresses(plan: Plan, live: LiveSnapshot) -> list[str]:
    """Addresses whose live object is not what the plan saw."""
    return [a.address for a in plan.changes if _fingerprint(a, live) != a.fingerprint]


def check_saved(plan: Plan, store: ApplyStore) -> None:
    """A saved plan applies once, to the store it was made for, while what it saw is unchanged."""
    if plan.store_id != store.store_id:
        raise StalePlanError(
            f"stale plan: it was made for store {plan.store_id[:12]}, not {store.store_id[:12]}"
        )
    done = store.journal_for_plan(plan.plan_id)
    if done is not None:
        raise StalePlanError(
            f"stale plan: it was already applied at {done.started_at:%Y-%m-%d %H:%M:%S} UTC ({done.status}); make a new plan"
        )
    stale = stale_addresses(plan, store.snapshot())
    if stale:
        raise StalePlanError(
            "stale plan: changed since it was made: " + ", ".join(stale[:20]) + "; make a new plan"
        )


def _confirmed(plan: Plan, yes: bool, confirm: Confirm | None) -> None:
    if not plan.has_changes or yes:
        return
    if confirm is None:
        raise CommsyncError(
            "apply asks before it changes anything: run it in a terminal, or pass --yes"
        )
    if not confirm(plan):
        raise Cancelled("apply cancelled; nothing was changed")


def _summary(report: ApplyReport) -> JsonObject:
    actions: list[JsonValue] = [
        {"address": r.address, "action": r.action, "ok": r.ok, "detail": r.detail}
        for r in report.results
    ]
    return {
        "actions": actions,
        "recovered_uncertain": report.recovered_uncertain,
        "requeued": report.requeued,
    }


def run_apply(
    store: ApplyStore,
    run: ApplyRun,
    sender: SendRunner,
    *,
    confirm: Confirm | None = None,
    listener: ApplyListener | None = None,
) -> ApplyReport:
    """Apply under the lock; every action commits on its own and the journal records the run."""
    holder = LockHolder(uuid.uuid4().hex[:12], getpass.getuser(), hostname(), os.getpid(), run.now)
    store.acquire_lock(holder)
    try:
        recovered = store.crashed_to_uncertain()
        statuses = [
            status
            for status, wanted in (
                (DeliveryStatus.UNCERTAIN, run.resend_uncertain),
                (DeliveryStatus.FAILED, run.retry_failed),
            )
            if wanted
        ]
        requeued = store.requeue(statuses) if statuses else 0
        if isinstance(run.plan, Plan):
            check_saved(run.plan, store)
            plan = run.plan
        else:
            plan = run.plan()
            _confirmed(plan, run.yes, confirm)
        report = ApplyReport(plan, recovered_uncertain=recovered, requeued=requeued)
        steps = effects(plan, store.snapshot(), run.now)
        if any(isinstance(step.effect, StartSend | ResumeSend) for step in steps):
            sender.check()  # before anything is recorded: a send with no way out is refused
        source = plan.source
        journal = store.start_journal(
            plan.plan_id, source.commit, source.author, holder.host, holder.pid
        )
        report.results = Executor(store, run.statuses, sender, listener, run.by_workers).execute(
            steps
        )
        report.destination = sender.destination
        status = JournalStatus.SUCCEEDED if report.ok else JournalStatus.FAILED
        store.finish_journal(journal, status, _summary(report))
        return report
    finally:
        store.release_lock(holder.lock_id)
