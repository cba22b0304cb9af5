"""Carry out a Plan against the store and the transport.

Order: system emails, then notices, then email sends (the irreversible part, last). Every action
commits on its own; a failing action is reported and the others still run. The caller holds the
apply lock and has checked the plan is fresh.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from commsync.delivery.engine import DeliveryReport, Listener
from commsync.model import (
    BroadcastSpec,
    EmailStats,
    LiveBroadcast,
    LiveSnapshot,
    Provenance,
    SourceInfo,
)
from commsync.plan.model import ABSENT, Action, Plan
from commsync.plan.simulate import live_system_email
from commsync.store.base import Store

_ORDER = {"system_email": 0, "notice": 1, "email": 2}


class StalePlan(Exception):
    """The plan no longer matches the store."""


@dataclass
class ActionResult:
    address: str
    action: str
    ok: bool
    detail: str
    delivery: DeliveryReport | None = None


@dataclass
class ApplyReport:
    plan: Plan
    results: list[ActionResult] = field(default_factory=list)
    recovered_uncertain: int = 0
    requeued: int = 0
    released: list[str] = field(default_factory=list)
    destination: str | None = None  # where messages went, when any were sent

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def nothing_to_do(self) -> bool:
        return not self.plan.has_changes

    def messages(self) -> int:
        return sum(r.delivery.sent for r in self.results if r.delivery is not None)


class ApplyListener(Listener, Protocol):
    def action_started(self, action: Action) -> None: ...

    def action_finished(self, result: ActionResult) -> None: ...


SendRunner = Callable[[Action, int, int], DeliveryReport]


def _fingerprint(action: Action, live: LiveSnapshot) -> str:
    if action.kind == "system_email":
        email = live.system_emails.get(action.name)
        return email.fingerprint() if email is not None else ABSENT
    broadcast = live.broadcasts.get(action.name)
    return broadcast.fingerprint() if broadcast is not None else ABSENT


def stale_addresses(plan: Plan, live: LiveSnapshot) -> list[str]:
    """Addresses whose live object is not what the plan saw."""
    return [a.address for a in plan.changes if _fingerprint(a, live) != a.fingerprint]


def ordered(plan: Plan) -> list[Action]:
    return sorted(plan.changes, key=lambda a: (_ORDER[a.kind], a.address))


@dataclass
class Executor:
    store: Store
    statuses: tuple[str, ...]
    source: SourceInfo
    now: datetime
    run_send: SendRunner
    listener: ApplyListener | None = None

    def _provenance(self, path: str | None) -> Provenance:
        return Provenance(path, self.source.commit, self.source.author, self.now)

    def _spec(self, action: Action) -> BroadcastSpec:
        assert action.desired is not None
        spec = action.desired["spec"]
        assert isinstance(spec, dict)
        return BroadcastSpec.from_json(spec)

    def _system_email(self, action: Action, live: LiveSnapshot) -> str:
        if action.action == "delete":
            self.store.delete_system_email(action.name)
            return "deleted"
        assert action.desired is not None
        previous = live.system_emails.get(action.name)
        provenance = self._provenance(None)
        email = live_system_email(
            action.name, action.desired, previous.stats if previous else EmailStats(), provenance
        )
        self.store.put_system_email(email)
        return {
            "import": "imported",
            "create": "created",
            "reset": "reset (stats kept)",
            "upgrade": "upgraded (stats kept)",
        }.get(action.action, "updated")

    def _notice(self, action: Action, live: LiveSnapshot) -> str:
        if action.action == "retract":
            current = live.broadcasts[action.name]
            self.store.put_broadcast(
                replace(
                    current,
                    status="retracted",
                    provenance=self._provenance(current.provenance.path),
                )
            )
            return "retracted"
        spec = self._spec(action)
        self.store.put_broadcast(
            LiveBroadcast(
                action.name, spec, "active", spec.spec_hash(), True, self._provenance(action.path)
            )
        )
        return "created" if action.action == "create" else "updated"

    def _email(self, action: Action) -> ActionResult:
        if action.action == "send":
            spec = self._spec(action)
            live = LiveBroadcast(
                action.name, spec, "sending", spec.spec_hash(), True, self._provenance(action.path)
            )
            frozen = self.store.record_send(live, self.statuses)
            send_id, total, suppressed = frozen.send_id, frozen.recipients, frozen.suppressed
        else:
            found = self.store.send_id_for(action.name)
            assert found is not None
            send_id = found
            value = action.progress.get("total") if action.progress else None
            total, suppressed = (value if isinstance(value, int) else 0), 0
        report = self.run_send(action, send_id, total)
        report.suppressed += suppressed  # those were set aside when the audience was frozen
        finished = self.store.finish_send(action.name)
        ok = (
            report.failed == 0
            and report.uncertain == 0
            and report.deferred == 0
            and report.stopped is None
        )
        detail = _delivery_summary(report, finished)
        return ActionResult(action.address, action.action, ok, detail, report)

    def _run(self, action: Action, live: LiveSnapshot) -> ActionResult:
        if self.listener is not None:
            self.listener.action_started(action)
        try:
            if action.kind == "email":
                result = self._email(action)
            elif action.kind == "notice":
                result = ActionResult(
                    action.address, action.action, True, self._notice(action, live)
                )
            else:
                result = ActionResult(
                    action.address, action.action, True, self._system_email(action, live)
                )
        except Exception as exc:  # one action's failure must not stop the others, and is reported
            result = ActionResult(
                action.address, action.action, False, f"failed: {type(exc).__name__}: {exc}"
            )
        if self.listener is not None:
            self.listener.action_finished(result)
        return result

    def execute(self, plan: Plan, report: ApplyReport) -> ApplyReport:
        live = self.store.snapshot()
        for action in ordered(plan):
            report.results.append(self._run(action, live))
        for warning in plan.warnings:
            if warning.code == "removed_after_send":
                name = warning.address.split(".", 1)[1]
                self.store.release_broadcast(name)
                report.released.append(warning.address)
        return report


def _delivery_summary(r: DeliveryReport, finished: bool) -> str:
    parts = [f"{r.sent:,} sent"]
    for count, word in (
        (r.failed, "failed"),
        (r.suppressed, "suppressed"),
        (r.uncertain, "uncertain"),
        (r.deferred, "left queued"),
    ):
        if count:
            parts.append(f"{count:,} {word}")
    text = ", ".join(parts)
    if r.stopped:
        text += f" — {r.stopped}"
    return text + ("" if finished else "; re-run apply to send the rest")
