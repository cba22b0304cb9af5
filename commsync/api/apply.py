"""Use case: `apply` — converge the store on the repository and send what the plan sends."""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import json
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formataddr
from pathlib import Path

from commsync.api.core import Project, load, load_settings, plan_against, store_session
from commsync.apply.executor import ApplyListener, ApplyReport, Executor, stale_addresses
from commsync.delivery.engine import DeliveryReport, RetryPolicy, SendJob, run_send
from commsync.delivery.ratelimit import RateLimiter
from commsync.delivery.transport import hostname, parse_transport
from commsync.errors import CommsyncError, ConfigError, UsageError, ValidationFailed
from commsync.model import BroadcastSpec, JsonObject, JsonValue
from commsync.plan.model import Action, Plan, plan_from_json
from commsync.render.message import UNSUBSCRIBE, Built, EmailTemplate, MessageFactory
from commsync.repo.loader import LoadedRepository, load_layout
from commsync.repo.schema import validator
from commsync.repo.source import DirectoryTree
from commsync.settings import Settings
from commsync.store.base import LockHolder, Store
from commsync.store.ledger import LedgerRow

Confirm = Callable[[Plan], bool]


class StalePlanError(CommsyncError):
    """A saved plan that no longer matches the store, or was already applied."""


class Cancelled(CommsyncError):
    """The operator said no."""


@dataclass(frozen=True, slots=True)
class ApplyRequest:
    plan_file: Path | None = None
    ref: str | None = None
    yes: bool = False
    allow_dirty: bool = False
    resend_uncertain: bool = False
    retry_failed: bool = False


def read_plan(path: Path) -> Plan:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the plan {path}: {exc}") from exc
    errors = sorted(validator("plan.schema.json").iter_errors(document), key=lambda e: list(e.path))
    if errors:
        raise ConfigError(f"{path} is not a commsync plan: {errors[0].message}")
    return plan_from_json(document)


def unsubscribe_token(key: bytes, email_key: str) -> str:
    """Opaque and unguessable: an HMAC of the address under the store's key."""
    digest = hmac.new(key, b"unsubscribe\x00" + email_key.encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def customer_values(row: LedgerRow) -> tuple[str, dict[str, str]]:
    """The recipient's display name and the broadcast placeholders for them."""
    full = " ".join(p for p in (row.first_name, row.last_name) if p)
    name = row.display_name or full or row.username or row.email.split("@", 1)[0]
    return name, {
        "customer_id": row.customer_id or "",
        "customer_name": name,
        "customer_first_name": row.first_name or name,
        "customer_last_name": row.last_name or "",
        "customer_username": row.username or "",
        "customer_user_email": row.email,
    }


def broadcast_factory(
    store_id: str, settings: Settings, layout: str | None, name: str, spec: BroadcastSpec
) -> MessageFactory:
    """How each recipient's message of email broadcast `name` is built."""
    mail = settings.mail
    template = EmailTemplate(
        subject=spec.subject,
        content=spec.content,
        format=spec.format,
        style="html",
        sender=formataddr((mail.from_name, mail.from_address)),
        reply_to=mail.reply_to,
        unsubscribe=True,
        id_key=f"{store_id}/broadcast/{name}",
    )
    return MessageFactory(
        template, theme=mail.theme, static=settings.network_context, layout=layout
    )


@dataclass
class _Sender:
    """Builds the send job of each email action and runs it."""

    store: Store
    settings: Settings
    layout: str | None
    env: dict[str, str]
    listener: ApplyListener | None
    policy: RetryPolicy
    destination: str | None = None

    def factory(self, action: Action, spec: BroadcastSpec) -> MessageFactory:
        return broadcast_factory(self.store.store_id, self.settings, self.layout, action.name, spec)

    def __call__(self, action: Action, send_id: int, total: int) -> DeliveryReport:
        spec = _spec_of(action, self.store)
        factory = self.factory(action, spec)
        key = self.store.signing_key()
        mailbox = self.settings.unsubscribe_mailbox

        minted: dict[str, str] = {}  # the token of each row of the current batch, made once

        def tokens(rows: Sequence[LedgerRow]) -> list[tuple[str, str]]:
            minted.clear()
            minted.update((r.email_key, unsubscribe_token(key, r.email_key)) for r in rows)
            return [(token, email_key) for email_key, token in minted.items()]

        def build(row: LedgerRow) -> Built:
            name, values = customer_values(row)
            token = minted.get(row.email_key) or unsubscribe_token(key, row.email_key)
            values[UNSUBSCRIBE] = self.settings.unsubscribe_url(token)
            return factory.build(row.email, name, values, mailbox)

        mail = self.settings.mail
        transport = parse_transport(mail.transport, self.settings.root, self.env)
        self.destination = transport.describe()
        ledger = self.store.ledger()
        try:
            job = SendJob(send_id, mail.from_address, build, tokens)
            limiter = RateLimiter(mail.max_rate)
            return run_send(
                job, ledger, transport, limiter, mail.connections, total, self.listener, self.policy
            )
        finally:
            ledger.close()


def _spec_of(action: Action, store: Store) -> BroadcastSpec:
    if action.desired is not None:
        spec = action.desired["spec"]
        assert isinstance(spec, dict)
        return BroadcastSpec.from_json(spec)
    return store.snapshot().broadcasts[action.name].spec  # resume: what was frozen at send time


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


def _prepare(
    project: Project, request: ApplyRequest
) -> tuple[Settings, Plan | None, LoadedRepository | None, str | None]:
    """Settings, a saved plan (or None), the loaded repository (or None) and the layout."""
    if request.plan_file is not None:
        if request.ref or request.resend_uncertain or request.retry_failed:
            raise UsageError(
                "a saved plan is applied as it is: --ref, --resend-uncertain and --retry-failed need a new plan"
            )
        layout, diags = load_layout(DirectoryTree(project.root))
        if diags:
            raise ValidationFailed(diags)
        return load_settings(project), read_plan(request.plan_file), None, layout
    loaded = load(project, request.ref)
    if not loaded.ok or loaded.settings is None:
        raise ValidationFailed(loaded.diagnostics)
    if request.ref is None and not request.allow_dirty:
        dirty = loaded.uncommitted
        if dirty:
            raise ConfigError(
                "uncommitted changes under managed paths: "
                + ", ".join(dirty[:10])
                + "; commit them, apply a commit with --ref, or pass --allow-dirty"
            )
    return loaded.settings, None, loaded, loaded.layout


def _check_saved(plan: Plan, store: Store) -> None:
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


def apply(
    project: Project,
    request: ApplyRequest,
    *,
    confirm: Confirm | None = None,
    listener: ApplyListener | None = None,
    now: datetime | None = None,
    policy: RetryPolicy | None = None,
) -> ApplyReport:
    """Apply a saved plan, or plan now and apply after confirmation (or --yes)."""
    settings, saved, loaded, layout = _prepare(project, request)
    when = now or datetime.now(UTC)
    holder = LockHolder(uuid.uuid4().hex[:12], getpass.getuser(), hostname(), os.getpid(), when)
    with store_session(settings.store_url) as store:
        store.acquire_lock(holder)
        try:
            recovered = store.crashed_to_uncertain()
            statuses = [
                s
                for s, wanted in (
                    ("uncertain", request.resend_uncertain),
                    ("failed", request.retry_failed),
                )
                if wanted
            ]
            requeued = store.requeue(statuses) if statuses else 0
            if saved is not None:
                _check_saved(saved, store)
                plan = saved
            else:
                assert loaded is not None
                plan = plan_against(loaded, store, when).plan
                if plan.has_changes and not request.yes:
                    if confirm is None:
                        raise CommsyncError(
                            "apply asks before it changes anything: run it in a terminal, or pass --yes"
                        )
                    if not confirm(plan):
                        raise Cancelled("apply cancelled; nothing was changed")
            report = ApplyReport(plan, recovered_uncertain=recovered, requeued=requeued)
            source = plan.source
            journal = store.start_journal(
                plan.plan_id, source.commit, source.author, holder.host, holder.pid
            )
            sender = _Sender(
                store, settings, layout, dict(project.env), listener, policy or RetryPolicy()
            )
            executor = Executor(store, settings.membership_statuses, source, when, sender, listener)
            executor.execute(plan, report)
            report.destination = sender.destination
            store.finish_journal(journal, "succeeded" if report.ok else "failed", _summary(report))
            return report
        finally:
            store.release_lock(holder.lock_id)
