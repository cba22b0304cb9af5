"""Carry out a plan against the store: persist each effect, deliver each send.

Order: system emails, then notices, then email sends (the irreversible part, last). Every action
commits on its own; a failing action is reported and the others still run. The caller holds the
apply lock and has checked the plan is fresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from commsync.apply.effects import (
    DeleteSystemEmail,
    Effect,
    EndSchedule,
    PutBroadcast,
    PutSystemEmail,
    ResumeSend,
    ScheduleSend,
    StartSend,
    Step,
)
from commsync.delivery.engine import DeliveryReport, Listener
from commsync.errors import CommsyncError
from commsync.model import BroadcastSpec
from commsync.plan.model import Action, Plan, Verb
from commsync.render.message import RenderError
from commsync.store.failures import describe, store_errors
from commsync.store.roles import ManagedObjects, Sends


@dataclass
class ActionResult:
    address: str
    action: Verb
    ok: bool
    detail: str
    delivery: DeliveryReport | None = None


@dataclass
class ApplyReport:
    plan: Plan
    results: list[ActionResult] = field(default_factory=list)
    recovered_uncertain: int = 0
    requeued: int = 0
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


class SendRunner(Protocol):
    """Delivers the queued rows of one send (`send_id`, `total` recipients) of broadcast `name`."""

    destination: str | None  # where messages went, once a send ran

    def check(self) -> None:
        """Raise a ConfigError when no message could be delivered (an unusable transport)."""

    def __call__(
        self, name: str, spec: BroadcastSpec, send_id: int, total: int
    ) -> DeliveryReport: ...


class ExecutorStore(ManagedObjects, Sends, Protocol):
    """The roles of the store apply writes to."""


_DONE = {
    Verb.IMPORT: "imported",
    Verb.CREATE: "created",
    Verb.RESET: "reset (stats kept)",
    Verb.UPGRADE: "upgraded (stats kept)",
    Verb.RETRACT: "retracted",
    Verb.DELETE: "deleted",
    Verb.UNSCHEDULE: "unscheduled; it will not be sent",
    Verb.MISSED: "recorded missed; it will not be sent",
}
_STARTED_ELSEWHERE = "a delivery worker started this send meanwhile; `commsync status` shows it"


@dataclass
class Executor:
    store: ExecutorStore
    statuses: tuple[str, ...]
    run_send: SendRunner
    listener: ApplyListener | None = None
    by_workers: bool = False  # `mail.delivery: workers`: sends are frozen, the workers deliver

    def _send(
        self, name: str, spec: BroadcastSpec, send_id: int, total: int, suppressed: int
    ) -> tuple[bool, str, DeliveryReport]:
        report = self.run_send(name, spec, send_id, total)
        report.suppressed += suppressed  # those were set aside when the audience was frozen
        finished = self.store.finish_send(name)
        ok = not (report.failed or report.uncertain or report.deferred or report.stopped)
        return ok, _delivery_summary(report, finished), report

    def persist(self, effect: Effect) -> tuple[bool, str, DeliveryReport | None]:
        """Write one effect to the store (and deliver, for a send): ok, what was done, delivery."""
        if isinstance(effect, PutBroadcast):
            self.store.put_broadcast(effect.broadcast)
        elif isinstance(effect, PutSystemEmail):
            self.store.put_system_email(effect.email)
        elif isinstance(effect, DeleteSystemEmail):
            self.store.delete_system_email(effect.slug)
        elif isinstance(effect, StartSend):
            b = effect.broadcast
            frozen = self.store.record_send(b, self.statuses, by_workers=self.by_workers)
            if frozen is None:
                return False, _STARTED_ELSEWHERE, None
            if self.by_workers:
                detail = f"{frozen.recipients - frozen.suppressed:,} recipients queued for the delivery workers"
                if frozen.suppressed:
                    detail += f", {frozen.suppressed:,} suppressed"
                return True, detail, None
            return self._send(b.id, b.spec, frozen.send_id, frozen.recipients, frozen.suppressed)
        elif isinstance(effect, ResumeSend):
            if self.by_workers:
                self.store.hand_over(effect.broadcast_id)
                return True, "the rest is left to the delivery workers", None
            send_id = self.store.send_id_for(effect.broadcast_id)
            assert send_id is not None, f"no send of {effect.broadcast_id} to resume"
            return self._send(effect.broadcast_id, effect.spec, send_id, effect.total, 0)
        elif isinstance(effect, ScheduleSend):
            if not self.store.schedule_broadcast(effect.broadcast):
                return False, _STARTED_ELSEWHERE, None
            at = effect.broadcast.spec.send_at
            return True, f"scheduled for {at.isoformat() if at else 'now'}", None
        elif isinstance(effect, EndSchedule):
            if not self.store.end_schedule(effect.broadcast_id, missed=effect.missed):
                return False, _STARTED_ELSEWHERE, None
        else:
            self.store.release_broadcast(effect.broadcast_id)
        return True, "", None

    def _run(self, step: Step) -> ActionResult:
        action = step.action
        assert action is not None
        if self.listener is not None:
            self.listener.action_started(action)
        try:
            ok, detail, delivery = self.persist(step.effect)
        except expected() as exc:  # one action's failure must not stop the others; a bug does
            ok, detail, delivery = False, f"failed: {_reason(exc)}", None
        if ok and delivery is None and not detail:
            detail = _DONE.get(action.action, "updated")
        result = ActionResult(action.address, action.action, ok, detail, delivery)
        if self.listener is not None:
            self.listener.action_finished(result)
        return result

    def execute(self, steps: Sequence[Step]) -> list[ActionResult]:
        results = []
        for step in steps:
            if step.action is None:  # bookkeeping that follows from a plan warning
                self.persist(step.effect)
            else:
                results.append(self._run(step))
        return results


# What an action can fail of without a bug: the store, the settings (a transport URL), a
# template that cannot be compiled, the file system.
def expected() -> tuple[type[Exception], ...]:
    return (CommsyncError, RenderError, OSError, *store_errors())


def _reason(exc: Exception) -> str:
    if isinstance(exc, CommsyncError):
        return exc.message
    return describe(exc) if isinstance(exc, store_errors()) else f"{type(exc).__name__}: {exc}"


def _delivery_summary(r: DeliveryReport, finished: bool) -> str:
    parts = [f"{r.sent:,} sent"]
    for count, word in (
        (r.failed, "failed"),
        (r.suppressed, "suppressed"),
        (r.uncertain, "uncertain"),
        (r.cancelled, "cancelled (queue cancel --broadcast)"),
        (r.deferred, "left queued"),
    ):
        if count:
            parts.append(f"{count:,} {word}")
    text = ", ".join(parts)
    if r.stopped:
        text += f" — {r.stopped}"
    return text + ("" if finished else "; re-run apply to send the rest")
